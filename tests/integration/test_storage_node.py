"""The storage node over real HTTP on loopback: chunks, manifests, dedup and standard pools."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp
import pytest
from tests.support.storage_node import (
    MANIFEST_KEY,
    Node,
    chunk,
    files_under,
    make_pools,
    manifest_of,
    random_chunk,
    running_node,
)

from edgeback_blocks.chunk import CHUNK_SIZE, ChunkDecoder
from edgeback_blocks.ids import ChunkDigest
from edgeback_core.errors import (
    ConflictError,
    DigestMismatchError,
    IntegrityError,
    ManifestFormatError,
)


@pytest.fixture
async def node(tmp_path: Path):
    make_pools(tmp_path)
    async with running_node(tmp_path) as running:
        yield running


async def test_chunk_round_trip_and_server_side_dedup(node: Node) -> None:
    key = node.key("dd")
    digest, record, data = random_chunk(key)
    async with node.client("dd") as client:
        assert await client.missing([digest]) == {digest}
        assert await client.put_chunk(digest, record) is True
        assert await client.put_chunk(digest, record) is False  # already there: no write
        assert await client.missing([digest]) == set()
        fetched = await client.get_chunk(digest)
        assert ChunkDecoder().decode(fetched, key=key, expected=digest) == data
        status = await client.status()
    assert (status.chunks, status.stored_bytes) == (1, len(record))
    assert files_under(node.data_dir / "dd") == [f"chunks/{digest.hex()[:2]}/{digest.hex()}"]


async def test_missing_answers_in_batches(node: Node) -> None:
    key = node.key("dd")
    present = [random_chunk(key, 1000) for _ in range(3)]
    absent = [ChunkDigest(bytes([i % 256, i // 256]) * 16) for i in range(5000)]
    async with node.client("dd") as client:
        for digest, record, _ in present:
            await client.put_chunk(digest, record)
        asked = [d for d, _, _ in present] + absent
        assert await client.missing(asked) == set(absent)


async def test_concurrent_uploads_of_one_chunk_write_it_once(node: Node) -> None:
    digest, record, _ = random_chunk(node.key("dd"), 2_000_000)
    async with node.client("dd") as client:
        created = await asyncio.gather(*(client.put_chunk(digest, record) for _ in range(6)))
        assert sorted(created) == [False] * 5 + [True]
        assert (await client.status()).chunks == 1


async def test_upload_with_wrong_digest_is_refused_and_stores_nothing(node: Node) -> None:
    key = node.key("dd")
    digest, record, _ = random_chunk(key)
    other, _, _ = random_chunk(key)
    tampered = bytearray(record)
    tampered[-1] ^= 0xFF
    async with node.client("dd") as client:
        with pytest.raises(DigestMismatchError) as header_names_other:
            await client.put_chunk(other, record)  # header says digest, URL says other
        with pytest.raises(DigestMismatchError) as data_differs:
            await client.put_chunk(digest, bytes(tampered))
        assert await client.missing([digest, other]) == {digest, other}
        assert (await client.status()).chunks == 0
    assert header_names_other.value.code == "digest_mismatch"
    assert digest.hex() in data_differs.value.message
    assert files_under(node.data_dir / "dd") == []


async def test_upload_status_codes_on_the_wire(node: Node) -> None:
    key = node.key("dd")
    digest, record, _ = random_chunk(key)
    other, _, _ = random_chunk(key)
    headers = {"Authorization": "Bearer data-token-0123456789abcdef"}
    async with aiohttp.ClientSession(headers=headers) as http:
        base = f"{node.url}/v1/pools/dd/chunks"
        async with http.put(f"{base}/{other.hex()}", data=record) as r:
            assert r.status == 422
            assert (await r.json())["code"] == "digest_mismatch"
        async with http.put(f"{base}/{digest.hex()}", data=record) as r:
            assert r.status == 201
        async with http.put(f"{base}/{digest.hex()}", data=record) as r:
            assert r.status == 200
        async with http.post(f"{base}/missing", data=b"x" * 33) as r:
            assert r.status == 400
            assert (await r.json())["code"] == "invalid_input"


async def test_corrupted_chunk_on_disk_fails_decode_naming_the_chunk(node: Node) -> None:
    key = node.key("dd")
    digest, record, _ = random_chunk(key)
    async with node.client("dd") as client:
        await client.put_chunk(digest, record)
        path = node.data_dir / "dd" / "chunks" / digest.hex()[:2] / digest.hex()
        damaged = bytearray(path.read_bytes())
        damaged[len(damaged) // 2] ^= 0x01
        path.write_bytes(damaged)
        fetched = await client.get_chunk(digest)
    with pytest.raises(IntegrityError) as failure:
        ChunkDecoder().decode(fetched, key=key, expected=digest)
    assert digest.hex() in str(failure.value)


async def test_standard_pool_keeps_versions_apart_dedup_pool_shares(node: Node) -> None:
    data = (b"the same disk content " * 200_000)[:CHUNK_SIZE]
    ratios: dict[str, float] = {}
    for pool in ("dd", "std"):
        digest, record = chunk(node.key(pool), data)
        async with node.client(pool) as client:
            for version in ("v1", "v2"):
                await client.put_chunk(digest, record, version=version)
                assert await client.missing([digest], version=version) == set()
                manifest = manifest_of([digest, None]).encode(
                    MANIFEST_KEY
                )  # a data chunk, a zero one
                assert await client.put_manifest("vm-1", "disk-0", version, manifest)
            status = await client.status()
        assert status.logical_bytes == 2 * len(data)
        assert status.dedup_ratio is not None
        ratios[pool] = status.dedup_ratio
        expected_chunks = 1 if pool == "dd" else 2
        assert (status.chunks, status.stored_bytes) == (
            expected_chunks,
            expected_chunks * len(record),
        )
    assert ratios["dd"] == pytest.approx(2 * ratios["std"], rel=0.01)


async def test_standard_pool_needs_a_version(node: Node) -> None:
    digest, record, _ = random_chunk(node.key("std"))
    async with node.client("std") as client:
        with pytest.raises(Exception) as failure:
            await client.put_chunk(digest, record)
        assert getattr(failure.value, "code", None) == "invalid_input"
        assert await client.missing([digest], version="v9") == {digest}


async def test_manifests_round_trip_immutable_and_checked(node: Node) -> None:
    key = node.key("dd")
    digest, record, _ = random_chunk(key)
    unknown, _, _ = random_chunk(key)
    manifest = manifest_of([digest, None, digest]).encode(MANIFEST_KEY)
    async with node.client("dd") as client:
        with pytest.raises(ConflictError, match="does not hold"):
            await client.put_manifest("vm-1", "disk-0", "v1", manifest)
        await client.put_chunk(digest, record)
        assert await client.put_manifest("vm-1", "disk-0", "v1", manifest) is True
        assert await client.put_manifest("vm-1", "disk-0", "v1", manifest) is False
        assert await client.get_manifest("vm-1", "disk-0", "v1") == manifest
        with pytest.raises(ConflictError):
            await client.put_manifest(
                "vm-1", "disk-0", "v1", manifest_of([digest]).encode(MANIFEST_KEY)
            )
        with pytest.raises(ManifestFormatError):
            await client.put_manifest("vm-1", "disk-0", "v2", b"not a manifest" * 4)
        with pytest.raises(ConflictError):
            await client.put_manifest(
                "vm-1", "disk-0", "v3", manifest_of([unknown]).encode(MANIFEST_KEY)
            )
        listed = await client.list_manifests(vm="vm-1")
        assert [(m.vm, m.disk, m.version, m.size) for m in listed] == [
            ("vm-1", "disk-0", "v1", len(manifest))
        ]
        assert (await client.status()).logical_bytes == 2 * 4 * 1024 * 1024


async def test_manifest_must_describe_the_disk_it_is_stored_under(node: Node) -> None:
    async with node.client("dd") as client:
        with pytest.raises(Exception) as failure:
            await client.put_manifest(
                "vm-2", "disk-0", "v1", manifest_of([None]).encode(MANIFEST_KEY)
            )
    assert getattr(failure.value, "code", None) == "invalid_input"


async def test_checkpoints_replace_and_delete(node: Node) -> None:
    async with node.client("dd") as client:
        assert await client.get_checkpoint("vm-1", "disk-0", "v1") is None
        await client.put_checkpoint("vm-1", "disk-0", "v1", b"first")
        await client.put_checkpoint("vm-1", "disk-0", "v1", b"second")
        assert await client.get_checkpoint("vm-1", "disk-0", "v1") == b"second"
        await client.delete_checkpoint("vm-1", "disk-0", "v1")
        assert await client.get_checkpoint("vm-1", "disk-0", "v1") is None


async def test_index_and_totals_survive_a_restart(tmp_path: Path) -> None:
    make_pools(tmp_path)
    async with running_node(tmp_path) as node:
        digest, record, _ = random_chunk(node.key("dd"))
        async with node.client("dd") as client:
            await client.put_chunk(digest, record)
            await client.put_manifest(
                "vm-1", "disk-0", "v1", manifest_of([digest]).encode(MANIFEST_KEY)
            )
            before = await client.status()
    leftover = tmp_path / "dd" / "chunks" / digest.hex()[:2] / f".{digest.hex()}.dead.tmp"
    leftover.write_bytes(b"half a chunk")  # what a crash mid-write leaves
    async with running_node(tmp_path) as node, node.client("dd") as client:
        after = await client.status()
        # capacity, used and free are the filesystem's, which other work on it moves
        same = ("id", "kind", "key_id", "chunks", "stored_bytes", "logical_bytes", "manifests")
        assert {f: getattr(after, f) for f in same} == {f: getattr(before, f) for f in same}
        assert after.dedup_ratio == before.dedup_ratio
        assert await client.missing([digest]) == set()
    assert not leftover.exists()
