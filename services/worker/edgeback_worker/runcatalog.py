"""The catalog RPCs a worker makes while it runs backups, as the ``service`` role.

One thin method per RPC (names in ``edgeback_core.messages.backups`` / ``jobs`` /
``catalog_rpc``); every write is idempotent in the catalog on its natural key, so a
retried call is harmless. A VM task's catalog (:meth:`RunCatalog.reconnecting`) tries a
call again while the catalog does not answer (no server for the RPC, no reply in time,
the broker connection lost, the catalog's database down), with backoff, until the job's
reconnect time from the call's first attempt, then raises ``catalog_unreachable``
(docs/runs.md, "Reconnect time").
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import TypeVar

import msgspec
import structlog

from edgeback_core.bus.port import Bus
from edgeback_core.errors import (
    CatalogUnreachableError,
    EdgebackError,
    UnavailableError,
    UnroutableError,
)
from edgeback_core.messages import backups as b
from edgeback_core.messages import catalog as m
from edgeback_core.messages import catalog_rpc as rpc
from edgeback_core.messages import jobs as j
from edgeback_core.messages import restores as rs
from edgeback_core.messages.jobs import PoolRef
from edgeback_core.messages.runs import BackupType, VmRef
from edgeback_core.retry import OnRetry, RetryPolicy, logged, lost_connection, retrying

log = structlog.get_logger(__name__)

R = TypeVar("R", bound=msgspec.Struct)


@dataclass(frozen=True, slots=True, kw_only=True)
class RunCatalog:
    bus: Bus
    worker_id: str
    timeout_s: float = 30.0
    retry: RetryPolicy | None = None
    """None: one attempt per call. Set: lost connections tried again under it."""
    on_retry: OnRetry | None = None
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
    clock: Callable[[], float] = time.monotonic
    jitter: Callable[[], float] = random.random

    @property
    def actor(self) -> m.ActorRef:
        # the catalog knows this worker by its broker user (host-<id>): it names nobody
        return m.ActorRef()

    def reconnecting(self, policy: RetryPolicy, on_retry: OnRetry | None = None) -> RunCatalog:
        """This catalog, its calls tried again under ``policy`` (``on_retry`` told of each)."""
        return replace(self, retry=policy, on_retry=on_retry)

    async def _call(self, name: str, request: msgspec.Struct, reply: type[R]) -> R:
        policy = self.retry
        if policy is None:
            return await self.bus.call(name, request, reply, timeout=self.timeout_s)

        async def once() -> R:
            try:
                return await self.bus.call(name, request, reply, timeout=self.timeout_s)
            except UnroutableError as exc:  # the catalog's RPC queue goes with its process
                raise UnavailableError(f"no catalog serves rpc {name!r}", rpc=name) from exc

        retried = logged(log, "catalog.retry", self.on_retry, rpc=name)
        try:
            return await retrying(
                once, policy, sleep=self.sleep, clock=self.clock, jitter=self.jitter,
                on_retry=retried,
            )  # fmt: skip
        except EdgebackError as exc:
            if not lost_connection(exc) or isinstance(exc, CatalogUnreachableError):
                raise
            log.warning("catalog.lost", rpc=name, error_code=exc.code)
            raise CatalogUnreachableError(
                f"the catalog did not answer {name} within the reconnect time "
                f"({policy.reconnect or 0:g} s): {exc.message}",
                rpc=name,
            ) from exc

    # --- resources ------------------------------------------------------------------
    async def job(self, job_id: str) -> j.JobInfo:
        return await self._call(j.JOB_GET, j.JobGet(actor=self.actor, job_id=job_id), j.JobInfo)

    async def platform(self, platform_id: str) -> tuple[m.PlatformInfo, m.PlatformCredentials]:
        # two reads at once: one round trip to the catalog instead of two
        return await asyncio.gather(
            self._call(
                rpc.PLATFORM_GET, m.PlatformGet(actor=self.actor, platform_id=platform_id),
                m.PlatformInfo,
            ),
            self._call(
                rpc.PLATFORM_CREDENTIALS,
                m.PlatformCredentialsGet(actor=self.actor, platform_id=platform_id),
                m.PlatformCredentials,
            ),
        )  # fmt: skip

    async def storages(self, platform_id: str) -> list[m.StorageInfo]:
        req = m.StorageList(actor=self.actor, platform_id=platform_id)
        return (await self._call(rpc.STORAGE_LIST, req, m.StorageListReply)).storages

    # --- runs and VM tasks ----------------------------------------------------------
    async def plan(self, run_id: str, vms: list[VmRef]) -> list[b.VmTaskInfo]:
        req = b.VmPlan(actor=self.actor, run_id=run_id, vms=vms)
        return (await self._call(b.VM_PLAN, req, b.VmPlanReply)).vms

    async def run_detail(self, run_id: str) -> b.RunDetail:
        req = b.RunDetailGet(actor=self.actor, run_id=run_id)
        return await self._call(b.RUN_DETAIL, req, b.RunDetail)

    async def run_finish(self, run_id: str, request_id: str) -> m.RunTransitionReply:
        req = b.RunFinish(
            actor=self.actor, run_id=run_id, request_id=request_id, abandon_unfinished=True
        )
        return await self._call(b.RUN_FINISH, req, m.RunTransitionReply)

    async def transition(
        self, run_id: str, target: m.RunStateName, request_id: str, reason: str = ""
    ) -> m.RunTransitionReply:
        req = m.RunTransition(
            actor=self.actor, run_id=run_id, target=target, request_id=request_id, reason=reason
        )
        return await self._call(rpc.RUN_TRANSITION, req, m.RunTransitionReply)

    async def vm_start(self, run_id: str, vm: VmRef, attempt: int, claim_s: float) -> b.VmTaskReply:
        req = b.VmStart(
            actor=self.actor, run_id=run_id, vm=vm, attempt=attempt,
            worker_id=self.worker_id, claim_s=claim_s,
        )  # fmt: skip
        return await self._call(b.VM_START, req, b.VmTaskReply)

    async def vm_renew(
        self, run_id: str, vm_id: str, attempt: int, claim_s: float
    ) -> b.VmTaskReply:
        req = b.VmRenew(
            actor=self.actor, run_id=run_id, vm_id=vm_id, attempt=attempt,
            worker_id=self.worker_id, claim_s=claim_s,
        )  # fmt: skip
        return await self._call(b.VM_RENEW, req, b.VmTaskReply)

    async def vm_finish(self, finish: b.VmFinish) -> b.VmTaskReply:
        return await self._call(b.VM_FINISH, finish, b.VmTaskReply)

    async def disk_commit(self, commit: b.DiskCommit) -> b.DiskCommitReply:
        return await self._call(b.DISK_COMMIT, commit, b.DiskCommitReply)

    # --- backup sets ----------------------------------------------------------------
    async def base(
        self, vm_id: str, job_id: str, pool: PoolRef, for_type: BackupType
    ) -> b.BackupSetWithDisks:
        if for_type == "full":
            return b.BackupSetWithDisks()
        req = b.BackupSetBaseGet(
            actor=self.actor, vm_id=vm_id, job_id=job_id, pool=pool, for_type=for_type
        )
        return await self._call(b.BACKUP_SET_BASE, req, b.BackupSetWithDisks)

    async def snapshot_names(self, vm_id: str, job_id: str, limit: int = 20) -> set[str]:
        """RBD snapshot names the VM's recent disk versions of this job kept."""
        req = b.BackupSetList(actor=self.actor, vm_id=vm_id, job_id=job_id, limit=limit)
        sets = (await self._call(b.BACKUP_SET_LIST, req, b.BackupSetListReply)).backup_sets
        names: set[str] = set()
        for found in sets:
            get = b.BackupSetGet(actor=self.actor, backup_set_id=found.id)
            full = await self._call(b.BACKUP_SET_GET, get, b.BackupSetWithDisks)
            names.update(d.snapshot_name for d in full.disks if d.snapshot_kept)
        return names

    # --- leases ---------------------------------------------------------------------
    async def lease(self, scope: str, holder: str, limit: int, ttl_s: float) -> b.LeaseInfo | None:
        req = b.LeaseAcquire(actor=self.actor, scope=scope, holder=holder, limit=limit, ttl_s=ttl_s)
        return (await self._call(b.LEASE_ACQUIRE, req, b.LeaseReply)).lease

    async def lease_renew(self, lease: b.LeaseInfo, ttl_s: float) -> None:
        req = b.LeaseRenew(
            actor=self.actor, scope=lease.scope, slot=lease.slot, holder=lease.holder, ttl_s=ttl_s
        )
        await self._call(b.LEASE_RENEW, req, b.LeaseReply)

    async def lease_release(self, lease: b.LeaseInfo) -> None:
        req = b.LeaseRelease(
            actor=self.actor, scope=lease.scope, slot=lease.slot, holder=lease.holder
        )
        await self._call(b.LEASE_RELEASE, req, m.Done)

    # --- restores (docs/restores.md, "The restore run") -----------------------------
    async def restore(self, restore_id: str) -> rs.RestoreInfo:
        req = rs.RestoreGet(actor=self.actor, restore_id=restore_id)
        return await self._call(rs.RESTORE_GET, req, rs.RestoreInfo)

    async def restore_transition(
        self, restore_id: str, target: rs.RestoreStateName, reason: str = ""
    ) -> rs.RestoreInfo:
        req = rs.RestoreTransition(
            actor=self.actor, restore_id=restore_id, target=target, reason=reason
        )
        return await self._call(rs.RESTORE_TRANSITION, req, rs.RestoreInfo)

    async def restore_plan(self, restore_id: str) -> list[rs.RestoreVmInfo]:
        req = rs.RestoreVmPlan(actor=self.actor, restore_id=restore_id)
        return (await self._call(rs.RESTORE_VM_PLAN, req, rs.RestoreVmPlanReply)).vms

    async def restore_vm_start(
        self, restore_id: str, backup_set_id: str, attempt: int, claim_s: float
    ) -> rs.RestoreVmReply:
        return await self._restore_claim(
            rs.RESTORE_VM_START, rs.RestoreVmStart, restore_id, backup_set_id, attempt, claim_s
        )

    async def restore_vm_renew(
        self, restore_id: str, backup_set_id: str, attempt: int, claim_s: float
    ) -> rs.RestoreVmReply:
        return await self._restore_claim(
            rs.RESTORE_VM_RENEW, rs.RestoreVmRenew, restore_id, backup_set_id, attempt, claim_s
        )

    async def _restore_claim(
        self, name: str, kind: type[rs.RestoreVmClaim], *args: str | int | float
    ) -> rs.RestoreVmReply:
        restore_id, backup_set_id, attempt, claim_s = args
        req = kind(
            actor=self.actor, restore_id=str(restore_id), backup_set_id=str(backup_set_id),
            attempt=int(attempt), worker_id=self.worker_id, claim_s=float(claim_s),
        )  # fmt: skip
        return await self._call(name, req, rs.RestoreVmReply)

    async def restore_vm_finish(self, finish: rs.RestoreVmFinish) -> rs.RestoreVmReply:
        return await self._call(rs.RESTORE_VM_FINISH, finish, rs.RestoreVmReply)
