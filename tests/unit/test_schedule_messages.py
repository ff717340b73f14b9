"""The schedule wire union: the documented examples decode, bad input is refused clearly."""

from __future__ import annotations

import re
from datetime import datetime, time
from pathlib import Path
from typing import Any

import msgspec
import pytest

from edgeback_core.errors import InvalidInputError, InvalidScheduleError, UnknownTimeZoneError
from edgeback_core.messages.schedule import (
    Daily,
    Hourly,
    Monthly,
    MonthWeekdays,
    Once,
    Weekly,
    decode_schedule,
    schedule_from_builtins,
)

DOC = Path(__file__).parents[2] / "docs" / "schedules.md"
KINDS = {"immediate", "once", "manual", "hourly", "daily", "weekly", "monthly"}


def doc_examples() -> list[str]:
    return re.findall(r"```json\n(.*?)\n```", DOC.read_text(), flags=re.DOTALL)


def test_every_documented_example_decodes_and_round_trips() -> None:
    examples = doc_examples()
    assert {msgspec.json.decode(e)["kind"] for e in examples} == KINDS
    for example in examples:
        schedule = decode_schedule(example.encode())
        assert decode_schedule(msgspec.json.encode(schedule)) == schedule
        assert msgspec.json.decode(msgspec.json.encode(schedule)) == msgspec.json.decode(example)


def test_schedules_are_frozen_and_hashable() -> None:
    weekly = Weekly(tz="UTC", at=time(1), weekdays=("mon",))
    assert hash(weekly) == hash(Weekly(tz="UTC", at=time(1), weekdays=("mon",)))
    with pytest.raises(AttributeError):
        weekly.every = 2  # type: ignore[misc]


def test_from_builtins_takes_stored_datetimes() -> None:
    once = schedule_from_builtins({"kind": "once", "tz": "UTC", "at": datetime(2025, 1, 2, 3)})
    assert once == Once(tz="UTC", at=datetime(2025, 1, 2, 3))


BASE: dict[str, dict[str, Any]] = {
    "hourly": {"kind": "hourly", "tz": "UTC", "start": "08:00:00", "end": "18:00:00", "every": 2},
    "daily": {"kind": "daily", "tz": "UTC", "at": "02:00:00"},
    "weekly": {"kind": "weekly", "tz": "UTC", "at": "02:00:00", "weekdays": ["mon"]},
    "monthly": {
        "kind": "monthly",
        "tz": "UTC",
        "at": "02:00:00",
        "months": [1],
        "on": {"by": "day", "days": [1]},
    },
}


@pytest.mark.parametrize(
    ("kind", "change", "field", "reason"),
    [
        ("hourly", {"every": 0}, "every", "out_of_range"),
        ("hourly", {"every": 24}, "every", "out_of_range"),
        ("hourly", {"every": 1440, "unit": "minutes"}, "every", "out_of_range"),
        ("hourly", {"end": "07:00:00"}, "end", "window_inverted"),
        ("hourly", {"end": "08:00:00"}, "end", "window_inverted"),
        ("hourly", {"start": "08:00:00+01:00"}, "start", "has_offset"),
        ("daily", {"every": 366}, "every", "out_of_range"),
        ("daily", {"at": "02:00:00.5"}, "at", "sub_second"),
        ("weekly", {"weekdays": []}, "weekdays", "empty"),
        ("weekly", {"weekdays": ["mon", "mon"]}, "weekdays", "duplicate"),
        ("weekly", {"every": 53}, "every", "out_of_range"),
        ("monthly", {"months": [0]}, "months", "out_of_range"),
        ("monthly", {"months": [13]}, "months", "out_of_range"),
        ("monthly", {"months": []}, "months", "empty"),
        ("monthly", {"on": {"by": "day", "days": [32]}}, "on.days", "out_of_range"),
        ("monthly", {"on": {"by": "day", "days": [0]}}, "on.days", "out_of_range"),
        ("monthly", {"on": {"by": "weekday", "weeks": [], "weekdays": []}}, "on.weeks", "empty"),
    ],
)
def test_bad_values_are_refused_with_field_and_reason(
    kind: str, change: dict[str, Any], field: str, reason: str
) -> None:
    with pytest.raises(InvalidScheduleError) as caught:
        decode_schedule(msgspec.json.encode(BASE[kind] | change))
    assert caught.value.code == "invalid_schedule"
    assert isinstance(caught.value, InvalidInputError)
    assert (caught.value.details["field"], caught.value.details["reason"]) == (field, reason)


@pytest.mark.parametrize("tz", ["Mars/Olympus", "", "../../etc/passwd", "Europe/berlin "])
def test_unknown_time_zones_are_refused(tz: str) -> None:
    with pytest.raises(UnknownTimeZoneError) as caught:
        decode_schedule(msgspec.json.encode(BASE["daily"] | {"tz": tz}))
    assert caught.value.code == "unknown_time_zone"
    with pytest.raises(UnknownTimeZoneError):
        Daily(tz=tz, at=time(2))


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b'{"kind": "yearly"}',
        b'{"kind": "daily", "tz": "UTC"}',
        b'{"kind": "daily", "tz": "UTC", "at": "02:00:00", "colour": "red"}',
        b'{"kind": "daily", "tz": "UTC", "at": "2am"}',
        b'{"kind": "weekly", "tz": "UTC", "at": "02:00:00", "weekdays": ["monday"]}',
        b'{"kind": "monthly", "tz": "UTC", "at": "02:00:00", "months": [1], "on": {"by": "x"}}',
    ],
)
def test_malformed_bodies_are_invalid_schedules(body: bytes) -> None:
    with pytest.raises(InvalidScheduleError) as caught:
        decode_schedule(body)
    assert caught.value.details["reason"] == "malformed"


def test_python_construction_is_checked_too() -> None:
    with pytest.raises(InvalidScheduleError, match="window"):
        Hourly(tz="UTC", start=time(9), end=time(8), every=1)
    with pytest.raises(InvalidScheduleError, match="weekdays"):
        Monthly(
            tz="UTC",
            at=time(1),
            months=(1,),
            on=MonthWeekdays(weeks=("first",), weekdays=("funday",)),  # type: ignore[arg-type]
        )
