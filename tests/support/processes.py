"""Service processes for tests and benchmarks: a free port, a child process, its health.

One module for every test that runs something as its own process: the five services
(``python -m edgeback_<name>``; the catalog's settings: :func:`catalog_service`), the
storage node on its own (frozen with SIGSTOP by the transport tests, measured by the
benchmark), the platform emulator. The core is synchronous, so a benchmark can keep a
node across several ``asyncio.run`` calls; async tests use the thin async wrappers
(``ServiceProcess.wait_healthy``, ``node_process_async``), which run the blocking parts
in a thread.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from tests.support.storage_node import ADMIN_TOKEN, TOKEN

from edgeback_blocks.ids import PoolKey
from edgeback_pools.pool_meta import read_pool

ROOT = Path(__file__).resolve().parents[2]
ESTABLISHED = "01"
"""``/proc/net/tcp`` state of an established connection."""


def free_port() -> int:
    """A loopback port nothing listens on right now (the caller binds it soon after)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def free_port_run(count: int, *, below: int = 32768) -> int:
    """The base of ``count`` loopback ports ``base + 1 .. base + count`` nothing listens
    on right now, below the kernel's ephemeral range (32768 up by default), so that no
    outgoing connection's local port takes one before its server binds it (a base
    from ``free_port() + 100`` lies inside that range: it collided once)."""
    for base in range(20000, below - count - 1, 97):
        probes: list[socket.socket] = []
        try:
            for port in range(base + 1, base + count + 1):
                probe = socket.socket()
                probes.append(probe)
                probe.bind(("127.0.0.1", port))
        except OSError:
            continue
        finally:
            for probe in probes:
                probe.close()
        return base
    raise RuntimeError(f"no {count} free loopback ports in a row below {below}")


def wait_healthy(
    url: str, proc: subprocess.Popen[bytes], *, what: str, within_s: float = 30.0
) -> bytes:
    """Poll ``url`` until it answers 200 and return the body; fail at once if ``proc`` exits."""
    deadline = time.monotonic() + within_s
    last: object = None
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2) as answer:  # noqa: S310 - loopback
                return bytes(answer.read())
        except urllib.error.HTTPError as exc:  # e.g. 503 while starting
            last = f"{exc.code} {exc.read()[:300]!r}"
        except OSError as exc:
            last = exc
        time.sleep(0.1)
    raise RuntimeError(f"{what} not healthy within {within_s} s: {last}")


@dataclass
class ServiceProcess:
    """One ``python -m <module>`` child (``edgeback_<name>`` by default), its log file
    and its ``/healthz`` port."""

    name: str
    health_port: int
    env: Mapping[str, str]
    log_path: Path
    module: str = ""
    proc: subprocess.Popen[bytes] | None = field(default=None, init=False)

    def start(self) -> None:
        module = self.module or f"edgeback_{self.name}"
        with self.log_path.open("wb") as log:  # the child keeps its own descriptor
            self.proc = subprocess.Popen(
                [sys.executable, "-m", module],
                cwd=ROOT,
                env={**os.environ, **self.env},
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def healthy(self, within_s: float = 30.0) -> dict[str, object]:
        """Wait for ``/healthz`` to answer 200; its body."""
        assert self.proc is not None
        url = f"http://127.0.0.1:{self.health_port}/healthz"
        try:
            body = wait_healthy(url, self.proc, what=self.name, within_s=within_s)
        except RuntimeError as exc:
            raise AssertionError(f"{exc}\n{self.log_text()[-4000:]}") from None
        answer: dict[str, object] = json.loads(body)
        return answer

    async def wait_healthy(self, within_s: float = 30.0) -> dict[str, object]:
        return await asyncio.to_thread(self.healthy, within_s)

    def terminate(self, within_s: float) -> int:
        """SIGTERM (after SIGCONT, should it be frozen); its exit code."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGCONT)
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=within_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(f"{self.name} ignored SIGTERM for {within_s}s") from None

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def cpu_s(self) -> float:
        """CPU seconds (user + system) the process has used so far (Linux ``/proc``)."""
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        ticks = int(fields[11]) + int(fields[12])  # utime, stime: fields 14, 15 of stat(5)
        return ticks / os.sysconf("SC_CLK_TCK")

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def log_events(self) -> list[dict[str, object]]:
        return [json.loads(x) for x in self.log_text().splitlines() if x.startswith("{")]


@dataclass(frozen=True, slots=True, kw_only=True)
class NodeProcess:
    """A storage node running as ``python -m edgeback_dedup``."""

    service: ServiceProcess
    port: int
    data_dir: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        return self.service.pid

    def key_file(self, pool: str) -> Path:
        return self.data_dir / pool / "pool.key"

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


def catalog_service(
    common: Mapping[str, str], *, mongo_url: str, database: str, master_key: str, log_path: Path
) -> ServiceProcess:
    """The catalog as a process (not started), as the dev stack's ``catalog`` broker user
    where there is one; ``common`` holds the bus prefix and logging settings. Started
    again with the same ``database`` and ``master_key``, it finds everything as it was."""
    port = free_port()
    env = {
        **common,
        "EDGEBACK_AMQP_URL": os.environ.get("EDGEBACK_AMQP_URL_CATALOG")
        or os.environ["EDGEBACK_AMQP_URL"],
        "EDGEBACK_CATALOG_HEALTH_PORT": str(port),
        "EDGEBACK_MONGO_URL": mongo_url,
        "EDGEBACK_CATALOG_DATABASE": database,
        "EDGEBACK_CATALOG_TEST_USERS": "edgeback-test",
        "EDGEBACK_CATALOG_MASTER_KEY": master_key,
    }
    return ServiceProcess("catalog", port, env, log_path)


def node_env(data_dir: Path, port: int, health_port: int, threads: int) -> dict[str, str]:
    """The node's settings; no broker: the node does not use one (an empty variable is unset)."""
    return {
        "EDGEBACK_AMQP_URL": "",
        "EDGEBACK_LOG_JSON": "true",
        "EDGEBACK_DEDUP_DATA_DIR": str(data_dir),
        "EDGEBACK_DEDUP_TOKEN": TOKEN,
        "EDGEBACK_DEDUP_ADMIN_TOKEN": ADMIN_TOKEN,
        "EDGEBACK_DEDUP_PORT": str(port),
        "EDGEBACK_DEDUP_HEALTH_PORT": str(health_port),
        "EDGEBACK_DEDUP_THREADS": str(threads),
    }


@contextmanager
def node_process(
    data_dir: Path,
    *,
    threads: int = 2,
    log_path: Path | None = None,
    env: Mapping[str, str] | None = None,
) -> Iterator[NodeProcess]:
    """Serve the pools of ``data_dir`` from a node process until exit (healthy on entry);
    its log goes to ``log_path`` (default ``data_dir/node.log``); ``env`` overrides."""
    port, health_port = free_port(), free_port()
    settings = node_env(data_dir, port, health_port, threads) | dict(env or {})
    log = log_path or data_dir / "node.log"
    service = ServiceProcess("dedup", health_port, settings, log)
    service.start()
    try:
        service.healthy()
        yield NodeProcess(service=service, port=port, data_dir=data_dir)
    finally:
        service.terminate(30)


@asynccontextmanager
async def node_process_async(
    data_dir: Path,
    *,
    threads: int = 2,
    log_path: Path | None = None,
    env: Mapping[str, str] | None = None,
) -> AsyncIterator[NodeProcess]:
    """:func:`node_process` for async tests: starting and stopping run in a thread."""
    running = node_process(data_dir, threads=threads, log_path=log_path, env=env)
    node = await asyncio.to_thread(running.__enter__)
    try:
        yield node
    finally:
        await asyncio.to_thread(running.__exit__, None, None, None)
