"""A restore VM task whose VM another worker took over (docs/restores.md, "The restore
run" 5): it stops writing at once, publishes no outcome, records no finish and gives
back no slot (they are the task's, now held for the new worker), and the message is
settled without an error. The catalog and the bus are a scripted stand-in; the VM's
restore itself is replaced by a wait that only the take-over ends."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import msgspec
import pytest

from edgeback_core import errors
from edgeback_core.messages import backups as b
from edgeback_core.messages import catalog as m
from edgeback_core.messages import jobs as j
from edgeback_core.messages import restores as r
from edgeback_core.messages.runs import VmRef
from edgeback_worker import restoretask
from edgeback_worker.restoretask import RestoreVmTasks
from edgeback_worker.runcatalog import RunCatalog
from edgeback_worker.runcontext import RunContext
from edgeback_worker.settings import WorkerSettings

NOW = datetime(2026, 12, 7, tzinfo=UTC)
VM = VmRef(platform_id="p1", vm_id="vm-1", physical_host_id="ph1")
POINT = r.RestorePoint(
    backup_set_id="s1", vm=VM, backup_type="full", taken_at=NOW,
    pool=j.PoolRef(node_url="http://node", name="dd"),
)  # fmt: skip
RESTORE = r.RestoreInfo(
    id="r1", state="running", version=1, created_by="admin", created_at=NOW, updated_at=NOW,
    spec=r.RestoreSpec(name="x", backup_set_ids=["s1"], options=r.RestoreOptions(host_id="h1")),
    points=[POINT],
)  # fmt: skip
TASK = r.RestoreVmTask(restore_id="r1", host_id="h1", backup_set_id="s1", target_vm=VM, disks=[])


def _vm(state: r.RestoreVmState, worker: str) -> r.RestoreVmInfo:
    return r.RestoreVmInfo(
        restore_id="r1", backup_set_id="s1", source_vm=VM, target_vm=VM, state=state,
        worker_id=worker,
    )  # fmt: skip


class Catalog:
    """The bus as the task sees it: RPCs answered by name, publications noted."""

    def __init__(self, renewal: BaseException | r.RestoreVmReply) -> None:
        self.renewal = renewal
        self.finish: r.RestoreVmReply | None = None
        self.start = r.RestoreVmReply(
            task=_vm("running", "w1"), applied=True, restore_state="running"
        )
        self.calls: list[str] = []
        self.published: list[str] = []

    async def call(
        self,
        name: str,
        request: msgspec.Struct,
        response_type: type[Any],
        *,
        timeout: float,  # noqa: ASYNC109 - the bus's signature
    ) -> Any:
        self.calls.append(name)
        lease = b.LeaseInfo(scope="s", slot=0, holder="r1/s1", expires_at=NOW)
        answers: dict[str, Any] = {
            r.RESTORE_GET: RESTORE,
            b.LEASE_ACQUIRE: b.LeaseReply(lease=lease),
            b.LEASE_RENEW: b.LeaseReply(lease=lease),
            b.LEASE_RELEASE: m.Done(),
            r.RESTORE_VM_START: self.start,
        }
        if name == r.RESTORE_VM_RENEW:
            if isinstance(self.renewal, BaseException):
                raise self.renewal
            return self.renewal
        if name == r.RESTORE_VM_FINISH and self.finish is not None:
            return self.finish
        if name not in answers:
            raise AssertionError(f"unexpected rpc {name}")
        return answers[name]

    async def publish(self, _exchange: str, _key: str, body: Any, **_kw: Any) -> None:
        self.published.append(type(body).__name__)


def _context(bus: Catalog) -> RunContext:
    settings = WorkerSettings.load({"EDGEBACK_WORKER_CLAIM_S": "0.3"})
    catalog = RunCatalog(bus=bus, worker_id="w1")  # type: ignore[arg-type]
    return RunContext(bus=bus, catalog=catalog, settings=settings)  # type: ignore[arg-type]


async def test_a_take_over_seen_at_a_renewal_stops_the_vm_without_a_finish(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    stopped = asyncio.Event()

    async def restoring(*_args: Any) -> r.RestoreVmFinish:
        try:
            await asyncio.sleep(30)  # only the take-over ends it
        finally:
            stopped.set()
        raise AssertionError("the VM's restore went on after the take-over")

    monkeypatch.setattr(RestoreVmTasks, "_restored", restoring)
    bus = Catalog(errors.LeaseLostError("w2 holds restore VM r1/s1"))
    async with asyncio.timeout(5):
        await RestoreVmTasks(_context(bus)).run(TASK)  # settled: no error
    assert stopped.is_set()
    assert r.RESTORE_VM_FINISH not in bus.calls
    assert b.LEASE_RELEASE not in bus.calls  # the slots are the task's, now w2's
    assert bus.published == ["RestoreVmStarted"]  # no RestoreVmFinished of w1's


async def test_an_outcome_is_not_published_once_the_claim_may_have_lapsed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Renewals unanswered until the VM ended: the claim is confirmed before the outcome
    goes out, and a take-over meanwhile stops it there."""

    async def restoring(*_args: Any) -> r.RestoreVmFinish:
        await asyncio.sleep(0.5)  # longer than the claim: no renewal was heard meanwhile
        bus.renewal = errors.LeaseLostError("w2 took it over once the catalog was back")
        return restoretask._failed(TASK, "x", "never recorded")

    monkeypatch.setattr(RestoreVmTasks, "_restored", restoring)
    bus = Catalog(errors.LockBusyError("the catalog could not renew it"))  # only logged
    async with asyncio.timeout(5):
        await RestoreVmTasks(_context(bus)).run(TASK)
    assert bus.calls.count(r.RESTORE_VM_RENEW) >= 2  # the unanswered ones, then the check
    assert r.RESTORE_VM_FINISH not in bus.calls
    assert b.LEASE_RELEASE not in bus.calls
    assert bus.published == ["RestoreVmStarted"]


async def test_a_claim_renewed_lately_needs_no_check_before_the_outcome(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def restoring(*_args: Any) -> r.RestoreVmFinish:
        return restoretask._failed(TASK, "x", "recorded at once")

    monkeypatch.setattr(RestoreVmTasks, "_restored", restoring)
    bus = Catalog(errors.LeaseLostError("never asked"))
    bus.finish = r.RestoreVmReply(task=_vm("failed", "w1"), applied=True, restore_state="failed")
    async with asyncio.timeout(5):
        await RestoreVmTasks(_context(bus)).run(TASK)
    assert r.RESTORE_VM_RENEW not in bus.calls  # the claim was taken just now
    assert r.RESTORE_VM_FINISH in bus.calls and bus.calls.count(b.LEASE_RELEASE) == 2
    assert bus.published == ["RestoreVmStarted", "RestoreVmFinished"]


async def test_a_duplicate_copy_meeting_the_claim_is_deferred_and_keeps_the_slots() -> None:
    """The slots are the task's (one holder for every copy): releasing them here would
    free the running worker's and let the restore exceed its parallel VMs."""
    bus = Catalog(errors.LeaseLostError("never asked"))
    bus.start = r.RestoreVmReply(task=_vm("running", "w2"), applied=False, restore_state="running")
    with pytest.raises(errors.DeferredError):
        await RestoreVmTasks(_context(bus)).run(TASK)
    assert b.LEASE_ACQUIRE in bus.calls and b.LEASE_RELEASE not in bus.calls
    assert bus.published == []
