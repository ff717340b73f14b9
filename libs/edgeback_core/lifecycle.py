"""The service runner shared by every process: start, serve, drain, stop.

``run_service`` opens the service's resources on an ``AsyncExitStack`` (through the
``setup`` callable), runs its long-lived tasks in a ``TaskGroup`` and waits for SIGTERM
or SIGINT. On a signal it stops intake (consumers, listeners), waits up to the grace
period for in-flight work tracked by :class:`InFlight` to finish, cancels what is left,
closes the resources in reverse order and logs one ``service.stopped`` summary line.
A second signal skips the drain.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from typing import Any

import structlog

log = structlog.get_logger(__name__)

Setup = Callable[["ServiceRuntime"], Awaitable[None]]
HealthCheck = Callable[[], Awaitable[bool]]


class InFlight:
    """Counts units of work in progress so shutdown can wait for them to finish."""

    def __init__(self) -> None:
        self._count = 0
        self._handled = 0
        self._idle = asyncio.Event()
        self._idle.set()

    @property
    def count(self) -> int:
        return self._count

    @property
    def handled(self) -> int:
        return self._handled

    @contextlib.asynccontextmanager
    async def track(self) -> AsyncIterator[None]:
        self._count += 1
        self._idle.clear()
        try:
            yield
        finally:
            self._count -= 1
            self._handled += 1
            if self._count == 0:
                self._idle.set()

    async def wait_idle(self, within_s: float) -> bool:
        """True when nothing is in flight within ``within_s`` seconds."""
        try:
            await asyncio.wait_for(self._idle.wait(), within_s)
        except TimeoutError:
            return False
        return True


@dataclass(kw_only=True)
class ServiceRuntime:
    """What a service's setup gets: where to open resources and start tasks."""

    name: str
    stack: AsyncExitStack
    inflight: InFlight
    stopping: asyncio.Event
    _group: asyncio.TaskGroup
    health_port: int | None = None
    health_checks: dict[str, HealthCheck] = field(default_factory=dict)
    """What ``/healthz`` checks; services add theirs during setup."""
    phase: str = "starting"
    """``starting`` until setup is done, then ``running``, then ``stopping``."""
    _tasks: list[asyncio.Task[Any]] = field(default_factory=list)
    _intake_stoppers: list[Callable[[], Awaitable[None]]] = field(default_factory=list)

    def start_task(self, coro: Coroutine[Any, Any, Any], *, name: str) -> asyncio.Task[Any]:
        """Run a long-lived task; it is cancelled at shutdown after the drain."""
        task = self._group.create_task(coro, name=name)
        self._tasks.append(task)
        return task

    def on_stop_intake(self, stopper: Callable[[], Awaitable[None]]) -> None:
        """Register how to stop taking new work (called first at shutdown, newest first)."""
        self._intake_stoppers.append(stopper)


@dataclass(kw_only=True)
class _Outcome:
    status: str = "stopped"
    drained: bool = True
    error: str | None = None


async def run_service(name: str, setup: Setup, *, grace_s: float = 30.0) -> int:
    """Run one service until a stop signal; return the process exit code."""
    started = time.monotonic()
    stopping = asyncio.Event()
    inflight = InFlight()
    outcome = _Outcome()
    signals = _SignalHandlers(stopping)
    with signals:
        try:
            async with AsyncExitStack() as stack, asyncio.TaskGroup() as group:
                runtime = ServiceRuntime(
                    name=name, stack=stack, inflight=inflight, stopping=stopping, _group=group
                )
                await setup(runtime)
                runtime.phase = "running"
                log.info("service.started", service=name)
                await stopping.wait()
                runtime.phase = "stopping"
                outcome.drained = await _shutdown(runtime, grace_s, signals.forced)
        except* Exception as group_error:
            outcome.status = "failed"
            outcome.error = repr(group_error.exceptions[0])
            log.error("service.failed", service=name, exc_info=group_error.exceptions[0])
    log.info(
        "service.stopped",
        service=name,
        status=outcome.status,
        drained=outcome.drained,
        handled=inflight.handled,
        cancelled_in_flight=inflight.count,
        uptime_s=round(time.monotonic() - started, 3),
        error=outcome.error,
    )
    return 0 if outcome.status == "stopped" else 1


async def _shutdown(runtime: ServiceRuntime, grace_s: float, forced: asyncio.Event) -> bool:
    """Stop intake and drain within ``grace_s`` (a second signal cuts it short); then
    cancel the long-lived tasks. True when everything in flight finished in time."""
    log.info("service.stopping", service=runtime.name, in_flight=runtime.inflight.count)
    drain = asyncio.ensure_future(_stop_intake_and_drain(runtime, grace_s))
    force = asyncio.ensure_future(forced.wait())
    try:
        await asyncio.wait({drain, force}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        force.cancel()
        if not drain.done():
            drain.cancel()
            await asyncio.wait({drain})
    drained = not drain.cancelled() and drain.result()
    for task in runtime._tasks:
        task.cancel()
    return drained


async def _stop_intake_and_drain(runtime: ServiceRuntime, grace_s: float) -> bool:
    # one deadline for both steps: a consumer whose stop() waits on a stuck handler
    # must not hold the process past its grace period
    deadline = asyncio.get_running_loop().time() + grace_s
    try:
        async with asyncio.timeout_at(deadline):
            for stopper in reversed(runtime._intake_stoppers):
                await stopper()
    except TimeoutError:
        log.warning("service.intake_stop_timeout", service=runtime.name)
        return False
    remaining = deadline - asyncio.get_running_loop().time()
    return await runtime.inflight.wait_idle(max(remaining, 0.0))


class _SignalHandlers:
    """SIGTERM/SIGINT: the first asks to stop, the second forces the stop (no drain)."""

    def __init__(self, stopping: asyncio.Event) -> None:
        self._stopping = stopping
        self.forced = asyncio.Event()
        self._installed: list[signal.Signals] = []

    def __enter__(self) -> _SignalHandlers:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, self._on_signal, sig)
                self._installed.append(sig)
        return self

    def __exit__(self, *_exc: object) -> None:
        loop = asyncio.get_running_loop()
        for sig in self._installed:
            loop.remove_signal_handler(sig)

    def _on_signal(self, sig: signal.Signals) -> None:
        if self._stopping.is_set():
            log.warning("service.stop_forced", signal=sig.name)
            self.forced.set()
        else:
            log.info("service.signal", signal=sig.name)
            self._stopping.set()
