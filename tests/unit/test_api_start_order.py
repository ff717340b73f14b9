"""The API's first-admin call waits for a catalog that is still starting (no queue
bound yet, no answer) and gives up after its time; other errors are not waited out."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest

from edgeback_api.main import _until_catalog_answers
from edgeback_core.errors import InvalidInputError, UnavailableError, UnroutableError


def _failing(errors: list[Exception]) -> tuple[list[int], Callable[[], Awaitable[str]]]:
    calls: list[int] = []

    async def call() -> str:
        calls.append(1)
        if errors:
            raise errors.pop(0)
        return "created"

    return calls, call


def test_an_unbound_catalog_is_waited_for_until_it_answers() -> None:
    calls, call = _failing([UnroutableError("no queue bound"), UnavailableError("no answer")])
    assert asyncio.run(_until_catalog_answers(call, within_s=30)) == "created"
    assert len(calls) == 3


def test_it_gives_up_after_its_time_and_does_not_wait_out_a_refusal() -> None:
    _, never = _failing([UnroutableError("no queue bound")] * 100)
    with pytest.raises(UnavailableError):
        asyncio.run(_until_catalog_answers(never, within_s=1))
    calls, refused = _failing([InvalidInputError("bad name")])
    with pytest.raises(InvalidInputError):
        asyncio.run(_until_catalog_answers(refused, within_s=30))
    assert len(calls) == 1
