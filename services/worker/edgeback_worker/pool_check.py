"""The status of a storage pool as this backup host sees it: ``GET /v1/pools/{pool}`` on
the storage node with the host's own token for the pool (``<pool>.token`` in the
worker's pool access directory), over https verified against the worker's CA file.

The catalog asks before it registers a pool and whenever its status is refreshed, so
what it records is what this host's runs will meet: the node reachable from here, the
pool there, the token accepted. Each failure has its own code so the admin knows what
to fix: no token file here, the node does not hold the pool, the node refused the
token, the node unreachable.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from pathlib import Path

import structlog

from edgeback_blocks.pool_client import PoolClient
from edgeback_blocks.pool_wire import PoolStatus
from edgeback_core.errors import (
    DeadlineExceededError,
    InvalidInputError,
    NotFoundError,
    PermissionDeniedError,
    PoolAccessMissingError,
    PoolNotOnNodeError,
    PoolTokenRefusedError,
    StorageNodeUnreachableError,
    UnauthenticatedError,
    UnavailableError,
)
from edgeback_core.ids import BackupHostId
from edgeback_core.jobrules import pool_ref_problems
from edgeback_core.messages import worker as w
from edgeback_core.retry import RetryPolicy

log = structlog.get_logger(__name__)

_ONE_RETRY = RetryPolicy(retries=1, base_delay=0.1)
"""A dropped keep-alive connection, not a node restart: a check answers in seconds."""


def read_token(pool_dir: Path, pool: str) -> str | None:
    """*Blocking*: this host's node token for ``pool``, or None without a (non-empty) file."""
    try:
        token = (pool_dir / f"{pool}.token").read_text().strip()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise PoolAccessMissingError(
            f"cannot read the token of pool {pool!r}: {exc.strerror}", pool=pool
        ) from exc
    return token or None


@dataclass(frozen=True, slots=True, kw_only=True)
class PoolProbe:
    """Answers ``worker.<host>.pool.status``."""

    host_id: BackupHostId
    pool_dir: Path
    ca_file: str | None
    timeout_s: float

    async def status(self, req: w.PoolStatusCheck) -> w.PoolStatusChecked:
        started = time.monotonic()
        problems = list(pool_ref_problems(req.node_url, req.pool))
        if problems:
            raise InvalidInputError("; ".join(problems), field="pool")
        token = await asyncio.to_thread(read_token, self.pool_dir, req.pool)
        if token is None:
            raise PoolAccessMissingError(
                f"backup host {self.host_id} holds no token for pool {req.pool!r} "
                f"({self.pool_dir / (req.pool + '.token')})",
                pool=req.pool,
                host_id=self.host_id,
            )
        status = await self._ask(req, token)
        elapsed_ms = round((time.monotonic() - started) * 1000)
        log.info("pool.checked", pool=req.pool, node=req.node_url, elapsed_ms=elapsed_ms)
        return checked_of(status, checked_from=self.host_id, elapsed_ms=elapsed_ms)

    async def _ask(self, req: w.PoolStatusCheck, token: str) -> PoolStatus:
        where = {"pool": req.pool, "node_url": req.node_url}
        client = PoolClient(
            req.node_url, token, req.pool, connections=1, timeout_s=self.timeout_s,
            retry=_ONE_RETRY, ca_file=self.ca_file,
        )  # fmt: skip
        try:
            async with client:
                return await client.status()
        except NotFoundError as exc:
            raise PoolNotOnNodeError(
                f"the storage node {req.node_url} holds no pool {req.pool!r}", **where
            ) from exc
        except (UnauthenticatedError, PermissionDeniedError) as exc:
            raise PoolTokenRefusedError(
                f"the storage node refused backup host {self.host_id}'s token for pool "
                f"{req.pool!r}: {exc.message}",
                **where,
            ) from exc
        except (UnavailableError, DeadlineExceededError) as exc:
            raise StorageNodeUnreachableError(
                f"backup host {self.host_id} cannot reach the storage node {req.node_url}: "
                f"{exc.message}",
                **where,
            ) from exc


def checked_of(status: PoolStatus, *, checked_from: str, elapsed_ms: int) -> w.PoolStatusChecked:
    return w.PoolStatusChecked(
        pool=status.name,
        kind=str(status.kind),
        encrypted=status.encrypted,
        capacity_bytes=status.capacity_bytes,
        used_bytes=status.used_bytes,
        free_bytes=status.free_bytes,
        quota_bytes=status.quota_bytes,
        chunks=status.chunks,
        manifests=status.manifests,
        stored_bytes=status.stored_bytes,
        logical_bytes=status.logical_bytes,
        dedup_ratio=status.dedup_ratio,
        checked_from=checked_from,
        elapsed_ms=elapsed_ms,
    )
