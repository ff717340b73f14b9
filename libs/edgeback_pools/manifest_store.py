"""Committed manifests kept in the pool, so the pool restores without the catalog.

Layout: ``manifests/<vm>/<disk>/<version>.ebm`` (committed, immutable: storing a
different manifest under an existing name is a conflict, storing the same one again
is a no-op). Every file is written atomically. Checkpoints (partial manifests of runs
in progress) live beside them in :mod:`edgeback_pools.checkpoint_store`.

Committed manifests are decoded on the way in by the ``reader`` (:meth:`ManifestFacts.of`,
which also says how many logical bytes they reference, for the dedup ratio). The totals are
rebuilt by reading every manifest when the pool opens (fine for thousands; a
persistent summary is the next step beyond that).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import ParamSpec, TypeVar

import structlog

from edgeback_blocks.ids import ChunkDigest
from edgeback_blocks.manifest_codec import summarize
from edgeback_blocks.pool_wire import ManifestItem, QuarantinedItem
from edgeback_core.errors import ConflictError, EdgebackError, ManifestFormatError, QuarantinedError
from edgeback_pools.files import fsync_dir, read_bytes, remove_stale_temp, write_atomic
from edgeback_pools.names import SafeName

MANIFESTS_DIR = "manifests"
SUFFIX = ".ebm"

log = structlog.get_logger(__name__)

P = ParamSpec("P")
R = TypeVar("R")


@dataclass(frozen=True, slots=True, kw_only=True)
class ManifestFacts:
    """What the node needs to know of a manifest: the data it references."""

    vm: str | None
    """None when the manifest's header is sealed (an encrypted pool)."""
    disk: str | None
    logical_bytes: int
    digests: frozenset[ChunkDigest]

    @classmethod
    def of(cls, data: bytes) -> ManifestFacts:
        """Check a committed manifest's structure (``ManifestFormatError`` if it is not one).

        The node holds no manifest key: it checks the structure and the unkeyed checksum,
        in memory linear in the body's length; restores check the MAC.
        """
        summary = summarize(data)
        if summary.partial:
            raise ManifestFormatError("this is a partial manifest (a checkpoint), not a manifest")
        return cls(
            vm=summary.vm,
            disk=summary.disk,
            logical_bytes=summary.logical_bytes,
            digests=summary.digests,
        )


ManifestReader = Callable[[bytes], ManifestFacts]
"""Decodes a manifest (raising ``InvalidInputError``/``IntegrityError`` if it is not one)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ManifestName:
    vm: SafeName
    disk: SafeName
    version: SafeName

    def relative(self) -> Path:
        return Path(self.vm, self.disk, self.version + SUFFIX)


@dataclass(frozen=True, slots=True, kw_only=True)
class ManifestEntry:
    vm: str
    disk: str
    version: str
    size: int
    modified: datetime

    def as_item(self) -> ManifestItem:
        """The wire form the node answers with and the local pool returns."""
        return ManifestItem(
            vm=self.vm,
            disk=self.disk,
            version=self.version,
            size=self.size,
            modified=self.modified.isoformat(),
        )


class ManifestStore:
    def __init__(self, pool_dir: Path, reader: ManifestReader, executor: Executor) -> None:
        self._manifests = pool_dir / MANIFESTS_DIR
        self._reader = reader
        self._executor = executor
        self.logical_bytes = 0
        self.stored_bytes = 0
        self.count = 0
        self.quarantined: dict[str, QuarantinedItem] = {}

    async def open(self) -> None:
        """Scan the stored manifests to rebuild the totals; sweep crash leftovers.

        A manifest that fails its checks is quarantined, not fatal: it is left on disk
        as it is, logged, listed in :attr:`quarantined` and no longer served; the
        others are (the checks run again at the next start).
        """
        for entry in await self._run(_list, self._manifests, None, None, sweep=True):
            try:
                facts = await self._run(self._read_facts, entry)
            except EdgebackError as exc:
                self._quarantine(entry, exc)
                continue
            self._count_in(facts, entry.size)

    def _quarantine(self, entry: ManifestEntry, error: EdgebackError) -> None:
        item = QuarantinedItem(
            what="manifest",
            name=f"{entry.vm}/{entry.disk}/{entry.version}",
            code=error.code,
            message=error.message,
        )
        self.quarantined[item.name] = item
        log.error("manifest.quarantined", manifest=item.name, code=item.code, error=item.message)

    async def put(
        self, name: ManifestName, data: bytes, *, check: Callable[[ManifestFacts], None]
    ) -> bool:
        """Store a committed manifest; ``False`` if the very same one was already there.

        ``check`` sees the decoded facts first (the pool refuses a manifest whose chunks
        it does not hold).
        """
        facts = await self._run(self._reader, data)
        check(facts)
        path = self._manifests / name.relative()
        created = await self._run(write_atomic, path.parent, path.name, data, replace=False)
        if created:
            self._count_in(facts, len(data))
            return True
        if await self._run(read_bytes, path) != data:
            raise ConflictError(
                "a different manifest is already stored under this name",
                vm=name.vm,
                disk=name.disk,
                version=name.version,
            )
        return False

    async def get(self, name: ManifestName) -> bytes:
        bad = self.quarantined.get(f"{name.vm}/{name.disk}/{name.version}")
        if bad is not None:
            raise QuarantinedError(
                "this manifest failed its checks and is quarantined",
                manifest=bad.name,
                reason_code=bad.code,
                reason=bad.message,
            )
        return await self._run(read_bytes, self._manifests / name.relative())

    async def delete(self, name: ManifestName) -> int:
        """Remove a committed (or quarantined) manifest; its size. ``NotFoundError`` if absent.

        Only retention and operators call this (the node's admin right): chunks it
        referenced stay until garbage collection finds them unreferenced.
        """
        label = f"{name.vm}/{name.disk}/{name.version}"
        path = self._manifests / name.relative()
        data = await self._run(read_bytes, path)
        facts = None if label in self.quarantined else await self._run(self._reader, data)
        await self._run(_unlink_synced, path)
        if facts is None:
            del self.quarantined[label]
        else:
            self.logical_bytes -= facts.logical_bytes
            self.stored_bytes -= len(data)
            self.count -= 1
        return len(data)

    async def list(
        self, vm: SafeName | None = None, disk: SafeName | None = None
    ) -> list[ManifestEntry]:
        entries = await self._run(_list, self._manifests, vm, disk, sweep=False)
        return [e for e in entries if f"{e.vm}/{e.disk}/{e.version}" not in self.quarantined]

    def _read_facts(self, entry: ManifestEntry) -> ManifestFacts:
        path = self._manifests / entry.vm / entry.disk / (entry.version + SUFFIX)
        return self._reader(read_bytes(path))

    def _count_in(self, facts: ManifestFacts, size: int) -> None:
        self.logical_bytes += facts.logical_bytes
        self.stored_bytes += size
        self.count += 1

    async def _run(self, fn: Callable[P, R], /, *args: P.args, **kwargs: P.kwargs) -> R:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, functools.partial(fn, *args, **kwargs))


def _list(root: Path, vm: str | None, disk: str | None, *, sweep: bool) -> list[ManifestEntry]:
    entries: list[ManifestEntry] = []
    for vm_dir in _subdirs(root, vm):
        for disk_dir in _subdirs(vm_dir, disk):
            if sweep:  # only before serving: later, temp files belong to writes in flight
                remove_stale_temp(disk_dir)
            for file in sorted(disk_dir.glob("*" + SUFFIX)):
                st = file.stat()
                entries.append(
                    ManifestEntry(
                        vm=vm_dir.name,
                        disk=disk_dir.name,
                        version=file.name.removesuffix(SUFFIX),
                        size=st.st_size,
                        modified=datetime.fromtimestamp(st.st_mtime, UTC),
                    )
                )
    return entries


def _unlink_synced(path: Path) -> None:
    path.unlink()
    fsync_dir(path.parent)


def _subdirs(parent: Path, only: str | None) -> list[Path]:
    if only is not None:
        return [parent / only] if (parent / only).is_dir() else []
    with contextlib.suppress(FileNotFoundError):
        return sorted(
            Path(e.path) for e in os.scandir(parent) if e.is_dir() and not e.name.startswith(".")
        )
    return []
