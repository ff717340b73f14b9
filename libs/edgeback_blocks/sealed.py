"""Sealing chunk payloads of encrypted pools: AES-256-GCM with synthetic nonces.

A sealed record (format version 2, ``docs/formats.md``) carries after its 48-byte
header a 12-byte nonce, a 32-byte unkeyed BLAKE3 of header, nonce and ciphertext (the
*outer check*: the node, which holds no key, verifies it on upload and at rest), then
the ciphertext with its 16-byte tag; the header is the associated data.

The nonce is a keyed BLAKE3 of the header and the exact payload being sealed, so a chunk
sealed twice gives the same record (dedup in the pool works as before, named by the
keyed digest of its data), while two different payloads never share a nonce even when
hosts compress the same chunk differently: nonce reuse under GCM would leak the XOR of
the payloads and the authentication key.
"""

from __future__ import annotations

from typing import Final

import blake3
from cryptography.exceptions import InvalidTag

from edgeback_blocks.ids import ChunkDigest
from edgeback_blocks.keys import SealKey
from edgeback_core.errors import DigestMismatchError

NONCE_SIZE: Final = 12
OUTER_SIZE: Final = 32
TAG_SIZE: Final = 16
OVERHEAD: Final = NONCE_SIZE + OUTER_SIZE + TAG_SIZE
"""Bytes a sealed payload adds to the plaintext payload."""

Buffer = bytes | bytearray | memoryview


def seal(key: SealKey, header: bytes, payload: Buffer) -> tuple[bytes, bytes]:
    """(nonce + outer check, ciphertext + tag) of ``payload`` under ``header``."""
    hasher = blake3.blake3(header, key=key.nonce_key)
    hasher.update(payload)
    nonce = hasher.digest(length=NONCE_SIZE)
    sealed = key.aead.encrypt(nonce, bytes(payload), header)
    return nonce + _outer(header, nonce, sealed), sealed


def check_outer(header: Buffer, body: memoryview, chunk: ChunkDigest) -> None:
    """Refuse a sealed record whose bytes changed since they were sealed (no key needed)."""
    nonce, outer, sealed = _split(body)
    if _outer(header, nonce, sealed) != outer:
        raise DigestMismatchError(
            f"sealed chunk {chunk.hex()} is corrupt: its outer check does not match",
            chunk=chunk.hex(),
        )


def open_sealed(key: SealKey, header: Buffer, body: memoryview, chunk: ChunkDigest) -> bytes:
    """The plaintext payload; ``DigestMismatchError`` if it does not authenticate."""
    check_outer(header, body, chunk)
    nonce, _, sealed = _split(body)
    try:
        return key.aead.decrypt(bytes(nonce), bytes(sealed), bytes(header))
    except InvalidTag as exc:
        raise DigestMismatchError(
            f"sealed chunk {chunk.hex()} does not authenticate: wrong pool secret, "
            "or the record was forged",
            chunk=chunk.hex(),
        ) from exc


def _split(body: memoryview) -> tuple[memoryview, memoryview, memoryview]:
    return (
        body[:NONCE_SIZE],
        body[NONCE_SIZE : NONCE_SIZE + OUTER_SIZE],
        body[NONCE_SIZE + OUTER_SIZE :],
    )


def _outer(header: Buffer, nonce: Buffer, sealed: Buffer) -> bytes:
    hasher = blake3.blake3(header)
    hasher.update(nonce)
    hasher.update(sealed)
    return hasher.digest()
