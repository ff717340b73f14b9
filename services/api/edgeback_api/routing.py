"""What a route of the API is: method, path, who may call it, the msgspec types that
validate its input and describe its output, and the handler.

The route table (``table.py``) is the one declaration: the app registers it, the
OpenAPI document is generated from it, and the auth tests iterate over it. Handlers
get a :class:`Call` (who asks, the validated request, the query, the path) and
return a msgspec struct, or None for ``204 No Content``.
"""

from __future__ import annotations

import enum
from collections.abc import AsyncGenerator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, TypeVar

import msgspec

from edgeback_api.live import LiveEvents
from edgeback_core.bus.port import Bus
from edgeback_core.errors import InvalidInputError
from edgeback_core.messages.auth import TokenIdentity
from edgeback_core.messages.catalog import ActorRef

BASE: Final = "/api/v1"
ACTOR_FIELD: Final = "actor"
JSON: Final = "application/json"
EVENT_STREAM: Final = "text/event-stream"
S = TypeVar("S", bound=msgspec.Struct)


class Access(enum.StrEnum):
    PUBLIC = "public"  # no token: health, login, the OpenAPI document and docs page
    USER = "user"  # any signed-in user (admin or operator); the catalog scopes by group
    ADMIN = "admin"


@dataclass(frozen=True, slots=True, kw_only=True)
class Api:
    """What handlers reach the rest of edgeback through: the bus, its deadlines, and the
    live run and restore events (started and stopped with the app)."""

    bus: Bus
    rpc_timeout_s: float
    slow_rpc_timeout_s: float
    session_ttl_s: float
    live: LiveEvents = field(default_factory=LiveEvents)
    heartbeat_s: float = 15.0
    """A progress stream's keep-alive, and how often it looks whether its run ended."""
    token_recheck_s: float = 30.0
    """How often a progress stream asks whether its token is still live (revoked or
    expired: the stream ends with ``event: error``)."""

    async def call(
        self, name: str, request: msgspec.Struct, reply: type[S], *, slow: bool = False
    ) -> S:
        timeout = self.slow_rpc_timeout_s if slow else self.rpc_timeout_s
        return await self.bus.call(name, request, reply, timeout=timeout)


@dataclass(frozen=True, slots=True, kw_only=True)
class Call:
    api: Api
    identity: TokenIdentity | None
    request: msgspec.Struct | None
    query: msgspec.Struct | None
    params: Mapping[str, str]
    headers: Mapping[str, str]
    client: str

    @property
    def actor(self) -> ActorRef:
        """The signed-in user, named in every catalog request made for them."""
        return ActorRef(user=self.user_name)  # the catalog loads their role and groups

    @property
    def user_name(self) -> str:
        """The signed-in user's name."""
        if self.identity is None:
            raise InvalidInputError("this route needs a signed-in user")
        return self.identity.user.name

    def request_as(self, kind: type[S]) -> S:
        if not isinstance(self.request, kind):
            raise TypeError(f"route declared no {kind.__name__} request")
        return self.request

    def query_as(self, kind: type[S]) -> S:
        if not isinstance(self.query, kind):
            raise TypeError(f"route declared no {kind.__name__} query")
        return self.query


@dataclass(frozen=True, slots=True, kw_only=True)
class ServerEvent:
    """One server-sent event: ``event`` names it, ``data`` is its JSON (one line);
    ``id`` (resumable position) and ``comment`` (keep-alive) are optional."""

    event: str = ""
    data: bytes = b""
    id: str = ""
    comment: str = ""

    def encode(self) -> bytes:
        lines = [f": {self.comment}".encode()] if self.comment else []
        if self.id:
            lines.append(f"id: {self.id}".encode())
        if self.event:
            lines.append(f"event: {self.event}".encode())
        if self.data:
            lines.append(b"data: " + self.data)
        return b"\n".join(lines) + b"\n\n"


@dataclass(frozen=True, slots=True)
class ServerEvents:
    """What a streaming route's handler returns: the app sends each event as it comes
    (``text/event-stream``) and closes the stream when the iterator ends."""

    events: AsyncGenerator[ServerEvent]


Handler = Callable[[Call], Awaitable[msgspec.Struct | ServerEvents | None]]


@dataclass(frozen=True, slots=True, kw_only=True)
class Route:
    """One operation. ``request`` is built from the JSON body (POST, PUT, PATCH) plus
    the path's fields plus ``actor`` (the signed-in user), then validated by msgspec;
    those filled fields are not part of the documented body. ``query`` validates the
    query string. ``reply`` None: 204 No Content."""

    method: str
    path: str
    operation: str
    summary: str
    tag: str
    access: Access
    handler: Handler
    request: type[msgspec.Struct] | None = None
    query: type[msgspec.Struct] | None = None
    reply: Any = None
    status: int = 200
    media: str = JSON
    """``text/event-stream``: the handler returns :class:`ServerEvents`, each event's
    data one of ``reply``."""
    extra: Mapping[str, Any] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return BASE + self.path

    @property
    def path_fields(self) -> tuple[str, ...]:
        return tuple(part[1:-1] for part in self.path.split("/") if part.startswith("{"))

    @property
    def has_body(self) -> bool:
        """Whether the client sends a JSON body: a writing method with fields left to fill."""
        return self.method in {"POST", "PUT", "PATCH"} and bool(self.body_fields)

    @property
    def body_fields(self) -> tuple[str, ...]:
        if self.request is None:
            return ()
        filled = {ACTOR_FIELD, *self.path_fields}
        return tuple(f for f in self.request.__struct_fields__ if f not in filled)


def row(  # noqa: PLR0917 - one row of a route table per call, read like a table
    method: str,
    path: str,
    op: str,
    summary: str,
    access: Access,
    handler: Handler,
    *,
    request: type[msgspec.Struct] | None = None,
    query: type[msgspec.Struct] | None = None,
    reply: Any = None,
    status: int = 200,
    media: str = JSON,
) -> Route:
    """A route of a table (its tag: the path's first part)."""
    return Route(
        method=method,
        path=path,
        operation=op,
        summary=summary,
        tag=path.split("/")[1],
        access=access,
        handler=handler,
        request=request,
        query=query,
        reply=reply,
        status=status,
        media=media,
    )


def rpc(name: str, reply: type[msgspec.Struct], *, slow: bool = False) -> Handler:
    """A handler that sends the route's request to the catalog RPC ``name`` as it is."""

    async def handle(call: Call) -> msgspec.Struct:
        if call.request is None:
            raise TypeError(f"route for {name} declared no request type")
        return await call.api.call(name, call.request, reply, slow=slow)

    handle.__name__ = f"rpc_{name.replace('.', '_')}"
    return handle


def no_content(name: str, reply: type[msgspec.Struct]) -> Handler:
    """Like :func:`rpc`, answering 204 (the catalog's ``Done``)."""
    send = rpc(name, reply)

    async def handle(call: Call) -> None:
        await send(call)

    return handle
