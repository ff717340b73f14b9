"""Process plumbing of the data-path benchmark: timed commands, CPU of other processes.

Every measured tool runs as its own process so its wall time, CPU time and peak RSS
come from the kernel (``wait4`` rusage), not from Python bookkeeping.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path


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
