"""A node starts with what is good: a broken pool or a corrupt manifest is quarantined."""

from __future__ import annotations

from pathlib import Path

import pytest
from structlog.testing import capture_logs
from tests.support.storage_node import (
    MANIFEST_KEY,
    TOKEN,
    make_pools,
    manifest_of,
    random_chunk,
    running_node,
)

from edgeback_blocks.pool_client import PoolClient
from edgeback_core.errors import QuarantinedError
from edgeback_core.retry import RetryPolicy


async def _store_two_manifests(data_dir: Path) -> bytes:
    """Two manifests in pool ``dd``; the second one then corrupted on disk. The first's bytes."""
    async with running_node(data_dir) as node, node.client("dd") as client:
        digest, record, _ = random_chunk(node.key("dd"), 1000)
        await client.put_chunk(digest, record)
        good = manifest_of([digest]).encode(MANIFEST_KEY)
        await client.put_manifest("vm-1", "disk-0", "v1", good)
        await client.put_manifest(
            "vm-1", "disk-0", "v2", manifest_of([digest, None]).encode(MANIFEST_KEY)
        )
    bad = data_dir / "dd" / "manifests" / "vm-1" / "disk-0" / "v2.ebm"
    data = bytearray(bad.read_bytes())
    data[len(data) // 2] ^= 0xFF
    bad.write_bytes(bytes(data))
    return good


async def test_a_corrupt_manifest_and_a_broken_pool_leave_the_rest_served(tmp_path: Path) -> None:
    make_pools(tmp_path)
    good = await _store_two_manifests(tmp_path)
    (tmp_path / "std" / "pool.json").write_text('{"id": "x", "kind": "nonsense"')
    with capture_logs() as logs:
        node_cm = running_node(tmp_path)
        node = await node_cm.__aenter__()
    try:
        async with node.client("dd") as dd, node.client("std") as std, node.client("tiny") as tiny:
            status = await dd.status()
            assert status.manifests == 1
            assert [(q.what, q.name, q.code) for q in status.quarantined] == [
                ("manifest", "vm-1/disk-0/v2", "manifest_invalid")
            ]
            assert [item.version for item in await dd.list_manifests()] == ["v1"]
            assert await dd.get_manifest("vm-1", "disk-0", "v1") == good
            with pytest.raises(QuarantinedError):
                await dd.get_manifest("vm-1", "disk-0", "v2")
            with pytest.raises(QuarantinedError) as broken:
                await std.status()
            assert broken.value.details["reason_code"] == "config_error"
            assert (await tiny.status()).name == "tiny"
            assert [p.name for p in await tiny.list_pools()] == ["dd", "tiny"]
    finally:
        await node_cm.__aexit__(None, None, None)
    events = {(e["event"], e.get("pool") or e.get("manifest")) for e in logs}
    assert ("pool.quarantined", "std") in events
    assert ("manifest.quarantined", "vm-1/disk-0/v2") in events


async def test_a_pool_with_a_wrong_key_is_quarantined_and_left_untouched(tmp_path: Path) -> None:
    make_pools(tmp_path)
    (tmp_path / "std" / "pool.key").write_bytes(b"wrong length")
    async with running_node(tmp_path) as node:
        async with PoolClient(node.url, TOKEN, "std", retry=RetryPolicy(retries=0)) as std:
            with pytest.raises(QuarantinedError) as refused:
                await std.list_manifests()
        assert refused.value.details["reason_code"] == "integrity_error"
    assert (tmp_path / "std" / "pool.key").read_bytes() == b"wrong length"  # left as it was
