"""Restore rules: spec problems with stable codes, refusals from the target's live state,
verification codes judged with an injected clock, and the restore state machine."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from edgeback_catalog import restorecodes as codes
from edgeback_catalog.restorestate import (
    INITIAL,
    TERMINAL,
    TRANSITIONS,
    RestoreState,
    allowed_from,
    check_transition,
)
from edgeback_core.errors import InvalidRestoreError, InvalidTransitionError
from edgeback_core.messages import restores as r
from edgeback_core.messages.schedule import Once
from edgeback_core.messages.worker import InventoryDisk, InventoryVm
from edgeback_core.restorerules import PointSummary, check, once_instant, problems, refusals

GIB = 1 << 30
OPTS = r.RestoreOptions(host_id="h1")


def point(*sizes: int, vm: str = "vm-1", set_id: str = "s1", platform: str = "p1") -> PointSummary:
    disks = tuple(r.PointDisk(disk_id=f"d{i}", size_bytes=s) for i, s in enumerate(sizes))
    return PointSummary(backup_set_id=set_id, vm_id=vm, platform_id=platform, disks=disks)


def new_path(*pairs: tuple[str, str]) -> r.RestoreSpec:
    maps = [r.DiskMap(source_disk_id=a, target_disk_id=b) for a, b in pairs]
    target = r.RestoreTarget(new_path=r.NewPath(platform_id="p1", vm_id="vm-9", disks=maps))
    return r.RestoreSpec(backup_set_ids=["s1"], target=target, options=OPTS)


def codes_of(spec: r.RestoreSpec, *points: PointSummary) -> list[str]:
    return [p.code for p in problems(spec, points)]


def test_a_good_mapping_has_no_problem() -> None:
    assert codes_of(new_path(("d0", "t1"), ("d1", "t0")), point(GIB, GIB)) == []


def test_a_once_time_past_is_a_problem_only_given_now() -> None:
    at = datetime(2026, 12, 24, 18, 0, tzinfo=UTC)
    spec = r.RestoreSpec(
        backup_set_ids=["s1"], schedule=Once(tz="Europe/Berlin", at=at.replace(tzinfo=None)),
        options=OPTS,
    )  # fmt: skip
    due = once_instant(spec.schedule)
    assert due == datetime(2026, 12, 24, 17, 0, tzinfo=UTC)  # 18:00 in Berlin
    past = [p.code for p in problems(spec, [point(GIB)], due + timedelta(minutes=2))]
    assert past == [r.ONCE_TIME_PAST]
    assert problems(spec, [point(GIB)], due + timedelta(seconds=59)) == []  # the grace
    assert problems(spec, [point(GIB)]) == []  # no clock: not judged
    assert once_instant(r.RestoreSpec(backup_set_ids=["s1"], options=OPTS).schedule) is None


def test_mapping_problems_have_stable_codes() -> None:
    two = point(GIB, GIB)
    assert r.MAPPING_TARGET_TWICE in codes_of(new_path(("d0", "t0"), ("d1", "t0")), two)
    unmapped = codes_of(new_path(("d0", "t0")), two)
    assert r.MAPPING_SOURCE_UNMAPPED in unmapped and r.MAPPING_TOO_FEW_TARGETS in unmapped
    assert r.MAPPING_UNKNOWN_SOURCE in codes_of(new_path(("d0", "t0"), ("d7", "t1")), point(GIB))
    with pytest.raises(InvalidRestoreError) as err:
        check(new_path(("d0", "t0"), ("d1", "t0")), [two])
    assert r.MAPPING_TARGET_TWICE in err.value.details["codes"]


def test_points_and_options_are_checked() -> None:
    spec = r.RestoreSpec(
        backup_set_ids=["s1", "s2"],
        options=r.RestoreOptions(host_id="h1", streams_per_disk=0, keep_snapshot_on_success=True),
    )
    found = codes_of(spec, point(GIB), point(GIB, set_id="s2"))
    assert found.count(r.POINT_TWICE_FOR_VM) == 1
    assert found.count(r.OPTION_OUT_OF_RANGE) == 2
    assert codes_of(r.RestoreSpec(backup_set_ids=["s1"], options=OPTS), point(GIB)) == []


def test_instant_keeps_the_original_aside_instead_of_a_snapshot() -> None:
    def problems_of(**options: bool) -> list[str]:
        opts = msgspec.structs.replace(r.RestoreOptions(host_id="h1"), **options)
        spec = r.RestoreSpec(backup_set_ids=["s1"], options=opts)
        return [p.field for p in problems(spec, [point(GIB)])]

    assert problems_of(instant=True, keep_snapshot_on_success=True) == []
    assert problems_of(instant=True, snapshot_before_overwrite=True) == [
        "options.snapshot_before_overwrite"
    ]
    assert problems_of(keep_snapshot_on_success=True) == ["options.keep_snapshot_on_success"]


def test_an_imported_point_has_no_original_path_but_a_new_one() -> None:
    imported = point(GIB, GIB, platform="")
    original = r.RestoreSpec(backup_set_ids=["s1"], options=OPTS)
    assert codes_of(original, imported) == [r.POINT_NO_ORIGINAL_VM]
    assert codes_of(original, point(GIB, GIB)) == []
    assert codes_of(new_path(("d0", "d0"), ("d1", "d1")), imported) == []


def vm(
    *sizes: int, state: str = "stopped", on_ceph: bool = True, agent: bool = False
) -> InventoryVm:
    disks = [InventoryDisk(id=f"d{i}", size=s, storage="ceph") for i, s in enumerate(sizes)]
    return InventoryVm(
        id="vm-1", name="web", state=state, on_ceph=on_ceph,  # type: ignore[arg-type]
        guest_agent_installed=agent, guest_agent_running=agent, disks=disks,
    )  # fmt: skip


def test_refusals_name_every_reason() -> None:
    disks = [r.PointDisk(disk_id="d0", size_bytes=2 * GIB), r.PointDisk(disk_id="d1", size_bytes=1)]
    snap = r.RestoreOptions(host_id="h1", snapshot_before_overwrite=True)
    found = {f.code for f in refusals(disks, vm(GIB, state="paused", on_ceph=False), snap)}
    assert found == {
        r.REFUSE_TARGET_PAUSED,
        r.REFUSE_TARGET_NOT_ON_CEPH,
        r.REFUSE_GUEST_AGENT_DOWN,
        r.REFUSE_TARGET_TOO_FEW_DISKS,
        r.REFUSE_TARGET_DISK_SMALLER,
        r.REFUSE_TARGET_DISK_GONE,
    }
    assert [f.code for f in refusals(disks, None, OPTS)] == [r.REFUSE_TARGET_VM_GONE]
    assert refusals(disks, vm(2 * GIB, 1, agent=True), snap) == []
    mapped = [r.DiskMap(source_disk_id="d0", target_disk_id="d1")]
    assert {f.code for f in refusals(disks[:1], vm(1, 2 * GIB), OPTS, mapping=mapped)} == set()


@given(
    sources=st.lists(st.integers(0, 8 * GIB), min_size=1, max_size=6),
    targets=st.lists(st.integers(0, 8 * GIB), min_size=0, max_size=6),
    state=st.sampled_from(["running", "stopped", "suspended", "paused", "shelved"]),
)
def test_refused_exactly_when_a_rule_says_so(
    sources: list[int], targets: list[int], state: str
) -> None:
    disks = [r.PointDisk(disk_id=f"d{i}", size_bytes=s) for i, s in enumerate(sources)]
    found = {f.code for f in refusals(disks, vm(*targets, state=state, agent=True), OPTS)}
    fits = len(targets) >= len(sources) and all(
        t >= s for s, t in zip(sources, targets, strict=False)
    )
    assert (not found) == (fits and state in ("running", "stopped"))
    assert (r.REFUSE_TARGET_TOO_FEW_DISKS in found) == (len(targets) < len(sources))


NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


def test_a_code_is_single_use_bound_to_its_request_and_expires() -> None:
    code = codes.new_code()
    assert len(code) == codes.LENGTH and set(code) <= set(codes.ALPHABET)
    stored = codes.issue("r1", b"spec", NOW + timedelta(minutes=10), code)
    assert code not in stored.code_hash
    assert codes.judge("r1", stored, code.lower(), NOW) is codes.Verdict.ACCEPTED
    assert codes.judge("r1", stored, "WRONG", NOW) is codes.Verdict.WRONG
    assert codes.judge("r2", stored, code, NOW) is codes.Verdict.WRONG  # another request
    other = codes.issue("r1", b"other spec", NOW + timedelta(minutes=10), code)
    assert other.code_hash != stored.code_hash
    later = NOW + timedelta(minutes=10)
    assert codes.judge("r1", stored, code, later) is codes.Verdict.EXPIRED
    used = codes.Verification(
        code_hash=stored.code_hash,
        request_hash=stored.request_hash,
        expires_at=stored.expires_at,
        used_at=NOW,
    )
    assert codes.judge("r1", used, code, NOW) is codes.Verdict.USED


def test_state_machine() -> None:
    assert INITIAL is RestoreState.PENDING_VERIFICATION
    assert RestoreState.EXPIRED in TERMINAL and RestoreState.QUEUED not in TERMINAL
    # a code left unused; a once time found past the scheduler's late limit
    assert allowed_from(RestoreState.EXPIRED) == {
        RestoreState.PENDING_VERIFICATION,
        RestoreState.SCHEDULED,
    }
    check_transition(RestoreState.PENDING_VERIFICATION, RestoreState.QUEUED)
    with pytest.raises(InvalidTransitionError):
        check_transition(RestoreState.QUEUED, RestoreState.PENDING_VERIFICATION)
    for state in RestoreState:  # every state reaches a terminal one
        seen, todo = set(), [state]
        while todo:
            s = todo.pop()
            seen.add(s)
            todo.extend(TRANSITIONS[s] - seen)
        assert seen & TERMINAL
