"""The pool client's HTTP stack against aiohttp, side by side in one run.

Measures what ``docs/data-path.md`` needs to decide whether the project keeps two HTTP
stacks (aiohttp for the platform client, ``http.client`` threads for the pool client):

- import time of the CLI (``import edgeback_cli.main``) as it is, and with aiohttp
  imported too (what an aiohttp pool client would add), each ``--imports`` times in
  alternation, median wall time of a fresh interpreter;
- upload throughput of ``--chunks`` distinct 4 MiB chunk records (random data, stored
  raw) to a storage node running as its own process, ``--in-flight`` at a time, with
  the pool client (header and payload sent without joining) and with an aiohttp session
  (one joined body, as the pool client did before); the stacks alternate over
  ``--rounds`` rounds, each into a fresh dedup pool, with client CPU seconds.

    .venv/bin/python -m tests.bench.bench_http_stacks [--chunks 256] [--rounds 2]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

import aiohttp
from tests.support.processes import node_process_async
from tests.support.storage_node import TOKEN

from edgeback_blocks.chunk import CHUNK_SIZE, ChunkEncoder, Compression, chunk_digest
from edgeback_blocks.ids import ChunkDigest, PoolKey
from edgeback_blocks.pool_client import OCTETS, PoolClient
from edgeback_blocks.pool_wire import PoolKind
from edgeback_pools.pool_meta import create_pool

Record = tuple[ChunkDigest, bytes, bytes]
Uploader = Callable[[str, str, Sequence[Record], int], Awaitable[None]]


def import_seconds(statement: str) -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", statement], check=True)
    return time.perf_counter() - started


def measure_imports(times: int) -> dict[str, float]:
    statements = {
        "cli": "import edgeback_cli.main",
        "cli+aiohttp": "import aiohttp, edgeback_cli.main",
    }
    samples: dict[str, list[float]] = {name: [] for name in statements}
    for _ in range(times):
        for name, statement in statements.items():
            samples[name].append(import_seconds(statement))
    return {name: statistics.median(values) for name, values in samples.items()}


def records(key: PoolKey, count: int) -> list[Record]:
    """``count`` distinct incompressible chunks as (digest, header, payload)."""
    encoder = ChunkEncoder(Compression.NONE)
    base = os.urandom(CHUNK_SIZE)
    out: list[Record] = []
    for index in range(count):
        data = index.to_bytes(8, "little") + base[8:]
        digest = chunk_digest(key, data)
        header, payload = encoder.encode_parts(data, digest)
        out.append((digest, header, bytes(payload)))
    return out


async def _bounded(jobs: Sequence[Callable[[], Awaitable[None]]], in_flight: int) -> None:
    gate = asyncio.Semaphore(in_flight)

    async def one(job: Callable[[], Awaitable[None]]) -> None:
        async with gate:
            await job()

    async with asyncio.TaskGroup() as group:
        for job in jobs:
            group.create_task(one(job))


async def upload_http_client(url: str, pool: str, batch: Sequence[Record], n: int) -> None:
    async with PoolClient(url, TOKEN, pool, connections=n) as client:

        def job(record: Record) -> Callable[[], Awaitable[None]]:
            async def put() -> None:
                digest, header, payload = record
                assert await client.put_chunk(digest, (header, payload))

            return put

        await _bounded([job(r) for r in batch], n)


async def upload_aiohttp(url: str, pool: str, batch: Sequence[Record], n: int) -> None:
    headers = {"Authorization": f"Bearer {TOKEN}", **OCTETS}
    connector = aiohttp.TCPConnector(limit=n, keepalive_timeout=60)
    async with aiohttp.ClientSession(url, connector=connector, headers=headers) as session:

        def job(record: Record) -> Callable[[], Awaitable[None]]:
            async def put() -> None:
                digest, header, payload = record
                path = f"/v1/pools/{pool}/chunks/{digest.hex()}"
                async with session.put(path, data=header + payload) as answer:
                    assert answer.status == 201, answer.status

            return put

        await _bounded([job(r) for r in batch], n)


STACKS: dict[str, Uploader] = {"http.client": upload_http_client, "aiohttp": upload_aiohttp}


async def measure_uploads(args: argparse.Namespace, workdir: Path) -> list[dict[str, object]]:
    data_dir = workdir / "pools"
    data_dir.mkdir()
    names = list(STACKS)
    order = [n for r in range(args.rounds) for n in (names if r % 2 == 0 else names[::-1])]
    for index in range(len(order)):
        create_pool(data_dir, f"p{index}", PoolKind.DEDUP)
    results: list[dict[str, object]] = []
    async with node_process_async(data_dir, log_path=workdir / "node.log") as node:
        for index, name in enumerate(order):
            pool = f"p{index}"
            batch = records(node.key(pool), args.chunks)
            cpu, wall = time.process_time(), time.perf_counter()
            await STACKS[name](node.url, pool, batch, args.in_flight)
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
            mb = args.chunks * CHUNK_SIZE / 1e6
            results.append({"stack": name, "mb_s": round(mb / wall), "client_cpu_s": round(cpu, 2)})
            print(results[-1], flush=True)
            del batch
    return results


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--chunks", type=int, default=256)
    parser.add_argument("--in-flight", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--imports", type=int, default=10)
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args(argv)
    print({"import_s": measure_imports(args.imports)}, flush=True)
    with tempfile.TemporaryDirectory(dir=args.workdir) as workdir:
        asyncio.run(measure_uploads(args, Path(workdir)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
