"""Upload bodies go through recycled buffers: no upload ever sees another's bytes."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
from tests.support.storage_node import TOKEN, chunk, make_pools, running_node

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
