"""Lease rules: slot orders, request checks, and a model of many holders over time."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edgeback_catalog.leases import Lease, check_request, granted, may_take, slot_order
from edgeback_core.errors import InvalidInputError

T0 = datetime(2026, 1, 1, tzinfo=UTC)


@given(st.text(min_size=1, max_size=30), st.integers(1, 50))
def test_slot_order_visits_every_slot_once(holder: str, limit: int) -> None:
    assert sorted(slot_order(holder, limit)) == list(range(limit))


def test_bad_requests_name_every_problem() -> None:
    with pytest.raises(InvalidInputError) as err:
        check_request("run", "has space", 0, 0.5)
    for field in ("scope", "holder", "limit", "ttl_s"):
        assert field in err.value.message
    check_request("hypervisor:p1/hv-1", "w1/vm-1", 5, 30)


ops = st.lists(
    st.tuples(
        st.sampled_from(["acquire", "release", "tick"]),
        st.integers(0, 7),  # holder
        st.integers(1, 20),  # seconds
    ),
    max_size=60,
)


@given(st.integers(1, 4), ops)
def test_a_slot_table_run_by_the_rules_never_has_more_live_holders_than_the_limit(
    limit: int, steps: list[tuple[str, int, int]]
) -> None:
    slots: dict[int, Lease] = {}
    now = T0
    for op, who, seconds in steps:
        holder = f"w{who}"
        if op == "tick":
            now += timedelta(seconds=seconds)
        elif op == "release":
            slots = {k: v for k, v in slots.items() if v.holder != holder}
        else:
            mine = [k for k, v in slots.items() if v.holder == holder and v.live(now)]
            for slot in mine or slot_order(holder, limit):
                if may_take(slots.get(slot), holder, now):
                    slots[slot] = granted("run:r", slot, holder, now, 10)
                    break
        live = [v for v in slots.values() if v.live(now)]
        assert len(live) <= limit
        assert len({v.holder for v in live}) == len(live)
