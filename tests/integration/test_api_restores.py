"""Restores through the API in-process (aiohttp's test client) against a real catalog on
the catalog DB, over RabbitMQ: restore points searched and paged, the verification
code (wrong: nothing changes and it is audited; right: queued, once), stop, scoping for
an operator, and the live progress stream of a restore and of a run (server-sent
events fed from the events exchange), ending when they end and resumable."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
import pytest
from aiohttp import ClientResponse
from aiohttp.test_utils import TestClient, TestServer
from tests.support.served_catalog import served_catalog

from edgeback_api.app import build_app
from edgeback_api.live import LiveEvents
from edgeback_api.routing import Api
from edgeback_api.session import bootstrap_admin
from edgeback_core.bus.amqp import AmqpBus
from edgeback_core.bus.topology import (
    HOST_HEARTBEAT,
    QUEUES,
    RESTORE_PROGRESS,
    RESTORE_STARTED,
    RUN_PROGRESS,
    Topology,
    worker_runs,
)
from edgeback_core.ids import BackupHostId
from edgeback_core.messages import catalog as m
from edgeback_core.messages import restores as r
from edgeback_core.messages.backups import RUN_FINISH, RunFinish
from edgeback_core.messages.jobs import PoolRef
from edgeback_core.messages.runs import RunProgress, VmRef

pytestmark = pytest.mark.integration
PASSWORD = "admin-pass-Rs4-" + uuid.uuid4().hex[:8]
OP_PASSWORD = "oper-pass-Rs5-" + uuid.uuid4().hex[:8]
T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
POOL = PoolRef(node_url="http://node:8710", name="dd")
HOST = "h1"


@dataclass
class World:
    client: TestClient[Any, Any]
    bus: AmqpBus
    admin: str = ""
    platform: str = ""
    """Where :func:`setup_points`' restore points go: an imported point has no original
    path, only a new one (its own VM on a registered platform)."""

    async def login(self, name: str, password: str) -> str:
        resp = await self.client.post(
            "/api/v1/auth/login", json={"name": name, "password": password}
        )
        assert resp.status == 200, await resp.text()
        return str((await resp.json())["token"])

    async def go(self, method: str, path: str, token: str = "", **kw: Any) -> ClientResponse:
        headers = {"Authorization": f"Bearer {token or self.admin}", **kw.pop("headers", {})}
        return await self.client.request(method, "/api/v1" + path, headers=headers, **kw)

    async def ok(self, method: str, path: str, status: int = 200, **kw: Any) -> Any:
        resp = await self.go(method, path, **kw)
        assert resp.status == status, (path, await resp.text())
        return await resp.json()


@pytest.fixture
async def world(amqp_url: str, mongo_url: str) -> AsyncIterator[World]:
    topology = Topology(prefix=f"t-{uuid.uuid4().hex[:10]}.")
    async with AsyncExitStack() as stack:
        server = await served_catalog(
            stack,
            topology,
            amqp_url=amqp_url,
            mongo_url=mongo_url,
            database="test_api_restores",
            events=True,
        )
        await server.declare(worker_runs(BackupHostId(HOST)))  # what a worker consumes
        bus = await stack.enter_async_context(AmqpBus.open(amqp_url, topology))
        api = Api(
            bus=bus,
            rpc_timeout_s=10,
            slow_rpc_timeout_s=20,
            session_ttl_s=3600,
            live=LiveEvents(buffer=8),
            heartbeat_s=0.5,
        )
        assert await bootstrap_admin(api, "root", PASSWORD)
        client = await stack.enter_async_context(TestClient(TestServer(build_app(api))))
        world = World(client=client, bus=bus)
        world.admin = await world.login("root", PASSWORD)
        yield world
        await server.delete_topology([*QUEUES, worker_runs(BackupHostId(HOST))])


def _disk(vm: str, name: str, version: str, minute: int) -> r.ImportedDisk:
    created = T0 - timedelta(days=1) + timedelta(minutes=minute)
    return r.ImportedDisk(
        vm_id=vm, disk_id=name, version=version, image=f"rbd/{vm}-{name}@{version}",
        image_size=1 << 30, backup_type="full", created_ms=int(created.timestamp() * 1000),
        chunks=1, zero_chunks=0,
    )  # fmt: skip


async def setup_points(world: World) -> list[str]:
    """An active backup host, three restore points: vm-a (new, old), vm-b (imported), and
    an unchecked platform ``world.platform`` (imported points restore to a new path)."""
    await world.bus.publish("events", HOST_HEARTBEAT, m.HostHeartbeat(host_id=HOST, hostname="b"))
    for _ in range(100):
        if (await world.go("POST", f"/backup-hosts/{HOST}/activate")).status == 200:
            break
        await asyncio.sleep(0.05)
    disks = [
        _disk("vm-a", "d0", "v1", 0),
        _disk("vm-a", "d0", "v2", 60),
        _disk("vm-b", "d0", "v1", 30),
    ]
    imported = r.BackupSetImport(actor=m.ActorRef(), pool=POOL, disks=disks)
    await world.bus.call(r.BACKUP_SET_IMPORT, imported, r.BackupSetImportReply, timeout=10)
    page = await world.ok("GET", "/restore-points?vm=VM-A&limit=1")
    rest = await world.ok("GET", f"/restore-points?vm=VM-A&limit=1&cursor={page['next_cursor']}")
    assert rest["next_cursor"] is None
    platform = {
        "name": "edge-1",
        "address": "edge.example.net",
        "access_key": "AKEDGE0000001234",
        "secret_key": "SK-" + uuid.uuid4().hex,
        "default_host_id": HOST,
    }
    world.platform = (await world.ok("POST", "/platforms", 201, json=platform))["id"]
    return [page["items"][0]["backup_set_id"], rest["items"][0]["backup_set_id"]]


def _spec(world: World, point: str) -> dict[str, Any]:
    """A restore of a point of vm-a onto vm-a, a new path (the point is imported)."""
    onto = [{"source_disk_id": "d0", "target_disk_id": "d0"}]
    home = {"platform_id": world.platform, "vm_id": "vm-a", "disks": onto}
    spec = {"backup_set_ids": [point], "target": {"new_path": home}, "options": {"host_id": HOST}}
    return {"spec": spec}


async def _operator(world: World) -> str:
    await world.ok("POST", "/groups", 201, json={"name": "site-a"})
    made = {"name": "op", "role": "operator", "groups": ["site-a"]}
    await world.ok("POST", "/users", 201, json=made)
    await world.go("PUT", "/users/op/password", json={"password": OP_PASSWORD})
    return await world.login("op", OP_PASSWORD)


async def test_restore_points_code_start_and_stop(world: World) -> None:
    newest, oldest = await setup_points(world)
    window = (T0 - timedelta(days=1) + timedelta(minutes=15)).isoformat().replace("+", "%2B")
    recent = await world.ok("GET", f"/restore-points?pool=dd&taken_after={window}")
    assert sorted(p["vm"]["vm_id"] for p in recent["items"]) == ["vm-a", "vm-b"]
    bad = await world.go("GET", "/restore-points?node_url=http://x")
    assert (bad.status, (await bad.json())["code"]) == (400, "invalid_input")

    original = {"spec": {"backup_set_ids": [newest], "options": {"host_id": HOST}}}
    refused = await world.go("POST", "/restores", json=original)
    problem = await refused.json()
    assert (refused.status, problem["code"]) == (400, "invalid_restore"), problem
    assert problem["details"]["codes"] == ["restore_point_no_original_vm"], problem
    assert (await world.ok("GET", "/restores"))["items"] == []
    created = await world.ok("POST", "/restores", 201, json=_spec(world, newest))
    rid, code = created["restore"]["id"], created["verification_code"]
    assert created["restore"]["state"] == "pending_verification"
    wrong = await world.go("POST", f"/restores/{rid}/start", json={"verification_code": "AAAAAAAA"})
    assert wrong.content_type == "application/problem+json"
    assert (await wrong.json())["code"] == "verification_code_wrong"
    assert (await world.ok("GET", f"/restores/{rid}"))["state"] == "pending_verification"
    audit = await world.ok("GET", f"/audit?resource=restore/{rid}")
    assert "restore.code_refused" in [e["action"] for e in audit["items"]]

    started = await world.ok(
        "POST", f"/restores/{rid}/start", 202, json={"verification_code": code.lower()}
    )
    assert started["state"] == "queued"
    again = await world.go("POST", f"/restores/{rid}/start", json={"verification_code": code})
    assert (await again.json())["code"] == "verification_code_used"
    other = await world.ok("POST", "/restores", 201, json=_spec(world, oldest))
    listed = await world.ok("GET", "/restores?limit=1")
    assert [x["id"] for x in listed["items"]] == [other["restore"]["id"]]
    more = await world.ok("GET", f"/restores?limit=1&cursor={listed['next_cursor']}")
    assert [x["id"] for x in more["items"]] == [rid]
    stopped = await world.ok("POST", f"/restores/{rid}/stop")
    assert stopped["state"] == "cancelled"

    operator = await _operator(world)
    assert (await world.ok("GET", "/restore-points", token=operator))["items"] == []
    assert (await world.go("GET", f"/restores/{rid}", token=operator)).status == 404
    hidden = await world.go("POST", "/restores", token=operator, json=_spec(world, newest))
    assert (await hidden.json())["code"] == "invalid_restore"


async def _events(resp: ClientResponse, until: str) -> list[tuple[str, str, dict[str, Any]]]:
    """(id, event, data) of each server-sent event up to and with ``until``."""
    found: list[tuple[str, str, dict[str, Any]]] = []
    fields: dict[str, str] = {}
    async with asyncio.timeout(20):
        while True:
            line = (await resp.content.readline()).decode().rstrip("\n")
            if line:
                name, _, value = line.partition(": ")
                fields[name] = value
                continue
            if "event" in fields:
                data = msgspec.json.decode(fields.get("data", "{}"))
                found.append((fields.get("id", ""), fields["event"], data))
                if fields["event"] == until:
                    return found
            fields = {}


async def test_a_restore_is_followed_live_until_it_ends(world: World) -> None:
    newest, _ = await setup_points(world)
    created = await world.ok("POST", "/restores", 201, json=_spec(world, newest))
    rid = created["restore"]["id"]
    code = {"verification_code": created["verification_code"]}
    await world.ok("POST", f"/restores/{rid}/start", 202, json=code)
    stream = await world.go("GET", f"/restores/{rid}/progress")
    assert stream.status == 200 and stream.content_type == "text/event-stream"
    target = VmRef(platform_id="p", vm_id="vm-a")
    now = datetime.now(UTC)  # each event later than the one before, as a worker's are
    started = r.RestoreStarted(
        restore_id=rid, host_id=HOST, vm_count=1, requested_by="root", at=now
    )
    await world.bus.publish("events", RESTORE_STARTED, started, message_id=f"s-{rid}")
    for done in (1, 2):
        progress = r.RestoreProgress(
            restore_id=rid, backup_set_id=newest, target_vm=target, disk_id="d0",
            bytes_done=done << 20, bytes_total=2 << 20, rate_bps=1e6,
            at=now + timedelta(milliseconds=done),
        )  # fmt: skip
        await world.bus.publish("events", RESTORE_PROGRESS, progress, message_id=f"p{done}-{rid}")
    live = await _events(stream, until="RestoreProgress")
    assert [e for _, e, _ in live] == ["RestoreStarted", "RestoreProgress"]
    await world.ok("POST", f"/restores/{rid}/stop")
    rest = await _events(stream, until="end")
    assert [e for _, e, _ in rest][-2:] == ["RestoreFinished", "end"]
    assert rest[-1][2] == {"state": "cancelled"} and rest[0][2]["bytes_done"] == 2 << 20

    # once ended, a stream replays the log (after Last-Event-ID) and ends at once
    late = await world.go("GET", f"/restores/{rid}/progress")
    replay = await _events(late, until="end")
    assert replay[-1] == ("", "end", {"state": "cancelled"})
    finished = [i for i, e, _ in replay if e == "RestoreFinished"]
    assert finished, replay
    resumed = await world.go(
        "GET", f"/restores/{rid}/progress", headers={"Last-Event-ID": finished[0]}
    )
    assert [e for _, e, _ in await _events(resumed, until="end")] == ["end"]
    junk = await world.go("GET", f"/restores/{rid}/progress", headers={"Last-Event-ID": "x" * 300})
    assert junk.status == 400
    assert (await world.go("GET", "/restores/nope/progress")).status == 404


async def started_run(world: World) -> tuple[str, str]:
    """A job on an unchecked platform and a run of it started (queued: no worker): ids."""
    await setup_points(world)
    target = {"host_id": HOST, "pool": {"node_url": POOL.node_url, "name": POOL.name}}
    spec = {
        "name": "nightly",
        "content": {"vms": [{"platform_id": world.platform}]},
        "target": target,
    }
    job = await world.ok("POST", "/jobs", 201, json={"spec": spec})
    await world.ok("POST", f"/jobs/{job['id']}/runs", 202, json={})
    runs: list[Any] = []
    async with asyncio.timeout(20):
        while not runs:
            runs = (await world.ok("GET", f"/jobs/{job['id']}/runs"))["items"]
    return job["id"], runs[0]["id"]


async def end_run(world: World, run_id: str) -> None:
    """Finish a stopped run as its workers would (there are none here)."""
    finish = RunFinish(run_id=run_id, request_id="t", abandon_unfinished=True)
    await world.bus.call(RUN_FINISH, finish, m.RunTransitionReply, timeout=10)


async def test_a_run_is_followed_live_stopped_and_its_events_listed(world: World) -> None:
    job_id, run_id = await started_run(world)
    stream = await world.go("GET", f"/runs/{run_id}/progress")
    assert stream.status == 200
    progress = RunProgress(
        run_id=run_id, job_id=job_id, bytes_done=5, bytes_total=10, rate_bps=2.0,
        eta_s=2.5, vms_total=1, at=datetime.now(UTC),
    )  # fmt: skip
    await world.bus.publish("events", RUN_PROGRESS, progress, message_id=f"rp-{run_id}")
    seen = await _events(stream, until="RunProgress")
    assert seen[-1][2]["bytes_done"] == 5 and seen[-1][0].endswith(f"|rp-{run_id}")
    stopped = await world.ok("POST", f"/runs/{run_id}/stop", json={"reason": "test"})
    assert stopped["run"]["state"] in {"cancelled", "cancelling"}
    if stopped["run"]["state"] == "cancelling":
        await end_run(world, run_id)
    ended = await _events(stream, until="end")
    assert ended[-1][2] == {"state": "cancelled"}
    events = await world.ok("GET", f"/runs/{run_id}/events?limit=200")
    assert "RunFinished" in [e["event"]["type"] for e in events["items"]]


async def test_a_manual_restore_is_run_by_hand(world: World) -> None:
    newest, _ = await setup_points(world)
    body = _spec(world, newest)
    body["spec"]["schedule"] = {"kind": "manual"}
    created = await world.ok("POST", "/restores", 201, json=body)
    rid = created["restore"]["id"]
    early = await world.go("POST", f"/restores/{rid}/run")
    assert (early.status, (await early.json())["code"]) == (409, "restore_not_runnable")
    code = {"verification_code": created["verification_code"]}
    started = await world.ok("POST", f"/restores/{rid}/start", 202, json=code)
    assert started["state"] == "scheduled"
    operator = await _operator(world)
    assert (await world.go("POST", f"/restores/{rid}/run", token=operator)).status == 404
    assert (await world.ok("POST", f"/restores/{rid}/run", 202))["state"] == "queued"
    again = await world.go("POST", f"/restores/{rid}/run")
    problem = await again.json()
    assert (again.status, problem["code"]) == (409, "restore_not_runnable")
    assert problem["details"] == {"state": "queued", "schedule": "manual"}
    audit = await world.ok("GET", f"/audit?resource=restore/{rid}")
    assert "restore.run" in [e["action"] for e in audit["items"]]


async def _until(world: World, path: str, count: int) -> list[Any]:
    """The items of ``path`` once it holds ``count`` (the bus delivers events and runs
    a moment after the request that caused them)."""
    items: list[Any] = []
    async with asyncio.timeout(20):  # each request is the wait, as in ``started_run``
        while len(items) < count:
            items = (await world.ok("GET", path))["items"]
    return items


async def _refused(world: World, path: str, code: str = "invalid_input") -> None:
    resp = await world.go("GET", path)
    problem = await resp.json()
    assert (resp.status, resp.content_type) == (400, "application/problem+json"), problem
    assert problem["code"] == code, (path, problem)


def _q(at: datetime) -> str:
    return at.isoformat().replace("+", "%2B")


async def test_lists_filter_and_page_in_the_catalog(world: World) -> None:
    """Every list's filters, the runs of every job, backup sets paged by the catalog,
    bad filters refused alike, and an operator's runs scoped as its job reads are."""
    job_id, run_id = await started_run(world)
    spec = {
        "name": "weekly-db",
        "content": {"vms": [{"platform_id": world.platform}]},
        "target": {"host_id": HOST, "pool": {"node_url": POOL.node_url, "name": POOL.name}},
    }
    other = (await world.ok("POST", "/jobs", 201, json={"spec": spec}))["id"]
    await world.ok("POST", f"/jobs/{other}/runs", 202, json={"backup_type": "incremental"})
    both = await _until(world, "/runs", 2)
    await world.ok("PUT", f"/jobs/{other}/enabled", json={"enabled": False})
    assert {r["job_id"] for r in both} == {job_id, other}
    first = await world.ok("GET", "/runs?limit=1")
    rest = await world.ok("GET", f"/runs?limit=1&cursor={first['next_cursor']}")
    assert [r["id"] for r in first["items"] + rest["items"]] == [r["id"] for r in both]
    assert rest["next_cursor"] is None
    assert [r["id"] for r in await _until(world, f"/runs?job_id={job_id}", 1)] == [run_id]
    assert len((await world.ok("GET", f"/runs?host_id={HOST}"))["items"]) == 2
    assert (await world.ok("GET", "/runs?host_id=elsewhere"))["items"] == []
    typed = await world.ok("GET", "/runs?backup_type=incremental")
    assert [r["job_id"] for r in typed["items"]] == [other]
    typed = await world.ok("GET", f"/jobs/{job_id}/runs?backup_type=incremental")
    assert typed["items"] == []
    later = datetime.now(UTC) + timedelta(hours=1)
    assert (await world.ok("GET", f"/runs?created_after={_q(later)}"))["items"] == []
    assert len((await world.ok("GET", f"/runs?created_before={_q(later)}"))["items"]) == 2
    for bad in (
        f"/runs?created_after={_q(later)}&created_before={_q(later)}",
        "/runs?created_after=yesterday",
        "/runs?created_after=2024-05-01T12:00:00",  # no zone: refused, not guessed
        "/runs?state=sleeping",
        "/runs?limit=0",
        "/runs?limit=201",
        "/runs?cursor=bm90LWEtY3Vyc29y",
        "/audit?since=2024-05-02T00:00:00Z&until=2024-05-01T00:00:00Z",
        "/restores?state=lost",
        f"/runs/{run_id}/events?type=Nonsense",
        "/jobs?enabled=maybe",
    ):
        await _refused(world, bad)

    named = await world.ok("GET", "/jobs?name=WEEKLY")
    assert [j["id"] for j in named["items"]] == [other]
    assert [j["id"] for j in (await world.ok("GET", "/jobs?enabled=false"))["items"]] == [other]
    on_platform = await world.ok("GET", f"/jobs?platform_id={world.platform}&limit=1")
    assert on_platform["next_cursor"] is not None
    assert (await world.ok("GET", "/jobs?platform_id=elsewhere"))["items"] == []

    stopped = await world.ok("POST", f"/runs/{run_id}/stop", json={"reason": "test"})
    if stopped["run"]["state"] == "cancelling":
        await end_run(world, run_id)
    finished = await _until(world, f"/runs/{run_id}/events?type=RunFinished", 1)
    assert {e["event"]["type"] for e in finished} == {"RunFinished"}
    events = f"/runs/{run_id}/events?since={_q(later)}"
    assert (await world.ok("GET", events))["items"] == []

    audit = await world.ok("GET", "/audit?actor=root&action=job.&limit=200")
    assert {e["action"] for e in audit["items"]} >= {"job.created"}
    assert all(e["action"].startswith("job.") for e in audit["items"])
    exact = await world.ok("GET", "/audit?action=job.created")
    assert {e["resource"] for e in exact["items"]} == {f"job/{job_id}", f"job/{other}"}
    assert (await world.ok("GET", "/audit?actor=nobody"))["items"] == []
    assert (await world.ok("GET", f"/audit?since={_q(later)}"))["items"] == []

    storage = {"name": "ceph-Main", "host_id": HOST, "pool": "rbd"}
    await world.ok("POST", f"/platforms/{world.platform}/storages", 201, json=storage)
    storages = f"/platforms/{world.platform}/storages"
    assert len((await world.ok("GET", f"{storages}?name=MAIN&pool=rbd"))["items"]) == 1
    assert (await world.ok("GET", f"{storages}?pool=other"))["items"] == []

    sets = await world.ok("GET", "/backup-sets?vm_id=vm-a&limit=1")
    older = await world.ok("GET", f"/backup-sets?vm_id=vm-a&limit=1&cursor={sets['next_cursor']}")
    assert older["next_cursor"] is None
    assert sets["items"][0]["taken_at"] > older["items"][0]["taken_at"]
    newest = sets["items"][0]["id"]
    assert len((await world.ok("GET", "/backup-sets?vm_id=vm-a&complete=true"))["items"]) == 2

    created = await world.ok("POST", "/restores", 201, json=_spec(world, newest))
    rid = created["restore"]["id"]
    assert len((await world.ok("GET", f"/restores?host_id={HOST}"))["items"]) == 1
    assert (await world.ok("GET", "/restores?host_id=elsewhere"))["items"] == []
    mine = await world.ok("GET", f"/restores?backup_set_id={newest}")
    assert [x["id"] for x in mine["items"]] == [rid]
    old_point = older["items"][0]["id"]
    assert (await world.ok("GET", f"/restores?backup_set_id={old_point}"))["items"] == []
    assert (await world.ok("GET", f"/restores?created_after={_q(later)}"))["items"] == []
    code = {"verification_code": created["verification_code"]}
    await world.ok("POST", f"/restores/{rid}/start", 202, json=code)
    await world.ok("POST", f"/restores/{rid}/stop")
    ended = await _until(world, f"/restores/{rid}/events?type=RestoreFinished", 1)
    assert [e["event"]["type"] for e in ended] == ["RestoreFinished"]

    operator = await _operator(world)  # in group site-a: no job of root's is its
    assert [g["name"] for g in (await world.ok("GET", "/groups?name=SITE"))["items"]] == ["site-a"]
    assert (await world.ok("GET", "/groups?name=nomatch"))["items"] == []
    assert (await world.ok("GET", "/runs", token=operator))["items"] == []
    assert (await world.go("GET", f"/runs?job_id={job_id}", token=operator)).status == 404
    assert (await world.go("GET", f"/jobs/{job_id}/runs", token=operator)).status == 404
    assert (await world.ok("GET", "/backup-sets?vm_id=vm-a", token=operator))["items"] == []
