"""The README's first command works: the quickstart brings everything up and, through
the HTTP API, backs up a VM (full, then incremental) and proves its restore."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from tests.support.processes import free_port, free_port_run

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.timeout(600)
def test_quickstart_backs_up_and_restores_a_vm_disk_byte_identical(
    tmp_path: Path, amqp_url: str, mongo_url: str, ceph_conf: str
) -> None:
    env = {
        **os.environ,
        "EDGEBACK_QS_DIR": str(tmp_path / "qs"),
        "EDGEBACK_QS_NODE_PORT": str(free_port()),
        "EDGEBACK_QS_EMULATOR_PORT": str(free_port()),
        "EDGEBACK_QS_API_PORT": str(free_port()),
        "EDGEBACK_QS_HEALTH_BASE": str(free_port_run(5)),  # one per service
    }
    script = str(REPO / "deploy" / "quickstart.sh")
    try:
        run = subprocess.run(
            ["bash", script], env=env, capture_output=True, text=True, timeout=540, check=False
        )
        assert run.returncode == 0, run.stderr[-4000:]
        assert "is byte-identical to the snapshot of VM" in run.stderr
        # through the API: signed in, a full and then an incremental run, every disk checked
        for step in ("api: signed in as admin", "full backup run", "incremental backup run",
                     "starting it with its verification code"):  # fmt: skip
            assert step in run.stderr, step
        assert run.stderr.count("restored byte-identical to its snapshot") == 2
        for service in ("catalog", "dedup", "api", "scheduler", "worker"):
            assert f"{service} healthy" in run.stderr
    finally:
        subprocess.run(["bash", script, "stop"], env=env, timeout=120, check=False)
        subprocess.run(
            [str(REPO / ".venv/bin/python"), "-m", "tests.support.emulator", "purge",
             "--state", str(tmp_path / "qs" / "emulator-state.json")],
            cwd=REPO, timeout=120, check=False,
        )  # fmt: skip
