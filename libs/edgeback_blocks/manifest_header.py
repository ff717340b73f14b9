"""The descriptive header of a manifest: which disk, which image, when, what kind.

A MessagePack map inside the manifest (``docs/formats.md``); new fields get defaults
so older manifests still decode.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum

from edgeback_blocks.chunk import CHUNK_SIZE
from edgeback_blocks.extents import chunk_count
from edgeback_blocks.ids import ManifestId, PoolId
from edgeback_core.errors import InvalidInputError


class BackupType(StrEnum):
    FULL = "full"
    INCREMENTAL = "incremental"
    CUMULATIVE = "cumulative"


@dataclass(frozen=True, slots=True, kw_only=True)
class ManifestHeader:
    """What a manifest describes. New fields must get defaults (older manifests lack them)."""

    vm_id: str
    disk_id: str
    image: str
    """The backed-up snapshot as ``pool/image@snap``."""
    image_size: int
    created_ms: int
    """Creation time, milliseconds since the Unix epoch, UTC."""
    backup_type: BackupType
    pool_id: PoolId
    parent: ManifestId | None = None
    chunk_size: int = CHUNK_SIZE
    version: str = ""
    """The version name it is stored under (format 2): a reader checks it, so a valid
    manifest cannot be served under another version's name. Empty in format 1."""

    def __post_init__(self) -> None:
        if self.image_size < 0 or not 0 < self.chunk_size <= CHUNK_SIZE or self.created_ms < 0:
            raise InvalidInputError(
                "manifest header out of range",
                image_size=self.image_size,
                chunk_size=self.chunk_size,
                created_ms=self.created_ms,
            )

    @property
    def chunk_count(self) -> int:
        return chunk_count(self.image_size, self.chunk_size)

    @property
    def created(self) -> datetime:
        return datetime.fromtimestamp(self.created_ms / 1000, tz=UTC)


def created_ms(when: datetime) -> int:
    """``when`` (timezone-aware) as the integer milliseconds a header stores."""
    if when.tzinfo is None:
        raise InvalidInputError("creation time must be timezone-aware", when=when.isoformat())
    return round(when.timestamp() * 1000)
