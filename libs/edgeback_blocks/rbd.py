"""The Ceph RBD adapter: the only module that imports ``rados`` and ``rbd``.

librados/librbd calls block (they release the GIL), so every call runs on a dedicated
thread pool owned by the cluster connection, behind a semaphore of the same size: the
event loop never blocks and callers queue (cancellably) instead of piling work into the
executor. Thread pool versus librbd aio completions was measured on the dev cluster (see
docs/rbd.md): the same MB/s, so the simpler, uniform thread pool won. Driver exceptions
are translated into edgeback errors here, so no caller ever sees ``rados.*``/``rbd.*``.
Resources nest as cluster → pool (ioctx) → image and close in reverse order.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import enum
import json
import math
import re
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import rados
import rbd

from edgeback_blocks.extents import Extent
from edgeback_core.errors import (
    CephConfUnreadableError,
    ConflictError,
    DeadlineExceededError,
    EdgebackError,
    InvalidInputError,
    LockBusyError,
    NotFoundError,
    PermissionDeniedError,
    RbdImageExistsError,
    RbdImageNotFoundError,
    RbdIOError,
    RbdNoSpaceError,
    RbdPoolNotFoundError,
    RbdSnapshotExistsError,
    RbdSnapshotNotFoundError,
    ShortReadError,
    UnavailableError,
)

T = TypeVar("T")

_NOT_FOUND = (rbd.ImageNotFound, rados.ObjectNotFound)
_EXISTS = (rbd.ImageExists, rados.ObjectExists)
_CLASSES: tuple[tuple[tuple[type[Exception], ...], type[EdgebackError]], ...] = (
    ((rbd.ImageBusy, rados.ObjectBusy), LockBusyError),
    ((rbd.ImageHasSnapshots,), ConflictError),
    ((rbd.PermissionError, rados.PermissionError, rados.PermissionDeniedError),
     PermissionDeniedError),
    ((rbd.InvalidArgument, rbd.ArgumentOutOfRange, rbd.ReadOnlyImage,
      rbd.FunctionNotSupported, rbd.OperationNotSupported, rados.InvalidArgumentError),
     InvalidInputError),
    ((rbd.Timeout, rados.TimedOut), DeadlineExceededError),
    ((rbd.ConnectionShutdown, rados.ConnectionShutdown, rados.NotConnected), UnavailableError),
    ((rbd.NoSpace, rbd.DiskQuotaExceeded, rados.NoSpace), RbdNoSpaceError),
)  # fmt: skip


@dataclass(frozen=True, slots=True, kw_only=True)
class _Target:
    """What an operation is about: chooses the not-found/exists codes and error details."""

    not_found: type[NotFoundError] = RbdImageNotFoundError
    exists: type[ConflictError] = RbdImageExistsError
    details: tuple[tuple[str, object], ...] = ()


def _translate(exc: Exception, target: _Target, op: str) -> EdgebackError:
    details = dict(target.details, op=op, driver_error=type(exc).__name__)
    cls: type[EdgebackError] = RbdIOError
    if isinstance(exc, _NOT_FOUND):
        cls = target.not_found
    elif isinstance(exc, _EXISTS):
        cls = target.exists
    else:
        for driver_types, ours in _CLASSES:
            if isinstance(exc, driver_types):
                cls = ours
                break
    return cls(f"{op} failed: {exc}", **details)


@dataclass(frozen=True, slots=True, kw_only=True)
class ClusterStats:
    total_bytes: int
    used_bytes: int
    avail_bytes: int
    objects: int


@dataclass(frozen=True, slots=True, kw_only=True)
class DaemonVersion:
    """One version string the cluster's daemons of a type run (``ceph versions``)."""

    daemon: str
    """``mon``, ``mgr``, ``osd``, ..."""
    major: int
    """16 = Pacific; 0 when the string could not be read."""
    text: str


_VERSION = re.compile(r"ceph version (\d+)\.")


def daemon_versions(raw: dict[str, Any]) -> list[DaemonVersion]:
    """The versions of ``ceph versions`` JSON, per daemon type (``overall`` left out)."""
    found: list[DaemonVersion] = []
    for daemon, versions in sorted(raw.items()):
        if daemon == "overall" or not isinstance(versions, dict):
            continue
        for text in sorted(versions):
            match = _VERSION.match(text)
            found.append(
                DaemonVersion(daemon=daemon, major=int(match[1]) if match else 0, text=text)
            )
    return found


@dataclass(frozen=True, slots=True, kw_only=True)
class PoolStats:
    stored_bytes: int
    objects: int


@dataclass(frozen=True, slots=True, kw_only=True)
class PoolSpace:
    """What ``ceph df`` says of one pool: ``free_bytes`` is its ``max_avail`` (what can
    still be written, replication and full ratios counted), ``total_bytes`` adds what
    it stores."""

    free_bytes: int
    total_bytes: int


@dataclass(frozen=True, slots=True, kw_only=True)
class SnapInfo:
    id: int
    name: str
    size: int


class _Offload:
    """Runs blocking driver calls on the cluster's threads, bounded, translating errors."""

    def __init__(self, threads: int) -> None:
        self.executor = concurrent.futures.ThreadPoolExecutor(threads, "rbd-io")
        self._slots = asyncio.Semaphore(threads)

    async def run(
        self,
        op: str,
        target: _Target,
        fn: Callable[..., T],
        *args: Any,
        pending: set[concurrent.futures.Future[Any]] | None = None,
    ) -> T:
        async with self._slots:
            fut = self.executor.submit(fn, *args)
            if pending is not None:
                pending.add(fut)
                fut.add_done_callback(pending.discard)
            try:
                return await asyncio.wrap_future(fut)
            except (rados.Error, rbd.Error) as exc:
                raise _translate(exc, target, op) from exc

    async def run_long(self, op: str, target: _Target, fn: Callable[..., T], *args: Any) -> T:
        """Like :meth:`run`, on a thread of its own: for calls that last minutes (a
        migration's execute), which must not hold one of the pool's slots meanwhile."""
        try:
            return await asyncio.to_thread(fn, *args)
        except (rados.Error, rbd.Error) as exc:
            raise _translate(exc, target, op) from exc


class MigrationState(enum.IntEnum):
    """librbd's ``RBD_IMAGE_MIGRATION_STATE_*``."""

    UNKNOWN = rbd.RBD_IMAGE_MIGRATION_STATE_UNKNOWN
    ERROR = rbd.RBD_IMAGE_MIGRATION_STATE_ERROR
    PREPARING = rbd.RBD_IMAGE_MIGRATION_STATE_PREPARING
    PREPARED = rbd.RBD_IMAGE_MIGRATION_STATE_PREPARED
    EXECUTING = rbd.RBD_IMAGE_MIGRATION_STATE_EXECUTING
    EXECUTED = rbd.RBD_IMAGE_MIGRATION_STATE_EXECUTED
    ABORTING = rbd.RBD_IMAGE_MIGRATION_STATE_ABORTING


@dataclass(frozen=True, slots=True, kw_only=True)
class MigrationStatus:
    state: MigrationState
    description: str
    dest_image: str
    source_image: str
    """Empty for an import (the source is a stream, not an image)."""


MigrationProgress = Callable[[int, int], None]
"""Called on the event loop with (bytes done, bytes in all) while a migration runs."""


class RbdCluster:
    """A connected librados handle; open pools from it."""

    def __init__(self, cluster: rados.Rados, offload: _Offload) -> None:
        self._cluster = cluster
        self._offload = offload

    @classmethod
    @contextlib.asynccontextmanager
    async def connect(
        cls,
        conffile: str,
        client_id: str = "admin",
        *,
        timeout: float = 10.0,  # noqa: ASYNC109 - librados' own mount timeout
        op_timeout: float = 120.0,
        io_threads: int = 8,
    ) -> AsyncIterator[RbdCluster]:
        """Connect with an explicit ceph.conf (never DNS); ``timeout`` bounds the mount."""
        offload = _Offload(io_threads)
        # Options go in at construction so they apply to the connect itself; librados
        # accepts whole seconds only.
        conf = {
            "client_mount_timeout": _seconds(timeout),
            "rados_mon_op_timeout": _seconds(op_timeout),
            "rados_osd_op_timeout": _seconds(op_timeout),
        }
        target = _Target(details=(("conffile", conffile), ("client_id", client_id)))
        try:
            cluster = await offload.run(
                "rados.connect", target, _connect, conffile, client_id, conf, timeout
            )
            try:
                yield cls(cluster, offload)
            finally:
                await asyncio.wrap_future(offload.executor.submit(cluster.shutdown))
        finally:
            await asyncio.to_thread(offload.executor.shutdown)

    async def fence_self(self, expire_s: float = 300.0) -> None:
        """Blocklist this connection's own address for ``expire_s``: the OSDs drop its
        watches and librbd may break its locks at once. For a connection whose librbd
        state is left behind (a failed migration execute at times keeps its image open);
        close it right after. Needs the mon cap to blocklist (``profile rbd`` has it)."""
        addrs = await self._offload.run("rados.get_addrs", _Target(), self._cluster.get_addrs)
        await self._offload.run(
            "rados.blocklist_add", _Target(), self._cluster.blocklist_add,
            _client_addr(addrs), math.ceil(expire_s),
        )  # fmt: skip

    async def pool_exists(self, name: str) -> bool:
        return await self._offload.run(
            "rados.pool_exists", _Target(), self._cluster.pool_exists, name
        )

    async def cluster_stats(self) -> ClusterStats:
        raw = await self._offload.run(
            "rados.cluster_stats", _Target(), self._cluster.get_cluster_stats
        )
        return ClusterStats(
            total_bytes=raw["kb"] * 1024,
            used_bytes=raw["kb_used"] * 1024,
            avail_bytes=raw["kb_avail"] * 1024,
            objects=raw["num_objects"],
        )

    async def versions(self) -> list[DaemonVersion]:
        """What every daemon type of the cluster runs (``ceph versions``)."""
        raw = await self._offload.run(
            "rados.versions", _Target(), _mon_json, self._cluster, "versions"
        )
        return daemon_versions(raw)

    async def pool_space(self, name: str) -> PoolSpace:
        """Free and total space of pool ``name`` (``ceph df``)."""
        target = _Target(details=(("pool", name),))
        raw = await self._offload.run("rados.df", target, _mon_json, self._cluster, "df")
        pools = raw["pools"]
        for pool in pools:
            if pool["name"] == name:
                stats = pool["stats"]
                return PoolSpace(
                    free_bytes=stats["max_avail"], total_bytes=stats["stored"] + stats["max_avail"]
                )
        raise RbdPoolNotFoundError(f"Ceph pool {name} does not exist", pool=name)

    @contextlib.asynccontextmanager
    async def open_pool(self, name: str) -> AsyncIterator[RbdPool]:
        target = _Target(not_found=RbdPoolNotFoundError, details=(("pool", name),))
        ioctx = await self._offload.run("rados.open_ioctx", target, self._cluster.open_ioctx, name)
        try:
            yield RbdPool(ioctx, name, self._offload)
        finally:
            await self._offload.run("rados.close_ioctx", target, ioctx.close)


def _client_addr(addrs: str) -> str:
    """``127.0.0.1:0/123`` out of ``[v2:127.0.0.1:0/123,v1:...]`` or a bare address."""
    first = addrs.strip("[]").split(",")[0]
    return first.split(":", 1)[1] if first.startswith(("v1:", "v2:", "any:")) else first


def _seconds(value: float) -> str:
    return str(max(1, math.ceil(value)))


def _mon_json(cluster: rados.Rados, prefix: str) -> dict[str, Any]:
    command = json.dumps({"prefix": prefix, "format": "json"})
    ret, out, err = cluster.mon_command(command, b"")
    if ret != 0:
        raise rados.Error(f"ceph {prefix} failed ({ret}): {err}")
    result: dict[str, Any] = json.loads(out)
    return result


def _connect(conffile: str, client_id: str, conf: dict[str, str], timeout: float) -> rados.Rados:
    try:
        cluster = rados.Rados(conffile=conffile, rados_id=client_id, conf=conf)
    except rados.Error as exc:  # reads the conf: missing (ObjectNotFound, not an image) or denied
        raise CephConfUnreadableError(
            f"cannot read ceph.conf {conffile}: {exc}", conffile=conffile
        ) from exc
    try:
        cluster.connect(timeout=int(_seconds(timeout)))
    except BaseException:
        cluster.shutdown()
        raise
    return cluster


class RbdPool:
    """An open pool (ioctx): image lifecycle helpers and ``open_image``."""

    def __init__(self, ioctx: rados.Ioctx, name: str, offload: _Offload) -> None:
        self._ioctx = ioctx
        self.name = name
        self._offload = offload

    def _target(self, image: str) -> _Target:
        return _Target(details=(("pool", self.name), ("image", image)))

    async def stats(self) -> PoolStats:
        raw = await self._offload.run(
            "rados.pool_stats", _Target(details=(("pool", self.name),)), self._ioctx.get_stats
        )
        return PoolStats(stored_bytes=raw["num_bytes"], objects=raw["num_objects"])

    async def create_image(self, name: str, size: int) -> None:
        """Create an image with librbd's default features (layering … fast-diff)."""
        await self._offload.run(
            "rbd.create", self._target(name), rbd.RBD().create, self._ioctx, name, size
        )

    async def remove_image(self, name: str, *, with_snapshots: bool = False) -> None:
        """Remove an image; it must not be open, and have no snapshots (ConflictError)
        unless ``with_snapshots`` (then they go first; one with clones: ConflictError)."""
        if with_snapshots:
            await self._offload.run(
                "rbd.remove_snaps", self._target(name), _remove_snaps, self._ioctx, name
            )
        await self._offload.run(
            "rbd.remove", self._target(name), rbd.RBD().remove, self._ioctx, name
        )

    async def image_exists(self, name: str) -> bool:
        """Whether the pool's directory lists ``name``. Not by opening it: a migration
        target whose source cannot be read fails to open (EIO) but exists."""
        names = await self._offload.run("rbd.list", self._target(name), rbd.RBD().list, self._ioctx)
        return name in names

    async def rename_image(self, name: str, new_name: str) -> None:
        """Rename an image (to move a restore target aside, and back)."""
        target = _Target(details=(("pool", self.name), ("image", name), ("new_name", new_name)))
        await self._offload.run("rbd.rename", target, rbd.RBD().rename, self._ioctx, name, new_name)

    async def migration_prepare_import(self, source_spec: Mapping[str, Any], name: str) -> None:
        """Create image ``name`` linked to an external source (Ceph's import-only live
        migration): readable and writable at once, reads of data not yet copied go to
        the source. E.g. ``{"type": "raw", "stream": {"type": "http", "url": ...}}``."""
        spec = json.dumps(source_spec)
        await self._offload.run(
            "rbd.migration_prepare_import", self._target(name),
            rbd.RBD().migration_prepare_import, spec, self._ioctx, name,
        )  # fmt: skip

    async def migration_execute(
        self, name: str, on_progress: MigrationProgress | None = None
    ) -> None:
        """Copy every block of the source into ``name`` (minutes for large disks); runs
        on a thread of its own, reporting progress on the event loop."""
        await self._offload.run_long(
            "rbd.migration_execute", self._target(name), rbd.RBD().migration_execute,
            self._ioctx, name, _progress_bridge(on_progress),
        )  # fmt: skip

    async def migration_commit(self, name: str) -> None:
        """Cut ``name`` loose from its source once executed: it no longer reads it."""
        await self._offload.run_long(
            "rbd.migration_commit", self._target(name), rbd.RBD().migration_commit,
            self._ioctx, name,
        )  # fmt: skip

    async def migration_abort(self, name: str) -> None:
        """Undo a prepared (or interrupted) import: the target image is removed."""
        await self._offload.run_long(
            "rbd.migration_abort", self._target(name), rbd.RBD().migration_abort,
            self._ioctx, name,
        )  # fmt: skip

    async def migration_status(self, name: str) -> MigrationStatus:
        """Where the migration of ``name`` stands (``InvalidInputError``: none)."""
        raw = await self._offload.run(
            "rbd.migration_status", self._target(name), rbd.RBD().migration_status,
            self._ioctx, name,
        )  # fmt: skip
        return MigrationStatus(
            state=MigrationState(raw["state"]),
            description=raw.get("state_description", ""),
            dest_image=raw.get("dest_image_name", ""),
            source_image=raw.get("source_image_name", ""),
        )

    @contextlib.asynccontextmanager
    async def open_image(
        self, name: str, *, snapshot: str | None = None, read_only: bool = True
    ) -> AsyncIterator[RbdImage]:
        """Open ``name`` (at ``snapshot`` if given; a snapshot is always read-only)."""
        target = self._target(name)
        try:
            image = await self._offload.run(
                "rbd.open", target, rbd.Image, self._ioctx, name, snapshot, read_only
            )
        except RbdImageNotFoundError as exc:
            # librbd says ENOENT for a missing snapshot too: tell them apart.
            if snapshot is not None and await self.image_exists(name):
                raise RbdSnapshotNotFoundError(
                    f"snapshot {snapshot!r} of image {name!r} not found",
                    pool=self.name,
                    image=name,
                    snapshot=snapshot,
                ) from exc
            raise
        wrapper = RbdImage(image, target, self._offload)
        try:
            yield wrapper
        finally:
            await wrapper.aclose()


def _progress_bridge(on_progress: MigrationProgress | None) -> Callable[[int, int], int] | None:
    """librbd's progress callback (its own thread) handing over to the event loop."""
    if on_progress is None:
        return None
    loop = asyncio.get_running_loop()

    def report(done: int, total: int) -> int:
        loop.call_soon_threadsafe(on_progress, done, total)
        return 0

    return report


def _remove_snaps(ioctx: rados.Ioctx, name: str) -> None:
    with rbd.Image(ioctx, name) as image:
        for snap in list(image.list_snaps()):
            _remove_snap(image, snap["name"])


class RbdImage:
    """One open image (or snapshot of it); every method runs off the event loop."""

    def __init__(self, image: rbd.Image, target: _Target, offload: _Offload) -> None:
        self._image = image
        self._target = target
        self._offload = offload
        self._pending: set[concurrent.futures.Future[Any]] = set()

    async def _run(
        self, op: str, fn: Callable[..., T], *args: Any, target: _Target | None = None
    ) -> T:
        return await self._offload.run(op, target or self._target, fn, *args, pending=self._pending)

    async def size(self) -> int:
        return await self._run("rbd.size", self._image.size)

    async def read(self, offset: int, length: int) -> bytes:
        """Read exactly ``length`` bytes; fewer (past the end) is a ShortReadError."""
        data: bytes = await self._run("rbd.read", self._image.read, offset, length)
        if len(data) != length:
            raise ShortReadError(
                f"read {len(data)} of {length} bytes at offset {offset}",
                offset=offset, expected=length, got=len(data), **dict(self._target.details),
            )  # fmt: skip
        return data

    async def write(self, offset: int, data: bytes) -> None:
        await self._run("rbd.write", self._image.write, data, offset)

    async def discard(self, offset: int, length: int) -> None:
        """Deallocate a range; ranges under 64 KiB may be a no-op on pacific."""
        await self._run("rbd.discard", self._image.discard, offset, length)

    async def write_zeroes(self, offset: int, length: int) -> None:
        """Zero a range reliably (deallocating whole objects where it can)."""
        await self._run("rbd.write_zeroes", self._image.write_zeroes, offset, length)

    async def flush(self) -> None:
        await self._run("rbd.flush", self._image.flush)

    async def resize(self, size: int) -> None:
        await self._run("rbd.resize", self._image.resize, size)

    async def list_snaps(self) -> list[SnapInfo]:
        return await self._run("rbd.list_snaps", _list_snaps, self._image)

    async def snap_exists(self, name: str) -> bool:
        return await self._run("rbd.snap_exists", self._image.snap_exists, name)

    async def create_snap(self, name: str) -> None:
        await self._run("rbd.create_snap", self._image.create_snap, name, target=self._snap(name))

    async def remove_snap(self, name: str) -> None:
        """Remove a snapshot, unprotecting it first if it is protected."""
        await self._run("rbd.remove_snap", _remove_snap, self._image, name, target=self._snap(name))

    async def settle(self) -> None:
        """Wait until every call already started on this image has returned.

        A task cancelled while awaiting a call does not stop it: the write goes on in
        its thread. Callers that must not be overtaken (a rollback) settle first.
        """
        running = [asyncio.wrap_future(call) for call in self._pending]
        if running:
            await asyncio.wait(running)

    async def rollback_to_snap(self, name: str) -> None:
        """Return the image's content to snapshot ``name`` (undo a failed overwrite).

        Settles first, so no write of a cancelled restore lands after the rollback.
        """
        await self.settle()
        await self._run(
            "rbd.rollback_to_snap", self._image.rollback_to_snap, name, target=self._snap(name)
        )

    async def metadata_get(self, key: str) -> str | None:
        """The image metadata value of ``key`` (kept with the image, not its snapshots)."""
        return await self._run("rbd.metadata_get", _metadata_get, self._image, key)

    async def metadata_set(self, key: str, value: str) -> None:
        await self._run("rbd.metadata_set", self._image.metadata_set, key, value)

    async def metadata_remove(self, key: str) -> None:
        """Remove ``key``; an absent key is fine."""
        await self._run("rbd.metadata_remove", _metadata_remove, self._image, key)

    async def diff_extents(
        self, from_snap: str | None, *, whole_object: bool = False
    ) -> list[Extent]:
        """Extents changed since ``from_snap`` (None: allocated extents only).

        Discarded ranges come back with ``exists=False``. For objects created after
        ``from_snap`` librbd reports the object from its start to its end of data.
        """
        return await self._run(
            "rbd.diff_iterate", _diff, self._image, from_snap, whole_object,
            target=self._snap(from_snap or ""),
        )  # fmt: skip

    def _snap(self, name: str) -> _Target:
        return _Target(
            not_found=RbdSnapshotNotFoundError,
            exists=RbdSnapshotExistsError,
            details=(*self._target.details, ("snapshot", name)),
        )

    async def aclose(self) -> None:
        # An await cancelled mid-call leaves its thread running; closing must wait for
        # it so the handle is never freed under a librbd call. Calls submitted before
        # the close are ahead of it in the executor's FIFO queue, so this cannot deadlock.
        await self._offload.run(
            "rbd.close", self._target, _close, self._image, frozenset(self._pending)
        )


def _close(image: rbd.Image, pending: frozenset[concurrent.futures.Future[Any]]) -> None:
    concurrent.futures.wait(pending)
    image.close()


def _list_snaps(image: rbd.Image) -> list[SnapInfo]:
    return [SnapInfo(id=s["id"], name=s["name"], size=s["size"]) for s in image.list_snaps()]


def _remove_snap(image: rbd.Image, name: str) -> None:
    if image.is_protected_snap(name):
        image.unprotect_snap(name)
    image.remove_snap(name)


def _diff(image: rbd.Image, from_snap: str | None, whole_object: bool) -> list[Extent]:
    extents: list[Extent] = []

    def collect(offset: int, length: int, exists: bool) -> int:
        extents.append(Extent.from_diff(offset, length, exists))
        return 0

    image.diff_iterate(0, image.size(), from_snap, collect, whole_object=whole_object)
    return extents


def _metadata_get(image: rbd.Image, key: str) -> str | None:
    try:
        value: str = image.metadata_get(key)
    except KeyError:
        return None
    return value


def _metadata_remove(image: rbd.Image, key: str) -> None:
    with contextlib.suppress(KeyError):
        image.metadata_remove(key)
