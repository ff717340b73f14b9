"""Garbage collection, manifest deletion and scrub on a real node over HTTP.

Space comes back, the pool's totals agree with a recount of the files on disk, and
chunks a client was recently told are present (pins) or that are young (grace) stay.
Scrub finds a corrupted and a deleted chunk file and takes them out of the index.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from tests.support.storage_node import (
    ADMIN_TOKEN,
    MANIFEST_KEY,
    Node,
    make_pools,
    manifest_of,
    random_chunk,
    running_node,
    scoped_token,
)

from edgeback_core.errors import ConflictError, NotFoundError, PermissionDeniedError

pytestmark = pytest.mark.integration


@pytest.fixture
async def node(tmp_path: Path) -> AsyncIterator[Node]:
    """A node whose pins last 50 ms, so tests can let them lapse."""
    make_pools(tmp_path)
    async with running_node(tmp_path, pin_ttl_s=0.05) as running:
        yield running


def recount(chunks_dir: Path) -> tuple[int, int]:
    """(files, bytes) of the chunk files actually on disk."""
    files = [p for p in chunks_dir.rglob("*") if p.is_file() and not p.name.startswith(".")]
    return len(files), sum(p.stat().st_size for p in files)


async def test_gc_reclaims_unreferenced_chunks_and_totals_match_the_disk(node: Node) -> None:
    key = node.key("dd")
    a, b, c = (random_chunk(key) for _ in range(3))
    async with node.client("dd") as client, node.client("dd", token=ADMIN_TOKEN) as admin:
        for digest, record, _ in (a, b, c):
            await client.put_chunk(digest, record)
        await client.put_manifest(
            "vm-1", "disk-0", "v1", manifest_of([a[0], b[0]]).encode(MANIFEST_KEY)
        )
        await client.put_manifest(
            "vm-1", "disk-0", "v2", manifest_of([b[0], c[0]]).encode(MANIFEST_KEY)
        )
        async with node.client("dd", token=scoped_token("host-dd")) as host:
            with pytest.raises(PermissionDeniedError):  # a backup host cannot delete restore points
                await host.delete_manifest("vm-1", "disk-0", "v2")
            with pytest.raises(PermissionDeniedError):
                await host.collect_garbage()
        await admin.delete_manifest("vm-1", "disk-0", "v2")
        await asyncio.sleep(0.12)  # pins lapse
        young = await admin.collect_garbage(grace_s=3600)
        assert (young.removed_chunks, young.kept_recent) == (0, 1)
        dry = await admin.collect_garbage(grace_s=0, dry_run=True)
        assert (dry.removed_chunks, dry.removed_bytes) == (1, len(c[1]))
        report = await admin.collect_garbage(grace_s=0)
        assert (report.manifests, report.referenced, report.examined) == (1, 2, 3)
        assert (report.removed_chunks, report.removed_bytes) == (1, len(c[1]))
        status = await client.status()
        assert (status.chunks, status.stored_bytes) == recount(node.data_dir / "dd" / "chunks")
        assert (status.chunks, status.manifests) == (2, 1)
        assert await client.missing([a[0], b[0], c[0]]) == {c[0]}
        with pytest.raises(NotFoundError):
            await client.get_chunk(c[0])
        # the collected chunk can come back: uploaded again, it is stored again
        assert await client.put_chunk(c[0], c[1]) is True


async def test_gc_keeps_chunks_a_client_was_just_told_are_present(tmp_path: Path) -> None:
    make_pools(tmp_path)
    async with running_node(tmp_path) as node:  # default pins: a day
        digest, record, _ = random_chunk(node.key("dd"))
        async with node.client("dd") as client, node.client("dd", token=ADMIN_TOKEN) as admin:
            await client.put_chunk(digest, record)
            report = await admin.collect_garbage(grace_s=0)
            assert (report.removed_chunks, report.kept_pinned) == (0, 1)
            assert await client.missing([digest]) == set()


async def test_gc_refuses_to_guess_when_a_checkpoint_is_unreadable(node: Node) -> None:
    async with node.client("dd") as client, node.client("dd", token=ADMIN_TOKEN) as admin:
        await client.put_checkpoint("vm-1", "disk-0", "v9", b"not a partial manifest")
        with pytest.raises(ConflictError):
            await admin.collect_garbage(grace_s=0)


async def test_scrub_moves_bad_and_vanished_chunks_out_of_the_index(node: Node) -> None:
    key = node.key("dd")
    good, bad, gone = (random_chunk(key) for _ in range(3))
    async with node.client("dd") as client, node.client("dd", token=ADMIN_TOKEN) as admin:
        for digest, record, _ in (good, bad, gone):
            await client.put_chunk(digest, record)
        sampled = await admin.scrub(sample=1)
        assert (sampled.checked, sampled.bad) == (1, ())
        chunks = node.data_dir / "dd" / "chunks"
        damaged = chunks / bad[0].hex()[:2] / bad[0].hex()
        data = bytearray(damaged.read_bytes())
        data[-10] ^= 0x40
        damaged.write_bytes(data)
        os.unlink(chunks / gone[0].hex()[:2] / gone[0].hex())
        report = await admin.scrub()
        assert report.checked == 3 and not report.outer_only
        found = {item.digest: item.code for item in report.bad}
        assert found.keys() == {bad[0].hex(), gone[0].hex()}
        assert found[gone[0].hex()] == "not_found"
        assert await client.missing([good[0], bad[0], gone[0]]) == {bad[0], gone[0]}
        assert [p.name.split(".")[0] for p in (node.data_dir / "dd" / "bad").iterdir()] == [
            bad[0].hex()
        ]
        status = await client.status()
        assert (status.chunks, status.stored_bytes) == recount(chunks)
        assert await client.put_chunk(bad[0], bad[1]) is True  # heals
        assert (await admin.scrub()).bad == ()


async def test_standard_pool_gc_removes_versions_without_a_manifest(node: Node) -> None:
    key = node.key("std")
    kept, dropped = random_chunk(key), random_chunk(key)
    async with node.client("std") as client, node.client("std", token=ADMIN_TOKEN) as admin:
        await client.put_chunk(kept[0], kept[1], version="v1")
        await client.put_chunk(dropped[0], dropped[1], version="v2")
        await client.put_manifest(
            "vm-1", "disk-0", "v1", manifest_of([kept[0]]).encode(MANIFEST_KEY)
        )
        await asyncio.sleep(0.12)
        report = await admin.collect_garbage(grace_s=0)
        assert (report.versions_removed, report.removed_chunks) == (1, 1)
        assert not (node.data_dir / "std" / "versions" / "v2").exists()
        assert (await client.status()).chunks == 1
