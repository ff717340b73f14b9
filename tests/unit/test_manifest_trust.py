"""Manifests a restore can trust: bounded parsing, MACs the node cannot forge, sealing."""

from __future__ import annotations

import struct
import tracemalloc

import blake3
import msgspec
import pytest

from edgeback_blocks.chunk import CHUNK_SIZE
from edgeback_blocks.ids import ChunkDigest, PoolId, PoolKey
from edgeback_blocks.keys import ClientKeys, ManifestKey
from edgeback_blocks.manifest import BackupType, Manifest, ManifestBuilder, ManifestHeader
from edgeback_blocks.manifest_codec import MAX_CHUNKS, summarize
from edgeback_core.errors import ManifestFormatError

KEY = ManifestKey(bytes(range(32)))
SECRET = bytes(range(100, 132))


def _header(size: int) -> ManifestHeader:
    return ManifestHeader(
        vm_id="vm-1", disk_id="d0", image="rbd/v@s", image_size=size,
        created_ms=1, backup_type=BackupType.FULL, pool_id=PoolId("p"), version="v1",
    )  # fmt: skip


def _manifest(count: int, size: int | None = None) -> Manifest:
    header = _header(size or count * CHUNK_SIZE)
    entries = tuple(
        None if i % 3 == 0 else ChunkDigest(bytes([i % 251]) * 32) for i in range(count)
    )
    return Manifest(header=header, entries=entries)


def _digest(i: int) -> ChunkDigest:
    return ChunkDigest(bytes([i % 251]) * 32)


def _with_checksums(body: bytes, key: ManifestKey | None = None) -> bytes:
    mac = blake3.blake3(body, key=(key or KEY).mac).digest()
    return body + mac + blake3.blake3(body + mac).digest()


def _hostile(image_size: int, bitmap: bytes) -> bytes:
    """A well-checksummed format-2 manifest declaring ``image_size``, zero digests."""
    header = msgspec.msgpack.encode(_header(image_size))
    prefix = struct.pack("<4sBBHIQI", b"EBMF", 2, 0, 0, len(header), image_size, CHUNK_SIZE)
    return _with_checksums(prefix + header + bitmap)


def _peak(fn: object) -> int:
    tracemalloc.start()
    try:
        with pytest.raises(ManifestFormatError):
            fn()  # type: ignore[operator]
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("image_size", [2**63, MAX_CHUNKS * CHUNK_SIZE + 1, 10**6 * CHUNK_SIZE])
def test_a_huge_declared_size_is_refused_within_bounded_memory(image_size: int) -> None:
    data = _hostile(image_size, b"\xff" * 1024)  # 1 KiB body, all chunks "zero"
    assert _peak(lambda: summarize(data)) < 64 * 1024
    assert _peak(lambda: Manifest.decode(data, KEY)) < 64 * 1024


def test_the_node_view_costs_memory_linear_in_the_body() -> None:
    # the most entries per byte a manifest can have: every chunk zero, one bit each
    count = 8 * 256 * 1024
    data = _hostile(count * CHUNK_SIZE, b"\xff" * (count // 8))
    tracemalloc.start()
    summary = summarize(data)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert summary.digests == frozenset() and summary.logical_bytes == 0
    assert peak < 8 * len(data)  # a list of entries would have taken 64x


def test_a_manifest_without_the_key_is_not_accepted() -> None:
    manifest = _manifest(10)
    forged = manifest.encode(ManifestKey(bytes(32)))  # someone without the pool's key
    assert summarize(forged).vm == "vm-1"  # structurally fine: the node stores it
    with pytest.raises(ManifestFormatError, match="authenticate"):
        Manifest.decode(forged, KEY)
    assert Manifest.decode(manifest.encode(KEY), KEY) == manifest


def test_format_1_is_read_only_when_unauthenticated_manifests_are_allowed() -> None:
    manifest = _manifest(3)
    v2 = manifest.encode(KEY)
    # rebuild it as format 1: 12-byte prefix, the same header, map and digests, checksum
    header_size = struct.unpack_from("<I", v2, 8)[0]
    body = struct.pack("<4sBBHI", b"EBMF", 1, 0, 0, header_size) + v2[24:-64]
    v1 = body + blake3.blake3(body).digest()
    with pytest.raises(ManifestFormatError, match="no MAC"):
        Manifest.decode(v1, KEY)
    assert Manifest.decode(v1, None, allow_unauthenticated=True) == manifest


def test_checkpoints_are_authenticated_too() -> None:
    builder = ManifestBuilder(_manifest(4).header)
    builder.set(1, ChunkDigest(b"\x07" * 32))
    with pytest.raises(ManifestFormatError):
        ManifestBuilder.resume(builder.checkpoint(ManifestKey(bytes(32))), KEY)
    assert ManifestBuilder.resume(builder.checkpoint(KEY), KEY).is_done(1)


def test_an_encrypted_pool_seals_the_header() -> None:
    keys = ClientKeys.encrypted_pool(SECRET)
    manifest = _manifest(5, size=5 * CHUNK_SIZE - 100)
    sealed = manifest.encode(keys.manifest)
    assert b"rbd/v@s" not in sealed and b"vm-1" not in sealed
    summary = summarize(sealed)
    assert summary.vm is None and summary.logical_bytes == 3 * CHUNK_SIZE - 100
    assert Manifest.decode(sealed, keys.manifest) == manifest
    other = ClientKeys.encrypted_pool(bytes(32)).manifest
    with pytest.raises(ManifestFormatError):
        Manifest.decode(sealed, other)
    plain = ClientKeys.plain(SECRET, PoolKey(bytes(32)))
    assert plain.manifest.mac == keys.manifest.mac and plain.digest != keys.digest
