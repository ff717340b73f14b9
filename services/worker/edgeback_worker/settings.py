"""Settings of a worker, from ``EDGEBACK_WORKER_*`` environment variables."""

from __future__ import annotations

import socket
from collections.abc import Mapping
from dataclasses import dataclass

from edgeback_core.errors import ConfigError
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

    @property
    def resolved_host_id(self) -> str:
        return self.host_id or socket.gethostname()

    @classmethod
    def load(cls, environ: Mapping[str, str]) -> WorkerSettings:
        settings = load(cls, environ, prefix=PREFIX)
        host = settings.resolved_host_id
        if any(c in host for c in ".*# /") or not host:
            raise ConfigError(
                f"invalid settings: {PREFIX}HOST_ID: {host!r} may not contain . * # / or spaces",
                problems=[f"{PREFIX}HOST_ID: invalid"],
            )
        if settings.heartbeat_s <= 0:
            raise ConfigError(
                f"invalid settings: {PREFIX}HEARTBEAT_S: must be positive",
                problems=[f"{PREFIX}HEARTBEAT_S: must be positive"],
            )
        return settings
