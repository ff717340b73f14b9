"""The aio-pika adapter's boundary: driver errors translated into ``EdgebackError``s,
and AMQP messages built from and read into our types (used by ``amqp``)."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any, TypeVar

import aio_pika
import aiormq.exceptions

from edgeback_core.bus.port import Envelope
from edgeback_core.bus.topology import PUBLISHER_HEADER, ROUTING_KEY_HEADER
from edgeback_core.errors import (
    ConfigError,
    EdgebackError,
    PermissionDeniedError,
    TransientError,
    UnavailableError,
    UnroutableError,
)

if TYPE_CHECKING:
    from collections.abc import Awaitable, Mapping

    from aio_pika.abc import AbstractIncomingMessage
    from aiormq.abc import FieldTable

R = TypeVar("R")

BROKER_OP_TIMEOUT_S = 60.0
"""Longest one broker operation (declare, bind, confirm, ack, ...) may take: a broker
that accepts connections but stops answering fails the operation, never hangs it."""

_CONNECTION_ERRORS = (
    OSError,
    aiormq.exceptions.AMQPConnectionError,
    aiormq.exceptions.ChannelInvalidStateError,
    aio_pika.exceptions.ChannelClosed,
)


# first match wins (subclasses before their bases): driver error -> ours, what it means
_TRANSLATIONS: tuple[tuple[type[BaseException], type[EdgebackError], str], ...] = (
    (aiormq.exceptions.PublishError, UnroutableError, "no queue bound"),
    # other queue arguments than the broker's, or a user_id not the connection's
    (aiormq.exceptions.ChannelPreconditionFailed, ConfigError, "refused by the broker: {exc}"),
    (aiormq.exceptions.ChannelAccessRefused, PermissionDeniedError, "not allowed: {exc}"),
    (aiormq.exceptions.ChannelNotFoundEntity, ConfigError, "not on the broker: {exc}"),
    (aiormq.exceptions.DeliveryError, TransientError, "broker refused the message"),
    (aiormq.exceptions.ProbableAuthenticationError, ConfigError, "authentication refused"),
    (TimeoutError, UnavailableError, "broker timed out"),
)


def translate(exc: Exception, what: str) -> EdgebackError:
    """Our error for a driver error raised while doing ``what``."""
    for driver_error, ours, meaning in _TRANSLATIONS:
        if isinstance(exc, driver_error):
            return ours(f"{what}: {meaning.format(exc=exc)}", reason=str(exc))
    return UnavailableError(f"{what}: broker unavailable", reason=str(exc))


async def guarded(what: str, op: Awaitable[R]) -> R:
    """``op`` with the driver's errors translated and at most ``BROKER_OP_TIMEOUT_S``."""
    try:
        async with asyncio.timeout(BROKER_OP_TIMEOUT_S):
            return await op
    except (*_CONNECTION_ERRORS, aiormq.exceptions.AMQPError, TimeoutError) as exc:
        raise translate(exc, what) from exc


def envelope_of(message: AbstractIncomingMessage, own_user: str) -> Envelope:
    """The envelope of a delivery to a consumer connected as ``own_user``.

    ``user_id`` is the one the broker checked; a retried message was republished by
    this consumer's service (same user), so then the first publisher's user, which it
    kept in a header, counts. Nobody else's header is believed.
    """
    headers: dict[str, Any] = dict(message.headers or {})
    count = headers.get("x-delivery-count", 0)
    user_id = message.user_id or ""
    if user_id == own_user and PUBLISHER_HEADER in headers:
        user_id = str(headers[PUBLISHER_HEADER])
    return Envelope(
        message_id=message.message_id or "",
        routing_key=str(headers.get(ROUTING_KEY_HEADER) or message.routing_key or ""),
        user_id=user_id,
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
