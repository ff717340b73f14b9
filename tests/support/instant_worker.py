"""Runs one instant restore the way a worker does: in this process, or as a child process
(``python -m tests.support.instant_worker <spec json>``) that a test can SIGKILL.

The child prints one JSON line per event (``{"event": "progress", ...}``) and a last
line ``{"event": "result", ...}`` or ``{"event": "error", "code": ...}``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import msgspec
from tests.support.processes import ROOT

from edgeback_blocks.pool_client import PoolClient
from edgeback_blocks.rbd import RbdCluster
from edgeback_core.errors import EdgebackError
from edgeback_core.retry import RetryPolicy
from edgeback_core.settings import Secret
from edgeback_platform.client import EdgeCloudClient, PlatformEndpoint
from edgeback_platform.models import VmId
from edgeback_worker.instant_plan import InstantDisk, InstantEvent, InstantRestorePlan
from edgeback_worker.instant_restore import (
    InstantRestoreContext,
    InstantRestoreResult,
    restore_instantly,
)


class DiskSpec(msgspec.Struct, frozen=True, kw_only=True):
    disk: str
    version: str
    target: str
    size: int


class InstantSpec(msgspec.Struct, frozen=True, kw_only=True):
    """Everything one instant restore needs, JSON-encodable for a child process."""

    ceph_conf: str
    ceph_pool: str
    node_url: str
    node_token: str
    node_pool: str
    mac_key: str
    ca_file: str | None = None
    platform_port: int
    access_key: str
    secret_key: str
    restore_key: str
    vm: str
    disks: tuple[DiskSpec, ...]
    keep_moved_aside: bool = False
    progress_interval_s: float = 0.2

    def plan(self) -> InstantRestorePlan:
        disks = tuple(InstantDisk(**msgspec.structs.asdict(d)) for d in self.disks)
        return InstantRestorePlan(
            restore_key=self.restore_key, vm=self.vm, disks=disks, start_vm=VmId(self.vm),
            keep_moved_aside=self.keep_moved_aside, progress_interval_s=self.progress_interval_s,
        )  # fmt: skip


@asynccontextmanager
async def opened(
    spec: InstantSpec, on_event: Callable[[InstantEvent], None]
) -> AsyncIterator[InstantRestoreContext]:
    endpoint = PlatformEndpoint(
        address="127.0.0.1", port=spec.platform_port, access_key=spec.access_key,
        secret_key=Secret(spec.secret_key),
    )  # fmt: skip
    async with (
        RbdCluster.connect(spec.ceph_conf) as cluster,
        cluster.open_pool(spec.ceph_pool) as pool,
        PoolClient(spec.node_url, spec.node_token, spec.node_pool, ca_file=spec.ca_file) as node,
        EdgeCloudClient(endpoint=endpoint, retry=RetryPolicy(retries=2, base_delay=0.05)) as cloud,
    ):
        yield InstantRestoreContext(
            pool=pool, node=node, node_url=spec.node_url,
            manifest_mac_key=bytes.fromhex(spec.mac_key), platform=cloud, on_event=on_event,
            execute_cluster=lambda: RbdCluster.connect(spec.ceph_conf, io_threads=1),
        )  # fmt: skip


async def run(spec: InstantSpec, on_event: Callable[[InstantEvent], None]) -> InstantRestoreResult:
    async with opened(spec, on_event) as ctx:
        return await restore_instantly(ctx, spec.plan())


def child(spec: InstantSpec) -> subprocess.Popen[bytes]:
    """The restore in a child process; read its JSON lines from ``stdout``."""
    cmd = [sys.executable, "-m", "tests.support.instant_worker", msgspec.json.encode(spec).decode()]
    return subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE)


def _print(kind: str, **fields: object) -> None:
    sys.stdout.write(msgspec.json.encode({"event": kind, **fields}).decode() + "\n")
    sys.stdout.flush()


def _on_event(event: InstantEvent) -> None:
    _print(type(event).__name__, **dataclasses.asdict(event))


async def _main(raw: str) -> int:
    spec = msgspec.json.decode(raw, type=InstantSpec)
    try:
        result = await run(spec, _on_event)
    except EdgebackError as exc:
        _print("error", code=exc.code, message=exc.message)
        return 1
    _print("result", **dataclasses.asdict(result))
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(_main(sys.argv[1])))
