"""aiohttp client of the edge-cloud API: the production :class:`CloudPlatform` adapter.

Every request is signed (``signing.py``) and retried under the shared
:class:`~edgeback_core.retry.RetryPolicy` (capped exponential backoff, full jitter) on
transient failures (connection errors, timeouts, 429, 5xx). POSTs
carry an ``Idempotency-Key`` that stays the same across retries, so a retried snapshot
request never makes two snapshots. HTTP and aiohttp failures become edgeback errors
here and nowhere else. The Secret Key is kept in a :class:`Secret` and never logged.
"""

from __future__ import annotations

import asyncio
import random
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from ssl import SSLContext, create_default_context
from types import TracebackType
from typing import Any, Final, Self, TypeVar

import aiohttp
import msgspec
import structlog

from edgeback_core.errors import (
    ConflictError,
    EdgebackError,
    InvalidInputError,
    NotFoundError,
    PlatformAuthError,
    PlatformTlsError,
    PlatformUnreachableError,
    UnavailableError,
)
from edgeback_core.retry import RetryPolicy, retrying
from edgeback_core.settings import Secret
from edgeback_platform import signing
from edgeback_platform.models import (
    ErrorBody,
    Host,
    HostList,
    HypervisorId,
    PlatformInfo,
    SnapshotId,
    SnapshotList,
    SnapshotRequest,
    Vm,
    VmId,
    VmList,
    VmSnapshot,
)

DEFAULT_PORT = 30188
API_PREFIX = "/api/v1"
_RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
_log = structlog.get_logger(__name__)
_error_decoder = msgspec.json.Decoder(ErrorBody)
_encoder = msgspec.json.Encoder()
T = TypeVar("T")


@dataclass(frozen=True, slots=True, kw_only=True)
class PlatformEndpoint:
    """Where and how to reach one registered platform."""

    address: str
    access_key: str
    secret_key: Secret
    port: int = DEFAULT_PORT
    ssl: bool = False
    verify_ssl: bool = True
    ca_file: str | None = None

    @property
    def base_url(self) -> str:
        host = f"[{self.address}]" if ":" in self.address else self.address
        return f"{'https' if self.ssl else 'http'}://{host}:{self.port}"

    def ssl_option(self) -> SSLContext | bool:
        if not self.ssl:
            return False
        if not self.verify_ssl:
            return False
        return create_default_context(cafile=self.ca_file)


DEFAULT_RETRY: Final = RetryPolicy(retries=15, base_delay=0.5, max_delay=10.0)
"""Sixteen attempts over about a minute and a half: a platform restart is survived."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Timeouts:
    connect: float = 5.0
    total: float = 30.0


@dataclass(frozen=True, slots=True, kw_only=True)
class _Call:
    method: str
    path: str
    query: tuple[tuple[str, str], ...] = ()
    body: bytes = b""
    idempotency_key: str | None = None


@dataclass(slots=True, kw_only=True)
class EdgeCloudClient:
    """The edge-cloud HTTP API behind the :class:`CloudPlatform` port.

    Use as ``async with EdgeCloudClient(endpoint=...) as platform:``.
    """

    endpoint: PlatformEndpoint
    retry: RetryPolicy = DEFAULT_RETRY
    timeouts: Timeouts = Timeouts()
    clock: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
    jitter: Callable[[], float] = random.random
    _session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> Self:
        timeout = aiohttp.ClientTimeout(total=self.timeouts.total, connect=self.timeouts.connect)
        connector = aiohttp.TCPConnector(ssl=self.endpoint.ssl_option())
        self._session = aiohttp.ClientSession(
            base_url=self.endpoint.base_url, timeout=timeout, connector=connector
        )
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    # -- the port ---------------------------------------------------------------------

    async def check(self) -> PlatformInfo:
        return await self._json(PlatformInfo, _Call(method="GET", path="/ping"))

    async def list_hosts(self) -> list[Host]:
        answer = await self._json(HostList, _Call(method="GET", path="/hosts"))
        return list(answer.hosts)

    async def list_vms(
        self, host_id: HypervisorId | None, *, keyword: str | None = None
    ) -> list[Vm]:
        query: list[tuple[str, str]] = [("host_id", host_id)] if host_id else []
        if keyword:
            query.append(("keyword", keyword))
        call = _Call(method="GET", path="/vms", query=tuple(query))
        return list((await self._json(VmList, call)).vms)

    async def get_vm(self, vm_id: VmId) -> Vm:
        return await self._json(Vm, _Call(method="GET", path=f"/vms/{_segment(vm_id)}"))

    async def create_snapshot(
        self, vm_id: VmId, *, quiesce: bool, idempotency_key: str | None = None
    ) -> VmSnapshot:
        """A snapshot of every disk of the VM. The same ``idempotency_key`` (e.g. derived
        from a run and VM) answers with the snapshot the first call made, even from
        another process; None makes a fresh key that only covers this call's retries."""
        call = _Call(
            method="POST",
            path=f"/vms/{_segment(vm_id)}/snapshots",
            body=_encoder.encode(SnapshotRequest(quiesce=quiesce)),
            idempotency_key=idempotency_key or uuid.uuid4().hex,
        )
        return await self._json(VmSnapshot, call)

    async def list_snapshots(self, vm_id: VmId) -> list[VmSnapshot]:
        call = _Call(method="GET", path=f"/vms/{_segment(vm_id)}/snapshots")
        return list((await self._json(SnapshotList, call)).snapshots)

    async def delete_snapshot(self, vm_id: VmId, snapshot_id: SnapshotId) -> None:
        path = f"/vms/{_segment(vm_id)}/snapshots/{_segment(snapshot_id)}"
        await self._send(_Call(method="DELETE", path=path))

    async def start_vm(self, vm_id: VmId) -> Vm:
        return await self._vm_action(vm_id, "start")

    async def stop_vm(self, vm_id: VmId) -> Vm:
        return await self._vm_action(vm_id, "stop")

    # -- transport --------------------------------------------------------------------

    async def _vm_action(self, vm_id: VmId, action: str) -> Vm:
        call = _Call(
            method="POST",
            path=f"/vms/{_segment(vm_id)}/{action}",
            idempotency_key=uuid.uuid4().hex,
        )
        return await self._json(Vm, call)

    async def _json(self, kind: type[T], call: _Call) -> T:
        payload = await self._send(call)
        try:
            return msgspec.json.decode(payload, type=kind)
        except msgspec.ValidationError as exc:
            raise UnavailableError(
                "platform sent an answer we cannot read", path=call.path, reason=str(exc)
            ) from exc

    async def _send(self, call: _Call) -> bytes:
        """One logical request: attempts until success, a permanent error or retries run out."""

        def note(attempts: int, delay: float, exc: EdgebackError) -> None:
            _log.warning(
                "platform.retry",
                path=call.path,
                attempt=attempts,
                delay_s=round(delay, 3),
                error_code=exc.code,
            )

        return await retrying(
            lambda: self._attempt(call),
            self.retry,
            sleep=self.sleep,
            jitter=self.jitter,
            on_retry=note,
        )

    async def _attempt(self, call: _Call) -> bytes:
        if self._session is None:
            raise RuntimeError("EdgeCloudClient used outside 'async with'")
        headers = self._signed_headers(call)
        try:
            async with self._session.request(
                call.method,
                API_PREFIX + call.path,
                params=call.query,
                data=call.body or None,
                headers=headers,
            ) as response:
                payload = await response.read()
                status = response.status
        except aiohttp.ClientSSLError as exc:
            raise _unreachable(self.endpoint, "tls", exc, retry=False) from exc
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise _unreachable(self.endpoint, type(exc).__name__, exc, retry=True) from exc
        if status >= 400:
            raise _http_error(status, payload, call)
        return payload

    def _signed_headers(self, call: _Call) -> Mapping[str, str]:
        date = signing.format_date(self.clock())
        full_path = API_PREFIX + call.path
        request = signing.RequestToSign.build(call.method, full_path, call.query, date, call.body)
        headers = {
            signing.DATE_HEADER: date,
            signing.AUTH_HEADER: signing.authorization(
                self.endpoint.access_key, self.endpoint.secret_key.reveal(), request
            ),
        }
        if call.body:
            headers["Content-Type"] = "application/json"
        if call.idempotency_key:
            headers["Idempotency-Key"] = call.idempotency_key
        return headers


def _unreachable(
    endpoint: PlatformEndpoint, reason: str, exc: BaseException, *, retry: bool
) -> PlatformUnreachableError:
    kind = PlatformUnreachableError if retry else PlatformTlsError
    return kind(
        f"cannot reach the platform at {endpoint.base_url}: {exc or reason}",
        url=endpoint.base_url,
        reason=reason,
    )


def _http_error(status: int, payload: bytes, call: _Call) -> EdgebackError:
    code, message = _describe(payload)
    details: dict[str, Any] = {"status": status, "path": call.path, "platform_code": code}
    text = f"platform answered {status} to {call.method} {call.path}: {message}"
    if status in (401, 403):
        return PlatformAuthError(text, **details)
    if status == 404:
        return NotFoundError(text, **details)
    if status == 409:
        return ConflictError(text, **details)
    if status in _RETRY_STATUSES or status >= 500:
        return UnavailableError(text, **details)
    return InvalidInputError(text, **details)


def _describe(payload: bytes) -> tuple[str, str]:
    try:
        body = _error_decoder.decode(payload)
    except msgspec.DecodeError:
        return "unknown", payload[:200].decode(errors="replace")
    return body.error.code, body.error.message


def _segment(value: str) -> str:
    """Ids go into the path as one segment; refuse anything that would change the route."""
    if not value or "/" in value or value in (".", ".."):
        raise InvalidInputError("not a valid platform id", value=value)
    return value
