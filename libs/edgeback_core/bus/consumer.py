"""The one consumer wrapper: runs a handler and settles its message from the outcome.

Both buses feed deliveries through :func:`run_delivery`, so ack / retry / dead-letter
rules live here only (handlers never ack):

* handler returns → ack;
* ``DeferredError`` → park for the longest retry delay not above its ``delay_s`` (the
  shortest if all are longer) and take it again, without counting a retry;
* ``TransientError`` → retry after ``spec.retry_delay(n)`` until ``spec.max_retries``
  retries were made, then dead-letter;
* ``PermanentError``, ``IntegrityError``, other ``EdgebackError`` or an undecodable
  body → dead-letter at once;
* any other exception (a bug) → requeue; the queue's delivery limit dead-letters a
  poison message after ``spec.delivery_limit`` redeliveries;
* ``CancelledError`` → nothing: the message stays unacked and the broker redelivers
  it when the consumer's channel closes.
"""

from __future__ import annotations

import asyncio
import enum
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, TypeVar

import msgspec
import structlog

from edgeback_core.bus.topology import RETRIES_HEADER
from edgeback_core.errors import DeferredError, EdgebackError, TransientError
from edgeback_core.messages.base import decoder

if TYPE_CHECKING:
    from edgeback_core.bus.port import Envelope, Handler, InFlightTracker
    from edgeback_core.bus.topology import QueueSpec

log = structlog.get_logger(__name__)

T = TypeVar("T", bound=msgspec.Struct)


class Outcome(enum.Enum):
    ACK = "ack"
    RETRY = "retry"
    DEAD_LETTER = "dead_letter"
    REQUEUE = "requeue"


@dataclass(frozen=True, slots=True, kw_only=True)
class Decision:
    outcome: Outcome
    delay: float = 0.0
    counts: bool = True
    """Whether a retry counts against ``max_retries`` (a deferral does not)."""


def decide(error: Exception | None, *, retries_done: int, spec: QueueSpec) -> Decision:
    """What to do with a message whose handler ended with ``error`` (None: success)."""
    if error is None:
        return Decision(outcome=Outcome.ACK)
    if isinstance(error, DeferredError):
        return Decision(outcome=Outcome.RETRY, delay=_park_delay(error.delay_s, spec), counts=False)
    if isinstance(error, TransientError) and error.retryable:
        if retries_done < spec.max_retries:
            return Decision(outcome=Outcome.RETRY, delay=spec.retry_delay(retries_done))
        return Decision(outcome=Outcome.DEAD_LETTER)
    if isinstance(error, EdgebackError | msgspec.DecodeError):
        return Decision(outcome=Outcome.DEAD_LETTER)
    return Decision(outcome=Outcome.REQUEUE)


def _park_delay(wanted: float, spec: QueueSpec) -> float:
    """The longest of the queue's retry delays not above ``wanted`` (delay queues exist
    only for those), else the shortest."""
    fitting = [d for d in spec.retry_delays if d <= wanted]
    return max(fitting) if fitting else min(spec.retry_delays)


def retries_done(envelope: Envelope) -> int:
    """Retries already made, from the header the retry path keeps."""
    value = envelope.headers.get(RETRIES_HEADER, 0)
    return value if isinstance(value, int) and value >= 0 else 0


class Delivery(Protocol):
    """One delivered message as a bus implementation exposes it to the wrapper."""

    @property
    def body(self) -> bytes: ...
    @property
    def envelope(self) -> Envelope: ...
    async def ack(self) -> None: ...
    async def dead_letter(self) -> None: ...
    async def requeue(self) -> None: ...
    async def retry(self, delay: float, retries: int) -> None:
        """Park the message for ``delay`` seconds with ``retries`` in its header, then ack."""


async def run_delivery(
    delivery: Delivery,
    handler: Handler[T],
    message_type: type[T],
    *,
    spec: QueueSpec,
    queue: str,
    tracker: InFlightTracker,
) -> None:
    """Decode, handle and settle one delivery. Re-raises ``CancelledError`` only."""
    envelope = delivery.envelope
    async with tracker.track():
        error: Exception | None = None
        try:
            message = decoder(message_type).decode(delivery.body)
            await handler(message, envelope)
        except asyncio.CancelledError:
            log.warning("bus.message.cancelled", message_id=envelope.message_id, queue=queue)
            raise
        except Exception as exc:  # the one broad except: it decides the message's fate
            error = exc
        decision = decide(error, retries_done=retries_done(envelope), spec=spec)
        _log_decision(decision, error, envelope, queue)
        await _settle(delivery, decision, retries_done(envelope))


async def _settle(delivery: Delivery, decision: Decision, done: int) -> None:
    try:
        match decision.outcome:
            case Outcome.ACK:
                await delivery.ack()
            case Outcome.RETRY:
                await delivery.retry(decision.delay, done + 1 if decision.counts else done)
            case Outcome.DEAD_LETTER:
                await delivery.dead_letter()
            case Outcome.REQUEUE:
                await delivery.requeue()
    except EdgebackError as exc:
        # The channel is gone: the broker will redeliver the unsettled message.
        log.warning(
            "bus.message.settle_failed",
            message_id=delivery.envelope.message_id,
            outcome=decision.outcome.value,
            code=exc.code,
        )


def _log_decision(
    decision: Decision, error: Exception | None, envelope: Envelope, queue: str
) -> None:
    if error is None:
        return
    code = error.code if isinstance(error, EdgebackError) else type(error).__name__
    keys = {
        "message_id": envelope.message_id,
        "queue": queue,
        "code": code,
        "delivery_count": envelope.delivery_count,
    }
    match decision.outcome:
        case Outcome.RETRY if not decision.counts:
            log.debug("bus.message.deferred", delay=decision.delay, reason=str(error), **keys)
        case Outcome.RETRY:
            log.warning("bus.message.retry", delay=decision.delay, error=str(error), **keys)
        case Outcome.DEAD_LETTER:
            log.error("bus.message.dead_lettered", exc_info=error, **keys)
        case _:
            log.error("bus.message.handler_crashed", exc_info=error, **keys)


async def run_live(
    body: bytes, envelope: Envelope, handler: Handler[T], message_type: type[T], *, queue: str
) -> None:
    """One message of a live subscription (``Bus.subscribe``): nothing to settle, nothing
    retried. An undecodable body or a failing handler is logged and the message dropped:
    live views read a durable log for what they missed."""
    try:
        message = decoder(message_type).decode(body)
    except msgspec.DecodeError as exc:
        log.warning(
            "bus.live.undecodable", queue=queue, message_id=envelope.message_id, error=str(exc)
        )
        return
    try:
        await handler(message, envelope)
    except asyncio.CancelledError:
        raise
    except Exception:
        log.exception("bus.live.handler_failed", queue=queue, message_id=envelope.message_id)
