"""Settings of a worker, from ``EDGEBACK_WORKER_*`` environment variables."""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from typing import Annotated, ClassVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from edgeback_core.ids import BackupHostId
from edgeback_core.settings import NOT_NEGATIVE, POSITIVE, Rule, Settings


def _known_zone(name: str) -> str | None:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return f"unknown time zone {name!r}"
    return None


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
    pool_check_timeout_s: Annotated[float, POSITIVE] = 10.0
    """Bound of each socket operation of a pool's status check (register, refresh)."""

    # --- backup runs (docs/runs.md) ----------------------------------------------------
    worker_id: str = ""
    """Names this process in VM task claims, events and logs; default ``<hostname>-<pid>``."""
    pool_dir: str = "/etc/edgeback/pools"
    """Per pool ``<pool>.secret`` (the pool secret, mode 0600, docs/encryption.md),
    ``<pool>.token`` (the node token of this host for that pool) and, for a plain pool,
    ``<pool>.key`` (its ``pool.key``)."""
    ca_file: str | None = None
    """CA file the https certificates of the storage nodes and of the platforms (in runs,
    restores, checks and browsing) are verified against; when set, the only CAs trusted
    (``ssl.create_default_context(cafile=...)``)."""
    time_zone: Annotated[str, Rule(_known_zone)] = "UTC"
    """The backup host's time zone: the speed-limit windows of jobs are in it."""
    checkpoint_interval_s: Annotated[float, POSITIVE] = 10.0
    """A disk's partial manifest is stored in the pool this often (at most this much is
    read again by a resumed task)."""
    claim_s: Annotated[float, POSITIVE] = 60.0
    """VM task claims and leases last this long; renewed every third of it."""
    progress_interval_s: Annotated[float, POSITIVE] = 5.0
    """At most one ``RunProgress`` event per VM task this often."""
    uploads_per_disk: Annotated[int, POSITIVE] = 8
    """Chunk uploads in flight per disk."""
    node_timeout_s: Annotated[float, POSITIVE] = 30.0
    """Bound of each socket operation of a storage-node request: a node that stays
    silent this long counts as a lost connection, tried again within the job's
    reconnect time."""
    reconnect_cap_s: Annotated[float | None, POSITIVE] = None
    """Tests only: caps every job's reconnect time (a job's own is 1-60 minutes) for the
    platform, the storage node and the catalog. Leave unset in production."""

    @property
    def resolved_worker_id(self) -> str:
        return self.worker_id or f"{socket.gethostname()}-{os.getpid()}"

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.time_zone)

    @property
    def resolved_host_id(self) -> BackupHostId:
        return BackupHostId(self.host_id or socket.gethostname())
