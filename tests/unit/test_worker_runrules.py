"""The worker's pure run rules: content resolution, version names, snapshot release,
progress rate limiting, speed windows."""

from __future__ import annotations

from datetime import UTC, datetime
from datetime import time as clock_time
from itertools import pairwise

from hypothesis import given
from hypothesis import strategies as st

from edgeback_core.messages import restores as rs
from edgeback_core.messages import runs as r
from edgeback_core.messages.jobs import JobContent, SpeedWindow, VmSelection
from edgeback_platform.models import (
    DiskId,
    DiskSnapshot,
    DiskSnapshotId,
    HypervisorId,
    SnapshotId,
    Vm,
    VmId,
    VmSnapshot,
)
from edgeback_worker.runrules import (
    ProgressGate,
    across_physical_hosts,
    event_message_id,
    rate_windows,
    resolve_content,
    snapshots_to_release,
    stream_depth,
    version_for_run,
)


def vm(n: int, host: str = "hv1", name: str | None = None) -> Vm:
    return Vm(
        id=VmId(f"vm-{n}"), name=name or f"web-{n}", host_id=HypervisorId(host), state="running"
    )


LISTED = {"p1": [vm(1), vm(2, "hv2"), vm(3, "hv2", "db-3")], "p2": [vm(9, name="web-9")]}


def ids(content: JobContent) -> list[str]:
    return [ref.vm_id for ref in resolve_content(content, LISTED)]


def test_selections_by_platform_host_and_vm_each_once_in_order() -> None:
    content = JobContent(
        vms=[
            VmSelection(platform_id="p1", physical_host_id="hv2"),
            VmSelection(platform_id="p1", vm_id="vm-2"),
            VmSelection(platform_id="p2"),
            VmSelection(platform_id="p1"),
        ]
    )
    assert ids(content) == ["vm-2", "vm-3", "vm-9", "vm-1"]
    refs = resolve_content(content, LISTED)
    assert (refs[0].name, refs[0].physical_host_id, refs[0].platform_id) == ("web-2", "hv2", "p1")


def test_exclusions_are_case_sensitive_globs_on_names() -> None:
    content = JobContent(vms=[VmSelection(platform_id="p1")], exclude_names=["db-*", "WEB-1"])
    assert ids(content) == ["vm-1", "vm-2"]
    content = JobContent(vms=[VmSelection(platform_id="p1")], exclude_names=["web-?"])
    assert ids(content) == ["vm-3"]


def test_a_vm_the_platform_no_longer_lists_stays_planned_without_a_name() -> None:
    content = JobContent(vms=[VmSelection(platform_id="p1", vm_id="gone")], exclude_names=["*"])
    (ref,) = resolve_content(content, LISTED)
    assert (ref.vm_id, ref.name) == ("gone", "")


@given(st.text(min_size=1, max_size=300))
def test_version_names_are_stable_and_valid(run_id: str) -> None:
    name = version_for_run(run_id)
    assert name == version_for_run(run_id)
    assert 1 <= len(name) <= 128 and name[0].isalnum()
    assert all(c.isalnum() or c in "._-" for c in name)


def test_a_plain_run_id_is_its_own_version_name() -> None:
    assert version_for_run("ed227fa94259142e") == "ed227fa94259142e"
    assert version_for_run("a/b") != version_for_run("a_b")


def snap(sid: str, *disk_snaps: str) -> VmSnapshot:
    return VmSnapshot(
        id=SnapshotId(sid),
        vm_id=VmId("vm-1"),
        disks=tuple(
            DiskSnapshot(disk_id=DiskId(f"d{i}"), snapshot_id=DiskSnapshotId(s))
            for i, s in enumerate(disk_snaps)
        ),
        frozen=True,
        created=datetime(2026, 1, 1, tzinfo=UTC),
    )


def released(keep: set[str]) -> list[SnapshotId]:
    snaps = [snap("full", "f0", "f1"), snap("incr1", "i0", "i1"), snap("new", "n0", "n1")]
    snaps.append(snap("user", "u0"))  # someone else's: never touched
    ours = {"snap-f0", "snap-f1", "snap-i0", "snap-i1", "snap-n0", "snap-n1"}
    return snapshots_to_release(snaps, ours=ours, keep=keep, rbd_name=lambda s: f"snap-{s}")


def test_keep_latest_keeps_the_newest_and_the_last_full() -> None:
    assert released({"snap-n0", "snap-n1", "snap-f0", "snap-f1"}) == ["incr1"]


def test_without_keep_latest_every_edgeback_snapshot_goes() -> None:
    assert released(set()) == ["full", "incr1", "new"]


def test_progress_gate_bounds_the_rate_and_lets_the_last_report_through() -> None:
    now = [0.0]
    gate = ProgressGate(interval_s=5.0, clock=lambda: now[0])
    passed = []
    for step in range(100):  # a report every 0.1 s for 10 s
        now[0] = step * 0.1
        if gate.allow():
            passed.append(now[0])
    assert len(passed) == 2 and passed[0] == 0.0
    assert gate.allow(final=True)


def test_speed_windows_in_bytes_per_second() -> None:
    windows = rate_windows(
        [SpeedWindow(start="22:00", end="06:00", rate=5, unit="MiB/s"), SpeedWindow(rate=100)]
    )
    assert (windows[0].start, windows[0].end) == (clock_time(22), clock_time(6))
    assert [w.bytes_per_s for w in windows] == [5 * 1024**2, 100 * 1024**2]


def test_run_events_carry_stable_message_ids_and_progress_a_fresh_one() -> None:
    at, ref = datetime(2026, 1, 1, tzinfo=UTC), r.VmRef(platform_id="p", vm_id="v")
    events = [
        r.RunStarted(
            run_id="R", job_id="J", host_id="h", backup_type="full", vm_count=1,
            requested_by="x", at=at,
        ),
        r.VmStarted(run_id="R", job_id="J", vm=ref, attempt=2, worker_id="w", at=at),
        r.VmFinished(run_id="R", job_id="J", vm=ref, attempt=2, outcome="succeeded", at=at),
        r.VmRefused(run_id="R", job_id="J", vm=ref, code=r.REFUSE_SHELVED, at=at),
        r.VmSkipped(run_id="R", job_id="J", vm=ref, code=r.SKIP_LOW_FREE_SPACE, at=at),
        r.BackupSetCreated(
            backup_set_id="S", run_id="R", job_id="J", vm=ref, backup_type="full",
            pool_node_url="u", pool_name="p", disk_count=1, taken_at=at, at=at,
        ),
    ]  # fmt: skip
    assert [event_message_id(e) for e in events] == [
        "started:R", "vm-started:R/v/2", "vm-finished:R/v/2", "vm-refused:R/v",
        "vm-skipped:R/v", "set-created:S",
    ]  # fmt: skip
    progress = r.RunProgress(
        run_id="R", job_id="J", bytes_done=1, bytes_total=2, rate_bps=1.0, at=at
    )
    assert event_message_id(progress) is None


def test_restore_events_have_stable_message_ids_but_progress() -> None:
    at = datetime(2026, 1, 1, tzinfo=UTC)
    ref = r.VmRef(platform_id="p", vm_id="v")
    events = [
        rs.RestoreStarted(restore_id="R", host_id="h", vm_count=1, requested_by="u", at=at),
        rs.RestoreVmStarted(
            restore_id="R", backup_set_id="S", target_vm=ref, attempt=1, worker_id="w", at=at
        ),
        rs.RestoreVmFinished(
            restore_id="R", backup_set_id="S", target_vm=ref, attempt=1, outcome="failed", at=at
        ),
    ]
    assert [event_message_id(e) for e in events] == [
        "restore-started:R", "restore-vm-started:R/S/1", "restore-vm-finished:R/S/1",
    ]  # fmt: skip
    progress = rs.RestoreProgress(
        restore_id="R", backup_set_id="S", target_vm=ref, disk_id="d", bytes_done=1,
        bytes_total=2, rate_bps=1.0, at=at,
    )  # fmt: skip
    assert event_message_id(progress) is None


def test_the_resume_buffer_bounds_the_chunks_a_stream_holds() -> None:
    mib = 1024 * 1024
    assert [stream_depth(m, chunk_size=4 * mib) for m in (1, 4, 10, 64)] == [1, 1, 2, 16]
    assert stream_depth(1024, chunk_size=4 * mib) == 256


@given(st.lists(st.sampled_from("abc"), max_size=20))
def test_vm_tasks_are_queued_taking_the_physical_hosts_in_turn(hosts: list[str]) -> None:
    items = list(enumerate(hosts))
    ordered = across_physical_hosts(items, lambda item: item[1])
    assert sorted(ordered) == items  # each task once
    for host in set(hosts):  # each host's tasks keep their order
        assert [i for i, h in ordered if h == host] == [i for i, h in items if h == host]
    for before, after in pairwise(ordered):
        if before[1] == after[1]:  # twice in a row only once the other hosts ran out
            rest = ordered[ordered.index(after) :]
            assert {h for _, h in rest} == {after[1]}


def test_vm_tasks_of_two_hosts_alternate() -> None:
    hosts = ["h1", "h1", "h1", "h2", "h2", "h1", "h2", "h2"]
    ordered = across_physical_hosts(list(enumerate(hosts)), lambda item: item[1])
    assert [h for _, h in ordered] == ["h1", "h2"] * 4
