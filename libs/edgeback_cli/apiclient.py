"""The CLI's client of the HTTP API: JSON in and out over one ``http.client``
connection, problem bodies turned back into our errors (``edgeback_core.errors``).

``http.client`` rather than aiohttp: a command does a few requests one after the
other, and the CLI's start-up time counts (aiohttp costs ~0.2 s to import).
"""

from __future__ import annotations

import http.client
import ssl
import urllib.parse
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import msgspec

from edgeback_core.errors import (
    ConfigError,
    EdgebackError,
    ErrorBody,
    InvalidInputError,
    NotFoundError,
    UnavailableError,
    error_of,
)

API_PREFIX = "/api/v1"
DEFAULT_URL = "http://127.0.0.1:8440"
TIMEOUT_S = 90.0
"""Above the API's slowest catalog deadline (60 s for checks that reach a platform)."""


def normalize_url(url: str) -> str:
    """``url`` without a trailing ``/`` or ``/api/v1``; refused unless http(s)://host."""
    refused = ConfigError(f"the API URL must be http(s)://HOST[:PORT][/PATH], not {url!r}")
    try:
        parts = urllib.parse.urlsplit(url.strip())
        parts.port  # noqa: B018 - raises for a port out of range
    except ValueError as exc:  # "http://[::1", a port above 65535
        raise refused from exc
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        raise refused
    if any(c.isspace() or not c.isprintable() for c in parts.path):
        raise refused
    path = parts.path.rstrip("/")
    path = path.removesuffix(API_PREFIX)
    return urllib.parse.urlunsplit((parts.scheme, parts.netloc, path, "", ""))


def problem_error(status: int, content_type: str, body: bytes) -> EdgebackError:
    """The error an answer with ``status`` >= 400 stands for."""
    if "json" in content_type:
        try:
            problem = msgspec.json.decode(body, type=ErrorBody)
        except msgspec.DecodeError:
            pass
        else:
            error = error_of(problem)
            if type(error) is not EdgebackError or not 400 <= status < 500:
                return error
            # a code this CLI does not know, of no kind it knows (an unknown route's
            # ``http_404``): the status still says it was the request, not the API
            refused = NotFoundError if status == 404 else InvalidInputError
            return refused(
                f"the API answered HTTP {status} ({problem.code}): {problem.message}",
                **error.details,
            )
    text = body[:200].decode(errors="replace").strip()
    if status >= 500:
        return UnavailableError(f"the API answered HTTP {status}: {text}", status=status)
    return InvalidInputError(f"the API answered HTTP {status}: {text}", status=status)


class ApiClient:
    """Requests to one API; ``token`` is sent as ``Authorization: Bearer``."""

    def __init__(
        self,
        base_url: str,
        *,
        token: str | None = None,
        ca_file: str | None = None,
        timeout_s: float = TIMEOUT_S,
    ) -> None:
        self.base_url = normalize_url(base_url)
        self.token = token
        parts = urllib.parse.urlsplit(self.base_url)
        self._prefix = parts.path + API_PREFIX
        self._ca_file = ca_file
        self._conn = self._connection(timeout_s)

    def _connection(self, timeout_s: float) -> http.client.HTTPConnection:
        parts = urllib.parse.urlsplit(self.base_url)
        host, port = parts.hostname or "", parts.port
        if parts.scheme == "https":
            context = ssl.create_default_context(cafile=self._ca_file)
            return http.client.HTTPSConnection(host, port, timeout=timeout_s, context=context)
        return http.client.HTTPConnection(host, port, timeout=timeout_s)

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> ApiClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def request(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        query: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Any:
        """The decoded JSON answer (None for 204); our error for a problem answer."""
        url = self._prefix + _quoted(path)
        given = {k: _query_value(v) for k, v in (query or {}).items() if v is not None}
        if given:
            url += "?" + urllib.parse.urlencode(given)
        sent = {"Accept": "application/json", **(headers or {})}
        payload = None
        if body is not None:
            payload = msgspec.json.encode(body)
            sent["Content-Type"] = "application/json"
        if self.token:
            sent["Authorization"] = f"Bearer {self.token}"
        status, content_type, data = self._exchange(method, url, payload, sent)
        if status >= 400:
            raise problem_error(status, content_type, data)
        return msgspec.json.decode(data) if data else None

    def lines(
        self, path: str, *, headers: Mapping[str, str] | None = None, idle_s: float = TIMEOUT_S
    ) -> Iterator[str]:
        """The lines of a streamed answer (server-sent events) as they come, on a
        connection of their own; our error for a problem answer, ``UnavailableError``
        when the stream breaks or stays silent ``idle_s`` seconds."""
        conn = self._connection(idle_s)
        sent = {"Accept": "text/event-stream", **(headers or {})}
        if self.token:
            sent["Authorization"] = f"Bearer {self.token}"
        try:
            answer = self._open(conn, "GET", self._prefix + _quoted(path), None, sent)
            if answer.status >= 400:
                raise problem_error(
                    answer.status, answer.getheader("Content-Type") or "", answer.read()
                )
            while line := self._guard(answer.readline):
                yield line.decode(errors="replace").rstrip("\r\n")
        finally:
            conn.close()

    def _guard(self, read: Callable[[], bytes]) -> bytes:
        try:
            return read()
        except (OSError, http.client.HTTPException) as exc:
            raise UnavailableError(f"the stream from {self.base_url} broke: {exc}") from exc

    def _open(
        self,
        conn: http.client.HTTPConnection,
        method: str,
        url: str,
        payload: bytes | None,
        headers: dict[str, str],
    ) -> http.client.HTTPResponse:
        try:
            conn.request(method, url, body=payload, headers=headers)
            return conn.getresponse()
        except ssl.SSLCertVerificationError as exc:
            raise ConfigError(
                f"the API's certificate is not trusted ({exc.verify_message}): pass --ca-file"
            ) from exc
        except (OSError, http.client.HTTPException) as exc:
            conn.close()
            raise UnavailableError(f"cannot reach the API at {self.base_url}: {exc}") from exc

    def _exchange(
        self, method: str, url: str, payload: bytes | None, headers: dict[str, str]
    ) -> tuple[int, str, bytes]:
        answer = self._open(self._conn, method, url, payload, headers)
        try:
            return answer.status, answer.getheader("Content-Type") or "", answer.read()
        except (OSError, http.client.HTTPException) as exc:
            self._conn.close()
            raise UnavailableError(f"cannot reach the API at {self.base_url}: {exc}") from exc


def _quoted(path: str) -> str:
    """``path`` percent-encoded but for its slashes: an id typed with a space, ``?``,
    ``#`` or ``%`` is sent as that id, not as a broken URL or a query."""
    return urllib.parse.quote(path, safe="/")


def _query_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def fetch_all(client: ApiClient, path: str, query: Mapping[str, Any], limit: int) -> list[Any]:
    """Up to ``limit`` items of a paged list, following ``next_cursor``."""
    if limit < 1:  # else nothing is asked and "(none)" shown, as if there were none
        raise InvalidInputError(f"--limit must be at least 1, not {limit}")
    items: list[Any] = []
    cursor: str | None = None
    while len(items) < limit:
        page = client.request(
            "GET", path, query={**query, "limit": min(200, limit - len(items)), "cursor": cursor}
        )
        items.extend(page["items"])
        cursor = page.get("next_cursor")
        if not cursor:
            break
    return items
