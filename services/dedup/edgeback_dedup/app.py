"""The storage node's aiohttp application: auth, problem bodies, resources, listener.

:func:`build_app` wires the routes of :mod:`edgeback_dedup.http` with two middlewares
(our errors as JSON problem bodies; bearer tokens and their grants,
:mod:`edgeback_dedup.access`) and a cleanup context that owns the thread pool and
opens the pools. :func:`serve` runs it on a TCP socket (TLS when a certificate is
configured) as an async context manager, for ``main.py`` (under ``run_service``) and
for tests.
"""

from __future__ import annotations

import contextlib
import ssl
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import structlog
from aiohttp import web
from msgspec.structs import asdict

from edgeback_core.errors import (
    BodyIncompleteError,
    BodyTimeoutError,
    EdgebackError,
    ErrorBody,
    IntegrityError,
    OverloadedError,
    PoolFullError,
    RangeNotSatisfiableError,
)
from edgeback_core.listener import Listening, listen, tls_context
from edgeback_core.problems import status_of
from edgeback_dedup import images
from edgeback_dedup.access import (
    PUBLIC,
    ROUTE_RIGHTS,
    TOKENS,
    Handler,
    access_middleware,
    token_table,
)
from edgeback_dedup.admission import BodyBudget
from edgeback_dedup.bodies import BodyBuffers
from edgeback_dedup.http import BODIES, BUDGET, REGISTRY, SETTINGS, Route, rights, routes
from edgeback_dedup.http import route_table as data_routes
from edgeback_dedup.settings import DedupSettings
from edgeback_pools.pool import MAX_RECORD_SIZE
from edgeback_pools.registry import PoolRegistry

log = structlog.get_logger(__name__)


def build_app(settings: DedupSettings) -> web.Application:
    """The node's application; pools open when it starts, the thread pool closes with it."""
    app = web.Application(middlewares=[problem_middleware, access_middleware])
    app[SETTINGS] = settings
    app[TOKENS] = token_table(settings)
    table = route_table()
    app[ROUTE_RIGHTS] = rights(table)
    app[PUBLIC] = images.PUBLIC
    app[BUDGET] = BodyBudget(settings.body_bytes_in_flight, wait_s=settings.body_wait_s)
    # idle upload buffers kept: about the uploads the thread pool can work on at once
    app[BODIES] = BodyBuffers(MAX_RECORD_SIZE, keep=2 * settings.threads)
    app.add_routes(routes(table))
    app.cleanup_ctx.append(_resources)
    app.cleanup_ctx.append(images.serving_context)
    return app


def route_table() -> list[Route]:
    """Every route of the node: the data API and the disk images (``images.py``)."""
    return [*data_routes(), *images.route_table()]


async def _resources(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    executor = ThreadPoolExecutor(settings.threads, thread_name_prefix="dedup-io")
    try:
        registry = app[REGISTRY] = await PoolRegistry.open(
            settings.data_path, executor, pin_ttl_s=settings.pin_ttl_s
        )
        log.info(
            "pools.opened",
            pools=registry.names(),
            quarantined=sorted(registry.quarantined),
            data_dir=settings.data_dir,
        )
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
        elif isinstance(
            exc, IntegrityError | PoolFullError | BodyIncompleteError | BodyTimeoutError
        ):
            log.warning("request.refused", path=request.path, code=exc.code, error=exc.message)
        return web.json_response(exc.to_dict(), status=status, headers=_headers(exc, status))
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        body = ErrorBody(code=f"http_{exc.status}", message=exc.reason)
        return web.json_response(asdict(body), status=exc.status, headers=_allow(exc))


def _headers(exc: EdgebackError, status: int) -> dict[str, str] | None:
    if status == 401:
        return {"WWW-Authenticate": "Bearer"}
    if isinstance(exc, RangeNotSatisfiableError):
        return {"Content-Range": f"bytes */{exc.details.get('size', '*')}"}
    if isinstance(exc, OverloadedError):
        return {"Retry-After": str(exc.details.get("retry_after_s", 1))}
    return None


def _allow(exc: web.HTTPException) -> dict[str, str]:
    allow = exc.headers.get("Allow")
    return {"Allow": allow} if allow else {}


@dataclass(frozen=True, slots=True, kw_only=True)
class RunningNode(Listening):
    app: web.Application
    tls: bool = False

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://{self.host}:{self.port}"


@contextlib.asynccontextmanager
async def serve(settings: DedupSettings) -> AsyncIterator[RunningNode]:
    """Open the pools and listen on ``settings.host:port`` (0 = any free port) until exit."""
    app = build_app(settings)
    tls = _tls_context(settings)
    async with listen(app, host=settings.host, port=settings.port, ssl_context=tls) as bound:
        log.info("node.listening", host=bound.host, port=bound.port, tls=tls is not None)
        yield RunningNode(app=app, host=bound.host, port=bound.port, tls=tls is not None)


def _tls_context(settings: DedupSettings) -> ssl.SSLContext | None:
    return tls_context(settings.tls_cert_file, settings.tls_key_file, who="the node")
