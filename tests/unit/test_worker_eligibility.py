"""Refusal and skip rules of a backup run (B5 free space, B8 refusals)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edgeback_platform.models import Disk, DiskId, GuestAgent, HypervisorId, Vm, VmId, VmState
from edgeback_worker.eligibility import GIB, FreeSpaceRule, Refusal, Skip, refusal


def vm(
    state: VmState = "running", *, agent: tuple[bool, bool] = (True, True), **disk: object
) -> Vm:
    return Vm(
        id=VmId("vm-1"),
        name="web",
        host_id=HypervisorId("hv-1"),
        state=state,
        guest_agent=GuestAgent(installed=agent[0], running=agent[1]),
        disks=(Disk(id=DiskId("d1"), size=GIB, pool="rbd", **disk),),  # type: ignore[arg-type]
    )


def test_a_running_vm_on_ceph_with_its_agent_is_eligible() -> None:
    assert refusal(vm()) is None


def test_a_stopped_vm_needs_no_running_agent() -> None:
    assert refusal(vm("stopped", agent=(True, False))) is None


@pytest.mark.parametrize(
    ("candidate", "code"),
    [
        (vm("shelved"), Refusal.SHELVED),
        (vm(storage="other"), Refusal.NOT_ON_CEPH),
        (vm(agent=(False, False)), Refusal.NO_GUEST_AGENT),
        (vm(agent=(True, False)), Refusal.GUEST_AGENT_DOWN),
    ],
)
def test_refusals_carry_a_stable_code_and_name_the_vm(candidate: Vm, code: Refusal) -> None:
    verdict = refusal(candidate)
    assert verdict is not None and verdict.code == code
    assert "web" in verdict.reason


def test_a_vm_without_disks_is_not_on_ceph() -> None:
    bare = Vm(id=VmId("v"), name="bare", host_id=HypervisorId("h"), state="running")
    verdict = refusal(bare)
    assert verdict is not None and verdict.code == Refusal.NOT_ON_CEPH


def test_free_space_at_either_threshold_skips() -> None:
    rule = FreeSpaceRule(min_free_percent=10, min_free_gib=50)
    assert rule.verdict(pool="rbd", free_bytes=100 * GIB, total_bytes=1000 * GIB) is not None
    assert rule.verdict(pool="rbd", free_bytes=50 * GIB, total_bytes=100 * GIB) is not None
    assert rule.verdict(pool="rbd", free_bytes=51 * GIB, total_bytes=100 * GIB) is None
    skip = rule.verdict(pool="rbd", free_bytes=GIB, total_bytes=100 * GIB)
    assert skip is not None and skip.code == Skip.LOW_FREE_SPACE and "rbd" in skip.reason


@given(free=st.integers(0, 10**15), total=st.integers(1, 10**15))
def test_thresholds_of_zero_never_skip(free: int, total: int) -> None:
    assert FreeSpaceRule().verdict(pool="p", free_bytes=free, total_bytes=total) is None


@given(
    free=st.integers(0, 10**14),
    extra=st.integers(0, 10**14),
    percent=st.floats(0, 100),
    gib=st.floats(0, 10**5),
)
def test_more_free_space_never_turns_a_run_into_a_skip(
    free: int, extra: int, percent: float, gib: float
) -> None:
    rule = FreeSpaceRule(min_free_percent=percent, min_free_gib=gib)
    total = 2 * 10**14
    if rule.verdict(pool="p", free_bytes=free + extra, total_bytes=total) is not None:
        assert rule.verdict(pool="p", free_bytes=free, total_bytes=total) is not None
