"""Durable writes of the pool and the chunk directory index (local files, no sockets)."""

from __future__ import annotations

import errno
import mmap
import os
from pathlib import Path

import pytest

from edgeback_blocks.ids import ChunkDigest
from edgeback_core.errors import NotFoundError
from edgeback_pools.content_dir import ChunkDirectory
from edgeback_pools.files import _write_synced, read_bytes, remove_stale_temp, write_atomic
from edgeback_pools.pool_meta import create_pool, read_pool


def test_atomic_write_creates_parents_and_leaves_no_temp(tmp_path: Path) -> None:
    target = tmp_path / "a" / "b"
    assert write_atomic(target, "f", b"one") is True
    assert write_atomic(target, "f", b"two") is True
    assert [p.name for p in target.iterdir()] == ["f"]
    assert read_bytes(target / "f") == b"two"


def _aligned(data: bytes) -> memoryview:
    buffer = mmap.mmap(-1, len(data) + 8192)  # page-aligned, like the node's upload buffers
    buffer[: len(data)] = data
    buffer[len(data) :] = b"\xff" * 8192  # bytes past the record must not reach the file
    return memoryview(buffer)[: len(data)]


@pytest.mark.parametrize("length", [64 * 1024, 4 * 1024 * 1024 + 48, 300_001])
def test_aligned_buffers_are_written_around_the_page_cache_byte_exact(
    tmp_path: Path, length: int
) -> None:
    data = os.urandom(length)
    assert _write_synced(tmp_path / "direct", _aligned(data)) is True
    assert (tmp_path / "direct").read_bytes() == data


def test_other_buffers_and_small_records_are_written_buffered(tmp_path: Path) -> None:
    data = os.urandom(300_001)
    assert _write_synced(tmp_path / "bytes", data) is False  # read-only: address unknown
    unaligned = memoryview(bytearray(b"x" + data))[1:]
    assert _write_synced(tmp_path / "unaligned", unaligned) is False
    assert _write_synced(tmp_path / "small", _aligned(data[:1000])) is False
    for name in ("bytes", "unaligned"):
        assert (tmp_path / name).read_bytes() == data
    assert (tmp_path / "small").read_bytes() == data[:1000]


def test_a_filesystem_without_o_direct_gets_a_buffered_write(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_open = os.open

    def no_direct(path: str, flags: int, mode: int = 0o777) -> int:
        if flags & os.O_DIRECT:  # what a filesystem without O_DIRECT answers: Linux
            os.close(real_open(path, flags & ~os.O_DIRECT, mode))  # creates the file first
            raise OSError(errno.EINVAL, "Invalid argument")
        return real_open(path, flags, mode)

    monkeypatch.setattr(os, "open", no_direct)
    data = os.urandom(200_000)
    assert _write_synced(tmp_path / "fallback", _aligned(data)) is False
    assert (tmp_path / "fallback").read_bytes() == data


def test_create_if_absent_keeps_the_first(tmp_path: Path) -> None:
    assert write_atomic(tmp_path, "m", b"first", replace=False) is True
    assert write_atomic(tmp_path, "m", b"second", replace=False) is False
    assert read_bytes(tmp_path / "m") == b"first"
    assert [p.name for p in tmp_path.iterdir()] == ["m"]


def test_reading_a_missing_file_is_not_found(tmp_path: Path) -> None:
    with pytest.raises(NotFoundError):
        read_bytes(tmp_path / "nothing")


def test_stale_temp_files_are_swept(tmp_path: Path) -> None:
    (tmp_path / ".x.123.tmp").write_bytes(b"half")
    (tmp_path / "keep").write_bytes(b"whole")
    assert remove_stale_temp(tmp_path) == 1
    assert [p.name for p in tmp_path.iterdir()] == ["keep"]


def test_chunk_directory_index_is_rebuilt_from_disk(tmp_path: Path) -> None:
    chunks = ChunkDirectory.open(tmp_path / "chunks")
    digests = [ChunkDigest(bytes([i]) * 32) for i in range(3)]
    for n, digest in enumerate(digests):
        chunks.write(digest, b"r" * (n + 1))
        chunks.added(digest, n + 1)
    (chunks.path(digests[0]).parent / "not-a-digest").write_bytes(b"?")
    reopened = ChunkDirectory.open(tmp_path / "chunks")
    assert reopened.counts() == chunks.counts()
    assert (reopened.counts().chunks, reopened.counts().stored_bytes) == (3, 6)
    assert all(d in reopened for d in digests)
    assert reopened.read(digests[2]) == b"rrr"


def test_pool_identity_and_key(tmp_path: Path) -> None:
    info = create_pool(tmp_path, "p1", "standard", quota_bytes=10)
    again, key = read_pool(tmp_path / "p1")
    assert again == info
    assert len(key) == 32
    assert (tmp_path / "p1" / "pool.key").stat().st_mode & 0o777 == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p1"]
