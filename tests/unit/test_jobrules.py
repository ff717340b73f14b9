"""Backup job definitions: defaults of the guide, ranges, and every problem named."""

from __future__ import annotations

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from edgeback_core import jobrules
from edgeback_core.errors import InvalidInputError
from edgeback_core.messages.base import decoder, encode
from edgeback_core.messages.jobs import (
    JobContent,
    JobOptions,
    JobSpec,
    JobTarget,
    PoolRef,
    Script,
    SpeedWindow,
    VmSelection,
)


def spec(**options: object) -> JobSpec:
    return JobSpec(
        name="nightly",
        content=JobContent(vms=[VmSelection(platform_id="p1", vm_id="vm-1")]),
        target=JobTarget(host_id="h1", pool=PoolRef(node_url="http://node:8080", name="pool1")),
        options=msgspec.structs.replace(JobOptions(), **options),
    )


def test_the_guide_defaults() -> None:
    opts = JobOptions()
    assert (opts.compression, opts.dedup_mode) == (True, "agent")
    assert (opts.parallel_vms, opts.vms_per_physical_host) == (2, 2)
    assert (opts.disks_per_vm, opts.streams_per_disk) == (2, 2)
    assert (opts.effective_data_only, opts.keep_latest_snapshot) == (True, True)
    assert (opts.reconnect_minutes, opts.resume_buffer_mib) == (10, 10)
    assert (opts.request_retries, opts.vm_retries) == (15, 3)
    assert jobrules.problems(spec()) == []


def test_a_minimal_body_decodes_with_every_default() -> None:
    body = msgspec.json.encode(
        {
            "name": "j",
            "content": {"vms": [{"platform_id": "p"}]},
            "target": {"host_id": "h", "pool": {"node_url": "https://n", "name": "p"}},
        }
    )
    decoded = decoder(JobSpec).decode(body)
    assert decoded.options == JobOptions() and decoded.type == "full"
    assert decoder(JobSpec).decode(encode(decoded)) == decoded


def test_unknown_option_is_refused_by_the_decoder() -> None:
    body = msgspec.json.encode({"name": "j", "options": {"paralel_vms": 3}})
    with pytest.raises(msgspec.ValidationError, match="paralel_vms"):
        decoder(JobSpec).decode(body)


def test_every_problem_is_named_at_once() -> None:
    bad = msgspec.structs.replace(
        spec(
            parallel_vms=0,
            vms_per_physical_host=6,
            reconnect_minutes=61,
            keep_latest_snapshot=False,
            pre_script=Script(command=" ", timeout_s=0),
            backup_speed=[SpeedWindow(start="25:00", rate=-1)],
        ),
        type="incremental",
        content=JobContent(),
    )
    with pytest.raises(InvalidInputError) as err:
        jobrules.check(bad)
    message = err.value.message
    for field in (
        "content.vms",
        "options.parallel_vms",
        "options.vms_per_physical_host",
        "options.reconnect_minutes",
        "options.keep_latest_snapshot",
        "options.pre_script.command",
        "options.pre_script.timeout_s",
        "options.backup_speed[0]: 25:00",
        "options.backup_speed[0].rate",
    ):
        assert field in message, field
    assert err.value.code == "invalid_input"
    assert len(err.value.details["problems"]) == 9


@given(st.sampled_from(sorted(jobrules.INT_RANGES)), st.integers(-1000, 100_000))
def test_integer_options_are_checked_against_their_range(name: str, value: int) -> None:
    low, high = jobrules.INT_RANGES[name]
    found = jobrules.problems(spec(**{name: value}))
    assert (found == []) == (low <= value <= high)
    if found:
        assert found == [f"options.{name}: {value} is outside {low}-{high}"]


times = st.builds(lambda h, m: f"{h:02d}:{m:02d}", st.integers(0, 23), st.integers(0, 59))


@given(st.lists(st.tuples(times, times), min_size=1, max_size=4))
def test_windows_are_refused_exactly_when_they_share_a_minute(
    pairs: list[tuple[str, str]],
) -> None:
    windows = [SpeedWindow(start=s, end=e, rate=1) for s, e in pairs]
    covered = [set(jobrules.minutes_of(w)) for w in windows]
    overlap = any(a & b for i, a in enumerate(covered) for b in covered[i + 1 :])
    found = jobrules.problems(spec(transfer_speed=windows))
    assert bool(found) == overlap
    assert all("overlap" in p for p in found)


def test_a_window_across_midnight_and_a_whole_day() -> None:
    night = SpeedWindow(start="22:00", end="06:00")
    assert len(jobrules.minutes_of(night)) == 8 * 60
    assert len(jobrules.minutes_of(SpeedWindow())) == 24 * 60
    day = SpeedWindow(start="06:00", end="22:00", rate=5, unit="GiB/s")
    assert jobrules.problems(spec(backup_speed=[night, day])) == []


@pytest.mark.parametrize(
    ("url", "ok"),
    [
        ("http://node:8080", True),
        ("https://10.0.0.2/base", True),
        ("ftp://node", False),
        ("node:8080", False),
        ("http://", False),
        ("http://n/?x=1", False),
    ],
)
def test_pool_urls(url: str, ok: bool) -> None:
    target = JobTarget(host_id="h1", pool=PoolRef(node_url=url, name="p"))
    assert (jobrules.problems(msgspec.structs.replace(spec(), target=target)) == []) == ok


def test_selections_must_be_distinct_and_ids_printable() -> None:
    sel = VmSelection(platform_id="p1", vm_id="v")
    content = JobContent(vms=[sel, sel, VmSelection(platform_id=" p")], exclude_names=[""])
    found = jobrules.problems(msgspec.structs.replace(spec(), content=content))
    assert found == [
        "content.vms[2].platform_id: 1-128 printable characters",
        "content.vms: the same selection appears twice",
        "content.exclude_names[0]: 1-128 printable characters",
    ]


def test_skip_thresholds_and_full_without_kept_snapshot() -> None:
    assert jobrules.problems(spec(skip_free_percent=10, skip_free_gib=500)) == []
    assert jobrules.problems(spec(keep_latest_snapshot=False)) == []
    assert len(jobrules.problems(spec(skip_free_percent=100, skip_free_gib=-1))) == 2
