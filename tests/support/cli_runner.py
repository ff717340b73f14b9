"""Runs the ``edgeback`` CLI as a process against a test storage node or a pool directory."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from tests.support.storage_node import SCOPED_TOKENS, TOKEN, Node, scoped_token

from edgeback_blocks.keys import ClientKeys, read_secret_file
from edgeback_pools.pool_meta import read_pool


@dataclass(frozen=True, slots=True)
class Result:
    code: int
    out: str
    err: str

    @property
    def json(self) -> dict[str, object]:
        loaded: dict[str, object] = json.loads(self.out)
        return loaded


def secret_file(node: Node) -> Path:
    """The backup host's pool secret of this test (one per node; mode 0600)."""
    path = node.data_dir.parent / "host.secret"
    if not path.exists():
        path.write_bytes(os.urandom(32))
        path.chmod(0o600)
    return path


def host_keys(node: Node, pool: str) -> ClientKeys:
    """The keys the CLI derives for ``pool`` of ``node`` (to read what it wrote)."""
    secret = read_secret_file(secret_file(node))
    if read_pool(node.data_dir / pool)[0].encrypted:
        return ClientKeys.encrypted_pool(secret)
    return ClientKeys.plain(secret, node.key(pool))


async def cli(
    node: Node,
    ceph_conf: str,
    *args: str,
    key: Path | None = None,
    pool_dir: Path | None = None,
    pool: str = "dd",
    secret: Path | None = None,
) -> Result:
    """Run ``edgeback ARGS`` against the node (or, given ``pool_dir``, that directory)."""
    verb = args[1]
    where = ["--to" if verb == "backup" else "--from"]
    where += [str(pool_dir)] if pool_dir else [node.url, "--pool", pool]
    if pool_dir is None and node.ca_file is not None:
        where += ["--ca-file", str(node.ca_file)]
    if (pool_dir is None or key is not None) and not read_pool(node.data_dir / pool)[0].encrypted:
        where += ["--key-file", str(key or node.data_dir / pool / "pool.key")]
    where += ["--secret-key-file", str(secret or secret_file(node))]
    # the backup host's token scoped to the pool where the test node has one
    host = f"host-{pool}"
    token = scoped_token(host) if host in SCOPED_TOKENS else TOKEN
    return await edgeback(*args, *where, "--json", token=token, ceph_conf=ceph_conf)


async def edgeback(*args: str, token: str, ceph_conf: str) -> Result:
    """Run ``edgeback ARGS`` as a process with node token ``token`` and ``ceph_conf``."""
    env = {**os.environ, "EDGEBACK_TOKEN": token, "CEPH_CONF": ceph_conf}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", "from edgeback_cli.main import main; main()", *args,
        env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await proc.communicate()
    assert proc.returncode is not None
    return Result(proc.returncode, out.decode(), err.decode())
