"""Disk versions served as raw images over HTTP(S) with ``Range``, by capability URL.

``POST /v1/pools/{pool}/capabilities`` (``write``) checks the manifest of one disk
version (structure, checksum and, with the MAC key the caller sends, its MAC and
name) and answers an unguessable URL ``/v1/images/<id>`` (:mod:`.capabilities`).
``HEAD``/``GET`` on it need no token: librbd's HTTP stream (Ceph's import-only live
migration) sends none. A ``GET`` streams the range asked for, chunk by chunk: each
chunk is read and verified (:class:`~edgeback_pools.disk_image.ChunkReader`) before a
byte of it is sent, zero chunks are zeros without a read. A bad first chunk answers a
problem body; a bad later one closes the connection mid-body, so the client sees a
short response, never wrong bytes. Reads are bounded by a semaphore
(``image_streams``) and an optional token bucket (``image_bytes_per_s``); every use is
logged with the capability's public handle, the range and the bytes sent.
Design and measurements: ``docs/instant-restore.md``.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Final

import msgspec
import structlog
from aiohttp import web

from edgeback_blocks.pool_wire import (
    CapabilityCreated,
    CapabilityItem,
    CreateCapability,
    ImageReadFailure,
)
from edgeback_core.errors import EdgebackError, IntegrityError, InvalidInputError, NotFoundError
from edgeback_core.throttle import UNLIMITED, Throttle, TokenBucket
from edgeback_dedup.access import GRANT, Handler
from edgeback_dedup.byte_ranges import ByteRange, parse_range, pieces
from edgeback_dedup.capabilities import (
    CAPABILITIES_FILE,
    Capability,
    CapabilityStore,
    load,
    utc_now,
)
from edgeback_dedup.http import OCTETS, REGISTRY, SETTINGS, Route, _json, _pool, _received
from edgeback_dedup.tokens import Right
from edgeback_pools.chunk_cache import ChunkCache
from edgeback_pools.disk_image import Buffer, ChunkReader, DiskImage, refuse_encrypted
from edgeback_pools.files import write_atomic
from edgeback_pools.manifest_store import ManifestName
from edgeback_pools.names import safe_name
from edgeback_pools.registry import PoolRegistry

log = structlog.get_logger(__name__)

IMAGE_PATH: Final = "/v1/images/{capability}"
KEPT_IMAGES: Final = 32
KEPT_FAILURES: Final = 1024
"""Chunk maps of images kept decoded (a 1 TiB disk's is about 10 MB)."""
_create_decoder: Final = msgspec.json.Decoder(CreateCapability)


@dataclass(kw_only=True)
class ImageServing:
    """State of the image routes: capabilities, chunk reader, limits, decoded maps."""

    store: CapabilityStore
    reader: ChunkReader
    streams: asyncio.Semaphore
    throttle: Throttle
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    images: OrderedDict[str, DiskImage] = field(default_factory=OrderedDict)
    failures: OrderedDict[str, ImageReadFailure] = field(default_factory=OrderedDict)
    """The last failed read per capability handle (bounded, in memory only)."""

    async def chunk(self, handle: str, image: DiskImage, index: int) -> Buffer:
        """Chunk ``index`` of ``image``, verified; a bad or missing chunk is remembered
        for ``handle`` (a transient error is not: it says nothing about the chunk)."""
        try:
            return await self.reader.chunk(image, index)
        except (IntegrityError, NotFoundError) as exc:  # the chunk is bad or gone; not I/O
            digest = image.entries[index]
            self.failures[handle] = ImageReadFailure(
                code=exc.code, message=exc.message, index=index,
                chunk=None if digest is None else digest.hex(), at=utc_now().isoformat(),
            )  # fmt: skip
            self.failures.move_to_end(handle)
            while len(self.failures) > KEPT_FAILURES:
                self.failures.popitem(last=False)
            raise

    async def image(self, registry: PoolRegistry, record: Capability) -> DiskImage:
        """The image ``record`` names: exactly the manifest it was made for, or an error."""
        image = self.images.get(record.handle)
        if image is None:
            pool = registry.get(record.pool)
            name = _name(record.vm, record.disk, record.version)
            data = await pool.manifests.get(name)
            loop = asyncio.get_running_loop()
            image = await loop.run_in_executor(pool.executor, DiskImage.of, pool, name, data, None)
            if image.checksum.hex() != record.checksum:
                raise InvalidInputError(
                    "the manifest changed since the capability was made", handle=record.handle
                )
            self.remember(record.handle, image)
        return image

    def remember(self, handle: str, image: DiskImage) -> None:
        self.images[handle] = image
        self.images.move_to_end(handle)
        while len(self.images) > KEPT_IMAGES:
            self.images.popitem(last=False)

    async def save(self, registry: PoolRegistry, executor_pool: str) -> None:
        """Write the capabilities file (call under :attr:`lock`)."""
        data = self.store.encode()
        executor = registry.get(executor_pool).executor
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(
            executor, lambda: write_atomic(registry.data_dir, CAPABILITIES_FILE, data)
        )


IMAGES: Final = web.AppKey("images", ImageServing)


async def serving_context(app: web.Application) -> AsyncIterator[None]:
    """Cleanup context: the capabilities (read from the data directory) and the limits."""
    settings = app[SETTINGS]
    records = await asyncio.to_thread(load, settings.data_path)
    rate = settings.image_bytes_per_s
    app[IMAGES] = ImageServing(
        store=CapabilityStore(records, utc_now),
        reader=ChunkReader(ChunkCache(settings.image_cache_bytes)),
        streams=asyncio.Semaphore(settings.image_streams),
        throttle=TokenBucket(rate) if rate > 0 else UNLIMITED,
    )
    yield


async def create_capability(request: web.Request) -> web.Response:
    pool, serving = _pool(request), request.app[IMAGES]
    refuse_encrypted(pool)
    spec = await _create_spec(request)
    name = _name(spec.vm, spec.disk, spec.version)
    mac_key = _mac_key(spec.manifest_mac_key)
    data = await pool.manifests.get(name)
    loop = asyncio.get_running_loop()
    image = await loop.run_in_executor(pool.executor, DiskImage.of, pool, name, data, mac_key)
    identity = request[GRANT].identity
    async with serving.lock:
        presented, record = serving.store.issue(
            pool=pool.name, vm=name.vm, disk=name.disk, version=name.version,
            checksum=image.checksum, size=image.image_size, ttl_s=spec.ttl_s,
            created_by=identity, mac_checked=True,
        )  # fmt: skip
        await serving.save(request.app[REGISTRY], pool.name)
    serving.remember(record.handle, image)
    log.info(
        "capability.created", capability=record.handle, pool=pool.name, vm=name.vm,
        disk=name.disk, version=name.version, expires=record.expires.isoformat(), by=identity,
    )  # fmt: skip
    path = IMAGE_PATH.replace("{capability}", presented)
    created = CapabilityCreated(
        id=presented, path=path, url=f"{request.scheme}://{request.host}{path}",
        capability=_item(record),
    )  # fmt: skip
    return _json(created, status=201)


async def _create_spec(request: web.Request) -> CreateCapability:
    async with _received(request, 16 * 1024) as body:
        try:
            spec = _create_decoder.decode(body)
        except msgspec.ValidationError as exc:
            raise InvalidInputError(f"invalid capability request: {exc}") from exc
        except msgspec.DecodeError as exc:
            raise InvalidInputError("body is not JSON") from exc
    longest = request.app[SETTINGS].capability_max_ttl_s
    if not 0 < spec.ttl_s <= longest:
        raise InvalidInputError(f"ttl_s must be above 0 and at most {longest:g}", ttl_s=spec.ttl_s)
    return spec


def _mac_key(text: str) -> bytes:
    try:
        key = bytes.fromhex(text)
    except ValueError:
        key = b""
    if len(key) != 32:
        raise InvalidInputError("manifest_mac_key must be 64 hex digits (32 bytes)")
    return key


async def list_capabilities(request: web.Request) -> web.Response:
    records = request.app[IMAGES].store.of_pool(_pool(request).name)
    failures = request.app[IMAGES].failures
    return _json([_item(record, failures.get(record.handle)) for record in records])


async def revoke_capability(request: web.Request) -> web.Response:
    pool, serving = _pool(request), request.app[IMAGES]
    handle = request.match_info["handle"]
    async with serving.lock:
        record = serving.store.revoke(pool.name, handle[:64])
        await serving.save(request.app[REGISTRY], pool.name)
    serving.images.pop(record.handle, None)
    log.info("capability.revoked", capability=record.handle, pool=pool.name,
             by=request[GRANT].identity)  # fmt: skip
    return web.Response(status=204)


async def read_image(request: web.Request) -> web.StreamResponse:
    """``HEAD``/``GET`` of a disk image by capability; audited."""
    serving, started = request.app[IMAGES], time.monotonic()
    try:
        record = serving.store.lookup(request.match_info["capability"])
    except EdgebackError as exc:
        log.warning("image.refused", code=exc.code, handle=exc.details.get("handle"),
                    client=request.remote)  # fmt: skip
        raise
    audit = log.bind(capability=record.handle, pool=record.pool, client=request.remote)
    image = await serving.image(request.app[REGISTRY], record)
    if request.method == "HEAD":
        audit.info("image.head", size=image.image_size)
        return await _head(request, image)
    wanted = parse_range(request.headers.get("Range"), image.image_size)
    async with serving.streams:
        response, sent = await _send(request, serving, (record.handle, image), wanted, audit)
    audit.info(
        "image.read", range=f"{wanted.start}-{wanted.stop - 1}", bytes=sent,
        duration_ms=round((time.monotonic() - started) * 1000, 1),
    )  # fmt: skip
    return response


async def _head(request: web.Request, image: DiskImage) -> web.StreamResponse:
    response = web.StreamResponse(headers={"Accept-Ranges": "bytes", "Content-Type": OCTETS})
    response.content_length = image.image_size
    await response.prepare(request)
    await response.write_eof()
    return response


async def _send(
    request: web.Request,
    serving: ImageServing,
    source: tuple[str, DiskImage],
    wanted: ByteRange,
    audit: structlog.typing.FilteringBoundLogger,
) -> tuple[web.StreamResponse, int]:
    """Stream ``wanted`` of the image (with its capability's handle); the response and
    the bytes sent. Each chunk is verified first."""
    handle, image = source
    parts = list(pieces(wanted, image.chunk_size))
    # the first chunk is read before the answer starts: if it is bad, a clean 422
    first = await serving.chunk(handle, image, parts[0].index) if parts else b""
    ranged = "Range" in request.headers
    response = web.StreamResponse(
        status=206 if ranged else 200,
        headers={"Accept-Ranges": "bytes", "Content-Type": OCTETS}
        | ({"Content-Range": wanted.content_range} if ranged else {}),
    )
    response.content_length = wanted.length
    await response.prepare(request)
    sent = 0
    for number, piece in enumerate(parts):
        try:
            data = first if number == 0 else await serving.chunk(handle, image, piece.index)
        except EdgebackError as exc:
            # the status is sent: close the connection mid-body (a short answer), so
            # the client fails the read instead of taking wrong bytes
            audit.error("image.read_aborted", code=exc.code, error=exc.message,
                        chunk_index=piece.index, bytes=sent, **exc.details)  # fmt: skip
            if request.transport is not None:
                request.transport.close()
            raise ConnectionAbortedError(exc.message) from exc
        await serving.throttle.acquire(piece.length)
        await response.write(memoryview(data)[piece.offset : piece.offset + piece.length])
        sent += piece.length
    await response.write_eof()
    return response, sent


def _name(vm: str, disk: str, version: str) -> ManifestName:
    return ManifestName(
        vm=safe_name(vm, what="vm"),
        disk=safe_name(disk, what="disk"),
        version=safe_name(version, what="version"),
    )


def _item(record: Capability, failure: ImageReadFailure | None = None) -> CapabilityItem:
    return CapabilityItem(
        handle=record.handle, pool=record.pool, vm=record.vm, disk=record.disk,
        version=record.version, size=record.size, created=record.created.isoformat(),
        expires=record.expires.isoformat(), created_by=record.created_by,
        revoked=None if record.revoked is None else record.revoked.isoformat(),
        failure=failure,
    )  # fmt: skip


def route_table() -> list[Route]:
    capabilities = "/v1/pools/{pool}/capabilities"
    return [
        ("POST", capabilities, create_capability, Right.WRITE),
        ("GET", capabilities, list_capabilities, Right.READ),
        ("DELETE", capabilities + "/{handle}", revoke_capability, Right.WRITE),
        ("GET", IMAGE_PATH, read_image, None),
    ]


PUBLIC: Final[frozenset[Handler]] = frozenset({read_image})
"""Handlers reached without a bearer token (the capability in the path is the credential)."""
