"""What a VM restore leaves on its target RBD images while it runs: the disk's restore
checkpoint and the safety snapshot taken before the overwrite.

Both live in the target image's metadata (``rbd image-meta``), keyed by the restore id:
they describe that image's state, so they stay with it, are seen by whichever worker
of the backup host takes a redelivered task, and are gone with the image. Image
metadata is not part of RBD snapshots, so a rollback does not rewind them. Pure
encoding; the worker reads and writes them through ``edgeback_blocks.rbd``.
"""

from __future__ import annotations

import msgspec

_PREFIX = "edgeback.restore."


class RestoreMark(msgspec.Struct, frozen=True, kw_only=True):
    """Every chunk below ``next_index`` of ``manifest`` is written and flushed."""

    manifest: str
    next_index: int


class SafetyMark(msgspec.Struct, frozen=True, kw_only=True):
    """The platform snapshot taken before this restore overwrote the image."""

    snapshot_id: str
    rbd_snap: str


def checkpoint_key(restore_id: str) -> str:
    return f"{_PREFIX}{restore_id}.checkpoint"


def safety_key(restore_id: str) -> str:
    return f"{_PREFIX}{restore_id}.snapshot"


def resume_index(value: str | None, manifest: str) -> int:
    """Where a restore of ``manifest`` resumes: 0 without a mark, or with another's."""
    if value is None:
        return 0
    try:
        mark = msgspec.json.decode(value, type=RestoreMark)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return 0
    return mark.next_index if mark.manifest == manifest and mark.next_index > 0 else 0


def encode_mark(manifest: str, next_index: int) -> str:
    return msgspec.json.encode(RestoreMark(manifest=manifest, next_index=next_index)).decode()


def encode_safety(snapshot_id: str, rbd_snap: str) -> str:
    return msgspec.json.encode(SafetyMark(snapshot_id=snapshot_id, rbd_snap=rbd_snap)).decode()


def decode_safety(value: str | None) -> SafetyMark | None:
    if value is None:
        return None
    try:
        return msgspec.json.decode(value, type=SafetyMark)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None
