"""Runs benchmark: one backup job of 4 VMs x 2 disks, serial versus parallel settings,
against ``rbd export`` of the same 8 images.

The catalog and the workers run in this process on RabbitMQ and the catalog DB
(``EDGEBACK_AMQP_URL``, ``EDGEBACK_MONGO_URL``), a storage node and the platform emulator
as child processes (``tests/support/run_world.py``, the worker-runs test's setup). The
emulator seeds 4 VMs it can back up (``eligible``), 2 disks each, sizes drawn from
``--disk-mib`` and 3/4 and 1/2 of it, ``--fill`` of their chunks written. Measured in
the same process tree, in this order: ``rbd export`` of each image to /dev/null one after
another; a full run with serial settings; ``rbd export`` of all 8 at once; a full run
with parallel settings. Each run writes into its own pool, so the second finds nothing
to deduplicate against the first.

Figures: wall seconds, MB/s of the provisioned bytes (what ``rbd export`` streams; the
run reads only allocated extents), the rate ratio to each export, and CPU seconds per
GiB of this process (workers and catalog), the node, the emulator and the OSDs.

    .venv/bin/python -m tests.bench.bench_runs [--disk-mib 256] [--json PATH]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import shutil
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import AsyncExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.bench.bench_data_path import check_room, emit
from tests.bench.processes import Timed, cpu_of, osd_pids, run_timed
from tests.support.run_world import (
    RunWorld,
    Seeding,
    add_platform,
    create_job,
    host_workers,
    run_job,
    serve_world,
)

from edgeback_core.bus.topology import Topology
from edgeback_core.messages import backups as b
from edgeback_core.messages import jobs as j

GiB = 1 << 30
MB = 1_000_000
VMS, DISKS_PER_VM = 4, 2
CONCURRENCY = ("parallel_vms", "vms_per_physical_host", "disks_per_vm", "streams_per_disk")
SETTINGS = {
    "serial": j.JobOptions(vm_retries=0, parallel_vms=1, vms_per_physical_host=1,
                           disks_per_vm=1, streams_per_disk=1),
    "parallel": j.JobOptions(vm_retries=0, parallel_vms=4, vms_per_physical_host=4,
                             disks_per_vm=2, streams_per_disk=4),
}  # fmt: skip


class CpuMeter:
    """CPU seconds used meanwhile by this process and by other processes by pid."""

    def __init__(self, pids: dict[str, list[int]]) -> None:
        self._pids = pids
        self._start = self._now()

    def _now(self) -> dict[str, float]:
        own = resource.getrusage(resource.RUSAGE_SELF)
        return {"bench": own.ru_utime + own.ru_stime} | {
            name: cpu_of(pids) for name, pids in self._pids.items()
        }

    def used(self) -> dict[str, float]:
        now = self._now()
        return {name: now[name] - self._start[name] for name in now}


def rate(size: int, seconds: float) -> float:
    return size / seconds / MB if seconds > 0 else 0.0


def per_gib(cpu: dict[str, float], size: int) -> dict[str, float]:
    figures = {f"{name}_cpu_s_per_gib": seconds / (size / GiB) for name, seconds in cpu.items()}
    figures["total_cpu_s_per_gib"] = sum(cpu.values()) / (size / GiB)
    return figures


def export_images(conf: str, images: list[str], *, at_once: bool) -> list[Timed]:
    """``rbd export`` of each image to /dev/null, one after another or all at once."""

    def export(image: str) -> Timed:
        return run_timed(["rbd", "-c", conf, "export", "--no-progress", image, "-"],
                         discard_stdout=True)  # fmt: skip

    if not at_once:
        return [export(image) for image in images]
    with ThreadPoolExecutor(max_workers=len(images)) as pool:
        return list(pool.map(export, images))


async def measure_export(
    conf: str, images: list[str], size: int, pids: dict[str, list[int]], *, at_once: bool
) -> dict[str, Any]:
    meter, started = CpuMeter(pids), time.perf_counter()
    timed = await asyncio.to_thread(export_images, conf, images, at_once=at_once)
    wall = time.perf_counter() - started
    cpu = meter.used()
    cpu["bench"] = sum(t.cpu_s for t in timed)  # the rbd processes, not this one's idling
    return {"wall_s": wall, "mb_s": rate(size, wall), "rbd_cpu_s": cpu["bench"],
            **per_gib({"rbd" if k == "bench" else k: v for k, v in cpu.items()}, size)}  # fmt: skip


async def measure_run(
    world: RunWorld,
    platform_id: str,
    label: str,
    *,
    size: int,
    pids: dict[str, list[int]],
    within_s: float,
) -> dict[str, Any]:
    """A full run of a job with ``SETTINGS[label]`` into the pool named ``label``, by as
    many workers as it may back up VMs at once: a worker takes one VM task at a time
    (prefetch 1), so a worker more would only park tasks that find no free slot."""
    options = SETTINGS[label]
    job = await create_job(world, platform_id, name=f"bench-{label}", pool=label, options=options)
    workers = options.parallel_vms
    async with host_workers(world, workers):
        meter, started = CpuMeter(pids), time.perf_counter()
        detail = await run_job(world, job, label, "full", within_s=within_s, poll_s=0.1)
        wall = time.perf_counter() - started
        cpu = meter.used()
    if detail.run.state != "succeeded":
        raise SystemExit(f"the {label} run ended {detail.run.state}: {detail.vms}")
    stats = detail.stats
    return {
        "settings": {k: getattr(options, k) for k in CONCURRENCY}, "workers": workers,
        "wall_s": wall, "mb_s": rate(size, wall),
        "read_mb_s": rate(stats.bytes_read, wall), "vm_overlap": vm_overlap(detail, wall),
        **per_gib(cpu, size),
        **{k: getattr(stats, k) for k in ("bytes_read", "bytes_new", "bytes_sparse")},
    }  # fmt: skip


def vm_overlap(detail: b.RunDetail, wall: float) -> float:
    """Sum of the VMs' backup times over the run's wall time: about 1 when serial."""
    spans = [
        (vm.finished_at - vm.started_at).total_seconds()
        for vm in detail.vms
        if vm.started_at is not None and vm.finished_at is not None
    ]
    return sum(spans) / wall if wall > 0 else 0.0


def disk_sizes_mib(disk_mib: int) -> str:
    return ",".join(str(max(1, disk_mib * n // 4)) for n in (4, 3, 2))


@dataclass(frozen=True, slots=True, kw_only=True)
class BenchWorld:
    """The runs and restores benchmarks' world, its VMs' images and first figures."""

    world: RunWorld
    images: list[str]
    """``pool/image`` of every VM disk."""
    size: int
    """Provisioned bytes of all the disks."""
    pids: dict[str, list[int]]
    platform_id: str
    within_s: float
    figures: dict[str, Any]


async def bench_world(
    stack: AsyncExitStack, args: argparse.Namespace, workdir: Path, pools: list[str]
) -> BenchWorld:
    """The world of ``VMS`` VMs x ``DISKS_PER_VM`` disks (sizes from ``--disk-mib``, ``--fill``
    of their chunks written), ``pools`` on its node and its platform registered."""
    seeding = Seeding(
        fill=args.fill, disks=str(DISKS_PER_VM), eligible=True,
        timeout_s=120 + VMS * DISKS_PER_VM * args.disk_mib * 0.5,
    )  # fmt: skip
    topology = Topology(prefix=f"bench-{uuid.uuid4().hex[:8]}.")
    world = await serve_world(
        stack, workdir, topology, amqp_url=os.environ["EDGEBACK_AMQP_URL"],
        mongo_url=os.environ["EDGEBACK_MONGO_URL"], ceph_conf=args.conf, vms=VMS,
        disk_mib=disk_sizes_mib(args.disk_mib), seeding=seeding, pools=pools, node_threads=4,
    )  # fmt: skip
    state = world.emulator.state()
    disks = [(vm, d) for vm in state.vms for d in vm.disks]
    size = sum(d.size for _, d in disks)
    return BenchWorld(
        world=world,
        images=[f"{state.ceph.pool}/{state.ceph.image_name(vm.id, d)}" for vm, d in disks],
        size=size,
        pids={"node": [world.node.pid], "emulator": [world.emulator.pid], "osd": osd_pids()},
        platform_id=await add_platform(world),
        within_s=300 + VMS * DISKS_PER_VM * args.disk_mib * 0.5,  # 2 MB/s would be a failure
        figures={
            "vms": VMS, "disks": len(disks), "fill": args.fill,
            "disk_mib": sorted(d.size >> 20 for _, d in disks),
            "size_bytes": size, "cpus": os.cpu_count(), "load_before": os.getloadavg(),
        },
    )  # fmt: skip


async def measure(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    async with AsyncExitStack() as stack:
        bench = await bench_world(stack, args, workdir, list(SETTINGS))
        world, images, size, pids = bench.world, bench.images, bench.size, bench.pids
        platform_id, within_s, fig = bench.platform_id, bench.within_s, dict(bench.figures)
        fig["rbd_export"] = await measure_export(args.conf, images, size, pids, at_once=False)
        fig["serial"] = await measure_run(
            world, platform_id, "serial", size=size, pids=pids, within_s=within_s
        )
        fig["rbd_export_parallel"] = await measure_export(
            args.conf, images, size, pids, at_once=True
        )
        fig["parallel"] = await measure_run(
            world, platform_id, "parallel", size=size, pids=pids, within_s=within_s
        )
        fig["load_after"] = os.getloadavg()
    for label in SETTINGS:
        run = fig[label]
        run["ratio_vs_rbd_export"] = run["mb_s"] / fig["rbd_export"]["mb_s"]
        run["ratio_vs_rbd_export_parallel"] = run["mb_s"] / fig["rbd_export_parallel"]["mb_s"]
    fig["parallel"]["speedup_vs_serial"] = fig["serial"]["wall_s"] / fig["parallel"]["wall_s"]
    return fig


@contextmanager
def scratch(parent: str | None, *, keep: bool = False) -> Iterator[Path]:
    """A new directory under ``parent``, removed after the block unless ``keep``."""
    workdir = Path(tempfile.mkdtemp(prefix="edgeback-bench-runs-", dir=parent))
    try:
        yield workdir
    finally:
        if keep:
            print(f"kept {workdir} (the services' logs)", file=sys.stderr)
        else:
            shutil.rmtree(workdir, ignore_errors=True)


def figure_line(label: str, f: dict[str, Any], extra: str = "") -> str:
    """One measured step of a report: wall, MB/s, total CPU per GiB, then ``extra``."""
    return (f"{label:24} {f['wall_s']:7.2f} s {f['mb_s']:8.1f} MB/s  cpu s/GiB: "
            f"total {f['total_cpu_s_per_gib']:.2f}{extra}")  # fmt: skip


def world_line(fig: dict[str, Any]) -> str:
    """The first line of a report: the VMs, their sizes, the machine and its load."""
    return (f"{fig['vms']} VMs x {fig['disks'] // fig['vms']} disks, "
            f"{fig['size_bytes'] / GiB:.2f} GiB provisioned (disks MiB {fig['disk_mib']}, "
            f"fill {fig['fill']}), {fig['cpus']} CPUs, "
            f"load {fig['load_before'][0]:.2f}")  # fmt: skip


def report(fig: dict[str, Any], *, tool: str = "export", step: str = "run") -> str:
    """The figures of a run (``step``) per setting against ``rbd <tool>`` one image after
    another (``rbd_<tool>``) and all at once (``rbd_<tool>_parallel``)."""
    lines = [
        world_line(fig),
        *(figure_line(label, fig[key], f", rbd {fig[key]['rbd_cpu_s_per_gib']:.2f}")
          for label, key in ((f"rbd {tool}, serial", f"rbd_{tool}"),
                             (f"rbd {tool}, 8 at once", f"rbd_{tool}_parallel"))),
    ]  # fmt: skip
    for label in SETTINGS:
        run = fig[label]
        workers = run.get("workers_cpu_s_per_gib")  # workers as processes of their own
        extra = ((f", workers {workers:.2f}" if workers is not None else "")
                 + f", bench {run['bench_cpu_s_per_gib']:.2f}, node {run['node_cpu_s_per_gib']:.2f}"
                 f", osd {run['osd_cpu_s_per_gib']:.2f}; ratio "
                 f"{run[f'ratio_vs_rbd_{tool}']:.2f}x serial {tool}, "
                 f"{run[f'ratio_vs_rbd_{tool}_parallel']:.2f}x parallel {tool}; "
                 f"VM overlap {run['vm_overlap']:.2f}")  # fmt: skip
        lines.append(figure_line(f"{step}, {label}", run, extra))
    lines.append(f"parallel speed-up over serial {fig['parallel']['speedup_vs_serial']:.2f}x")
    return "\n".join(lines)


def parse_args(doc: str, argv: list[str] | None) -> argparse.Namespace:
    """The options of the runs and restores benchmarks (``doc``: the module's)."""
    parser = argparse.ArgumentParser(description=doc.split("\n", maxsplit=1)[0])
    parser.add_argument("--disk-mib", type=int, default=256, help="largest disk, MiB")
    parser.add_argument("--fill", type=float, default=0.6, help="share of chunks written")
    parser.add_argument("--json", type=Path, help="write the figures as JSON here")
    parser.add_argument("--conf", default=os.environ.get("CEPH_CONF", "var/ceph/ceph.conf"))
    parser.add_argument("--workdir", help="where the node's pools (and other files) go")
    parser.add_argument(
        "--keep", action="store_true", help="keep the work directory (logs) after the run"
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(__doc__, argv)
    check_room(args.conf, int(VMS * DISKS_PER_VM * args.disk_mib * (1 << 20) * args.fill))
    with scratch(args.workdir, keep=args.keep) as workdir:
        figures = asyncio.run(measure(args, workdir))
    return emit(report(figures), figures, args.json)


if __name__ == "__main__":
    sys.exit(main())
