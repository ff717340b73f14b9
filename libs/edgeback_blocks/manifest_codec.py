"""The binary form of manifests and checkpoints (``docs/formats.md``), bounded and keyed.

Format 2 (written today) ends with a keyed BLAKE3 MAC (the pool's manifest key, which
the storage node does not hold) and an unkeyed BLAKE3 checksum (which the node checks).
In an encrypted pool the descriptive header is sealed with AES-256-GCM. Format 1 (an
unkeyed checksum only) is still read, but only where the caller accepts unauthenticated
manifests explicitly.

Parsing never allocates from a size the manifest declares: the chunk count must fit both
``MAX_CHUNKS`` and the bytes actually present (one bit per chunk and bitmap) before any
per-chunk structure is built, and :func:`inspect_manifest` (the node's view) builds
none at all, so its cost is linear in the body's length.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Final

import blake3
import msgspec
from cryptography.exceptions import InvalidTag

from edgeback_blocks.extents import chunk_count
from edgeback_blocks.ids import DIGEST_SIZE, ChunkDigest
from edgeback_blocks.keys import ManifestKey
from edgeback_blocks.manifest_header import ManifestHeader
from edgeback_core.errors import InvalidInputError, ManifestFormatError

MAGIC: Final = b"EBMF"
LEGACY_VERSION: Final = 1
FORMAT_VERSION: Final = 2
FLAG_PARTIAL: Final = 0x01
FLAG_SEALED: Final = 0x02
CHECKSUM_SIZE: Final = 32
MAX_HEADER_SIZE: Final = 64 * 1024
MAX_CHUNKS: Final = 1 << 24
"""64 TiB at 4 MiB chunks; a manifest declaring more is refused before it is parsed."""
NONCE_SIZE: Final = 12

# magic | version u8 | flags u8 | reserved u16 | header length u32
_PREFIX_V1: Final = struct.Struct("<4sBBHI")
# ... | image_size u64 | chunk_size u32: the node sizes the map without the header
_PREFIX_V2: Final = struct.Struct("<4sBBHIQI")

_header_encoder: Final = msgspec.msgpack.Encoder()
_header_decoder: Final = msgspec.msgpack.Decoder(ManifestHeader)

Buffer = bytes | bytearray | memoryview


@dataclass(frozen=True, slots=True)
class Layout:
    """The checked structure of a manifest: its sections as views of the body."""

    version: int
    flags: int
    prefix: memoryview
    header: memoryview
    """MessagePack, or (sealed) nonce + AES-GCM ciphertext of it."""
    image_size: int
    chunk_size: int
    count: int
    zero: int
    """Bitmaps as integers (bit i = chunk i), built from at most the body's bytes."""
    present: int
    done: int
    digests: memoryview

    @property
    def partial(self) -> bool:
        return bool(self.flags & FLAG_PARTIAL)

    @property
    def sealed(self) -> bool:
        return bool(self.flags & FLAG_SEALED)

    @property
    def data(self) -> int:
        """Bitmap of the entries that hold a digest."""
        return self.present & ~self.zero


def encode(
    header: ManifestHeader,
    entries: list[ChunkDigest | None] | tuple[ChunkDigest | None, ...],
    present: bytearray | None,
    done: bytearray | None,
    key: ManifestKey,
) -> bytes:
    """Format 2; ``present``/``done`` (one byte per chunk) make it a checkpoint."""
    flags = (0 if present is None else FLAG_PARTIAL) | (0 if key.seal is None else FLAG_SEALED)
    have = [True] * len(entries) if present is None else [bool(p) for p in present]
    header_bytes = _header_encoder.encode(header)
    if key.seal is not None:
        nonce = blake3.blake3(header_bytes, key=key.seal.nonce_key).digest(length=NONCE_SIZE)
        size = NONCE_SIZE + len(header_bytes) + 16
        prefix = _prefix(flags, size, header)
        header_bytes = nonce + key.seal.aead.encrypt(nonce, header_bytes, prefix)
    else:
        prefix = _prefix(flags, len(header_bytes), header)
    zero = _pack_bits([h and e is None for e, h in zip(entries, have, strict=True)])
    parts = [prefix, header_bytes, zero]
    if present is not None and done is not None:
        parts += [_pack_bits(present), _pack_bits(done)]
    parts.append(b"".join(e for e, h in zip(entries, have, strict=True) if h and e is not None))
    body = b"".join(parts)
    mac = blake3.blake3(body, key=key.mac).digest()
    return body + mac + blake3.blake3(body + mac).digest()


def _prefix(flags: int, header_size: int, header: ManifestHeader) -> bytes:
    return _PREFIX_V2.pack(
        MAGIC, FORMAT_VERSION, flags, 0, header_size, header.image_size, header.chunk_size
    )


def layout(data: Buffer) -> Layout:
    """The structure of ``data``, checked against its checksum and its own lengths.

    Needs no key (the node's view): a format-2 MAC is not checked here.
    """
    view = memoryview(data).cast("B")
    if view.nbytes < _PREFIX_V1.size + CHECKSUM_SIZE:
        raise ManifestFormatError("manifest is truncated", length=view.nbytes)
    body, checksum = view[:-CHECKSUM_SIZE], view[-CHECKSUM_SIZE:]
    if blake3.blake3(body).digest() != checksum:
        raise ManifestFormatError("manifest checksum mismatch: the manifest is corrupt")
    magic, version, flags, reserved, header_size = _PREFIX_V1.unpack_from(body)
    known_flags = FLAG_PARTIAL | (FLAG_SEALED if version == FORMAT_VERSION else 0)
    if magic != MAGIC or version not in (1, 2) or flags & ~known_flags or reserved:
        raise ManifestFormatError(
            "not a manifest of a known format", magic=bytes(magic).hex(), version=version
        )
    if header_size > MAX_HEADER_SIZE:
        raise ManifestFormatError("manifest header too large", header_size=header_size)
    if version == FORMAT_VERSION:
        body = body[:-CHECKSUM_SIZE]  # the MAC
        return _sections(body, version, flags, _PREFIX_V2, header_size)
    return _sections(body, version, flags, _PREFIX_V1, header_size)


def _sections(
    body: memoryview, version: int, flags: int, prefix: struct.Struct, header_size: int
) -> Layout:
    start = prefix.size + header_size
    if body.nbytes < start:
        raise ManifestFormatError("manifest header is truncated")
    header = body[prefix.size : start]
    if prefix is _PREFIX_V2:
        image_size, chunk_size = _PREFIX_V2.unpack_from(body)[5:]
    else:
        parsed = _decode_header(header)
        image_size, chunk_size = parsed.image_size, parsed.chunk_size
    rest = body[start:]
    count = _checked_count(image_size, chunk_size, rest.nbytes, bitmaps=3 if flags & 1 else 1)
    size = (count + 7) // 8
    zero = int.from_bytes(rest[:size], "little")
    present, done = (1 << count) - 1, 0
    if flags & FLAG_PARTIAL:
        present = int.from_bytes(rest[size : 2 * size], "little")
        done = int.from_bytes(rest[2 * size : 3 * size], "little")
        rest = rest[3 * size :]
    else:
        rest = rest[size:]
    if (zero | present | done) >> count:
        raise ManifestFormatError("manifest bitmap padding is not zero")
    stored = (present & ~zero).bit_count()
    if rest.nbytes != DIGEST_SIZE * stored:
        raise ManifestFormatError(
            "manifest digest table does not match its bitmap",
            digest_bytes=rest.nbytes,
            digests=stored,
        )
    return Layout(
        version=version, flags=flags, prefix=body[: prefix.size], header=header,
        image_size=image_size, chunk_size=chunk_size, count=count,
        zero=zero, present=present, done=done, digests=rest,
    )  # fmt: skip


def _checked_count(image_size: int, chunk_size: int, available: int, *, bitmaps: int) -> int:
    if not 0 < chunk_size <= 4 * 1024 * 1024:
        raise ManifestFormatError("manifest chunk size out of range", chunk_size=chunk_size)
    count = chunk_count(image_size, chunk_size)
    if count > MAX_CHUNKS or bitmaps * ((count + 7) // 8) > available:
        raise ManifestFormatError(
            "manifest declares more chunks than it holds or than a manifest may",
            chunks=count,
            bytes=available,
        )
    return count


def authenticate(data: Buffer, key: ManifestKey | None, *, allow_unauthenticated: bool) -> Layout:
    """``layout`` plus the MAC (format 2); format 1 only with ``allow_unauthenticated``."""
    parsed = layout(data)
    if parsed.version == LEGACY_VERSION:
        if not allow_unauthenticated:
            raise ManifestFormatError(
                "format-1 manifest carries no MAC: refused unless unauthenticated "
                "manifests are accepted explicitly"
            )
        return parsed
    if key is None:
        raise InvalidInputError("the pool's manifest key is needed to read this manifest")
    view = memoryview(data).cast("B")
    body, mac = view[: -2 * CHECKSUM_SIZE], view[-2 * CHECKSUM_SIZE : -CHECKSUM_SIZE]
    if blake3.blake3(body, key=key.mac).digest() != mac:
        raise ManifestFormatError(
            "manifest does not authenticate: wrong pool secret, or it was forged or altered"
        )
    return parsed


def header_of(parsed: Layout, key: ManifestKey | None) -> ManifestHeader:
    """The descriptive header, opened with ``key`` when sealed; checked against the layout."""
    raw = parsed.header
    if parsed.sealed:
        if key is None or key.seal is None:
            raise ManifestFormatError("this manifest is sealed: the pool is encrypted")
        try:
            nonce, sealed = bytes(raw[:NONCE_SIZE]), bytes(raw[NONCE_SIZE:])
            raw = memoryview(key.seal.aead.decrypt(nonce, sealed, bytes(parsed.prefix)))
        except InvalidTag as exc:
            raise ManifestFormatError("sealed manifest header does not authenticate") from exc
    header = _decode_header(raw)
    if (header.image_size, header.chunk_size) != (parsed.image_size, parsed.chunk_size):
        raise ManifestFormatError("manifest header disagrees with its layout")
    return header


def entries_of(parsed: Layout) -> list[ChunkDigest | None]:
    """One entry per chunk (after the count was checked against the body's length)."""
    entries: list[ChunkDigest | None] = [None] * parsed.count
    table, position = parsed.digests, 0
    for index, flag in enumerate(bits_of(parsed.data, parsed.count)):
        if flag:
            entries[index] = ChunkDigest(bytes(table[position : position + DIGEST_SIZE]))
            position += DIGEST_SIZE
    return entries


@dataclass(frozen=True, slots=True, kw_only=True)
class Summary:
    """What a reader without the manifest key learns of a manifest (the node's view)."""

    partial: bool
    vm: str | None
    """None when the header is sealed (an encrypted pool)."""
    disk: str | None
    logical_bytes: int
    digests: frozenset[ChunkDigest]


def summarize(data: Buffer) -> Summary:
    """Structure and references of ``data``; memory and time linear in its length."""
    parsed = layout(data)
    header = None if parsed.sealed else _decode_header(parsed.header)
    data_bits = parsed.data
    logical = data_bits.bit_count() * parsed.chunk_size
    if parsed.count and data_bits >> (parsed.count - 1) & 1:  # a short last chunk
        logical -= parsed.count * parsed.chunk_size - parsed.image_size
    table = parsed.digests
    return Summary(
        partial=parsed.partial,
        vm=None if header is None else header.vm_id,
        disk=None if header is None else header.disk_id,
        logical_bytes=logical,
        digests=frozenset(
            ChunkDigest(bytes(table[i : i + DIGEST_SIZE]))
            for i in range(0, table.nbytes, DIGEST_SIZE)
        ),
    )


def bits_of(bitmap: int, count: int) -> bytearray:
    """One byte (0 or 1) per chunk of a bitmap."""
    raw = bitmap.to_bytes((count + 7) // 8, "little")
    return bytearray((raw[index >> 3] >> (index & 7)) & 1 for index in range(count))


def _decode_header(raw: memoryview) -> ManifestHeader:
    try:
        return _header_decoder.decode(raw)
    except (msgspec.DecodeError, InvalidInputError) as exc:
        raise ManifestFormatError(f"manifest header is invalid: {exc}") from exc


def _pack_bits(flags: list[bool] | bytearray) -> bytes:
    bits = bytearray((len(flags) + 7) // 8)
    for index, flag in enumerate(flags):
        if flag:
            bits[index >> 3] |= 1 << (index & 7)
    return bytes(bits)
