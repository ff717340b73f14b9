"""Pure parts of the node's disk images: byte ranges, the chunk cache, capabilities."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edgeback_blocks.ids import ChunkDigest
from edgeback_core.errors import (
    CapabilityExpiredError,
    CapabilityNotFoundError,
    CapabilityRevokedError,
    InvalidInputError,
    RangeNotSatisfiableError,
)
from edgeback_dedup.byte_ranges import ByteRange, parse_range, pieces
from edgeback_dedup.capabilities import CAPABILITIES_FILE, TOMBSTONE_S, CapabilityStore, load
from edgeback_pools.chunk_cache import ChunkCache

CHUNK = 4096


@given(st.integers(1, 10 * CHUNK), st.data())
def test_pieces_tile_the_range_and_stay_in_their_chunk(size: int, data: st.DataObject) -> None:
    start = data.draw(st.integers(0, size - 1))
    stop = data.draw(st.integers(start + 1, size))
    parts = list(pieces(ByteRange(start, stop, size), CHUNK))
    assert sum(p.length for p in parts) == stop - start
    position = start
    for part in parts:
        assert part.index * CHUNK + part.offset == position
        assert part.length > 0 and part.offset + part.length <= CHUNK
        position += part.length


@pytest.mark.parametrize(
    ("header", "start", "stop"),
    [(None, 0, 100), ("bytes=0-0", 0, 1), ("bytes=99-", 99, 100), ("bytes=-1", 99, 100),
     ("bytes=-500", 0, 100), ("bytes=10-1000", 10, 100), ("bytes = 3-4", 3, 5)],
)  # fmt: skip
def test_single_ranges(header: str | None, start: int, stop: int) -> None:
    assert parse_range(header, 100) == ByteRange(start, stop, 100)


@pytest.mark.parametrize("header", ["bytes=100-", "bytes=-0", "bytes=200-300"])
def test_unsatisfiable(header: str) -> None:
    with pytest.raises(RangeNotSatisfiableError):
        parse_range(header, 100)


@pytest.mark.parametrize(
    "header",
    ["bytes=0-1,5-6", "items=0-1", "bytes=-", "bytes=5-1", "bytes=x-1", "bytes=" + "9" * 30],
)
def test_refused(header: str) -> None:
    with pytest.raises(InvalidInputError) as caught:
        parse_range(header, 100)
    assert not isinstance(caught.value, RangeNotSatisfiableError)


def test_cache_evicts_least_recently_used_by_bytes() -> None:
    cache = ChunkCache(10)
    a, b, c = (ChunkDigest(bytes([n]) * 32) for n in range(3))
    cache.put(a, b"aaaa")
    cache.put(b, b"bbbb")
    assert cache.get(a) == b"aaaa"  # a is now the most recent
    cache.put(c, b"cccc")
    assert cache.get(b) is None and cache.get(a) == b"aaaa" and cache.get(c) == b"cccc"
    assert cache.size == 8
    cache.put(a, b"x" * 11)  # larger than the whole cache: not kept, old value stays
    assert cache.size <= 10


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 1, 1, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


def issue(store: CapabilityStore, ttl_s: float = 60) -> tuple[str, str]:
    presented, record = store.issue(
        pool="dd", vm="vm", disk="d", version="v", checksum=b"\1" * 32, size=1,
        ttl_s=ttl_s, created_by="host", mac_checked=True,
    )  # fmt: skip
    return presented, record.handle


def test_capability_lifecycle_and_what_is_stored() -> None:
    clock = Clock()
    store = CapabilityStore([], clock)
    presented, handle = issue(store)
    assert len(presented) >= 43 and presented.encode() not in store.encode()
    assert handle not in presented and store.lookup(presented).handle == handle
    with pytest.raises(CapabilityNotFoundError):
        store.lookup(presented[:-1] + ("A" if presented[-1] != "A" else "B"))
    clock.now += timedelta(seconds=61)
    with pytest.raises(CapabilityExpiredError):
        store.lookup(presented)
    second, handle2 = issue(store)
    store.revoke("dd", handle2)
    with pytest.raises(CapabilityRevokedError):
        store.lookup(second)
    with pytest.raises(CapabilityNotFoundError):
        store.revoke("other", handle2)


def test_the_file_round_trips(tmp_path: Path) -> None:
    clock = Clock()
    store = CapabilityStore([], clock)
    presented, handle = issue(store)
    (tmp_path / CAPABILITIES_FILE).write_bytes(store.encode())
    assert CapabilityStore(load(tmp_path), clock).lookup(presented).handle == handle


def test_expired_records_are_purged_after_their_tombstone() -> None:
    clock = Clock()
    store = CapabilityStore([], clock)
    old, _ = issue(store, ttl_s=1)
    clock.now += timedelta(seconds=TOMBSTONE_S + 2)
    issue(store)
    with pytest.raises(CapabilityNotFoundError):
        store.lookup(old)
    assert len(store.of_pool("dd")) == 1
