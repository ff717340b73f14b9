"""Keep-alive HTTP/1.1 connections to one server, driven from a thread pool of their own.

:class:`HttpConnections` sends requests with the standard library's ``http.client`` in
worker threads: a blocking ``sendall`` on the caller's buffers releases the GIL and
copies nothing, so a body given as several buffers (a chunk record's header and
payload) goes out back to back without being joined, and importing it costs a fraction
of an asyncio HTTP client. Idle connections are reused last in, first out; one the
server closed while it sat idle is replaced once, transparently (callers send only
idempotent requests). When the awaiting task is cancelled, the loop shuts its socket
down so the thread returns at once, and that connection is never reused. Failures
come out as ours: timeouts as :class:`DeadlineExceededError`, anything else on the
socket or in the protocol as :class:`UnavailableError`.
"""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import socket
import ssl
import threading
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from types import TracebackType
from typing import Self
from urllib.parse import quote, urlencode, urlsplit

from edgeback_core.errors import ConfigError, DeadlineExceededError, UnavailableError

Buffer = bytes | bytearray | memoryview
Body = Buffer | Sequence[Buffer]
"""One buffer, or several sent back to back as one body."""

CONNECT_TIMEOUT_S = 10.0
"""Longest wait for a TCP (and TLS) connection, when the I/O timeout is longer."""


@dataclass(frozen=True, slots=True, kw_only=True)
class _Request:
    method: str
    target: str
    """Path and query, as sent on the request line."""
    body: Buffer | tuple[Buffer, ...] | None
    headers: Mapping[str, str]


class _StaleConnectionError(Exception):
    """A reused connection failed before any byte of an answer: the server had closed it."""


class _Exchange:
    """One request's hold on its connection, shared by its worker thread and the loop.

    The lock orders the loop's ``abort`` (the awaiting task was cancelled) against the
    thread taking and releasing the connection, so the loop only ever shuts down a
    socket that is still this request's, never one back in the pool or reused.
    """

    __slots__ = ("_lock", "_sock", "aborted")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        # the socket itself, not the connection: http.client drops ``connection.sock``
        # while a ``Connection: close`` answer is still being read from it
        self._sock: socket.socket | None = None
        self.aborted = False

    def attach(self, connection: http.client.HTTPConnection) -> bool:
        """The thread starts on ``connection`` (connected); False if the caller has gone."""
        with self._lock:
            if not self.aborted:
                self._sock = connection.sock
            return not self.aborted

    def detach(self) -> bool:
        """The thread is done with its connection; True if nobody aborted the request."""
        with self._lock:
            self._sock = None
            return not self.aborted

    def abort(self) -> None:
        """From the loop: unblock the thread (its send or receive fails at once)."""
        with self._lock:
            self.aborted = True
            if self._sock is not None:
                with contextlib.suppress(OSError):
                    # the plain socket's method even for TLS: SSLSocket.shutdown drops its
                    # TLS state first, and a send racing it would go out unencrypted
                    socket.socket.shutdown(self._sock, socket.SHUT_RDWR)


class HttpConnections:
    """At most ``size`` keep-alive connections to the origin of ``base_url`` (http or https).

    An https server's certificate is verified against ``ca_file`` (PEM) when given, else
    against the system's CA store. An async context manager: entering starts the worker
    threads (one per connection), leaving waits for them and closes the idle connections.
    ``timeout_s`` bounds every blocking socket operation (connecting: ``min(10,
    timeout_s)``), not whole requests.
    """

    def __init__(
        self, base_url: str, *, size: int, timeout_s: float, ca_file: str | None = None
    ) -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError(f"not an http(s) URL: {base_url!r}", url=base_url)
        self._https = parts.scheme == "https"
        self._host = parts.hostname
        self._port = parts.port or (443 if self._https else 80)
        self._origin = f"{parts.scheme}://{parts.netloc}"
        self._prefix = parts.path.rstrip("/")
        self._size = max(1, size)
        self._timeout_s = timeout_s
        self._connect_timeout_s = min(CONNECT_TIMEOUT_S, timeout_s)
        self._idle: list[http.client.HTTPConnection] = []
        self._idle_lock = threading.Lock()
        self._tls: ssl.SSLContext | None = None
        self._ca_file = ca_file
        self._tls_lock = threading.Lock()
        self._executor: ThreadPoolExecutor | None = None

    async def __aenter__(self) -> Self:
        self._executor = ThreadPoolExecutor(self._size, thread_name_prefix="http-connections")
        return self

    async def __aexit__(
        self, _t: type[BaseException] | None, _e: BaseException | None, _tb: TracebackType | None
    ) -> None:
        executor, self._executor = self._executor, None
        if executor is not None:
            # threads of cancelled requests were unblocked; others end within timeout_s
            await asyncio.to_thread(executor.shutdown, wait=True, cancel_futures=True)
        with self._idle_lock:
            idle, self._idle = self._idle, []
        for connection in idle:
            connection.close()

    async def request(
        self,
        method: str,
        path: str,
        *,
        query: Mapping[str, str] | None = None,
        body: Body | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> tuple[int, bytes]:
        """Send one request below the base URL's path; (status, whole body) of the answer."""
        executor = self._executor
        if executor is None:
            raise RuntimeError("HttpConnections used outside 'async with'")
        target = quote(self._prefix + path)
        if query:
            target = f"{target}?{urlencode(query)}"
        sent = dict(headers or {})
        payload: Buffer | tuple[Buffer, ...] | None = None
        if body is not None:
            payload = body if isinstance(body, bytes | bytearray | memoryview) else tuple(body)
            # always a length: http.client would otherwise pick chunked encoding
            sent["Content-Length"] = str(_length(payload))
        request = _Request(method=method, target=target, body=payload, headers=sent)
        exchange = _Exchange()
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(executor, self._exchange, request, exchange)
        except asyncio.CancelledError:
            exchange.abort()
            raise
        except TimeoutError as exc:
            raise DeadlineExceededError(f"{method} {self._origin}{target} timed out") from exc
        except (OSError, http.client.HTTPException) as exc:
            url = f"{self._origin}{target}"
            raise UnavailableError(f"storage node unreachable: {exc!r}", url=url) from exc

    # --- worker threads -----------------------------------------------------------

    def _exchange(self, request: _Request, exchange: _Exchange) -> tuple[int, bytes]:
        """*Blocking*: one request and its whole answer, on a pooled or a new connection."""
        connection, reused = self._take()
        try:
            return self._send(connection, request, exchange, reused=reused)
        except _StaleConnectionError:
            return self._send(self._connect(), request, exchange, reused=False)

    def _send(
        self,
        connection: http.client.HTTPConnection,
        request: _Request,
        exchange: _Exchange,
        *,
        reused: bool,
    ) -> tuple[int, bytes]:
        if not exchange.attach(connection):
            connection.close()
            raise ConnectionAbortedError("the request was cancelled before it was sent")
        reusable = False
        try:
            try:
                connection.request(
                    request.method, request.target, body=request.body, headers=request.headers
                )
                response = connection.getresponse()
            except ConnectionError as exc:
                if reused and not exchange.aborted:
                    raise _StaleConnectionError from exc
                raise
            body = response.read()
            reusable = not response.will_close
            return response.status, body
        finally:
            # detach first: once the connection is pooled, an abort must not touch it
            if exchange.detach() and reusable:
                with self._idle_lock:
                    self._idle.append(connection)
            else:
                connection.close()

    def _take(self) -> tuple[http.client.HTTPConnection, bool]:
        """The most recently used idle connection (True), else a new one (False)."""
        with self._idle_lock:
            if self._idle:
                return self._idle.pop(), True
        return self._connect(), False

    def _connect(self) -> http.client.HTTPConnection:
        """*Blocking*: a connected connection whose socket then has the I/O timeout."""
        connection: http.client.HTTPConnection
        if self._https:
            connection = http.client.HTTPSConnection(
                self._host, self._port, timeout=self._connect_timeout_s, context=self._context()
            )
        else:
            connection = http.client.HTTPConnection(
                self._host, self._port, timeout=self._connect_timeout_s
            )
        try:
            connection.connect()
            connection.sock.settimeout(self._timeout_s)
        except BaseException:
            connection.close()
            raise
        return connection

    def _context(self) -> ssl.SSLContext:
        # built on first use: loading the CA store costs tens of ms a plain-http run never needs
        with self._tls_lock:
            if self._tls is None:
                self._tls = ssl.create_default_context(cafile=self._ca_file)
            return self._tls


def _length(body: Buffer | tuple[Buffer, ...]) -> int:
    parts = body if isinstance(body, tuple) else (body,)
    return sum(part.nbytes if isinstance(part, memoryview) else len(part) for part in parts)
