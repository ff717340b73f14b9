"""The storage node's aiohttp application: auth, problem bodies, resources, listener.

:func:`build_app` wires the routes of :mod:`edgeback_dedup.http` with two middlewares
(bearer-token auth, our errors as JSON problem bodies) and a cleanup context that
owns the thread pool and opens the pools. :func:`serve` runs it on a TCP socket as an
async context manager, for ``main.py`` (under ``run_service``) and for tests.
"""

from __future__ import annotations

import contextlib
import hmac
from collections.abc import AsyncIterator, Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import structlog
from aiohttp import web
from msgspec.structs import asdict

from edgeback_core.errors import (
    EdgebackError,
    ErrorBody,
    IntegrityError,
    PermissionDeniedError,
    PoolFullError,
    UnauthenticatedError,
)
from edgeback_core.listener import Listening, listen
from edgeback_core.settings import Secret
from edgeback_dedup.bodies import BodyBuffers
from edgeback_dedup.http import BODIES, REGISTRY, SETTINGS, routes
from edgeback_dedup.problems import status_of
from edgeback_dedup.settings import DedupSettings
from edgeback_pools.pool import MAX_RECORD_SIZE
from edgeback_pools.registry import PoolRegistry

log = structlog.get_logger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def build_app(settings: DedupSettings) -> web.Application:
    """The node's application; pools open when it starts, the thread pool closes with it."""
    app = web.Application(middlewares=[problem_middleware, auth_middleware])
    app[SETTINGS] = settings
    # idle upload buffers kept: about the uploads the thread pool can work on at once
    app[BODIES] = BodyBuffers(MAX_RECORD_SIZE, keep=2 * settings.threads)
    app.add_routes(routes())
    app.cleanup_ctx.append(_resources)
    return app


async def _resources(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    executor = ThreadPoolExecutor(settings.threads, thread_name_prefix="dedup-io")
    try:
        app[REGISTRY] = await PoolRegistry.open(settings.data_path, executor)
        log.info("pools.opened", pools=app[REGISTRY].names(), data_dir=settings.data_dir)
        yield
    finally:
        executor.shutdown(wait=True)


@web.middleware
async def problem_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except EdgebackError as exc:
        status = status_of(exc)
        if status >= 500:
            log.error("request.failed", path=request.path, code=exc.code, exc_info=exc)
        elif isinstance(exc, IntegrityError | PoolFullError):
            log.warning("request.refused", path=request.path, code=exc.code, error=exc.message)
        headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
        return web.json_response(exc.to_dict(), status=status, headers=headers)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        body = ErrorBody(code=f"http_{exc.status}", message=exc.reason)
        return web.json_response(asdict(body), status=exc.status, headers=_allow(exc))


def _allow(exc: web.HTTPException) -> dict[str, str]:
    allow = exc.headers.get("Allow")
    return {"Allow": allow} if allow else {}


@web.middleware
async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    settings = request.app[SETTINGS]
    presented = _bearer(request)
    admin = settings.admin_token is not None and _same(presented, settings.admin_token)
    if request.method == "POST" and request.path == "/v1/pools":
        if not admin:
            if _same(presented, settings.token):
                raise PermissionDeniedError("creating pools needs the admin token")
            raise UnauthenticatedError("missing or wrong bearer token")
    elif not (admin or _same(presented, settings.token)):
        raise UnauthenticatedError("missing or wrong bearer token")
    return await handler(request)


def _bearer(request: web.Request) -> bytes:
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    return token.strip().encode() if scheme.lower() == "bearer" else b""


def _same(presented: bytes, secret: Secret) -> bool:
    return bool(presented) and hmac.compare_digest(presented, secret.reveal().encode())


@dataclass(frozen=True, slots=True, kw_only=True)
class RunningNode(Listening):
    app: web.Application


@contextlib.asynccontextmanager
async def serve(settings: DedupSettings) -> AsyncIterator[RunningNode]:
    """Open the pools and listen on ``settings.host:port`` (0 = any free port) until exit."""
    app = build_app(settings)
    async with listen(app, host=settings.host, port=settings.port) as bound:
        log.info("node.listening", host=bound.host, port=bound.port)
        yield RunningNode(app=app, host=bound.host, port=bound.port)
