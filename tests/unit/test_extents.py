"""Extent planning: every changed byte is read, no zeroed chunk hides data, edges handled."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edgeback_blocks.chunk import CHUNK_SIZE
from edgeback_blocks.extents import Extent, chunk_count, chunk_span, plan_chunks, touched_chunks
from edgeback_core.errors import InvalidInputError

# small chunks keep the byte-level model cheap; the arithmetic does not depend on the size
CS = 16
MIB = 1 << 20


@st.composite
def images_with_extents(draw: st.DrawFn) -> tuple[int, list[Extent]]:
    size = draw(st.integers(min_value=1, max_value=12 * CS))
    extents = []
    for _ in range(draw(st.integers(min_value=0, max_value=8))):
        offset = draw(st.integers(min_value=0, max_value=size - 1))
        length = draw(st.integers(min_value=1, max_value=size - offset))
        extents.append(Extent.from_diff(offset, length, draw(st.booleans())))
    return size, extents


def _bytes_of(extents: list[Extent], exists: bool) -> set[int]:
    return {b for e in extents if e.exists is exists for b in range(e.offset, e.end)}


def _chunk_bytes(index: int, size: int) -> range:
    offset, length = chunk_span(index, size, CS)
    return range(offset, offset + length)


@given(images_with_extents())
def test_every_changed_byte_is_in_a_chunk_read_or_zeroed(case: tuple[int, list[Extent]]) -> None:
    size, extents = case
    plan = plan_chunks(extents, size, CS)
    read = {b for index in plan.read for b in _chunk_bytes(index, size)}
    zeroed = {b for index in plan.zero for b in _chunk_bytes(index, size)}
    assert _bytes_of(extents, True) <= read
    assert _bytes_of(extents, False) <= read | zeroed


@given(images_with_extents())
def test_zero_chunks_are_wholly_discarded_and_hold_no_written_byte(
    case: tuple[int, list[Extent]],
) -> None:
    size, extents = case
    plan = plan_chunks(extents, size, CS)
    written, discarded = _bytes_of(extents, True), _bytes_of(extents, False)
    for index in plan.zero:
        chunk = set(_chunk_bytes(index, size))
        assert not chunk & written
        assert chunk <= discarded
    assert not set(plan.zero) & set(plan.read)
    assert list(plan.read) == sorted(set(plan.read))


@given(images_with_extents())
def test_chunks_are_read_only_when_touched(case: tuple[int, list[Extent]]) -> None:
    size, extents = case
    plan = plan_chunks(extents, size, CS)
    changed = _bytes_of(extents, True) | _bytes_of(extents, False)
    for index in plan.read:
        assert set(_chunk_bytes(index, size)) & changed
    untouched = set(plan.untouched())
    assert untouched | set(plan.read) | set(plan.zero) == set(range(chunk_count(size, CS)))
    for index in untouched:
        assert not set(_chunk_bytes(index, size)) & changed


def test_partial_last_chunk_of_unaligned_image() -> None:
    size = 3 * CHUNK_SIZE + 4096
    assert chunk_count(size) == 4
    assert chunk_span(3, size) == (3 * CHUNK_SIZE, 4096)
    plan = plan_chunks([Extent.from_diff(3 * CHUNK_SIZE + 100, 10, True)], size)
    assert plan.read == (3,)
    assert plan.read_bytes == 4096
    # a discard of the whole partial tail zeroes it without a read
    plan = plan_chunks([Extent.from_diff(3 * CHUNK_SIZE, 4096, False)], size)
    assert plan.zero == (3,)
    assert plan.read == ()


def test_discard_split_across_extents_still_zeroes_the_chunk() -> None:
    half = CHUNK_SIZE // 2
    plan = plan_chunks(
        [
            Extent.from_diff(CHUNK_SIZE, half, False),
            Extent.from_diff(CHUNK_SIZE + half, half, False),
        ],
        4 * CHUNK_SIZE,
    )
    assert plan.zero == (1,)
    assert plan.read == ()


def test_partly_discarded_chunk_is_read() -> None:
    plan = plan_chunks([Extent.from_diff(CHUNK_SIZE // 2, CHUNK_SIZE, False)], 4 * CHUNK_SIZE)
    assert plan.zero == ()
    assert plan.read == (0, 1)


def test_written_data_beats_a_discard_of_the_same_chunk() -> None:
    plan = plan_chunks(
        [Extent.from_diff(0, 2 * CHUNK_SIZE, False), Extent.from_diff(CHUNK_SIZE + 1, 1, True)],
        2 * CHUNK_SIZE,
    )
    assert plan.zero == (0,)
    assert plan.read == (1,)


@pytest.mark.parametrize(
    ("offset", "length"),
    [(0, 2 * CHUNK_SIZE + 1), (2 * CHUNK_SIZE, 1), (CHUNK_SIZE, CHUNK_SIZE + 1)],
)
def test_extent_outside_the_image_is_rejected(offset: int, length: int) -> None:
    with pytest.raises(InvalidInputError):
        plan_chunks([Extent.from_diff(offset, length, True)], 2 * CHUNK_SIZE)


@pytest.mark.parametrize(("offset", "length"), [(-1, 10), (0, 0), (5, -3)])
def test_malformed_extent_is_rejected(offset: int, length: int) -> None:
    with pytest.raises(InvalidInputError):
        Extent.from_diff(offset, length, True)


def test_chunk_span_rejects_an_index_past_the_end() -> None:
    with pytest.raises(InvalidInputError):
        chunk_span(2, 2 * CHUNK_SIZE)
    with pytest.raises(InvalidInputError):
        chunk_span(-1, 2 * CHUNK_SIZE)


def test_empty_image_plans_nothing() -> None:
    plan = plan_chunks([], 0)
    assert (plan.read, plan.zero, plan.chunk_count) == ((), (), 0)


def test_touched_chunks_at_the_partial_last_chunk_and_past_the_end() -> None:
    chunk, size = 4 * MIB, 10 * MIB  # chunks 0, 1 and a partial 2
    extents = [Extent(0, 1, True), Extent(9 * MIB, 4 * MIB, False)]  # past the end too
    assert touched_chunks(extents, size, chunk) == {0, 2}
    assert touched_chunks([Extent(4 * MIB, 4 * MIB, True)], size, chunk) == {1}
    assert touched_chunks([Extent(12 * MIB, 8 * MIB, True)], size, chunk) == frozenset()
    assert touched_chunks([], size, chunk) == frozenset()
