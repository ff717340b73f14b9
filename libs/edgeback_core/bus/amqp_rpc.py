"""RPC plumbing of the aio-pika adapter: the caller's direct reply-to consumer.

Replies come back on the pseudo-queue ``amq.rabbitmq.reply-to``, consumed no-ack on
the channel that published the request. aio-pika's robust channel does not restore
that consumer after a reconnect (it is not a declared queue), and a reply addressed
to the old channel is dropped by the broker. So when the channel goes away,
:class:`ReplyRouter` fails every pending call at once with ``UnavailableError``
(instead of letting it wait for its timeout) and consumes again on the next call.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from edgeback_core.errors import UnavailableError

if TYPE_CHECKING:
    from aio_pika.abc import AbstractChannel, AbstractIncomingMessage

DIRECT_REPLY_TO = "amq.rabbitmq.reply-to"


class ReplyRouter:
    """Pending calls by correlation id, and the reply consumer they wait on."""

    def __init__(self, channel: AbstractChannel) -> None:
        self._channel = channel
        self._pending: dict[str, asyncio.Future[AbstractIncomingMessage]] = {}
        self._lock = asyncio.Lock()
        self._consuming = False
        channel.close_callbacks.add(self.channel_lost)

    async def ensure_consuming(self) -> None:
        """Consume replies on the publishing channel unless already doing so on this
        incarnation of it (call with the channel ready, before publishing a request)."""
        async with self._lock:
            if not self._consuming:
                queue = await self._channel.get_queue(DIRECT_REPLY_TO, ensure=False)
                # not a declared queue: the robust channel never replays this consumer
                await queue.consume(self._on_reply, no_ack=True)
                self._consuming = True

    def expect(self, correlation_id: str) -> asyncio.Future[AbstractIncomingMessage]:
        future: asyncio.Future[AbstractIncomingMessage]
        future = asyncio.get_running_loop().create_future()
        self._pending[correlation_id] = future
        return future

    def forget(self, correlation_id: str) -> None:
        self._pending.pop(correlation_id, None)

    def channel_lost(self, _sender: Any, exc: BaseException | None) -> None:
        """The channel closed (connection lost, broker restart, bus closing): the
        replies of pending calls can never arrive, so fail them now."""
        self._consuming = False
        pending, self._pending = self._pending, {}
        for future in pending.values():
            if not future.done():
                future.set_exception(
                    UnavailableError("rpc: connection to the broker lost", reason=repr(exc))
                )

    @property
    def pending(self) -> int:
        return len(self._pending)

    async def _on_reply(self, message: AbstractIncomingMessage) -> None:
        future = self._pending.pop(message.correlation_id or "", None)
        if future is not None and not future.done():
            future.set_result(message)
