import asyncio
import os
import signal
from contextlib import asynccontextmanager

from edgeback_core.lifecycle import InFlight, ServiceRuntime, run_service


async def test_sigterm_stops_intake_drains_then_closes_in_reverse_order():
    events: list[str] = []
    work_done = asyncio.Event()

    @asynccontextmanager
    async def resource(name: str):
        events.append(f"open {name}")
        yield
        events.append(f"close {name}")

    async def in_flight_work(rt: ServiceRuntime) -> None:
        async with rt.inflight.track():
            os.kill(os.getpid(), signal.SIGTERM)
            await asyncio.sleep(0.05)
            work_done.set()
            events.append("work finished")

    async def ticker() -> None:
        await asyncio.Event().wait()

    async def setup(rt: ServiceRuntime) -> None:
        await rt.stack.enter_async_context(resource("db"))
        await rt.stack.enter_async_context(resource("bus"))

        async def stop_intake() -> None:
            events.append("intake stopped")

        rt.on_stop_intake(stop_intake)
        rt.start_task(ticker(), name="ticker")
        rt.start_task(in_flight_work(rt), name="work")

    code = await run_service("t", setup, grace_s=5)
    assert code == 0
    assert work_done.is_set()
    assert events == [
        "open db",
        "open bus",
        "intake stopped",
        "work finished",
        "close bus",
        "close db",
    ]


async def test_drain_gives_up_after_grace_and_cancels():
    cancelled = asyncio.Event()

    async def stuck(rt: ServiceRuntime) -> None:
        async with rt.inflight.track():
            os.kill(os.getpid(), signal.SIGTERM)
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                cancelled.set()
                raise

    async def setup(rt: ServiceRuntime) -> None:
        rt.start_task(stuck(rt), name="stuck")

    assert await run_service("t", setup, grace_s=0.05) == 0
    assert cancelled.is_set()


async def test_failing_setup_closes_opened_resources_and_returns_1():
    closed: list[str] = []

    @asynccontextmanager
    async def resource():
        try:
            yield
        finally:
            closed.append("db")

    async def setup(rt: ServiceRuntime) -> None:
        await rt.stack.enter_async_context(resource())
        raise RuntimeError("cannot reach bus")

    assert await run_service("t", setup) == 1
    assert closed == ["db"]


async def test_crashing_task_stops_the_service_with_failure():
    async def crash() -> None:
        raise ValueError("bug")

    async def setup(rt: ServiceRuntime) -> None:
        rt.start_task(crash(), name="crash")

    assert await asyncio.wait_for(run_service("t", setup), 5) == 1


async def test_inflight_counts_and_waits():
    inflight = InFlight()
    assert await inflight.wait_idle(0.01)
    async with inflight.track():
        assert inflight.count == 1
        assert not await inflight.wait_idle(0.01)
    assert inflight.count == 0
    assert inflight.handled == 1


async def test_a_stuck_intake_stop_does_not_hold_the_process_past_its_grace():
    async def never_stops() -> None:
        await asyncio.Event().wait()

    async def setup(rt: ServiceRuntime) -> None:
        rt.on_stop_intake(never_stops)
        os.kill(os.getpid(), signal.SIGTERM)

    started = asyncio.get_running_loop().time()
    assert await asyncio.wait_for(run_service("t", setup, grace_s=0.1), 5) == 0
    assert asyncio.get_running_loop().time() - started < 2


async def test_second_signal_skips_the_drain():
    async def stuck(rt: ServiceRuntime) -> None:
        async with rt.inflight.track():
            os.kill(os.getpid(), signal.SIGTERM)
            await asyncio.sleep(0.05)
            os.kill(os.getpid(), signal.SIGTERM)
            await asyncio.Event().wait()

    async def setup(rt: ServiceRuntime) -> None:
        rt.start_task(stuck(rt), name="stuck")

    started = asyncio.get_running_loop().time()
    assert await asyncio.wait_for(run_service("t", setup, grace_s=30), 5) == 0
    assert asyncio.get_running_loop().time() - started < 2
