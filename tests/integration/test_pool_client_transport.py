"""The pool client's transport against a real node: uploads given as parts, keep-alive
connections (bounded, reused, replaced when the node closed them), cancellation mid-request,
a node that hangs and one that is not there. Socket states are read from ``/proc/net/tcp``
(Linux); a node that must hang runs in a child process that is stopped with SIGSTOP."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from tests.support.processes import ESTABLISHED, free_port, node_process_async
from tests.support.storage_node import ADMIN_TOKEN, TOKEN, make_pools

from edgeback_blocks.chunk import ChunkEncoder, Compression, chunk_digest
from edgeback_blocks.ids import ChunkDigest, PoolKey
from edgeback_blocks.pool_client import PoolClient
from edgeback_core.errors import DeadlineExceededError, UnavailableError
from edgeback_core.retry import RetryPolicy
from edgeback_core.settings import Secret
from edgeback_dedup.app import RunningNode, serve
from edgeback_dedup.settings import DedupSettings
from edgeback_pools.local import LocalPool
from edgeback_pools.pool_meta import read_pool

MIB = 1024 * 1024
TIME_WAIT = "06"
NO_RETRY = RetryPolicy(retries=0)


@asynccontextmanager
async def node_on(data_dir: Path, port: int = 0) -> AsyncIterator[RunningNode]:
    settings = DedupSettings(
        data_dir=str(data_dir), token=Secret(TOKEN), admin_token=Secret(ADMIN_TOKEN), port=port
    )
    async with serve(settings) as running:
        yield running


def key_of(data_dir: Path, pool: str = "dd") -> PoolKey:
    return PoolKey(read_pool(data_dir / pool)[1])


def parts_of(
    key: PoolKey, data: bytes, compression: Compression
) -> tuple[ChunkDigest, tuple[bytes, memoryview]]:
    digest = chunk_digest(key, data)
    header, payload = ChunkEncoder(compression).encode_parts(data, digest)
    return digest, (header, memoryview(payload))


def client_sockets(port: int) -> list[str]:
    """States of this host's IPv4 sockets connected to ``port`` (the client ends)."""
    states = []
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if int(fields[2].rsplit(":", 1)[1], 16) == port:
            states.append(fields[3])
    return states


@pytest.mark.parametrize("compression", [Compression.NONE, Compression.FAST])
async def test_an_upload_given_as_parts_is_stored_and_reads_back_whole(
    tmp_path: Path, compression: Compression
) -> None:
    make_pools(tmp_path)
    key = key_of(tmp_path)
    data = os.urandom(2 * MIB) + bytes(2 * MIB)  # compressible by half
    digest, (header, payload) = parts_of(key, data, compression)
    whole = bytes(header) + bytes(payload)
    # three parts of three buffer types, sent back to back as one body
    record = (bytearray(header), payload[: MIB // 3], bytes(payload[MIB // 3 :]))
    async with node_on(tmp_path) as node, PoolClient(node.url, TOKEN, "dd") as client:
        assert await client.put_chunk(digest, record) is True
        assert await client.put_chunk(digest, record) is False
        assert await client.get_chunk(digest) == whole
    stored = tmp_path / "dd" / "chunks" / digest.hex()[:2] / digest.hex()
    assert stored.read_bytes() == whole


async def test_a_local_pool_takes_an_upload_given_as_parts(tmp_path: Path) -> None:
    make_pools(tmp_path)
    digest, record = parts_of(key_of(tmp_path), os.urandom(MIB), Compression.NONE)
    async with LocalPool.open(tmp_path / "dd") as pool:
        assert await pool.put_chunk(digest, record) is True
        assert await pool.get_chunk(digest) == b"".join(record)


async def test_concurrent_requests_share_at_most_connections_kept_alive(tmp_path: Path) -> None:
    make_pools(tmp_path)
    key = key_of(tmp_path)
    chunks = [parts_of(key, os.urandom(256 * 1024), Compression.NONE) for _ in range(16)]
    async with (
        node_on(tmp_path) as node,
        PoolClient(node.url, TOKEN, "dd", connections=2) as client,
    ):
        created = await asyncio.gather(*(client.put_chunk(d, r) for d, r in chunks))
        records = await asyncio.gather(*(client.get_chunk(d) for d, _ in chunks))
        states = client_sockets(node.port)
    assert all(created)
    assert records == [b"".join(r) for _, r in chunks]
    # 32 requests, none on a connection of its own: 1 or 2 open, none closed (TIME_WAIT)
    assert 1 <= states.count(ESTABLISHED) <= 2
    assert TIME_WAIT not in states


async def test_a_connection_the_node_closed_while_idle_is_replaced_transparently(
    tmp_path: Path,
) -> None:
    make_pools(tmp_path)
    digest, record = parts_of(key_of(tmp_path), os.urandom(4 * MIB), Compression.NONE)
    port = free_port()
    # one connection, no retries by the client: only the replacement can save a call
    async with PoolClient(
        f"http://127.0.0.1:{port}", TOKEN, "dd", connections=1, retry=NO_RETRY
    ) as client:
        async with node_on(tmp_path, port):
            await client.status()  # leaves the connection idle in the pool
        # each restart closes the pooled connection; a GET, then a 4 MiB PUT, reuse it
        async with node_on(tmp_path, port):
            assert (await client.status()).name == "dd"
        async with node_on(tmp_path, port):
            assert await client.put_chunk(digest, record) is True


async def test_a_cancelled_upload_leaves_the_client_usable(tmp_path: Path) -> None:
    make_pools(tmp_path)
    key = key_of(tmp_path)
    stuck, stuck_record = parts_of(key, os.urandom(4 * MIB), Compression.NONE)
    later, later_record = parts_of(key, os.urandom(MIB), Compression.NONE)
    async with (
        node_process_async(tmp_path, log_path=tmp_path / "node.log") as node,
        PoolClient(node.url, TOKEN, "dd", connections=1, retry=NO_RETRY, timeout_s=30) as client,
    ):
        await client.status()
        node.freeze()
        upload = asyncio.create_task(client.put_chunk(stuck, stuck_record))
        await node.request_bytes_arrived()
        upload.cancel()
        with pytest.raises(asyncio.CancelledError):
            await upload
        node.thaw()
        # the one connection thread is free, and serves whole requests again
        assert await client.put_chunk(later, later_record) is True
        assert await client.get_chunk(later) == b"".join(later_record)
        assert (await client.status()).name == "dd"


async def test_a_request_cancelled_while_the_node_hangs_does_not_hold_its_thread(
    tmp_path: Path,
) -> None:
    make_pools(tmp_path)
    digest, record = parts_of(key_of(tmp_path), os.urandom(4 * MIB), Compression.NONE)
    async with node_process_async(tmp_path, log_path=tmp_path / "node.log") as node:
        node.freeze()
        async with PoolClient(node.url, TOKEN, "dd", connections=1, timeout_s=30) as client:
            upload = asyncio.create_task(client.put_chunk(digest, record))
            await node.request_bytes_arrived()
            upload.cancel()
            with pytest.raises(asyncio.CancelledError):
                await upload
            cancelled = time.monotonic()
        # leaving waits for the client's threads: without the socket shut down, the
        # thread would sit in its send or receive until the 30 s timeout
        assert time.monotonic() - cancelled < 5


async def test_an_unreachable_node_is_unavailable_at_once() -> None:
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there any more
    started = time.monotonic()
    async with PoolClient(
        url, TOKEN, "dd", retry=RetryPolicy(retries=1, base_delay=0.01)
    ) as client:
        with pytest.raises(UnavailableError) as failed:
            await client.status()
    assert time.monotonic() - started < 2
    assert failed.value.details["url"] == f"{url}/v1/pools/dd"


async def test_a_node_that_stops_answering_is_a_deadline_exceeded(tmp_path: Path) -> None:
    make_pools(tmp_path)
    async with (
        node_process_async(tmp_path, log_path=tmp_path / "node.log") as node,
        PoolClient(node.url, TOKEN, "dd", retry=RetryPolicy(retries=1), timeout_s=0.3) as client,
    ):
        await client.status()
        node.freeze()
        started = time.monotonic()
        with pytest.raises(DeadlineExceededError):
            await client.status()
        # two attempts of one 0.3 s wait each, not a hang
        assert time.monotonic() - started < 3
