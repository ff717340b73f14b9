"""Retention and GC end to end: the catalog DB behind the catalog's RPCs (both buses),
a storage node process with real manifests and chunks, and one maintenance pass of the
scheduler. Expired sets lose their manifests, GC takes back exactly the chunks they
alone referenced, the pool's totals match a recount of its files, every remaining disk
version's manifest is on the node, a protected set survives, a second pass removes
nothing."""

# ruff: noqa: F811 (``world`` is the fixture imported from test_catalog_rpc)
from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import msgspec
import pytest
from tests.integration.test_catalog_backups import commit, finish, start, to_running, vm
from tests.integration.test_catalog_jobs import setup, spec
from tests.integration.test_catalog_rpc import ADMIN, SERVICE, World, world  # noqa: F401
from tests.integration.test_storage_node_gc import recount
from tests.support.processes import NodeProcess, node_process_async
from tests.support.storage_node import (
    ADMIN_TOKEN,
    MANIFEST_KEY,
    TOKEN,
    chunk,
    make_pools,
    manifest_of,
    random_chunk,
)

from edgeback_blocks.ids import PoolKey
from edgeback_blocks.pool_client import PoolClient
from edgeback_catalog.mongo import Coll
from edgeback_core.bus.amqp import AmqpBus
from edgeback_core.bus.port import Envelope
from edgeback_core.bus.topology import BACKUP_SET_REMOVED, POOL_COLLECTED, QueueSpec
from edgeback_core.messages import backups as b
from edgeback_core.messages import jobs as j
from edgeback_core.messages import retention as rt
from edgeback_core.settings import Secret
from edgeback_scheduler.catalog import CatalogClient
from edgeback_scheduler.maintenance import Maintenance
from edgeback_scheduler.nodes import NodeTokens

pytestmark = pytest.mark.integration

T0 = datetime(2026, 3, 1, 1, 0, tzinfo=UTC)
RUNS = 5


@pytest.fixture
async def node(tmp_path: Path) -> AsyncIterator[NodeProcess]:
    make_pools(tmp_path)
    env = {"EDGEBACK_DEDUP_GC_GRACE_S": "0", "EDGEBACK_DEDUP_PIN_TTL_S": "0.05"}
    async with node_process_async(tmp_path, env=env) as running:
        yield running


async def job_of(world: World, node: NodeProcess) -> str:
    host, platform = await setup(world)
    base = spec(host, platform, retention=j.RetentionPolicy(keep_last=2))
    pool = j.PoolRef(node_url=node.url, name="dd")
    target = msgspec.structs.replace(base.target, pool=pool)
    selection = [j.VmSelection(platform_id=platform, physical_host_id="hv1", vm_id=f"vm-{n}")
                 for n in (1, 2)]  # fmt: skip
    content = msgspec.structs.replace(base.content, vms=selection)
    full = msgspec.structs.replace(base, type="full", target=target, content=content)
    return (await world.call(j.JOB_CREATE, j.JobCreate(actor=ADMIN, spec=full), j.JobInfo)).id


async def backup(
    world: World, pool: PoolClient, key: PoolKey, job_id: str, n: int
) -> dict[str, tuple[str, int]]:
    """Run ``n`` of the job: both VMs, one disk each, a chunk shared by every version of
    the VM and one of its own: by VM, its backup set and the size of its own chunk."""
    started = await start(world, job_id, f"run-{n}")
    run_id = started.run.id
    await to_running(world, run_id)
    await world.call(b.VM_PLAN, b.VmPlan(actor=SERVICE, run_id=run_id, vms=[vm(1), vm(2)]),
                     b.VmPlanReply)  # fmt: skip
    own: dict[str, tuple[str, int]] = {}
    for v in (1, 2):
        shared = chunk(key, f"shared by every version of vm-{v} ".encode() * 2000)
        unique = random_chunk(key)
        for digest, record in (shared, unique[:2]):
            await pool.put_chunk(digest, record)
        manifest = manifest_of([shared[0], unique[0]], vm=f"vm-{v}", disk="d0")
        await pool.put_manifest(f"vm-{v}", "d0", f"v{n}", manifest.encode(MANIFEST_KEY))
        start_vm = b.VmStart(actor=SERVICE, run_id=run_id, vm=vm(v), worker_id="w1")
        await world.call(b.VM_START, start_vm, b.VmTaskReply)
        taken = T0 + timedelta(days=n)
        await world.call(b.DISK_COMMIT, commit(run_id, v, "d0", f"v{n}", taken_at=taken),
                         b.DiskCommitReply)  # fmt: skip
        done = await world.call(b.VM_FINISH, finish(run_id, v, "succeeded"), b.VmTaskReply)
        assert done.task.backup_set_id
        own[f"vm-{v}"] = (done.task.backup_set_id, len(unique[1]))
    return own


class Events:
    def __init__(self) -> None:
        self.removed: list[rt.BackupSetRemoved] = []
        self.collected: list[rt.PoolCollected] = []

    async def on_event(self, event: rt.MaintenanceEvent, _envelope: Envelope) -> None:
        if isinstance(event, rt.BackupSetRemoved):
            self.removed.append(event)
        else:
            self.collected.append(event)


async def manifests_on_node(pool: PoolClient) -> set[tuple[str, str, str]]:
    return {(m.vm, m.disk, m.version) for m in await pool.list_manifests()}


async def catalog_versions(world: World, job_id: str) -> set[tuple[str, str, str]]:
    """The manifests of the disk versions of the job's sets that retention kept."""
    live = await world.db.find(
        Coll.BACKUP_SETS, {"job_id": job_id, "retention_state": {"$exists": False}}
    )
    versions = await world.db.find(
        Coll.DISK_VERSIONS, {"backup_set_id": {"$in": [doc["_id"] for doc in live]}}
    )
    return {(*d["manifest_name"].split("/"), d["manifest_version"]) for d in versions}


async def test_maintenance_expires_deletes_and_reclaims_space(
    world: World, node: NodeProcess
) -> None:
    events = Events()
    queue = QueueSpec(
        name="test.maintenance_events",
        exchange="events",
        bindings=(BACKUP_SET_REMOVED, POOL_COLLECTED),
    )
    await world.bus.consume(queue, events.on_event, rt.MaintenanceEvent)  # type: ignore[arg-type]
    job_id = await job_of(world, node)
    async with PoolClient(node.url, TOKEN, "dd") as pool:
        sets = [await backup(world, pool, node.key("dd"), job_id, n) for n in range(RUNS)]
        protect = rt.BackupSetProtect(actor=ADMIN, backup_set_id=sets[0]["vm-2"][0], reason="audit")
        protected = await world.call(rt.BACKUP_SET_PROTECT, protect, rt.BackupSetProtection)
        assert (protected.protected, protected.applied, protected.retention_state) == (
            True, True, "kept"
        )  # fmt: skip
        await asyncio.sleep(0.1)  # the node's pins of the uploads lapse
        before = await pool.status()
        client = CatalogClient(world.bus, "maintenance-test", timeout_s=10)
        lease = await client.acquire(60)
        nodes = NodeTokens(tokens={node.url: Secret(ADMIN_TOKEN)})
        maintenance = Maintenance(world.bus, client, nodes, lambda: datetime.now(UTC))

        report = await maintenance.run_pass(lease.token)

        expired = {sets[n]["vm-1"][0] for n in range(3)} | {sets[n]["vm-2"][0] for n in (1, 2)}
        assert sorted(report.removed) == sorted(expired)
        reclaimed = sum(sets[n]["vm-1"][1] for n in range(3)) + sum(
            sets[n]["vm-2"][1] for n in (1, 2)
        )
        after = await pool.status()
        assert before.stored_bytes - after.stored_bytes == reclaimed
        assert (after.chunks, after.stored_bytes) == recount(node.data_dir / "dd" / "chunks")
        on_node = await manifests_on_node(pool)
        assert on_node == await catalog_versions(world, job_id)
        assert ("vm-2", "d0", "v0") in on_node  # protected
        assert {("vm-1", "d0", f"v{n}") for n in range(3)}.isdisjoint(on_node)
        collected = report.collected[(node.url, "dd")]
        assert (collected.removed_bytes, collected.stored_bytes) == (reclaimed, after.stored_bytes)
        # expired sets are no restore points and no bases any more
        listed = await world.call(
            b.BACKUP_SET_LIST, b.BackupSetList(actor=ADMIN, job_id=job_id), b.BackupSetListReply
        )
        assert {s.id for s in listed.backup_sets}.isdisjoint(expired)
        assert len(listed.backup_sets) == 2 * RUNS - len(expired)
        deleted = await world.db.count(Coll.BACKUP_SETS, {"retention_state": "deleted"})
        assert deleted == len(expired)
        audit = await world.db.find(Coll.AUDIT_LOG, {"action": "backup_set.expiring"})
        assert {a["resource"].split("/")[1] for a in audit} == expired
        assert all(a["details"]["why"] and a["details"]["kept"] for a in audit)

        again = await maintenance.run_pass(lease.token)
        assert (again.removed, again.left_expiring, again.collected) == ([], 0, {})
        assert await manifests_on_node(pool) == on_node
        assert (await pool.status()).stored_bytes == after.stored_bytes
    async with asyncio.timeout(10):
        while len(events.removed) < len(expired) or not events.collected:  # noqa: ASYNC110
            await asyncio.sleep(0.02)
    assert {e.backup_set_id for e in events.removed} == expired
    assert events.collected[0].removed_bytes == reclaimed
    if isinstance(world.bus, AmqpBus):
        await world.bus.delete_topology([queue])
