"""Validation and expansion of the RBD name templates of a Ceph storage.

A platform names a disk's RBD image after its volume id (``{volume_id}``), an
instance's root disk after the instance (``{instance_id}_disk``) and a snapshot after
its id (``{snapshot_id}``). A template must contain its own placeholder exactly once,
no other placeholder, and otherwise only characters valid in an RBD image or snapshot
name. Pure logic, no I/O: the catalog checks a storage's templates with it when the
storage is added, and the worker on the backup host before it tries them on the cluster.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from edgeback_core.errors import InvalidTemplateError

_PLACEHOLDER = re.compile(r"\{([^{}]*)\}")
# RBD accepts most bytes, but '/' and '@' separate pool/namespace/image@snap and
# whitespace breaks every CLI; stay with a conservative portable set.
_LITERAL = re.compile(r"[A-Za-z0-9_.\-]*")
_MAX_NAME = 250  # leaves room under the 255-byte RADOS object name limit for prefixes

VOLUME = "volume_id"
SNAPSHOT = "snapshot_id"
INSTANCE = "instance_id"


@dataclass(frozen=True, slots=True, kw_only=True)
class RbdTemplates:
    """The three name templates of one Ceph storage, each already validated."""

    volume: str = "{volume_id}"
    snapshot: str = "{snapshot_id}"
    instance: str = "{instance_id}_disk"

    def __post_init__(self) -> None:
        validate_template(self.volume, VOLUME, field="volume_template")
        validate_template(self.snapshot, SNAPSHOT, field="snapshot_template")
        validate_template(self.instance, INSTANCE, field="instance_template")

    def volume_image(self, volume_id: str) -> str:
        return self.volume.replace("{volume_id}", _checked_value(volume_id))

    def snapshot_name(self, snapshot_id: str) -> str:
        return self.snapshot.replace("{snapshot_id}", _checked_value(snapshot_id))

    def instance_image(self, instance_id: str) -> str:
        return self.instance.replace("{instance_id}", _checked_value(instance_id))


def validate_template(template: str, placeholder: str, *, field: str) -> None:
    """Raise :class:`InvalidTemplateError` unless ``template`` is a valid template
    for ``placeholder`` (its own placeholder once, nothing else but RBD name chars)."""
    found = _PLACEHOLDER.findall(template)
    problem: str | None = None
    if len(template) > _MAX_NAME:
        problem = f"longer than {_MAX_NAME} characters"
    elif any(name != placeholder for name in found):
        unknown = sorted({name for name in found if name != placeholder})
        problem = f"unknown placeholder(s) {', '.join('{' + n + '}' for n in unknown)}"
    elif len(found) != 1:
        problem = f"must contain {{{placeholder}}} exactly once, found {len(found)}"
    else:
        literal = _PLACEHOLDER.sub("", template)
        if not _LITERAL.fullmatch(literal):
            problem = "only letters, digits, '_', '.' and '-' may surround the placeholder"
    if problem is not None:
        raise InvalidTemplateError(
            f"{field} {template!r}: {problem}", field=field, template=template
        )


def _checked_value(value: str) -> str:
    if not value or not _LITERAL.fullmatch(value):
        raise InvalidTemplateError(f"id {value!r} cannot be part of an RBD name", value=value)
    return value
