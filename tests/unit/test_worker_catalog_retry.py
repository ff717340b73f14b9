"""A VM task's catalog calls through an outage, on an injected clock: tried again while
the catalog is lost, given up with ``catalog_unreachable`` at the job's reconnect time,
never for the catalog's own answers; the claim's renewals stop the VM when they give up
or when another worker took the VM over (docs/runs.md, "Reconnect time")."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import msgspec
import pytest
from tests.support.fake_time import FakeTime

from edgeback_core import errors
from edgeback_core.messages import backups as b
from edgeback_core.messages import jobs as j
from edgeback_worker.restoretask import RESTORE_CLAIM_STOPS
from edgeback_worker.runcatalog import RunCatalog
from edgeback_worker.runcontext import RunContext
from edgeback_worker.runrules import catalog_policy, reconnect_policy, reconnect_s
from edgeback_worker.settings import WorkerSettings
from edgeback_worker.vmdisks import VmOutcome
from edgeback_worker.vmtask import (
    BACKUP_CLAIM_STOPS,
    LostCalls,
    deferred_while_lost,
    keep_claim,
)

LEASE = b.LeaseInfo(scope="run:r1", slot=0, holder="r1/vm-1", expires_at=datetime.now(UTC))


class CatalogLine:
    """Stands in for the bus: answers each call with the next of ``script`` (an error to
    raise, or a reply), then with ``reply`` for ever; notes when each call was made."""

    def __init__(self, time: FakeTime, *script: BaseException, reply: Any = None) -> None:
        self.time, self.script, self.reply = time, list(script), reply
        self.calls: list[tuple[str, float]] = []

    async def call(
        self,
        name: str,
        request: msgspec.Struct,
        response_type: type[Any],
        *,
        timeout: float,  # noqa: ASYNC109 - the bus's signature
    ) -> Any:
        self.calls.append((name, self.time.now))
        if self.script:
            raise self.script.pop(0)
        return self.reply

    def down(self, name: str = "catalog.lease.acquire") -> errors.EdgebackError:
        return errors.UnroutableError(f"no server for rpc {name!r}")


def catalog(line: CatalogLine, reconnect: float, seen: LostCalls | None = None) -> RunCatalog:
    plain = RunCatalog(
        bus=line,  # type: ignore[arg-type]
        worker_id="w1", sleep=line.time.sleep, clock=line.time.clock, jitter=lambda: 1.0,
    )  # fmt: skip
    return plain.reconnecting(catalog_policy(reconnect), seen)


async def test_a_call_rides_out_an_outage_shorter_than_the_reconnect_time() -> None:
    time = FakeTime()
    reply = b.LeaseReply(lease=LEASE)
    outage = [errors.UnroutableError("gone"), errors.DeadlineExceededError("silent")] * 3
    line = CatalogLine(time, *outage, errors.UnavailableError("reconnecting"), reply=reply)
    seen = LostCalls()
    got = await catalog(line, 60.0, seen).lease("run:r1", "r1/vm-1", 2, 60.0)
    assert got == LEASE
    assert len(line.calls) == 8 and seen.count == 7
    assert time.slept == [0.25, 0.5, 1.0, 2.0, 2.0, 2.0, 2.0]  # capped: back within 2 s


async def test_a_longer_outage_gives_up_with_catalog_unreachable_at_the_reconnect_time() -> None:
    time = FakeTime()
    line = CatalogLine(time, *(errors.UnroutableError("gone") for _ in range(1000)))
    with pytest.raises(errors.CatalogUnreachableError) as failed:
        await catalog(line, 30.0).vm_renew("r1", "vm-1", 1, 60.0)
    assert failed.value.code == "catalog_unreachable" and failed.value.retryable
    assert failed.value.details["rpc"] == b.VM_RENEW
    starts = [at for _, at in line.calls]
    assert starts[-1] == pytest.approx(30.0)  # the last attempt at the reconnect time
    assert starts[-2] < 30.0 and len(starts) == 19


@pytest.mark.parametrize(
    "answer",
    [
        errors.ConflictError("another manifest"),
        errors.LeaseLostError("w2 holds it"),
        errors.LockBusyError("the task kept changing"),
        errors.InvalidTransitionError("not running"),
    ],
)
async def test_the_catalogs_own_answers_are_not_tried_again(answer: errors.EdgebackError) -> None:
    line = CatalogLine(FakeTime(), answer)
    finish = b.VmFinish(run_id="r1", vm_id="vm-1", outcome="succeeded", worker_id="w1")
    with pytest.raises(type(answer)):
        await catalog(line, 600.0).vm_finish(finish)
    assert len(line.calls) == 1


async def test_without_a_policy_a_call_is_made_once_as_before() -> None:
    line = CatalogLine(FakeTime(), errors.UnroutableError("gone"))
    plain = RunCatalog(bus=line, worker_id="w1")  # type: ignore[arg-type]
    with pytest.raises(errors.UnroutableError):
        await plain.job("j1")
    assert len(line.calls) == 1


def test_the_reconnect_time_is_the_jobs_unless_a_test_caps_it() -> None:
    opts = j.JobOptions(reconnect_minutes=3, request_retries=1)
    assert reconnect_s(opts) == 180.0 and reconnect_s(opts, 5.0) == 5.0
    assert reconnect_s(opts, 900.0) == 180.0
    assert reconnect_policy(opts, 5.0).reconnect == 5.0
    policy = catalog_policy(180.0)
    assert policy.retries == 0 and policy.reconnect == 180.0 and policy.max_delay == 2.0


def test_a_catalog_lost_before_the_vm_started_defers_the_task() -> None:
    with pytest.raises(errors.DeferredError) as deferred, deferred_while_lost():
        raise errors.CatalogUnreachableError("the catalog did not answer")
    assert isinstance(deferred.value.__cause__, errors.CatalogUnreachableError)
    with pytest.raises(errors.LeaseLostError), deferred_while_lost():
        raise errors.LeaseLostError("not for deferring")


def test_a_vm_that_rode_out_an_outage_says_so() -> None:
    seen = LostCalls()
    done = VmOutcome(outcome="succeeded", warnings=["full backup instead"])
    assert seen.noted(done) == done
    seen(1, 0.25, errors.UnavailableError("gone"))
    seen(1, 0.25, errors.LockBusyError("busy"))  # an answer, not an outage
    assert seen.noted(done).warnings == [
        "full backup instead",
        "the catalog did not answer for a while: 1 call(s) tried again within the reconnect time",
    ]


# --- the claim's renewals -------------------------------------------------------------
def context(line: CatalogLine) -> RunContext:
    settings = WorkerSettings.load({"EDGEBACK_WORKER_CLAIM_S": "3"})
    run_catalog = RunCatalog(bus=line, worker_id="w1")  # type: ignore[arg-type]
    return RunContext(bus=line, catalog=run_catalog, settings=settings)  # type: ignore[arg-type]


def renewals(*answers: str | errors.EdgebackError) -> Callable[[], Awaitable[str | None]]:
    queue = list(answers)

    async def renew() -> str | None:
        answer = queue.pop(0)
        if isinstance(answer, errors.EdgebackError):
            raise answer
        return answer

    return renew


@pytest.mark.parametrize(
    "error", [errors.CatalogUnreachableError("lost"), errors.LeaseLostError("w2 took it")]
)
async def test_a_fenced_claim_stops_the_vm_when_its_renewal_gives_up_or_is_taken(
    error: errors.EdgebackError,
) -> None:
    time = FakeTime()
    line = CatalogLine(time, reply=b.LeaseReply(lease=LEASE))
    renew = renewals("running", error)
    with pytest.raises(type(error)):
        await keep_claim(
            context(line), renew, [LEASE], "run r1", stops=BACKUP_CLAIM_STOPS, sleep=time.sleep
        )
    assert time.slept == [1.0, 1.0]
    assert [name for name, _ in line.calls] == [b.LEASE_RENEW]  # after the first renewal


async def test_renewals_without_stops_go_on_past_failures_and_a_lost_lease() -> None:
    time = FakeTime()
    line = CatalogLine(time, errors.LeaseLostError("slot taken"), reply=b.LeaseReply())
    renew = renewals(
        errors.CatalogUnreachableError("lost"), errors.LeaseLostError("x"), "running",
        "running", "cancelling",
    )  # fmt: skip
    with pytest.raises(errors.RunCancelledError):
        await keep_claim(context(line), renew, [LEASE], "restore x", sleep=time.sleep)
    assert len(time.slept) == 5 and len(line.calls) == 3


async def test_a_restore_claim_stops_on_a_take_over_but_outlives_a_lost_catalog() -> None:
    time = FakeTime()
    line = CatalogLine(time, reply=b.LeaseReply(lease=LEASE))
    renew = renewals(
        errors.CatalogUnreachableError("lost"), "running", errors.LeaseLostError("w2 took it")
    )
    with pytest.raises(errors.LeaseLostError):
        await keep_claim(
            context(line), renew, [LEASE], "restore x", stops=RESTORE_CLAIM_STOPS,
            sleep=time.sleep,
        )  # fmt: skip
    assert len(time.slept) == 3
    assert [name for name, _ in line.calls] == [b.LEASE_RENEW]  # after the one renewal heard
