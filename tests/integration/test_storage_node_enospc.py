"""A pool on a really full filesystem (a 2 MiB tmpfs): refusals, not partial files.

Mounting needs root (CAP_SYS_ADMIN); elsewhere these tests skip. The quota path is
covered without privileges in ``test_storage_node_limits.py``.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.support.storage_node import files_under, random_chunk, running_node

from edgeback_blocks.pool_wire import PoolKind
from edgeback_core.errors import PoolFullError
from edgeback_pools.files import write_atomic
from edgeback_pools.pool_meta import create_pool

_SIZE = 2 * 1024 * 1024


@pytest.fixture
def tiny_fs(tmp_path: Path) -> Iterator[Path]:
    mount = tmp_path / "tiny"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={_SIZE}", "tmpfs", str(mount)],
        capture_output=True,
        check=False,
    )
    if done.returncode != 0:
        reason = f"cannot mount a tmpfs here: {done.stderr.decode().strip()}"
        if os.environ.get("EDGEBACK_REQUIRE_SERVICES") == "1":  # CI runs as root: must work
            pytest.fail(reason)
        pytest.skip(reason)
    try:
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=True)


def test_enospc_mid_write_is_pool_full_and_leaves_nothing(tiny_fs: Path) -> None:
    target = tiny_fs / "ab"
    with pytest.raises(PoolFullError) as full:
        write_atomic(target, "chunk", os.urandom(_SIZE + 4096))
    assert full.value.code == "pool_full"
    assert list(target.iterdir()) == []
    assert os.statvfs(tiny_fs).f_bfree * os.statvfs(tiny_fs).f_frsize == _SIZE


async def test_node_refuses_uploads_when_the_filesystem_is_full(tiny_fs: Path) -> None:
    create_pool(tiny_fs, "p", PoolKind.DEDUP)  # no quota: only the filesystem limits it
    async with running_node(tiny_fs) as node, node.client("p") as client:
        key = node.key("p")
        stored = []
        with pytest.raises(PoolFullError):
            for _ in range(10):
                digest, record, _ = random_chunk(key, 400_000)
                await client.put_chunk(digest, record)
                stored.append(digest)
        status = await client.status()
    assert 2 <= len(stored) < 10
    assert status.chunks == len(stored)
    assert files_under(tiny_fs / "p") == sorted(f"chunks/{d.hex()[:2]}/{d.hex()}" for d in stored)
