"""Instant restore benchmark: one VM disk restored by a normal restore run and by an
instant one, from the same restore point in the same run.

The catalog and one worker run in this process on RabbitMQ and the catalog DB
(``EDGEBACK_AMQP_URL``, ``EDGEBACK_MONGO_URL``), a storage node and the platform
emulator as child processes (``tests/support/run_world.py``). The emulator seeds one VM
with one ``--disk-mib`` disk, ``--fill`` of its chunks written; a full job run backs it
up and the disk is changed before each restore (both restore to the original path):

- normal restore: request → the run ended (the disk is usable only then);
- instant restore: request → VM started, → first 4 MiB read, → committed (the run ended);
  meanwhile random 4 KiB reads on the disk (``rbd bench --io-type read --io-pattern
  rand``, one thread), and the same reads again on the committed disk as the baseline.

Both restored disks are checked byte-identical to the backed-up snapshot. CPU seconds
per GiB: this process (catalog and worker), the node, the OSDs.

    .venv/bin/python -m tests.bench.bench_instant [--disk-mib 4096] [--fill 0.3] [--json PATH]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import sys
import time
import uuid
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

from tests.bench.bench_data_path import check_room, emit
from tests.bench.bench_runs import CpuMeter, per_gib, rate, scratch
from tests.bench.processes import osd_pids, run_timed
from tests.support.backup_host import ADMIN
from tests.support.restore_runs import (
    read_digest,
    restore_and_wait,
    scribble,
    vm_images,
    vm_started_after,
)
from tests.support.run_world import (
    HOST,
    POOL,
    RunWorld,
    Seeding,
    add_platform,
    create_job,
    host_workers,
    run_job,
    serve_world,
)

from edgeback_blocks.rbd import RbdCluster, RbdPool
from edgeback_core.bus.topology import Topology
from edgeback_core.messages import backups as b
from edgeback_core.messages import jobs as j
from edgeback_core.messages import restores as r

MIB = 1 << 20
_OPS = re.compile(r"ops/sec:\s*([0-9.]+)")


def random_reads(conf: str, image: str, total_bytes: int) -> dict[str, float]:
    """``rbd bench`` random 4 KiB reads, one at a time: ops/s and mean latency (µs)."""
    timed = run_timed([
        "rbd", "-c", conf, "bench", "--io-type", "read", "--io-pattern", "rand",
        "--io-size", "4096", "--io-threads", "1", "--io-total", str(total_bytes), image,
    ])  # fmt: skip
    found = _OPS.findall(timed.out)
    if not found:
        raise RuntimeError(f"rbd bench printed no ops/sec: {timed.out[-500:]}")
    ops = float(found[-1])
    return {"ops_per_s": ops, "mean_latency_us": 1e6 / ops, "wall_s": timed.wall_s}


async def first_read(pool: RbdPool, image: str) -> None:
    async with pool.open_image(image, read_only=True) as opened:
        await opened.read(0, 4 * MIB)


async def timed_restore(
    world: RunWorld, spec: r.RestoreSpec, within_s: float
) -> tuple[r.RestoreInfo, float]:
    asked = time.time()
    done = await restore_and_wait(world, spec, within_s=within_s)
    if done.state != "succeeded":
        raise SystemExit(f"the restore ended {done.state}: {done.vms}")
    return done, done.updated_at.timestamp() - asked


async def measure_instant(
    world: RunWorld, pool: RbdPool, spec: r.RestoreSpec, *, vm_id: str, image: str,
    conf: str, bench_bytes: int, within_s: float,
) -> dict[str, Any]:  # fmt: skip
    asked = time.time()
    restore = asyncio.create_task(restore_and_wait(world, spec, within_s=within_s))
    started_s = await vm_started_after(world, vm_id, asked)
    await first_read(pool, image)
    first_s = time.time() - asked
    during = await asyncio.to_thread(random_reads, conf, f"{pool.name}/{image}", bench_bytes)
    during["still_copying"] = not restore.done()
    done = await restore
    if done.state != "succeeded":
        raise SystemExit(f"the instant restore ended {done.state}: {done.vms}")
    after = await asyncio.to_thread(random_reads, conf, f"{pool.name}/{image}", bench_bytes)
    return {
        "vm_started_s": started_s, "first_read_s": first_s,
        "committed_s": done.updated_at.timestamp() - asked,
        "random_4k_during_copy": during, "random_4k_after_commit": after,
        "latency_ratio_during_vs_after":
            during["mean_latency_us"] / after["mean_latency_us"],
    }  # fmt: skip


async def measure(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    seeding = Seeding(fill=args.fill, disks="1", eligible=True, timeout_s=120 + args.disk_mib)
    within_s = 300 + args.disk_mib  # 1 MiB/s would be a failure
    topology = Topology(prefix=f"bench-{uuid.uuid4().hex[:8]}.")
    async with AsyncExitStack() as stack:
        world = await serve_world(
            stack, workdir, topology, amqp_url=os.environ["EDGEBACK_AMQP_URL"],
            mongo_url=os.environ["EDGEBACK_MONGO_URL"], ceph_conf=args.conf, vms=1,
            disk_mib=str(args.disk_mib), seeding=seeding, node_threads=4,
        )  # fmt: skip
        await stack.enter_async_context(host_workers(world, 1))
        cluster = await stack.enter_async_context(RbdCluster.connect(args.conf, "admin"))
        state = world.emulator.state()
        pool = await stack.enter_async_context(cluster.open_pool(state.ceph.pool))
        (vm,) = state.vms
        (image,) = vm_images(world, vm)
        size = vm.disks[0].size
        pids = {"node": [world.node.pid], "osd": osd_pids()}
        platform_id = await add_platform(world)
        options = j.JobOptions(vm_retries=0, keep_latest_snapshot=True)
        job = await create_job(world, platform_id, name="bench", pool=POOL, options=options)
        full = await run_job(world, job, "full", "full", within_s=within_s)
        if full.run.state != "succeeded":
            raise SystemExit(f"the backup ended {full.run.state}: {full.vms}")
        (set_id,) = full.backup_set_ids
        found = await world.call(
            b.BACKUP_SET_GET, b.BackupSetGet(actor=ADMIN, backup_set_id=set_id),
            b.BackupSetWithDisks,
        )  # fmt: skip
        want = await read_digest(pool, image, found.disks[0].snapshot_name)
        fig: dict[str, Any] = {
            "disk_mib": args.disk_mib, "fill": args.fill, "cpus": os.cpu_count(),
            "load_before": os.getloadavg(), "backup_bytes_read": full.stats.bytes_read,
        }  # fmt: skip

        await scribble(pool, [image], 0)
        normal = r.RestoreSpec(backup_set_ids=[set_id], options=r.RestoreOptions(host_id=HOST))
        meter = CpuMeter(pids)
        _, normal_s = await timed_restore(world, normal, within_s)
        fig["normal"] = {"usable_s": normal_s, "mb_s": rate(size, normal_s),
                         **per_gib(meter.used(), size)}  # fmt: skip
        fig["normal"]["identical"] = await read_digest(pool, image) == want

        await scribble(pool, [image], 0)
        options_instant = r.RestoreOptions(host_id=HOST, instant=True)
        instant = r.RestoreSpec(backup_set_ids=[set_id], options=options_instant)
        meter = CpuMeter(pids)
        fig["instant"] = await measure_instant(
            world, pool, instant, vm_id=vm.id, image=image, conf=args.conf,
            bench_bytes=args.bench_mib * MIB, within_s=within_s,
        )  # fmt: skip
        fig["instant"] |= per_gib(meter.used(), size)
        fig["instant"]["mb_s"] = rate(size, fig["instant"]["committed_s"])
        fig["instant"]["identical"] = await read_digest(pool, image) == want
        fig["load_after"] = os.getloadavg()
    fig["usable_ratio_normal_vs_instant"] = normal_s / fig["instant"]["first_read_s"]
    fig["commit_ratio_instant_vs_normal"] = fig["instant"]["committed_s"] / normal_s
    return fig


def report(fig: dict[str, Any]) -> str:
    ins, nor = fig["instant"], fig["normal"]
    during, after = ins["random_4k_during_copy"], ins["random_4k_after_commit"]
    return "\n".join([
        f"1 disk of {fig['disk_mib']} MiB (fill {fig['fill']}), {fig['cpus']} CPUs, "
        f"load {fig['load_before'][0]:.2f}",
        f"normal restore   usable after {nor['usable_s']:7.2f} s ({nor['mb_s']:.1f} MB/s), "
        f"cpu s/GiB total {nor['total_cpu_s_per_gib']:.2f}, identical {nor['identical']}",
        f"instant restore  VM started {ins['vm_started_s']:.2f} s, first read "
        f"{ins['first_read_s']:.2f} s, committed {ins['committed_s']:.2f} s "
        f"({ins['mb_s']:.1f} MB/s), cpu s/GiB total {ins['total_cpu_s_per_gib']:.2f}, "
        f"identical {ins['identical']}",
        f"random 4 KiB reads: {during['mean_latency_us']:.0f} µs during the copy "
        f"(still copying: {during['still_copying']}), {after['mean_latency_us']:.0f} µs after "
        f"commit ({ins['latency_ratio_during_vs_after']:.1f}x)",
        f"usable {fig['usable_ratio_normal_vs_instant']:.1f}x sooner; commit took "
        f"{fig['commit_ratio_instant_vs_normal']:.2f}x the normal restore's time",
    ])  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--disk-mib", type=int, default=4096, help="the disk's size, MiB")
    parser.add_argument("--fill", type=float, default=0.3, help="share of chunks written")
    parser.add_argument("--bench-mib", type=int, default=8, help="rbd bench --io-total, MiB")
    parser.add_argument("--json", type=Path, help="write the figures as JSON here")
    parser.add_argument("--conf", default=os.environ.get("CEPH_CONF", "var/ceph/ceph.conf"))
    parser.add_argument("--workdir", help="where the node's pools go")
    args = parser.parse_args(argv)
    check_room(args.conf, int(args.disk_mib * MIB * args.fill * 2))
    with scratch(args.workdir) as workdir:
        figures = asyncio.run(measure(args, workdir))
    emit(report(figures), figures, args.json)
    return 0 if figures["normal"]["identical"] and figures["instant"]["identical"] else 1


if __name__ == "__main__":
    sys.exit(main())
