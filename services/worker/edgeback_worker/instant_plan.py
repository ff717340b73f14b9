"""Pure parts of an instant restore: its inputs, names, where each disk stands, progress.

An instant restore is resumable from Ceph alone: the names it uses are derived from
its inputs (the moved-aside image is ``<target>-aside-<key>``), and the prepared target
carries image metadata naming the restore and its capability. :func:`classify` turns
what is observed of one disk into the step that continues it, so a worker that takes
over a killed one's task calls the same function with the same inputs. No I/O here.
"""

from __future__ import annotations

import enum
import hashlib
import math
from dataclasses import dataclass, field
from typing import Final

from edgeback_blocks.rbd import DaemonVersion, MigrationState
from edgeback_core.messages import restores as r
from edgeback_platform.models import VmId

RESTORE_KEY: Final = "edgeback.instant.restore"
"""Image metadata on a prepared target: the restore key that prepared it."""
CAPABILITY_KEY: Final = "edgeback.instant.capability"
"""Image metadata on a prepared target: the handle of the capability it reads through."""
MIN_TTL_S: Final = 3600.0
MAX_TTL_S: Final = 7 * 24 * 3600.0
"""The node's ``CAPABILITY_MAX_TTL_S``."""
FLOOR_BYTES_PER_S: Final = 8 * 1024 * 1024
"""Slowest copy rate a capability's TTL allows for (8 MiB/s), counted twice."""


PACIFIC: Final = 16
"""The first Ceph release with import-only live migration (``rbd migration prepare
--import-only``) from an external HTTP source."""


@dataclass(frozen=True, slots=True, kw_only=True)
class InstantRefusal:
    code: str
    reason: str


def instant_refusals(
    versions: list[DaemonVersion], rbd_client: str, *, encrypted: bool = False, node: bool = True
) -> list[InstantRefusal]:
    """Why an instant restore cannot serve a target, before anything is touched: the
    hypervisors open the images with krbd (the kernel client cannot open an image
    under live migration), a monitor or OSD runs a release older than Pacific (no
    import-only migration; an unreadable version counts as older), the pool is
    encrypted (the node, which serves the image, never holds its key) or is not on a
    storage node (``node`` False: a local directory serves no URL). Empty: go on."""
    refused: list[InstantRefusal] = []
    if encrypted or not node:
        refused.append(InstantRefusal(
            code=r.REFUSE_INSTANT_POOL,
            reason="the storage node serves the disk version, which it cannot do for an "
            + ("encrypted pool (it never holds the key)" if encrypted else "pool it does not hold")
            + "; use a normal restore",
        ))  # fmt: skip
    if rbd_client == "krbd":
        refused.append(InstantRefusal(
            code=r.REFUSE_INSTANT_KRBD,
            reason="the storage's hypervisors open RBD images with krbd, which cannot open "
            "an image under live migration; use a normal restore",
        ))  # fmt: skip
    old = sorted(
        {f"{v.daemon} {v.text}" for v in versions
         if v.daemon in ("mon", "osd") and v.major < PACIFIC}
    )  # fmt: skip
    if old:
        refused.append(InstantRefusal(
            code=r.REFUSE_INSTANT_CEPH_TOO_OLD,
            reason=f"instant restore needs Ceph Pacific (16) or later; the cluster runs "
            f"{'; '.join(old)}; use a normal restore",
        ))  # fmt: skip
    return refused


@dataclass(frozen=True, slots=True, kw_only=True)
class InstantDisk:
    """One disk: which disk version to serve, which RBD image to put it in."""

    disk: str
    """Disk id as in the manifest (and events)."""
    version: str
    target: str
    """RBD image name in the restore's Ceph pool (the original or a new path)."""
    size: int
    """Image size in bytes (the manifest's)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class InstantRestorePlan:
    """The inputs: a resumed restore must be given the same ones."""

    restore_key: str
    """Stable id of this restore of this VM (run id and VM): names the moved-aside images."""
    vm: str
    """VM id of the disk versions in the pool (the backed-up VM)."""
    disks: tuple[InstantDisk, ...]
    start_vm: VmId | None
    """The VM started once every disk is prepared (stopped first if it runs); None: none."""
    keep_moved_aside: bool = False
    ttl_s: float | None = None
    """Capability lifetime; None: :func:`capability_ttl` of the largest disk."""
    progress_interval_s: float = 1.0

    def aside_name(self, disk: InstantDisk) -> str:
        digest = hashlib.sha256(self.restore_key.encode()).hexdigest()[:12]
        return f"{disk.target}-aside-{digest}"

    def capability_ttl_s(self) -> float:
        if self.ttl_s is not None:
            return self.ttl_s
        return capability_ttl(max((d.size for d in self.disks), default=0))


def capability_ttl(size: int) -> float:
    """Long enough for ``execute`` at :data:`FLOOR_BYTES_PER_S`, twice over, at least
    an hour, at most the node's limit: the target reads through it until ``commit``."""
    return min(MAX_TTL_S, max(MIN_TTL_S, 2 * size / FLOOR_BYTES_PER_S))


class Step(enum.Enum):
    """What continues one disk."""

    MOVE_ASIDE = "move_aside"
    """The target holds the old data: rename it aside, then prepare."""
    PREPARE = "prepare"
    """No target (a new path, or moved aside already): prepare the import."""
    EXECUTE = "execute"
    COMMIT = "commit"
    CLEAN_UP = "clean_up"
    """Committed: remove (or keep) the moved-aside image, revoke the capability."""
    ROLL_BACK = "roll_back"
    """The migration failed in Ceph (error state): abort and put the original back."""
    CONFLICT = "conflict"
    """An image of another origin sits where this restore moves the target aside."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Observed:
    """What Ceph says of one disk of the restore."""

    target_exists: bool
    aside_exists: bool
    migration: MigrationState | None
    """None: the target is not migrating (or does not exist)."""
    restore_key: str | None = None
    """The target's :data:`RESTORE_KEY` metadata."""


def classify(seen: Observed, restore_key: str) -> Step:
    if seen.migration is not None:
        if seen.migration in (MigrationState.PREPARED, MigrationState.EXECUTING):
            return Step.EXECUTE
        if seen.migration is MigrationState.EXECUTED:
            return Step.COMMIT
        return Step.ROLL_BACK
    if not seen.target_exists:
        return Step.PREPARE
    if seen.restore_key == restore_key:
        return Step.CLEAN_UP
    return Step.CONFLICT if seen.aside_exists else Step.MOVE_ASIDE


@dataclass(frozen=True, slots=True, kw_only=True)
class DiskProgress:
    """One progress report of a disk's background copy (turned into a bus event)."""

    disk: str
    done_bytes: int
    total_bytes: int
    rate_bytes_per_s: float
    eta_s: float | None
    """None until a rate is known."""


@dataclass(frozen=True, slots=True, kw_only=True)
class VmStarted:
    """Every disk is prepared (readable) and the VM was started (or none is to be)."""

    elapsed_s: float
    """From the call to the VM started."""


@dataclass(frozen=True, slots=True, kw_only=True)
class DisksCommitted:
    elapsed_s: float


InstantEvent = DiskProgress | VmStarted | DisksCommitted


@dataclass(slots=True)
class ProgressMeter:
    """Rate and ETA of one disk's copy from librbd's (done, total) callbacks, reported
    at most every ``interval_s`` (and always at the end)."""

    disk: str
    size: int
    interval_s: float
    started: float
    _last_report: float = field(default=-math.inf)

    def update(self, done: int, total: int, now: float) -> DiskProgress | None:
        # librbd counts objects or bytes depending on the operation, and reports each
        # one before it is copied (the last call says total - 1): scale to bytes
        done_bytes = self.size if total <= 0 else min(self.size, done * self.size // total)
        if now - self._last_report < self.interval_s:
            return None
        return self._report(done_bytes, now)

    def finish(self, now: float) -> DiskProgress:
        """The last report, once the copy has returned."""
        return self._report(self.size, now)

    def _report(self, done_bytes: int, now: float) -> DiskProgress:
        self._last_report = now
        elapsed = now - self.started
        rate = done_bytes / elapsed if elapsed > 0 else 0.0
        eta = (self.size - done_bytes) / rate if rate > 0 else None
        return DiskProgress(
            disk=self.disk, done_bytes=done_bytes, total_bytes=self.size,
            rate_bytes_per_s=rate, eta_s=eta,
        )  # fmt: skip
