"""``edgeback run watch`` and ``edgeback restore watch``: follow a run's (or restore's)
live progress stream (``GET /runs/{id}/progress``, server-sent events) and draw it
until it ends.

:class:`Tracker` turns the events into what the bar shows (pure): the bytes done and
to do of each VM (runs: ``RunProgress`` per VM, or the run's own) or each target disk
(restores: ``RestoreProgress``), the rate of those still going, the ETA from both;
a restore's total starts from its restore points' disk sizes.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import msgspec

from edgeback_cli.apiclient import ApiClient
from edgeback_cli.display import ProgressDisplay
from edgeback_cli.sse import follow
from edgeback_core.errors import ErrorBody, error_of

FINAL_STATES = frozenset({"succeeded", "failed", "partially_succeeded", "cancelled"})
"""A run's states once it ended."""
ENDED = FINAL_STATES | {"expired"}
"""A run's or a restore's (whose code may expire unused)."""
_VM_ENDS = frozenset({"VmFinished", "VmSkipped", "VmRefused", "RestoreVmFinished"})
_RUN_KEY = "run"


@dataclass(frozen=True, slots=True)
class Part:
    """One VM (runs) or target disk (restores): bytes done, to do, and its rate."""

    done: int
    total: int
    rate_bps: float


@dataclass(frozen=True, slots=True, kw_only=True)
class View:
    """The progress at one moment (what ``display.Progress`` asks for)."""

    state: str
    done_bytes: int
    total_bytes: int
    elapsed_s: float
    rate_bps: float
    vms_done: int
    vms_total: int

    @property
    def final(self) -> bool:
        return self.state in ENDED

    @property
    def fraction(self) -> float:
        if self.final:
            return 1.0
        if self.total_bytes:
            return min(1.0, self.done_bytes / self.total_bytes)
        return self.vms_done / self.vms_total if self.vms_total else 0.0

    @property
    def eta_s(self) -> float | None:
        if self.final:
            return 0.0
        if self.rate_bps <= 0 or not self.total_bytes:
            return None
        return max(0.0, self.total_bytes - self.done_bytes) / self.rate_bps

    def tail(self) -> str:
        return f"{self.vms_done}/{self.vms_total} VMs {self.state}"


def _stamp(value: Any) -> float | None:
    if not isinstance(value, str):
        return None
    return datetime.fromisoformat(value).timestamp()


@dataclass(slots=True)
class Tracker:
    """A run's or restore's progress, from its events (their JSON) in order. Pure."""

    total_hint: int = 0
    state: str = "running"
    vms_total: int = 0
    vms_done: int = 0
    started: float | None = None
    last: float | None = None
    parts: dict[str, Part] = field(default_factory=dict)

    def add(self, event: Mapping[str, Any]) -> None:
        kind, at = event.get("type", ""), _stamp(event.get("at"))
        if at is not None:
            self.started = at if self.started is None else min(self.started, at)
            self.last = at if self.last is None else max(self.last, at)
        if kind in {"RunStarted", "RestoreStarted"}:
            self.vms_total = int(event.get("vm_count") or 0)
        elif kind == "RunProgress":
            vm = event.get("vm")
            key = _RUN_KEY if vm is None else str(vm.get("vm_id"))
            self.parts[key] = _part(event)
            if vm is None:
                self.vms_done = int(event.get("vms_done") or 0)
                self.vms_total = int(event.get("vms_total") or self.vms_total)
        elif kind == "RestoreProgress":
            self.parts[f"{event.get('backup_set_id')}/{event.get('disk_id')}"] = _part(event)
        elif kind in _VM_ENDS:
            self.vms_done += 1
            self._settle(str(event.get("backup_set_id") or (event.get("vm") or {}).get("vm_id")))
        elif kind in {"RunFinished", "RestoreFinished"}:
            self.state = str(event.get("outcome") or self.state)

    def _settle(self, prefix: str) -> None:
        """A VM ended: its parts are done as they are and go no faster."""
        for key, part in list(self.parts.items()):
            if key == prefix or key.startswith(prefix + "/"):
                self.parts[key] = Part(part.done, part.done, 0.0)

    def end(self, state: str) -> None:
        self.state = state

    def view(self, now: float) -> View:
        parts = [self.parts[_RUN_KEY]] if _RUN_KEY in self.parts else list(self.parts.values())
        done = sum(p.done for p in parts)
        total = max(sum(p.total for p in parts), self.total_hint, done)
        start = self.started if self.started is not None else now
        until = (self.last or now) if self.state in ENDED else now
        return View(
            state=self.state,
            done_bytes=done,
            total_bytes=total,
            elapsed_s=max(0.0, until - start),
            rate_bps=sum(p.rate_bps for p in parts),
            vms_done=self.vms_done,
            vms_total=max(self.vms_total, self.vms_done),
        )


def _part(event: Mapping[str, Any]) -> Part:
    return Part(
        int(event.get("bytes_done") or 0),
        int(event.get("bytes_total") or 0),
        float(event.get("rate_bps") or 0.0),
    )


def watch(
    client: ApiClient,
    path: str,
    tracker: Tracker,
    label: str,
    *,
    clock: Callable[[], float] = time.time,
) -> str:
    """Follow the progress stream at ``path`` until it ends, drawing it on stderr; the
    state it ended in."""
    display = ProgressDisplay(label, sys.stderr)
    for sse in follow(client, path):
        if sse.event == "error":
            raise error_of(msgspec.convert(sse.data, ErrorBody))
        if sse.event == "end":
            tracker.end(str(sse.data["state"]))
        elif isinstance(sse.data, dict) and sse.event != "lagged":
            tracker.add(sse.data)
        current = tracker.view(clock())
        display(current, tail=current.tail())
    return tracker.state
