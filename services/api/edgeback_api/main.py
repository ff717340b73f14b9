"""Composition root of the api service: settings → bus → the first admin (if
configured) → the HTTP listener (TLS when a certificate is configured)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

import structlog

from edgeback_api.app import build_app, serve
from edgeback_api.live import LiveEvents
from edgeback_api.routing import Api
from edgeback_api.session import bootstrap_admin
from edgeback_api.settings import ApiSettings
from edgeback_core.bus.port import Bus
from edgeback_core.errors import EdgebackError, UnavailableError, UnroutableError
from edgeback_core.lifecycle import ServiceRuntime
from edgeback_core.listener import tls_context
from edgeback_core.retry import RetryPolicy, retrying
from edgeback_core.service import serve as serve_service

SERVICE = "api"
BOOTSTRAP_WAIT_S = 120.0
"""How long the first admin's creation waits for the catalog to serve."""
T = TypeVar("T")
log = structlog.get_logger(__name__)


async def setup(runtime: ServiceRuntime, bus: Bus, settings: ApiSettings) -> None:
    api = Api(
        bus=bus,
        rpc_timeout_s=settings.rpc_timeout_s,
        slow_rpc_timeout_s=settings.slow_rpc_timeout_s,
        session_ttl_s=settings.session_ttl_s,
        live=LiveEvents(buffer=settings.live_buffer),
        heartbeat_s=settings.live_heartbeat_s,
        token_recheck_s=settings.live_token_recheck_s,
    )
    if settings.bootstrap_admin is not None and settings.bootstrap_password is not None:
        password = settings.bootstrap_password.reveal()
        created = await _until_catalog_answers(
            lambda: bootstrap_admin(api, settings.bootstrap_admin or "", password),
            within_s=BOOTSTRAP_WAIT_S,
        )
        log.info("api.bootstrap", admin=settings.bootstrap_admin, created=created)
    app = build_app(api, max_body_bytes=settings.max_body_bytes)
    tls = tls_context(settings.tls_cert_file, settings.tls_key_file, who="the API")
    await runtime.stack.enter_async_context(
        serve(app, host=settings.host, port=settings.port, tls=tls)
    )


async def _until_catalog_answers(call: Callable[[], Awaitable[T]], *, within_s: float) -> T:
    """``call``'s result once the catalog serves it: services start in any order, so a
    catalog not yet consuming (nothing bound, no answer) is waited for, up to
    ``within_s`` seconds (the retry policy's reconnect time); other errors are raised."""

    async def attempt() -> T:
        try:
            return await call()
        except UnroutableError as exc:  # nothing bound yet: the catalog is still starting
            raise UnavailableError(exc.message, **exc.details) from exc

    def waiting(attempts: int, delay: float, exc: EdgebackError) -> None:
        log.info("api.waiting_for_catalog", error_code=exc.code, retry_in_s=round(delay, 2))

    policy = RetryPolicy(retries=0, base_delay=0.5, max_delay=5.0, reconnect=within_s)
    return await retrying(attempt, policy, on_retry=waiting)


def main() -> None:
    serve_service(SERVICE, ApiSettings.load, setup)
