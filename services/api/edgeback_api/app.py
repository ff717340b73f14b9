"""The API's aiohttp application: the route table served under ``/api/v1``, bearer
tokens checked against the route's access, errors as ``application/problem+json``,
the OpenAPI document and a Swagger UI page whose assets come from the installed
``swagger_ui`` package (nothing is fetched from elsewhere, not even by the browser).

Secrets never reach a log line: requests are logged by method, route, status and
user only, never with bodies, headers or query strings. An unexpected exception is
a bug: it is logged with its traceback and a request id, and answered as an
``internal_error`` problem naming only that id (never the exception's text).
"""

from __future__ import annotations

import contextlib
import importlib.resources
import ssl
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Final

import msgspec
import structlog
from aiohttp import web

from edgeback_api.openapi import PROBLEM, Problem, document
from edgeback_api.routing import (
    ACTOR_FIELD,
    BASE,
    EVENT_STREAM,
    Access,
    Api,
    Call,
    Route,
    ServerEvent,
    ServerEvents,
)
from edgeback_api.session import API_ACTOR
from edgeback_api.table import route_table
from edgeback_api.tokens import bearer_of, token_hash
from edgeback_core.errors import (
    EdgebackError,
    ErrorBody,
    InvalidInputError,
    LoginThrottledError,
    PermissionDeniedError,
    UnauthenticatedError,
    body_of,
)
from edgeback_core.listener import Listening, listen
from edgeback_core.messages import auth as a
from edgeback_core.problems import status_of

log = structlog.get_logger(__name__)
API: Final = web.AppKey("api", Api)
_json = msgspec.json.Encoder()
_DOCS_ASSETS = ("swagger-ui.css", "swagger-ui-bundle.js", "favicon-32x32.png")
_DOCS_PAGE = """<!doctype html><html><head><meta charset="utf-8"><title>edgeback API</title>
<link rel="stylesheet" href="docs/swagger-ui.css"></head><body><div id="ui"></div>
<script src="docs/swagger-ui-bundle.js"></script><script src="docs/init.js"></script>
</body></html>"""
_DOCS_INIT = (
    'window.ui = SwaggerUIBundle({url: "openapi.json", dom_id: "#ui", validatorUrl: null});'
)


def build_app(api: Api, *, max_body_bytes: int = 1 << 20) -> web.Application:
    app = web.Application(middlewares=[problem_middleware], client_max_size=max_body_bytes)
    app[API] = api
    app.cleanup_ctx.append(_live_events)
    app.on_shutdown.append(_end_streams)
    routes = route_table()
    for route in routes:
        app.router.add_route(route.method, route.url, _endpoint(route))
    spec = _json.encode(document(routes))
    app.router.add_get(f"{BASE}/openapi.json", _static(spec, "application/json"))
    app.router.add_get(f"{BASE}/docs", _static(_DOCS_PAGE.encode(), "text/html"))
    app.router.add_get(f"{BASE}/docs/init.js", _static(_DOCS_INIT.encode(), "text/javascript"))
    static = importlib.resources.files("swagger_ui") / "static"
    for name in _DOCS_ASSETS:
        kind = {"css": "text/css", "js": "text/javascript"}.get(
            name.rsplit(".", 1)[-1], "image/png"
        )
        app.router.add_get(f"{BASE}/docs/{name}", _static((static / name).read_bytes(), kind))
    return app


async def _live_events(app: web.Application) -> AsyncIterator[None]:
    """The live subscription of the progress streams, for as long as the app serves."""
    api = app[API]
    await api.live.start(api.bus)
    yield
    await api.live.stop()


async def _end_streams(app: web.Application) -> None:
    app[API].live.close_watchers()


def _static(body: bytes, kind: str) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def serve_it(_request: web.Request) -> web.Response:
        return web.Response(body=body, content_type=kind)

    return serve_it


def _endpoint(route: Route) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    async def endpoint(request: web.Request) -> web.StreamResponse:
        started = time.monotonic()
        api = request.app[API]
        identity = None if route.access is Access.PUBLIC else await _identity(api, request, route)
        call = Call(
            api=api,
            identity=identity,
            request=await _request_of(route, request, identity),
            query=_query_of(route, request),
            params=dict(request.match_info),
            headers=request.headers,
            client=request.remote or "",
        )
        result = await route.handler(call)
        log.info(
            "api.request",
            method=route.method,
            route=route.path,
            status=route.status,
            user=None if identity is None else identity.user.name,
            duration_ms=round((time.monotonic() - started) * 1000, 1),
        )
        if isinstance(result, ServerEvents):
            return await _send_events(request, result)
        if result is None:
            return web.Response(status=204)
        return web.Response(
            body=_json.encode(result), status=route.status, content_type="application/json"
        )

    return endpoint


async def _send_events(request: web.Request, events: ServerEvents) -> web.StreamResponse:
    """Each event as it comes; an error after the start is the stream's last event
    (``event: error``, its problem body): the status line has gone already."""
    headers = {"Content-Type": EVENT_STREAM, "Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    response = web.StreamResponse(headers=headers)
    # the first event before the status line: the stream is watching once a client
    # has its 200, and an error this early is still a problem answer
    first = await anext(events.events)
    await response.prepare(request)
    try:
        await response.write(first.encode())
        async for event in events.events:
            await response.write(event.encode())
    except ConnectionResetError:
        log.info("api.stream.gone", path=request.path)  # the client went away
    except EdgebackError as exc:
        log.info("api.stream.failed", path=request.path, code=exc.code)
        await response.write(ServerEvent(event="error", data=_json.encode(body_of(exc))).encode())
    finally:
        await events.events.aclose()
    return response


async def _identity(api: Api, request: web.Request, route: Route) -> a.TokenIdentity:
    token = bearer_of(request.headers.get("Authorization"))
    if token is None:
        raise UnauthenticatedError("this route needs 'Authorization: Bearer <token>'")
    resolve = a.TokenResolve(actor=API_ACTOR, token_hash=token_hash(token))
    identity = await api.call(a.TOKEN_RESOLVE, resolve, a.TokenIdentity)
    if route.access is Access.ADMIN and identity.user.role != "admin":
        raise PermissionDeniedError(f"{route.operation} needs the admin role")
    return identity


async def _request_of(
    route: Route, request: web.Request, identity: a.TokenIdentity | None
) -> msgspec.Struct | None:
    if route.request is None:
        return None
    fields: dict[str, Any] = {}
    if route.has_body:
        fields = await _json_object(request)
        filled = {ACTOR_FIELD, *route.path_fields} & set(fields)
        if filled:
            raise InvalidInputError(f"unknown field(s) in the body: {sorted(filled)}")
    fields |= {k: v for k, v in request.match_info.items() if k in route.request.__struct_fields__}
    if ACTOR_FIELD in route.request.__struct_fields__ and identity is not None:
        # the catalog loads the user's role and groups itself (it believes no role here)
        fields[ACTOR_FIELD] = {"user": identity.user.name}
    return _convert(fields, route.request, strict=True)


async def _json_object(request: web.Request) -> dict[str, Any]:
    try:
        value = msgspec.json.decode(await request.read())
    except msgspec.DecodeError as exc:
        raise InvalidInputError(f"the body is not JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise InvalidInputError("the body must be a JSON object")
    return value


def _query_of(route: Route, request: web.Request) -> msgspec.Struct | None:
    if route.query is None:
        return None
    # no query field is a list: a repeated one is refused, not read as its first value
    repeated = sorted({k for k in request.query if len(request.query.getall(k)) > 1})
    if repeated:
        raise InvalidInputError(f"query parameters given more than once: {repeated}")
    return _convert(dict(request.query), route.query, strict=False)


def _convert(fields: dict[str, Any], kind: type[msgspec.Struct], *, strict: bool) -> msgspec.Struct:
    try:
        return msgspec.convert(fields, kind, strict=strict)
    except msgspec.ValidationError as exc:
        raise InvalidInputError(str(exc)) from exc


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def problem_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except EdgebackError as exc:
        status = status_of(exc)
        if status >= 500:
            log.error("api.failed", path=request.path, code=exc.code, error=exc.message)
        else:
            log.info("api.refused", path=request.path, code=exc.code, status=status)
        return _problem(body_of(exc), status, _headers(exc, status))
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        body = ErrorBody(code=f"http_{exc.status}", message=exc.reason)
        return _problem(body, exc.status, {})
    except Exception:  # a bug: logged with its traceback here, never shown to the client
        request_id = uuid.uuid4().hex
        log.exception("api.crashed", path=request.path, request_id=request_id)
        body = ErrorBody(
            code=EdgebackError.code,
            message=f"an unexpected error; the server's log has it under request {request_id}",
            details={"request_id": request_id},
        )
        return _problem(body, 500, {"X-Request-Id": request_id})


def _problem(body: ErrorBody, status: int, headers: dict[str, str]) -> web.Response:
    fields = msgspec.structs.asdict(body)
    payload = Problem(**fields, status=status, title=body.code)
    return web.Response(
        body=_json.encode(payload), status=status, content_type=PROBLEM, headers=headers
    )


def _headers(exc: EdgebackError, status: int) -> dict[str, str]:
    if isinstance(exc, LoginThrottledError):
        return {"Retry-After": str(exc.details.get("retry_after_s", 1))}
    if status == 401:
        return {"WWW-Authenticate": "Bearer"}
    return {}


@contextlib.asynccontextmanager
async def serve(
    app: web.Application, *, host: str, port: int, tls: ssl.SSLContext | None
) -> AsyncIterator[Listening]:
    async with listen(app, host=host, port=port, ssl_context=tls) as bound:
        log.info("api.listening", host=bound.host, port=bound.port, tls=tls is not None)
        yield bound
