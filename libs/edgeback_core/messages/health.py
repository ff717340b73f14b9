"""Liveness messages every service answers: the ``health.ping`` RPC."""

from __future__ import annotations

from edgeback_core.messages.base import Message

PING_RPC = "health.ping"


def ping_rpc(service: str) -> str:
    """The name each instance of ``service`` answers pings under."""
    return f"{PING_RPC}.{service}"


class Ping(Message, frozen=True, kw_only=True):
    """Ask a service whether it is alive; ``nonce`` is echoed back."""

    nonce: str = ""


class Pong(Message, frozen=True, kw_only=True):
    """Answer to :class:`Ping`."""

    service: str
    instance: str = ""
    nonce: str = ""
