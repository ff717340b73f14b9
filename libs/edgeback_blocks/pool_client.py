"""Async client of a storage node's data API (``/v1``), as the backup and restore pipelines use it.

One :class:`PoolClient` per pool, opened as an async context manager; it keeps one
``aiohttp.ClientSession`` whose connection pool (keep-alive) is sized for the many
requests the pipelines keep in flight. Errors come out as ours: a problem body's
``code`` maps back to its ``EdgebackError`` class (``pool_full``, ``digest_mismatch``,
``not_found``...), connection failures and 5xx answers to :class:`UnavailableError`,
timeouts to :class:`DeadlineExceededError`. Every call of this API is idempotent, so
transient failures are retried a few times inside the call with a short backoff.

Downloaded chunk records are checked against the digest they were asked for (header
only); the caller decodes them with its ``ChunkDecoder``, which checks the data.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping
from types import TracebackType
from typing import Any, Final, Self

import aiohttp
import msgspec

from edgeback_blocks.chunk import ChunkHeader
from edgeback_blocks.ids import DIGEST_SIZE, ChunkDigest
from edgeback_blocks.pool_wire import CreatePool, ManifestItem, PoolKind, PoolStatus
from edgeback_core import errors
from edgeback_core.errors import (
    DeadlineExceededError,
    DigestMismatchError,
    EdgebackError,
    NotFoundError,
    PermanentError,
    TransientError,
    UnauthenticatedError,
    UnavailableError,
)

MISSING_BATCH: Final = 4096
"""Digests per ``missing`` request (the node's limit)."""
OCTETS: Final = {"Content-Type": "application/octet-stream"}

_status_decoder: Final = msgspec.json.Decoder(PoolStatus)
_statuses_decoder: Final = msgspec.json.Decoder(list[PoolStatus])
_manifests_decoder: Final = msgspec.json.Decoder(list[ManifestItem])


class PoolClient:
    """The data API of one pool on one storage node."""

    def __init__(
        self,
        base_url: str,
        token: str,
        pool: str,
        *,
        connections: int = 16,
        timeout_s: float = 120.0,
        attempts: int = 3,
        backoff_s: float = 0.1,
    ) -> None:
        self._root = base_url.rstrip("/")
        self._pool_url = f"{self._root}/v1/pools/{pool}"
        self._headers = {"Authorization": f"Bearer {token}"}
        self._connections = connections
        self._timeout = aiohttp.ClientTimeout(total=timeout_s, connect=min(10.0, timeout_s))
        self._attempts = max(1, attempts)
        self._backoff_s = backoff_s
        self._session: aiohttp.ClientSession | None = None
        self.pool = pool

    async def __aenter__(self) -> Self:
        connector = aiohttp.TCPConnector(limit=self._connections, keepalive_timeout=60)
        self._session = aiohttp.ClientSession(
            connector=connector, headers=self._headers, timeout=self._timeout
        )
        return self

    async def __aexit__(
        self, _t: type[BaseException] | None, _e: BaseException | None, _tb: TracebackType | None
    ) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    # --- chunks -------------------------------------------------------------------

    async def missing(
        self, digests: Iterable[ChunkDigest], *, version: str | None = None
    ) -> set[ChunkDigest]:
        """Those of ``digests`` the pool does not hold (asked in batches of 4096)."""
        wanted = list(dict.fromkeys(digests))
        absent: set[ChunkDigest] = set()
        for start in range(0, len(wanted), MISSING_BATCH):
            body = b"".join(wanted[start : start + MISSING_BATCH])
            _, answer = await self._call(
                "POST", f"{self._pool_url}/chunks/missing", _version(version), body, OCTETS
            )
            absent.update(
                ChunkDigest(answer[i : i + DIGEST_SIZE]) for i in range(0, len(answer), DIGEST_SIZE)
            )
        return absent

    async def put_chunk(
        self, digest: ChunkDigest, record: bytes, *, version: str | None = None
    ) -> bool:
        """Upload a chunk record; ``True`` if the pool stored it, ``False`` if it had it."""
        url = f"{self._pool_url}/chunks/{digest.hex()}"
        status, _ = await self._call("PUT", url, _version(version), record, OCTETS)
        return status == 201

    async def get_chunk(self, digest: ChunkDigest, *, version: str | None = None) -> bytes:
        """The stored record of ``digest`` (header checked; decode it to check the data)."""
        url = f"{self._pool_url}/chunks/{digest.hex()}"
        _, record = await self._call("GET", url, _version(version))
        header = ChunkHeader.unpack(record)
        if header.digest != digest:
            raise DigestMismatchError(
                f"the pool answered chunk {digest.hex()} with a record of {header.digest.hex()}",
                chunk=digest.hex(),
                actual=header.digest.hex(),
            )
        return record

    # --- manifests and checkpoints ------------------------------------------------

    async def put_manifest(self, vm: str, disk: str, version: str, data: bytes) -> bool:
        """Commit a manifest; ``False`` if the same one was already stored."""
        status, _ = await self._call(
            "PUT", self._manifest_url(vm, disk, version), None, data, OCTETS
        )
        return status == 201

    async def get_manifest(self, vm: str, disk: str, version: str) -> bytes:
        _, data = await self._call("GET", self._manifest_url(vm, disk, version))
        return data

    async def list_manifests(
        self, *, vm: str | None = None, disk: str | None = None
    ) -> list[ManifestItem]:
        query = {k: v for k, v in (("vm", vm), ("disk", disk)) if v is not None}
        _, body = await self._call("GET", f"{self._pool_url}/manifests", query)
        return _manifests_decoder.decode(body)

    async def put_checkpoint(self, vm: str, disk: str, version: str, data: bytes) -> None:
        url = self._manifest_url(vm, disk, version, kind="checkpoints")
        await self._call("PUT", url, None, data, OCTETS)

    async def get_checkpoint(self, vm: str, disk: str, version: str) -> bytes | None:
        """The stored checkpoint, or None if there is none."""
        try:
            _, data = await self._call("GET", self._manifest_url(vm, disk, version, "checkpoints"))
        except NotFoundError:
            return None
        return data

    async def delete_checkpoint(self, vm: str, disk: str, version: str) -> None:
        await self._call("DELETE", self._manifest_url(vm, disk, version, "checkpoints"))

    # --- pools --------------------------------------------------------------------

    async def status(self) -> PoolStatus:
        _, body = await self._call("GET", self._pool_url)
        return _status_decoder.decode(body)

    async def list_pools(self) -> list[PoolStatus]:
        _, body = await self._call("GET", f"{self._root}/v1/pools")
        return _statuses_decoder.decode(body)

    async def create_pool(self, kind: PoolKind, *, quota_bytes: int | None = None) -> PoolStatus:
        """Create this client's pool (needs the node's admin token)."""
        body = msgspec.json.encode(CreatePool(name=self.pool, kind=kind, quota_bytes=quota_bytes))
        headers = {"Content-Type": "application/json"}
        _, answer = await self._call("POST", f"{self._root}/v1/pools", None, body, headers)
        return _status_decoder.decode(answer)

    # --- transport ----------------------------------------------------------------

    def _manifest_url(self, vm: str, disk: str, version: str, kind: str = "manifests") -> str:
        return f"{self._pool_url}/{kind}/{vm}/{disk}/{version}"

    async def _call(
        self,
        method: str,
        url: str,
        params: Mapping[str, str] | None = None,
        data: bytes | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> tuple[int, bytes]:
        """One idempotent request, retried on transient failures; (status, body)."""
        for attempt in range(1, self._attempts + 1):
            try:
                return await self._once(method, url, params, data, headers)
            except TransientError:
                if attempt == self._attempts:
                    raise
            await asyncio.sleep(self._backoff_s * 4 ** (attempt - 1))
        raise AssertionError("unreachable")

    async def _once(
        self,
        method: str,
        url: str,
        params: Mapping[str, str] | None,
        data: bytes | None,
        headers: Mapping[str, str] | None,
    ) -> tuple[int, bytes]:
        if self._session is None:
            raise RuntimeError("PoolClient used outside 'async with'")
        try:
            async with self._session.request(
                method, url, params=params, data=data, headers=headers
            ) as response:
                body = await response.read()
                status = response.status
        except TimeoutError as exc:
            raise DeadlineExceededError(f"{method} {url} timed out") from exc
        except aiohttp.ClientError as exc:
            raise UnavailableError(f"storage node unreachable: {exc}", url=url) from exc
        if status >= 400:
            raise error_from_problem(status, body)
        return status, body


def _version(version: str | None) -> dict[str, str] | None:
    return None if version is None else {"version": version}


def error_from_problem(status: int, body: bytes) -> EdgebackError:
    """Our error for a failed answer: its problem ``code`` if known, else by HTTP status."""
    try:
        problem = msgspec.json.decode(body, type=dict[str, Any])
    except msgspec.DecodeError:
        problem = {}
    message = str(problem.get("message") or f"storage node answered HTTP {status}")
    details = problem.get("details")
    details = details if isinstance(details, dict) else {}
    cls = _classes_by_code().get(str(problem.get("code")))
    if cls is None:
        cls = _class_by_status(status)
    try:
        return cls(message, **details)
    except TypeError:
        return cls(message)


def _class_by_status(status: int) -> type[EdgebackError]:
    if status >= 500:
        return UnavailableError
    if status == 401:
        return UnauthenticatedError
    if status == 404:
        return NotFoundError
    return PermanentError


_codes: dict[str, type[EdgebackError]] = {}


def _classes_by_code() -> dict[str, type[EdgebackError]]:
    if not _codes:
        pending = [errors.EdgebackError]
        while pending:
            cls = pending.pop()
            _codes.setdefault(cls.code, cls)
            pending.extend(cls.__subclasses__())
    return _codes
