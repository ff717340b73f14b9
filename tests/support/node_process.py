"""A storage node in a child process, for tests that freeze it (SIGSTOP) mid-request.

A node served in the test's own process shares its event loop, so it cannot be made
to hang while the test goes on. ``python -m tests.support.node_process DATA_DIR``
serves the pools under DATA_DIR on a free loopback port and writes ``listening
<port>`` on its stdout; everything else it prints goes to stderr.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.support.storage_node import ADMIN_TOKEN, TOKEN

from edgeback_blocks.ids import PoolKey
from edgeback_core.settings import Secret
from edgeback_dedup.app import serve
from edgeback_dedup.settings import DedupSettings
from edgeback_pools.pool_meta import read_pool

ROOT = Path(__file__).resolve().parents[2]
ESTABLISHED = "01"


@dataclass(frozen=True, slots=True, kw_only=True)
class NodeProcess:
    pid: int
    port: int
    data_dir: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def key(self, pool: str) -> PoolKey:
        return PoolKey(read_pool(self.data_dir / pool)[1])

    def freeze(self) -> None:
        """The node stops running; the kernel still accepts and queues its traffic."""
        os.kill(self.pid, signal.SIGSTOP)

    def thaw(self) -> None:
        os.kill(self.pid, signal.SIGCONT)

    async def request_bytes_arrived(self, *, within_s: float = 10.0) -> None:
        """Wait until one of the node's connections holds bytes it has not read."""
        deadline = time.monotonic() + within_s
        while not any(rx for rx in _unread_bytes(self.port)):
            if time.monotonic() > deadline:
                raise AssertionError(f"no request bytes reached port {self.port}")
            await asyncio.sleep(0.01)


def _unread_bytes(port: int) -> list[int]:
    """Receive queues of the established IPv4 sockets whose local port is ``port``."""
    queues = []
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local, state, queue = fields[1], fields[3], fields[4]
        if int(local.rsplit(":", 1)[1], 16) == port and state == ESTABLISHED:
            queues.append(int(queue.split(":")[1], 16))
    return queues


@asynccontextmanager
async def node_process(data_dir: Path, log_path: Path) -> AsyncIterator[NodeProcess]:
    """Run a node over ``data_dir`` until exit (thawed first if frozen); its log to ``log_path``."""
    with log_path.open("wb") as log:  # the child keeps its own descriptor
        child = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "tests.support.node_process", str(data_dir),
            cwd=ROOT, stdout=asyncio.subprocess.PIPE, stderr=log,
        )  # fmt: skip
    try:
        assert child.stdout is not None
        line = await asyncio.wait_for(child.stdout.readline(), 30)
        if not line.startswith(b"listening "):
            raise AssertionError(f"node did not start: see {log_path}")
        yield NodeProcess(pid=child.pid, port=int(line.split()[1]), data_dir=data_dir)
    finally:
        if child.returncode is None:
            child.send_signal(signal.SIGCONT)
            child.terminate()
        await child.wait()


async def _serve(data_dir: str, announce: int) -> None:
    settings = DedupSettings(
        data_dir=data_dir, token=Secret(TOKEN), admin_token=Secret(ADMIN_TOKEN), port=0, threads=2
    )
    async with serve(settings) as running:
        os.write(announce, f"listening {running.port}\n".encode())
        await asyncio.Event().wait()  # until SIGTERM


if __name__ == "__main__":
    # the port goes to the real stdout; logs written to fd 1 go to stderr instead
    announce = os.dup(1)
    os.dup2(2, 1)
    asyncio.run(_serve(sys.argv[1], announce))
