"""``edgeback run watch``: follow a run by polling its detail (``GET /runs/{id}``)
every few seconds and draw its progress until it ends.

The API has no live progress stream yet, so the bytes come from the run's totals
(bytes of its VMs' disks read, sparse or unchanged so far) and the total is estimated
from the VMs finished: after 2 of 5 VMs and 40 GiB, about 100 GiB. The rate is the
bytes since the run started over the time since then. :func:`view` is pure.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from edgeback_cli.apiclient import ApiClient
from edgeback_cli.display import ProgressDisplay

FINAL_STATES = frozenset({"succeeded", "failed", "partially_succeeded", "cancelled"})
VM_DONE_STATES = frozenset({"succeeded", "failed", "skipped", "refused"})


@dataclass(frozen=True, slots=True, kw_only=True)
class RunView:
    """A run's progress at one poll (the shape ``display.Progress`` asks for)."""

    state: str
    done_bytes: int
    total_bytes: int
    elapsed_s: float
    rate_bps: float
    vms_done: int
    vms_total: int

    @property
    def final(self) -> bool:
        return self.state in FINAL_STATES

    @property
    def fraction(self) -> float:
        if self.final:
            return 1.0
        return self.vms_done / self.vms_total if self.vms_total else 0.0

    @property
    def eta_s(self) -> float | None:
        if self.final:
            return 0.0
        if self.rate_bps <= 0 or not self.vms_done:
            return None
        return max(0.0, self.total_bytes - self.done_bytes) / self.rate_bps

    def tail(self) -> str:
        return f"{self.vms_done}/{self.vms_total} VMs {self.state}"


def _stamp(value: Any) -> float | None:
    if not isinstance(value, str):
        return None
    return datetime.fromisoformat(value).timestamp()


def view(detail: Mapping[str, Any], now: float) -> RunView:
    """The progress ``detail`` (a ``RunDetail`` as JSON) shows at wall time ``now``."""
    run, stats, vms = detail["run"], detail.get("stats") or {}, detail.get("vms") or []
    done = sum(int(stats.get(k) or 0) for k in ("bytes_read", "bytes_sparse", "bytes_unchanged"))
    vms_done = sum(1 for vm in vms if vm.get("state") in VM_DONE_STATES)
    total = round(done * len(vms) / vms_done) if vms_done else done
    started = _stamp(run.get("created_at"))
    elapsed = max(0.0, now - started) if started is not None else 0.0
    if run["state"] in FINAL_STATES and _stamp(run.get("updated_at")) is not None:
        elapsed = max(0.0, (_stamp(run["updated_at"]) or 0.0) - (started or 0.0))
    return RunView(
        state=run["state"],
        done_bytes=done,
        total_bytes=max(total, done),
        elapsed_s=elapsed,
        rate_bps=done / elapsed if elapsed > 0 else 0.0,
        vms_done=vms_done,
        vms_total=len(vms),
    )


def watch(
    client: ApiClient,
    run_id: str,
    *,
    interval_s: float = 2.0,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.time,
) -> Mapping[str, Any]:
    """Poll the run until it ends, drawing its progress on stderr; its last detail."""
    display = ProgressDisplay(f"run {run_id[:12]}", sys.stderr, every_s=interval_s * 5)
    while True:
        detail: Mapping[str, Any] = client.request("GET", f"/runs/{run_id}")
        current = view(detail, clock())
        display(current, tail=current.tail())
        if current.final:
            return detail
        sleep(interval_s)
