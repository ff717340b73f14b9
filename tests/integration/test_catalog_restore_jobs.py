"""Restore jobs through the catalog's RPCs over both buses, real catalog DB: create saves
the job and makes its first restore (its code confirms it); start makes a new restore
with a new code, refused while one is queued or while the job is disabled; edit and
delete refuse a busy job and cancel the restores bound to the old spec; clone copies
without a restore; stop cancels the running one; a disabled job's once restore waits
for the scheduler; operators see the jobs of the hosts authorized to their groups."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import msgspec
import pytest
from tests.integration.test_catalog_restores import T0, RestoreWorld, setup, spec, world
from tests.integration.test_catalog_rpc import ADMIN

from edgeback_catalog.mongo import Coll
from edgeback_core.bus.port import Envelope
from edgeback_core.bus.topology import worker_runs
from edgeback_core.ids import BackupHostId
from edgeback_core.messages import catalog as m
from edgeback_core.messages import catalog_rpc
from edgeback_core.messages import restorejobs as rj
from edgeback_core.messages import restores as r
from edgeback_core.messages import scheduling as s

pytestmark = pytest.mark.integration
__all__ = ["world"]


async def plans_of(world: RestoreWorld) -> asyncio.Queue[r.PlanRestore]:
    plans: asyncio.Queue[r.PlanRestore] = asyncio.Queue()

    async def take(msg: r.PlanRestore, _env: Envelope) -> None:
        await plans.put(msg)

    await world.bus.consume(worker_runs(BackupHostId("h1")), take, r.PlanRestore)
    return plans


async def make_job(
    world: RestoreWorld, point: str, name: str = "web", **kw: Any
) -> rj.RestoreJobStarted:
    create = rj.RestoreJobCreate(actor=ADMIN, spec=spec([point], name=name, **kw))
    return await world.call(rj.RESTORE_JOB_CREATE, create, rj.RestoreJobStarted)


async def confirm(world: RestoreWorld, made: rj.RestoreJobStarted) -> r.RestoreInfo:
    start = r.RestoreStart(
        actor=ADMIN, restore_id=made.restore.id, verification_code=made.verification_code
    )
    return await world.call(r.RESTORE_START, start, r.RestoreInfo)


async def states(world: RestoreWorld, job_id: str) -> dict[str, str]:
    detail = await world.call(
        rj.RESTORE_JOB_GET, rj.RestoreJobGet(actor=ADMIN, job_id=job_id), rj.RestoreJobDetail
    )
    return {x.id: x.state for x in detail.restores}


async def test_create_confirm_start_again_and_stop(world: RestoreWorld) -> None:
    ids = await setup(world)
    plans = await plans_of(world)
    made = await make_job(world, ids["a_new"])
    job = made.job
    assert (job.name, job.revision, job.enabled) == ("web", 1, True)
    assert (made.restore.state, made.restore.job_id) == ("pending_verification", job.id)
    assert (await confirm(world, made)).state == "queued"
    async with asyncio.timeout(10):
        assert (await plans.get()).restore_id == made.restore.id

    start = rj.RestoreJobStart(actor=ADMIN, job_id=job.id)
    assert await world.code_of(rj.RESTORE_JOB_START, start) == "restore_job_busy"
    stop = rj.RestoreJobStop(actor=ADMIN, job_id=job.id)
    stopped = await world.call(rj.RESTORE_JOB_STOP, stop, rj.RestoreJobStopped)
    assert [(x.id, x.state) for x in stopped.restores] == [(made.restore.id, "cancelled")]
    first = await world.call(rj.RESTORE_JOB_START, start, rj.RestoreJobStarted)
    second = await world.call(rj.RESTORE_JOB_START, start, rj.RestoreJobStarted)
    assert second.cancelled == [first.restore.id]  # superseded while waiting for its code
    assert first.verification_code != second.verification_code
    assert (await confirm(world, second)).state == "queued"
    assert await states(world, job.id) == {
        made.restore.id: "cancelled",
        first.restore.id: "cancelled",
        second.restore.id: "queued",
    }
    actions = [
        d["action"]
        for d in await world.db.find(Coll.AUDIT_LOG, {"resource": f"restore_job/{job.id}"})
    ]
    assert actions == ["restore_job.created", "restore_job.stopped", *["restore_job.started"] * 2]


async def test_edit_and_delete_refuse_a_busy_job_and_cancel_what_waits(
    world: RestoreWorld,
) -> None:
    ids = await setup(world)
    await plans_of(world)  # the host's run queue: a plan published to none fails the restore
    made = await make_job(world, ids["a_new"], schedule={"kind": "manual"})
    job_id = made.job.id
    assert (await confirm(world, made)).state == "scheduled"
    pending = await world.call(
        rj.RESTORE_JOB_START, rj.RestoreJobStart(actor=ADMIN, job_id=job_id), rj.RestoreJobStarted
    )
    new_spec = spec([ids["a_old"]], name="web-old")
    stale = rj.RestoreJobUpdate(actor=ADMIN, job_id=job_id, revision=7, spec=new_spec)
    assert await world.code_of(rj.RESTORE_JOB_UPDATE, stale) == "stale_version"
    edit = msgspec.structs.replace(stale, revision=1)
    edited = await world.call(rj.RESTORE_JOB_UPDATE, edit, rj.RestoreJobChanged)
    assert sorted(edited.cancelled) == sorted([made.restore.id, pending.restore.id])
    assert (edited.job.name, edited.job.revision, edited.job.spec) == ("web-old", 2, new_spec)
    # the cancelled restore's code starts nothing now
    assert (
        await world.code_of(
            r.RESTORE_START,
            r.RestoreStart(
                actor=ADMIN,
                restore_id=pending.restore.id,
                verification_code=pending.verification_code,
            ),
        )
        == "invalid_transition"
    )

    again = await world.call(
        rj.RESTORE_JOB_START, rj.RestoreJobStart(actor=ADMIN, job_id=job_id), rj.RestoreJobStarted
    )
    assert again.restore.spec == new_spec
    renamed = rj.RestoreJobUpdate(
        actor=ADMIN, job_id=job_id, revision=2, spec=msgspec.structs.replace(new_spec, name="w2")
    )
    kept = await world.call(rj.RESTORE_JOB_UPDATE, renamed, rj.RestoreJobChanged)
    assert (kept.job.revision, kept.cancelled) == (3, [])  # a new name: its code still holds
    assert (await confirm(world, again)).state == "queued"
    edit2 = msgspec.structs.replace(edit, revision=3)
    assert await world.code_of(rj.RESTORE_JOB_UPDATE, edit2) == "restore_job_busy"
    delete = rj.RestoreJobDelete(actor=ADMIN, job_id=job_id)
    assert await world.code_of(rj.RESTORE_JOB_DELETE, delete) == "restore_job_busy"
    await world.call(
        rj.RESTORE_JOB_STOP, rj.RestoreJobStop(actor=ADMIN, job_id=job_id), rj.RestoreJobStopped
    )
    waiting = await world.call(
        rj.RESTORE_JOB_START, rj.RestoreJobStart(actor=ADMIN, job_id=job_id), rj.RestoreJobStarted
    )
    deleted = await world.call(rj.RESTORE_JOB_DELETE, delete, rj.RestoreJobChanged)
    assert deleted.cancelled == [waiting.restore.id]
    get = rj.RestoreJobGet(actor=ADMIN, job_id=job_id)
    assert await world.code_of(rj.RESTORE_JOB_GET, get) == "not_found"
    assert await world.db.count(Coll.RESTORES, {"job_id": job_id}) == 4  # history stays


async def test_a_disabled_job_makes_and_queues_nothing(world: RestoreWorld) -> None:
    ids = await setup(world)
    plans = await plans_of(world)
    at = T0 + timedelta(minutes=5)  # before the codes expire (10 minutes)
    once = {"kind": "once", "at": at.isoformat(), "tz": "UTC"}
    made = await make_job(world, ids["a_new"], schedule=once)
    job_id = made.job.id
    assert (await confirm(world, made)).state == "scheduled"
    pending = await world.call(
        rj.RESTORE_JOB_START, rj.RestoreJobStart(actor=ADMIN, job_id=job_id), rj.RestoreJobStarted
    )
    off = rj.RestoreJobSetEnabled(actor=ADMIN, job_id=job_id, enabled=False)
    assert not (await world.call(rj.RESTORE_JOB_SET_ENABLED, off, rj.RestoreJobInfo)).enabled
    start = rj.RestoreJobStart(actor=ADMIN, job_id=job_id)
    assert await world.code_of(rj.RESTORE_JOB_START, start) == "job_disabled"
    code = r.RestoreStart(
        actor=ADMIN, restore_id=pending.restore.id, verification_code=pending.verification_code
    )
    assert await world.code_of(r.RESTORE_START, code) == "job_disabled"

    lease = s.LeaderAcquire(actor=m.ActorRef(), role=s.SCHEDULER_ROLE, holder="a", ttl_s=3600)
    token = (await world.call(s.LEADER_ACQUIRE, lease, s.LeaderInfo)).token
    world.clock.now = at + timedelta(minutes=1)
    due = s.QueueDueRestores(actor=m.ActorRef(), holder="a", token=token, before=world.clock.now)
    held = await world.call(s.SCHEDULE_QUEUE_RESTORES, due, s.QueueDueRestoresReply)
    assert [(x.restore_id, x.outcome) for x in held.restores] == [(made.restore.id, "held")]
    assert plans.empty()

    on = msgspec.structs.replace(off, enabled=True)
    await world.call(rj.RESTORE_JOB_SET_ENABLED, on, rj.RestoreJobInfo)
    queued = await world.call(s.SCHEDULE_QUEUE_RESTORES, due, s.QueueDueRestoresReply)
    assert [(x.restore_id, x.outcome) for x in queued.restores] == [(made.restore.id, "queued")]
    async with asyncio.timeout(10):
        assert (await plans.get()).restore_id == made.restore.id
    # its code still good (it was refused, not spent), but the job is busy now
    assert await world.code_of(r.RESTORE_START, code) == "restore_job_busy"


async def test_clone_list_and_scope(world: RestoreWorld) -> None:
    ids = await setup(world)
    made = await make_job(world, ids["a_new"], name="alpha")
    clone = rj.RestoreJobClone(actor=ADMIN, job_id=made.job.id, name="beta")
    copy = await world.call(rj.RESTORE_JOB_CLONE, clone, rj.RestoreJobInfo)
    assert (copy.name, copy.spec.backup_set_ids, copy.enabled) == ("beta", [ids["a_new"]], True)
    assert await world.db.count(Coll.RESTORES, {"job_id": copy.id}) == 0
    assert await world.code_of(rj.RESTORE_JOB_CLONE, clone) == "name_taken"
    bad = rj.RestoreJobCreate(actor=ADMIN, spec=spec([ids["a_new"]]))  # no name
    assert await world.code_of(rj.RESTORE_JOB_CREATE, bad) == "invalid_input"
    nothing = rj.RestoreJobCreate(actor=ADMIN, spec=spec(["no-such-set"], name="x"))
    assert await world.code_of(rj.RESTORE_JOB_CREATE, nothing) == "invalid_restore"
    assert await world.db.count(Coll.RESTORE_JOBS, {}) == 2

    page = rj.RestoreJobList(actor=ADMIN, limit=1)
    first = await world.call(rj.RESTORE_JOB_LIST, page, rj.RestoreJobListReply)
    assert ([j.name for j in first.jobs], first.next_after) == (["alpha"], "alpha")
    rest = msgspec.structs.replace(page, after=first.next_after)
    second = await world.call(rj.RESTORE_JOB_LIST, rest, rj.RestoreJobListReply)
    assert ([j.name for j in second.jobs], second.next_after) == (["beta"], None)
    found = rj.RestoreJobList(actor=ADMIN, name="ET", host_id="h1", enabled=True)
    assert [
        j.name for j in (await world.call(rj.RESTORE_JOB_LIST, found, rj.RestoreJobListReply)).jobs
    ] == ["beta"]

    for group, user in (("g1", "op1"), ("g2", "op2")):
        await world.call(catalog_rpc.GROUP_CREATE, m.GroupCreate(name=group), m.GroupInfo)
        made_user = m.UserCreate(name=user, role="operator", groups=[group])
        await world.call(catalog_rpc.USER_CREATE, made_user, m.UserInfo)
    authorize = m.HostAuthorize(actor=ADMIN, host_id="h1", groups=["g1"])
    await world.call(catalog_rpc.HOST_AUTHORIZE, authorize, m.HostInfo)
    for user, seen in (("op1", ["alpha", "beta"]), ("op2", [])):
        ask = rj.RestoreJobList(actor=m.ActorRef(user=user))
        got = await world.call(rj.RESTORE_JOB_LIST, ask, rj.RestoreJobListReply)
        assert [j.name for j in got.jobs] == seen, user
    other = rj.RestoreJobStart(actor=m.ActorRef(user="op2"), job_id=made.job.id)
    assert await world.code_of(rj.RESTORE_JOB_START, other) == "not_found"
    # op1 sees the job, but not the imported restore points it names (admins only)
    mine = rj.RestoreJobStart(actor=m.ActorRef(user="op1"), job_id=made.job.id)
    assert await world.code_of(rj.RESTORE_JOB_START, mine) == "invalid_restore"

    # restores follow their backup host too, whoever made them: op1 sees the admin's
    op1, op2 = m.ActorRef(user="op1"), m.ActorRef(user="op2")
    rid = made.restore.id
    detail = await world.call(
        rj.RESTORE_JOB_GET, rj.RestoreJobGet(actor=op1, job_id=made.job.id), rj.RestoreJobDetail
    )
    assert [x.id for x in detail.restores] == [rid]
    assert (
        await world.call(r.RESTORE_GET, r.RestoreGet(actor=op1, restore_id=rid), r.RestoreInfo)
    ).id == rid
    for who, seen in ((op1, [rid]), (op2, [])):
        listed = await world.call(r.RESTORE_LIST, r.RestoreList(actor=who), r.RestoreListReply)
        assert [x.id for x in listed.restores] == seen, who
    for name, request in (
        (r.RESTORE_GET, r.RestoreGet(actor=op2, restore_id=rid)),
        (r.RESTORE_START, r.RestoreStart(actor=op2, restore_id=rid, verification_code="x")),
        (r.RESTORE_RUN, r.RestoreRun(actor=op2, restore_id=rid)),
        (r.RESTORE_CANCEL, r.RestoreCancel(actor=op2, restore_id=rid)),
        (r.RESTORE_EVENTS, r.RestoreEventsGet(actor=op2, restore_id=rid)),
    ):
        assert await world.code_of(name, request) == "not_found", name
    assert await world.db.count(Coll.AUDIT_LOG, {"action": "restore.code_refused"}) == 0
    stopped = await world.call(
        r.RESTORE_CANCEL, r.RestoreCancel(actor=op1, restore_id=rid), r.RestoreInfo
    )
    assert stopped.state == "cancelled"


async def test_two_restores_of_a_job_run_at_once_queue_one(world: RestoreWorld) -> None:
    ids = await setup(world)
    plans = await plans_of(world)
    made = await make_job(world, ids["a_new"], schedule={"kind": "manual"})
    held = [await confirm(world, made)]  # before the next start would supersede it
    start = rj.RestoreJobStart(actor=ADMIN, job_id=made.job.id)
    second = await world.call(rj.RESTORE_JOB_START, start, rj.RestoreJobStarted)
    held.append(await confirm(world, second))
    assert [x.state for x in held] == ["scheduled", "scheduled"]
    runs = [
        world.call(r.RESTORE_RUN, r.RestoreRun(actor=ADMIN, restore_id=x.id), r.RestoreInfo)
        for x in held
    ]
    answers = await asyncio.gather(*runs, return_exceptions=True)
    queued = [a.id for a in answers if isinstance(a, r.RestoreInfo)]
    refused = [getattr(a, "code", a) for a in answers if not isinstance(a, r.RestoreInfo)]
    assert len(queued) == 1 and refused == ["restore_job_busy"], answers
    async with asyncio.timeout(10):
        assert (await plans.get()).restore_id == queued[0]
    await asyncio.sleep(0.2)  # a second plan would have arrived by now
    assert plans.empty()
    assert sorted((await states(world, made.job.id)).values()) in (
        ["queued", "scheduled"],  # refused before its write
        ["cancelled", "queued"],  # refused after it: cancelled again
    )
