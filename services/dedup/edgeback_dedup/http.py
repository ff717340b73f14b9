"""Handlers of the data API ``/v1``: pools, chunks, manifests and checkpoints.

Every path parameter goes through :mod:`edgeback_pools.names` before use; bodies are
read with an explicit size limit per route (a chunk record, a digest batch, a
manifest). Errors are raised as ours and turned into problem bodies by the app's
middleware. Binary in, binary out: chunks and digest lists are
``application/octet-stream``; everything else is JSON.
"""

from __future__ import annotations

from typing import Final

import msgspec
from aiohttp import web

from edgeback_blocks.ids import DIGEST_SIZE
from edgeback_blocks.pool_wire import CreatePool
from edgeback_core.errors import InvalidInputError
from edgeback_dedup.bodies import BodyBuffers
from edgeback_dedup.settings import DedupSettings
from edgeback_pools.manifest_store import ManifestName
from edgeback_pools.names import SafeName, parse_digest_hex, safe_name, split_digests
from edgeback_pools.pool import MAX_RECORD_SIZE, Pool
from edgeback_pools.registry import PoolRegistry

REGISTRY: Final = web.AppKey("registry", PoolRegistry)
SETTINGS: Final = web.AppKey("settings", DedupSettings)
BODIES: Final = web.AppKey("bodies", BodyBuffers)

MAX_MISSING_BATCH: Final = 4096
OCTETS: Final = "application/octet-stream"


_create_decoder: Final = msgspec.json.Decoder(CreatePool)


def routes() -> list[web.RouteDef]:
    manifest = "/v1/pools/{pool}/manifests/{vm}/{disk}/{version}"
    checkpoint = "/v1/pools/{pool}/checkpoints/{vm}/{disk}/{version}"
    return [
        web.get("/v1/pools", list_pools),
        web.post("/v1/pools", create_pool),
        web.get("/v1/pools/{pool}", pool_status),
        web.post("/v1/pools/{pool}/chunks/missing", missing_chunks),
        web.put("/v1/pools/{pool}/chunks/{digest}", put_chunk),
        web.get("/v1/pools/{pool}/chunks/{digest}", get_chunk),
        web.get("/v1/pools/{pool}/manifests", list_manifests),
        web.put(manifest, put_manifest),
        web.get(manifest, get_manifest),
        web.put(checkpoint, put_checkpoint),
        web.get(checkpoint, get_checkpoint),
        web.delete(checkpoint, delete_checkpoint),
    ]


async def list_pools(request: web.Request) -> web.Response:
    registry = request.app[REGISTRY]
    statuses = [await registry.get(name).status() for name in registry.names()]
    return _json(statuses)


async def create_pool(request: web.Request) -> web.Response:
    try:
        spec = _create_decoder.decode(await read_body(request, 64 * 1024))
    except msgspec.ValidationError as exc:
        raise InvalidInputError(f"invalid pool: {exc}") from exc
    except msgspec.DecodeError as exc:
        raise InvalidInputError("body is not JSON") from exc
    name = safe_name(spec.name, what="pool")
    pool = await request.app[REGISTRY].create(
        name, spec.kind, spec.quota_bytes, encrypted=spec.encrypted
    )
    return _json(await pool.status(), status=201)


async def pool_status(request: web.Request) -> web.Response:
    return _json(await _pool(request).status())


async def missing_chunks(request: web.Request) -> web.Response:
    pool = _pool(request)
    digests = split_digests(await read_body(request, MAX_MISSING_BATCH * DIGEST_SIZE))
    absent = pool.chunks.missing(digests, _version(request))
    return web.Response(body=b"".join(absent), content_type=OCTETS)


async def put_chunk(request: web.Request) -> web.Response:
    pool = _pool(request)
    digest = parse_digest_hex(request.match_info["digest"])
    version = _version(request)
    length = request.content_length
    if length is None or length == 0:  # chunked transfer: rare, read it the plain way
        created = await pool.put_chunk(digest, await read_body(request, MAX_RECORD_SIZE), version)
        return web.Response(status=201 if created else 200)
    if length > MAX_RECORD_SIZE:
        raise web.HTTPRequestEntityTooLarge(max_size=MAX_RECORD_SIZE, actual_size=length)
    async with request.app[BODIES].body(request) as record:
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
    data = await read_body(request, request.app[SETTINGS].max_manifest_bytes)
    created = await pool.put_manifest(name, data)
    return web.Response(status=201 if created else 200)


async def get_manifest(request: web.Request) -> web.Response:
    data = await _pool(request).manifests.get(_manifest_name(request))
    return web.Response(body=data, content_type=OCTETS)


async def put_checkpoint(request: web.Request) -> web.Response:
    pool, name = _pool(request), _manifest_name(request)
    data = await read_body(request, request.app[SETTINGS].max_manifest_bytes)
    await pool.manifests.put_checkpoint(name, data)
    return web.Response(status=204)


async def get_checkpoint(request: web.Request) -> web.Response:
    data = await _pool(request).manifests.get_checkpoint(_manifest_name(request))
    return web.Response(body=data, content_type=OCTETS)


async def delete_checkpoint(request: web.Request) -> web.Response:
    await _pool(request).manifests.delete_checkpoint(_manifest_name(request))
    return web.Response(status=204)


async def read_body(request: web.Request, limit: int) -> bytes:
    """The request body, refusing more than ``limit`` bytes (413) before reading it."""
    length = request.content_length
    if length is not None:
        if length > limit:
            raise web.HTTPRequestEntityTooLarge(max_size=limit, actual_size=length)
        return await request.content.readexactly(length) if length else b""
    body = bytearray()
    async for part in request.content.iter_chunked(1 << 20):
        body += part
        if len(body) > limit:
            raise web.HTTPRequestEntityTooLarge(max_size=limit, actual_size=len(body))
    return bytes(body)


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
