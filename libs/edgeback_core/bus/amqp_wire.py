"""The aio-pika adapter's boundary: driver errors translated into ``EdgebackError``s,
and AMQP messages built from and read into our types (used by ``amqp``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, TypeVar

import aio_pika
import aiormq.exceptions

from edgeback_core.bus.port import Envelope
from edgeback_core.bus.topology import ROUTING_KEY_HEADER
from edgeback_core.errors import (
    ConfigError,
    EdgebackError,
    TransientError,
    UnavailableError,
    UnroutableError,
)

if TYPE_CHECKING:
    from collections.abc import Awaitable, Mapping

    from aio_pika.abc import AbstractIncomingMessage
    from aiormq.abc import FieldTable

R = TypeVar("R")

_CONNECTION_ERRORS = (
    OSError,
    aiormq.exceptions.AMQPConnectionError,
    aiormq.exceptions.ChannelInvalidStateError,
    aio_pika.exceptions.ChannelClosed,
)


def translate(exc: Exception, what: str) -> EdgebackError:
    """Our error for a driver error raised while doing ``what``."""
    if isinstance(exc, aiormq.exceptions.PublishError):
        return UnroutableError(f"{what}: no queue bound", reason=str(exc))
    if isinstance(exc, aiormq.exceptions.ChannelPreconditionFailed):
        return ConfigError(f"{what}: topology differs from the broker's", reason=str(exc))
    if isinstance(exc, aiormq.exceptions.DeliveryError):
        return TransientError(f"{what}: broker refused the message", reason=str(exc))
    if isinstance(exc, aiormq.exceptions.ProbableAuthenticationError):
        return ConfigError(f"{what}: authentication refused", reason=str(exc))
    if isinstance(exc, TimeoutError):
        return UnavailableError(f"{what}: broker timed out", reason=str(exc))
    return UnavailableError(f"{what}: broker unavailable", reason=str(exc))


async def guarded(what: str, op: Awaitable[R]) -> R:
    try:
        return await op
    except (*_CONNECTION_ERRORS, aiormq.exceptions.AMQPError, TimeoutError) as exc:
        raise translate(exc, what) from exc


def envelope_of(message: AbstractIncomingMessage) -> Envelope:
    headers: dict[str, Any] = dict(message.headers or {})
    count = headers.get("x-delivery-count", 0)
    return Envelope(
        message_id=message.message_id or "",
        routing_key=str(headers.get(ROUTING_KEY_HEADER) or message.routing_key or ""),
        delivery_count=count if isinstance(count, int) else 0,
        redelivered=bool(message.redelivered),
        headers=headers,
    )


def table(arguments: Mapping[str, str | int]) -> FieldTable:
    return dict(arguments.items())


def wire_message(body: bytes, message_id: str, **properties: Any) -> aio_pika.Message:
    return aio_pika.Message(
        body=body,
        message_id=message_id,
        content_type="application/json",
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        **properties,
    )
