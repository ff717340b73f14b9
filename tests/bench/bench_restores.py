"""Restores benchmark: a restore run of 4 VMs x 2 disks against ``rbd import`` of the
same data into the same cluster, serial and parallel settings.

The world is the runs benchmark's (``tests/support/run_world.py``): the catalog in this
process on RabbitMQ and the catalog DB, the backup's workers in it too, the restores'
workers as processes of their own (the fleet layout), a storage node and the platform
emulator (4 VMs it can back up, 2 disks each, sizes drawn from ``--disk-mib`` and 3/4
and 1/2 of it, ``--fill`` of their chunks written) as child processes. A full backup
run puts the VMs into a pool; each image is exported to a file (not measured). Then,
measured in this order: ``rbd import`` of the 8 files one after another into new
images; a restore run with serial settings (1 worker); ``rbd import`` of the 8 at once;
a restore run with parallel settings (4 workers). Before each, its source leaves the
page cache (the files, or the pool's chunk files on the node), so both read from disk.
Each restore is created and started with its verification code as the API does, to the
original path (every VM's own disks overwritten, each holding the backup's snapshot);
before each, every disk gets new bytes at its start, and after it every disk is
compared with its file (the bytes backed up).

Figures: wall seconds, MB/s of the provisioned bytes (what both write: ``rbd import``
skips zero runs, a restore discards them with ``write_zeroes``), the rate ratio of each
restore to each import, and CPU seconds per GiB of the worker processes, this process
(the catalog), the node, the emulator and the OSDs.

    .venv/bin/python -m tests.bench.bench_restores [--disk-mib 256] [--json PATH]
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import random
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterable
from concurrent.futures import ThreadPoolExecutor
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

from tests.bench.bench_data_path import check_room, emit, evict
from tests.bench.bench_runs import (
    CONCURRENCY,
    CpuMeter,
    bench_world,
    parse_args,
    per_gib,
    rate,
    report,
    scratch,
)
from tests.bench.images import image_sha256, remove_image
from tests.bench.processes import Timed, run_timed
from tests.support.processes import ServiceProcess
from tests.support.restore_runs import restore_and_wait
from tests.support.run_world import (
    HOST,
    RunWorld,
    create_job,
    host_workers,
    run_job,
    worker_process,
)

from edgeback_blocks.rbd import RbdCluster
from edgeback_core.messages import jobs as j
from edgeback_core.messages import restores as r

VMS, DISKS_PER_VM, CHUNK = 4, 2, 4 << 20
POOL = "restores"
SETTINGS = {
    # one disk at a time, but with the default streams: ``rbd import`` of one image keeps
    # several writes in flight too (librbd's aio), a single stream would measure latency;
    # every chunk rewritten (``changed_only`` off): the data path against ``rbd import``
    "serial": r.RestoreOptions(host_id=HOST, parallel_vms=1, vms_per_physical_host=1,
                               disks_per_vm=1, streams_per_disk=4, changed_only=False),
    "parallel": r.RestoreOptions(host_id=HOST, parallel_vms=4, vms_per_physical_host=4,
                                 disks_per_vm=2, streams_per_disk=4, changed_only=False),
    # the default: the disks still hold the backup's snapshot, CHANGED of their chunks
    # written since; only those are rewritten
    "changed": r.RestoreOptions(host_id=HOST, parallel_vms=4, vms_per_physical_host=4,
                                disks_per_vm=2, streams_per_disk=4),
}  # fmt: skip
CHANGED = 0.1
"""The share of each disk's chunks written to between the backup and the last restore."""


@asynccontextmanager
async def worker_processes(
    world: RunWorld, logs: Path, count: int
) -> AsyncIterator[list[ServiceProcess]]:
    """``count`` worker processes of the backup host, healthy, stopped after the block."""
    await asyncio.to_thread(logs.mkdir, parents=True, exist_ok=True)
    env: dict[str, str] = {}  # progress as deployed (every 5 s), not more often
    workers = [worker_process(world, logs, f"w-{i}", env) for i in range(count)]
    try:
        for proc in workers:
            proc.start()
        for proc in workers:
            await proc.wait_healthy(within_s=60)
        yield workers
        for proc in workers:  # a worker that does not stop on SIGTERM fails the benchmark
            await asyncio.to_thread(proc.terminate, 30.0)
    finally:
        for proc in workers:
            proc.kill()


def import_files(conf: str, files: dict[str, Path], *, at_once: bool) -> list[Timed]:
    """``rbd import`` of each file into a new image of its name ("pool/image")."""

    def one(item: tuple[str, Path]) -> Timed:
        image, path = item
        return run_timed(["rbd", "-c", conf, "import", "--no-progress", str(path), image])

    if not at_once:
        return [one(item) for item in files.items()]
    with ThreadPoolExecutor(max_workers=len(files)) as pool:
        return list(pool.map(one, files.items()))


async def measure_import(
    conf: str, files: dict[str, Path], size: int, pids: dict[str, list[int]], *, at_once: bool
) -> dict[str, Any]:
    """``rbd import`` of ``files`` into new images, removed after."""
    targets = {f"{image}-imp-{uuid.uuid4().hex[:6]}": path for image, path in files.items()}
    meter, started = CpuMeter(pids), time.perf_counter()
    try:
        timed = await asyncio.to_thread(import_files, conf, targets, at_once=at_once)
        wall = time.perf_counter() - started
        cpu = meter.used()
    finally:
        await _remove(conf, list(targets))
    cpu["bench"] = sum(t.cpu_s for t in timed)  # the rbd processes, not this one's idling
    return {"wall_s": wall, "mb_s": rate(size, wall), "rbd_cpu_s": cpu["bench"],
            **per_gib({"rbd" if k == "bench" else k: v for k, v in cpu.items()}, size)}  # fmt: skip


async def _remove(conf: str, images: list[str]) -> None:
    async with RbdCluster.connect(conf) as cluster:
        for name in images:
            pool, _, image = name.partition("/")
            async with cluster.open_pool(pool) as opened:
                await remove_image(opened, image)


def export_files(conf: str, images: list[str], into: Path) -> dict[str, Path]:
    """Each image ("pool/image") exported to a file of ``into`` (the bytes backed up)."""
    into.mkdir()
    files = {image: into / image.replace("/", "_") for image in images}
    for image, path in files.items():
        run_timed(["rbd", "-c", conf, "export", "--no-progress", image, str(path)])
    return files


async def scribble(conf: str, images: list[str], share: float = 0.0) -> int:
    """New bytes at the start of every image (a restore that wrote nothing would show)
    and in ``share`` of its other 4 MiB chunks; how many chunks changed."""
    changed, rng = 0, random.Random(7)
    async with RbdCluster.connect(conf) as cluster:
        for name in images:
            pool, _, image = name.partition("/")
            async with (
                cluster.open_pool(pool) as opened,
                opened.open_image(image, read_only=False) as target,
            ):
                chunks = await target.size() // CHUNK
                picked = {0, *rng.sample(range(chunks), round(share * chunks))}
                for index in sorted(picked):
                    await target.write(index * CHUNK, os.urandom(64 * 1024))
                changed += len(picked)
    return changed


async def check_restored(conf: str, files: dict[str, Path]) -> None:
    """Every image holds its file's bytes; SystemExit naming the first that does not."""
    async with RbdCluster.connect(conf) as cluster:
        for name, path in files.items():
            pool, _, image = name.partition("/")
            async with cluster.open_pool(pool) as opened, opened.open_image(image) as source:
                got = await image_sha256(source, await source.size())
            want = await asyncio.to_thread(_file_sha256, path)
            if got != want:
                raise SystemExit(f"{name} does not hold the restored bytes")


def evict_all(paths: Iterable[Path]) -> None:
    """Every file of ``paths`` out of the page cache: both sides read from disk."""
    for path in paths:
        if path.is_file():
            evict(path)


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as opened:
        while block := opened.read(1 << 22):
            digest.update(block)
    return digest.hexdigest()


async def measure_restore(
    world: RunWorld,
    label: str,
    set_ids: list[str],
    *,
    size: int,
    pids: dict[str, list[int]],
    within_s: float,
    workdir: Path,
) -> dict[str, Any]:
    """A restore of every VM to its original path with ``SETTINGS[label]``, by as many
    worker processes as it may restore VMs at once (a worker takes one VM task at a
    time), started before the clock runs: the fleet layout, the catalog in this process
    and each worker in its own."""
    options = SETTINGS[label]
    spec = r.RestoreSpec(name=f"bench-{label}", backup_set_ids=set_ids, options=options)
    async with worker_processes(world, workdir / label, options.parallel_vms) as workers:
        meter = CpuMeter(pids | {"workers": [w.pid for w in workers]})
        started = time.time()
        # the end is the catalog's record of it: polled now and then, not every 0.1 s
        # (the polls are this process's CPU, counted in the restore's figures)
        done = await restore_and_wait(world, spec, within_s=within_s, poll_s=0.5)
        wall = done.updated_at.timestamp() - started
        cpu = meter.used()
    if done.state != "succeeded":
        raise SystemExit(f"the {label} restore ended {done.state}: {done.vms}")
    stats = [s for vm in done.vms for s in vm.stats]
    spans = [(vm.finished_at - vm.started_at).total_seconds() for vm in done.vms
             if vm.started_at is not None and vm.finished_at is not None]  # fmt: skip
    return {
        "settings": {k: getattr(options, k) for k in CONCURRENCY},
        "workers": options.parallel_vms, "wall_s": wall, "mb_s": rate(size, wall),
        "data_mb_s": rate(sum(s.bytes_written for s in stats), wall),
        "vm_overlap": sum(spans) / wall if wall > 0 else 0.0,
        "disk_s_max": max(s.duration_s for s in stats), **per_gib(cpu, size),
        **{k: sum(getattr(s, k) for s in stats)
           for k in ("bytes_written", "bytes_zeroed", "bytes_fetched", "bytes_left")},
    }  # fmt: skip


async def measure(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    async with AsyncExitStack() as stack:
        bench = await bench_world(stack, args, workdir, [POOL])
        world, images, size, within_s = bench.world, bench.images, bench.size, bench.within_s
        pids, fig = bench.pids, dict(bench.figures)
        options = j.JobOptions(vm_retries=0, parallel_vms=4, vms_per_physical_host=4,
                               disks_per_vm=2, streams_per_disk=4)  # fmt: skip
        job = await create_job(world, bench.platform_id, name="bench", pool=POOL, options=options)
        async with host_workers(world, 4):
            backup = await run_job(world, job, "full", "full", within_s=within_s)
        if backup.run.state != "succeeded":
            raise SystemExit(f"the backup run ended {backup.run.state}: {backup.vms}")
        files = await asyncio.to_thread(export_files, args.conf, images, workdir / "export")
        # first, while the images hold nothing written since the backup but these changes
        # (a full restore after would count as a change: it rewrites every chunk)
        changed = await scribble(args.conf, images, CHANGED)
        fig["changed"] = await measure_restore(
            world, "changed", backup.backup_set_ids, size=size, pids=pids,
            within_s=within_s, workdir=workdir,
        )  # fmt: skip
        fig["changed"]["chunks_changed"] = changed
        await check_restored(args.conf, files)
        for label, key, at_once in (
            ("serial", "rbd_import", False),
            ("parallel", "rbd_import_parallel", True),
        ):
            fig[key] = await measure_import(args.conf, files, size, pids, at_once=at_once)
            await scribble(args.conf, images)
            fig[label] = await measure_restore(
                world,
                label,
                backup.backup_set_ids,
                size=size,
                pids=pids,
                within_s=within_s,
                workdir=workdir,
            )
            await check_restored(args.conf, files)
        fig["load_after"] = os.getloadavg()
    for label in SETTINGS:
        run = fig[label]
        run["ratio_vs_rbd_import"] = run["mb_s"] / fig["rbd_import"]["mb_s"]
        run["ratio_vs_rbd_import_parallel"] = run["mb_s"] / fig["rbd_import_parallel"]["mb_s"]
    fig["parallel"]["speedup_vs_serial"] = fig["serial"]["wall_s"] / fig["parallel"]["wall_s"]
    return fig


def main(argv: list[str] | None = None) -> int:
    args = parse_args(__doc__, argv)
    # the VMs' data, once more in the pool's images while an import's copies exist
    check_room(args.conf, int(2 * VMS * DISKS_PER_VM * args.disk_mib * (1 << 20) * args.fill))
    with scratch(args.workdir, keep=args.keep) as workdir:
        figures = asyncio.run(measure(args, workdir))
    text = report(figures, tool="import", step="restore")
    quick = figures["changed"]
    text += (
        f"\nrestore, changed only ({quick['chunks_changed']} chunks changed, parallel): "
        f"{quick['wall_s']:.2f} s, {quick['bytes_written'] + quick['bytes_zeroed']} bytes "
        f"written, {quick['bytes_left']} left as they were; "
        f"{quick['ratio_vs_rbd_import_parallel']:.2f}x parallel import"
    )
    return emit(text, figures, args.json)


if __name__ == "__main__":
    sys.exit(main())
