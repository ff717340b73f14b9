"""Checkpoints: the partial manifests of runs in progress, each owned by the writer that made it.

Layout: ``checkpoints/<vm>/<disk>/<version>.ebm``, replaced freely by their owner and
deleted at commit. Every file starts with a small header naming its owner (the
identity of the node token that first wrote it), so another backup host cannot
replace or delete a run's resume state: only the owner, or a caller allowed to
override owners (the node's admin right), may. The body after the header is opaque
to the node. Checkpoints count in the pool's bytes (quota, totals) like manifests do:
:meth:`CheckpointStore.put` is told the space it needs through the ``admit`` callback,
before anything is written.

A file without the header (written before owners existed) has no owner: any writer
may take it over.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
from collections.abc import Awaitable, Callable
from concurrent.futures import Executor
from dataclasses import dataclass
from pathlib import Path
from typing import Final, ParamSpec, TypeVar

from edgeback_core.errors import InvalidInputError, PermissionDeniedError
from edgeback_pools.files import read_bytes, remove_stale_temp, write_atomic
from edgeback_pools.manifest_store import SUFFIX, ManifestName

CHECKPOINTS_DIR: Final = "checkpoints"
MAGIC: Final = b"EBCP1\0"
MAX_OWNER: Final = 255

P = ParamSpec("P")
R = TypeVar("R")


@dataclass(frozen=True, slots=True, kw_only=True)
class Writer:
    """Who writes a checkpoint: the owner recorded in it, and whether it may override others."""

    identity: str
    override: bool = False

    def __post_init__(self) -> None:
        if not 0 < len(self.identity.encode()) <= MAX_OWNER:
            raise InvalidInputError("a checkpoint writer needs an identity of 1-255 bytes")


LOCAL_WRITER: Final = Writer(identity="local", override=True)
"""A process that opened the pool directory itself (``LocalPool``): it owns the disk."""


def pack(owner: str, body: bytes) -> bytes:
    """A checkpoint file: header (magic, owner length, owner) then ``body``."""
    raw = owner.encode()
    return MAGIC + bytes([len(raw)]) + raw + body


def unpack(data: bytes) -> tuple[str | None, bytes]:
    """(owner, body) of a checkpoint file; owner None for a file without the header."""
    if not data.startswith(MAGIC) or len(data) <= len(MAGIC):
        return None, data
    size = data[len(MAGIC)]
    start = len(MAGIC) + 1
    return data[start : start + size].decode(errors="replace"), data[start + size :]


class CheckpointStore:
    def __init__(self, pool_dir: Path, executor: Executor) -> None:
        self._root = pool_dir / CHECKPOINTS_DIR
        self._executor = executor
        # one writer at a time: the owner check, the size accounting and the write of a
        # checkpoint must not interleave with another (checkpoints are seconds apart)
        self._lock = asyncio.Lock()
        self.stored_bytes = 0
        self.count = 0

    async def open(self) -> None:
        """Count the stored checkpoints; sweep crash leftovers."""
        self.count, self.stored_bytes = await self._run(_scan, self._root)

    async def put(
        self,
        name: ManifestName,
        body: bytes,
        writer: Writer,
        *,
        admit: Callable[[int], Awaitable[None]],
    ) -> None:
        """Store ``body`` under ``name`` for ``writer``; ``admit(extra bytes)`` may refuse it."""
        path = self._root / name.relative()
        data = pack(writer.identity, body)
        async with self._lock:
            owner, old_size = await self._run(_owner_and_size, path)
            _check_owner(owner, writer, name)
            await admit(max(0, len(data) - old_size))
            await self._run(write_atomic, path.parent, path.name, data)
            self.stored_bytes += len(data) - old_size
            self.count += old_size == 0

    async def get(self, name: ManifestName) -> bytes:
        return unpack(await self._run(read_bytes, self._root / name.relative()))[1]

    async def delete(self, name: ManifestName, writer: Writer) -> bool:
        """Remove the checkpoint; ``False`` if there was none."""
        path = self._root / name.relative()
        async with self._lock:
            owner, size = await self._run(_owner_and_size, path)
            if size == 0:
                return False
            _check_owner(owner, writer, name)
            removed = await self._run(_unlink, path)
            if removed:
                self.stored_bytes -= size
                self.count -= 1
            return removed

    async def _run(self, fn: Callable[P, R], /, *args: P.args, **kwargs: P.kwargs) -> R:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, functools.partial(fn, *args, **kwargs))


def _check_owner(owner: str | None, writer: Writer, name: ManifestName) -> None:
    if owner is None or owner == writer.identity or writer.override:
        return
    raise PermissionDeniedError(
        "this checkpoint belongs to another writer",
        vm=name.vm,
        disk=name.disk,
        version=name.version,
    )


def _owner_and_size(path: Path) -> tuple[str | None, int]:
    """*Blocking*: (owner, file size) of a stored checkpoint; (None, 0) if there is none."""
    try:
        with open(path, "rb", buffering=0) as fh:
            size = os.fstat(fh.fileno()).st_size
            head = fh.read(len(MAGIC) + 1 + MAX_OWNER)
    except FileNotFoundError:
        return None, 0
    return unpack(head)[0], size


def _unlink(path: Path) -> bool:
    try:
        path.unlink()
    except FileNotFoundError:
        return False
    return True


def _scan(root: Path) -> tuple[int, int]:
    """*Blocking*: (count, bytes) of the checkpoints under ``root``, temp files swept."""
    count = size = 0
    for vm_dir in _dirs(root):
        for disk_dir in _dirs(vm_dir):
            remove_stale_temp(disk_dir)
            for file in disk_dir.glob("*" + SUFFIX):
                count += 1
                size += file.stat().st_size
    return count, size


def _dirs(parent: Path) -> list[Path]:
    with contextlib.suppress(FileNotFoundError):
        return [Path(e.path) for e in os.scandir(parent) if e.is_dir()]
    return []
