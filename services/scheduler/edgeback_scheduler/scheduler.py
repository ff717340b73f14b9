"""The scheduler's loop: every tick, hold the lease, and fire what is due if active.

A standby runs the same loop and only asks for the lease, so it takes over at most one
lease lifetime plus one tick after the active instance died (``docs/scheduler.md``).
On a clean stop the active instance releases the lease, so the standby takes over at
its next tick.
"""

from __future__ import annotations

import asyncio
import contextlib

import structlog

from edgeback_core.errors import LeaseLostError
from edgeback_core.lifecycle import InFlight
from edgeback_scheduler.firing import Firing, TickReport, tick_once
from edgeback_scheduler.leader import LeaderLease

log = structlog.get_logger(__name__)


class Scheduler:
    def __init__(self, lease: LeaderLease, firing: Firing, *, tick_s: float) -> None:
        self.lease, self._firing, self._tick_s = lease, firing, tick_s

    async def step(self) -> TickReport | None:
        """One tick: the lease, then (if active) everything due; None when standing by."""
        token = await self.lease.hold()
        if token is None:
            return None
        try:
            report = await tick_once(self._firing, token)
        except LeaseLostError:
            log.warning("scheduler.fenced", token=token)
            self.lease.lost()
            return None
        if report is not None and (report.fired or report.restores):
            log.info(
                "scheduler.fired",
                runs=len(report.fired),
                marked=report.marked,
                refused=report.refused,
                restores=len(report.restores),
                token=token,
            )
        return report

    async def run(self, stopping: asyncio.Event, inflight: InFlight) -> None:
        """Tick until ``stopping`` is set, then release the lease."""
        try:
            while not stopping.is_set():
                async with inflight.track():
                    await self.step()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stopping.wait(), self._tick_s)
        finally:
            await asyncio.shield(self.lease.release())
