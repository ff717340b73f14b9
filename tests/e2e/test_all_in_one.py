"""``edgeback serve --all``: the five services in one process, with the catalog DB it
starts beside it and a local dedup pool, driven like a fleet through the CLI over the
API: sign in with the first admin's password from ``secrets.env``, find the local pool
registered already (serve --all activated its backup host once the in-process worker's
heartbeat registered it, then registered the pool), register the emulator as a
platform with its Ceph storage, create a job of one VM into the local pool, start it,
and the run succeeds with both disks read; its disk versions restore byte-identical, and
so does the VM once its disks were overwritten and restored by ``edgeback restore create``
(the verification code typed back) followed live to its end.
SIGTERM stops everything, the catalog DB server too, with exit code 0.

No secret of the run leaks: the platform's Secret Key, the admin's password, the
session token the CLI got, an API token, the node tokens, the catalog's master key and
the pool secret appear in no log line (the all-in-one process's log and the catalog DB
server's) and in no response: what every CLI command printed (``--output json``) and
every GET route of the API read with the API token. The search is shown able to fail:
it finds each secret where it is known to be (``secrets.env``, the session file, the
pool secret file, the Secret Key file, the answer that created the API token)."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.support.emulator_process import EmulatorProcess, emulator_process
from tests.support.processes import free_port
from tests.support.secret_search import binary_forms, leaks

from edgeback_api.table import route_table
from edgeback_cli.credentials import session_path
from edgeback_pools.manifest_store import SUFFIX

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]
EDGEBACK = str(Path(sys.executable).parent / "edgeback")
HOST = "aio"
SECRET_KEY = f"SK-aio-{uuid.uuid4().hex}"
READ_QUERIES = {"/backup-sets": "job_id={job_id}"}
"""Query strings the GET routes need (a filter the list requires)."""


class Site:
    def __init__(self, data: Path, api_port: int, node_port: int, home: Path) -> None:
        self.data, self.api_port, self.node_port = data, api_port, node_port
        self.api = f"http://127.0.0.1:{api_port}"
        self.env = {**os.environ, "XDG_CONFIG_HOME": str(home), "EDGEBACK_API_URL": self.api}
        for name in ("EDGEBACK_MONGO_URL", "EDGEBACK_AMQP_URL", "EDGEBACK_BUS_PREFIX"):
            self.env.pop(name, None)  # the site's own catalog DB and in-memory bus
        self.printed: list[str] = []
        """What every CLI command printed (stdout and stderr): searched for secrets."""

    def run(
        self, args: list[str], *, stdin: str | None = None, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [EDGEBACK, *args], env=env or self.env, input=stdin,
            capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
        self.printed += [done.stdout, done.stderr]
        return done

    def cli(self, *args: str, stdin: str | None = None, token: str | None = None) -> Any:
        env = None if token is None else {**self.env, "EDGEBACK_API_TOKEN": token}
        done = self.run([*args, "--output", "json"], stdin=stdin, env=env)
        assert done.returncode == 0, f"edgeback {' '.join(args)}: {done.stderr}"
        return json.loads(done.stdout) if done.stdout.strip() else {}

    def password(self) -> str:
        for line in (self.data / "secrets.env").read_text().splitlines():
            if line.startswith("EDGEBACK_API_BOOTSTRAP_PASSWORD="):
                return line.partition("=")[2]
        raise AssertionError("no bootstrap password in secrets.env")


@pytest.fixture
def cloud(ceph_conf: str, tmp_path: Path) -> Iterator[EmulatorProcess]:
    with emulator_process(
        ceph_conf,
        tmp_path / "cloud",
        vms=1,
        disk_mib="8",
        disks="2",
        eligible=True,
        secret_key=SECRET_KEY,
    ) as running:
        yield running


def _wait_healthy(site: Site, server: subprocess.Popen[bytes], within_s: float = 60) -> None:
    import urllib.request  # noqa: PLC0415

    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        assert server.poll() is None, "edgeback serve --all exited"
        try:
            with urllib.request.urlopen(f"{site.api}/api/v1/health", timeout=2) as answer:  # noqa: S310
                if answer.status == 200:
                    return
        except OSError:
            time.sleep(0.3)
    raise AssertionError(f"the all-in-one API was not healthy within {within_s} s")


@pytest.mark.timeout(240)
def test_all_in_one_runs_a_backup_job_through_its_api(
    tmp_path: Path, ceph_conf: str, cloud: EmulatorProcess
) -> None:
    site = Site(tmp_path / "site", free_port(), free_port(), tmp_path / "home")
    log = (tmp_path / "serve.log").open("wb")
    server = subprocess.Popen(
        [EDGEBACK, "serve", "--all", "--data-dir", str(site.data), "--host-id", HOST,
         "--api-port", str(site.api_port), "--node-port", str(site.node_port)],
        env={**site.env, "EDGEBACK_WORKER_HEARTBEAT_S": "0.5"}, stdout=log,
        stderr=subprocess.STDOUT, cwd=REPO,
    )  # fmt: skip
    try:
        _wait_healthy(site, server)
        site.cli("login", "--api", site.api, "--user", "admin", "--password-stdin",
                 stdin=site.password() + "\n")  # fmt: skip
        pool = _site_pool(site)  # registered by serve --all, its backup host activated
        secret = tmp_path / "sk.txt"
        secret.write_text(cloud.secret_key)
        platform = site.cli(
            "platform", "register", "--name", "edge", "--address", "127.0.0.1",
            "--port", str(cloud.port), "--no-ssl", "--access-key", cloud.access_key,
            "--secret-key-file", str(secret), "--host", HOST,
        )  # fmt: skip
        storage = site.cli("storage", "add", str(platform["id"]), "--name", "ceph",
                           "--host", HOST, "--pool", "rbd", "--conf", ceph_conf)  # fmt: skip
        job = site.cli(
            "job", "create", "--name", "aio", "--platform", str(platform["id"]), "--host", HOST,
            "--pool-id", str(pool["id"]),
        )  # fmt: skip
        started = site.cli("job", "start", str(job["id"]))
        assert _run_of(site, str(job["id"])) == started["run_id"]  # the id the start named
        run = site.cli("run", "watch", str(started["run_id"]))
        assert run["run"]["state"] == "succeeded", run
        vm = cloud.state().vms[0]
        assert [x["state"] for x in _vms_of(run)] == ["succeeded"]
        restored = _restored_identical(site, ceph_conf, cloud, vm.id)
        assert restored == {d.id for d in vm.disks}
        restore_id = _restore_through_the_api(site, ceph_conf, cloud)
        saved = site.cli(  # a saved restore job, its first restore left unverified
            "restore", "job", "create", "--name", "aio-back", "--host", HOST, "--no-start",
            "--point", str(run["backup_set_ids"][0]),
        )  # fmt: skip
        ids = {"platform_id": platform["id"], "storage_id": storage["id"], "job_id": job["id"],
               "run_id": run["run"]["id"], "backup_set_id": run["backup_set_ids"][0],
               "restore_id": restore_id, "host_id": HOST, "name": "admin",
               "pool_id": pool["id"], "restore_job_id": saved["job"]["id"]}  # fmt: skip
        site.cli("group", "create", "aio-ops", "--description", "all-in-one operators")
        api_token, minted = _api_token(site)
        site.cli("run", "list", "--job", str(job["id"]), token=api_token)
        read = _read_every_get_route(site, api_token, ids)
    finally:
        server.send_signal(signal.SIGTERM)
        code = server.wait(timeout=60)
        log.close()
    text = (tmp_path / "serve.log").read_text()
    assert code == 0, text[-3000:]
    assert '"status": "stopped"' in text or "status=stopped" in text
    assert not _catalog_db_alive(site.data), "the catalog DB server outlived serve --all"
    secrets = _secrets_of(site, api_token, minted)
    # bytes as latin-1 (no newline translation): a raw binary secret would be found too
    logs = [(tmp_path / "serve.log").read_bytes().decode("latin-1"),
            (site.data / "catalogdb" / "server.log").read_bytes().decode("latin-1")]  # fmt: skip
    leaked = leaks(secrets, [*logs, *site.printed, *read])
    assert not leaked, f"secrets in logs or responses: {sorted(leaked)}"


def _site_pool(site: Site, within_s: float = 30) -> dict[str, Any]:
    """The pool ``default`` serve --all registered for its first admin, once the worker's
    first heartbeat registered the backup host (which it activated)."""
    deadline = time.monotonic() + within_s
    while not (found := site.cli("pool", "list", "--name", "default")):
        assert time.monotonic() < deadline, "serve --all registered no pool"
        time.sleep(0.3)
    (pool,) = found
    assert (pool["host_id"], pool["node_url"]) == (HOST, f"http://127.0.0.1:{site.node_port}")
    assert pool["kind"] == "dedup" and pool["created_by"] == "admin"
    assert site.cli("host", "show", HOST)["active"] is True
    return dict(pool)


def _run_of(site: Site, job_id: str, within_s: float = 30) -> str:
    """The run a start created (the catalog creates it from the published StartRun)."""
    deadline = time.monotonic() + within_s
    while True:
        listed = site.cli("run", "list", "--job", job_id)
        runs = listed["items"] if isinstance(listed, dict) else listed
        if runs:
            return str(runs[0]["id"])
        assert time.monotonic() < deadline, "no run appeared for the started job"
        time.sleep(0.3)


def _vms_of(run: dict[str, object]) -> list[dict[str, object]]:
    vms = run.get("vms")
    assert isinstance(vms, list), run
    return vms


def _restored_identical(site: Site, ceph_conf: str, cloud: EmulatorProcess, vm_id: str) -> set[str]:
    """Each disk version the run stored, restored with ``edgeback disk restore`` from the
    site's pool, equals the snapshot it was taken from (still kept: keep latest)."""
    pool = site.data / "pools" / "default"
    manifests = sorted(p for p in (pool / "manifests").rglob("*") if p.is_file())
    assert manifests, "no manifest in the site's pool"
    state, disks = cloud.state(), set()
    for manifest in manifests:
        rel = manifest.relative_to(pool / "manifests").parts
        vm, disk, version = rel[0], rel[1], rel[-1].removesuffix(SUFFIX)
        disks.add(disk)
        assert vm == vm_id
        image = f"aio-restored-{os.urandom(3).hex()}"
        done = site.run(
            ["disk", "restore", f"{vm}/{disk}/{version}", "--image", f"rbd/{image}",
             "--from", str(pool), "--conf", ceph_conf,
             "--secret-key-file", str(site.data / "pool-access" / "default.secret")],
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        try:
            source_vm = state.vms[0]
            source = next(d for d in source_vm.disks if d.id == disk)
            name = state.ceph.image_name(source_vm.id, source)
            assert _sha(ceph_conf, f"rbd/{image}") == _snapshot_sha(ceph_conf, f"rbd/{name}")
        finally:
            subprocess.run(["rbd", "-c", ceph_conf, "rm", "--no-progress", f"rbd/{image}"],
                           capture_output=True, check=False)  # fmt: skip
    return disks


def _restore_through_the_api(site: Site, ceph_conf: str, cloud: EmulatorProcess) -> str:
    """The VM's disks overwritten, then restored on the original path by ``edgeback
    restore create --watch``, typing back the code it shows: byte-identical again."""
    state = cloud.state()
    vm = state.vms[0]
    images = [f"rbd/{state.ceph.image_name(vm.id, d)}" for d in vm.disks]
    for image in images:  # what the restore must undo
        subprocess.run(["rbd", "-c", ceph_conf, "bench", "--io-type", "write", "--io-size", "1M",
                        "--io-total", "4M", "--io-pattern", "rand", image],
                       capture_output=True, check=True)  # fmt: skip
    assert all(_sha(ceph_conf, i) != _snapshot_sha(ceph_conf, i) for i in images)
    points = site.cli("restore", "points", "--vm-id", vm.id)
    proc = subprocess.Popen(
        [EDGEBACK, "restore", "create", "--point", str(points[0]["backup_set_id"]),
         "--host", HOST, "--watch", "--output", "json"], env=site.env, text=True,
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    assert proc.stdin is not None and proc.stderr is not None
    shown = ""
    while not shown:  # the code is shown on stderr, then asked for
        line = proc.stderr.readline()
        assert line, "edgeback restore create showed no verification code"
        if "verification code: " in line:
            shown = line.split("verification code: ")[1].split()[0]
    proc.stdin.write(shown.lower() + "\n")
    proc.stdin.flush()
    out, err = proc.communicate(timeout=120)  # closes stdin
    site.printed += [out, err]
    assert proc.returncode == 0, err
    restore = json.loads(out)
    assert restore["state"] == "succeeded" and [v["state"] for v in restore["vms"]] == ["succeeded"]
    assert {d["disk_id"] for d in restore["vms"][0]["stats"]} == {d.id for d in vm.disks}
    assert "100%" in err  # the progress bar's last line
    assert all(_sha(ceph_conf, i) == _snapshot_sha(ceph_conf, i) for i in images)
    return str(restore["id"])


def _sha(conf: str, spec: str) -> str:
    data = subprocess.run(["rbd", "-c", conf, "export", "--no-progress", spec, "-"],
                          capture_output=True, check=True).stdout  # fmt: skip
    return hashlib.sha256(data).hexdigest()


def _snapshot_sha(conf: str, image: str) -> str:
    listed = subprocess.run(["rbd", "-c", conf, "snap", "ls", "--format", "json", image],
                            capture_output=True, check=True, text=True)  # fmt: skip
    snaps = json.loads(listed.stdout)
    assert snaps, f"{image} kept no snapshot"
    return _sha(conf, f"{image}@{snaps[-1]['name']}")


def _catalog_db_alive(data: Path) -> bool:
    marker = str(data / "catalogdb")
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
            if marker in cmd and "server.py" in cmd:
                return True
    return False


def _api_token(site: Site) -> tuple[str, str]:
    """An API token made with the CLI's session, and the answer that showed it."""
    session = json.loads(session_path(site.env).read_text())["token"]
    request = urllib.request.Request(  # noqa: S310 - loopback
        f"{site.api}/api/v1/auth/tokens", data=b'{"label": "aio-e2e"}', method="POST",
        headers={"Authorization": f"Bearer {session}", "Content-Type": "application/json"},
    )  # fmt: skip
    with urllib.request.urlopen(request, timeout=60) as answer:  # noqa: S310 - loopback
        body = answer.read().decode()
    return str(json.loads(body)["token"]), body


def _read_every_get_route(site: Site, token: str, ids: dict[str, str]) -> list[str]:
    """The bodies of every GET route of the API, its path filled with the run's ids (the
    progress streams of the ended run and restore end at once)."""
    routes = [r for r in route_table() if r.method == "GET"]
    unfilled = [r.path for r in routes if not set(r.path_fields) <= ids.keys()]
    assert not unfilled, f"no id of this run for {unfilled}"
    bodies = []
    for route in routes:
        # a restore job's id is its path's job_id
        mine = ids | ({"job_id": ids["restore_job_id"]} if "/restore-jobs/" in route.path else {})
        mine |= {"name": "aio-ops"} if route.path.startswith("/groups/") else {}  # a group's
        query = READ_QUERIES.get(route.path, "").format(**mine)
        url = f"{site.api}{route.url.format(**mine)}" + (f"?{query}" if query else "")
        auth = {"Authorization": f"Bearer {token}"}
        request = urllib.request.Request(url, headers=auth)  # noqa: S310 - loopback
        with urllib.request.urlopen(request, timeout=60) as answer:  # noqa: S310 - loopback
            assert answer.status == 200, (route.operation, answer.status)
            bodies.append(answer.read().decode())
    return bodies


def _secrets_of(site: Site, api_token: str, minted: str) -> dict[str, list[str]]:
    """Each secret the run used, in the forms it could be printed in; each is first
    found where it is known to be, so the search below is one that can fail."""
    env_file = (site.data / "secrets.env").read_text()
    stored = {k: v for k, _, v in (x.partition("=") for x in env_file.splitlines())}
    pool_secret = (site.data / "pool-access" / "default.secret").read_bytes()
    session = session_path(site.env).read_text()
    texts = {
        "platform secret key": (SECRET_KEY, (site.data.parent / "sk.txt").read_text()),
        "admin password": (stored["EDGEBACK_API_BOOTSTRAP_PASSWORD"], env_file),
        "session token": (json.loads(session)["token"], session),
        "API token": (api_token, minted),
        "node token": (stored["EDGEBACK_DEDUP_TOKEN"], env_file),
        "node admin token": (stored["EDGEBACK_DEDUP_ADMIN_TOKEN"], env_file),
        "catalog master key": (stored["EDGEBACK_CATALOG_MASTER_KEY"], env_file),
    }
    forms = {name: [value] for name, (value, _) in texts.items()}
    forms["pool secret"] = binary_forms(pool_secret)
    homes = {name: home for name, (_, home) in texts.items()}
    homes["pool secret"] = (
        (site.data / "pool-access" / "default.secret").read_bytes().decode("latin-1")
    )
    for name, home in homes.items():
        assert min(map(len, forms[name])) >= 16 and leaks({name: forms[name]}, [home]), name
    return forms
