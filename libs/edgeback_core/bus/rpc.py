"""RPC bodies shared by both buses: an error raised by a server travels back as
``{code, message}`` and is re-raised on the caller as the ``EdgebackError`` subclass
with that code (bugs become ``internal_error``)."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, TypeVar

import msgspec
import structlog

from edgeback_core import errors
from edgeback_core.messages.base import Message, decoder, encode

if TYPE_CHECKING:
    from edgeback_core.bus.port import RpcHandler

log = structlog.get_logger(__name__)

Req = TypeVar("Req", bound=msgspec.Struct)
Resp = TypeVar("Resp", bound=msgspec.Struct)

REPLY_OK = "result"
REPLY_ERROR = "error"


class RpcFailure(Message, frozen=True, kw_only=True):
    """Body of an error reply."""

    code: str
    message: str


def failure_of(error: Exception) -> RpcFailure:
    """The wire form of an error raised by an RPC handler (bugs become internal_error)."""
    if isinstance(error, errors.EdgebackError):
        return RpcFailure(code=error.code, message=error.message)
    return RpcFailure(code=errors.EdgebackError.code, message=f"{type(error).__name__}: {error}")


def error_registry() -> dict[str, type[errors.EdgebackError]]:
    """Every ``EdgebackError`` subclass by code, walked at call time so that subclasses
    appended later (or defined in other modules already imported) are found."""
    registry: dict[str, type[errors.EdgebackError]] = {}
    pending: list[type[errors.EdgebackError]] = [errors.EdgebackError]
    while pending:
        cls = pending.pop()
        registry.setdefault(cls.code, cls)
        pending.extend(cls.__subclasses__())
    return registry


def error_of(failure: RpcFailure) -> errors.EdgebackError:
    """The exception a caller raises for ``failure``."""
    cls = error_registry().get(failure.code)
    if cls is None:
        return errors.EdgebackError(failure.message, remote_code=failure.code)
    try:
        return cls(failure.message)
    except TypeError:  # a subclass with another constructor signature
        return errors.EdgebackError(failure.message, remote_code=failure.code)


async def answer(
    handler: RpcHandler[Req], request_type: type[Req], body: bytes, *, rpc: str
) -> tuple[str, bytes]:
    """Run an RPC handler on a JSON request; the reply's kind and JSON body."""
    try:
        try:
            request = decoder(request_type).decode(body)
        except msgspec.DecodeError as exc:  # unknown field, wrong type: the caller's mistake
            raise errors.InvalidInputError(f"{rpc}: {exc}", rpc=rpc) from exc
        return REPLY_OK, encode(await handler(request))
    except asyncio.CancelledError:
        raise
    except Exception as exc:  # travels back to the caller as {code, message}
        failure = failure_of(exc)
        if isinstance(exc, errors.EdgebackError):
            log.warning("bus.rpc.failed", rpc=rpc, code=failure.code, error=failure.message)
        else:
            log.error("bus.rpc.crashed", rpc=rpc, code=failure.code, exc_info=exc)
        return REPLY_ERROR, encode(failure)


def reply_of(kind: str, body: bytes, response_type: type[Resp]) -> Resp:
    """The caller's side: decode a reply, or raise the error it carries."""
    if kind == REPLY_ERROR:
        raise error_of(decoder(RpcFailure).decode(body))
    response: Resp = decoder(response_type).decode(body)
    return response
