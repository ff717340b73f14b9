"""Settings of a worker, from ``EDGEBACK_WORKER_*`` environment variables."""

from __future__ import annotations

import socket
from collections.abc import Mapping
from dataclasses import dataclass

from edgeback_core.errors import ConfigError
from edgeback_core.ids import BackupHostId
from edgeback_core.settings import load

PREFIX = "EDGEBACK_WORKER_"


@dataclass(frozen=True, slots=True, kw_only=True)
class WorkerSettings:
    host_id: str = ""
    """The backup host this worker serves; defaults to the machine's hostname."""
    heartbeat_s: float = 10.0
    """How often the host announces itself to the catalog (online/offline follows it)."""
    data_dir: str = "/var/lib/edgeback"
    """Measured for the capacity the heartbeat reports."""
    check_retries: int = 2
    """Retries of a platform check or listing: few, so a wrong address fails in seconds."""
    platform_connect_timeout_s: float = 3.0
    platform_timeout_s: float = 20.0
    """Whole-request bound of one platform call made for a check or a listing."""
    ceph_connect_timeout_s: float = 5.0
    """Bound of the Ceph connect (and of its calls) when a storage is checked."""

    @property
    def resolved_host_id(self) -> BackupHostId:
        return BackupHostId(self.host_id or socket.gethostname())

    @classmethod
    def load(cls, environ: Mapping[str, str]) -> WorkerSettings:
        settings = load(cls, environ, prefix=PREFIX)
        problems = settings.problems()
        if problems:
            raise ConfigError(f"invalid settings: {'; '.join(problems)}", problems=problems)
        return settings

    def problems(self) -> list[str]:
        found = []
        host = self.resolved_host_id
        if any(c in host for c in ".*# /") or not host:
            found.append(f"{PREFIX}HOST_ID: {host!r} may not contain . * # / or spaces")
        positive = {
            "HEARTBEAT_S": self.heartbeat_s,
            "PLATFORM_CONNECT_TIMEOUT_S": self.platform_connect_timeout_s,
            "PLATFORM_TIMEOUT_S": self.platform_timeout_s,
            "CEPH_CONNECT_TIMEOUT_S": self.ceph_connect_timeout_s,
        }
        found += [f"{PREFIX}{key}: must be positive" for key, v in positive.items() if v <= 0]
        if self.check_retries < 0:
            found.append(f"{PREFIX}CHECK_RETRIES: must be 0 or more")
        return found
