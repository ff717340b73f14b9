"""Helpers of the storage-node tests: a node on a real loopback socket and chunk makers."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec
from tests.support.tls import TlsFiles

from edgeback_blocks.chunk import CHUNK_SIZE, ChunkEncoder, chunk_digest
from edgeback_blocks.ids import ChunkDigest, PoolId, PoolKey
from edgeback_blocks.keys import ManifestKey
from edgeback_blocks.manifest import BackupType, Manifest, ManifestHeader, created_ms
from edgeback_blocks.pool_client import PoolClient
from edgeback_blocks.pool_wire import PoolKind
from edgeback_core.retry import RetryPolicy
from edgeback_core.settings import Secret
from edgeback_dedup.app import RunningNode, serve
from edgeback_dedup.settings import DedupSettings
from edgeback_dedup.tokens import Right, TokensFile, entry_for
from edgeback_pools.pool_meta import create_pool, read_pool

TOKEN = "data-token-0123456789abcdef"
"""The node's all-pool read/write token (``EDGEBACK_DEDUP_TOKEN``)."""
ADMIN_TOKEN = "admin-token-0123456789abcdef"
MANIFEST_KEY = ManifestKey(bytes(range(32)))
"""The manifest MAC key of test manifests (a backup host's, derived from its pool secret)."""
SCOPED_TOKENS: dict[str, tuple[str, list[str], list[Right]]] = {
    "host-dd": ("host-dd-token-0123456789abcdef", ["dd"], [Right.READ, Right.WRITE]),
    "host-std": ("host-std-token-0123456789abcdef", ["std"], [Right.READ, Right.WRITE]),
    "reader-dd": ("reader-dd-token-0123456789abcdef", ["dd"], [Right.READ]),
}
"""identity → (token, pools, rights) of the tokens file every test node gets."""


def write_tokens_file(path: Path) -> Path:
    """The tokens file of :data:`SCOPED_TOKENS` (hashes only)."""
    entries = [entry_for(i, t, pools, rights) for i, (t, pools, rights) in SCOPED_TOKENS.items()]
    path.write_bytes(msgspec.json.encode(TokensFile(tokens=entries)))
    return path


def scoped_token(identity: str) -> str:
    return SCOPED_TOKENS[identity][0]


@dataclass(frozen=True, slots=True, kw_only=True)
class Node:
    running: RunningNode
    data_dir: Path

    @property
    def url(self) -> str:
        return self.running.url

    def key(self, pool: str) -> PoolKey:
        return PoolKey(read_pool(self.data_dir / pool)[1])

    ca_file: Path | None = None

    def client(self, pool: str, *, token: str = TOKEN, attempts: int = 3) -> PoolClient:
        ca_file = None if self.ca_file is None else str(self.ca_file)
        policy = RetryPolicy(retries=attempts - 1, base_delay=0.01)
        return PoolClient(self.url, token, pool, retry=policy, ca_file=ca_file)


@asynccontextmanager
async def running_node(
    data_dir: Path, *, threads: int = 4, tls: TlsFiles | None = None, **overrides: Any
) -> AsyncIterator[Node]:
    """A node over the pools of ``data_dir`` with :data:`TOKEN`, :data:`ADMIN_TOKEN` and
    :data:`SCOPED_TOKENS`; HTTPS with ``tls``; ``overrides`` of other settings."""
    settings = DedupSettings(
        data_dir=str(data_dir),
        tokens_file=str(write_tokens_file(data_dir / ".tokens.json")),
        token=Secret(TOKEN),
        admin_token=Secret(ADMIN_TOKEN),
        port=0,
        threads=threads,
        tls_cert_file=None if tls is None else str(tls.cert_file),
        tls_key_file=None if tls is None else str(tls.key_file),
    )
    async with serve(dataclasses.replace(settings, **overrides)) as running:
        yield Node(running=running, data_dir=data_dir, ca_file=None if tls is None else tls.ca_file)


def make_pools(data_dir: Path, quota_bytes: int | None = None) -> None:
    create_pool(data_dir, "dd", PoolKind.DEDUP)
    create_pool(data_dir, "std", PoolKind.STANDARD)
    create_pool(data_dir, "tiny", PoolKind.DEDUP, quota_bytes=quota_bytes or 300_000)


def chunk(key: PoolKey, data: bytes) -> tuple[ChunkDigest, bytes]:
    digest = chunk_digest(key, data)
    return digest, ChunkEncoder().encode(data, digest)


def random_chunk(key: PoolKey, size: int = 100_000) -> tuple[ChunkDigest, bytes, bytes]:
    data = os.urandom(size)
    digest, record = chunk(key, data)
    return digest, record, data


def manifest_of(
    entries: list[ChunkDigest | None], *, vm: str = "vm-1", disk: str = "disk-0"
) -> Manifest:
    header = ManifestHeader(
        vm_id=vm,
        disk_id=disk,
        image="rbd/volume-1@snap-1",
        image_size=len(entries) * CHUNK_SIZE,
        created_ms=created_ms(datetime(2026, 1, 2, tzinfo=UTC)),
        backup_type=BackupType.FULL,
        pool_id=PoolId("dd"),
    )
    return Manifest(header=header, entries=tuple(entries))


def files_under(root: Path) -> list[str]:
    """Every file below ``root`` except the pool's identity files, as relative paths."""
    return sorted(
        str(p.relative_to(root))
        for p in root.rglob("*")
        if p.is_file() and p.name not in {"pool.json", "pool.key"}
    )
