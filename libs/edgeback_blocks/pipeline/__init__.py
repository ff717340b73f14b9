"""Disk backup, restore and verify pipelines over an RBD image and a chunk pool.

``backup_disk`` turns a snapshot into a manifest plus the chunks the pool lacks;
``restore_disk`` writes a manifest back into an image, verifying each chunk first;
``verify_disk`` checks a manifest's chunks in the pool. Design: ``docs/data-path.md``.
"""

from __future__ import annotations

from edgeback_blocks.pipeline.backup import (
    BackupOptions,
    BackupResult,
    DiffMismatchPolicy,
    backup_disk,
)
from edgeback_blocks.pipeline.progress import Progress, ProgressCallback, ProgressMeter
from edgeback_blocks.pipeline.restore import RestoreOptions, restore_disk
from edgeback_blocks.pipeline.stages import DedupMode
from edgeback_blocks.pipeline.stats import BackupStats, RestoreStats
from edgeback_blocks.pipeline.target import CheckpointSink, ChunkSource, ChunkTarget
from edgeback_blocks.pipeline.verify import BadChunk, VerifyReport, verify_disk
from edgeback_core.throttle import UNLIMITED, NoThrottle, Throttle, TokenBucket

__all__ = [
    "UNLIMITED",
    "BackupOptions",
    "BackupResult",
    "BackupStats",
    "BadChunk",
    "CheckpointSink",
    "ChunkSource",
    "ChunkTarget",
    "DedupMode",
    "DiffMismatchPolicy",
    "NoThrottle",
    "Progress",
    "ProgressCallback",
    "ProgressMeter",
    "RestoreOptions",
    "RestoreStats",
    "Throttle",
    "TokenBucket",
    "VerifyReport",
    "backup_disk",
    "restore_disk",
    "verify_disk",
]
