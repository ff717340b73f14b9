"""What a pool's manifests and checkpoints reference: the mark phase of garbage collection.

*Blocking*: reads every file under ``manifests/`` and ``checkpoints/`` (each summarized in
memory linear in its size, :func:`edgeback_blocks.manifest_codec.summarize`; the digest
table is readable without keys, so encrypted pools are marked too). A file that cannot
be summarized stops the mark with ``ConflictError``: what it references is unknown, and
guessing would delete restore data.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from edgeback_blocks.ids import ChunkDigest
from edgeback_blocks.manifest_codec import summarize
from edgeback_core.errors import ConflictError, EdgebackError, NotFoundError
from edgeback_pools.checkpoint_store import CHECKPOINTS_DIR, unpack
from edgeback_pools.files import read_bytes
from edgeback_pools.manifest_store import MANIFESTS_DIR, SUFFIX


@dataclass(slots=True, kw_only=True)
class References:
    digests: set[ChunkDigest] = field(default_factory=set)
    versions: set[str] = field(default_factory=set)
    """Version names of the manifests and checkpoints (standard pools keep these)."""
    manifests: int = 0
    checkpoints: int = 0


def references(pool_dir: Path) -> References:
    """*Blocking*: every chunk and version the pool's manifests and checkpoints name."""
    refs = References()
    # checkpoints first: a run that commits meanwhile deletes its checkpoint after its
    # manifest is stored, so one of the two is always seen
    for path in _files(pool_dir / CHECKPOINTS_DIR):
        with contextlib.suppress(NotFoundError):  # deleted since listed
            _mark(refs, path, unpack(read_bytes(path))[1])
            refs.checkpoints += 1
    for path in _files(pool_dir / MANIFESTS_DIR):
        with contextlib.suppress(NotFoundError):
            _mark(refs, path, read_bytes(path))
            refs.manifests += 1
    return refs


def _mark(refs: References, path: Path, data: bytes) -> None:
    try:
        summary = summarize(data)
    except EdgebackError as exc:
        raise ConflictError(
            f"garbage collection cannot read {path.parent.name}/{path.name}: {exc.message}; "
            "delete or repair it first",
            file=str(path.relative_to(path.parents[3])),
            reason_code=exc.code,
        ) from exc
    refs.digests.update(summary.digests)
    refs.versions.add(path.name.removesuffix(SUFFIX))


def _files(root: Path) -> Iterator[Path]:
    """``<root>/<vm>/<disk>/<version>.ebm``, temp files and hidden names skipped."""
    for vm in _dirs(root):
        for disk in _dirs(vm):
            for entry in os.scandir(disk):
                if entry.name.endswith(SUFFIX) and not entry.name.startswith("."):
                    yield Path(entry.path)


def _dirs(parent: Path) -> list[Path]:
    try:
        entries = list(os.scandir(parent))
    except FileNotFoundError:
        return []
    return [Path(e.path) for e in entries if e.is_dir() and not e.name.startswith(".")]
