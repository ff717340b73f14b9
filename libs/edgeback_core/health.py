"""The HTTP health endpoint every service answers on (``GET /healthz``).

Each check is an async callable returning ``True`` when its dependency is usable;
the endpoint answers 200 with ``status: ok`` when all pass and 503 otherwise, with
the per-check results, so an operator or a supervisor can tell what is wrong.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable, Mapping

import structlog
from aiohttp import web

from edgeback_core.errors import EdgebackError
from edgeback_core.lifecycle import HealthCheck, InFlight
from edgeback_core.listener import listen

log = structlog.get_logger(__name__)

_CHECK_TIMEOUT_S = 2.0


@contextlib.asynccontextmanager
async def serve_health(
    *,
    service: str,
    host: str,
    port: int,
    checks: Mapping[str, HealthCheck],
    phase: Callable[[], str] = lambda: "running",
    inflight: InFlight | None = None,
) -> AsyncIterator[int]:
    """Serve ``/healthz`` on ``host:port`` (0 = any free port); yields the bound port.

    ``checks`` is read at every request, so checks added later are honoured. The
    answer is 503 unless ``phase()`` is ``running``: a service still starting (or
    already stopping) is not healthy whatever its checks say.
    """
    started = time.monotonic()

    async def healthz(_request: web.Request) -> web.Response:
        results = {name: await _run_check(check) for name, check in checks.items()}
        current = phase()
        healthy = current == "running" and all(results.values())
        body = {
            "service": service,
            "status": "ok" if healthy else "unavailable",
            "phase": current,
            "checks": results,
            "in_flight": inflight.count if inflight else 0,
            "uptime_s": round(time.monotonic() - started, 3),
        }
        return web.json_response(body, status=200 if healthy else 503)

    app = web.Application()
    app.router.add_get("/healthz", healthz)
    async with listen(app, host=host, port=port) as bound:
        log.info("health.listening", service=service, host=bound.host, port=bound.port)
        yield bound.port


async def _run_check(check: HealthCheck) -> bool:
    try:
        return await asyncio.wait_for(check(), _CHECK_TIMEOUT_S)
    except (TimeoutError, EdgebackError):
        return False
