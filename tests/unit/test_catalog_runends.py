"""The pure parts of the catalog's run glue: the RunFinished of an ended run and the
order key of the run log."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from edgeback_catalog.domain import JobId, Run, RunId, RunTransition
from edgeback_catalog.runends import finished_event
from edgeback_catalog.runlog import entry_key
from edgeback_catalog.runstate import RunState
from edgeback_core.ids import BackupHostId
from edgeback_core.messages.runs import DiskStats

T0 = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def ended(state: RunState, reason: str) -> Run:
    step = RunTransition(
        seq=1, from_state=RunState.RUNNING, to_state=state, request_id="x", reason=reason, at=T0
    )
    return Run(
        id=RunId("r1"),
        job_id=JobId("j1"),
        host_id=BackupHostId("h1"),
        state=state,
        version=1,
        created_at=T0,
        updated_at=T0,
        history=(step,),
    )


def test_counts_and_outcome_come_from_the_run_and_its_vms() -> None:
    states = ["succeeded", "failed", "skipped", "refused", "running", "succeeded"]
    event = finished_event(ended(RunState.PARTIALLY_SUCCEEDED, "x=1,y=2"), states, DiskStats())
    assert (event.outcome, event.vms_succeeded, event.vms_failed) == ("partially_succeeded", 2, 2)
    assert (event.vms_skipped, event.vms_refused, event.code, event.at) == (1, 1, "", T0)


def test_a_code_is_given_only_for_a_failed_run_whose_reason_is_a_code() -> None:
    assert finished_event(ended(RunState.FAILED, "precondition_failed"), [], DiskStats()).code == (
        "precondition_failed"
    )
    assert finished_event(ended(RunState.FAILED, "it broke"), [], DiskStats()).code == ""
    assert finished_event(ended(RunState.CANCELLED, "oops"), [], DiskStats()).code == ""


def test_log_keys_sort_by_time_then_message_id_whatever_the_zone() -> None:
    east = timezone(timedelta(hours=8))
    keys = [
        entry_key(T0 + timedelta(microseconds=1), "a"),
        entry_key(T0, "b"),
        entry_key(T0.astimezone(east), "a"),
        entry_key(T0 + timedelta(seconds=10), "0"),
    ]
    assert sorted(keys) == [keys[2], keys[1], keys[0], keys[3]]
