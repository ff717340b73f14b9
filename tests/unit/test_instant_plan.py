"""The pure parts of the worker's instant restore: which step continues a disk, names,
the capability's lifetime, progress with rate and ETA."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edgeback_blocks.rbd import MigrationState, daemon_versions
from edgeback_core.messages import restores as r
from edgeback_worker.instant_plan import (
    MAX_TTL_S,
    MIN_TTL_S,
    InstantDisk,
    InstantRestorePlan,
    Observed,
    ProgressMeter,
    Step,
    capability_ttl,
    classify,
    instant_refusals,
)

KEY = "run-1/vm-1"
GIB = 1 << 30


def _seen(
    *, target: bool = True, aside: bool = False, migration: MigrationState | None = None,
    key: str | None = None,
) -> Observed:  # fmt: skip
    return Observed(target_exists=target, aside_exists=aside, migration=migration, restore_key=key)


@pytest.mark.parametrize(
    ("seen", "step"),
    [
        (_seen(), Step.MOVE_ASIDE),  # the original, untouched
        (_seen(key="run-0/vm-1"), Step.MOVE_ASIDE),  # restored instantly before, by another run
        (_seen(target=False), Step.PREPARE),  # a new path
        (_seen(target=False, aside=True), Step.PREPARE),  # killed between rename and prepare
        (_seen(aside=True, migration=MigrationState.PREPARED), Step.EXECUTE),
        (_seen(aside=True, migration=MigrationState.EXECUTING), Step.EXECUTE),  # killed mid-copy
        (_seen(aside=True, migration=MigrationState.EXECUTED), Step.COMMIT),
        (_seen(aside=True, migration=MigrationState.ERROR), Step.ROLL_BACK),
        (_seen(aside=True, migration=MigrationState.ABORTING), Step.ROLL_BACK),
        (_seen(aside=True, key=KEY), Step.CLEAN_UP),  # committed, aside not yet removed
        (_seen(key=KEY), Step.CLEAN_UP),  # committed and cleaned: again is harmless
        (_seen(aside=True), Step.CONFLICT),  # something else sits at the aside name
    ],
)
def test_classify(seen: Observed, step: Step) -> None:
    assert classify(seen, KEY) is step


def test_aside_names_are_stable_per_restore_and_differ_between_restores() -> None:
    disk = InstantDisk(disk="d0", version="v", target="vm-1_disk", size=GIB)
    plan = InstantRestorePlan(restore_key=KEY, vm="vm-1", disks=(disk,), start_vm=None)
    other = InstantRestorePlan(restore_key="run-2/vm-1", vm="vm-1", disks=(disk,), start_vm=None)
    assert plan.aside_name(disk) == plan.aside_name(disk)
    assert plan.aside_name(disk).startswith("vm-1_disk-aside-")
    assert plan.aside_name(disk) != other.aside_name(disk)


def test_capability_ttl_covers_a_slow_copy_within_the_nodes_limit() -> None:
    assert capability_ttl(0) == MIN_TTL_S
    assert capability_ttl(100 * GIB) == pytest.approx(2 * 100 * GIB / (8 << 20))  # 7.1 h
    assert capability_ttl(10_000 * GIB) == MAX_TTL_S


def test_progress_reports_rate_and_eta_at_most_every_interval_and_at_the_end() -> None:
    meter = ProgressMeter("d0", 100 * (4 << 20), interval_s=1.0, started=10.0)
    first = meter.update(10, 100, now=12.0)
    assert first is not None
    assert first.done_bytes == 40 << 20 and first.rate_bytes_per_s == pytest.approx(20 << 20)
    assert first.eta_s == pytest.approx(18.0)
    assert meter.update(20, 100, now=12.5) is None  # within the interval
    last = meter.finish(now=30.0)
    assert last.done_bytes == last.total_bytes and last.eta_s == 0.0


@given(
    size=st.integers(1, 1 << 40),
    calls=st.lists(st.tuples(st.integers(0, 10_000), st.floats(0, 1e4)), max_size=30),
)
def test_progress_never_passes_the_size_nor_goes_negative(
    size: int, calls: list[tuple[int, float]]
) -> None:
    meter = ProgressMeter("d0", size, interval_s=0.0, started=0.0)
    for done, now in sorted(calls, key=lambda call: call[1]):  # a monotonic clock
        event = meter.update(min(done, 5000), 5000, now)
        assert event is not None
        assert 0 <= event.done_bytes <= size and event.rate_bytes_per_s >= 0
        assert event.eta_s is None or event.eta_s >= 0


# --- refusals: krbd clients and clusters older than Pacific --------------------------
PACIFIC_TEXT = "ceph version 16.2.15 (618f4408) pacific (stable)"
OCTOPUS_TEXT = "ceph version 15.2.17 (8a82819d) octopus (stable)"


def test_ceph_versions_are_read_per_daemon_type_without_overall() -> None:
    raw = {
        "mon": {PACIFIC_TEXT: 3},
        "osd": {PACIFIC_TEXT: 5, OCTOPUS_TEXT: 1},
        "mds": {},
        "overall": {PACIFIC_TEXT: 8, OCTOPUS_TEXT: 1},
        "rgw": {"something unexpected": 1},
    }
    found = [(v.daemon, v.major) for v in daemon_versions(raw)]
    assert found == [("mon", 16), ("osd", 15), ("osd", 16), ("rgw", 0)]


def test_a_pacific_cluster_with_librbd_clients_is_not_refused() -> None:
    versions = daemon_versions({"mon": {PACIFIC_TEXT: 1}, "osd": {PACIFIC_TEXT: 1}})
    assert instant_refusals(versions, "librbd") == []


def test_krbd_clients_and_an_older_osd_are_each_refused_with_a_stable_code() -> None:
    versions = daemon_versions({"mon": {PACIFIC_TEXT: 1}, "osd": {OCTOPUS_TEXT: 1}})
    refused = instant_refusals(versions, "krbd")
    assert [x.code for x in refused] == [r.REFUSE_INSTANT_KRBD, r.REFUSE_INSTANT_CEPH_TOO_OLD]
    assert "osd ceph version 15.2.17" in refused[1].reason
    assert all("normal restore" in x.reason for x in refused)


def test_an_encrypted_pool_or_one_without_a_node_cannot_be_served_as_an_image() -> None:
    versions = daemon_versions({"mon": {PACIFIC_TEXT: 1}, "osd": {PACIFIC_TEXT: 1}})
    for flags in ({"encrypted": True}, {"node": False}):
        refused = instant_refusals(versions, "librbd", **flags)
        assert [x.code for x in refused] == [r.REFUSE_INSTANT_POOL]


def test_an_unreadable_monitor_version_counts_as_older_but_other_daemons_do_not() -> None:
    versions = daemon_versions({"mon": {"garbled": 1}, "mgr": {OCTOPUS_TEXT: 1}})
    assert [x.code for x in instant_refusals(versions, "librbd")] == [r.REFUSE_INSTANT_CEPH_TOO_OLD]
