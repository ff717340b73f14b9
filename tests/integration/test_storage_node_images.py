"""The node's disk images against a node process: ranges, corruption, capabilities.

A disk version of 3 chunks plus 1000 bytes (data, zero, data, short data) is uploaded
straight to the node; its image is read by capability URL without a bearer token.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
import pytest
from tests.support.images import create_capability, revoke_capability
from tests.support.processes import NodeProcess, node_process_async
from tests.support.storage_node import MANIFEST_KEY, TOKEN, chunk, make_pools

from edgeback_blocks.chunk import CHUNK_SIZE, chunk_digest
from edgeback_blocks.ids import ChunkDigest, PoolId
from edgeback_blocks.manifest import BackupType, Manifest, ManifestHeader, created_ms
from edgeback_blocks.pool_client import PoolClient
from edgeback_pools.pool_meta import create_pool

pytestmark = pytest.mark.integration

TAIL = 1000
SIZE = 3 * CHUNK_SIZE + TAIL
VERSION = "v1"


def contents() -> list[bytes | None]:
    return [
        bytes(range(256)) * (CHUNK_SIZE // 256),
        None,
        b"abcdefgh" * (CHUNK_SIZE // 8),
        b"\xa5" * (TAIL - 1) + b"\x5a",
    ]


def image_bytes() -> bytes:
    return b"".join(bytes(CHUNK_SIZE) if c is None else c for c in contents())


@pytest.fixture
async def node(tmp_path: Path) -> AsyncIterator[NodeProcess]:
    make_pools(tmp_path)
    create_pool(tmp_path, "secret", "dedup", encrypted=True)
    async with node_process_async(tmp_path, threads=2) as running:
        key = running.key("dd")
        entries: list[ChunkDigest | None] = []
        async with PoolClient(running.url, TOKEN, "dd") as client:
            for data in contents():
                if data is None:
                    entries.append(None)
                    continue
                digest, record = chunk(key, data)
                await client.put_chunk(digest, record)
                entries.append(digest)
            header = ManifestHeader(
                vm_id="vm-1", disk_id="disk-0", image="rbd/v@s", image_size=SIZE,
                created_ms=created_ms(datetime.now(UTC)), backup_type=BackupType.FULL,
                pool_id=PoolId("dd"), version=VERSION,
            )  # fmt: skip
            manifest = Manifest(header=header, entries=tuple(entries))
            await client.put_manifest("vm-1", "disk-0", VERSION, manifest.encode(MANIFEST_KEY))
        yield running


async def image_url(node: NodeProcess, ttl_s: float = 600.0) -> tuple[str, str]:
    status, body = await create_capability(node.url, "dd", "vm-1", "disk-0", VERSION, ttl_s=ttl_s)
    assert status == 201, body
    return node.url + body["path"], body["capability"]["handle"]


async def get(url: str, range_: str | None = None) -> tuple[int, dict[str, str], bytes]:
    headers = {} if range_ is None else {"Range": range_}
    async with aiohttp.ClientSession() as session, session.get(url, headers=headers) as response:
        return response.status, dict(response.headers), await response.read()


async def test_head_says_the_size_and_ranges(node: NodeProcess) -> None:
    url, _ = await image_url(node)
    async with aiohttp.ClientSession() as session, session.head(url) as response:
        assert response.status == 200
        assert response.headers["Content-Length"] == str(SIZE)
        assert response.headers["Accept-Ranges"] == "bytes"


async def test_range_edges(node: NodeProcess) -> None:
    url, _ = await image_url(node)
    want = image_bytes()
    cases = {
        "bytes=0-0": (0, 1),  # first byte
        f"bytes={SIZE - 1}-{SIZE - 1}": (SIZE - 1, SIZE),  # last byte, unaligned size
        f"bytes={CHUNK_SIZE - 10}-{2 * CHUNK_SIZE + 9}": (CHUNK_SIZE - 10, 2 * CHUNK_SIZE + 10),
        f"bytes={3 * CHUNK_SIZE - 5}-": (3 * CHUNK_SIZE - 5, SIZE),  # into the short tail
        "bytes=-7": (SIZE - 7, SIZE),
        f"bytes=5-{SIZE + 100}": (5, SIZE),  # end clipped
    }
    for header, (start, stop) in cases.items():
        status, headers, body = await get(url, header)
        assert status == 206, header
        assert headers["Content-Range"] == f"bytes {start}-{stop - 1}/{SIZE}", header
        assert body == want[start:stop], header
    status, _, body = await get(url)
    assert status == 200 and body == want


async def test_past_the_end_is_416(node: NodeProcess) -> None:
    url, _ = await image_url(node)
    status, headers, body = await get(url, f"bytes={SIZE}-")
    assert status == 416 and headers["Content-Range"] == f"bytes */{SIZE}"
    assert b"range_not_satisfiable" in body


async def test_a_corrupted_chunk_fails_the_read_and_sends_no_wrong_byte(
    node: NodeProcess,
) -> None:
    url, handle = await image_url(node)
    want = image_bytes()
    third = next(
        p for p in (node.data_dir / "dd" / "chunks").rglob("*") if p.is_file()
        and (p.read_bytes()[16:48]).hex() == _digest_hex(node, 2)
    )  # fmt: skip
    record = bytearray(third.read_bytes())
    record[-1] ^= 0x01
    third.write_bytes(bytes(record))
    # the bad chunk first in the range: a clean problem answer
    status, _, body = await get(url, f"bytes={2 * CHUNK_SIZE}-{2 * CHUNK_SIZE + 99}")
    assert status == 422 and b"digest_mismatch" in body
    # the bad chunk after good bytes were sent: the answer is cut short, never wrong
    received = bytearray()
    with pytest.raises(aiohttp.ClientPayloadError):
        async with (
            aiohttp.ClientSession() as session,
            session.get(url, headers={"Range": f"bytes=0-{3 * CHUNK_SIZE - 1}"}) as response,
        ):
            assert response.status == 206
            async for piece in response.content.iter_any():
                received += piece
    assert len(received) < 3 * CHUNK_SIZE
    assert bytes(received) == want[: len(received)]
    await asyncio.sleep(0.2)
    events = [e for e in node.service.log_events() if e.get("event") == "image.read_aborted"]
    assert events and events[-1]["code"] == "digest_mismatch"
    # the node remembers the chunk, so the restore that aborts can name it
    async with PoolClient(node.url, TOKEN, "dd") as client:
        listed = {item.handle: item for item in await client.list_capabilities()}
    failure = listed[handle].failure
    assert failure is not None and failure.code == "digest_mismatch"
    assert (failure.chunk, failure.index) == (_digest_hex(node, 2), 2)


def _digest_hex(node: NodeProcess, index: int) -> str:
    data = contents()[index]
    assert data is not None
    return chunk_digest(node.key("dd"), data).hex()


async def test_expired_revoked_and_unknown_capabilities(node: NodeProcess) -> None:
    url, handle = await image_url(node)
    assert (await get(url, "bytes=0-0"))[0] == 206
    assert await revoke_capability(node.url, "dd", handle) == 204
    status, _, body = await get(url, "bytes=0-0")
    assert status == 410 and b"capability_revoked" in body
    short, _ = await image_url(node, ttl_s=0.5)
    await asyncio.sleep(0.7)
    status, _, body = await get(short, "bytes=0-0")
    assert status == 410 and b"capability_expired" in body
    status, _, body = await get(url[:-8] + "AAAAAAAA", "bytes=0-0")
    assert status == 404 and b"capability_not_found" in body
    assert await revoke_capability(node.url, "dd", "0" * 16) == 404


async def test_creation_checks_the_mac_and_refuses_encrypted_pools(node: NodeProcess) -> None:
    status, body = await create_capability(
        node.url, "dd", "vm-1", "disk-0", VERSION, mac_key=bytes(32)
    )
    assert status == 422 and body["code"] == "manifest_invalid"
    status, body = await create_capability(node.url, "secret", "vm-1", "disk-0", VERSION)
    assert status == 409 and body["code"] == "pool_encrypted"
    status, body = await create_capability(node.url, "dd", "vm-1", "disk-0", VERSION, ttl_s=1e9)
    assert status == 400 and body["code"] == "invalid_input"
    status, body = await create_capability(
        node.url, "dd", "vm-1", "disk-0", VERSION, token="reader-dd-token-0123456789abcdef"
    )
    assert status in (401, 403)


async def test_capabilities_survive_a_restart_and_need_no_token(tmp_path: Path) -> None:
    make_pools(tmp_path)
    async with node_process_async(tmp_path) as first:
        async with PoolClient(first.url, TOKEN, "dd") as client:
            digest, record = chunk(first.key("dd"), b"x" * CHUNK_SIZE)
            await client.put_chunk(digest, record)
            header = ManifestHeader(
                vm_id="vm-1", disk_id="disk-0", image="rbd/v@s", image_size=CHUNK_SIZE,
                created_ms=created_ms(datetime.now(UTC)), backup_type=BackupType.FULL,
                pool_id=PoolId("dd"), version=VERSION,
            )  # fmt: skip
            data = Manifest(header=header, entries=(digest,)).encode(MANIFEST_KEY)
            await client.put_manifest("vm-1", "disk-0", VERSION, data)
        status, body = await create_capability(first.url, "dd", "vm-1", "disk-0", VERSION)
        assert status == 201
    async with node_process_async(tmp_path) as second:
        status, _, got = await get(second.url + body["path"], "bytes=0-3")
        assert status == 206 and got == b"xxxx"
