"""RPC bodies shared by both buses: an error raised by a server travels back as its
:class:`~edgeback_core.errors.ErrorBody` and is re-raised on the caller as the same
``EdgebackError`` class with its code and details (bugs become ``internal_error``)."""

from __future__ import annotations

import asyncio
from contextvars import ContextVar
from typing import TYPE_CHECKING, TypeVar

import msgspec
import structlog

from edgeback_core import errors
from edgeback_core.messages.base import decoder, encode

if TYPE_CHECKING:
    from edgeback_core.bus.port import RpcHandler

log = structlog.get_logger(__name__)

Req = TypeVar("Req", bound=msgspec.Struct)
Resp = TypeVar("Resp", bound=msgspec.Struct)

REPLY_OK = "result"
REPLY_ERROR = "error"

_caller: ContextVar[str] = ContextVar("edgeback_rpc_caller")


def rpc_caller() -> str:
    """The broker user that sent the RPC request being answered (checked by the broker:
    RabbitMQ refuses a ``user_id`` that is not the connection's user). Call it from an
    RPC handler; elsewhere it raises ``LookupError``."""
    return _caller.get()


async def answer(
    handler: RpcHandler[Req], request_type: type[Req], body: bytes, *, rpc: str, caller: str
) -> tuple[str, bytes]:
    """Run an RPC handler on a JSON request from broker user ``caller`` (see
    :func:`rpc_caller`); the reply's kind and JSON body."""
    _caller.set(caller)  # the caller runs each request in a task (a context) of its own
    try:
        try:
            request = decoder(request_type).decode(body)
        except msgspec.DecodeError as exc:  # unknown field, wrong type: the caller's mistake
            raise errors.InvalidInputError(f"{rpc}: {exc}", rpc=rpc) from exc
        return REPLY_OK, encode(await handler(request))
    except asyncio.CancelledError:
        raise
    except Exception as exc:  # travels back to the caller as its ErrorBody
        failure = errors.body_of(exc)
        if isinstance(exc, errors.EdgebackError):
            log.warning("bus.rpc.failed", rpc=rpc, code=failure.code, error=failure.message)
        else:
            log.error("bus.rpc.crashed", rpc=rpc, code=failure.code, exc_info=exc)
        return REPLY_ERROR, encode(failure)


def reply_of(kind: str, body: bytes, response_type: type[Resp]) -> Resp:
    """The caller's side: decode a reply, or raise the error it carries."""
    if kind == REPLY_ERROR:
        raise errors.error_of(decoder(errors.ErrorBody).decode(body))
    response: Resp = decoder(response_type).decode(body)
    return response
