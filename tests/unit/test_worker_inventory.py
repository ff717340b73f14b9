"""The inventory a backup host returns: every matching VM under its own host, nothing
invented, hosts without a match left out only when a keyword was given."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edgeback_core.errors import NotFoundError
from edgeback_platform.models import Disk, DiskId, Host, HypervisorId, Vm, VmId
from edgeback_worker.inventory import inventory_of

HOSTS = [Host(id=HypervisorId(f"h{i}"), name=f"node{i}") for i in range(3)]

vms_strategy = st.lists(
    st.builds(
        lambda i, host, state, disks: Vm(
            id=VmId(f"vm{i}"),
            name=f"name{i}",
            host_id=HypervisorId(f"h{host}"),
            state=state,
            disks=tuple(
                Disk(id=DiskId(f"d{i}-{n}"), size=1 << 20, device_index=idx, storage=kind)
                for n, (idx, kind) in enumerate(disks)
            ),
        ),
        st.integers(0, 10_000),
        st.integers(0, 3),  # h3 is not a host of the platform
        st.sampled_from(["running", "stopped", "suspended", "paused", "shelved"]),
        st.lists(st.tuples(st.integers(0, 5), st.sampled_from(["ceph", "other"])), max_size=3),
    ),
    unique_by=lambda vm: vm.id,
    max_size=12,
)


@given(vms_strategy, st.booleans())
def test_every_vm_of_a_known_host_is_listed_once_under_it(vms: list[Vm], keyword: bool) -> None:
    got = inventory_of(HOSTS, vms, keyword="x" if keyword else None)
    listed = {vm.id: host.id for host in got.hosts for vm in host.vms}
    known = {vm.id: vm.host_id for vm in vms if vm.host_id in {h.id for h in HOSTS}}
    assert listed == known
    shown = [h.id for h in got.hosts]
    if keyword:
        assert shown == [h.id for h in HOSTS if h.id in set(known.values())]
    else:
        assert shown == [h.id for h in HOSTS]
    for host in got.hosts:
        assert [v.name for v in host.vms] == sorted(v.name for v in host.vms)
        for vm in host.vms:
            assert [d.id for d in vm.disks] == [
                d.id for d in sorted(_vm(vms, vm.id).disks, key=lambda d: d.device_index)
            ]
            assert vm.on_ceph == (bool(vm.disks) and all(d.storage == "ceph" for d in vm.disks))


@given(vms_strategy)
def test_host_filter_keeps_one_host(vms: list[Vm]) -> None:
    got = inventory_of(HOSTS, vms, hypervisor_id=HypervisorId("h1"))
    assert [h.id for h in got.hosts] == ["h1"]
    assert {vm.id for vm in got.hosts[0].vms} == {vm.id for vm in vms if vm.host_id == "h1"}


def test_unknown_host_is_not_found() -> None:
    with pytest.raises(NotFoundError):
        inventory_of(HOSTS, [], hypervisor_id=HypervisorId("h9"))


def _vm(vms: list[Vm], vm_id: str) -> Vm:
    return next(vm for vm in vms if vm.id == vm_id)
