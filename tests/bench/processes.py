"""Process plumbing of the data-path benchmark: timed commands, a storage node process.

Every measured tool runs as its own process so its wall time, CPU time and peak RSS
come from the kernel (``wait4`` rusage), not from Python bookkeeping.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from edgeback_blocks.keys import write_secret_file
from edgeback_blocks.pool_wire import PoolKind
from edgeback_pools.pool_meta import create_pool

NODE_TOKEN = "bench-token-0123456789abcdef"


@dataclass(frozen=True, slots=True, kw_only=True)
class Timed:
    argv: tuple[str, ...]
    wall_s: float
    cpu_s: float
    max_rss_bytes: int
    out: str
    err: str


def run_timed(
    argv: Sequence[str], env: Mapping[str, str] | None = None, *, discard_stdout: bool = False
) -> Timed:
    """Run ``argv`` to completion; wall time and its own rusage. Raises if it fails.

    ``discard_stdout`` sends stdout to /dev/null (``rbd export ... -``).
    """
    with (
        tempfile.TemporaryFile() as out,
        tempfile.TemporaryFile() as err,
        open(os.devnull, "wb") as null,
    ):
        started = time.perf_counter()
        sink = null if discard_stdout else out
        proc = subprocess.Popen(list(argv), stdout=sink, stderr=err, env=dict(env or os.environ))
        watcher = _HighWater(proc.pid)
        watcher.start()
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - started
        watcher.join()
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        result = Timed(
            argv=tuple(argv), wall_s=wall, cpu_s=usage.ru_utime + usage.ru_stime,
            max_rss_bytes=watcher.peak_bytes,
            out=out.read().decode(errors="replace"), err=err.read().decode(errors="replace"),
        )  # fmt: skip
    if proc.returncode != 0:
        raise RuntimeError(f"{argv[0]} failed ({proc.returncode}): {result.err[-2000:]}")
    return result


class _HighWater(threading.Thread):
    """Polls ``VmHWM`` of a running process (its peak RSS since its last exec).

    ``ru_maxrss`` of a child is not usable here: the kernel folds the parent's RSS, which
    the child shares between (v)fork and exec, into it, and this benchmark's own process
    is large after writing gigabytes of test data.
    """

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self._status = Path(f"/proc/{pid}/status")
        self.peak_bytes = 0

    def run(self) -> None:
        while True:
            try:
                text = self._status.read_text()
            except OSError:
                return
            line = next((x for x in text.splitlines() if x.startswith("VmHWM:")), None)
            if line is None:  # a zombie has no memory left to report
                return
            self.peak_bytes = max(self.peak_bytes, int(line.split()[1]) * 1024)
            time.sleep(0.02)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def osd_pids() -> list[int]:
    """Pids of the ceph-osd daemons on this machine (their CPU is part of every read)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv0 = (entry / "cmdline").read_bytes().split(b"\0", 1)[0]
        except OSError:
            continue
        if argv0.endswith(b"ceph-osd"):
            pids.append(int(entry.name))
    return pids


def cpu_of(pids: list[int]) -> float:
    return sum(cpu_seconds(pid) for pid in pids)


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds a live process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True, slots=True, kw_only=True)
class NodeProcess:
    url: str
    pid: int
    data_dir: Path
    pool: str
    encrypted: bool = False

    @property
    def key_file(self) -> Path:
        return self.data_dir / self.pool / "pool.key"

    @property
    def secret_file(self) -> Path:
        """The backup host's pool secret (``docs/encryption.md``), beside the pools."""
        return self.data_dir / f".{self.pool}.secret"


@contextmanager
def node_process(
    data_dir: Path, pool: str = "bench", threads: int = 4, *, encrypted: bool = False
) -> Iterator[NodeProcess]:
    """A storage node (``python -m edgeback_dedup``) with one dedup pool, as its own process."""
    create_pool(data_dir, pool, PoolKind.DEDUP, encrypted=encrypted)
    write_secret_file(data_dir / f".{pool}.secret")
    port = free_port()
    env = {
        **os.environ,
        "EDGEBACK_DEDUP_DATA_DIR": str(data_dir),
        "EDGEBACK_DEDUP_TOKEN": NODE_TOKEN,
        "EDGEBACK_DEDUP_PORT": str(port),
        "EDGEBACK_DEDUP_THREADS": str(threads),
        # the node's service runner wants the bus even though the data API does not use it
        "EDGEBACK_AMQP_URL": os.environ.get(
            "EDGEBACK_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/"
        ),
    }
    log = (data_dir / "node.log").open("wb")
    proc = subprocess.Popen([sys.executable, "-m", "edgeback_dedup"], env=env, stdout=log,
                            stderr=subprocess.STDOUT)  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        try:
            _wait_healthy(url, proc)
        except RuntimeError as exc:
            log.flush()
            tail = (data_dir / "node.log").read_text(errors="replace")[-2000:]
            raise RuntimeError(f"{exc}; node log: {tail}") from exc
        yield NodeProcess(url=url, pid=proc.pid, data_dir=data_dir, pool=pool, encrypted=encrypted)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()


def _wait_healthy(url: str, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"storage node exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(f"{url}/healthz", timeout=2):  # noqa: S310 - loopback
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError("storage node did not become healthy within 30 s")
