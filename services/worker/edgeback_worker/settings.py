"""Settings of a worker, from ``EDGEBACK_WORKER_*`` environment variables."""

from __future__ import annotations

import socket
from dataclasses import dataclass
from typing import Annotated, ClassVar

from edgeback_core.ids import BackupHostId
from edgeback_core.settings import NOT_NEGATIVE, POSITIVE, Rule, Settings


def _routable_host(host_id: str) -> str | None:
    """The id names queues and RPCs (``worker.<id>...``): no routing-key separators."""
    host = host_id or socket.gethostname()
    if not host or any(c in host for c in ".*# /"):
        return f"{host!r} may not contain . * # / or spaces"
    return None


@dataclass(frozen=True, slots=True, kw_only=True)
class WorkerSettings(Settings):
    PREFIX: ClassVar[str] = "EDGEBACK_WORKER_"

    host_id: Annotated[str, Rule(_routable_host)] = ""
    """The backup host this worker serves; defaults to the machine's hostname."""
    heartbeat_s: Annotated[float, POSITIVE] = 10.0
    """How often the host announces itself to the catalog (online/offline follows it)."""
    data_dir: str = "/var/lib/edgeback"
    """Measured for the capacity the heartbeat reports."""
    check_retries: Annotated[int, NOT_NEGATIVE] = 2
    """Retries of a platform check or listing: few, so a wrong address fails in seconds."""
    platform_connect_timeout_s: Annotated[float, POSITIVE] = 3.0
    platform_timeout_s: Annotated[float, POSITIVE] = 20.0
    """Whole-request bound of one platform call made for a check or a listing."""
    ceph_connect_timeout_s: Annotated[float, POSITIVE] = 5.0
    """Bound of the Ceph connect (and of its calls) when a storage is checked."""

    @property
    def resolved_host_id(self) -> BackupHostId:
        return BackupHostId(self.host_id or socket.gethostname())
