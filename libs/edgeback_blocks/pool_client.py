"""Async client of a storage node's data API (``/v1``), as the backup and restore pipelines use it.

One :class:`PoolClient` per pool, opened as an async context manager; it keeps a pool
of keep-alive connections (:mod:`edgeback_blocks.http_connections`: ``http.client`` in
threads of its own) sized for the many requests the pipelines keep in flight. A chunk
record may be uploaded as several buffers (header, payload), sent without joining
them. Errors come out as ours: a problem body is rebuilt as its
``EdgebackError`` class (``pool_full``, ``digest_mismatch``, ``not_found``...),
connection failures and 5xx answers to :class:`UnavailableError`, timeouts to
:class:`DeadlineExceededError`. Every call of this API is idempotent, so transient
failures are retried inside the call under the shared
:class:`~edgeback_core.retry.RetryPolicy` (by default twice, within half a second).

Downloaded chunk records are checked against the digest they were asked for (header
only); the caller decodes them with its ``ChunkDecoder``, which checks the data.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Final, Self, TypeVar

import msgspec
import structlog

from edgeback_blocks.chunk import ChunkHeader
from edgeback_blocks.http_connections import Body, HttpConnections
from edgeback_blocks.ids import DIGEST_SIZE, ChunkDigest
from edgeback_blocks.pool_wire import (
    CapabilityCreated,
    CapabilityItem,
    CollectGarbage,
    CreateCapability,
    CreatePool,
    GcReport,
    ManifestItem,
    PoolKind,
    PoolStatus,
    Scrub,
    ScrubReport,
)
from edgeback_core import errors
from edgeback_core.errors import (
    DigestMismatchError,
    EdgebackError,
    NotFoundError,
    PermanentError,
    UnauthenticatedError,
    UnavailableError,
)
from edgeback_core.retry import OnRetry, RetryPolicy, logged, retrying

if TYPE_CHECKING:
    from edgeback_blocks.pipeline.target import ChunkRecord

MISSING_BATCH: Final = 4096
"""Digests per ``missing`` request (the node's limit)."""
OCTETS: Final = {"Content-Type": "application/octet-stream"}
_log = structlog.get_logger(__name__)
DEFAULT_RETRY: Final = RetryPolicy(retries=2, base_delay=0.1, multiplier=4.0)
"""Three attempts within half a second: a dropped connection, not a node restart."""

T = TypeVar("T")
_status_decoder: Final = msgspec.json.Decoder(PoolStatus)
_gc_decoder: Final = msgspec.json.Decoder(GcReport)
_scrub_decoder: Final = msgspec.json.Decoder(ScrubReport)
_statuses_decoder: Final = msgspec.json.Decoder(list[PoolStatus])
_manifests_decoder: Final = msgspec.json.Decoder(list[ManifestItem])
_capability_decoder: Final = msgspec.json.Decoder(CapabilityCreated)
_capabilities_decoder: Final = msgspec.json.Decoder(list[CapabilityItem])
_problem_decoder: Final = msgspec.json.Decoder(errors.ErrorBody)


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
        retry: RetryPolicy = DEFAULT_RETRY,
        ca_file: str | None = None,
        on_retry: OnRetry | None = None,
    ) -> None:
        """``ca_file``: PEM file of the CA(s) an https node's certificate must chain to
        (default: the system's store). ``on_retry`` is told of every retry (they are
        logged as ``node.retry`` anyway)."""
        self._http = HttpConnections(
            base_url, size=connections, timeout_s=timeout_s, ca_file=ca_file
        )
        self._pool_path = f"/v1/pools/{pool}"
        self._auth = f"Bearer {token}"
        self._retry = retry
        self._on_retry = on_retry
        self.pool = pool
        self.base_url = base_url

    async def __aenter__(self) -> Self:
        await self._http.__aenter__()
        return self

    async def __aexit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self._http.__aexit__(t, e, tb)

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
                "POST", f"{self._pool_path}/chunks/missing", _version(version), body, OCTETS
            )
            absent.update(
                ChunkDigest(answer[i : i + DIGEST_SIZE]) for i in range(0, len(answer), DIGEST_SIZE)
            )
        return absent

    async def put_chunk(
        self, digest: ChunkDigest, record: ChunkRecord, *, version: str | None = None
    ) -> bool:
        """Upload a chunk record, one buffer or its parts (sent back to back, not joined).

        ``True`` if the pool stored it, ``False`` if it already had it.
        """
        path = f"{self._pool_path}/chunks/{digest.hex()}"
        status, _ = await self._call("PUT", path, _version(version), record, OCTETS)
        return status == 201

    async def get_chunk(self, digest: ChunkDigest, *, version: str | None = None) -> bytes:
        """The stored record of ``digest`` (header checked; decode it to check the data)."""
        path = f"{self._pool_path}/chunks/{digest.hex()}"
        _, record = await self._call("GET", path, _version(version))
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
            "PUT", self._manifest_path(vm, disk, version), None, data, OCTETS
        )
        return status == 201

    async def get_manifest(self, vm: str, disk: str, version: str) -> bytes:
        _, data = await self._call("GET", self._manifest_path(vm, disk, version))
        return data

    async def list_manifests(
        self, *, vm: str | None = None, disk: str | None = None
    ) -> list[ManifestItem]:
        query = {k: v for k, v in (("vm", vm), ("disk", disk)) if v is not None}
        _, body = await self._call("GET", f"{self._pool_path}/manifests", query)
        return _manifests_decoder.decode(body)

    async def delete_manifest(self, vm: str, disk: str, version: str) -> None:
        """Delete a committed manifest (retention; the node's admin right)."""
        await self._call("DELETE", self._manifest_path(vm, disk, version))

    async def put_checkpoint(self, vm: str, disk: str, version: str, data: bytes) -> None:
        path = self._manifest_path(vm, disk, version, kind="checkpoints")
        await self._call("PUT", path, None, data, OCTETS)

    async def get_checkpoint(self, vm: str, disk: str, version: str) -> bytes | None:
        """The stored checkpoint, or None if there is none."""
        try:
            _, data = await self._call("GET", self._manifest_path(vm, disk, version, "checkpoints"))
        except NotFoundError:
            return None
        return data

    async def delete_checkpoint(self, vm: str, disk: str, version: str) -> None:
        await self._call("DELETE", self._manifest_path(vm, disk, version, "checkpoints"))

    # --- disk images (instant restore) -------------------------------------------

    async def create_capability(
        self, vm: str, disk: str, version: str, *, manifest_mac_key: bytes, ttl_s: float
    ) -> CapabilityCreated:
        """A capability URL serving one disk version as a raw image for ``ttl_s`` seconds.

        Join ``path`` to the node URL the hypervisors reach (``url`` is built from the
        ``Host`` this request used). Not retried: a lost answer would leave a capability
        nobody knows the id of (it expires; the caller may list and revoke by handle).
        """
        spec = CreateCapability(
            vm=vm, disk=disk, version=version, manifest_mac_key=manifest_mac_key.hex(),
            ttl_s=ttl_s,
        )  # fmt: skip
        headers = {"Authorization": self._auth, "Content-Type": "application/json"}
        status, answer = await self._http.request(
            "POST", f"{self._pool_path}/capabilities", body=msgspec.json.encode(spec),
            headers=headers,
        )  # fmt: skip
        if status >= 400:
            raise error_from_problem(status, answer)
        return _capability_decoder.decode(answer)

    async def list_capabilities(self) -> list[CapabilityItem]:
        """The pool's capabilities (no ids), each with the last read the node failed."""
        _, answer = await self._call("GET", f"{self._pool_path}/capabilities")
        try:
            return _capabilities_decoder.decode(answer)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise UnavailableError(f"the node's capability list is unreadable: {exc}") from exc

    async def revoke_capability(self, handle: str) -> None:
        """Revoke capability ``handle`` (again: no change); its URL answers 410 from now."""
        await self._call("DELETE", f"{self._pool_path}/capabilities/{handle}")

    # --- pools --------------------------------------------------------------------

    async def status(self) -> PoolStatus:
        _, body = await self._call("GET", self._pool_path)
        return _node_answer(_status_decoder, body, self.base_url)

    async def list_pools(self) -> list[PoolStatus]:
        _, body = await self._call("GET", "/v1/pools")
        return _node_answer(_statuses_decoder, body, self.base_url)

    async def create_pool(self, kind: PoolKind, *, quota_bytes: int | None = None) -> PoolStatus:
        """Create this client's pool (needs the node's admin token)."""
        body = msgspec.json.encode(CreatePool(name=self.pool, kind=kind, quota_bytes=quota_bytes))
        headers = {"Content-Type": "application/json"}
        _, answer = await self._call("POST", "/v1/pools", None, body, headers)
        return _status_decoder.decode(answer)

    async def collect_garbage(
        self, *, grace_s: float | None = None, dry_run: bool = False
    ) -> GcReport:
        """Garbage-collect this pool (admin right); what was removed."""
        body = msgspec.json.encode(CollectGarbage(grace_s=grace_s, dry_run=dry_run))
        return _gc_decoder.decode(await self._post_json(f"{self._pool_path}/gc", body))

    async def scrub(self, *, sample: int | None = None) -> ScrubReport:
        """Re-check this pool's chunks on the node (admin right); what was found bad."""
        body = msgspec.json.encode(Scrub(sample=sample))
        return _scrub_decoder.decode(await self._post_json(f"{self._pool_path}/scrub", body))

    async def _post_json(self, path: str, body: bytes) -> bytes:
        _, answer = await self._call("POST", path, None, body, {"Content-Type": "application/json"})
        return answer

    # --- transport ----------------------------------------------------------------

    def _manifest_path(self, vm: str, disk: str, version: str, kind: str = "manifests") -> str:
        return f"{self._pool_path}/{kind}/{vm}/{disk}/{version}"

    async def _call(
        self,
        method: str,
        path: str,
        query: Mapping[str, str] | None = None,
        body: Body | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> tuple[int, bytes]:
        """One idempotent request, retried on transient failures; (status, body)."""
        sent = {"Authorization": self._auth, **(headers or {})}

        async def attempt() -> tuple[int, bytes]:
            status, answer = await self._http.request(
                method, path, query=query, body=body, headers=sent
            )
            if status >= 400:
                raise error_from_problem(status, answer)
            return status, answer

        note = logged(_log, "node.retry", self._on_retry, path=path)
        return await retrying(attempt, self._retry, on_retry=note)


def _version(version: str | None) -> dict[str, str] | None:
    return None if version is None else {"version": version}


def error_from_problem(status: int, body: bytes) -> EdgebackError:
    """Our error for a failed answer: the one its problem body describes, else by HTTP status
    (a proxy's page, or a code of the node's HTTP layer such as ``http_405``)."""
    try:
        problem: errors.ErrorBody | None = _problem_decoder.decode(body)
    except msgspec.DecodeError:
        problem = None
    if problem is not None and (problem.code in errors.registered() or problem.kinds):
        return errors.error_of(problem)
    fallback = f"storage node answered HTTP {status}"
    if problem is None:
        return _class_by_status(status)(fallback)
    return _class_by_status(status)(problem.message or fallback, **problem.details)


def _class_by_status(status: int) -> type[EdgebackError]:
    if status >= 500:
        return UnavailableError
    if status == 401:
        return UnauthenticatedError
    if status == 404:
        return NotFoundError
    return PermanentError


def _node_answer(decoder: msgspec.json.Decoder[T], body: bytes, url: str) -> T:
    """``body`` decoded, or ``not_a_storage_node``: whatever answers there is no node."""
    try:
        return decoder.decode(body)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise errors.NotAStorageNodeError(
            f"{url} answered, but not as an edgeback storage node: {exc}", node_url=url
        ) from exc
