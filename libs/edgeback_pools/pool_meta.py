"""A pool's identity on disk: ``pool.json`` (id, kind, created, key id, quota) and ``pool.key``.

A pool is a directory ``<data_dir>/<name>/``. Its 32-byte chunk key (``pool.key``,
mode 0600) is what chunk digests are keyed with; the node needs it to verify uploads.
``pool.json`` is enough, with the key, to re-import the pool without the catalog.
Creation is atomic: the directory is prepared under a hidden name and renamed into
place, so a half-created pool is never seen.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import uuid
from datetime import UTC, datetime
from pathlib import Path

import blake3
import msgspec

from edgeback_blocks.pool_wire import PoolKind
from edgeback_core.errors import ConfigError, ConflictError, IntegrityError, InvalidInputError
from edgeback_pools.files import fsync_dir, write_atomic
from edgeback_pools.names import safe_name

POOL_FILE = "pool.json"
KEY_FILE = "pool.key"
KEY_SIZE = 32
FORMAT_VERSION = 1


class PoolInfo(msgspec.Struct, frozen=True, kw_only=True):
    """The content of ``pool.json``."""

    id: str
    name: str
    kind: PoolKind
    created: datetime
    key_id: str
    quota_bytes: int | None = None
    format_version: int = FORMAT_VERSION
    encrypted: bool = False
    """Chunks and manifests are sealed by the backup hosts (``docs/encryption.md``): the
    node checks their structure and outer checksums only."""


_decoder = msgspec.json.Decoder(PoolInfo)


def key_id(key: bytes) -> str:
    """A public fingerprint of a pool key (never the key itself)."""
    return blake3.blake3(b"edgeback pool key id\0" + key).hexdigest()[:16]


def create_pool(
    data_dir: Path,
    name: str,
    kind: PoolKind | str,
    *,
    quota_bytes: int | None = None,
    now: datetime | None = None,
    encrypted: bool = False,
) -> PoolInfo:
    """Create pool ``name`` under ``data_dir`` with a fresh key; usable offline."""
    safe_name(name, what="pool")
    try:
        kind = PoolKind(kind)
    except ValueError as exc:
        raise InvalidInputError(f"unknown pool kind {kind!r}", kind=str(kind)) from exc
    if quota_bytes is not None and quota_bytes <= 0:
        raise InvalidInputError("quota_bytes must be positive", quota_bytes=quota_bytes)
    final = data_dir / name
    if final.exists():
        raise ConflictError(f"pool {name!r} already exists", pool=name)
    key = secrets.token_bytes(KEY_SIZE)
    info = PoolInfo(
        id=uuid.uuid4().hex,
        name=name,
        kind=kind,
        created=now or datetime.now(UTC),
        key_id=key_id(key),
        quota_bytes=quota_bytes,
        encrypted=encrypted,
    )
    _install(data_dir, final, info, key)
    return info


def _install(data_dir: Path, final: Path, info: PoolInfo, key: bytes) -> None:
    data_dir.mkdir(parents=True, exist_ok=True)
    staging = data_dir / f".{final.name}.{secrets.token_hex(4)}.creating"
    staging.mkdir(mode=0o750)
    try:
        _write_key(staging / KEY_FILE, key)
        write_atomic(staging, POOL_FILE, msgspec.json.format(msgspec.json.encode(info)))
        try:
            # rename(2) onto an existing non-empty directory fails: no pool is overwritten
            staging.rename(final)
        except OSError as exc:
            raise ConflictError(f"pool {final.name!r} already exists", pool=final.name) from exc
        fsync_dir(data_dir)
    finally:
        with contextlib.suppress(FileNotFoundError):
            shutil.rmtree(staging)


def _write_key(path: Path, key: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    try:
        os.write(fd, key)
        os.fsync(fd)
    finally:
        os.close(fd)


def read_pool(directory: Path) -> tuple[PoolInfo, bytes]:
    """``pool.json`` and the key of the pool in ``directory``; checks they belong together."""
    try:
        info = _decoder.decode((directory / POOL_FILE).read_bytes())
        key = (directory / KEY_FILE).read_bytes()
    except (OSError, msgspec.DecodeError) as exc:
        raise ConfigError(f"unreadable pool in {directory}: {exc}", pool=directory.name) from exc
    if len(key) != KEY_SIZE or key_id(key) != info.key_id:
        raise IntegrityError(
            "pool.key does not match pool.json", pool=directory.name, key_id=info.key_id
        )
    return info, key
