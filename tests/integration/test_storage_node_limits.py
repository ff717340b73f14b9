"""The storage node's refusals over real HTTP: full pools, bad tokens, hostile paths."""

from __future__ import annotations

from pathlib import Path

import aiohttp
import pytest
from tests.support.storage_node import (
    ADMIN_TOKEN,
    TOKEN,
    Node,
    files_under,
    make_pools,
    random_chunk,
    running_node,
)
from yarl import URL

from edgeback_blocks.pool_client import PoolClient
from edgeback_blocks.pool_wire import PoolKind
from edgeback_core.errors import (
    ConflictError,
    ErrorBody,
    PermissionDeniedError,
    PoolFullError,
    TransientError,
    UnauthenticatedError,
)
from edgeback_core.retry import RetryPolicy
from edgeback_pools.pool import MAX_RECORD_SIZE


@pytest.fixture
async def node(tmp_path: Path):
    make_pools(tmp_path, quota_bytes=300_000)
    async with running_node(tmp_path) as running:
        yield running


async def test_full_pool_refuses_clearly_and_leaves_no_partial_file(node: Node) -> None:
    key = node.key("tiny")
    chunks = [random_chunk(key, 100_000) for _ in range(4)]
    async with node.client("tiny") as client:
        for digest, record, _ in chunks[:2]:
            assert await client.put_chunk(digest, record)
        with pytest.raises(PoolFullError) as full:
            await client.put_chunk(chunks[2][0], chunks[2][1])
        # a chunk the pool already holds still "uploads": it needs no space
        assert await client.put_chunk(chunks[0][0], chunks[0][1]) is False
        status = await client.status()
    assert full.value.code == "pool_full"
    assert "full" in full.value.message
    assert full.value.details["pool"] == "tiny"
    assert status.chunks == 2
    assert status.free_bytes < 100_048
    stored = files_under(node.data_dir / "tiny")
    assert stored == sorted(f"chunks/{d.hex()[:2]}/{d.hex()}" for d, _, _ in chunks[:2])


async def test_full_pool_answers_507_problem_json(node: Node) -> None:
    key = node.key("tiny")
    headers = {"Authorization": f"Bearer {TOKEN}"}
    async with aiohttp.ClientSession(headers=headers) as http:
        statuses = []
        for _ in range(4):
            digest, record, _ = random_chunk(key, 100_000)
            async with http.put(
                f"{node.url}/v1/pools/tiny/chunks/{digest.hex()}", data=record
            ) as r:
                statuses.append(r.status)
                body = await r.json() if r.status >= 400 else None
    assert statuses[:2] == [201, 201]
    assert statuses[2:] == [507, 507]
    assert body is not None and body["code"] == "pool_full"
    assert set(body) == set(ErrorBody.__struct_fields__)


@pytest.mark.parametrize(
    "authorization",
    [None, "", "Bearer", "Bearer wrong-token-0123456789abcdef", f"Basic {TOKEN}", TOKEN],
)
async def test_missing_or_wrong_token_is_401(node: Node, authorization: str | None) -> None:
    headers = {} if authorization is None else {"Authorization": authorization}
    async with aiohttp.ClientSession(headers=headers) as http:
        for method, path in [("GET", "/v1/pools"), ("GET", "/v1/pools/dd"), ("POST", "/v1/pools")]:
            async with http.request(method, node.url + path) as r:
                assert r.status == 401
                assert (await r.json())["code"] == "unauthenticated"
                assert r.headers["WWW-Authenticate"] == "Bearer"


async def test_client_translates_401(node: Node) -> None:
    async with node.client("dd", token="not-the-token-0123456789") as client:
        with pytest.raises(UnauthenticatedError):
            await client.status()


async def test_pools_are_created_with_the_admin_token_only(node: Node) -> None:
    async with node.client("fresh") as client:
        with pytest.raises(PermissionDeniedError):
            await client.create_pool(PoolKind.DEDUP)
    async with node.client("fresh", token=ADMIN_TOKEN) as admin:
        status = await admin.create_pool(PoolKind.STANDARD, quota_bytes=10**9)
        assert (status.name, status.kind, status.capacity_bytes) == ("fresh", "standard", 10**9)
        with pytest.raises(ConflictError):
            await admin.create_pool(PoolKind.DEDUP)
    async with node.client("fresh") as client:
        assert [p.name for p in await client.list_pools()] == ["dd", "fresh", "std", "tiny"]
    assert (node.data_dir / "fresh" / "pool.key").stat().st_mode & 0o777 == 0o600


HOSTILE = [
    "/v1/pools/..%2F..%2Fetc/chunks/" + "0" * 64,
    "/v1/pools/%2E%2E/chunks/" + "0" * 64,
    "/v1/pools/dd/chunks/" + "0" * 63 + "G",
    "/v1/pools/dd/chunks/" + "0" * 62,
    "/v1/pools/dd/chunks/" + "A" * 64,
    "/v1/pools/dd/chunks/..%2F..%2Fpool.key",
    "/v1/pools/dd/manifests/..%2F..%2F..%2Fescape/disk/v1",
    "/v1/pools/dd/manifests/%2E%2E/%2E%2E/pool",
    "/v1/pools/dd/manifests/.hidden/disk/v1",
    "/v1/pools/dd/manifests/vm/disk/v1%00x",
    "/v1/pools/dd/checkpoints/vm/disk/..",
    "/v1/pools/std/chunks/" + "0" * 64 + "?version=../../dd",
    "/v1/pools/dd/manifests?vm=../../",
]


# where each hostile path would land if the node joined it to a pool's directory as
# given: data dir D = <tmp>/srv/pools, pool files chunks/<2 hex>/<hex>,
# versions/<version>/<2 hex>/<hex>, manifests|checkpoints/<vm>/<disk>/<version>.ebm
ZEROS = "0" * 64
LANDINGS = [
    f"etc/chunks/00/{ZEROS}",  # pool ../../etc
    f"srv/chunks/00/{ZEROS}",  # pool ..
    "srv/pool.key",  # digest ../../pool.key under chunks/<2 hex>/
    "srv/pools/pool.key",  # the same without the <2 hex> level
    "srv/escape/disk/v1.ebm",  # vm ../../../escape
    "srv/pools/pool.ebm",  # vm .., disk .., version pool
    "srv/pools/dd/manifests/.hidden/disk/v1.ebm",
    "srv/pools/dd/checkpoints/vm/disk/...ebm",  # version ..
    f"srv/pools/dd/00/{ZEROS}",  # standard pool, version ../../dd
]


def tree(root: Path) -> dict[str, tuple[bytes, int]]:
    """Every file below ``root``: its bytes and modification time."""
    return {
        str(p.relative_to(root)): (p.read_bytes(), p.stat().st_mtime_ns)
        for p in root.rglob("*")
        if p.is_file()
    }


@pytest.mark.parametrize("path", HOSTILE)
async def test_hostile_paths_are_refused(tmp_path: Path, path: str) -> None:
    data_dir = tmp_path / "srv" / "pools"
    data_dir.mkdir(parents=True)
    make_pools(data_dir)
    secrets = [(data_dir / pool / "pool.key").read_bytes() for pool in ("dd", "std", "tiny")]
    headers = {"Authorization": f"Bearer {TOKEN}"}
    async with running_node(data_dir) as node, aiohttp.ClientSession(headers=headers) as http:
        # canaries where a path taken as given would land: served, they would show in
        # a body; written, the tree would change
        for landing in LANDINGS:
            (tmp_path / landing).parent.mkdir(parents=True, exist_ok=True)
            (tmp_path / landing).write_bytes(b"canary " + landing.encode())
        before = tree(tmp_path)
        url = URL(node.url + path, encoded=True)
        for method in ("GET", "PUT"):
            async with http.request(method, url, data=b"x" * 64) as r:
                body = await r.read()
                assert r.status in (400, 404, 405), (method, path, r.status)
                assert set(await r.json()) == set(ErrorBody.__struct_fields__)
            assert b"canary" not in body
            assert not any(secret in body for secret in secrets)
        assert tree(tmp_path) == before  # nothing created, changed or removed, in or out


async def test_oversized_bodies_are_refused_before_reading(node: Node) -> None:
    headers = {"Authorization": f"Bearer {TOKEN}"}
    async with aiohttp.ClientSession(headers=headers) as http:
        url = f"{node.url}/v1/pools/dd/chunks/{'0' * 64}"
        async with http.put(url, data=b"\0" * (MAX_RECORD_SIZE + 1)) as r:
            assert r.status == 413
        async with http.post(f"{node.url}/v1/pools/dd/chunks/missing", data=b"\0" * 32 * 4097) as r:
            assert r.status == 413


async def test_unreachable_node_is_transient(tmp_path: Path) -> None:
    async with PoolClient(
        "http://127.0.0.1:9", TOKEN, "dd", retry=RetryPolicy(retries=1, base_delay=0)
    ) as client:
        with pytest.raises(TransientError):
            await client.status()
