"""The check of a Ceph storage from this backup host: templates valid, ceph.conf
readable here, a connect as the storage's client id within a short timeout, the pool
present. Each failure has its own code so the admin knows what to fix.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import structlog

from edgeback_blocks.rbd import ClusterStats, RbdCluster
from edgeback_core.errors import (
    CephConfUnreadableError,
    CephConnectError,
    EdgebackError,
    InvalidInputError,
    RbdPoolNotFoundError,
)
from edgeback_core.ids import BackupHostId
from edgeback_core.messages import worker as w
from edgeback_platform.templates import RbdTemplates

log = structlog.get_logger(__name__)


def read_conf_head(path: str) -> None:
    """Raise ``OSError`` unless this process can open and read ``path``."""
    with open(path, "rb") as conf:
        conf.read(1)


@dataclass(frozen=True, slots=True, kw_only=True)
class StorageProbe:
    """Answers ``worker.<host>.storage.check``."""

    host_id: BackupHostId
    connect_timeout_s: float

    async def check(self, req: w.StorageCheck) -> w.StorageChecked:
        started = time.monotonic()
        RbdTemplates(
            volume=req.volume_template,
            snapshot=req.snapshot_template,
            instance=req.instance_template,
        )
        await self._require_readable(req.conf_path)
        found, stats = await self._look_up(req)
        if not found:
            raise RbdPoolNotFoundError(
                f"pool {req.pool!r} does not exist in the cluster of {req.conf_path}",
                pool=req.pool,
            )
        elapsed_ms = round((time.monotonic() - started) * 1000)
        log.info("storage.checked", pool=req.pool, conf=req.conf_path, elapsed_ms=elapsed_ms)
        return w.StorageChecked(
            pool=req.pool,
            cluster_total_bytes=stats.total_bytes,
            cluster_avail_bytes=stats.avail_bytes,
            checked_from=self.host_id,
            elapsed_ms=elapsed_ms,
        )

    async def _require_readable(self, path: str) -> None:
        if not path.startswith("/"):
            raise InvalidInputError(f"conf path {path!r} must be absolute", field="conf_path")
        try:
            await asyncio.to_thread(read_conf_head, path)
        except OSError as exc:
            raise CephConfUnreadableError(
                f"{path} is not readable on backup host {self.host_id}: {exc.strerror}",
                conf_path=path,
            ) from exc

    async def _look_up(self, req: w.StorageCheck) -> tuple[bool, ClusterStats]:
        """Whether the pool exists, and the cluster's space; connect problems of any
        kind (monitors, keyring, client id, timeouts) become ``ceph_connect_failed``."""
        try:
            async with RbdCluster.connect(
                req.conf_path,
                req.client_id,
                timeout=self.connect_timeout_s,
                op_timeout=self.connect_timeout_s,
                io_threads=1,
            ) as cluster:
                return await cluster.pool_exists(req.pool), await cluster.cluster_stats()
        except EdgebackError as exc:
            raise CephConnectError(
                f"backup host {self.host_id} cannot use the Ceph cluster of {req.conf_path} "
                f"as client.{req.client_id}: {exc.message}",
                conf_path=req.conf_path,
                client_id=req.client_id,
            ) from exc
