"""Serving an aiohttp application on a TCP socket, for ``/healthz`` and the storage node.

One way to do it for every listener of the project, on aiohttp's public API only: the
bound address (port 0 picks a free one) comes from ``AppRunner.addresses``.
"""

from __future__ import annotations

import contextlib
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass

from aiohttp import web

from edgeback_core.errors import ConfigError


@dataclass(frozen=True, slots=True, kw_only=True)
class Listening:
    """Where a listener is bound."""

    host: str
    port: int

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"


@contextlib.asynccontextmanager
async def listen(
    app: web.Application, *, host: str, port: int, ssl_context: ssl.SSLContext | None = None
) -> AsyncIterator[Listening]:
    """Serve ``app`` on ``host:port`` (0 = any free port; TLS with ``ssl_context``) until exit.

    The application's startup (its ``cleanup_ctx``) runs before the socket is bound;
    on exit the listener stops, requests in flight finish, then its cleanup runs. No
    access log: one line per request (per chunk on the node) is too many; signals are
    the service runner's, not aiohttp's.
    """
    runner = web.AppRunner(app, handle_signals=False, access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port, ssl_context=ssl_context).start()
        bound_host, bound_port = runner.addresses[0][:2]
        yield Listening(host=str(bound_host), port=int(bound_port))
    finally:
        await runner.cleanup()


def tls_context(cert_file: str | None, key_file: str | None, *, who: str) -> ssl.SSLContext | None:
    """A server's TLS context (TLS 1.2 or later) when a certificate is configured."""
    if cert_file is None or key_file is None:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(cert_file, key_file)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"cannot load {who}'s TLS certificate or key: {exc}") from exc
    return context
