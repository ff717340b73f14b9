"""Live progress of a run or a restore as server-sent events (``text/event-stream``).

A stream first replays the catalog's event log of the run (or restore), after
``Last-Event-ID`` when the client resumes, then goes on with the events the API's live
subscription brings (``live.py``), skipping those the log already gave. Each event is
``id: <log key>``, ``event: <type>`` (``RunProgress``, ``RestoreVmFinished``, ...),
``data: <the event's JSON>``. It ends with ``event: end`` (``data: {"state": ...}``)
once the run has ended: after its ``RunFinished`` / ``RestoreFinished``, or when a
keep-alive look at its state finds it ended (an event lost on the way cannot keep a
stream open). Its bearer token is resolved again every ``token_recheck_s`` (30 s), and
the run (restore) read again as its caller: a token revoked or expired meanwhile, or a
run no longer visible (its backup host taken from the caller's groups), ends the stream
with ``event: error`` (the ``unauthenticated`` or ``not_found`` problem body). A
stopping API ends its streams without ``end``: clients reconnect (to another
instance) with ``Last-Event-ID``. A client too slow to read loses its oldest events
and is told with ``event: lagged`` (``data: {"dropped": n}``); the event log still
holds them.
"""

from __future__ import annotations

import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

import msgspec

from edgeback_api import lists
from edgeback_api.live import LiveEvent, LiveEvents, Seen
from edgeback_api.routing import Call, ServerEvent, ServerEvents
from edgeback_api.session import API_ACTOR
from edgeback_api.tokens import bearer_of, token_hash
from edgeback_api.wire import LiveQuery
from edgeback_core.errors import InvalidInputError
from edgeback_core.eventkeys import entry_key
from edgeback_core.messages import auth as a
from edgeback_core.messages import backups as b
from edgeback_core.messages import restores as rs
from edgeback_core.messages import runs as r

LAST_EVENT_ID = "Last-Event-ID"
RUN_ENDED = frozenset({"succeeded", "failed", "partially_succeeded", "cancelled"})
RESTORE_ENDED = RUN_ENDED | {"expired"}
_PAGE = 500
_REMEMBERED = 10_000
_json = msgspec.json.Encoder()

LogPage = Callable[[str | None], Awaitable[tuple[list[Seen], str | None]]]


@dataclass(frozen=True, slots=True)
class Source:
    """Where one run's (or restore's) stream reads: its log, its state, its last event."""

    owner: str
    log_page: LogPage
    state: Callable[[], Awaitable[str]]
    ended: frozenset[str]
    last_event: type[LiveEvent]
    visible: Callable[[], Awaitable[object]] | None = None
    """Read as the caller: raises ``not_found`` once the caller may no longer see it."""


async def run_progress(call: Call) -> ServerEvents:
    run_id = call.params["run_id"]
    actor = call.actor
    await lists.run_detail(call)  # visible to the caller, or 404 before the stream starts

    async def visible() -> object:
        return await lists.run_detail(call)

    async def page(after: str | None) -> tuple[list[Seen], str | None]:
        ask = b.RunEventsGet(actor=actor, run_id=run_id, after=after, limit=_PAGE)
        got = await call.api.call(b.RUN_EVENTS, ask, b.RunEventsReply)
        return [_seen(e.message_id, e.event) for e in got.events], got.next_after

    async def state() -> str:
        ask = b.RunDetailGet(actor=actor, run_id=run_id)
        return (await call.api.call(b.RUN_DETAIL, ask, b.RunDetail)).run.state

    return _follow(call, Source(f"run:{run_id}", page, state, RUN_ENDED, r.RunFinished, visible))


async def restore_progress(call: Call) -> ServerEvents:
    restore_id = call.params["restore_id"]
    actor = call.actor

    async def visible() -> object:
        get = rs.RestoreGet(actor=actor, restore_id=restore_id)
        return await call.api.call(rs.RESTORE_GET, get, rs.RestoreInfo)

    await visible()  # visible to the caller, or 404 before the stream starts

    async def page(after: str | None) -> tuple[list[Seen], str | None]:
        ask = rs.RestoreEventsGet(actor=actor, restore_id=restore_id, after=after, limit=_PAGE)
        got = await call.api.call(rs.RESTORE_EVENTS, ask, rs.RestoreEventsReply)
        return [_seen(e.message_id, e.event) for e in got.events], got.next_after

    async def state() -> str:
        ask = rs.RestoreGet(actor=actor, restore_id=restore_id)
        return (await call.api.call(rs.RESTORE_GET, ask, rs.RestoreInfo)).state

    source = Source(
        f"restore:{restore_id}", page, state, RESTORE_ENDED, rs.RestoreFinished, visible
    )
    return _follow(call, source)


@dataclass(slots=True)
class Recheck:
    """The stream's token, looked at again (``check``: raises once it is not live) at
    most every ``every_s`` by ``clock``."""

    check: Callable[[], Awaitable[None]]
    every_s: float
    clock: Callable[[], float] = time.monotonic
    _last: float = field(init=False)

    def __post_init__(self) -> None:
        self._last = self.clock()

    def wait_s(self) -> float:
        """Seconds until the next look."""
        return max(0.0, self._last + self.every_s - self.clock())

    async def __call__(self) -> None:
        if self.wait_s() <= 0:
            await self.check()
            self._last = self.clock()


def _follow(call: Call, source: Source) -> ServerEvents:
    token = bearer_of(call.headers.get("Authorization"))
    resolve = (
        None if token is None else a.TokenResolve(actor=API_ACTOR, token_hash=token_hash(token))
    )

    async def check() -> None:
        if resolve is not None:
            await call.api.call(a.TOKEN_RESOLVE, resolve, a.TokenIdentity)
        if source.visible is not None:
            await source.visible()

    recheck = Recheck(check, call.api.token_recheck_s)
    last_id, heartbeat_s = _last_id(call), call.api.heartbeat_s
    return ServerEvents(stream(source, call.api.live, last_id, heartbeat_s, recheck))


def _seen(message_id: str, event: LiveEvent) -> Seen:
    return Seen(key=entry_key(event.at, message_id), message_id=message_id, event=event)


def _last_id(call: Call) -> str | None:
    given = call.headers.get(LAST_EVENT_ID) or call.query_as(LiveQuery).last_event_id
    if given is not None and not (0 < len(given) <= 200 and given.isprintable()):
        raise InvalidInputError(f"{LAST_EVENT_ID} is not an event id this API gave")
    return given or None


class _Sent:
    """Message ids shown already (the newest ``_REMEMBERED``): the log and the live
    subscription both bring an event that happened while the log was read."""

    def __init__(self) -> None:
        self._ids: dict[str, None] = {}

    def first_time(self, message_id: str) -> bool:
        if message_id in self._ids:
            return False
        self._ids[message_id] = None
        if len(self._ids) > _REMEMBERED:
            del self._ids[next(iter(self._ids))]
        return True


async def stream(
    source: Source,
    live: LiveEvents,
    last_id: str | None,
    heartbeat_s: float,
    recheck: Recheck | None = None,
) -> AsyncGenerator[ServerEvent]:
    """The stream of ``source``'s events after ``last_id``, until it ended (or, with
    ``recheck``, until its token is no longer live: the check's error ends it)."""
    with live.watch(source.owner) as watcher:  # before the log: nothing falls in between
        sent, position = _Sent(), [last_id]
        yield ServerEvent(comment=f"events of {source.owner}")
        async for shown in _replay(source, sent, position):
            yield shown
        if (state := await source.state()) in source.ended:
            async for shown in _replay(source, sent, position):
                yield shown
            yield _end(state)
            return
        while True:
            wait_s = heartbeat_s if recheck is None else min(heartbeat_s, recheck.wait_s())
            seen = await watcher.next(wait_s)
            if recheck is not None:
                await recheck()
            if watcher.closed:
                yield ServerEvent(comment="the API is stopping: reconnect with Last-Event-ID")
                return
            if watcher.dropped:
                yield ServerEvent(event="lagged", data=_json.encode({"dropped": watcher.dropped}))
                watcher.dropped = 0
            if seen is None:
                if (state := await source.state()) in source.ended:
                    async for shown in _replay(source, sent, position):
                        yield shown
                    yield _end(state)
                    return
                yield ServerEvent(comment="keep-alive")
                continue
            if sent.first_time(seen.message_id):
                position[0] = seen.key
                yield _event(seen)
            if isinstance(seen.event, source.last_event):
                yield _end(await source.state())
                return


async def _replay(
    source: Source, sent: _Sent, position: list[str | None]
) -> AsyncIterator[ServerEvent]:
    """The log after ``position[0]``, moving it along."""
    after = position[0]
    while True:
        entries, following = await source.log_page(after)
        for seen in entries:
            position[0] = seen.key
            if sent.first_time(seen.message_id):
                yield _event(seen)
        if following is None:
            return
        after = following


def _event(seen: Seen) -> ServerEvent:
    return ServerEvent(id=seen.key, event=type(seen.event).__name__, data=_json.encode(seen.event))


def _end(state: str) -> ServerEvent:
    return ServerEvent(event="end", data=_json.encode({"state": state}))
