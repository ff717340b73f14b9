"""Shared fixtures: where the real services are, read from the environment.

`deploy/dev-stack.sh env` prints the variables. A fixture skips its test when a variable
is unset, but fails it when ``EDGEBACK_REQUIRE_SERVICES=1`` (CI sets it), so a green CI
always means the integration tests ran. Test-specific fixtures live in the conftest of
each test directory.
"""

from __future__ import annotations

import os

import pytest


def _require(var: str, *aliases: str) -> str:
    for name in (var, *aliases):
        value = os.environ.get(name)
        if value:
            return value
    if os.environ.get("EDGEBACK_REQUIRE_SERVICES") == "1":
        pytest.fail(
            f"{var} is not set but EDGEBACK_REQUIRE_SERVICES=1: "
            'run `eval "$(bash deploy/dev-stack.sh env)"` first',
            pytrace=False,
        )
    pytest.skip(f"{var} is not set (see deploy/dev-stack.sh env)")


@pytest.fixture(scope="session")
def amqp_url() -> str:
    return _require("EDGEBACK_AMQP_URL")


@pytest.fixture(scope="session")
def mongo_url() -> str:
    return _require("EDGEBACK_MONGO_URL")


@pytest.fixture(scope="session")
def ceph_conf() -> str:
    """Path of the ceph.conf; always pass it to ``rados.Rados(conffile=...)``."""
    return _require("CEPH_CONF")


@pytest.fixture(scope="session")
def ceph_pool() -> str:
    return os.environ.get("EDGEBACK_CEPH_POOL") or "rbd"


@pytest.fixture(scope="session")
def s3_config() -> dict[str, str]:
    return {
        "endpoint_url": _require("S3_ENDPOINT_URL", "EDGEBACK_S3_URL"),
        "access_key": _require("AWS_ACCESS_KEY_ID"),
        "secret_key": _require("AWS_SECRET_ACCESS_KEY"),
        "region": os.environ.get("AWS_DEFAULT_REGION") or "default",
    }
