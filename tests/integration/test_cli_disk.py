"""The ``edgeback disk`` CLI as a process, against the dev Ceph cluster and a storage node."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from tests.bench.images import DataMaker, image_sha256, remove_image, write_chunk
from tests.support.cli_runner import cli, host_keys
from tests.support.storage_node import Node, make_pools, running_node
from tests.support.tls import make_tls

from edgeback_blocks.chunk import CHUNK_SIZE
from edgeback_blocks.manifest import Manifest
from edgeback_blocks.pool_wire import PoolKind
from edgeback_blocks.rbd import RbdPool
from edgeback_pools.pool_meta import create_pool

pytestmark = pytest.mark.integration

SIZE = 6 * CHUNK_SIZE + 65536


@pytest.fixture
async def node(tmp_path: Path) -> AsyncIterator[Node]:
    """A node over HTTPS (its own CA), used with a backup host's token scoped to ``dd``."""
    make_pools(tmp_path / "pools")
    async with running_node(tmp_path / "pools", tls=make_tls(tmp_path)) as running:
        yield running


@pytest.fixture
async def names(pool: RbdPool) -> AsyncIterator[list[str]]:
    created: list[str] = []
    yield created
    for name in created:
        await remove_image(pool, name)


async def test_backup_incremental_restore_verify_through_the_cli(
    pool: RbdPool, node: Node, ceph_conf: str, names: list[str]
) -> None:
    source, target = f"test-cli-{uuid.uuid4().hex[:10]}", f"test-cli-{uuid.uuid4().hex[:10]}"
    names += [source, target]
    await pool.create_image(source, SIZE)
    data = DataMaker(seed=4)
    async with pool.open_image(source, read_only=False) as image:
        for index in (0, 2, 3):
            await write_chunk(image, index, data.random() if index else data.text())
    image_arg = f"{pool.name}/{source}"
    full = await cli(node, ceph_conf, "disk", "backup", "--image", image_arg,
                     "--vm", "vm-a", "--disk", "d0", "--version", "v1")  # fmt: skip
    assert full.code == 0, full.err
    assert "created snapshot" in full.err
    base_snap = str(full.json["image"]).split("@")[1]
    assert full.json["type"] == "full" and full.json["chunks_new"] == 3

    async with pool.open_image(source, read_only=False) as image:
        await image.discard(0, CHUNK_SIZE)
        await image.write(SIZE - 100, b"x" * 100)
        await image.create_snap("s2")
    incr = await cli(node, ceph_conf, "disk", "backup", "--image", f"{image_arg}@s2",
                     "--base", "vm-a/d0/v1", "--base-snap", base_snap,
                     "--vm", "vm-a", "--disk", "d0", "--version", "v2")  # fmt: skip
    assert incr.code == 0, incr.err
    assert incr.json["type"] == "incremental" and incr.json["chunks_read"] == 1

    restored = await cli(node, ceph_conf, "disk", "restore", "vm-a/d0/v2",
                         "--image", f"{pool.name}/{target}")  # fmt: skip
    assert restored.code == 0, restored.err
    assert "created image" in restored.err
    async with pool.open_image(target) as image:
        got = await image_sha256(image, SIZE)
    async with pool.open_image(source, snapshot="s2") as image:
        assert got == await image_sha256(image, SIZE)

    verified = await cli(node, ceph_conf, "disk", "verify", "vm-a/d0/v2")
    assert verified.code == 0 and verified.json["bad"] == [] and verified.json["checked"] == 3

    # a corrupt chunk: verify exits 3 and names it
    async with node.client("dd") as client:
        v2 = Manifest.decode(
            await client.get_manifest("vm-a", "d0", "v2"), host_keys(node, "dd").manifest
        )
    digest = next(entry for entry in v2.entries if entry is not None)
    chunk = node.data_dir / "dd" / "chunks" / digest.hex()[:2] / digest.hex()
    record = chunk.read_bytes()
    chunk.write_bytes(record[:-1] + bytes([record[-1] ^ 0xFF]))
    broken = await cli(node, ceph_conf, "disk", "verify", "vm-a/d0/v2")
    assert broken.code == 3
    assert [bad["digest"] for bad in broken.json["bad"]] == [chunk.name]  # type: ignore[attr-defined]


async def test_bad_input_changes_nothing_and_exits_2(
    pool: RbdPool, node: Node, ceph_conf: str, names: list[str], tmp_path: Path
) -> None:
    source = f"test-cli-{uuid.uuid4().hex[:10]}"
    names.append(source)
    await pool.create_image(source, SIZE)
    image_arg = f"{pool.name}/{source}"
    wrong_key = tmp_path / "wrong.key"
    wrong_key.write_bytes(b"\1" * 32)
    cases = [
        (["disk", "backup", "--image", "no-slash"], None, "POOL/IMAGE"),
        (["disk", "backup", "--image", image_arg, "--base", "a/b/c"], None, "--base-snap"),
        (["disk", "backup", "--image", image_arg], wrong_key, "does not belong"),
        (["disk", "backup", "--image", f"{image_arg}@nope"], None, "not found"),
        (["disk", "backup", "--image", image_arg, "--base", "vm/d/none", "--base-snap", "x"],
         None, "not_found"),
        (["disk", "restore", "vm/d/none", "--image", image_arg], None, "not_found"),
    ]  # fmt: skip
    for args, key, message in cases:
        result = await cli(node, ceph_conf, *args, key=key)
        assert result.code == 2, (args, result.err)
        assert message in result.err, (args, result.err)
        assert result.out == ""
    async with pool.open_image(source) as image:
        assert await image.list_snaps() == []  # no snapshot was left behind
    async with node.client("dd") as client:
        assert await client.list_manifests() == []


async def test_a_pool_directory_works_without_a_node(
    pool: RbdPool, node: Node, ceph_conf: str, names: list[str], tmp_path: Path
) -> None:
    source, target = f"test-cli-{uuid.uuid4().hex[:10]}", f"test-cli-{uuid.uuid4().hex[:10]}"
    names += [source, target]
    await pool.create_image(source, SIZE)
    async with pool.open_image(source, read_only=False) as image:
        await write_chunk(image, 1, DataMaker(seed=8).random())
        await image.create_snap("s1")
    create_pool(tmp_path / "local", "p", PoolKind.DEDUP)
    pool_dir = tmp_path / "local" / "p"
    backup = await cli(node, ceph_conf, "disk", "backup", "--image", f"{pool.name}/{source}@s1",
                       "--version", "v1", pool_dir=pool_dir)  # fmt: skip
    assert backup.code == 0, backup.err
    assert backup.json["chunks_new"] == 1
    manifest = f"cli/{source}/v1"
    verified = await cli(node, ceph_conf, "disk", "verify", manifest, pool_dir=pool_dir)
    assert verified.code == 0 and verified.json["checked"] == 1
    restored = await cli(node, ceph_conf, "disk", "restore", manifest,
                         "--image", f"{pool.name}/{target}", pool_dir=pool_dir)  # fmt: skip
    assert restored.code == 0, restored.err
    async with pool.open_image(target) as image:
        got = await image_sha256(image, SIZE)
    async with pool.open_image(source, snapshot="s1") as image:
        assert got == await image_sha256(image, SIZE)


async def test_a_failed_restore_leaves_no_half_written_image(
    pool: RbdPool, node: Node, ceph_conf: str, names: list[str]
) -> None:
    source, victim = f"test-cli-{uuid.uuid4().hex[:10]}", f"test-cli-{uuid.uuid4().hex[:10]}"
    fresh = f"test-cli-{uuid.uuid4().hex[:10]}"
    names += [source, victim, fresh]
    data = DataMaker(seed=9)
    for name in (source, victim):
        await pool.create_image(name, SIZE)
        async with pool.open_image(name, read_only=False) as image:
            for index in range(4):
                await write_chunk(image, index, data.random())
    full = await cli(node, ceph_conf, "disk", "backup", "--image", f"{pool.name}/{source}",
                     "--vm", "vm-f", "--disk", "d0", "--version", "v1")  # fmt: skip
    assert full.code == 0, full.err
    async with node.client("dd") as client:
        manifest = Manifest.decode(
            await client.get_manifest("vm-f", "d0", "v1"), host_keys(node, "dd").manifest
        )
    digest = [entry for entry in manifest.entries if entry is not None][-1]
    chunk = node.data_dir / "dd" / "chunks" / digest.hex()[:2] / digest.hex()
    record = chunk.read_bytes()
    chunk.write_bytes(record[:-1] + bytes([record[-1] ^ 0xFF]))
    async with pool.open_image(victim) as image:
        before = await image_sha256(image, SIZE)

    # overwrite with a safety snapshot: the failure rolls the image back
    over = await cli(node, ceph_conf, "disk", "restore", "vm-f/d0/v1", "--force",
                     "--snapshot-before", "--image", f"{pool.name}/{victim}")  # fmt: skip
    assert over.code == 3, over.err
    assert "rolled" in over.err
    async with pool.open_image(victim) as image:
        assert await image_sha256(image, SIZE) == before
        assert await image.list_snaps() == []

    # into a new image: the failure removes what it created
    new = await cli(node, ceph_conf, "disk", "restore", "vm-f/d0/v1",
                    "--image", f"{pool.name}/{fresh}")  # fmt: skip
    assert new.code == 3, new.err
    assert not await pool.image_exists(fresh)
