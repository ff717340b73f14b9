"""Pool capacity arithmetic and upload admission."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edgeback_core.errors import PoolFullError
from edgeback_pools.capacity import Capacity, FilesystemSpace

sizes = st.integers(min_value=0, max_value=2**50)


def test_without_quota_the_filesystem_is_the_pool() -> None:
    cap = Capacity.of(FilesystemSpace(total=1000, available=300), pool_bytes=50, quota=None)
    assert (cap.capacity, cap.used, cap.free) == (1000, 700, 300)


def test_with_quota_the_pool_sees_its_share() -> None:
    cap = Capacity.of(FilesystemSpace(total=1000, available=300), pool_bytes=50, quota=200)
    assert (cap.capacity, cap.used, cap.free) == (200, 50, 150)


@given(total=sizes, available=sizes, pool_bytes=sizes, quota=st.none() | sizes)
def test_free_never_exceeds_the_filesystem_nor_goes_negative(
    total: int, available: int, pool_bytes: int, quota: int | None
) -> None:
    available = min(available, total)
    cap = Capacity.of(
        FilesystemSpace(total=total, available=available), pool_bytes=pool_bytes, quota=quota
    )
    assert 0 <= cap.free <= available
    if quota is not None:
        assert cap.free <= max(0, quota - pool_bytes)


@given(free=sizes, size=sizes, reserved=sizes)
def test_admission_counts_what_others_reserved(free: int, size: int, reserved: int) -> None:
    cap = Capacity(capacity=free, used=0, free=free)
    if size + reserved <= free:
        cap.admit(size, reserved=reserved, pool="p")
    else:
        with pytest.raises(PoolFullError) as full:
            cap.admit(size, reserved=reserved, pool="p")
        assert full.value.details["needed"] == size
