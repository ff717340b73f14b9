"""Maintenance by the active scheduler: retention of every job that has a policy, then
garbage collection of the pools it touched.

A pass, per job with a retention rule (``catalog.retention.jobs``):

1. ``catalog.retention.plan`` (fenced): the catalog marks what the policy removes
   ``expiring`` and answers every expiring set of the job with its manifests;
2. delete those manifests on their storage node with the node's admin token (a
   manifest already gone counts as deleted); publish ``BackupSetRemoved`` for each set
   whose manifests are all gone (message id ``removed:<set>``: at least once);
3. ``catalog.retention.confirm`` (fenced) marks those sets ``deleted``.

Then each pool that lost a manifest is collected (``POST /gc`` with the node's default
grace) and ``PoolCollected`` says what came back. A set whose node failed stays
expiring and is retried by the next pass; a ``lease_lost`` ends the pass at once, and
the pass also stops between sets when this instance is no longer active.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import structlog

from edgeback_core.bus.port import Bus
from edgeback_core.bus.topology import BACKUP_SET_REMOVED, POOL_COLLECTED
from edgeback_core.errors import EdgebackError, LeaseLostError, NotFoundError
from edgeback_core.lifecycle import InFlight
from edgeback_core.messages import retention as rt
from edgeback_core.messages.jobs import PoolRef
from edgeback_scheduler.catalog import CatalogClient
from edgeback_scheduler.clock import Clock
from edgeback_scheduler.leader import LeaderLease
from edgeback_scheduler.nodes import NodeTokens

log = structlog.get_logger(__name__)

JOBS_PAGE = 200


@dataclass(kw_only=True)
class PassReport:
    jobs: int = 0
    removed: list[str] = field(default_factory=list)
    """Backup sets marked deleted by this pass."""
    left_expiring: int = 0
    """Sets whose manifests could not all be deleted (retried next pass)."""
    collected: dict[tuple[str, str], rt.PoolCollected] = field(default_factory=dict)


class Maintenance:
    def __init__(self, bus: Bus, catalog: CatalogClient, nodes: NodeTokens, clock: Clock) -> None:
        self._bus, self._catalog, self._nodes, self._clock = bus, catalog, nodes, clock

    async def run_pass(self, token: int, active: Callable[[], bool] = lambda: True) -> PassReport:
        """One pass with fencing token ``token``; ``LeaseLostError`` if it was taken over."""
        report, touched = PassReport(), dict[tuple[str, str], PoolRef]()
        for job_id in await self._jobs():
            if not active():
                return report
            report.jobs += 1
            try:
                await self._job(token, job_id, report, touched, active)
            except LeaseLostError:
                raise
            except EdgebackError as exc:
                log.warning(
                    "maintenance.job_failed", job_id=job_id, code=exc.code, error=exc.message
                )
        for pool in touched.values():
            if active():
                await self._collect(pool, report)
        return report

    async def _jobs(self) -> list[str]:
        ids: list[str] = []
        while True:
            page = await self._catalog.retention_jobs(ids[-1] if ids else "", JOBS_PAGE)
            ids.extend(page.job_ids)
            if not page.more:
                return ids

    async def _job(
        self,
        token: int,
        job_id: str,
        report: PassReport,
        touched: dict[tuple[str, str], PoolRef],
        active: Callable[[], bool],
    ) -> None:
        plan = await self._catalog.retention_plan(token, job_id)
        gone: list[str] = []
        for expiring in plan.expiring:
            if not active():
                break
            if await self._delete_manifests(expiring):
                touched[(expiring.pool.node_url, expiring.pool.name)] = expiring.pool
                await self._publish_removed(expiring)
                gone.append(expiring.backup_set_id)
            else:
                report.left_expiring += 1
        if gone:
            confirmed = await self._catalog.retention_confirm(token, gone)
            report.removed.extend(confirmed.deleted)
        log.info(
            "maintenance.retention_applied",
            job_id=job_id,
            kept=plan.kept,
            newly_expiring=plan.newly_expiring,
            removed=len(gone),
        )

    async def _delete_manifests(self, expiring: rt.ExpiringSet) -> bool:
        """Whether every manifest of the set is gone from its node now."""
        try:
            async with self._nodes.admin_client(expiring.pool) as node:
                for ref in expiring.manifests:
                    with contextlib.suppress(NotFoundError):  # gone already: a repeated pass
                        await node.delete_manifest(ref.vm_id, ref.disk_id, ref.version)
        except EdgebackError as exc:
            log.warning(
                "maintenance.delete_failed",
                backup_set_id=expiring.backup_set_id,
                node_url=expiring.pool.node_url,
                pool=expiring.pool.name,
                code=exc.code,
                error=exc.message,
            )
            return False
        return True

    async def _publish_removed(self, expiring: rt.ExpiringSet) -> None:
        event = rt.BackupSetRemoved(
            backup_set_id=expiring.backup_set_id,
            job_id=expiring.job_id,
            vm_id=expiring.vm_id,
            backup_type=expiring.backup_type,
            taken_at=expiring.taken_at,
            pool_node_url=expiring.pool.node_url,
            pool_name=expiring.pool.name,
            manifests=len(expiring.manifests),
            at=self._clock(),
        )
        message_id = f"removed:{expiring.backup_set_id}"
        await self._bus.publish("events", BACKUP_SET_REMOVED, event, message_id=message_id)

    async def _collect(self, pool: PoolRef, report: PassReport) -> None:
        try:
            async with self._nodes.admin_client(pool) as node:
                gc = await node.collect_garbage()
                status = await node.status()
        except EdgebackError as exc:
            log.warning(
                "maintenance.gc_failed", node_url=pool.node_url, pool=pool.name, code=exc.code
            )
            return
        event = rt.PoolCollected(
            pool_node_url=pool.node_url,
            pool_name=pool.name,
            removed_chunks=gc.removed_chunks,
            removed_bytes=gc.removed_bytes,
            stored_bytes=status.stored_bytes,
            at=self._clock(),
        )
        report.collected[(pool.node_url, pool.name)] = event
        await self._bus.publish("events", POOL_COLLECTED, event)
        log.info("maintenance.pool_collected", node_url=pool.node_url, pool=pool.name,
                 removed_chunks=gc.removed_chunks, removed_bytes=gc.removed_bytes)  # fmt: skip


class MaintenanceLoop:
    """Runs a pass every ``interval_s`` while this instance holds the lease: the first
    as soon as it is active (a pass is idempotent, so a takeover repeating one is harmless)."""

    def __init__(
        self,
        maintenance: Maintenance,
        lease: LeaderLease,
        *,
        interval_s: float,
        poll_s: float,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._maintenance, self._lease = maintenance, lease
        self._interval_s, self._poll_s, self._monotonic = interval_s, poll_s, monotonic
        self._last: float | None = None

    async def step(self) -> PassReport | None:
        token = self._lease.token
        now = self._monotonic()
        due = self._last is None or now - self._last >= self._interval_s
        if token is None or not due:
            return None
        self._last = now
        try:
            return await self._maintenance.run_pass(token, lambda: self._lease.token == token)
        except LeaseLostError:
            log.warning("maintenance.fenced", token=token)
            self._lease.lost()
        except EdgebackError as exc:
            log.warning("maintenance.pass_failed", code=exc.code, error=exc.message)
        return None

    async def run(self, stopping: asyncio.Event, inflight: InFlight) -> None:
        if self._interval_s <= 0:
            return
        while not stopping.is_set():
            async with inflight.track():
                await self.step()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), self._poll_s)
