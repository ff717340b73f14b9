"""Identifiers more than one service passes around, as ``NewType``s.

A *backup host* is a machine running workers (registered in the catalog, the seed's
"agent"); it is not the platform's physical host that runs VMs, whose id is
``edgeback_platform.models.HypervisorId``. Both are strings on the wire; the two names
keep a signature from taking one for the other.
"""

from __future__ import annotations

from typing import NewType

BackupHostId = NewType("BackupHostId", str)
"""A backup host: names its worker queue and RPCs (``worker.<id>...``), so it holds
no ``.``, ``*``, ``#``, ``/`` or space."""
