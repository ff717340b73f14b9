"""Micro-benchmark of ``next_run``: calls per second per kind, and one pass over 10,000 jobs.

The scheduler evaluates ``next_run`` for every enabled job, so one call must stay cheap.
The baseline, measured in the same run, is one UTC-to-local conversion with zoneinfo
(``datetime.astimezone``): each kind's cost is also printed as a number of those.
Clocks are spread over 2024-2026 (both DST changes included) in three zones.

    .venv/bin/python -m tests.bench.bench_schedules [--calls 20000] [--jobs 10000]
"""

from __future__ import annotations

import argparse
import random
import time as clock
from collections.abc import Callable
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

from edgeback_core.messages.schedule import (
    Daily,
    Hourly,
    Immediate,
    Manual,
    MonthDays,
    Monthly,
    MonthWeekdays,
    Once,
    Schedule,
    Weekly,
)
from edgeback_core.schedules import next_run

ZONES = ("Asia/Shanghai", "Europe/Berlin", "America/New_York")
ANCHOR = datetime(2024, 1, 1, tzinfo=UTC)


def kinds(tz: str) -> dict[str, Schedule]:
    return {
        "immediate": Immediate(),
        "manual": Manual(),
        "once": Once(tz=tz, at=datetime(2026, 6, 1, 2, 30)),
        "hourly (2 h)": Hourly(tz=tz, start=time(0), end=time(23, 59), every=2),
        "hourly (5 min)": Hourly(tz=tz, start=time(0), end=time(23, 59), every=5, unit="minutes"),
        "daily (3 d)": Daily(tz=tz, at=time(2, 30), every=3),
        "weekly (2 w)": Weekly(tz=tz, at=time(2, 30), weekdays=("mon", "sun"), every=2),
        "monthly (day 31)": Monthly(
            tz=tz, at=time(2, 30), months=(2, 6, 11), on=MonthDays(days=(31,))
        ),
        "monthly (last sun)": Monthly(
            tz=tz,
            at=time(2, 30),
            months=(3, 10),
            on=MonthWeekdays(weeks=("last",), weekdays=("sun",)),
        ),
    }


def clocks(count: int, rng: random.Random) -> list[datetime]:
    span = int(timedelta(days=3 * 365).total_seconds())
    return [ANCHOR + timedelta(seconds=rng.randrange(span)) for _ in range(count)]


def rate(call: Callable[[datetime], object], afters: list[datetime]) -> float:
    started = clock.perf_counter()
    for after in afters:
        call(after)
    return len(afters) / (clock.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=20_000, help="calls per kind")
    parser.add_argument("--jobs", type=int, default=10_000, help="jobs in the mixed pass")
    args = parser.parse_args()
    rng = random.Random(10)
    afters = clocks(args.calls, rng)
    zone = ZoneInfo(ZONES[1])
    baseline = rate(lambda after: after.astimezone(zone), afters)
    print(f"baseline astimezone: {baseline:,.0f} /s")
    print(f"{'kind':<20}{'calls/s':>12}{'µs/call':>10}{'x baseline':>12}")
    for name, schedule in kinds(ZONES[1]).items():
        per_s = rate(lambda after, s=schedule: next_run(s, after, anchor=ANCHOR), afters)  # type: ignore[misc]
        print(f"{name:<20}{per_s:>12,.0f}{1e6 / per_s:>10.1f}{baseline / per_s:>12.1f}")
    jobs = [rng.choice(list(kinds(rng.choice(ZONES)).values())) for _ in range(args.jobs)]
    now = datetime(2025, 3, 30, 0, 59, tzinfo=UTC)  # Berlin's spring-forward hour
    started = clock.perf_counter()
    for schedule in jobs:
        next_run(schedule, now, anchor=ANCHOR)
    elapsed = clock.perf_counter() - started
    print(f"{args.jobs:,} mixed jobs, 3 zones: {elapsed * 1000:.1f} ms for one pass")


if __name__ == "__main__":
    main()
