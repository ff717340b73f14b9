"""The storage node as its own process, with no broker: it does not use the bus, so it
starts, answers ``/healthz`` and serves chunks whether ``EDGEBACK_AMQP_URL`` is unset or
points at a port where no RabbitMQ listens."""

from __future__ import annotations

import os
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from tests.support.processes import free_port, node_process
from tests.support.storage_node import TOKEN, make_pools, random_chunk

from edgeback_blocks.pool_client import PoolClient
from edgeback_core.retry import RetryPolicy


def broker_nowhere() -> str:
    return f"amqp://guest:guest@127.0.0.1:{free_port()}/"  # nothing listens there


@pytest.mark.parametrize("amqp_url", ["", "closed port"])
async def test_the_node_serves_health_and_chunks_without_a_broker(
    tmp_path: Path, amqp_url: str
) -> None:
    data_dir = tmp_path / "pools"
    data_dir.mkdir()
    make_pools(data_dir)
    env = {"EDGEBACK_AMQP_URL": broker_nowhere() if amqp_url else ""}
    with node_process(data_dir, log_path=tmp_path / "node.log", env=env) as node:
        health = node.service.healthy()
        assert health["status"] == "ok"
        assert health["checks"] == {"data_dir": True}  # no bus check: the node has no bus
        digest, record, _ = random_chunk(node.key("dd"))
        async with PoolClient(node.url, TOKEN, "dd", retry=RetryPolicy(retries=0)) as client:
            assert await client.put_chunk(digest, record) is True
            assert await client.get_chunk(digest) == record
        assert node.service.terminate(30) == 0
    events = node.service.log_events()
    stopped = [e for e in events if e.get("event") == "service.stopped"]
    assert [e["status"] for e in stopped] == ["stopped"]
    assert not [e for e in events if e.get("level") == "error"]


def test_the_node_is_unhealthy_when_its_data_directory_goes_away(tmp_path: Path) -> None:
    data_dir = tmp_path / "pools"
    data_dir.mkdir()
    make_pools(data_dir)
    with node_process(data_dir, log_path=tmp_path / "node.log") as node:
        assert node.service.healthy()["checks"] == {"data_dir": True}
        os.rename(data_dir, tmp_path / "moved")
        url = f"http://127.0.0.1:{node.service.health_port}/healthz"
        with pytest.raises(urllib.error.HTTPError) as answer:
            urllib.request.urlopen(url, timeout=5)
        assert answer.value.code == 503
        os.rename(tmp_path / "moved", data_dir)
        assert node.service.healthy()["status"] == "ok"
