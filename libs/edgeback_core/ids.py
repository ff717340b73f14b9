"""Identifiers more than one service passes around, as ``NewType``s.

A *backup host* is a machine running workers (registered in the catalog, the seed's
"agent"); it is not the platform's physical host that runs VMs, whose id is
``edgeback_platform.models.HypervisorId``. Both are strings on the wire; the two names
keep a signature from taking one for the other.
"""

from __future__ import annotations

import hashlib
from typing import NewType

BackupHostId = NewType("BackupHostId", str)
"""A backup host: names its worker queue and RPCs (``worker.<id>...``), so it holds
no ``.``, ``*``, ``#``, ``/`` or space."""


def derived_id(*parts: str) -> str:
    """A stable id for a natural key (32 hex characters)."""
    return hashlib.sha256("\x00".join(parts).encode()).hexdigest()[:32]


def started_run_id(job_id: str, idempotency_key: str) -> str:
    """The id of the run a ``StartRun`` of ``job_id`` with this key creates (the catalog
    derives it, so a repeated start finds the same run; a starter can watch it)."""
    return derived_id("run", job_id, idempotency_key)
