"""The edge-cloud emulator as its own process for integration and e2e tests: seed VMs
with real RBD disks, serve the API on a free loopback port, stop and purge after."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.support.emulator.state import EmulatorState, load
from tests.support.processes import ROOT, free_port, wait_healthy


@dataclass(frozen=True, slots=True, kw_only=True)
class EmulatorProcess:
    port: int
    pid: int
    state_file: Path
    access_key: str
    secret_key: str

    def state(self) -> EmulatorState:
        return load(self.state_file)


def _cli(*args: str, timeout: float = 120) -> None:
    cmd = [sys.executable, "-m", "tests.support.emulator", *args]
    subprocess.run(cmd, cwd=ROOT, check=True, timeout=timeout, capture_output=True)


@contextmanager
def emulator_process(
    ceph_conf: str,
    workdir: Path,
    *,
    vms: int = 8,
    disk_mib: str = "4",
    disks: str = "",
    hosts: int = 0,
    eligible: bool = False,
    fill: float = 0.3,
    seed_timeout_s: float = 120,
    access_key: str = "AK-resources",
    secret_key: str = "sk-resources-0123456789",  # noqa: S107 - the emulator's test key
    prepare: Callable[[Path], None] | None = None,
) -> Iterator[EmulatorProcess]:
    """Seed ``vms`` VMs (small disks of ``disk_mib`` sizes, ``disks`` per VM in turn:
    "2,3"; default one to three) on ``hosts`` physical hosts (0: the seed's default),
    serve them, and remove their images afterwards; ``eligible``: every VM can be backed
    up; ``fill``: the share of chunks written; ``seed_timeout_s``: how long seeding may
    take; ``prepare(state_file)`` may change the seeded cloud before it is served."""
    workdir.mkdir(parents=True, exist_ok=True)
    state_file = workdir / "cloud.json"
    seed = ["seed", "--vms", str(vms), "--conf", ceph_conf, "--pool", "rbd"]
    seed += ["--disk-mib", disk_mib, "--disks", disks, "--fill", repr(fill)]
    seed += ["--hosts", str(hosts), *(["--eligible"] if eligible else [])]
    _cli(*seed, "--state", str(state_file), timeout=seed_timeout_s)
    if prepare is not None:
        prepare(state_file)
    port = free_port()
    cmd = [sys.executable, "-m", "tests.support.emulator", "serve", "--port", str(port)]
    cmd += ["--state", str(state_file), "--access-key", access_key, "--secret-key", secret_key]
    proc = subprocess.Popen(cmd, cwd=ROOT)
    try:
        wait_healthy(f"http://127.0.0.1:{port}/emulator/health", proc, what="emulator")
        yield EmulatorProcess(
            port=port, pid=proc.pid, state_file=state_file, access_key=access_key,
            secret_key=secret_key,
        )  # fmt: skip
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        _cli("purge", "--state", str(state_file))
