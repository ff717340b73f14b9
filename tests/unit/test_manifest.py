"""Manifests: binary round trips, corruption detection, and the checkpointing builder."""

from __future__ import annotations

from datetime import UTC, datetime

import blake3
import pytest
from hypothesis import given
from hypothesis import strategies as st

from edgeback_blocks.chunk import CHUNK_SIZE
from edgeback_blocks.ids import ChunkDigest, ManifestId, PoolId
from edgeback_blocks.keys import ManifestKey
from edgeback_blocks.manifest import (
    BackupType,
    Manifest,
    ManifestBuilder,
    ManifestHeader,
    created_ms,
)
from edgeback_core.errors import IntegrityError, InvalidInputError, ManifestFormatError

MKEY = ManifestKey(bytes(range(32)))

digests = st.binary(min_size=32, max_size=32).map(ChunkDigest)
entries_of = st.one_of(st.none(), digests)


def _header(
    size: int, *, parent: str | None = None, chunk_size: int = CHUNK_SIZE
) -> ManifestHeader:
    return ManifestHeader(
        vm_id="vm-1",
        disk_id="disk-0",
        image="rbd/volume-1@snap-2",
        image_size=size,
        chunk_size=chunk_size,
        created_ms=created_ms(datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=UTC)),
        backup_type=BackupType.FULL if parent is None else BackupType.INCREMENTAL,
        pool_id=PoolId("pool-a"),
        parent=None if parent is None else ManifestId(parent),
    )


@st.composite
def manifests(draw: st.DrawFn) -> Manifest:
    chunk_size = draw(st.sampled_from([4096, CHUNK_SIZE]))
    count = draw(st.integers(min_value=0, max_value=40))
    size = max(0, count * chunk_size - draw(st.integers(min_value=0, max_value=chunk_size - 1)))
    header = _header(size, parent=draw(st.none() | st.text(max_size=20)), chunk_size=chunk_size)
    entries = draw(st.lists(entries_of, min_size=header.chunk_count, max_size=header.chunk_count))
    return Manifest(header=header, entries=tuple(entries))


def _digest(n: int) -> ChunkDigest:
    return ChunkDigest(bytes([n]) * 32)


@given(manifests())
def test_round_trip(manifest: Manifest) -> None:
    assert Manifest.decode(manifest.encode(MKEY), MKEY) == manifest


@given(manifests(), st.data())
def test_any_flipped_byte_is_detected(manifest: Manifest, data: st.DataObject) -> None:
    encoded = bytearray(manifest.encode(MKEY))
    position = data.draw(st.integers(min_value=0, max_value=len(encoded) - 1))
    encoded[position] ^= data.draw(st.integers(min_value=1, max_value=255))
    with pytest.raises(IntegrityError):
        Manifest.decode(bytes(encoded), MKEY)


@given(manifests(), st.data())
def test_truncation_is_detected(manifest: Manifest, data: st.DataObject) -> None:
    encoded = manifest.encode(MKEY)
    cut = data.draw(st.integers(min_value=0, max_value=len(encoded) - 1))
    with pytest.raises(ManifestFormatError):
        Manifest.decode(encoded[:cut], MKEY)


def test_layout_is_compact() -> None:
    count = 1024
    manifest = Manifest(
        header=_header(count * CHUNK_SIZE),
        entries=tuple(None if i % 2 else _digest(i % 251) for i in range(count)),
    )
    encoded = manifest.encode(MKEY)
    assert encoded[:4] == b"EBMF"
    assert encoded[4] == 2
    assert encoded[5] == 0  # not partial, not sealed
    # prefix + header + bitmap + 512 digests + MAC + checksum
    assert len(encoded) < 24 + 256 + count // 8 + 512 * 32 + 64


def test_header_fields_and_stats() -> None:
    header = _header(2 * CHUNK_SIZE + 1, parent="m-0")
    manifest = Manifest(header=header, entries=(_digest(1), None, _digest(1)))
    decoded = Manifest.decode(manifest.encode(MKEY), MKEY)
    assert decoded.header.created == datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=UTC)
    assert decoded.header.parent == "m-0"
    assert decoded.header.backup_type is BackupType.INCREMENTAL
    assert decoded.chunk_span(2) == (2 * CHUNK_SIZE, 1)
    stats = decoded.stats
    assert (stats.chunks, stats.zero_chunks, stats.data_chunks) == (3, 1, 2)
    assert stats.referenced == {_digest(1)}


def test_entries_must_match_the_image_size() -> None:
    with pytest.raises(InvalidInputError):
        Manifest(header=_header(CHUNK_SIZE + 1), entries=(None,))
    with pytest.raises(InvalidInputError):
        Manifest(header=_header(CHUNK_SIZE), entries=(ChunkDigest(b"short"),))


def test_naive_creation_time_is_rejected() -> None:
    with pytest.raises(InvalidInputError):
        created_ms(datetime(2026, 1, 1))


def test_full_builder_needs_every_index() -> None:
    builder = ManifestBuilder(_header(3 * CHUNK_SIZE))
    builder.set(0, _digest(1))
    builder.set(2, None)
    assert builder.missing() == [1]
    with pytest.raises(InvalidInputError):
        builder.finish()
    builder.set(1, _digest(2))
    assert builder.finish().entries == (_digest(1), _digest(2), None)


def test_builder_rejects_bad_sets() -> None:
    builder = ManifestBuilder(_header(CHUNK_SIZE))
    with pytest.raises(InvalidInputError):
        builder.set(1, None)
    with pytest.raises(InvalidInputError):
        builder.set(0, ChunkDigest(b"x"))


def test_incremental_builder_copies_the_parent() -> None:
    parent = Manifest(header=_header(3 * CHUNK_SIZE), entries=(_digest(1), None, _digest(3)))
    builder = ManifestBuilder.from_parent(_header(3 * CHUNK_SIZE, parent="p"), parent)
    assert builder.missing() == []
    builder.set(1, _digest(9))
    assert builder.finish().entries == (_digest(1), _digest(9), _digest(3))


def test_grown_disk_rereads_the_old_partial_tail_and_the_new_area() -> None:
    parent = Manifest(header=_header(CHUNK_SIZE + 10), entries=(_digest(1), _digest(2)))
    builder = ManifestBuilder.from_parent(_header(4 * CHUNK_SIZE, parent="p"), parent)
    assert builder.missing() == [1, 2, 3]


def test_shrunk_disk_drops_the_tail_and_rereads_a_new_partial_chunk() -> None:
    parent = Manifest(header=_header(3 * CHUNK_SIZE), entries=(_digest(1), _digest(2), _digest(3)))
    builder = ManifestBuilder.from_parent(_header(CHUNK_SIZE + 5, parent="p"), parent)
    assert builder.missing() == [1]
    builder.set(1, _digest(7))
    assert builder.finish().entries == (_digest(1), _digest(7))


def test_parent_with_another_chunk_size_is_rejected() -> None:
    parent = Manifest(header=_header(4096, chunk_size=4096), entries=(None,))
    with pytest.raises(InvalidInputError):
        ManifestBuilder.from_parent(_header(4096), parent)


@given(
    st.lists(st.tuples(entries_of, st.booleans()), min_size=0, max_size=30),
    st.lists(st.integers(min_value=0, max_value=29), max_size=30),
)
def test_checkpoint_resume_keeps_values_and_done_marks(
    parent_entries: list[tuple[ChunkDigest | None, bool]], sets: list[int]
) -> None:
    count = len(parent_entries)
    parent = Manifest(
        header=_header(count * CHUNK_SIZE), entries=tuple(e for e, _ in parent_entries)
    )
    grown = _header((count + 2) * CHUNK_SIZE, parent="p")
    builder = ManifestBuilder.from_parent(grown, parent)
    for index in sets:
        if index < count + 2:
            builder.set(index, None if index % 3 == 0 else _digest(index))
    resumed = ManifestBuilder.resume(builder.checkpoint(MKEY), MKEY)
    assert resumed.header == builder.header
    assert resumed.missing() == builder.missing()
    assert resumed.done_count == builder.done_count
    assert [resumed.is_done(i) for i in range(count + 2)] == [
        builder.is_done(i) for i in range(count + 2)
    ]
    for index in resumed.missing():
        resumed.set(index, _digest(200))
        builder.set(index, _digest(200))
    assert resumed.finish() == builder.finish()


def test_checkpoint_and_manifest_are_not_interchangeable() -> None:
    builder = ManifestBuilder(_header(CHUNK_SIZE))
    checkpoint = builder.checkpoint(MKEY)
    assert checkpoint[5] == 1  # partial flag
    with pytest.raises(ManifestFormatError):
        Manifest.decode(checkpoint, MKEY)
    builder.set(0, None)
    with pytest.raises(ManifestFormatError):
        ManifestBuilder.resume(builder.finish().encode(MKEY), MKEY)


def test_corrupt_checkpoint_is_detected() -> None:
    checkpoint = bytearray(ManifestBuilder(_header(8 * CHUNK_SIZE)).checkpoint(MKEY))
    checkpoint[-40] ^= 1
    with pytest.raises(IntegrityError):
        ManifestBuilder.resume(bytes(checkpoint), MKEY)


@pytest.mark.parametrize(("offset", "value"), [(0, ord("X")), (4, 3), (5, 4), (6, 1)])
def test_unknown_format_is_rejected_even_with_a_valid_checksum(offset: int, value: int) -> None:
    body = bytearray(Manifest(header=_header(CHUNK_SIZE), entries=(None,)).encode(MKEY)[:-32])
    body[offset] = value
    with pytest.raises(ManifestFormatError):
        Manifest.decode(bytes(body) + blake3.blake3(bytes(body)).digest(), MKEY)
