"""Run and restore events as they happen, for the progress streams: one live subscription
of this API process to the events exchange (``Bus.subscribe`` on
``topology.LIVE_EVENT_KEYS``), fanned out to the streams that watch a run or a restore.

Each watcher holds a bounded buffer: a stream whose client reads too slowly loses its
oldest events (counted in ``dropped``) and never holds the others up or grows without
bound. What a stream missed stays in the catalog's event log.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass

import structlog

from edgeback_core.bus.port import Bus, ConsumerHandle, Envelope
from edgeback_core.bus.topology import LIVE_EVENT_KEYS
from edgeback_core.eventkeys import entry_key
from edgeback_core.messages import restores as rs
from edgeback_core.messages import runs as r

log = structlog.get_logger(__name__)
LiveEvent = r.RunEvent | rs.RestoreEvent
"""Decode any run or restore event."""


def owner_of(event: LiveEvent) -> str | None:
    """``run:<id>`` or ``restore:<id>``: whose stream shows ``event`` (None: nobody's)."""
    if isinstance(event, rs.RestoreEvent):
        return f"restore:{event.restore_id}"
    if isinstance(event, r.RunSkipped):
        return None
    return f"run:{event.run_id}"


@dataclass(frozen=True, slots=True, kw_only=True)
class Seen:
    """One event as a stream shows it: ``key`` is its position in the catalog's log."""

    key: str
    message_id: str
    event: LiveEvent


class Watcher:
    """The events of one run or restore for one stream, the newest ``size`` kept."""

    def __init__(self, size: int) -> None:
        self._items: deque[Seen] = deque(maxlen=size)
        self._ready = asyncio.Event()
        self.dropped = 0
        self.closed = False

    def close(self) -> None:
        """The API is stopping: the stream ends (its client reconnects elsewhere)."""
        self.closed = True
        self._ready.set()

    def put(self, item: Seen) -> None:
        if len(self._items) == self._items.maxlen:
            self.dropped += 1
        self._items.append(item)
        self._ready.set()

    async def next(self, wait_s: float) -> Seen | None:
        """The oldest event kept, or None after ``wait_s`` without one."""
        if not self._items and not self.closed:
            self._ready.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait_s):
                    await self._ready.wait()
        return self._items.popleft() if self._items else None


class LiveEvents:
    """The process's subscription and its watchers; ``start`` with the app, ``stop`` after."""

    def __init__(self, *, buffer: int = 256, backlog: int = 10_000) -> None:
        self._buffer, self._backlog = buffer, backlog
        self._watchers: dict[str, set[Watcher]] = {}
        self._handle: ConsumerHandle | None = None

    async def start(self, bus: Bus) -> None:
        self._handle = await bus.subscribe(
            LIVE_EVENT_KEYS,
            self._deliver,
            LiveEvent,  # type: ignore[arg-type]
            backlog=self._backlog,
        )

    async def stop(self) -> None:
        handle, self._handle = self._handle, None
        if handle is not None:
            await handle.stop()

    @contextlib.contextmanager
    def watch(self, owner: str) -> Iterator[Watcher]:
        """A watcher of ``owner``'s events (``owner_of``) while the block runs."""
        watcher = Watcher(self._buffer)
        self._watchers.setdefault(owner, set()).add(watcher)
        try:
            yield watcher
        finally:
            left = self._watchers.get(owner, set())
            left.discard(watcher)
            if not left:
                self._watchers.pop(owner, None)

    def close_watchers(self) -> None:
        """End every stream now (the app is shutting down: streams would hold it open)."""
        for watchers in self._watchers.values():
            for watcher in watchers:
                watcher.close()

    @property
    def watching(self) -> int:
        return sum(len(w) for w in self._watchers.values())

    async def _deliver(self, event: LiveEvent, envelope: Envelope) -> None:
        owner = owner_of(event)
        watchers = self._watchers.get(owner or "", ())
        if not watchers:
            return
        seen = Seen(
            key=entry_key(event.at, envelope.message_id),
            message_id=envelope.message_id,
            event=event,
        )
        for watcher in watchers:
            watcher.put(seen)
