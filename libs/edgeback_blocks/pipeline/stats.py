"""Per-disk figures of a backup or restore: what was read, sent, deduplicated, skipped."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


@dataclass(slots=True)
class BackupCounters:
    """Mutable tallies while a backup runs (event-loop only, so no locking)."""

    bytes_read: int = 0
    bytes_new: int = 0
    bytes_uploaded: int = 0
    bytes_deduped: int = 0
    bytes_sparse: int = 0
    bytes_unchanged: int = 0
    chunks_read: int = 0
    chunks_new: int = 0
    chunks_skipped: int = 0
    """Chunks a resumed run did not redo (its checkpoint had them)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class BackupStats:
    """The summary of one disk backup (the per-disk log line and the CLI's JSON)."""

    bytes_read: int
    """Bytes read from the image (zero chunks detected after reading included)."""
    bytes_new: int
    """Raw bytes of chunks the pool did not have (uploaded)."""
    bytes_uploaded: int
    """Bytes of chunk records sent (after compression)."""
    bytes_deduped: int
    """Raw bytes of chunks read whose digest the pool already held."""
    bytes_sparse: int
    """Bytes recorded as zero: discarded or unallocated ranges, and zero chunks read."""
    bytes_unchanged: int
    """Bytes copied from the parent manifest without reading (incrementals)."""
    image_size: int
    chunks: int
    chunks_read: int
    chunks_new: int
    chunks_skipped: int
    diff_sampled: int
    """Unchanged chunks re-read to check the snapshot diff."""
    plan_s: float
    """Seconds spent on the snapshot diff and the chunk plan."""
    sample_s: float
    """Seconds spent re-reading the diff sample (incrementals)."""
    duration_s: float
    cpu_s: float
    """CPU seconds of this process during the backup (all threads)."""

    @classmethod
    def of(cls, counters: BackupCounters, **rest: Any) -> BackupStats:
        return cls(**asdict(counters), **rest)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, slots=True, kw_only=True)
class RestoreStats:
    image_size: int
    chunks: int
    chunks_fetched: int
    bytes_fetched: int
    """Bytes of chunk records received."""
    bytes_written: int
    bytes_zeroed: int
    """Bytes of zero chunks written as zeroes (0 when the target was known to be empty)."""
    bytes_left: int
    """Bytes from the resume point on (the whole disk when not resumed) not written
    because the target held them already: unchanged since the backup's snapshot, or
    zero chunks where the target holds no data (or all zero chunks of a new image)."""
    duration_s: float
    cpu_s: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
