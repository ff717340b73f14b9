"""The rules of a backup job definition: ranges of every option and the rules between
fields, checked all at once so a user sees every problem in one answer.

Pure (no I/O). References (does the platform, the backup host exist?) are the
catalog's business; this module only knows what a well-formed ``JobSpec`` is.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from urllib.parse import urlsplit

from edgeback_core.errors import InvalidInputError
from edgeback_core.messages.jobs import (
    MAX_KEEP,
    OPTION_RANGES,
    JobOptions,
    JobSpec,
    Script,
    SpeedWindow,
)

MAX_SELECTIONS = 1000
MAX_EXCLUSIONS = 100
MAX_WINDOWS = 24
MAX_ID = 128
MINUTES_PER_DAY = 24 * 60

INT_RANGES = OPTION_RANGES  # stated in the schema by messages.jobs, checked here
SCRIPT_TIMEOUT_S = (1, 86400)
MAX_RATE = 1 << 20  # in the window's unit: 1 Mi GiB/s is no limit a link reaches

_HHMM = re.compile(r"([01]\d|2[0-3]):([0-5]\d)")
_POOL_NAME = re.compile(r"[A-Za-z0-9_.\-]{1,64}")
_GLOB = re.compile(r"[^\x00-\x1f]{1,128}")


def check(spec: JobSpec) -> JobSpec:
    """``spec`` if it is well formed, else ``InvalidInputError`` naming every problem."""
    found = problems(spec)
    if found:
        raise InvalidInputError("invalid job: " + "; ".join(found), problems=found)
    return spec


def problems(spec: JobSpec) -> list[str]:
    """Every problem of ``spec`` as ``"<field path>: <what is wrong>"``; empty if none."""
    return [*_content(spec), *_target(spec), *_options(spec.options, spec.type)]


def _content(spec: JobSpec) -> Iterator[str]:
    vms = spec.content.vms
    if not vms:
        yield "content.vms: choose at least one platform, physical host or VM"
    if len(vms) > MAX_SELECTIONS:
        yield f"content.vms: at most {MAX_SELECTIONS} selections"
    for i, sel in enumerate(vms):
        for name, value in (
            ("platform_id", sel.platform_id),
            ("physical_host_id", sel.physical_host_id),
            ("vm_id", sel.vm_id),
        ):
            if value is not None and not _is_id(value):
                yield f"content.vms[{i}].{name}: 1-{MAX_ID} printable characters"
    if len(set(vms)) != len(vms):
        yield "content.vms: the same selection appears twice"
    excl = spec.content.exclude_names
    if len(excl) > MAX_EXCLUSIONS:
        yield f"content.exclude_names: at most {MAX_EXCLUSIONS} patterns"
    for i, pattern in enumerate(excl):
        if not _GLOB.fullmatch(pattern):
            yield f"content.exclude_names[{i}]: 1-128 printable characters"


def _target(spec: JobSpec) -> Iterator[str]:
    if not _is_id(spec.target.host_id):
        yield f"target.host_id: 1-{MAX_ID} printable characters"
    pool = spec.target.pool
    yield from pool_ref_problems(pool.node_url, pool.name, prefix="target.pool.")


def pool_ref_problems(node_url: str, name: str, *, prefix: str = "") -> Iterator[str]:
    """What is wrong with a storage node's URL and a pool name on it (nothing: fine)."""
    try:
        url = urlsplit(node_url)
        hostname = url.hostname
    except ValueError:  # e.g. an unclosed "[" or a port out of range
        url, hostname = urlsplit(""), None
    if url.scheme not in ("http", "https") or not hostname or url.query or url.fragment:
        yield f"{prefix}node_url: an http(s)://host[:port][/path] URL"
    if not _POOL_NAME.fullmatch(name):
        yield f"{prefix}name: 1-64 of A-Z a-z 0-9 _ . -"


def _options(opts: JobOptions, job_type: str) -> Iterator[str]:
    for name, (low, high) in INT_RANGES.items():
        value = getattr(opts, name)
        if not low <= value <= high:
            yield f"options.{name}: {value} is outside {low}-{high}"
    if opts.skip_free_percent is not None and not 0 <= opts.skip_free_percent < 100:
        yield "options.skip_free_percent: 0 to below 100, or null for never"
    if opts.skip_free_gib is not None and not 0 <= opts.skip_free_gib <= 1 << 30:
        yield "options.skip_free_gib: 0 or more, or null for never"
    if job_type != "full" and not opts.keep_latest_snapshot:
        yield f"options.keep_latest_snapshot: a {job_type} backup needs the latest snapshot kept"
    yield from _windows("options.backup_speed", opts.backup_speed)
    yield from _windows("options.transfer_speed", opts.transfer_speed)
    for rule in ("keep_last", "keep_daily", "keep_weekly", "keep_monthly"):
        count = getattr(opts.retention, rule)
        if count is not None and not 1 <= count <= MAX_KEEP:
            yield f"options.retention.{rule}: 1-{MAX_KEEP}, or null for no such rule"
    for name in ("precondition", "pre_script", "post_script"):
        script = getattr(opts, name)
        if script is not None:
            yield from _script(f"options.{name}", script)


def _windows(field: str, windows: list[SpeedWindow]) -> Iterator[str]:
    if len(windows) > MAX_WINDOWS:
        yield f"{field}: at most {MAX_WINDOWS} time windows"
    spans: list[tuple[int, set[int]]] = []
    for i, window in enumerate(windows):
        bad = [t for t in (window.start, window.end) if not _HHMM.fullmatch(t)]
        if bad:
            yield f"{field}[{i}]: {', '.join(bad)} is not a HH:MM time"
        if not 0 <= window.rate <= MAX_RATE:
            yield f"{field}[{i}].rate: 0 (unlimited) to {MAX_RATE}"
        if not bad:
            spans.append((i, set(minutes_of(window))))
    for n, (i, mine) in enumerate(spans):
        for j, other in spans[n + 1 :]:
            if mine & other:
                yield f"{field}[{i}] and [{j}]: the time windows overlap"


def minutes_of(window: SpeedWindow) -> range | list[int]:
    """The minutes of the day (0-1439) a well-formed window covers."""
    start, end = _minute(window.start), _minute(window.end)
    if start == end:
        return range(MINUTES_PER_DAY)
    if start < end:
        return range(start, end)
    return [*range(start, MINUTES_PER_DAY), *range(end)]


def _minute(hhmm: str) -> int:
    hours, minutes = hhmm.split(":")
    return int(hours) * 60 + int(minutes)


def _script(field: str, script: Script) -> Iterator[str]:
    if not script.command.strip() or len(script.command) > 4096 or "\x00" in script.command:
        yield f"{field}.command: 1-4096 characters, not blank, no NUL"
    low, high = SCRIPT_TIMEOUT_S
    if not low <= script.timeout_s <= high:
        yield f"{field}.timeout_s: {script.timeout_s} is outside {low}-{high}"


def _is_id(value: str) -> bool:
    return 0 < len(value) <= MAX_ID and value.isprintable() and value.strip() == value
