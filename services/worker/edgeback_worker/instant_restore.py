"""Instant restore of one VM: its disks usable at once, the data copied in behind.

Per disk the target image is moved aside (renamed, kept until commit), and Ceph's
import-only live migration is prepared into the target's name, reading through a
capability URL of the storage node. Once every disk is prepared the VM is started;
``migration_execute`` copies every block in the background (progress reported as
:class:`~edgeback_worker.instant_plan.DiskProgress`), then every disk is committed,
the moved-aside images are removed (or kept) and the capabilities revoked. A failure
before commit aborts every migration, puts the originals back and raises
:class:`~edgeback_core.errors.InstantRestoreFailedError` saying what became of each
disk. All state lives in Ceph, so :func:`restore_instantly` called again with the same
inputs (by another worker, after a crash) continues wherever the disks stand.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass

import structlog

from edgeback_blocks.pool_client import PoolClient
from edgeback_blocks.rbd import MigrationState, RbdCluster, RbdPool
from edgeback_core.errors import (
    ConflictError,
    EdgebackError,
    InstantRestoreFailedError,
    InvalidInputError,
    LockBusyError,
    NotFoundError,
    RbdIOError,
    UnavailableError,
)
from edgeback_platform.port import CloudPlatform
from edgeback_worker.instant_plan import (
    CAPABILITY_KEY,
    RESTORE_KEY,
    DisksCommitted,
    InstantDisk,
    InstantEvent,
    InstantRestorePlan,
    Observed,
    ProgressMeter,
    Step,
    VmStarted,
    classify,
)

log = structlog.get_logger(__name__)

_FORWARD = (Step.MOVE_ASIDE, Step.PREPARE, Step.EXECUTE)
ABORT_PATIENCE_S = 45.0
"""How long an abort waits for a dead client's watch to lapse (Ceph's default
osd_client_watch_timeout is 30 s)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class InstantRestoreContext:
    """What an instant restore works with (opened by the caller)."""

    pool: RbdPool
    """The Ceph pool of the target images."""
    node: PoolClient
    """The storage pool holding the disk versions."""
    node_url: str
    """The node's URL as every librbd client of the targets reaches it (QEMU too)."""
    manifest_mac_key: bytes
    platform: CloudPlatform
    on_event: Callable[[InstantEvent], None]
    execute_cluster: Callable[[], AbstractAsyncContextManager[RbdCluster]] | None = None
    """Opens a Ceph connection of its own for each ``execute``, closed after it. librbd
    at times keeps a failed execute's image open (its watch and exclusive lock held
    while the client lives), and ``abort`` answers EBUSY; such a connection is fenced
    (blocklisted) on failure, so the OSDs drop them at once. None: ``pool``'s."""
    clock: Callable[[], float] = time.monotonic


@dataclass(frozen=True, slots=True, kw_only=True)
class InstantRestoreResult:
    vm_started_s: float | None
    """From the call to the VM started; None when resumed past that point."""
    committed_s: float
    kept: tuple[str, ...]
    """Moved-aside images kept (``keep_moved_aside``)."""


async def restore_instantly(
    ctx: InstantRestoreContext, plan: InstantRestorePlan
) -> InstantRestoreResult:
    """Start, or continue from what Ceph shows, the instant restore ``plan``."""
    started = ctx.clock()
    steps = await _observe_all(ctx.pool, plan)
    if conflicts := _targets(plan, steps, Step.CONFLICT):
        raise ConflictError(
            "an image already sits where an instant restore moves its target aside",
            images=conflicts, vm=plan.vm,
        )  # fmt: skip
    vm_started_s = None
    if not any(s in (Step.COMMIT, Step.CLEAN_UP) for s in steps):
        # nothing committed yet: a failure here is undone
        try:
            await _prepare_all(ctx, plan, steps)
            vm_started_s = ctx.clock() - started
            ctx.on_event(VmStarted(elapsed_s=vm_started_s))
            log.info("instant_restore.vm_started", vm=plan.vm, elapsed_s=round(vm_started_s, 3))
            await _execute_all(ctx, plan, steps)
        except EdgebackError as exc:
            await _roll_back(ctx, plan, exc)
    kept = await _commit_all(ctx, plan)
    committed_s = ctx.clock() - started
    ctx.on_event(DisksCommitted(elapsed_s=committed_s))
    log.info("instant_restore.committed", vm=plan.vm, elapsed_s=round(committed_s, 3))
    return InstantRestoreResult(vm_started_s=vm_started_s, committed_s=committed_s, kept=kept)


async def _observe(pool: RbdPool, plan: InstantRestorePlan, disk: InstantDisk) -> Step:
    migration: MigrationState | None = None
    key = None
    exists = await pool.image_exists(disk.target)
    if exists:
        try:
            migration = (await pool.migration_status(disk.target)).state
        except InvalidInputError:  # not migrating
            key = await _metadata(pool, disk.target, RESTORE_KEY)
        except RbdIOError as exc:
            # librbd opens the source to answer: node down, capability revoked or expired
            raise UnavailableError(
                "a migrating target's source cannot be read", target=disk.target
            ) from exc
    seen = Observed(
        target_exists=exists, aside_exists=await pool.image_exists(plan.aside_name(disk)),
        migration=migration, restore_key=key,
    )  # fmt: skip
    step = classify(seen, plan.restore_key)
    log.info("instant_restore.observed", disk=disk.disk, target=disk.target, step=step.value,
             migration=None if migration is None else migration.name)  # fmt: skip
    return step


def _targets(plan: InstantRestorePlan, steps: Sequence[Step], step: Step) -> list[str]:
    return [disk.target for disk, s in zip(plan.disks, steps, strict=True) if s is step]


async def _observe_all(pool: RbdPool, plan: InstantRestorePlan) -> list[Step]:
    return [await _observe(pool, plan, disk) for disk in plan.disks]


async def _prepare_all(
    ctx: InstantRestoreContext, plan: InstantRestorePlan, steps: Sequence[Step]
) -> None:
    if Step.ROLL_BACK in steps:
        raise RbdIOError(
            "a migration is in Ceph's error state", images=_targets(plan, steps, Step.ROLL_BACK)
        )
    if plan.start_vm is not None and Step.MOVE_ASIDE in steps:
        # the VM must not hold its images while they are renamed
        vm = await ctx.platform.get_vm(plan.start_vm)
        if vm.state == "running":
            await ctx.platform.stop_vm(plan.start_vm)
    for disk, step in zip(plan.disks, steps, strict=True):
        if step in (Step.MOVE_ASIDE, Step.PREPARE):
            await _prepare(ctx, plan, disk, step)
    if plan.start_vm is not None:
        vm = await ctx.platform.get_vm(plan.start_vm)
        if vm.state != "running":
            await ctx.platform.start_vm(plan.start_vm)


async def _prepare(
    ctx: InstantRestoreContext, plan: InstantRestorePlan, disk: InstantDisk, step: Step
) -> None:
    if step is Step.MOVE_ASIDE:
        await ctx.pool.rename_image(disk.target, plan.aside_name(disk))
    created = await ctx.node.create_capability(
        plan.vm, disk.disk, disk.version,
        manifest_mac_key=ctx.manifest_mac_key, ttl_s=plan.capability_ttl_s(),
    )  # fmt: skip
    handle = created.capability.handle
    url = ctx.node_url.rstrip("/") + created.path
    try:
        await ctx.pool.migration_prepare_import(
            {"type": "raw", "stream": {"type": "http", "url": url}}, disk.target
        )
    except EdgebackError:
        await _revoke(ctx.node, handle)
        raise
    # recorded in Ceph, so a resumed restore (or its roll-back) can revoke it
    async with ctx.pool.open_image(disk.target, read_only=False) as image:
        await image.metadata_set(CAPABILITY_KEY, handle)
        await image.metadata_set(RESTORE_KEY, plan.restore_key)
    log.info("instant_restore.prepared", disk=disk.disk, target=disk.target, capability=handle)


async def _execute_all(
    ctx: InstantRestoreContext, plan: InstantRestorePlan, steps: Sequence[Step]
) -> None:
    # every copy runs to its end (a cancelled await would leave librbd's thread running
    # while the roll-back aborts under it), then the first failure counts
    disks = zip(plan.disks, steps, strict=True)
    running = [_execute(ctx, plan, disk) for disk, step in disks if step in _FORWARD]
    results = await asyncio.gather(*running, return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException):
            raise result


async def _execute(ctx: InstantRestoreContext, plan: InstantRestorePlan, disk: InstantDisk) -> None:
    meter = ProgressMeter(disk.disk, disk.size, plan.progress_interval_s, ctx.clock())

    def report(done: int, total: int) -> None:
        event = meter.update(done, total, ctx.clock())
        if event is not None:
            ctx.on_event(event)

    if ctx.execute_cluster is None:
        await ctx.pool.migration_execute(disk.target, report)
    else:
        async with ctx.execute_cluster() as cluster, cluster.open_pool(ctx.pool.name) as pool:
            try:
                await pool.migration_execute(disk.target, report)
            except EdgebackError:
                await cluster.fence_self()
                raise
    ctx.on_event(meter.finish(ctx.clock()))
    log.info("instant_restore.executed", disk=disk.disk, target=disk.target)


async def _commit_all(ctx: InstantRestoreContext, plan: InstantRestorePlan) -> tuple[str, ...]:
    steps = await _observe_all(ctx.pool, plan)
    for disk, step in zip(plan.disks, steps, strict=True):
        if step is Step.COMMIT:
            await ctx.pool.migration_commit(disk.target)
        elif step is not Step.CLEAN_UP:
            raise RbdIOError(
                "an instant restore disk is neither executed nor committed",
                target=disk.target, step=step.value,
            )  # fmt: skip
    kept = []
    for disk in plan.disks:
        if await _clean_up(ctx, plan, disk):
            kept.append(plan.aside_name(disk))
    return tuple(kept)


async def _clean_up(
    ctx: InstantRestoreContext, plan: InstantRestorePlan, disk: InstantDisk
) -> bool:
    """Remove (or keep) the moved-aside image, revoke the capability; True: kept."""
    handle = await _metadata(ctx.pool, disk.target, CAPABILITY_KEY)
    if handle:
        await _revoke(ctx.node, handle)
    aside = plan.aside_name(disk)
    if not await ctx.pool.image_exists(aside):
        return False
    if plan.keep_moved_aside:
        return True
    await ctx.pool.remove_image(aside, with_snapshots=True)
    log.info("instant_restore.aside_removed", disk=disk.disk, image=aside)
    return False


async def _migrating(pool: RbdPool, name: str) -> bool:
    try:
        await pool.migration_status(name)
    except InvalidInputError:
        return False
    except RbdIOError:  # migrating, its source unreadable
        return True
    return True


async def _metadata(pool: RbdPool, name: str, key: str) -> str | None:
    async with pool.open_image(name) as image:
        return await image.metadata_get(key)


async def _abort(pool: RbdPool, name: str, clock: Callable[[], float]) -> None:
    """Abort the migration of ``name`` (it needs no source), waiting out a watch that
    a failed execute's client left behind (see ``execute_pool``)."""
    deadline = clock() + ABORT_PATIENCE_S
    while True:
        try:
            await pool.migration_abort(name)
            return
        except LockBusyError:
            if clock() > deadline:
                raise
            log.info("instant_restore.abort_busy", target=name)
            await asyncio.sleep(1.0)


async def _capability_of(pool: RbdPool, name: str) -> str | None:
    """The capability a target reads through; None when it cannot be opened (its
    source unreadable: the capability is then revoked, expired or its node down)."""
    try:
        return await _metadata(pool, name, CAPABILITY_KEY)
    except RbdIOError:
        return None


async def _read_failure(node: PoolClient, handle: str) -> dict[str, str]:
    """What the node could not serve through capability ``handle`` (librbd only sees
    a failed read): the chunk and the node's error, or nothing."""
    try:
        items = await node.list_capabilities()
    except EdgebackError as exc:
        log.warning("instant_restore.failure_unknown", capability=handle, error_code=exc.code)
        return {}
    failure = next((i.failure for i in items if i.handle == handle and i.failure), None)
    if failure is None:
        return {}
    return {"chunk": failure.chunk or f"#{failure.index}", "chunk_error": failure.code,
            "chunk_message": failure.message}  # fmt: skip


async def _revoke(node: PoolClient, handle: str) -> None:
    with contextlib.suppress(NotFoundError):  # purged after its expiry: nothing to revoke
        await node.revoke_capability(handle)


async def _roll_back(
    ctx: InstantRestoreContext, plan: InstantRestorePlan, cause: EdgebackError
) -> None:
    """Abort every migration, put every original back, raise what happened."""
    log.warning("instant_restore.rolling_back", vm=plan.vm, error_code=cause.code)
    outcomes: list[dict[str, str]] = []
    if plan.start_vm is not None:
        # QEMU must let go of the prepared images before they are removed
        try:
            await ctx.platform.stop_vm(plan.start_vm)
        except EdgebackError as exc:
            outcomes.append({"vm": plan.start_vm, "outcome": "not stopped", "error": exc.code})
    for disk in plan.disks:
        outcomes.append(await _roll_back_disk(ctx, plan, disk))
    bad = [f"chunk {o['chunk']} of disk {o['disk']} ({o['chunk_error']}: {o['chunk_message']})"
           for o in outcomes if "chunk" in o]  # fmt: skip
    why = f"the node could not serve {', '.join(bad)}; " if bad else ""
    raise InstantRestoreFailedError(
        f"instant restore of VM {plan.vm} failed ({cause.code}: {cause.message}); {why}"
        + "; ".join(f"{o.get('disk', o.get('vm'))}: {o['outcome']}" for o in outcomes),
        cause=cause.code, cause_details=dict(cause.details), disks=outcomes,
    ) from cause  # fmt: skip


async def _roll_back_disk(
    ctx: InstantRestoreContext, plan: InstantRestorePlan, disk: InstantDisk
) -> dict[str, str]:
    pool, aside = ctx.pool, plan.aside_name(disk)
    bad: dict[str, str] = {}
    try:
        if await pool.image_exists(disk.target):
            if not await _migrating(pool, disk.target):
                if await pool.image_exists(aside):
                    raise ConflictError("the target's name is taken", target=disk.target)
                return {"disk": disk.disk, "target": disk.target, "outcome": "untouched"}
            handle = await _capability_of(pool, disk.target)
            await _abort(pool, disk.target, ctx.clock)
            if handle:
                bad = await _read_failure(ctx.node, handle)
                await _revoke(ctx.node, handle)
        if not await pool.image_exists(aside):
            outcome = "aborted; no original image (new path)"
        else:
            await pool.rename_image(aside, disk.target)
            outcome = "aborted; original image back"
    except EdgebackError as exc:
        log.error("instant_restore.roll_back_failed", disk=disk.disk, error_code=exc.code)
        return {"disk": disk.disk, "target": disk.target, "outcome": "roll-back failed",
                "error": exc.code, "aside": aside} | bad  # fmt: skip
    log.info("instant_restore.rolled_back", disk=disk.disk, target=disk.target, outcome=outcome)
    return {"disk": disk.disk, "target": disk.target, "outcome": outcome} | bad
