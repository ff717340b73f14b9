"""Capability URLs of disk images: who may read which disk version, until when.

librbd's HTTP stream sends no credentials, so a disk image is reached through an
unguessable URL instead of a bearer token: ``/v1/images/<id>``, where ``id`` is 32
random bytes (URL-safe base64). A token with ``write`` on the pool creates one for one
disk version with an expiry; the node keeps only the id's SHA-256 (as for tokens) and a
public ``handle`` (the first 16 hex digits of that hash) that names it in listings, in
the audit log and in ``DELETE`` (revocation), so neither ever shows the id itself.

Records persist in ``<data_dir>/.capabilities.json`` (written atomically) so an image
being copied by a live migration survives a node restart. Revoked and expired records
are kept :data:`TOMBSTONE_S` past their expiry, so their URL answers 410 with the reason
instead of 404, then dropped. Pure but for :func:`load` and :meth:`CapabilityStore.encode`
(whose bytes the caller writes off the event loop).
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Final

import msgspec

from edgeback_core.errors import (
    CapabilityExpiredError,
    CapabilityNotFoundError,
    CapabilityRevokedError,
    ConfigError,
)

CAPABILITIES_FILE: Final = ".capabilities.json"
ID_BYTES: Final = 32
"""256 random bits: far beyond guessing (the brief asks for at least 128)."""
HANDLE_HEX: Final = 16
TOMBSTONE_S: Final = 24 * 3600

Clock = Callable[[], datetime]


class Capability(msgspec.Struct, frozen=True, kw_only=True):
    """One capability as stored (never its id)."""

    handle: str
    sha256: str
    pool: str
    vm: str
    disk: str
    version: str
    checksum: str
    """Hex of the manifest's trailing checksum when the capability was made: the node
    serves exactly that manifest (the one whose MAC was checked), or nothing."""
    size: int
    created: datetime
    expires: datetime
    created_by: str
    mac_checked: bool
    revoked: datetime | None = None


class _File(msgspec.Struct, frozen=True, kw_only=True):
    capabilities: list[Capability]


_decoder: Final = msgspec.json.Decoder(_File)


def _hash(presented: str) -> bytes:
    return hashlib.sha256(presented.encode()).digest()


def load(data_dir: Path) -> list[Capability]:
    """*Blocking*: the stored capabilities (none if the file does not exist)."""
    path = data_dir / CAPABILITIES_FILE
    try:
        return _decoder.decode(path.read_bytes()).capabilities
    except FileNotFoundError:
        return []
    except (OSError, msgspec.DecodeError) as exc:
        raise ConfigError(f"unreadable capabilities file {path}: {exc}") from exc


class CapabilityStore:
    """The node's capabilities, by the hash of their id; mutations return the new state."""

    def __init__(self, records: Iterable[Capability], clock: Clock) -> None:
        self._clock = clock
        self._by_hash = {bytes.fromhex(r.sha256): r for r in records}

    def issue(
        self, *, pool: str, vm: str, disk: str, version: str, checksum: bytes, size: int,
        ttl_s: float, created_by: str, mac_checked: bool,
    ) -> tuple[str, Capability]:  # fmt: skip
        """A new capability: its id (shown once, never stored) and its record."""
        presented = secrets.token_urlsafe(ID_BYTES)
        digest = _hash(presented)
        now = self._clock()
        record = Capability(
            handle=digest.hex()[:HANDLE_HEX], sha256=digest.hex(), pool=pool, vm=vm,
            disk=disk, version=version, checksum=checksum.hex(), size=size, created=now,
            expires=now + timedelta(seconds=ttl_s), created_by=created_by,
            mac_checked=mac_checked,
        )  # fmt: skip
        self._purge(now)
        self._by_hash[digest] = record
        return presented, record

    def lookup(self, presented: str) -> Capability:
        """The live capability of ``presented``: 404 unknown, 410 expired or revoked."""
        # looked up by the id's hash: lookup timing tells nothing about stored ids
        record = self._by_hash.get(_hash(presented))
        if record is None:
            raise CapabilityNotFoundError("no such image capability")
        if record.revoked is not None:
            raise CapabilityRevokedError("this image capability was revoked", handle=record.handle)
        if self._clock() >= record.expires:
            raise CapabilityExpiredError(
                "this image capability has expired",
                handle=record.handle,
                expired=record.expires.isoformat(),
            )
        return record

    def revoke(self, pool: str, handle: str) -> Capability:
        """Revoke the capability ``handle`` of ``pool`` (again: no change)."""
        for digest, record in self._by_hash.items():
            if record.pool == pool and record.handle == handle:
                if record.revoked is not None:
                    return record
                revoked = msgspec.structs.replace(record, revoked=self._clock())
                self._by_hash[digest] = revoked
                return revoked
        raise CapabilityNotFoundError("no such image capability", pool=pool, handle=handle)

    def of_pool(self, pool: str) -> list[Capability]:
        return sorted(
            (r for r in self._by_hash.values() if r.pool == pool), key=lambda r: r.created
        )

    def encode(self) -> bytes:
        """The file's content for the current state."""
        return msgspec.json.encode(_File(capabilities=list(self._by_hash.values())))

    def _purge(self, now: datetime) -> None:
        horizon = now - timedelta(seconds=TOMBSTONE_S)
        for digest in [d for d, r in self._by_hash.items() if r.expires < horizon]:
            del self._by_hash[digest]


def utc_now() -> datetime:
    return datetime.now(UTC)
