"""Fixtures shared by the integration tests (the service URLs live in ``tests/conftest.py``)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from tests.integration.broker_control import BusFactory


@pytest.fixture
async def buses(amqp_url: str) -> AsyncIterator[BusFactory]:
    """Opens named buses for one test; deletes their topology afterwards."""
    factory = BusFactory(amqp_url)
    yield factory
    await factory.clean_up()
