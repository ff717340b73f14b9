"""What a test's backup host needs before a job runs on it: the files it keeps per pool,
and the catalog's records of it, of its platform (the emulator) and of that platform's
Ceph storage."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Protocol, TypeVar

import msgspec
from tests.support.emulator_process import EmulatorProcess
from tests.support.processes import NodeProcess
from tests.support.storage_node import TOKEN

from edgeback_blocks.keys import write_secret_file
from edgeback_core.errors import EdgebackError
from edgeback_core.messages import catalog as m
from edgeback_core.messages import catalog_rpc as rpc

R = TypeVar("R", bound=msgspec.Struct)
ADMIN = m.ActorRef()  # the tests' broker user (EDGEBACK_CATALOG_TEST_USERS)


class CatalogCall(Protocol):
    async def __call__(self, name: str, req: msgspec.Struct, resp: type[R], /) -> R: ...


def write_pool_files(pool_dir: Path, node: NodeProcess, pool: str) -> None:
    """What the backup host keeps for ``pool``: secret, node token, plain pool key."""
    write_secret_file(pool_dir / f"{pool}.secret")
    (pool_dir / f"{pool}.token").write_text(TOKEN)
    os.chmod(pool_dir / f"{pool}.token", 0o600)
    (pool_dir / f"{pool}.key").write_bytes(node.key_file(pool).read_bytes())


async def platform_of_host(
    call: CatalogCall, host: str, emulator: EmulatorProcess, *, within_s: float = 30.0
) -> m.PlatformInfo:
    """Activate ``host`` once a heartbeat registered it, register the emulator as its
    platform (checked by a worker of the host, if the catalog has a probe) and add the
    emulator's Ceph pool as the platform's storage."""
    async with asyncio.timeout(within_s):
        while True:
            try:
                await call(rpc.HOST_ACTIVATE, m.HostActivate(actor=ADMIN, host_id=host), m.HostInfo)
                break
            except EdgebackError:  # not registered yet: the heartbeat is on its way
                await asyncio.sleep(0.1)
    register = m.PlatformRegister(
        actor=ADMIN, name="edge", address="127.0.0.1", port=emulator.port, ssl=False,
        access_key=emulator.access_key, secret_key=emulator.secret_key, default_host_id=host,
    )  # fmt: skip
    platform = await call(rpc.PLATFORM_REGISTER, register, m.PlatformInfo)
    ceph = emulator.state().ceph
    storage = m.StorageAdd(
        actor=ADMIN, platform_id=platform.id, name="ceph", host_id=host, pool=ceph.pool,
        conf_path=ceph.conf,
    )  # fmt: skip
    await call(rpc.STORAGE_ADD, storage, m.StorageInfo)
    return platform
