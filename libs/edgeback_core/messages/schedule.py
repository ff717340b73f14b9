"""The schedule of a job on the wire: a tagged union of the seven kinds, validated on build.

A schedule says when a job fires: ``immediate`` (once, when the job is created),
``once`` (at a time), ``manual`` (never by itself), ``hourly`` (a daily window, every N
hours or minutes), ``daily`` (every N days), ``weekly`` (every N weeks on chosen
weekdays) and ``monthly`` (chosen months, by day of month or by week-of-month and
weekday). Times are wall-clock times in ``tz``, the IANA time zone of the backup host.
Every struct checks itself in ``__post_init__``, so a schedule that exists is valid,
whether it was decoded from JSON or built in Python; bad input raises
``InvalidScheduleError`` (code ``invalid_schedule``, ``details`` name the ``field`` and a
stable ``reason``) or ``UnknownTimeZoneError`` (code ``unknown_time_zone``). When each
kind fires is computed by ``edgeback_core.schedules.next_run``; see ``docs/schedules.md``.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import datetime, time
from typing import Any, Literal, get_args
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import msgspec

from edgeback_core.errors import InvalidScheduleError, UnknownTimeZoneError

Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
WeekOfMonth = Literal["first", "second", "third", "fourth", "last"]
IntervalUnit = Literal["hours", "minutes"]

#: weekday names in ``date.weekday()`` order (Monday is 0)
WEEKDAYS: tuple[Weekday, ...] = get_args(Weekday)
WEEKS_OF_MONTH: tuple[WeekOfMonth, ...] = get_args(WeekOfMonth)

#: inclusive bounds of the ``every`` fields
HOURS_RANGE = (1, 23)
MINUTES_RANGE = (1, 1439)
DAYS_RANGE = (1, 365)
WEEKS_RANGE = (1, 52)


def _fail(field: str, reason: str, message: str, **details: Any) -> InvalidScheduleError:
    return InvalidScheduleError(message, field=field, reason=reason, **details)


def check_time_zone(name: str) -> ZoneInfo:
    """The zone called ``name``, or ``UnknownTimeZoneError``."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError) as exc:
        # ValueError: names that are not plain keys ("../etc/passwd", "")
        raise UnknownTimeZoneError(
            f"unknown time zone {name!r}: use an IANA name such as 'Asia/Shanghai'",
            field="tz",
            reason="unknown_time_zone",
            value=name,
        ) from exc


def _check_every(value: int, bounds: tuple[int, int], unit: str) -> None:
    low, high = bounds
    if not low <= value <= high:
        raise _fail(
            "every",
            "out_of_range",
            f"every must be {low}..{high} {unit}, got {value}",
            value=value,
            low=low,
            high=high,
        )


def _check_choice(field: str, values: Sequence[Any], allowed: Collection[Any]) -> None:
    if not values:
        raise _fail(field, "empty", f"{field} must name at least one value")
    for value in values:
        if value not in allowed:
            raise _fail(field, "out_of_range", f"{field}: {value!r} is not allowed", value=value)
    if len(set(values)) != len(values):
        raise _fail(field, "duplicate", f"{field} names a value twice", values=list(values))


def _check_wall_time(field: str, value: time) -> None:
    if value.tzinfo is not None:
        raise _fail(field, "has_offset", f"{field} is a wall-clock time in tz: no UTC offset")
    if value.microsecond:
        raise _fail(field, "sub_second", f"{field} must be whole seconds")


class _Schedule(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Base of the seven kinds; the JSON tag is ``kind``."""


class _Zoned(_Schedule, frozen=True, kw_only=True):
    tz: str

    def __post_init__(self) -> None:
        check_time_zone(self.tz)


class Immediate(_Schedule, frozen=True, kw_only=True, tag_field="kind", tag="immediate"):
    """Fires once, at the job's anchor (its creation)."""


class Manual(_Schedule, frozen=True, kw_only=True, tag_field="kind", tag="manual"):
    """Never fires by itself: the job runs when someone starts it."""


class Once(_Zoned, frozen=True, kw_only=True, tag_field="kind", tag="once"):
    """Fires once at ``at``: a wall-clock time in ``tz``, or an instant if it has an offset."""

    at: datetime

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.at.microsecond:
            raise _fail("at", "sub_second", "at must be whole seconds")


class Hourly(_Zoned, frozen=True, kw_only=True, tag_field="kind", tag="hourly"):
    """Every day from ``start`` to ``end`` (both inclusive), every ``every`` ``unit``."""

    start: time
    end: time
    every: int
    unit: IntervalUnit = "hours"

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_wall_time("start", self.start)
        _check_wall_time("end", self.end)
        if self.end <= self.start:
            raise _fail(
                "end",
                "window_inverted",
                f"the window must end after it starts ({self.start} - {self.end}); "
                "a window across midnight needs two jobs",
            )
        _check_every(self.every, HOURS_RANGE if self.unit == "hours" else MINUTES_RANGE, self.unit)

    @property
    def step_seconds(self) -> int:
        return self.every * (3600 if self.unit == "hours" else 60)


class Daily(_Zoned, frozen=True, kw_only=True, tag_field="kind", tag="daily"):
    """At ``at`` every ``every`` days, counted from the first ``at`` after the anchor."""

    at: time
    every: int = 1

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_wall_time("at", self.at)
        _check_every(self.every, DAYS_RANGE, "days")


class Weekly(_Zoned, frozen=True, kw_only=True, tag_field="kind", tag="weekly"):
    """At ``at`` on ``weekdays`` of every ``every``-th week, counted from the anchor's week."""

    at: time
    weekdays: tuple[Weekday, ...]
    every: int = 1

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_wall_time("at", self.at)
        _check_choice("weekdays", self.weekdays, WEEKDAYS)
        _check_every(self.every, WEEKS_RANGE, "weeks")


class _MonthRule(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Which days of a chosen month fire; the JSON tag is ``by``."""


class MonthDays(_MonthRule, frozen=True, kw_only=True, tag_field="by", tag="day"):
    """Days of the month 1..31; a day past the month's end means its last day."""

    days: tuple[int, ...]

    def __post_init__(self) -> None:
        _check_choice("on.days", self.days, range(1, 32))


class MonthWeekdays(_MonthRule, frozen=True, kw_only=True, tag_field="by", tag="weekday"):
    """The ``weeks`` (first..fourth, last) occurrence of each of ``weekdays`` in the month."""

    weeks: tuple[WeekOfMonth, ...]
    weekdays: tuple[Weekday, ...]

    def __post_init__(self) -> None:
        _check_choice("on.weeks", self.weeks, WEEKS_OF_MONTH)
        _check_choice("on.weekdays", self.weekdays, WEEKDAYS)


class Monthly(_Zoned, frozen=True, kw_only=True, tag_field="kind", tag="monthly"):
    """At ``at`` in ``months`` (1..12) on the days that ``on`` chooses."""

    at: time
    months: tuple[int, ...]
    on: MonthDays | MonthWeekdays

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_wall_time("at", self.at)
        _check_choice("months", self.months, range(1, 13))


Schedule = Immediate | Once | Manual | Hourly | Daily | Weekly | Monthly

_decoder = msgspec.json.Decoder(Schedule)


def decode_schedule(body: bytes) -> Schedule:
    """A schedule from JSON; any problem is an ``InvalidScheduleError``."""
    try:
        return _decoder.decode(body)
    except msgspec.ValidationError as exc:
        raise InvalidScheduleError(f"invalid schedule: {exc}", reason="malformed") from exc
    except msgspec.DecodeError as exc:
        raise InvalidScheduleError(f"schedule is not JSON: {exc}", reason="malformed") from exc


def schedule_from_builtins(value: Any) -> Schedule:
    """A schedule from dicts, lists and strings (e.g. a stored document)."""
    try:
        schedule: Schedule = msgspec.convert(value, Schedule)
    except msgspec.ValidationError as exc:
        raise InvalidScheduleError(f"invalid schedule: {exc}", reason="malformed") from exc
    return schedule
