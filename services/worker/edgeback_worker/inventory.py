"""What a backup host answers when an admin browses a platform: physical host → VM → disks.

Pure logic, no I/O: the platform's hosts and VMs in, the wire reply out. The platform
does the keyword match (name or id, any case); this groups its VMs under their hosts,
keeps the host asked for, and leaves out hosts without a match when a keyword was given.
"""

from __future__ import annotations

from collections.abc import Sequence

from edgeback_core.errors import NotFoundError
from edgeback_core.messages import worker as w
from edgeback_platform.models import Disk, Host, HypervisorId, Vm


def inventory_of(
    hosts: Sequence[Host],
    vms: Sequence[Vm],
    *,
    keyword: str | None = None,
    hypervisor_id: HypervisorId | None = None,
) -> w.PlatformInventory:
    """Group ``vms`` under ``hosts`` (in the platform's order, VMs sorted by name)."""
    if hypervisor_id is not None:
        hosts = [h for h in hosts if h.id == hypervisor_id]
        if not hosts:
            raise NotFoundError(
                f"the platform has no physical host {hypervisor_id}", host_id=hypervisor_id
            )
    by_host: dict[str, list[Vm]] = {h.id: [] for h in hosts}
    for vm in vms:
        if vm.host_id in by_host:
            by_host[vm.host_id].append(vm)
    listed = [
        w.InventoryHost(
            id=h.id,
            name=h.name,
            address=h.address,
            status=h.status,
            vms=[inventory_vm(vm) for vm in sorted(by_host[h.id], key=lambda v: (v.name, v.id))],
        )
        for h in hosts
        if not keyword or by_host[h.id]
    ]
    return w.PlatformInventory(hosts=listed, keyword=keyword or None)


def inventory_vm(vm: Vm) -> w.InventoryVm:
    return w.InventoryVm(
        id=vm.id,
        name=vm.name,
        state=vm.state,
        guest_agent_installed=vm.guest_agent.installed,
        guest_agent_running=vm.guest_agent.running,
        on_ceph=vm.on_ceph,
        disks=[_disk(d) for d in sorted(vm.disks, key=lambda d: d.device_index)],
    )


def _disk(disk: Disk) -> w.InventoryDisk:
    return w.InventoryDisk(
        id=disk.id,
        volume_id=disk.volume_id,
        size=disk.size,
        storage=disk.storage,
        pool=disk.pool,
        boot=disk.boot,
    )
