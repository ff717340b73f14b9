"""The quickstart's platform step: pick a VM through the edge-cloud API and snapshot it.

``python -m tests.support.demo snapshot --port P`` (keys from ``QS_ACCESS_KEY`` and
``QS_SECRET_KEY``) lists the VMs through the signed client, takes the first running VM
on Ceph whose guest agent runs, asks the platform for a consistent snapshot (guest
freeze/thaw) and prints ``IMAGE SNAPSHOT VM_ID SNAPSHOT_ID`` of its first disk, the
RBD names made with the default templates. ``delete`` removes that snapshot again.
"""

from __future__ import annotations

import argparse
import asyncio
import os

from edgeback_core.settings import Secret
from edgeback_platform.client import EdgeCloudClient, PlatformEndpoint
from edgeback_platform.models import SnapshotId, Vm, VmId


def endpoint(port: int) -> PlatformEndpoint:
    return PlatformEndpoint(
        address="127.0.0.1",
        port=port,
        access_key=os.environ["QS_ACCESS_KEY"],
        secret_key=Secret(os.environ["QS_SECRET_KEY"]),
    )


def image_of(vm: Vm) -> str:
    disk = vm.disks[0]
    return f"{vm.id}_disk" if disk.volume_id is None else str(disk.volume_id)


async def snapshot(port: int) -> str:
    async with EdgeCloudClient(endpoint=endpoint(port)) as platform:
        vms = await platform.list_vms(None)
        vm = next(v for v in vms if v.state == "running" and v.on_ceph and v.can_quiesce)
        snap = await platform.create_snapshot(vm.id, quiesce=True)
        return f"{image_of(vm)} {snap.for_disk(vm.disks[0].id)} {vm.id} {snap.id}"


async def delete(port: int, vm_id: str, snapshot_id: str) -> None:
    async with EdgeCloudClient(endpoint=endpoint(port)) as platform:
        await platform.delete_snapshot(VmId(vm_id), SnapshotId(snapshot_id))


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.support.demo")
    sub = parser.add_subparsers(dest="command", required=True)
    take = sub.add_parser("snapshot")
    take.add_argument("--port", type=int, required=True)
    drop = sub.add_parser("delete")
    drop.add_argument("--port", type=int, required=True)
    drop.add_argument("vm_id")
    drop.add_argument("snapshot_id")
    args = parser.parse_args()
    if args.command == "snapshot":
        print(asyncio.run(snapshot(args.port)))
    else:
        asyncio.run(delete(args.port, args.vm_id, args.snapshot_id))


if __name__ == "__main__":
    main()
