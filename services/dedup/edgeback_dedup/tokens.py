"""Bearer tokens of the data API: who may do what on which pools. Pure, no I/O.

Each token is bound to an identity (one per backup host, say), a set of pools (or
``*`` for all) and rights: ``read`` (status, listings, chunk and manifest downloads,
``chunks/missing``), ``write`` (chunk, manifest and checkpoint uploads, checkpoint
deletion) and ``admin`` (everything, creating pools, overriding checkpoint owners).
The node keeps only SHA-256 hashes of the tokens (the tokens file holds no secret a
reader could replay): tokens are high-entropy random strings (:func:`new_token`), so
an unsalted fast hash is enough, as for API keys. A presented token shorter than
:data:`MIN_TOKEN_LENGTH` is refused before any lookup.

Tokens file (JSON)::

    {"tokens": [{"id": "host-a", "sha256": "<64 hex>", "pools": ["site-a"],
                 "rights": ["read", "write"]}]}
"""

from __future__ import annotations

import enum
import hashlib
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

import msgspec

from edgeback_core.errors import ConfigError, InvalidInputError
from edgeback_pools.names import safe_name

MIN_TOKEN_LENGTH: Final = 20
"""Shortest token accepted anywhere (settings and requests)."""
ALL_POOLS: Final = "*"


class Right(enum.StrEnum):
    READ = "read"
    WRITE = "write"
    ADMIN = "admin"


@dataclass(frozen=True, slots=True, kw_only=True)
class Grant:
    """What one token may do: its identity, pools and rights."""

    identity: str
    pools: frozenset[str]
    rights: frozenset[Right]

    def allows(self, pool: str, right: Right) -> bool:
        """True if this token has ``right`` (or ``admin``) on ``pool``."""
        covered = ALL_POOLS in self.pools or pool in self.pools
        return covered and (right in self.rights or Right.ADMIN in self.rights)

    @property
    def admin(self) -> bool:
        return Right.ADMIN in self.rights


class TokenEntry(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """One entry of the tokens file."""

    id: str
    sha256: str
    pools: list[str]
    rights: list[Right]


class TokensFile(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    tokens: list[TokenEntry]


_file_decoder: Final = msgspec.json.Decoder(TokensFile)


def hash_token(token: str | bytes) -> bytes:
    raw = token.encode() if isinstance(token, str) else token
    return hashlib.sha256(raw).digest()


def new_token() -> str:
    """A fresh token: 32 random bytes, URL-safe base64 (43 characters)."""
    return secrets.token_urlsafe(32)


class TokenTable:
    """The grants a node knows, looked up by the hash of a presented token."""

    def __init__(self, grants: Iterable[tuple[bytes, Grant]]) -> None:
        self._by_hash: dict[bytes, Grant] = {}
        for digest, grant in grants:
            if digest in self._by_hash:
                raise ConfigError("two tokens with the same hash", identity=grant.identity)
            self._by_hash[digest] = grant

    def authenticate(self, presented: bytes) -> Grant | None:
        """The grant of ``presented``, None if it is unknown or too short."""
        if len(presented) < MIN_TOKEN_LENGTH:
            return None
        return self._by_hash.get(hashlib.sha256(presented).digest())

    def __len__(self) -> int:
        return len(self._by_hash)


def parse_tokens_file(data: bytes) -> list[tuple[bytes, Grant]]:
    """The (hash, grant) pairs of a tokens file; :class:`ConfigError` naming what is wrong."""
    try:
        parsed = _file_decoder.decode(data)
    except msgspec.DecodeError as exc:
        raise ConfigError(f"invalid tokens file: {exc}") from exc
    pairs, identities = [], set()
    for entry in parsed.tokens:
        if entry.id in identities:
            raise ConfigError(f"tokens file: identity {entry.id!r} twice", identity=entry.id)
        identities.add(entry.id)
        pairs.append((_entry_hash(entry), _entry_grant(entry)))
    return pairs


def _entry_hash(entry: TokenEntry) -> bytes:
    try:
        digest = bytes.fromhex(entry.sha256)
    except ValueError:
        digest = b""
    if len(digest) != hashlib.sha256().digest_size:
        raise ConfigError(f"tokens file: {entry.id!r} has no valid sha256", identity=entry.id)
    return digest


def _entry_grant(entry: TokenEntry) -> Grant:
    if not entry.pools or not entry.rights:
        raise ConfigError(f"tokens file: {entry.id!r} grants nothing", identity=entry.id)
    try:
        safe_name(entry.id, what="token id")
        for pool in entry.pools:
            if pool != ALL_POOLS:
                safe_name(pool, what="pool")
    except InvalidInputError as exc:
        raise ConfigError(f"tokens file: {entry.id!r}: {exc.message}", identity=entry.id) from exc
    return Grant(identity=entry.id, pools=frozenset(entry.pools), rights=frozenset(entry.rights))


def entry_for(
    identity: str, token: str, pools: Iterable[str], rights: Iterable[Right]
) -> TokenEntry:
    """The tokens-file entry of ``token`` (only its hash is kept)."""
    return TokenEntry(
        id=identity, sha256=hash_token(token).hex(), pools=list(pools), rights=list(rights)
    )
