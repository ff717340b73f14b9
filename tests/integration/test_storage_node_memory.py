"""Memory of the node under many slow uploads stays bounded by its body budget.

200 clients each upload a 4 MiB chunk record at once, slowly (256 KiB pieces with a
pause between them). The node (its own process) has a 32 MiB budget of body bytes in
flight, so at most 8 bodies are held at a time and the others wait unread. Its RSS,
read from ``/proc/<pid>/status`` every 20 ms, must stay under :data:`RSS_BOUND`. Without
the budget the same run holds every body (952 MiB peak, against 206 MiB with it).
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from tests.support.processes import NodeProcess, node_process_async
from tests.support.storage_node import TOKEN, chunk, make_pools

MiB = 1 << 20
CLIENTS = 200
BUDGET = 32 * MiB
RSS_BOUND = 256 * MiB
"""Peak RSS of the node process. Measured 206 MiB: interpreter and libraries (52 MiB at
rest), the budget of bodies (32 MiB), what aiohttp reads ahead on each of the 200
connections before pausing it (up to ~256 KiB each), buffers being recycled and heap
kept by the allocator. Without the budget the same run peaked at 952 MiB."""
PIECE = 256 * 1024


def rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


async def slow_upload(node: NodeProcess, path: str, record: bytes) -> int:
    reader, writer = await asyncio.open_connection("127.0.0.1", node.port)
    head = (
        f"PUT {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n"
        f"Content-Length: {len(record)}\r\nConnection: close\r\n\r\n"
    )
    writer.write(head.encode())
    view = memoryview(record)
    for start in range(0, len(record), PIECE):
        writer.write(view[start : start + PIECE])
        await writer.drain()
        await asyncio.sleep(0.01)
    status_line = await asyncio.wait_for(reader.readline(), 120)
    writer.close()
    return int(status_line.split()[1])


async def test_200_slow_uploads_keep_the_node_rss_bounded(tmp_path: Path) -> None:
    make_pools(tmp_path)
    settings = {
        "EDGEBACK_DEDUP_BODY_BYTES_IN_FLIGHT": str(BUDGET),
        "EDGEBACK_DEDUP_BODY_WAIT_S": "120",
    }
    async with node_process_async(tmp_path, env=settings) as node:
        records = [chunk(node.key("dd"), os.urandom(4 * MiB)) for _ in range(4)]
        before = rss(node.pid)
        peak = before
        uploads = asyncio.gather(
            *(
                slow_upload(node, f"/v1/pools/dd/chunks/{d.hex()}", r)
                for d, r in (records[i % 4] for i in range(CLIENTS))
            )
        )
        while not uploads.done():
            peak = max(peak, rss(node.pid))
            await asyncio.sleep(0.02)
        statuses = await uploads
    print(f"node RSS: {before / MiB:.0f} MiB before, peak {peak / MiB:.0f} MiB")
    assert sorted(set(statuses)) == [200, 201]
    assert peak < RSS_BOUND
