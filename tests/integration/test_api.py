"""The API in-process (aiohttp's test client) against a real catalog on the catalog
DB, over RabbitMQ: sign-in, the auth matrix generated from the route table, slowed
logins, resources, and no secret in any response or log line."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import msgspec
import pytest
import structlog
from aiohttp import ClientResponse
from tests.support.api_world import ADMIN, World, api_world

from edgeback_api.routing import Access, Route
from edgeback_api.table import route_table
from edgeback_core.bus.topology import HOST_HEARTBEAT
from edgeback_core.messages import backups as b
from edgeback_core.messages import catalog as m
from edgeback_core.messages import catalog_rpc
from edgeback_core.messages.runs import DiskStats, VmRef

pytestmark = pytest.mark.integration
ADMIN_PASSWORD = "admin-pass-Qx7-" + uuid.uuid4().hex[:8]
OPERATOR_PASSWORD = "oper-pass-Zr2-" + uuid.uuid4().hex[:8]
PLATFORM_SECRET = "SK-" + uuid.uuid4().hex


@pytest.fixture
async def world(amqp_url: str, mongo_url: str) -> AsyncIterator[World]:
    async with api_world(amqp_url, mongo_url, ADMIN_PASSWORD) as running:
        yield running


def _auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _url(path: str) -> str:
    return "/api/v1" + path.replace("{", "x").replace("}", "")


async def _operator(world: World, admin: str) -> str:
    c = world.client
    assert (
        await c.post("/api/v1/groups", json={"name": "site-a"}, headers=_auth(admin))
    ).status == 201
    made = await c.post(
        "/api/v1/users",
        json={"name": "op", "role": "operator", "groups": ["site-a"]},
        headers=_auth(admin),
    )
    assert made.status == 201
    pw = await c.put(
        "/api/v1/users/op/password", json={"password": OPERATOR_PASSWORD}, headers=_auth(admin)
    )
    assert pw.status == 204
    return await world.login("op", OPERATOR_PASSWORD)


async def test_every_route_needs_its_token_and_role(world: World) -> None:
    admin = await world.login(ADMIN, ADMIN_PASSWORD)
    operator = await _operator(world, admin)
    # signing out ends the operator's session: that route goes last
    for route in sorted(route_table(), key=lambda r: r.operation == "logout"):
        if route.access is Access.PUBLIC:
            continue
        url = _url(route.path)
        anonymous = await world.client.request(route.method, url)
        assert anonymous.status == 401, (route.operation, await anonymous.text())
        assert anonymous.content_type == "application/problem+json"
        assert (await anonymous.json())["code"] == "unauthenticated"
        forged = await world.client.request(route.method, url, headers=_auth("ebt_" + "A" * 43))
        assert forged.status == 401, route.operation
        as_operator = await world.client.request(
            route.method, url, headers=_auth(operator), json={}
        )
        if route.access is Access.ADMIN:
            assert as_operator.status == 403, route.operation
            assert (await as_operator.json())["code"] == "permission_denied"
        else:
            assert as_operator.status not in {401, 403, 500}, (
                route.operation,
                await as_operator.text(),
            )


async def test_repeated_failed_logins_are_slowed_down(world: World) -> None:
    """Three failures are free, then each one doubles the wait (1 s, 2 s, 4 s...).
    Waits are honoured rather than raced, so a slow machine cannot change the answer."""
    statuses, waits = [], []
    for _ in range(12):
        resp = await world.client.post(
            "/api/v1/auth/login", json={"name": "root", "password": "wrong-password"}
        )
        statuses.append(resp.status)
        if resp.status == 429:
            waits.append(int(resp.headers["Retry-After"]))
            if waits[-1] >= 4:
                break
            await asyncio.sleep(waits[-1])
    assert statuses[:4] == [401, 401, 401, 401] and statuses[-1] == 429, statuses
    assert waits[0] >= 1 and waits[-1] >= 4, waits
    # the right password waits too: the delay is per user, whoever guesses
    late = await world.client.post(
        "/api/v1/auth/login", json={"name": "root", "password": ADMIN_PASSWORD}
    )
    assert late.status == 429 and (await late.json())["code"] == "login_throttled"


async def test_resources_flow_and_secrets_stay_out(world: World) -> None:
    c = world.client
    with structlog.testing.capture_logs() as logs:
        admin = await world.login(ADMIN, ADMIN_PASSWORD)
        await world.api.bus.publish(
            "events", HOST_HEARTBEAT, m.HostHeartbeat(host_id="h1", hostname="bk1")
        )
        bodies = [await _host_active(world, admin)]
        register = {
            "name": "edge-1",
            "address": "edge.example.net",
            "access_key": "AKEDGE0000001234",
            "secret_key": PLATFORM_SECRET,
            "default_host_id": "h1",
        }
        made = await c.post("/api/v1/platforms", json=register, headers=_auth(admin))
        assert made.status == 201, await made.text()
        platform = await made.json()
        bodies.append(await made.text())
        job = {
            "spec": {
                "name": "nightly",
                "content": {"vms": [{"platform_id": platform["id"]}]},
                "target": {
                    "host_id": "h1",
                    "pool": {"node_url": "http://127.0.0.1:9", "name": "p"},
                },
            }
        }
        created = await c.post("/api/v1/jobs", json=job, headers=_auth(admin))
        assert created.status == 201, await created.text()
        listed = await c.get("/api/v1/jobs?limit=1", headers=_auth(admin))
        assert [j["spec"]["name"] for j in (await listed.json())["items"]] == ["nightly"]
        token = await c.post("/api/v1/auth/tokens", json={"label": "ci"}, headers=_auth(admin))
        api_token = (await token.json())["token"]
        assert (await c.get("/api/v1/platforms", headers=_auth(api_token))).status == 200
        for resp in [
            await c.get(f"/api/v1/platforms/{platform['id']}", headers=_auth(admin)),
            await c.get("/api/v1/audit", headers=_auth(admin)),
        ]:
            bodies.append(await resp.text())
        assert (await c.post("/api/v1/auth/logout", headers=_auth(admin))).status == 204
        assert (await c.get("/api/v1/auth/me", headers=_auth(admin))).status == 401
    text = "\n".join(bodies) + "\n".join(map(repr, logs))
    for secret in (PLATFORM_SECRET, ADMIN_PASSWORD, admin, api_token):
        assert secret not in text
    assert any(e.get("event") == "api.request" for e in logs)


async def _host_active(world: World, admin: str) -> str:
    for _ in range(100):
        resp = await world.client.post("/api/v1/backup-hosts/h1/activate", headers=_auth(admin))
        if resp.status == 200:
            return await resp.text()
        await asyncio.sleep(0.05)
    raise AssertionError("the heartbeat never registered the host")


# --- the wrong-group pass: what runs on a backup host of another group -----------------
HOST_B, HOST_A = "bk-site-b", "bk-site-a"
T0 = datetime(2026, 1, 2, 3, 0, tzinfo=UTC)


@dataclass
class GroupB:
    """Resources whose backup host is authorized (in the end) only to group site-b."""

    ids: dict[str, str]  # path field -> id (job_id: the backup job's)
    restore_job: str
    job_spec: dict[str, Any]
    restore_job_spec: dict[str, Any]
    reads: list[str]  # what an admin reads back to see that nothing changed

    def id_for(self, route: Route, field: str) -> str:
        if route.tag == "restore-jobs" and field == "job_id":
            return self.restore_job
        assert field in self.ids, f"{route.operation}: no group-B resource seeded for {field}"
        return self.ids[field]


async def _call(world: World, token: str, method: str, path: str, **kw: Any) -> ClientResponse:
    return await world.client.request(method, "/api/v1" + path, headers=_auth(token), **kw)


async def _ok(world: World, token: str, method: str, path: str, **kw: Any) -> Any:
    resp = await _call(world, token, method, path, **kw)
    assert resp.status < 300, (method, path, resp.status, await resp.text())
    return await resp.json()


async def _active_host(world: World, admin: str, host: str, groups: list[str]) -> None:
    await world.api.bus.publish(
        "events", HOST_HEARTBEAT, m.HostHeartbeat(host_id=host, hostname=host)
    )
    for _ in range(100):  # the heartbeat is consumed, not called: wait for it
        if (await _call(world, admin, "POST", f"/backup-hosts/{host}/activate")).status == 200:
            break
        await asyncio.sleep(0.05)
    await _ok(world, admin, "PUT", f"/backup-hosts/{host}/groups", json={"groups": groups})


async def _platform(world: World, admin: str, name: str, host: str, group: str) -> str:
    body = {"name": name, "address": f"{name}.example.net", "access_key": "AKEDGE0000001234",
            "secret_key": PLATFORM_SECRET, "default_host_id": host, "groups": [group]}  # fmt: skip
    return str((await _ok(world, admin, "POST", "/platforms", json=body))["id"])


def _job_spec(name: str, platform: str, host: str) -> dict[str, Any]:
    pool = {"node_url": "http://127.0.0.1:9", "name": "p"}
    return {"name": name, "content": {"vms": [{"platform_id": platform}]},
            "target": {"host_id": host, "pool": pool}}  # fmt: skip


async def _backed_up_run(world: World, job_id: str, platform: str) -> tuple[str, str]:
    """A run of the job, still running (one of its two VMs done), whose first VM left a
    restore point: as the catalog's service callers (scheduler, worker) make them."""

    async def rpc(name: str, request: msgspec.Struct, reply: type[Any]) -> Any:
        return await world.api.bus.call(name, request, reply, timeout=10)

    start = b.RunStart(job_id=job_id, requested_by="root", idempotency_key="k1")
    run_id = (await rpc(b.RUN_START, start, b.RunStartReply)).run.id
    for n, target in enumerate(("queued", "running")):
        step = m.RunTransition(run_id=run_id, target=target, request_id=f"t{n}")  # type: ignore[arg-type]
        await rpc(catalog_rpc.RUN_TRANSITION, step, m.RunTransitionReply)
    vm, other = (VmRef(platform_id=platform, vm_id=f"vm-{n}", name=f"web-{n}") for n in (1, 2))
    await rpc(b.VM_PLAN, b.VmPlan(run_id=run_id, vms=[vm, other]), b.VmPlanReply)
    await rpc(b.VM_START, b.VmStart(run_id=run_id, vm=vm, worker_id="w1"), b.VmTaskReply)
    commit = b.DiskCommit(
        run_id=run_id, vm_id="vm-1", disk_id="d0", backup_type="full", taken_at=T0,
        manifest_name="vm-1/d0", manifest_version="v1", size_bytes=1 << 20,
        stats=DiskStats(bytes_read=1), snapshot_name="s1", snapshot_kept=True,
    )  # fmt: skip
    await rpc(b.DISK_COMMIT, commit, b.DiskCommitReply)
    finish = b.VmFinish(run_id=run_id, vm_id="vm-1", outcome="succeeded")
    done = await rpc(b.VM_FINISH, finish, b.VmTaskReply)
    return run_id, done.task.backup_set_id


async def _group_b(world: World, admin: str, operator: str) -> GroupB:
    """Every kind of resource on host ``HOST_B``, first authorized to both groups (the
    operator of site-a sees the job), then to site-b only (the admin takes site-a off)."""
    await _ok(world, admin, "POST", "/groups", json={"name": "site-b"})
    await _active_host(world, admin, HOST_B, ["site-a", "site-b"])
    platform = await _platform(world, admin, "edge-b", HOST_B, "site-b")
    spec = _job_spec("nightly-b", platform, HOST_B)
    # its own groups name site-a: they must grant nothing once the host is site-b's only
    job = await _ok(world, admin, "POST", "/jobs", json={"spec": spec, "groups": ["site-a"]})
    assert (await _call(world, operator, "GET", f"/jobs/{job['id']}")).status == 200
    run_id, point = await _backed_up_run(world, job["id"], platform)
    onto = [{"source_disk_id": "d0", "target_disk_id": "d0"}]
    target = {"new_path": {"platform_id": platform, "vm_id": "vm-1", "disks": onto}}
    restore = {"backup_set_ids": [point], "target": target, "options": {"host_id": HOST_B}}
    made = await _ok(world, admin, "POST", "/restores", json={"spec": restore})
    restore_job_spec = {**restore, "name": "back-b"}
    restore_job = await _ok(world, admin, "POST", "/restore-jobs", json={"spec": restore_job_spec})
    storage = {"name": "ceph-b", "host_id": HOST_B, "pool": "rbd", "client_id": "admin",
               "conf_path": "/etc/ceph/ceph.conf"}  # fmt: skip
    made_storage = await _ok(world, admin, "POST", f"/platforms/{platform}/storages", json=storage)
    pool = {"name": "dedup-b", "node_url": "http://127.0.0.1:9", "host_id": HOST_B}
    made_pool = await _ok(world, admin, "POST", "/pools", json=pool)
    token = await _ok(world, admin, "POST", "/auth/tokens", json={"label": "admin's"})
    await _ok(world, admin, "PUT", f"/backup-hosts/{HOST_B}/groups", json={"groups": ["site-b"]})
    ids = {
        "host_id": HOST_B, "platform_id": platform, "storage_id": made_storage["id"],
        "pool_id": made_pool["id"], "job_id": job["id"], "run_id": run_id,
        "backup_set_id": point, "restore_id": made["restore"]["id"],
        "token_id": token["info"]["id"],
    }  # fmt: skip
    rj = restore_job["job"]["id"]
    reads = [f"/backup-hosts/{HOST_B}", f"/platforms/{platform}", f"/storages/{ids['storage_id']}",
             f"/pools/{ids['pool_id']}", f"/jobs/{job['id']}", f"/runs/{run_id}",
             f"/backup-sets/{point}", f"/restores/{ids['restore_id']}", f"/restore-jobs/{rj}",
             "/auth/tokens"]  # fmt: skip
    return GroupB(ids=ids, restore_job=rj, job_spec=spec, restore_job_spec=restore_job_spec,
                  reads=reads)  # fmt: skip


def _bodies(seeded: GroupB) -> dict[str, Any]:
    """A valid body for each route that needs one: the refusal must be the scope's,
    not the body's."""
    return {
        "edit_job": {"revision": 1, "spec": seeded.job_spec},
        "clone_job": {"name": "stolen"},
        "set_job_enabled": {"enabled": False},
        "start_restore": {"verification_code": "AAAA-AAAA"},
        "edit_restore_job": {"revision": 1, "spec": seeded.restore_job_spec},
        "clone_restore_job": {"name": "stolen"},
    }


async def _snapshot(world: World, admin: str, seeded: GroupB) -> list[Any]:
    return [await _ok(world, admin, "GET", path) for path in seeded.reads]


async def test_an_operator_reaches_nothing_on_another_groups_backup_host(world: World) -> None:
    """Generated from the route table: every route naming a resource of a backup host
    authorized only to site-b answers the site-a operator 404 ``not_found`` (as a
    resource that does not exist: its existence does not leak) and changes nothing;
    every list leaves those resources out."""
    admin = await world.login(ADMIN, ADMIN_PASSWORD)
    operator = await _operator(world, admin)
    seeded = await _group_b(world, admin, operator)
    # what the operator does see, so the lists below are not empty by accident
    await _active_host(world, admin, HOST_A, ["site-a"])
    own_platform = await _platform(world, admin, "edge-a", HOST_A, "site-a")
    own = await _ok(world, operator, "POST", "/jobs",
                    json={"spec": _job_spec("nightly-a", own_platform, HOST_A)})  # fmt: skip
    before = await _snapshot(world, admin, seeded)
    audited = (await _ok(world, admin, "GET", "/audit?limit=1"))["items"][0]["id"]
    bodies, hidden = _bodies(seeded), [*seeded.ids.values(), seeded.restore_job]
    for route in route_table():
        if route.access is not Access.USER or route.operation == "logout":
            continue
        if route.path_fields:
            path = route.path.format(**{f: seeded.id_for(route, f) for f in route.path_fields})
            body = bodies.get(route.operation, {}) if route.has_body else None
            resp = await _call(world, operator, route.method, path, json=body)
            assert resp.status == 404, (route.operation, resp.status, await resp.text())
            assert resp.content_type == "application/problem+json", route.operation
            assert (await resp.json())["code"] == "not_found", route.operation
        elif route.method == "GET":
            for query in _list_queries(route, seeded):
                resp = await _call(world, operator, "GET", route.path + query)
                text = await resp.text()
                # a list (or /auth/me) answers; 400 where it needs a filter, 404 for a filter
                # naming one job it does not see (as a job that does not exist)
                assert resp.status in (200, 400, 404), (route.operation, query, text)
                if resp.status != 200:
                    assert resp.content_type == "application/problem+json", route.operation
                if resp.status == 404:
                    assert (await resp.json())["code"] == "not_found", (route.operation, query)
                leaked = [x for x in hidden if x in text and x not in query]
                assert not leaked, (route.operation, query, leaked)
    assert await _snapshot(world, admin, seeded) == before
    entries = (await _ok(world, admin, "GET", "/audit?limit=200"))["items"]
    assert [e["action"] for e in entries[: [e["id"] for e in entries].index(audited)]] == []
    listed = await _ok(world, operator, "GET", "/jobs")
    assert [j["id"] for j in listed["items"]] == [own["id"]]
    # the admin still reaches everything, and stopping the job stops its run
    stopped = await _ok(world, admin, "POST", f"/jobs/{seeded.ids['job_id']}/stop", json={})
    assert [(r["id"], r["state"]) for r in stopped["runs"]] == [
        (seeded.ids["run_id"], "cancelling")
    ]
    log = await _ok(world, admin, "GET", f"/audit?resource=job/{seeded.ids['job_id']}")
    assert log["items"][0]["action"] == "job.stopped"


def _list_queries(route: Route, seeded: GroupB) -> list[str]:
    """The list as it is, then filtered by each group-B id its query can name."""
    known = {"host_id": HOST_B, "job_id": seeded.ids["job_id"], "run_id": seeded.ids["run_id"],
             "backup_set_id": seeded.ids["backup_set_id"], "vm_id": "vm-1"}  # fmt: skip
    fields = route.query.__struct_fields__ if route.query is not None else ()
    # each filter on its own: one list's 404 for a hidden job must not hide another filter
    return ["", *(f"?{f}={known[f]}" for f in fields if f in known)]
