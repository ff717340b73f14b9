"""A pool's client secret and the keys derived from it, held by backup hosts only.

Every pool has a 32-byte *secret* that its backup hosts keep in a key file (mode 0600)
and that the storage node never receives. HKDF-SHA256 derives from it, each with its
own label, the manifest MAC key (every pool: a node or token holder without the secret
cannot forge a manifest a restore accepts) and, for an encrypted pool, the chunk digest
key, the chunk sealing key and the manifest sealing key. A plain pool keeps the node's
``pool.key`` as its digest key, so the node can still verify what it stores.
Key management: ``docs/encryption.md``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from edgeback_blocks.ids import DIGEST_SIZE, PoolKey
from edgeback_core.errors import InvalidInputError

SECRET_SIZE: Final = 32
_LABEL: Final = b"edgeback pool secret v1: "


def derive(secret: bytes, purpose: str) -> bytes:
    """The 32-byte key for ``purpose`` (HKDF-SHA256, no salt: the secret is random)."""
    if len(secret) != SECRET_SIZE:
        raise InvalidInputError("a pool secret is 32 bytes", length=len(secret))
    hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_LABEL + purpose.encode())
    return hkdf.derive(secret)


@dataclass(frozen=True, slots=True)
class SealKey:
    """An AES-256-GCM key and the key of its synthetic nonces (see ``sealed.py``)."""

    aead: AESGCM
    nonce_key: bytes

    @classmethod
    def derive(cls, secret: bytes, purpose: str) -> SealKey:
        return cls(AESGCM(derive(secret, purpose)), derive(secret, purpose + " nonce"))


@dataclass(frozen=True, slots=True)
class ManifestKey:
    """Authenticates manifests (keyed BLAKE3 MAC) and, in encrypted pools, seals their header."""

    mac: bytes
    seal: SealKey | None = None


@dataclass(frozen=True, slots=True)
class ClientKeys:
    """What a backup host needs to write and read one pool."""

    digest: PoolKey
    """Keys chunk digests: the node's ``pool.key`` in a plain pool, derived when encrypted."""
    manifest: ManifestKey
    chunk_seal: SealKey | None
    """None in a plain pool: chunks are stored compressed, not encrypted."""

    @property
    def encrypted(self) -> bool:
        return self.chunk_seal is not None

    @classmethod
    def plain(cls, secret: bytes, pool_key: PoolKey) -> ClientKeys:
        return cls(
            digest=pool_key, manifest=ManifestKey(derive(secret, "manifest mac")), chunk_seal=None
        )

    @classmethod
    def encrypted_pool(cls, secret: bytes) -> ClientKeys:
        return cls(
            digest=PoolKey(derive(secret, "chunk digest")),
            manifest=ManifestKey(
                derive(secret, "manifest mac"), SealKey.derive(secret, "manifest seal")
            ),
            chunk_seal=SealKey.derive(secret, "chunk seal"),
        )


def write_secret_file(path: Path) -> None:
    """A new random secret in ``path`` (mode 0600); refuses to overwrite a file."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    except FileExistsError as exc:
        raise InvalidInputError(f"{path} exists: a secret is never overwritten") from exc
    except OSError as exc:  # no such folder, not allowed, a read-only filesystem
        raise InvalidInputError(f"cannot write the secret key file {path}: {exc.strerror}") from exc
    try:
        os.write(fd, os.urandom(SECRET_SIZE))
        os.fsync(fd)
    finally:
        os.close(fd)


def read_secret_file(path: Path) -> bytes:
    """The secret in ``path``; refused when others may read the file (like ssh keys)."""
    try:
        mode = path.stat().st_mode
        raw = path.read_bytes()
    except OSError as exc:
        raise InvalidInputError(f"cannot read the secret key file {path}: {exc.strerror}") from exc
    if mode & 0o077:
        raise InvalidInputError(f"{path} is readable by others: chmod 600 it first")
    if len(raw) != DIGEST_SIZE:
        raise InvalidInputError(f"{path} holds no 32-byte secret")
    return raw
