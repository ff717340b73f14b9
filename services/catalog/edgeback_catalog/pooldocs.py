"""MongoDB documents of registered storage pools and their conversion to domain values.

A pool document keeps what the catalog queries on (``node_url`` and ``name``, unique
together; ``host_id``, which decides who sees the pool) at the top level, the last
successful status under ``status`` and the last check's failure, if any, under
``last_error``.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime
from typing import Any, TypedDict

from edgeback_catalog.documents import utc
from edgeback_catalog.domain import PoolCheckFailure, PoolFigures, PoolId, RegisteredPool
from edgeback_core.ids import BackupHostId
from edgeback_core.messages import worker as w


class PoolDoc(TypedDict):
    _id: str
    name: str
    node_url: str
    host_id: str
    description: str
    kind: str
    encrypted: bool
    created_at: datetime
    created_by: str
    status: dict[str, Any]
    last_error: dict[str, Any] | None


def figures_of(checked: w.PoolStatusChecked, at: datetime) -> PoolFigures:
    names = (f.name for f in dataclasses.fields(PoolFigures) if f.name != "checked_at")
    return PoolFigures(**{name: getattr(checked, name) for name in names}, checked_at=at)


def figures_doc(figures: PoolFigures) -> dict[str, Any]:
    return dataclasses.asdict(figures)


def failure_doc(failure: PoolCheckFailure) -> dict[str, Any]:
    return dataclasses.asdict(failure)


def pool_doc(pool: RegisteredPool) -> PoolDoc:
    return PoolDoc(
        _id=pool.id,
        name=pool.name,
        node_url=pool.node_url,
        host_id=pool.host_id,
        description=pool.description,
        kind=pool.kind,
        encrypted=pool.encrypted,
        created_at=pool.created_at,
        created_by=pool.created_by,
        status=figures_doc(pool.status),
        last_error=None if pool.last_error is None else failure_doc(pool.last_error),
    )


def pool_of(doc: dict[str, Any]) -> RegisteredPool:
    error = doc.get("last_error")
    return RegisteredPool(
        id=PoolId(doc["_id"]),
        name=doc["name"],
        node_url=doc["node_url"],
        host_id=BackupHostId(doc["host_id"]),
        description=doc["description"],
        kind=doc["kind"],
        encrypted=doc["encrypted"],
        created_at=utc(doc["created_at"]),
        created_by=doc["created_by"],
        status=_figures(doc["status"]),
        last_error=None
        if error is None
        else PoolCheckFailure(code=error["code"], message=error["message"], at=utc(error["at"])),
    )


def _figures(stored: dict[str, Any]) -> PoolFigures:
    # large counts come back as BSON Int64: plain ints, as the wire encodes them
    plain: dict[str, Any] = {k: int(v) if isinstance(v, int) else v for k, v in stored.items()}
    return PoolFigures(**{**plain, "checked_at": utc(stored["checked_at"])})
