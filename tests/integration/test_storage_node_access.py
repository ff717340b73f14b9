"""Scoped node access over HTTP(S): tokens bound to pools and rights, checkpoint owners, TLS."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from tests.support.storage_node import (
    ADMIN_TOKEN,
    MANIFEST_KEY,
    TOKEN,
    Node,
    make_pools,
    manifest_of,
    random_chunk,
    running_node,
    scoped_token,
)
from tests.support.tls import make_tls

from edgeback_blocks.pool_client import PoolClient
from edgeback_blocks.pool_wire import PoolKind
from edgeback_core.errors import PermissionDeniedError, PoolFullError, UnavailableError
from edgeback_core.retry import RetryPolicy


@pytest.fixture
async def node(tmp_path: Path) -> AsyncIterator[Node]:
    make_pools(tmp_path)
    async with running_node(tmp_path) as running:
        yield running


async def test_a_token_for_one_pool_gets_403_on_another(node: Node) -> None:
    key = node.key("std")
    digest, record, _ = random_chunk(key, 1000)
    async with node.client("std", token=scoped_token("host-dd")) as other:
        for call in (
            other.status(),
            other.missing([digest]),
            other.put_chunk(digest, record, version="v1"),
            other.get_chunk(digest, version="v1"),
            other.list_manifests(),
            other.put_checkpoint("vm-1", "disk-0", "v1", b"x"),
        ):
            with pytest.raises(PermissionDeniedError):
                await call
    async with node.client("no-such-pool", token=scoped_token("host-dd")) as unknown:
        with pytest.raises(PermissionDeniedError):  # the same answer: existence not revealed
            await unknown.status()
    async with node.client("std", token=scoped_token("host-std")) as own:
        assert await own.put_chunk(digest, record, version="v1") is True


async def test_a_pool_listing_shows_only_the_pools_of_the_token(node: Node) -> None:
    async with node.client("dd", token=scoped_token("host-dd")) as client:
        assert [status.name for status in await client.list_pools()] == ["dd"]
    async with node.client("dd", token=TOKEN) as client:
        assert [status.name for status in await client.list_pools()] == ["dd", "std", "tiny"]


async def test_a_read_token_reads_but_cannot_write(node: Node) -> None:
    digest, record, _ = random_chunk(node.key("dd"), 1000)
    manifest = manifest_of([digest]).encode(MANIFEST_KEY)
    async with node.client("dd", token=scoped_token("host-dd")) as writer:
        await writer.put_chunk(digest, record)
    async with node.client("dd", token=scoped_token("reader-dd")) as reader:
        assert await reader.missing([digest]) == set()
        assert await reader.get_chunk(digest) == record
        for call in (
            reader.put_chunk(digest, record),
            reader.put_manifest("vm-1", "disk-0", "v1", manifest),
            reader.put_checkpoint("vm-1", "disk-0", "v1", b"partial"),
            reader.delete_checkpoint("vm-1", "disk-0", "v1"),
            reader.create_pool(PoolKind.DEDUP),
        ):
            with pytest.raises(PermissionDeniedError):
                await call
        assert (await reader.status()).manifests == 0


@pytest.mark.parametrize("token", ["short-token", scoped_token("host-dd")[:19]])
async def test_short_tokens_are_refused_before_lookup(node: Node, token: str) -> None:
    async with aiohttp.ClientSession() as http:
        headers = {"Authorization": f"Bearer {token}"}
        async with http.get(f"{node.url}/v1/pools", headers=headers) as answer:
            assert answer.status == 401
            assert (await answer.json())["code"] == "unauthenticated"


async def test_a_checkpoint_is_written_and_deleted_only_by_its_owner(node: Node) -> None:
    async with (
        node.client("dd", token=scoped_token("host-dd")) as owner,
        node.client("dd", token=TOKEN) as other,
        node.client("dd", token=ADMIN_TOKEN) as admin,
    ):
        await owner.put_checkpoint("vm-1", "disk-0", "v1", b"first")
        with pytest.raises(PermissionDeniedError):
            await other.put_checkpoint("vm-1", "disk-0", "v1", b"hijacked")
        with pytest.raises(PermissionDeniedError):
            await other.delete_checkpoint("vm-1", "disk-0", "v1")
        assert await other.get_checkpoint("vm-1", "disk-0", "v1") == b"first"
        await owner.put_checkpoint("vm-1", "disk-0", "v1", b"second")
        assert await owner.get_checkpoint("vm-1", "disk-0", "v1") == b"second"
        await admin.delete_checkpoint("vm-1", "disk-0", "v1")  # the admin may clean up
        assert await owner.get_checkpoint("vm-1", "disk-0", "v1") is None


async def test_checkpoints_count_in_the_totals_and_the_quota(node: Node) -> None:
    async with node.client("tiny", token=TOKEN) as client:  # quota 300 000 bytes
        await client.put_checkpoint("vm-1", "disk-0", "v1", bytes(100_000))
        status = await client.status()
        assert status.checkpoints == 1
        assert 100_000 < status.checkpoint_bytes < 100_100
        assert status.used_bytes == status.checkpoint_bytes
        await client.put_checkpoint("vm-1", "disk-0", "v1", bytes(150_000))  # replaced: the delta
        with pytest.raises(PoolFullError):
            await client.put_checkpoint("vm-1", "disk-0", "v2", bytes(200_000))
        assert (await client.status()).checkpoints == 1
        await client.delete_checkpoint("vm-1", "disk-0", "v1")
        status = await client.status()
    assert (status.checkpoints, status.checkpoint_bytes, status.used_bytes) == (0, 0, 0)


async def test_checkpoint_totals_survive_a_restart(tmp_path: Path) -> None:
    make_pools(tmp_path)
    async with running_node(tmp_path) as node, node.client("dd") as client:
        await client.put_checkpoint("vm-1", "disk-0", "v1", bytes(5000))
        before = await client.status()
    async with running_node(tmp_path) as node, node.client("dd") as client:
        after = await client.status()
    assert (after.checkpoints, after.checkpoint_bytes) == (1, before.checkpoint_bytes)


async def test_https_node_serves_clients_that_trust_its_ca_only(tmp_path: Path) -> None:
    make_pools(tmp_path / "pools")
    tls = make_tls(tmp_path)
    async with running_node(tmp_path / "pools", tls=tls) as node:
        assert node.url.startswith("https://")
        digest, record, _ = random_chunk(node.key("dd"), 1000)
        async with node.client("dd", token=scoped_token("host-dd")) as trusting:
            assert await trusting.put_chunk(digest, record) is True
            assert await trusting.get_chunk(digest) == record
        untrusting = PoolClient(
            node.url, scoped_token("host-dd"), "dd", retry=RetryPolicy(retries=0)
        )  # no CA
        async with untrusting:
            with pytest.raises(UnavailableError, match="CERTIFICATE_VERIFY_FAILED"):
                await untrusting.status()
        async with aiohttp.ClientSession() as http:  # plain http to the TLS port: no answer
            with pytest.raises(aiohttp.ClientError):
                await http.get(node.url.replace("https://", "http://") + "/v1/pools")
