"""An encrypted pool end to end: the CLI backs up through a real storage node process.

What the pool holds must not contain the disk's plaintext; the restore with the pool
secret is byte-identical, also from the pool directory alone (no node, no catalog);
dedup still works; a wrong secret fails loudly.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from tests.bench.images import image_sha256, remove_image
from tests.support.cli_runner import cli
from tests.support.storage_node import Node, make_pools, running_node

from edgeback_blocks.chunk import CHUNK_SIZE
from edgeback_blocks.pool_wire import PoolKind
from edgeback_blocks.rbd import RbdPool
from edgeback_pools.pool_meta import create_pool

pytestmark = pytest.mark.integration

MARKER = b"EDGEBACK-PLAINTEXT-MARKER-7f3a "
SIZE = 5 * CHUNK_SIZE + 4096


@pytest.fixture
async def node(tmp_path: Path) -> AsyncIterator[Node]:
    make_pools(tmp_path / "pools")
    create_pool(tmp_path / "pools", "enc", PoolKind.DEDUP, encrypted=True)
    async with running_node(tmp_path / "pools") as running:
        yield running


@pytest.fixture
async def names(pool: RbdPool) -> AsyncIterator[list[str]]:
    created: list[str] = []
    yield created
    for name in created:
        await remove_image(pool, name)


def _files_holding(root: Path, needle: bytes) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file() and needle in p.read_bytes()]


async def test_an_encrypted_pool_holds_no_plaintext_and_restores_exactly(
    pool: RbdPool, node: Node, ceph_conf: str, names: list[str], tmp_path: Path
) -> None:
    source, target, again = (f"test-enc-{uuid.uuid4().hex[:10]}" for _ in range(3))
    names += [source, target, again]
    await pool.create_image(source, SIZE)
    async with pool.open_image(source, read_only=False) as image:
        text = MARKER * (CHUNK_SIZE // len(MARKER) + 1)
        for index in range(3):  # compressible text, the same in each chunk but the first
            await image.write(index * CHUNK_SIZE, text[index == 0 :][:CHUNK_SIZE])
        await image.write(4 * CHUNK_SIZE, os.urandom(CHUNK_SIZE))
        await image.create_snap("s1")
    image_arg = f"{pool.name}/{source}@s1"
    full = await cli(node, ceph_conf, "disk", "backup", "--image", image_arg, "--vm", "vm-e",
                     "--disk", "d0", "--version", "v1", pool="enc")  # fmt: skip
    assert full.code == 0, full.err
    assert full.json["chunks_new"] == 3  # two text chunks are one chunk: dedup in the pool

    pool_dir = node.data_dir / "enc"
    assert _files_holding(pool_dir, MARKER[:16]) == []
    assert _files_holding(pool_dir, source.encode()) == []  # the sealed header names it
    assert _files_holding(node.data_dir / "dd", MARKER[:16]) == []  # (nothing went there)

    second = await cli(node, ceph_conf, "disk", "backup", "--image", image_arg, "--vm", "vm-e",
                       "--disk", "d0", "--version", "v2", pool="enc")  # fmt: skip
    assert second.code == 0, second.err
    assert second.json["chunks_new"] == 0 and second.json["bytes_uploaded"] == 0

    restored = await cli(node, ceph_conf, "disk", "restore", "vm-e/d0/v2",
                         "--image", f"{pool.name}/{target}", pool="enc")  # fmt: skip
    assert restored.code == 0, restored.err
    async with pool.open_image(source, snapshot="s1") as image:
        expected = await image_sha256(image, SIZE)
    async with pool.open_image(target) as image:
        assert await image_sha256(image, SIZE) == expected

    # disaster recovery: the pool directory and the secret, no node and no catalog
    local = await cli(node, ceph_conf, "disk", "restore", "vm-e/d0/v1",
                      "--image", f"{pool.name}/{again}", pool_dir=pool_dir)  # fmt: skip
    assert local.code == 0, local.err
    async with pool.open_image(again) as image:
        assert await image_sha256(image, SIZE) == expected

    wrong = tmp_path / "wrong.secret"
    wrong.write_bytes(os.urandom(32))
    wrong.chmod(0o600)
    refused = await cli(node, ceph_conf, "disk", "verify", "vm-e/d0/v1", pool="enc", secret=wrong)
    assert refused.code == 3, refused.err
    assert "integrity error [manifest_invalid]" in refused.err
