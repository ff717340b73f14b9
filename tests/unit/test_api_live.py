"""The API's live events without a broker (the in-memory bus): fan-out to the streams
watching one run, bounded buffers that drop the oldest, and a progress stream's
replay, de-duplication, ``lagged`` notice and end."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta

import msgspec
import pytest

from edgeback_api.live import LiveEvents, Seen
from edgeback_api.progress import RUN_ENDED, Recheck, Source, stream
from edgeback_api.routing import ServerEvent
from edgeback_core.bus.memory import MemoryBroker, MemoryBus
from edgeback_core.bus.topology import RUN_FINISHED, RUN_PROGRESS, Topology
from edgeback_core.errors import UnauthenticatedError
from edgeback_core.eventkeys import entry_key
from edgeback_core.messages import runs as r

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def _progress(run_id: str, n: int) -> r.RunProgress:
    return r.RunProgress(
        run_id=run_id, job_id="j", bytes_done=n, bytes_total=10, rate_bps=1.0,
        at=T0 + timedelta(seconds=n),
    )  # fmt: skip


@asynccontextmanager
async def _live(buffer: int) -> AsyncIterator[tuple[LiveEvents, MemoryBus]]:
    broker = MemoryBroker()
    async with MemoryBus.open(broker, Topology(prefix="t.")) as bus:
        live = LiveEvents(buffer=buffer)
        await live.start(bus)
        try:
            yield live, bus
        finally:
            await live.stop()
    broker.close()


async def _drain(live: LiveEvents, bus: MemoryBus, owner: str) -> None:
    """Wait until the subscription handed out what was published (no clock involved)."""
    with live.watch(owner) as probe:
        await bus.publish("events", RUN_PROGRESS, _progress("probe", 0), message_id="probe")
        await bus.publish("events", RUN_PROGRESS, _progress(owner[4:], 99), message_id="last")
        while (seen := await probe.next(5.0)) is not None and seen.message_id != "last":
            pass


async def test_events_reach_only_the_watchers_of_their_run_newest_kept() -> None:
    async with _live(buffer=3) as (live, bus):
        with live.watch("run:r1") as one, live.watch("run:r2") as other:
            assert live.watching == 2
            for n in range(1, 6):
                await bus.publish("events", RUN_PROGRESS, _progress("r1", n), message_id=f"m{n}")
            await _drain(live, bus, "run:r1")
            kept = [(await one.next(1.0)) for _ in range(3)]
            assert [s.message_id for s in kept if s] == ["m4", "m5", "last"]
            assert one.dropped == 3  # m1-m3 made room
            assert (await other.next(0.01), other.dropped) == (None, 0)
            assert kept[0] is not None and kept[0].key == entry_key(kept[0].event.at, "m4")
        assert live.watching == 0


class _Run:
    """A run's log and state as the catalog would answer them."""

    def __init__(self, logged: list[Seen]) -> None:
        self.logged, self.state = logged, "running"

    async def page(self, after: str | None) -> tuple[list[Seen], str | None]:
        found = [s for s in self.logged if after is None or s.key > after]
        return found[:2], (found[1].key if len(found) > 2 else None)

    async def get_state(self) -> str:
        return self.state


def _seen(event: r.RunProgress | r.RunFinished, message_id: str) -> Seen:
    return Seen(key=entry_key(event.at, message_id), message_id=message_id, event=event)


def _names(events: list[ServerEvent]) -> list[str]:
    return [e.event or "comment" for e in events]


async def test_a_stream_replays_then_follows_and_ends() -> None:
    logged = [_seen(_progress("r1", n), f"m{n}") for n in (1, 2, 3)]
    run = _Run(logged)
    source = Source("run:r1", run.page, run.get_state, RUN_ENDED, r.RunFinished)
    async with _live(buffer=2) as (live, bus):
        events = stream(source, live, logged[0].key, heartbeat_s=5.0)
        shown = [await anext(events), await anext(events), await anext(events)]
        assert _names(shown) == ["comment", "RunProgress", "RunProgress"]  # after m1
        assert [e.id for e in shown[1:]] == [logged[1].key, logged[2].key]
        waiting = asyncio.ensure_future(anext(events))
        await asyncio.sleep(0)  # one step: the log is read out and the stream waits live
        for n in (3, 4, 5, 6):  # m3 again (the log gave it), then more than fit
            await bus.publish("events", RUN_PROGRESS, _progress("r1", n), message_id=f"m{n}")
        finished = r.RunFinished(run_id="r1", job_id="j", outcome="succeeded", at=T0)
        await bus.publish("events", RUN_FINISHED, finished, message_id="end")
        run.state = "succeeded"
        rest = [await waiting] + [e async for e in events]
    assert _names(rest) == ["lagged", "RunProgress", "RunFinished", "end"]
    assert msgspec.json.decode(rest[0].data) == {"dropped": 3}
    assert msgspec.json.decode(rest[-1].data) == {"state": "succeeded"}
    assert rest[-1].encode() == b'event: end\ndata: {"state":"succeeded"}\n\n'


async def test_a_stream_of_an_ended_run_replays_and_ends_at_once() -> None:
    run = _Run([_seen(_progress("r1", 1), "m1")])
    run.state = "cancelled"
    source = Source("run:r1", run.page, run.get_state, RUN_ENDED, r.RunFinished)
    async with _live(buffer=2) as (live, _bus):
        shown = [e async for e in stream(source, live, None, heartbeat_s=5.0)]
    assert _names(shown) == ["comment", "RunProgress", "end"]
    assert shown[0].encode() == b": events of run:r1\n\n"


async def test_streams_end_when_the_api_stops() -> None:
    run = _Run([])
    source = Source("run:r1", run.page, run.get_state, RUN_ENDED, r.RunFinished)
    async with _live(buffer=2) as (live, _bus):
        events = stream(source, live, None, heartbeat_s=5.0)
        assert _names([await anext(events)]) == ["comment"]
        waiting = asyncio.ensure_future(anext(events))
        await asyncio.sleep(0)  # the stream waits live
        live.close_watchers()
        last = await waiting
        assert b"reconnect" in last.encode()
        assert [e async for e in events] == []
        assert live.watching == 0


async def test_a_stream_looks_at_its_token_now_and_then_and_ends_once_revoked() -> None:
    run = _Run([])
    source = Source("run:r1", run.page, run.get_state, RUN_ENDED, r.RunFinished)
    now, looks, revoked = [0.0], list[float](), list[bool]()

    async def check() -> None:
        looks.append(now[0])
        if revoked:
            raise UnauthenticatedError("the token is unknown, expired or revoked")

    recheck = Recheck(check, 30.0, clock=lambda: now[0])
    async with _live(buffer=8) as (live, bus):
        events = stream(source, live, None, heartbeat_s=5.0, recheck=recheck)
        assert _names([await anext(events)]) == ["comment"]

        async def next_after(n: int) -> ServerEvent:
            waiting = asyncio.ensure_future(anext(events))
            await asyncio.sleep(0)
            await bus.publish("events", RUN_PROGRESS, _progress("r1", n), message_id=f"m{n}")
            return await waiting

        assert (await next_after(1)).event == "RunProgress"
        assert looks == []  # within the interval: the catalog is not asked
        now[0] = 31.0
        assert (await next_after(2)).event == "RunProgress"
        assert looks == [31.0]
        now[0], revoked[:] = 62.0, [True]
        with pytest.raises(UnauthenticatedError):
            await next_after(3)
        assert looks == [31.0, 62.0] and live.watching == 0
