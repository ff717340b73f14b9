"""The README's first command works: the quickstart brings everything up (the five
services as separate processes on RabbitMQ) and, through the HTTP API, backs up a VM
(full, then incremental) and restores it into a new VM.

Checked here, not taken from the script's word: the summary it prints (the API's
address, how to sign in, the restored VM, next steps); the restored VM's disks read
with the RBD bindings equal the source's snapshots of the restored backup set (found
through the API with the quickstart's own session); and no secret of ``secrets.env``
(node tokens, the catalog's master key, the platform's Secret Key, the admin's
password), nor the CLI's session token or the pool secret, appears in any service log
or in what the script printed."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import rados
import rbd
from tests.support.emulator.state import EmulatorState, load
from tests.support.processes import free_port, free_port_run
from tests.support.secret_search import binary_forms, leaks

from edgeback_cli.credentials import session_path

REPO = Path(__file__).resolve().parents[2]
EDGEBACK = str(Path(sys.executable).parent / "edgeback")
SERVICES = ("catalog", "dedup", "api", "scheduler", "worker")
SECRETS = (
    "EDGEBACK_DEDUP_TOKEN",
    "EDGEBACK_DEDUP_ADMIN_TOKEN",
    "EDGEBACK_CATALOG_MASTER_KEY",
    "QS_SECRET_KEY",
    "EDGEBACK_API_BOOTSTRAP_PASSWORD",
)
CHUNK = 4 << 20


@pytest.mark.timeout(600)
def test_quickstart_backs_up_a_vm_and_restores_it_into_a_new_vm(
    tmp_path: Path, amqp_url: str, mongo_url: str, ceph_conf: str
) -> None:
    qs = tmp_path / "qs"
    api_port = free_port()
    env = {
        **os.environ,
        "EDGEBACK_QS_DIR": str(qs),
        "EDGEBACK_QS_NODE_PORT": str(free_port()),
        "EDGEBACK_QS_EMULATOR_PORT": str(free_port()),
        "EDGEBACK_QS_API_PORT": str(api_port),
        "EDGEBACK_QS_HEALTH_BASE": str(free_port_run(5)),  # one per service
    }
    script = str(REPO / "deploy" / "quickstart.sh")
    try:
        run = subprocess.run(
            ["bash", script], env=env, capture_output=True, text=True, timeout=540, check=False
        )
        assert run.returncode == 0, run.stderr[-4000:]
        _summary_is_printed(run.stderr, api_port)
        restore = _last_restore(qs)
        _restored_disks_equal_snapshots(restore, load(qs / "emulator-state.json"), ceph_conf, qs)
        _no_secret_leaks(qs, [run.stdout, run.stderr])
    finally:
        subprocess.run(["bash", script, "stop"], env=env, timeout=120, check=False)
        subprocess.run(
            [str(REPO / ".venv/bin/python"), "-m", "tests.support.emulator", "purge",
             "--state", str(qs / "emulator-state.json")],
            cwd=REPO, timeout=120, check=False,
        )  # fmt: skip


def _summary_is_printed(stderr: str, api_port: int) -> None:
    api = f"http://127.0.0.1:{api_port}"
    for step in ("api: signed in as admin", "full backup run", "incremental backup run",
                 "cloud console (emulator): VM restored-", "found on the platform",
                 "starting it with its verification code"):  # fmt: skip
        assert step in stderr, step
    for service in SERVICES:
        assert f"{service} healthy" in stderr
    assert stderr.count("restored byte-identical to its snapshot") == 2
    summary = stderr[stderr.index("edgeback is running") :]
    lines = [line.split() for line in summary.splitlines()]
    assert ["API", f"{api}/api/v1"] == lines[1][:2]
    assert ["sign", "in", "edgeback", "login", "--api", api, "--user", "admin"] in lines
    assert any(line[:3] == ["restored", "VM", "restored-web-01"] for line in lines), summary
    assert "next steps:" in summary and "edgeback job list" in summary
    assert "bash deploy/quickstart.sh stop" in summary


def _cli(qs: Path, *args: str) -> Any:
    """An API command with the quickstart's own session (its CLI config directory)."""
    env = {**os.environ, "XDG_CONFIG_HOME": str(qs / "cli")}
    done = subprocess.run([EDGEBACK, *args, "--output", "json"], env=env, capture_output=True,
                          text=True, timeout=60, check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def _last_restore(qs: Path) -> dict[str, Any]:
    restores = _cli(qs, "restore", "list")
    assert [r["state"] for r in restores] == ["succeeded"], restores
    restore: dict[str, Any] = _cli(qs, "restore", "show", restores[0]["id"])
    return restore


def _restored_disks_equal_snapshots(
    restore: dict[str, Any], cloud: EmulatorState, conf: str, qs: Path
) -> None:
    """Each disk of the new VM, read from Ceph, equals its source disk's snapshot of the
    restored backup set (its snapshot names from the API)."""
    (vm,) = restore["vms"]
    source, target = cloud.vm(vm["source_vm"]["vm_id"]), cloud.vm(vm["target_vm"]["vm_id"])
    assert source is not None and target is not None
    assert target.name == f"restored-{source.name}" and target.id != source.id
    backup_set = _cli(qs, "backup-set", "show", vm["backup_set_id"])
    assert backup_set["backup_set"]["backup_type"] == "incremental"
    snaps = {d["disk_id"]: d["snapshot_name"] for d in backup_set["disks"]}
    pairs = {d["disk_id"]: d["source_disk_id"] for d in vm["stats"]}
    assert sorted(pairs) == sorted(d.id for d in target.disks)
    assert sorted(pairs.values()) == sorted(d.id for d in source.disks)
    sources, targets = {d.id: d for d in source.disks}, {d.id: d for d in target.disks}
    for target_disk, source_disk in pairs.items():
        image = cloud.ceph.image_name(source.id, sources[source_disk])
        restored = cloud.ceph.image_name(target.id, targets[target_disk])
        assert image is not None and restored is not None
        want = _sha256(conf, image, snaps[source_disk])
        assert _sha256(conf, restored) == want, f"{restored} differs from {image}"


def _sha256(conf: str, image: str, snapshot: str | None = None) -> str:
    digest = hashlib.sha256()
    with (
        rados.Rados(conffile=conf, name="client.admin") as cluster,
        cluster.open_ioctx("rbd") as ioctx,
        rbd.Image(ioctx, image, snapshot=snapshot, read_only=True) as img,
    ):
        size = img.size()
        for offset in range(0, size, CHUNK):
            digest.update(img.read(offset, min(CHUNK, size - offset)))
    return digest.hexdigest()


def _no_secret_leaks(qs: Path, printed: list[str]) -> None:
    env_file = (qs / "secrets.env").read_text()
    stored = dict(line.partition("=")[::2] for line in env_file.splitlines() if "=" in line)
    session = session_path({"XDG_CONFIG_HOME": str(qs / "cli")}).read_text()
    pool_secret = qs / "pool-access" / "default.secret"
    secrets = {name: [stored[name]] for name in SECRETS}
    secrets["session token"] = [json.loads(session)["token"]]
    secrets["pool secret"] = binary_forms(pool_secret.read_bytes())
    homes = {name: env_file for name in SECRETS}
    homes |= {"session token": session, "pool secret": pool_secret.read_bytes().decode("latin-1")}
    for name, home in homes.items():  # the search can fail: it finds each where it is
        assert min(map(len, secrets[name])) >= 16 and leaks({name: secrets[name]}, [home]), name
    logs = [(qs / f"{s}.log").read_bytes().decode("latin-1") for s in SERVICES]
    assert all(logs), "a service wrote no log"
    leaked = leaks(secrets, [*logs, *printed])
    assert not leaked, f"secrets in the services' logs or the script's output: {sorted(leaked)}"
