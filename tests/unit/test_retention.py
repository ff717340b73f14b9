"""Retention selection: properties (hypothesis) and worked examples across time zones."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from hypothesis import given
from hypothesis import strategies as st

from edgeback_core.messages.jobs import RetentionPolicy
from edgeback_core.retention import RestorePoint, select

ZONES = [
    ZoneInfo("UTC"),
    ZoneInfo("Asia/Shanghai"),
    ZoneInfo("America/New_York"),
    ZoneInfo("Europe/Berlin"),
]
START = datetime(2024, 1, 1, tzinfo=UTC)

counts = st.one_of(st.none(), st.integers(1, 8))
policies = st.builds(
    RetentionPolicy, keep_last=counts, keep_daily=counts, keep_weekly=counts, keep_monthly=counts
)


@st.composite
def restore_points(draw: st.DrawFn) -> list[RestorePoint]:
    minutes = draw(st.lists(st.integers(0, 400 * 24 * 60), max_size=40, unique=True))
    return [
        RestorePoint(
            id=f"p{i}",
            taken=START + timedelta(minutes=m),
            kind=draw(st.sampled_from(["full", "incremental", "cumulative"])),
            protected=draw(st.booleans().map(lambda b: b and draw(st.booleans()))),
        )
        for i, m in enumerate(minutes)
    ]


@given(restore_points(), policies, st.sampled_from(ZONES))
def test_a_partition_that_keeps_what_pending_backups_and_users_need(
    points: list[RestorePoint], policy: RetentionPolicy, zone: ZoneInfo
) -> None:
    chosen = select(points, policy, zone)
    ids = {p.id for p in points}
    assert set(chosen.keep) | set(chosen.remove) == ids
    assert not set(chosen.keep) & set(chosen.remove)
    assert all(p.id in chosen.keep for p in points if p.protected)
    if points:
        newest = max(points, key=lambda p: (p.taken, p.id))
        assert newest.id in chosen.keep
        fulls = [p for p in points if p.kind == "full"]
        if fulls:
            assert max(fulls, key=lambda p: (p.taken, p.id)).id in chosen.keep
    taken = {p.id: p.taken for p in points}
    assert [taken[i] for i in chosen.remove] == sorted(taken[i] for i in chosen.remove)


@given(restore_points(), policies, st.sampled_from(ZONES))
def test_applying_it_again_removes_nothing_more(
    points: list[RestorePoint], policy: RetentionPolicy, zone: ZoneInfo
) -> None:
    kept = [p for p in points if p.id in select(points, policy, zone).keep]
    assert select(kept, policy, zone).remove == ()


@given(restore_points(), st.integers(1, 8), st.sampled_from(ZONES))
def test_keep_last_keeps_the_n_newest_and_daily_one_per_local_day(
    points: list[RestorePoint], n: int, zone: ZoneInfo
) -> None:
    newest = sorted(points, key=lambda p: (p.taken, p.id), reverse=True)
    last = select(points, RetentionPolicy(keep_last=n), zone)
    assert {p.id for p in newest[:n]} <= set(last.keep)
    daily = select(points, RetentionPolicy(keep_daily=n), zone)
    days = sorted({p.taken.astimezone(zone).date() for p in points}, reverse=True)[:n]
    for day in days:
        on_day = [p for p in newest if p.taken.astimezone(zone).date() == day]
        assert "daily" in daily.keep[on_day[0].id]
        assert all("daily" not in daily.keep.get(p.id, ()) for p in on_day[1:])


@given(restore_points(), st.sampled_from(ZONES))
def test_the_default_policy_keeps_everything(points: list[RestorePoint], zone: ZoneInfo) -> None:
    assert select(points, RetentionPolicy(), zone).remove == ()


def point(
    pid: str, when: str, kind: str = "incremental", *, protected: bool = False
) -> RestorePoint:
    return RestorePoint(id=pid, taken=datetime.fromisoformat(when), kind=kind, protected=protected)  # type: ignore[arg-type]


def test_days_are_the_backup_hosts_days() -> None:
    # 16:30 and 17:30 UTC on 2024-03-01 are 00:30 and 01:30 on 2024-03-02 in Shanghai
    points = [
        point("a", "2024-03-01T15:30:00+00:00", "full"),
        point("b", "2024-03-01T16:30:00+00:00"),
        point("c", "2024-03-01T17:30:00+00:00"),
    ]
    policy = RetentionPolicy(keep_daily=2)
    assert select(points, policy, ZoneInfo("UTC")).remove == ("b",)  # a: newest full
    shanghai = select(points, policy, ZoneInfo("Asia/Shanghai"))
    assert shanghai.remove == ("b",) and shanghai.keep["a"] == ("daily", "newest_full")


def test_a_worked_example_with_weekly_monthly_and_protected_points() -> None:
    points = [point("full-jan", "2024-01-03T01:00:00+00:00", "full", protected=True)]
    points += [
        point(f"d{i}", (START + timedelta(days=30 + i, hours=1)).isoformat()) for i in range(40)
    ]
    points.append(point("full-mar", "2024-03-11T02:00:00+00:00", "full"))
    chosen = select(
        points,
        RetentionPolicy(keep_last=2, keep_weekly=2, keep_monthly=3),
        ZoneInfo("Europe/Berlin"),
    )
    # d0..d39: Jan 31 .. Mar 10 at 01:00 UTC; full-mar: Monday Mar 11 (ISO week 11)
    assert chosen.keep == {
        "full-mar": ("last", "weekly", "monthly", "newest", "newest_full"),
        "d39": ("last", "weekly"),  # Sunday Mar 10: week 10
        "d29": ("monthly",),  # Feb 29
        "d0": ("monthly",),  # Jan 31
        "full-jan": ("protected",),
    }
    assert len(chosen.remove) == 37 and chosen.remove[0] == "d1"
