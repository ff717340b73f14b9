"""Upload bodies: recycled buffers (no upload sees another's bytes), short and stalled bodies."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from structlog.testing import capture_logs
from tests.support.storage_node import TOKEN, Node, chunk, make_pools, running_node

from edgeback_blocks.chunk import ChunkDecoder


async def test_many_concurrent_uploads_of_all_sizes_store_their_own_bytes(tmp_path: Path) -> None:
    make_pools(tmp_path)
    async with running_node(tmp_path, threads=2) as node:
        key = node.key("dd")
        sizes = [4 << 20, 1, 100_000, 3 << 20, 7, 4 << 20] * 4  # a big body, then a small one...
        uploads = [chunk(key, os.urandom(size)) for size in sizes]
        async with node.client("dd") as client:
            created = await asyncio.gather(*(client.put_chunk(d, r) for d, r in uploads))
            assert all(created)
            for digest, record in uploads:
                stored = await client.get_chunk(digest)
                assert stored == record
                ChunkDecoder().decode(stored, key=key, expected=digest)


async def test_a_body_shorter_than_its_length_stores_nothing(tmp_path: Path) -> None:
    make_pools(tmp_path)
    async with running_node(tmp_path) as node:
        digest, record = chunk(node.key("dd"), os.urandom(50_000))
        host, port = node.running.host, node.running.port
        reader, writer = await asyncio.open_connection(host, port)
        head = (
            f"PUT /v1/pools/dd/chunks/{digest.hex()} HTTP/1.1\r\nHost: x\r\n"
            f"Authorization: Bearer {TOKEN}\r\nContent-Length: {len(record)}\r\n\r\n"
        )
        writer.write(head.encode() + record[:-100])
        await writer.drain()
        writer.close()  # the client goes away mid-body
        await writer.wait_closed()
        await asyncio.sleep(0.2)
        async with node.client("dd") as client:
            assert await client.missing([digest]) == {digest}
            # the node still serves uploads afterwards, with a recycled or a new buffer
            assert await client.put_chunk(digest, record)
        del reader
    chunk_files = [p for p in (tmp_path / "dd" / "chunks").rglob("*") if p.is_file()]
    assert [p.name for p in chunk_files] == [digest.hex()]


async def test_chunked_transfer_upload_still_works(tmp_path: Path) -> None:
    make_pools(tmp_path)
    async with running_node(tmp_path) as node:
        digest, record = chunk(node.key("dd"), os.urandom(70_000))

        async def pieces() -> AsyncIterator[bytes]:
            for start in range(0, len(record), 8192):
                yield record[start : start + 8192]

        url = f"{node.url}/v1/pools/dd/chunks/{digest.hex()}"
        headers = {"Authorization": f"Bearer {TOKEN}"}
        async with (
            aiohttp.ClientSession() as session,
            session.put(url, data=pieces(), headers=headers) as response,
        ):
            assert response.status == 201
        async with node.client("dd") as client:
            assert await client.get_chunk(digest) == record


async def _raw_send(node: Node, route: str, declared: int, sent: bytes, *, hold: bool) -> bytes:
    """``route`` ("METHOD /path"): ``sent`` bytes of a ``declared``-byte body, then idle
    (``hold``) or end the stream; the raw answer."""
    reader, writer = await asyncio.open_connection(node.running.host, node.running.port)
    head = (
        f"{route} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n"
        f"Content-Length: {declared}\r\nConnection: close\r\n\r\n"
    )
    writer.write(head.encode() + sent)
    await writer.drain()
    if not hold:
        writer.write_eof()  # the body ends early (aiohttp takes it as the connection lost)
    try:
        async with asyncio.timeout(10):
            got = await reader.readuntil(b"\r\n\r\n")
        length = next(
            int(line.split(b":")[1])
            for line in got.split(b"\r\n")
            if line.lower().startswith(b"content-length:")
        )
        return got + await reader.readexactly(length)
    except asyncio.IncompleteReadError as exc:
        return exc.partial  # the connection was gone: no answer
    finally:
        writer.close()


@pytest.mark.parametrize("route", ["chunk", "manifest", "checkpoint", "missing"])
async def test_a_short_body_is_refused_with_a_stable_code_not_a_500(
    tmp_path: Path, route: str
) -> None:
    make_pools(tmp_path)
    async with running_node(tmp_path) as node:
        digest, record = chunk(node.key("dd"), os.urandom(50_000))
        path = {
            "chunk": f"PUT /v1/pools/dd/chunks/{digest.hex()}",
            "manifest": "PUT /v1/pools/dd/manifests/vm-1/disk-0/v1",
            "checkpoint": "PUT /v1/pools/dd/checkpoints/vm-1/disk-0/v1",
            "missing": "POST /v1/pools/dd/chunks/missing",
        }[route]
        with capture_logs() as logs:
            body = record[:-100] if route != "missing" else digest * 10
            await _raw_send(node, path, len(body) + 100, body, hold=False)
            await asyncio.sleep(0.1)  # the handler finishes after the socket is gone
        async with node.client("dd") as client:
            assert await client.missing([digest]) == {digest}
            status = await client.status()
            assert (status.manifests, status.checkpoints) == (0, 0)
    refused = [(e["event"], e.get("code")) for e in logs if e["log_level"] != "debug"]
    assert refused == [("request.refused", "body_incomplete")]


async def test_a_body_that_stops_arriving_is_a_408(tmp_path: Path) -> None:
    make_pools(tmp_path)
    async with running_node(tmp_path, body_read_timeout_s=0.3) as node:
        digest, record = chunk(node.key("dd"), os.urandom(50_000))
        path = f"PUT /v1/pools/dd/chunks/{digest.hex()}"
        answer = await _raw_send(node, path, len(record), record[:1000], hold=True)
    status_line, _, rest = answer.partition(b"\r\n")
    assert int(status_line.split()[1]) == 408
    assert json.loads(rest.partition(b"\r\n\r\n")[2])["code"] == "body_timeout"
