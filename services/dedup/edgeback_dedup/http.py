"""Handlers of the data API ``/v1``: pools, chunks, manifests, checkpoints, GC and scrub.

Every path parameter goes through :mod:`edgeback_pools.names` before use; bodies are
read with an explicit size limit per route (a chunk record, a digest batch, a
manifest), a read timeout, and only once admitted under the node's budget of body
bytes in flight (:mod:`edgeback_dedup.admission`). :func:`route_table` names the right
each route needs on its pool (checked by :mod:`edgeback_dedup.access`). Errors are
raised as ours and turned into problem bodies by the app's middleware. Binary in,
binary out: chunks and digest lists are ``application/octet-stream``; everything
else is JSON.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Final, TypeVar

import msgspec
import structlog
from aiohttp import web

from edgeback_blocks.ids import DIGEST_SIZE
from edgeback_blocks.pool_wire import CollectGarbage, CreatePool, Scrub
from edgeback_core.errors import InvalidInputError
from edgeback_dedup.access import GRANT, Handler, require
from edgeback_dedup.admission import BodyBudget
from edgeback_dedup.bodies import BodyBuffers, read_body
from edgeback_dedup.settings import DedupSettings
from edgeback_dedup.tokens import Right
from edgeback_pools import gc, scrub
from edgeback_pools.checkpoint_store import Writer
from edgeback_pools.manifest_store import ManifestName
from edgeback_pools.names import SafeName, parse_digest_hex, safe_name, split_digests
from edgeback_pools.pool import MAX_RECORD_SIZE, Pool
from edgeback_pools.registry import PoolRegistry

REGISTRY: Final = web.AppKey("registry", PoolRegistry)
SETTINGS: Final = web.AppKey("settings", DedupSettings)
BODIES: Final = web.AppKey("bodies", BodyBuffers)
BUDGET: Final = web.AppKey("budget", BodyBudget)

MAX_MISSING_BATCH: Final = 4096
OCTETS: Final = "application/octet-stream"


_create_decoder: Final = msgspec.json.Decoder(CreatePool)
_gc_decoder: Final = msgspec.json.Decoder(CollectGarbage)
_scrub_decoder: Final = msgspec.json.Decoder(Scrub)
T = TypeVar("T")
log = structlog.get_logger(__name__)


Route = tuple[str, str, Handler, Right | None]
"""Method, path, handler, and the right it needs on the path's pool (None: none, or the
handler checks itself)."""


def route_table() -> list[Route]:
    manifest = "/v1/pools/{pool}/manifests/{vm}/{disk}/{version}"
    checkpoint = "/v1/pools/{pool}/checkpoints/{vm}/{disk}/{version}"
    read, write, admin = Right.READ, Right.WRITE, Right.ADMIN
    return [
        ("GET", "/v1/pools", list_pools, None),
        ("POST", "/v1/pools", create_pool, None),
        ("GET", "/v1/pools/{pool}", pool_status, read),
        ("POST", "/v1/pools/{pool}/chunks/missing", missing_chunks, read),
        ("PUT", "/v1/pools/{pool}/chunks/{digest}", put_chunk, write),
        ("GET", "/v1/pools/{pool}/chunks/{digest}", get_chunk, read),
        ("GET", "/v1/pools/{pool}/manifests", list_manifests, read),
        ("PUT", manifest, put_manifest, write),
        ("GET", manifest, get_manifest, read),
        ("DELETE", manifest, delete_manifest, admin),
        ("POST", "/v1/pools/{pool}/gc", collect_garbage, admin),
        ("POST", "/v1/pools/{pool}/scrub", scrub_pool, admin),
        ("PUT", checkpoint, put_checkpoint, write),
        ("GET", checkpoint, get_checkpoint, read),
        ("DELETE", checkpoint, delete_checkpoint, write),
    ]


def routes(table: list[Route] | None = None) -> list[web.RouteDef]:
    return [
        web.get(path, handler) if method == "GET" else web.route(method, path, handler)
        for method, path, handler, _ in (route_table() if table is None else table)
    ]


def rights(table: list[Route] | None = None) -> dict[Handler, Right]:
    chosen = route_table() if table is None else table
    return {handler: right for _, _, handler, right in chosen if right is not None}


async def list_pools(request: web.Request) -> web.Response:
    """The pools this token may read (the others are not mentioned)."""
    registry, grant = request.app[REGISTRY], request[GRANT]
    names = [name for name in registry.names() if grant.allows(name, Right.READ)]
    return _json([await registry.get(name).status() for name in names])


async def create_pool(request: web.Request) -> web.Response:
    spec = await _decoded(request, _create_decoder)
    name = safe_name(spec.name, what="pool")
    require(request[GRANT], name, Right.ADMIN)
    pool = await request.app[REGISTRY].create(
        name, spec.kind, spec.quota_bytes, encrypted=spec.encrypted
    )
    return _json(await pool.status(), status=201)


async def pool_status(request: web.Request) -> web.Response:
    return _json(await _pool(request).status())


async def missing_chunks(request: web.Request) -> web.Response:
    pool = _pool(request)
    async with _received(request, MAX_MISSING_BATCH * DIGEST_SIZE) as body:
        digests = split_digests(body)
    absent = pool.missing(digests, _version(request))
    return web.Response(body=b"".join(absent), content_type=OCTETS)


async def put_chunk(request: web.Request) -> web.Response:
    pool = _pool(request)
    digest = parse_digest_hex(request.match_info["digest"])
    version = _version(request)
    length = request.content_length
    if length is None or length == 0:  # chunked transfer: rare, read it the plain way
        async with _received(request, MAX_RECORD_SIZE) as body:
            created = await pool.put_chunk(digest, body, version)
        return web.Response(status=201 if created else 200)
    if length > MAX_RECORD_SIZE:
        raise web.HTTPRequestEntityTooLarge(max_size=MAX_RECORD_SIZE, actual_size=length)
    timeout_s = request.app[SETTINGS].body_read_timeout_s
    async with (
        request.app[BUDGET].hold(length),
        request.app[BODIES].body(request, timeout_s) as record,
    ):
        created = await pool.put_chunk(digest, record, version)
    return web.Response(status=201 if created else 200)


async def get_chunk(request: web.Request) -> web.FileResponse:
    # sendfile: the record goes from the page cache to the socket without passing
    # through Python (a restore fetches every chunk of a disk); the client verifies it
    path = _pool(request).chunks.locate(
        parse_digest_hex(request.match_info["digest"]), _version(request)
    )
    return web.FileResponse(path, headers={"Content-Type": OCTETS})


async def list_manifests(request: web.Request) -> web.Response:
    vm, disk = request.query.get("vm"), request.query.get("disk")
    entries = await _pool(request).manifests.list(
        None if vm is None else safe_name(vm, what="vm"),
        None if disk is None else safe_name(disk, what="disk"),
    )
    items = [entry.as_item() for entry in entries]
    return _json(items)


async def put_manifest(request: web.Request) -> web.Response:
    pool, name = _pool(request), _manifest_name(request)
    async with _received(request, request.app[SETTINGS].max_manifest_bytes) as data:
        created = await pool.put_manifest(name, data)
    return web.Response(status=201 if created else 200)


async def get_manifest(request: web.Request) -> web.Response:
    data = await _pool(request).manifests.get(_manifest_name(request))
    return web.Response(body=data, content_type=OCTETS)


async def delete_manifest(request: web.Request) -> web.Response:
    """Retention's (and operators') deletion of a restore point; audited in the node log."""
    pool, name = _pool(request), _manifest_name(request)
    size = await pool.delete_manifest(name)
    log.info(
        "manifest.deleted",
        pool=pool.name,
        vm=name.vm,
        disk=name.disk,
        version=name.version,
        size=size,
        by=request[GRANT].identity,
    )
    return web.Response(status=204)


async def collect_garbage(request: web.Request) -> web.Response:
    pool = _pool(request)
    spec = await _decoded(request, _gc_decoder)
    grace_s = request.app[SETTINGS].gc_grace_s if spec.grace_s is None else spec.grace_s
    if grace_s < 0:
        raise InvalidInputError("grace_s must not be negative", grace_s=grace_s)
    log.info("pool.gc_started", pool=pool.name, grace_s=grace_s, by=request[GRANT].identity)
    return _json(await gc.collect_garbage(pool, grace_s=grace_s, dry_run=spec.dry_run))


async def scrub_pool(request: web.Request) -> web.Response:
    pool = _pool(request)
    spec = await _decoded(request, _scrub_decoder)
    if spec.sample is not None and spec.sample < 1:
        raise InvalidInputError("sample must be at least 1", sample=spec.sample)
    log.info("pool.scrub_started", pool=pool.name, sample=spec.sample, by=request[GRANT].identity)
    return _json(await scrub.scrub(pool, sample=spec.sample))


async def put_checkpoint(request: web.Request) -> web.Response:
    pool, name = _pool(request), _manifest_name(request)
    async with _received(request, request.app[SETTINGS].max_manifest_bytes) as data:
        await pool.put_checkpoint(name, data, _writer(request))
    return web.Response(status=204)


async def get_checkpoint(request: web.Request) -> web.Response:
    data = await _pool(request).checkpoints.get(_manifest_name(request))
    return web.Response(body=data, content_type=OCTETS)


async def delete_checkpoint(request: web.Request) -> web.Response:
    await _pool(request).checkpoints.delete(_manifest_name(request), _writer(request))
    return web.Response(status=204)


@contextlib.asynccontextmanager
async def _received(request: web.Request, limit: int) -> AsyncIterator[bytes]:
    """The body (at most ``limit`` bytes), held under the node's body budget."""
    length = request.content_length
    size = limit if length is None else min(length, limit)
    async with request.app[BUDGET].hold(size):
        yield await read_body(request, limit, request.app[SETTINGS].body_read_timeout_s)


async def _decoded(request: web.Request, decoder: msgspec.json.Decoder[T]) -> T:
    """A small JSON body (an empty one counts as ``{}``), decoded and checked."""
    async with _received(request, 64 * 1024) as body:
        try:
            return decoder.decode(body or b"{}")
        except msgspec.ValidationError as exc:
            raise InvalidInputError(f"invalid request: {exc}") from exc
        except msgspec.DecodeError as exc:
            raise InvalidInputError("body is not JSON") from exc


def _writer(request: web.Request) -> Writer:
    grant = request[GRANT]
    return Writer(identity=grant.identity, override=grant.admin)


def _pool(request: web.Request) -> Pool:
    name = safe_name(request.match_info["pool"], what="pool")
    return request.app[REGISTRY].get(name)


def _version(request: web.Request) -> SafeName | None:
    version = request.query.get("version")
    return None if version is None else safe_name(version, what="version")


def _manifest_name(request: web.Request) -> ManifestName:
    info = request.match_info
    return ManifestName(
        vm=safe_name(info["vm"], what="vm"),
        disk=safe_name(info["disk"], what="disk"),
        version=safe_name(info["version"], what="version"),
    )


def _json(value: object, *, status: int = 200) -> web.Response:
    return web.Response(
        body=msgspec.json.encode(value), status=status, content_type="application/json"
    )
