"""Durable file operations of a pool directory; blocking, called from the node's threads.

A file becomes visible under its final name only complete and on disk: it is written
to a temporary name in the same directory, fsynced, renamed (or hard-linked, when an
existing file must not be replaced) and the directory is fsynced. On any failure the
temporary file is removed, so a crash or a full disk leaves no partial file under a
final name and no temporary file behind (a crash mid-write may leave one; pools sweep
them with :func:`remove_stale_temp` when they open). Errors come out as ours:
``ENOSPC``/``EDQUOT`` as :class:`PoolFullError`, other ``OSError`` as
:class:`UnavailableError`.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import os
import secrets
from collections.abc import Iterator
from pathlib import Path

from edgeback_core.errors import (
    ConflictError,
    NotFoundError,
    PoolFullError,
    UnavailableError,
)

TEMP_SUFFIX = ".tmp"
DIRECT_ALIGN = 4096
"""Alignment of address, length and offset for ``O_DIRECT`` writes (any block size <= 4 KiB)."""
DIRECT_MIN_SIZE = 64 * 1024
"""Smaller files are written through the page cache (not worth a direct write)."""
_FULL = {errno.ENOSPC, errno.EDQUOT}
_CREATE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC


def write_atomic(
    directory: Path, name: str, data: bytes | memoryview, *, replace: bool = True
) -> bool:
    """Write ``data`` to ``directory/name`` durably; create ``directory`` if needed.

    With ``replace=False`` an existing file is left alone and ``False`` is returned
    (create-if-absent, atomically, via ``link``); otherwise ``True``.
    """
    with _translated(directory / name):
        ensure_dir(directory)
        tmp = directory / f".{name}.{secrets.token_hex(6)}{TEMP_SUFFIX}"
        try:
            _write_synced(tmp, data)
            created = _publish(tmp, directory / name, replace=replace)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
        fsync_dir(directory)
        return created


def read_bytes(path: Path) -> bytes:
    """The whole file; :class:`NotFoundError` if it does not exist."""
    try:
        with open(path, "rb", buffering=0) as fh:
            return fh.read()
    except FileNotFoundError as exc:
        raise NotFoundError("no such object in the pool", path=path.name) from exc
    except OSError as exc:
        raise UnavailableError(f"cannot read {path.name}: {exc.strerror}") from exc


def ensure_dir(directory: Path) -> None:
    """Create ``directory`` (and parents) so that its entry is itself durable."""
    if directory.is_dir():
        return
    ensure_dir(directory.parent)
    with contextlib.suppress(FileExistsError):
        directory.mkdir(mode=0o750)
    fsync_dir(directory.parent)


def fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def remove_stale_temp(directory: Path) -> int:
    """Delete temporary files left by a crash in ``directory``; how many."""
    removed = 0
    for entry in os.scandir(directory):
        if entry.name.startswith(".") and entry.name.endswith(TEMP_SUFFIX):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(entry.path)
                removed += 1
    return removed


def _write_synced(path: Path, data: bytes | memoryview) -> bool:
    """Write and fsync a new file; True when the bulk of it went around the page cache.

    A chunk record in a page-aligned, writable buffer (the node's upload buffers) is
    written with ``O_DIRECT``: the disk reads it straight from that buffer, where a
    buffered write would have the kernel copy every byte into freshly allocated page
    cache (most of the node's CPU on a backup; a backup never reads its chunks back
    soon). The unaligned tail (under 4 KiB) is written normally. Filesystems without
    ``O_DIRECT`` (tmpfs) and other buffers take the buffered path.
    """
    view = memoryview(data).cast("B")
    aligned = view.nbytes // DIRECT_ALIGN * DIRECT_ALIGN if _direct_candidate(view) else 0
    fd = _create_direct(path) if aligned else None
    if fd is None:
        # a refused O_DIRECT open may have created the file already (Linux checks the
        # flag after creating it); the temporary name is ours alone, so truncate it
        flags = _CREATE if not aligned else (_CREATE & ~os.O_EXCL) | os.O_TRUNC
        aligned, fd = 0, os.open(path, flags, 0o640)
    try:
        written = 0
        if aligned:
            written = _write_direct(fd, view[:aligned])
            if written < aligned:  # the filesystem refused O_DIRECT after all: start over
                os.ftruncate(fd, 0)
                written = 0
            _clear_direct(fd)
        rest = view[written:]
        while rest:
            rest = rest[os.pwrite(fd, rest, view.nbytes - rest.nbytes) :]
        os.fsync(fd)
    finally:
        os.close(fd)
    return written > 0


def _direct_candidate(view: memoryview) -> bool:
    if view.readonly or view.nbytes < DIRECT_MIN_SIZE:
        return False
    address = ctypes.addressof(ctypes.c_char.from_buffer(view))
    return address % DIRECT_ALIGN == 0


def _create_direct(path: Path) -> int | None:
    try:
        return os.open(path, _CREATE | os.O_DIRECT, 0o640)
    except OSError as exc:
        if exc.errno != errno.EINVAL:  # EINVAL: this filesystem has no O_DIRECT
            raise
        return None


def _write_direct(fd: int, view: memoryview) -> int:
    """Bytes written with O_DIRECT; stops early (returns less) if the kernel refuses it."""
    done = 0
    while done < view.nbytes:
        try:
            done += os.pwrite(fd, view[done:], done)
        except OSError as exc:
            if exc.errno != errno.EINVAL:
                raise
            return 0
    return done


def _clear_direct(fd: int) -> None:
    flags = fcntl.fcntl(fd, fcntl.F_GETFL)
    fcntl.fcntl(fd, fcntl.F_SETFL, flags & ~os.O_DIRECT)


def _publish(tmp: Path, final: Path, *, replace: bool) -> bool:
    if replace:
        os.replace(tmp, final)
        return True
    try:
        os.link(tmp, final)
    except FileExistsError:
        return False
    return True


@contextlib.contextmanager
def _translated(path: Path) -> Iterator[None]:
    try:
        yield
    except OSError as exc:
        if exc.errno in _FULL:
            raise PoolFullError("no space left in the pool's filesystem", object=path.name) from exc
        if isinstance(exc, FileExistsError):
            raise ConflictError("object already exists", object=path.name) from exc
        raise UnavailableError(f"cannot write {path.name}: {exc.strerror}") from exc
