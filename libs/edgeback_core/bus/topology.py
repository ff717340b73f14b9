"""All AMQP topology of edgeback in one place: exchanges, queues, their arguments.

Exchanges: ``edgeback.commands`` and ``edgeback.events`` (topic, durable). Work queues
are quorum queues named ``<service>.<purpose>``; each dead-letters into ``<queue>.dlq``
through the default exchange (no binding: a backup host's broker user needs no right on
a shared dead-letter exchange, where it could bind its queue to another queue's dead
letters) and retries through
``<queue>.retry.<ms>`` delay queues. Routing keys read ``<domain>.<kind>.<name>``
(runs: ``run.<host_id>``).
No other module declares a queue or a routing key (``tests/unit/test_bus_names.py``
fails if one does); RPC names live with their messages in ``edgeback_core.messages``.
A ``prefix`` namespaces every name so tests (and several deployments on one broker)
never collide. Nothing here does I/O.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from edgeback_core.ids import BackupHostId
from edgeback_core.settings import dead_letter_strategy

ExchangeKind = Literal["commands", "events"]

RETRIES_HEADER = "x-edgeback-retries"
ROUTING_KEY_HEADER = "x-edgeback-routing-key"
PUBLISHER_HEADER = "x-edgeback-user-id"
"""On a retried message: the broker user of its first publisher (the retry itself is
published by the consumer, so the broker sets the consumer's user)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class QueueSpec:
    """A work queue: what it binds to and how failed messages are retried.

    ``delivery_limit`` bounds redeliveries of a message whose handler crashes (a bug):
    past it the broker dead-letters the message. ``retry_delays`` are the waits before
    the 1st, 2nd, ... retry of a ``TransientError`` (the last one repeats);
    after ``max_retries`` retries the message is dead-lettered.
    """

    name: str
    exchange: ExchangeKind
    bindings: tuple[str, ...]
    delivery_limit: int = 5
    retry_delays: tuple[float, ...] = (1.0, 5.0, 30.0)
    max_retries: int = 3
    prefetch: int = 10

    def __post_init__(self) -> None:
        if not self.retry_delays or min(self.retry_delays) <= 0:
            raise ValueError("retry_delays must be positive and not empty")
        if self.delivery_limit < 0 or self.max_retries < 0 or self.prefetch < 1:
            raise ValueError("delivery_limit, max_retries >= 0 and prefetch >= 1")

    def retry_delay(self, retries_done: int) -> float:
        """Seconds to wait before retry number ``retries_done + 1``."""
        return self.retry_delays[min(retries_done, len(self.retry_delays) - 1)]


# --- routing keys (``<domain>.<kind>.<name>``) ---------------------------------------------
HOST_HEARTBEAT = "host.event.heartbeat"
"""Event: a worker announces its backup host (``HostHeartbeat``)."""

# Backup runs (edgeback_core.messages.runs):
# StartRun goes to the catalog; PlanRun and the per-VM tasks go to the job's backup
# host (``run_routing_key(host_id)``, consumed from ``worker_runs(host_id)``).
START_RUN = "run.command.start"
RUN_STARTED = "run.event.started"
RUN_SKIPPED = "run.event.skipped"
RUN_PROGRESS = "run.event.progress"
RUN_FINISHED = "run.event.finished"
VM_STARTED = "run.event.vm_started"
VM_FINISHED = "run.event.vm_finished"
VM_SKIPPED = "run.event.vm_skipped"
VM_REFUSED = "run.event.vm_refused"
BACKUP_SET_CREATED = "backup.event.set_created"
RUN_EVENT_KEYS: dict[str, str] = {
    "RunStarted": RUN_STARTED,
    "RunSkipped": RUN_SKIPPED,
    "RunProgress": RUN_PROGRESS,
    "RunFinished": RUN_FINISHED,
    "VmStarted": VM_STARTED,
    "VmFinished": VM_FINISHED,
    "VmSkipped": VM_SKIPPED,
    "VmRefused": VM_REFUSED,
    "BackupSetCreated": BACKUP_SET_CREATED,
}
"""Routing key of each run event, by its type tag."""

# Restores (edgeback_core.messages.restores): PlanRestore and RestoreVmTask ride the
# host's run key; the events are published by its workers (RestoreFinished: the catalog).
RESTORE_STARTED = "restore.event.started"
RESTORE_VM_STARTED = "restore.event.vm_started"
RESTORE_PROGRESS = "restore.event.progress"
RESTORE_VM_FINISHED = "restore.event.vm_finished"
RESTORE_FINISHED = "restore.event.finished"
RESTORE_EVENT_KEYS: dict[str, str] = {
    "RestoreStarted": RESTORE_STARTED,
    "RestoreVmStarted": RESTORE_VM_STARTED,
    "RestoreProgress": RESTORE_PROGRESS,
    "RestoreVmFinished": RESTORE_VM_FINISHED,
    "RestoreFinished": RESTORE_FINISHED,
}
"""Routing key of each restore event, by its type tag."""

# Maintenance (edgeback_core.messages.retention), published by the active scheduler:
BACKUP_SET_REMOVED = "backup.event.set_removed"
POOL_COLLECTED = "pool.event.collected"
MAINTENANCE_EVENT_KEYS: dict[str, str] = {
    "BackupSetRemoved": BACKUP_SET_REMOVED,
    "PoolCollected": POOL_COLLECTED,
}
"""Routing key of each maintenance event, by its type tag."""

ROUTING_KEYS: tuple[str, ...] = (
    HOST_HEARTBEAT,
    START_RUN,
    *RUN_EVENT_KEYS.values(),
    *RESTORE_EVENT_KEYS.values(),
    *MAINTENANCE_EVENT_KEYS.values(),
)
"""Every fixed routing key a service publishes with (``run_routing_key`` adds one per host)."""


def run_routing_key(host_id: BackupHostId) -> str:
    """Routing key of the runs (VM tasks) for backup host ``host_id`` (``docs/runs.md``)."""
    return f"run.{host_id}"


# --- work queues (``<service>.<purpose>``) ---------------------------------------------------
CATALOG_HEARTBEATS = QueueSpec(
    name="catalog.heartbeats", exchange="events", bindings=(HOST_HEARTBEAT,), prefetch=20
)
"""The catalog registers backup hosts and keeps them online from their heartbeats."""

CATALOG_RUN_STARTS = QueueSpec(
    name="catalog.run_starts", exchange="commands", bindings=(START_RUN,)
)
"""The catalog creates the run a ``StartRun`` asks for and sends ``PlanRun`` to its host."""

CATALOG_RUN_LOG = QueueSpec(
    name="catalog.run_log",
    exchange="events",
    bindings=tuple(RUN_EVENT_KEYS.values()),
    prefetch=20,
)
"""The catalog records every run event in the run's event log (``catalog.run.events``)."""

CATALOG_RESTORE_LOG = QueueSpec(
    name="catalog.restore_log",
    exchange="events",
    bindings=tuple(RESTORE_EVENT_KEYS.values()),
    prefetch=20,
)
"""The catalog keeps every restore event in the restore's log (``catalog.restore.events``)."""

QUEUES: tuple[QueueSpec, ...] = (
    CATALOG_HEARTBEATS,
    CATALOG_RUN_STARTS,
    CATALOG_RUN_LOG,
    CATALOG_RESTORE_LOG,
)
"""Every fixed work queue a service consumes (``docs/bus.md`` lists them, a test holds
the docs to this and to ``PER_HOST_QUEUES``)."""


LIVE_EVENT_KEYS: tuple[str, ...] = (*RUN_EVENT_KEYS.values(), *RESTORE_EVENT_KEYS.values())
"""What the API follows live for its progress streams (``Bus.subscribe``)."""


def live_queue(owner: str, bindings: tuple[str, ...]) -> QueueSpec:
    """A live subscription's queue (``<p>live.<owner>``): the subscriber's own, deleted with
    its connection, never retried; ``Bus.subscribe`` declares it."""
    if not owner or any(c in owner for c in ".*#"):
        raise ValueError(f"invalid live subscription owner: {owner!r}")
    return QueueSpec(name=f"live.{owner}", exchange="events", bindings=bindings, max_retries=0)


def worker_runs(host_id: BackupHostId) -> QueueSpec:
    """Runs for one backup host; every worker of that host competes on it."""
    if not host_id or any(c in host_id for c in ".*#"):
        raise ValueError(f"invalid host id for a routing key: {host_id!r}")
    return QueueSpec(
        name=f"worker.runs.{host_id}",
        exchange="commands",
        bindings=(run_routing_key(host_id),),
        prefetch=1,
    )


PER_HOST_QUEUES: tuple[Callable[[BackupHostId], QueueSpec], ...] = (worker_runs,)
"""Work queues declared once per backup host."""


@dataclass(frozen=True, slots=True)
class Topology:
    """Names and arguments of every exchange and queue, under one ``prefix``."""

    prefix: str = ""
    dead_letter_strategy: str = field(default_factory=dead_letter_strategy)
    """``at-least-once`` (production) or ``at-most-once`` (the dev and test broker, whose
    tests delete thousands of queues: ``docs/bus.md``, "Dead-letter strategy")."""

    def exchange(self, kind: ExchangeKind) -> str:
        return f"{self.prefix}edgeback.{kind}"

    def queue(self, spec: QueueSpec) -> str:
        return f"{self.prefix}{spec.name}"

    def dlq(self, spec: QueueSpec) -> str:
        return f"{self.queue(spec)}.dlq"

    def retry_queue(self, spec: QueueSpec, delay: float) -> str:
        return f"{self.queue(spec)}.retry.{_millis(delay)}ms"

    def retry_queues(self, spec: QueueSpec) -> dict[float, str]:
        """One delay queue per distinct delay (a queue-wide TTL keeps FIFO expiry exact)."""
        return {d: self.retry_queue(spec, d) for d in sorted(set(spec.retry_delays))}

    def rpc_queue(self, name: str) -> str:
        return f"{self.prefix}rpc.{name}"

    def queue_arguments(self, spec: QueueSpec) -> dict[str, str | int]:
        """Quorum queue with a delivery limit, dead-lettering at-least-once to the DLQ
        (through the default exchange, by the DLQ's name).

        ``at-least-once`` (the default) keeps a dead-lettered message in the source queue
        until the DLQ confirmed it (``at-most-once`` may lose it if the DLQ is
        unavailable); the broker requires ``x-overflow: reject-publish`` with it. Needs
        RabbitMQ >= 3.10.
        """
        return {
            "x-queue-type": "quorum",
            "x-delivery-limit": spec.delivery_limit,
            "x-dead-letter-exchange": "",
            "x-dead-letter-routing-key": self.dlq(spec),
            "x-dead-letter-strategy": self.dead_letter_strategy,
            "x-overflow": "reject-publish",
        }

    def live_arguments(self, backlog: int) -> dict[str, str | int]:
        """A live queue keeps the newest ``backlog`` messages: a slow subscriber loses
        the oldest rather than growing the broker's memory."""
        return {"x-max-length": backlog, "x-overflow": "drop-head"}

    def dlq_arguments(self) -> dict[str, str | int]:
        return {"x-queue-type": "quorum"}

    def retry_queue_arguments(self, spec: QueueSpec, delay: float) -> dict[str, str | int]:
        """A parking queue: messages expire after ``delay`` back into the work queue."""
        return {
            "x-message-ttl": _millis(delay),
            "x-dead-letter-exchange": "",
            "x-dead-letter-routing-key": self.queue(spec),
        }


def _millis(seconds: float) -> int:
    return max(1, round(seconds * 1000))


def topic_matches(pattern: str, routing_key: str) -> bool:
    """AMQP topic matching: ``*`` is exactly one word, ``#`` is zero or more words."""
    return _match(pattern.split("."), routing_key.split("."))


def _match(pattern: list[str], words: list[str]) -> bool:
    if not pattern:
        return not words
    head, rest = pattern[0], pattern[1:]
    if head == "#":
        return any(_match(rest, words[i:]) for i in range(len(words) + 1))
    if not words:
        return False
    return (head in ("*", words[0])) and _match(rest, words[1:])
