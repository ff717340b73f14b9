"""Settings of the scheduler, from ``EDGEBACK_SCHEDULER_*`` environment variables."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, ClassVar

from edgeback_core.messages.scheduling import MAX_DUE_PAGE
from edgeback_core.settings import NOT_NEGATIVE, POSITIVE, Settings, between


@dataclass(frozen=True, slots=True, kw_only=True)
class SchedulerSettings(Settings):
    PREFIX: ClassVar[str] = "EDGEBACK_SCHEDULER_"

    tick_s: Annotated[float, between(0.01, 60.0)] = 1.0
    """How often the active instance looks for due jobs (and a standby for the lease)."""
    lease_ttl_s: Annotated[float, between(1.0, 3600.0)] = 10.0
    """The leadership lease's lifetime, renewed every tick: a standby takes over at most
    ``lease_ttl_s + tick_s`` after the active instance died."""
    page_size: Annotated[int, between(1, MAX_DUE_PAGE)] = 200
    """Due jobs fetched (and marked fired) per catalog call."""
    rpc_timeout_s: Annotated[float, POSITIVE] = 5.0
    late_after_s: Annotated[float, NOT_NEGATIVE] = 60.0
    """A fire later than this after its due time is logged as ``schedule.fired_late``
    (``StartRun.late_by_s`` always says how late it is)."""

    restore_late_limit_s: Annotated[float, NOT_NEGATIVE] = 3600.0
    """A restore of schedule ``once`` found due longer ago than this (the scheduler was
    down) is ended ``expired`` instead of queued: it would overwrite disks long after
    the chosen time. 0: no limit, queue it however late."""

    maintenance_interval_s: Annotated[float, NOT_NEGATIVE] = 3600.0
    """How often the active instance applies retention and collects the touched pools
    (``docs/scheduler.md``); 0 turns maintenance off."""
    node_tokens_file: str | None = None
    """JSON ``{"nodes": {"<node url>": "<admin token>"}}``: the storage nodes' admin
    tokens (deleting manifests and GC need them); none: maintenance skips every pool."""
    node_ca_file: str | None = None
    """CA(s) an https storage node's certificate must chain to (default: the system's)."""

    # Tests only: an accelerated clock, shared by every process given the same values.
    test_clock_origin: Annotated[float, NOT_NEGATIVE] = 0.0
    """Unix time at which the simulated clock equals real time plus ``test_clock_offset_s``
    (0: no test clock)."""
    test_clock_offset_s: float = 0.0
    test_clock_speed: Annotated[float, POSITIVE] = 1.0
    """Simulated seconds per real second from ``test_clock_origin`` on."""
