"""The catalog's run glue over both buses with the catalog DB behind it: ``StartRun``
in, ``PlanRun`` to the backup host or ``RunSkipped`` out; run events kept once in the
run log; one ``RunFinished`` per run; cancel. A test client stands in for the worker
(it consumes the host's run queue) and for an integrator (it listens to run events)."""

# ruff: noqa: F811 (``world`` is the fixture imported from test_catalog_rpc)
from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import pytest
from tests.integration.conftest import BusOpener
from tests.integration.test_catalog_backups import finish, to_running, vm, vm_start
from tests.integration.test_catalog_jobs import create, setup, spec
from tests.integration.test_catalog_rpc import ADMIN, SERVICE, World, world  # noqa: F401

from edgeback_catalog.mongo import Coll
from edgeback_core.bus.amqp import AmqpBus
from edgeback_core.bus.port import Envelope
from edgeback_core.bus.topology import (
    CATALOG_RUN_STARTS,
    RUN_EVENT_KEYS,
    START_RUN,
    QueueSpec,
    worker_runs,
)
from edgeback_core.errors import EdgebackError
from edgeback_core.ids import BackupHostId
from edgeback_core.messages import backups as b
from edgeback_core.messages import catalog as m
from edgeback_core.messages import catalog_rpc
from edgeback_core.messages import runs as r
from edgeback_core.messages.base import decoder

pytestmark = pytest.mark.integration

LISTENER = QueueSpec(
    name="t.run_listener", exchange="events", bindings=tuple(RUN_EVENT_KEYS.values())
)


@dataclass
class Seen:
    """What the stand-in worker and the stand-in integrator received."""

    plans: list[tuple[r.PlanRun, str]] = field(default_factory=list)
    events: list[tuple[r.RunEvent, str]] = field(default_factory=list)

    def of(self, kind: type[r.RunEvent]) -> list[tuple[r.RunEvent, str]]:
        return [(e, i) for e, i in self.events if isinstance(e, kind)]


async def eventually(check: Callable[[], bool], limit: float = 15.0) -> None:
    async with asyncio.timeout(limit):
        while not check():  # noqa: ASYNC110 - waiting for deliveries we do not own
            await asyncio.sleep(0.02)


@pytest.fixture
async def seen(world: World) -> AsyncIterator[Seen]:
    found = Seen()
    host = BackupHostId("h1")

    async def on_plan(plan: r.PlanRun, env: Envelope) -> None:
        found.plans.append((plan, env.message_id))

    async def on_event(event: r.RunEvent, env: Envelope) -> None:
        found.events.append((event, env.message_id))

    await world.bus.consume(worker_runs(host), on_plan, r.PlanRun)
    await world.bus.consume(LISTENER, on_event, r.RunEvent)  # type: ignore[arg-type]
    yield found
    if isinstance(world.bus, AmqpBus):
        await world.bus.delete_topology([worker_runs(host), LISTENER])


async def send_start(world: World, job_id: str, key: str) -> None:
    command = r.StartRun(job_id=job_id, requested_by="alice", idempotency_key=key)
    await world.bus.publish("commands", START_RUN, command)


async def new_job(world: World) -> str:
    host, platform = await setup(world)
    return (await create(world, spec(host, platform, vm_retries=0))).id


async def log_of(world: World, **query: object) -> list[b.RunLogEntry]:
    """Every page of the run log of a run or a job, read 2 at a time."""
    entries: list[b.RunLogEntry] = []
    after: str | None = None
    while True:
        req = b.RunEventsGet(actor=ADMIN, after=after, limit=2, **query)  # type: ignore[arg-type]
        page = await world.call(b.RUN_EVENTS, req, b.RunEventsReply)
        entries += page.events
        if page.next_after is None:
            return entries
        after = page.next_after


async def test_start_run_twice_makes_one_run_and_one_plan_id(world: World, seen: Seen) -> None:
    job_id = await new_job(world)
    await send_start(world, job_id, "k1")
    await send_start(world, job_id, "k1")  # redelivered / repeated while still pending
    await eventually(lambda: len(seen.plans) == 2)
    (plan, first_id), (again, second_id) = seen.plans
    assert plan == again and first_id == second_id == plan.run_id
    assert (plan.job_id, plan.host_id, plan.backup_type) == (job_id, "h1", "incremental")
    assert await world.db.count(Coll.RUNS, {"job_id": job_id}) == 1
    runs = await world.call(
        b.RUN_DETAIL, b.RunDetailGet(actor=ADMIN, run_id=plan.run_id), b.RunDetail
    )
    assert runs.run.state == "pending"
    # a worker took the plan: a repeat sends nothing; another key is skipped (busy)
    await to_running(world, plan.run_id)
    await send_start(world, job_id, "k1")
    await send_start(world, job_id, "k2")
    await eventually(lambda: bool(seen.of(r.RunSkipped)))
    [(skipped, skipped_id)] = seen.of(r.RunSkipped)
    assert isinstance(skipped, r.RunSkipped)
    assert (skipped.code, skipped.active_run_ids, skipped.idempotency_key) == (
        "job_busy",
        [plan.run_id],
        "k2",
    )
    await asyncio.sleep(0.3)
    assert len(seen.plans) == 2
    # the skip is in the job's event log, once, under its stable id
    logged = await wait_for_log(world, 1, job_id=job_id)
    assert [(e.message_id, e.event) for e in logged] == [(skipped_id, skipped)]


async def wait_for_log(world: World, count: int, **query: object) -> list[b.RunLogEntry]:
    async with asyncio.timeout(15):
        while len(found := await log_of(world, **query)) < count:  # noqa: ASYNC110 - polling
            await asyncio.sleep(0.05)
    return found


async def test_unknown_job_is_skipped_and_dead_lettered(world: World, seen: Seen) -> None:
    await send_start(world, "no-such-job", "k1")
    await eventually(lambda: bool(seen.of(r.RunSkipped)))
    [(skipped, _)] = seen.of(r.RunSkipped)
    assert isinstance(skipped, r.RunSkipped) and skipped.code == "not_found"
    dead: list[bytes] = []
    async with asyncio.timeout(15):
        while not dead:
            dead = await world.bus.dead_letters(CATALOG_RUN_STARTS)
            await asyncio.sleep(0.05)
    assert decoder(r.StartRun).decode(dead[0]).job_id == "no-such-job"


async def test_events_are_kept_once_and_paged(world: World, seen: Seen) -> None:
    run_id = f"run-{uuid.uuid4().hex[:6]}"
    at = datetime(2026, 1, 2, 3, 4, 5, 123456, tzinfo=UTC)
    started = r.VmStarted(run_id=run_id, job_id="j", vm=vm(1), attempt=1, worker_id="w", at=at)
    progress = r.RunProgress(run_id=run_id, job_id="j", bytes_done=5, bytes_total=9,
                             rate_bps=1.5, at=at.replace(second=6))  # fmt: skip
    key = RUN_EVENT_KEYS["VmStarted"]
    for _ in range(3):  # a redelivery or a republish keeps the message id
        await world.bus.publish("events", key, started, message_id="m-started")
    await world.bus.publish("events", RUN_EVENT_KEYS["RunProgress"], progress, message_id="m-p")
    await eventually(lambda: len(seen.events) == 4)
    await asyncio.sleep(0.3)  # the catalog's consumer saw them too
    logged = await log_of(world, run_id=run_id)
    assert [(e.message_id, e.event) for e in logged] == [
        ("m-started", started),
        ("m-p", progress),
    ]
    assert await world.code_of(b.RUN_EVENTS, b.RunEventsGet(actor=ADMIN)) == "invalid_input"


async def test_cancel_and_one_run_finished_per_run(
    world: World, seen: Seen, open_bus: BusOpener
) -> None:
    job_id = await new_job(world)
    await send_start(world, job_id, "k1")
    await eventually(lambda: len(seen.plans) == 1)
    run_id = seen.plans[0][0].run_id
    cancel = b.RunCancel(actor=ADMIN, run_id=run_id, reason="operator asked")
    first = await world.call(b.RUN_CANCEL, cancel, m.RunTransitionReply)
    assert first.applied and first.run.state == "cancelled"  # pending: at once
    assert not (await world.call(b.RUN_CANCEL, cancel, m.RunTransitionReply)).applied
    # a running run becomes cancelling; its last VM ends it cancelled
    await send_start(world, job_id, "k2")
    await eventually(lambda: len(seen.plans) == 2)
    second = seen.plans[1][0].run_id
    await to_running(world, second)
    plan = b.VmPlan(actor=SERVICE, run_id=second, vms=[vm(1)])
    await world.call(b.VM_PLAN, plan, b.VmPlanReply)
    await vm_start(world, second, 1)
    cancelling = b.RunCancel(actor=ADMIN, run_id=second)
    assert (await world.call(b.RUN_CANCEL, cancelling, m.RunTransitionReply)).run.state == (
        "cancelling"
    )
    renew = b.VmRenew(actor=SERVICE, run_id=second, vm_id="vm-1", worker_id="w1")
    assert (await world.call(b.VM_RENEW, renew, b.VmTaskReply)).run_state == "cancelling"
    stopped = finish(second, 1, "failed", "cancelled")
    assert (await world.call(b.VM_FINISH, stopped, b.VmTaskReply)).run_state == "cancelled"
    await world.call(b.VM_FINISH, stopped, b.VmTaskReply)  # a worker repeating its finish
    await eventually(lambda: len(seen.of(r.RunFinished)) == 2)
    await asyncio.sleep(0.3)
    finished = {e.run_id: (e, i) for e, i in seen.of(r.RunFinished)}  # type: ignore[union-attr]
    assert len(seen.of(r.RunFinished)) == 2 and set(finished) == {run_id, second}
    event, message_id = finished[second]
    assert isinstance(event, r.RunFinished) and message_id == f"finished:{second}"
    assert (event.outcome, event.vms_failed) == ("cancelled", 1)
    repeat = await world.call(b.RUN_CANCEL, cancelling, m.RunTransitionReply)
    assert not repeat.applied and repeat.run.state == "cancelled"
    audit = await world.call(
        catalog_rpc.AUDIT_LIST, m.AuditList(actor=ADMIN, resource=f"run/{run_id}"), m.AuditListReply
    )
    assert "run.cancel_requested" in [e.action for e in audit.entries]
    # an operator of another group, named by the API, does not see the job
    await world.call(catalog_rpc.GROUP_CREATE, m.GroupCreate(name="other"), m.GroupInfo)
    user = m.UserCreate(name="op", role="operator", groups=["other"])
    await world.call(catalog_rpc.USER_CREATE, user, m.UserInfo)
    hidden = b.RunCancel(actor=m.ActorRef(user="op"), run_id=second)
    async with open_bus("api") as api:
        with pytest.raises(EdgebackError) as refused:
            await api.call(b.RUN_CANCEL, hidden, m.RunTransitionReply, timeout=10)
    assert refused.value.code == "not_found"


async def test_a_plan_no_worker_takes_fails_the_run(world: World) -> None:
    job_id = await new_job(world)  # no consumer of run.h1: the PlanRun is unroutable
    await send_start(world, job_id, "k1")
    logged = await wait_for_log(world, 1, job_id=job_id)
    event = logged[0].event
    assert isinstance(event, r.RunFinished)
    assert (event.outcome, event.code) == ("failed", "backup_host_unreachable")
