"""Shared fixtures: where the real services are, read from the environment.

`deploy/dev-stack.sh env` prints the variables. A fixture skips its test when a variable
is unset, but fails it when ``EDGEBACK_REQUIRE_SERVICES=1`` (CI sets it), so a green CI
always means the integration tests ran. Test-specific fixtures live in the conftest of
each test directory.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import subprocess

import aio_pika
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


_TEST_QUEUE = re.compile(r"^(t|e2e|bench)-[0-9a-f]{8,10}\.")
"""Queues of a test's own topology prefix: nobody else's (the quickstart's have none)."""


def pytest_sessionfinish(session: pytest.Session) -> None:
    """Delete the queues tests left on the broker: every quorum queue is a Raft group
    the broker keeps running, and hundreds of them slow every later test. Only queues
    without consumers: another test session on this broker may still be using its own."""
    url, ctl = os.environ.get("EDGEBACK_AMQP_URL"), shutil.which("rabbitmqctl")
    if not url or not ctl:
        return
    listed = subprocess.run(
        [ctl, "-q", "list_queues", "name", "consumers"],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    rows = [line.split() for line in listed.stdout.splitlines()]
    names = [r[0] for r in rows if len(r) == 2 and r[1] == "0" and _TEST_QUEUE.match(r[0])]
    if names:
        try:
            asyncio.run(_delete_queues(url, names))
        except (OSError, aio_pika.exceptions.AMQPError) as exc:  # a clean-up, not a test
            print(f"\nleft {len(names)} test queues on the broker: {exc}")


async def _delete_queues(url: str, names: list[str]) -> None:
    async with await aio_pika.connect(url, timeout=30) as connection:
        channel = await connection.channel()
        for name in names:
            await channel.queue_delete(name)
