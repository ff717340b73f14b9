"""Wire schemas of the storage node's data API (``/v1``), shared by the node and its client.

JSON bodies only; chunks, manifests and digest lists travel as raw bytes. Problem
bodies of failed requests are ``edgeback_core.errors.ErrorBody``. New fields get defaults.
"""

from __future__ import annotations

import enum

import msgspec


class PoolKind(enum.StrEnum):
    DEDUP = "dedup"
    """Content-addressed chunks shared by every disk version."""
    STANDARD = "standard"
    """No dedup: each disk version keeps its own chunks."""


class CreatePool(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """``POST /v1/pools`` (admin token)."""

    name: str
    kind: PoolKind
    quota_bytes: int | None = None
    encrypted: bool = False


class QuarantinedItem(msgspec.Struct, frozen=True, kw_only=True):
    """A pool or manifest that failed its checks when the node opened it: not served."""

    what: str
    """``pool`` or ``manifest``."""
    name: str
    """The pool's name, or ``<vm>/<disk>/<version>`` of a manifest."""
    code: str
    """The error code of the failed check (``manifest_invalid``, ``config_error``, ...)."""
    message: str


class PoolStatus(msgspec.Struct, frozen=True, kw_only=True):
    """``GET /v1/pools/{pool}``; ``GET /v1/pools`` answers a list of these."""

    name: str
    id: str
    kind: PoolKind
    key_id: str
    quota_bytes: int | None
    capacity_bytes: int
    used_bytes: int
    free_bytes: int
    chunks: int
    stored_bytes: int
    """Bytes of chunk records on disk (after compression and dedup)."""
    logical_bytes: int
    """Non-zero data referenced by the pool's committed manifests."""
    dedup_ratio: float | None
    """logical / stored bytes (dedup and compression together); None while empty."""
    manifests: int
    encrypted: bool = False
    checkpoints: int = 0
    checkpoint_bytes: int = 0
    """Checkpoints count in ``used_bytes`` and against the quota like manifests."""
    quarantined: tuple[QuarantinedItem, ...] = ()
    """Manifests of this pool that failed their checks at start-up (not served)."""


class ManifestItem(msgspec.Struct, frozen=True, kw_only=True):
    """One entry of ``GET /v1/pools/{pool}/manifests``."""

    vm: str
    disk: str
    version: str
    size: int
    modified: str
    """ISO 8601, UTC."""


class CollectGarbage(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """``POST /v1/pools/{pool}/gc`` (admin token)."""

    grace_s: float | None = None
    """Unreferenced chunk files younger than this stay; None: the node's default."""
    dry_run: bool = False
    """Count what would go, remove nothing."""


class GcReport(msgspec.Struct, frozen=True, kw_only=True):
    """What one garbage collection of a pool did."""

    pool: str
    dry_run: bool
    grace_s: float
    manifests: int
    """Manifests marked from (quarantined ones included)."""
    checkpoints: int
    """Checkpoints (runs in progress) marked from."""
    referenced: int
    """Distinct chunks they reference."""
    examined: int
    """Chunks in the pool's index when the sweep started."""
    kept_recent: int
    """Unreferenced, but written within the grace period."""
    kept_pinned: int
    """Unreferenced, but vouched for to a client recently (present answer, upload)."""
    removed_chunks: int
    removed_bytes: int
    versions_removed: int = 0
    """Standard pools: version directories without a manifest or checkpoint."""
    duration_s: float


class Scrub(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """``POST /v1/pools/{pool}/scrub`` (admin token)."""

    sample: int | None = None
    """Check this many chunks picked at random; None: every chunk."""


class BadChunk(msgspec.Struct, frozen=True, kw_only=True):
    digest: str
    code: str
    """``not_found`` (file gone) or the check's error code (``digest_mismatch``, ...)."""
    message: str


class ScrubReport(msgspec.Struct, frozen=True, kw_only=True):
    """What one scrub of a pool found; bad chunks are out of the index and under ``bad/``."""

    pool: str
    checked: int
    checked_bytes: int
    bad: tuple[BadChunk, ...]
    outer_only: bool
    """An encrypted pool: only each record's structure and outer checksum were checked."""
    duration_s: float


class CreateCapability(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """``POST /v1/pools/{pool}/capabilities``: a capability URL for one disk version.

    ``manifest_mac_key`` is the pool's manifest MAC key (64 hex, derived from the pool
    secret; not the secret): the node checks the manifest's MAC with it once, here, and
    does not keep it (``docs/instant-restore.md``).
    """

    vm: str
    disk: str
    version: str
    manifest_mac_key: str
    ttl_s: float = 3600.0


class ImageReadFailure(msgspec.Struct, frozen=True, kw_only=True):
    """The last read of a capability's image that the node failed (a bad or missing
    chunk): kept in the node's memory so the restore that aborts names the chunk."""

    code: str
    message: str
    chunk: str | None
    """Hex digest of the chunk that failed, if the manifest names one."""
    index: int
    """Its position in the image (chunk number)."""
    at: str


class CapabilityItem(msgspec.Struct, frozen=True, kw_only=True):
    """One capability as listed (``GET /v1/pools/{pool}/capabilities``); no id in it."""

    handle: str
    """Public name of the capability (audit log, revocation); not its secret id."""
    pool: str
    vm: str
    disk: str
    version: str
    size: int
    """Image size in bytes."""
    created: str
    expires: str
    created_by: str
    revoked: str | None = None
    failure: ImageReadFailure | None = None
    """The last read the node failed since it started (None: none failed)."""


class CapabilityCreated(msgspec.Struct, frozen=True, kw_only=True):
    """The answer to ``POST /v1/pools/{pool}/capabilities`` (201): the only time the id
    is shown."""

    id: str
    path: str
    """``/v1/images/<id>``: join it to the node's URL."""
    url: str
    """The same, joined to the scheme and ``Host`` this request used."""
    capability: CapabilityItem
