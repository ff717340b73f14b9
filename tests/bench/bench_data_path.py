"""Data-path benchmark: edgeback's disk backup and restore against ``rbd export``/``import``.

One command creates its own RBD image on the dev cluster (at 4 MiB granularity 40% zero,
of which a quarter written as zeroes and the rest never allocated, 30% text-like, 30%
random), snapshots it and measures, in the same run and on the same image:

- ``rbd export`` of the snapshot to /dev/null, and the full backup (``edgeback disk
  backup`` as a process) into a dedup pool served by a storage node started by the
  benchmark as its own process (``python -m edgeback_dedup``);
- an incremental after rewriting 5% of the chunks, against ``rbd export-diff`` between
  the same snapshots; an incremental with nothing changed;
- a restore into a new image (``edgeback disk restore``) against ``rbd import`` of the
  same data (exported to a file first, untimed, then dropped from the page cache: the
  restore reads chunk files the node wrote around it, so both read from disk); the
  restored image is checksummed;
- peak RSS and CPU seconds of the backup process (``wait4`` rusage), at the main size
  and at each ``--rss-sizes`` size (extra images, created after the main ones are gone).

    .venv/bin/python -m tests.bench.bench_data_path --size-gib 4 [--rss-sizes 8] [--json PATH]

Images, the export file and the pool directory are removed at the end, also on failure.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import sys
import tempfile
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.bench.images import DataMaker, image_sha256, mixed_layout, remove_image, write_chunk
from tests.bench.processes import Timed, cpu_of, cpu_seconds, osd_pids, run_timed
from tests.support.processes import NodeProcess, node_process
from tests.support.storage_node import TOKEN

from edgeback_blocks.chunk import CHUNK_SIZE
from edgeback_blocks.keys import write_secret_file
from edgeback_blocks.pool_client import PoolClient
from edgeback_blocks.pool_wire import PoolKind
from edgeback_blocks.rbd import RbdCluster, RbdPool
from edgeback_pools.pool_meta import create_pool, read_pool

GiB = 1 << 30
MB = 1_000_000
POOL = "bench"  # the dedup pool of the node the benchmark backs up into


class Bench:
    """One benchmark run: the cluster, the node, the images it created (removed at the end)."""

    def __init__(self, conf: str, pool: str, workdir: Path, streams: int) -> None:
        self.conf, self.pool, self.workdir, self.streams = conf, pool, workdir, streams
        self.images: list[str] = []
        self.figures: dict[str, Any] = {}

    # --- RBD helpers --------------------------------------------------------------

    async def _with_pool(self, work: Callable[[RbdPool], Any]) -> Any:
        async with (
            RbdCluster.connect(self.conf, io_threads=8) as cluster,
            cluster.open_pool(self.pool) as pool,
        ):
            return await work(pool)

    def create_image(self, size: int, kinds: list[str], seed: int) -> str:
        name = f"bench-{uuid.uuid4().hex[:10]}"
        self.images.append(name)

        async def fill(pool: RbdPool) -> None:
            await pool.create_image(name, size)
            data = DataMaker(seed)
            async with pool.open_image(name, read_only=False) as image:
                pending: list[Any] = []
                for index, kind in enumerate(kinds):
                    chunk = _chunk_data(kind, index, data)
                    if chunk is not None:
                        pending.append(write_chunk(image, index, chunk))
                    if len(pending) >= 8:
                        await asyncio.gather(*pending)
                        pending = []
                await asyncio.gather(*pending)

        asyncio.run(self._with_pool(fill))
        return name

    def snapshot(self, name: str, snap: str) -> None:
        async def snap_it(pool: RbdPool) -> None:
            async with pool.open_image(name, read_only=False) as image:
                await image.create_snap(snap)

        asyncio.run(self._with_pool(snap_it))

    def rewrite(self, name: str, indices: list[int], seed: int) -> None:
        async def change(pool: RbdPool) -> None:
            data = DataMaker(seed)
            async with pool.open_image(name, read_only=False) as image:
                for index in indices:
                    await write_chunk(image, index, data.random())

        asyncio.run(self._with_pool(change))

    def checksum(self, name: str, size: int, snap: str | None = None) -> str:
        async def digest(pool: RbdPool) -> str:
            async with pool.open_image(name, snapshot=snap) as image:
                return await image_sha256(image, size)

        result: str = asyncio.run(self._with_pool(digest))
        return result

    def remove_image(self, name: str) -> None:
        self.remove_images([name])

    def remove_images(self, names: list[str] | None = None) -> None:
        doomed = list(self.images if names is None else names)

        async def remove(pool: RbdPool) -> None:
            for name in doomed:
                await remove_image(pool, name)

        asyncio.run(self._with_pool(remove))
        self.images = [name for name in self.images if name not in doomed]

    def rbd(self, *args: str) -> Timed:
        """An ``rbd`` command; a last argument ``-`` (stdout) goes to /dev/null."""
        return run_timed(["rbd", "-c", self.conf, *args], discard_stdout=args[-1] == "-")

    # --- edgeback as processes ----------------------------------------------------

    def edgeback(self, node: NodeProcess, *args: str) -> tuple[Timed, dict[str, Any]]:
        verb = args[1]
        argv = [
            sys.executable, "-m", "edgeback_cli", *args,
            "--to" if verb == "backup" else "--from", node.url, "--pool", POOL,
            "--secret-key-file", str(secret_file(node)), "--conf", self.conf, "--json",
        ]  # fmt: skip
        if not read_pool(node.data_dir / POOL)[0].encrypted:
            argv += ["--key-file", str(node.key_file(POOL))]
        if verb != "verify":
            argv += ["--streams", str(self.streams)]
        timed = run_timed(argv, {**os.environ, "EDGEBACK_TOKEN": TOKEN})
        summary: dict[str, Any] = json.loads(timed.out)
        return timed, summary

    def backup(
        self,
        node: NodeProcess,
        image: str,
        version: str,
        *,
        base: tuple[str, str] | None = None,
        disk: str = "d0",
    ) -> tuple[Timed, dict[str, Any]]:
        """``edgeback disk backup`` of ``image`` as ``bench/DISK/VERSION`` (base: version, snap)."""
        args = ["disk", "backup", "--image", image, "--vm", "bench", "--disk", disk,
                "--version", version]  # fmt: skip
        if base is not None:
            args += ["--base", f"bench/{disk}/{base[0]}", "--base-snap", base[1]]
        return self.edgeback(node, *args)


def _chunk_data(kind: str, index: int, data: DataMaker) -> bytes | None:
    if kind == "text":
        return data.text()
    if kind == "random":
        return data.random()
    # a quarter of the zero chunks are written as zeroes (allocated), the rest are holes
    return bytes(CHUNK_SIZE) if index % 4 == 0 else None


def secret_file(node: NodeProcess) -> Path:
    """The backup host's secret of the bench pool (``docs/encryption.md``), beside it."""
    return node.data_dir / f".{POOL}.secret"


def make_pool(data_dir: Path, *, encrypted: bool = False) -> None:
    create_pool(data_dir, POOL, PoolKind.DEDUP, encrypted=encrypted)
    write_secret_file(data_dir / f".{POOL}.secret")


def rate(size: int, seconds: float) -> float:
    return size / seconds / MB if seconds > 0 else 0.0


def node_status(node: NodeProcess) -> dict[str, Any]:
    async def status() -> dict[str, Any]:
        async with PoolClient(node.url, TOKEN, POOL) as client:
            got = await client.status()
        return {"stored_bytes": got.stored_bytes, "chunks": got.chunks,
                "logical_bytes": got.logical_bytes, "dedup_ratio": got.dedup_ratio}  # fmt: skip

    result: dict[str, Any] = asyncio.run(status())
    return result


def measure_backups(bench: Bench, node: NodeProcess, name: str, size: int, chunks: int) -> None:
    """Full backup vs ``rbd export``; incrementals vs ``rbd export-diff``."""
    fig = bench.figures
    pool_image = f"{bench.pool}/{name}"
    osds = osd_pids()
    osd_before = cpu_of(osds)
    export = bench.rbd("export", "--no-progress", f"{pool_image}@s1", "-")
    osd_export = cpu_of(osds) - osd_before
    cpu_before, osd_before = cpu_seconds(node.pid), cpu_of(osds)
    full, summary = bench.backup(node, f"{pool_image}@s1", "full")
    fig["rbd_export"] = {"wall_s": export.wall_s, "mb_s": rate(size, export.wall_s),
                         "cpu_s": export.cpu_s, "osd_cpu_s": osd_export}  # fmt: skip
    fig["full_backup"] = _backup_figures(full, summary, size, cpu_seconds(node.pid) - cpu_before)
    fig["full_backup"]["osd_cpu_s"] = cpu_of(osds) - osd_before
    fig["full_backup"]["ratio_vs_rbd_export"] = (
        fig["full_backup"]["mb_s"] / fig["rbd_export"]["mb_s"]
    )
    fig["stored_after_full"] = node_status(node)

    changed = sorted(random.Random(5).sample(range(chunks), max(1, round(chunks * 0.05))))
    bench.rewrite(name, changed, seed=99)
    bench.snapshot(name, "s2")
    diff = bench.rbd("export-diff", "--no-progress", "--from-snap", "s1", f"{pool_image}@s2",
                     "-")  # fmt: skip
    incr, summary = bench.backup(node, f"{pool_image}@s2", "incr", base=("full", "s1"))
    fig["rbd_export_diff_5pct"] = {"wall_s": diff.wall_s, "changed_chunks": len(changed)}
    fig["incremental_5pct"] = _backup_figures(incr, summary, size, None)
    fig["incremental_5pct"]["wall_ratio_vs_export_diff"] = incr.wall_s / diff.wall_s
    fig["incremental_5pct"]["pipeline_ratio_vs_export_diff"] = summary["duration_s"] / diff.wall_s

    bench.snapshot(name, "s3")
    same, summary = bench.backup(node, f"{pool_image}@s3", "same", base=("incr", "s2"))
    fig["incremental_unchanged"] = _backup_figures(same, summary, size, None)
    fig["stored_after_incrementals"] = node_status(node)


def _backup_figures(
    timed: Timed, summary: dict[str, Any], size: int, node_cpu_s: float | None
) -> dict[str, Any]:
    figures = {
        "wall_s": timed.wall_s,
        "pipeline_s": summary["duration_s"],
        "mb_s": rate(size, timed.wall_s),
        "pipeline_mb_s": rate(size, summary["duration_s"]),
        "cpu_s": timed.cpu_s,
        "cpu_s_per_gib": timed.cpu_s / (size / GiB),
        "peak_rss_mib": timed.max_rss_bytes / (1 << 20),
        **{k: summary[k] for k in ("bytes_read", "bytes_new", "bytes_uploaded", "bytes_deduped",
                                   "bytes_sparse", "chunks_read", "diff_sampled")},
    }  # fmt: skip
    if node_cpu_s is not None:
        figures["node_cpu_s"] = node_cpu_s
        figures["node_cpu_s_per_gib"] = node_cpu_s / (size / GiB)
    return figures


def measure_restore(bench: Bench, node: NodeProcess, name: str, size: int) -> None:
    """Restore of the full version into a new image vs ``rbd import`` of the same bytes."""
    fig = bench.figures
    export_file = bench.workdir / "s1.raw"
    bench.rbd("export", "--no-progress", f"{bench.pool}/{name}@s1", str(export_file))
    evict(export_file)  # the node's chunk files are not cached either (O_DIRECT writes)
    imported = f"bench-{uuid.uuid4().hex[:10]}"
    bench.images.append(imported)
    rbd_import = bench.rbd("import", "--no-progress", str(export_file), f"{bench.pool}/{imported}")
    export_file.unlink()
    bench.remove_image(imported)  # room on the OSD before the restore writes its copy
    target = f"bench-{uuid.uuid4().hex[:10]}"
    bench.images.append(target)
    restored, summary = bench.edgeback(node, "disk", "restore", "bench/d0/full",
                                       "--image", f"{bench.pool}/{target}")  # fmt: skip
    fig["rbd_import"] = {"wall_s": rbd_import.wall_s, "mb_s": rate(size, rbd_import.wall_s)}
    fig["restore"] = {
        "wall_s": restored.wall_s, "pipeline_s": summary["duration_s"],
        "mb_s": rate(size, restored.wall_s), "pipeline_mb_s": rate(size, summary["duration_s"]),
        "cpu_s": restored.cpu_s, "peak_rss_mib": restored.max_rss_bytes / (1 << 20),
        "ratio_vs_rbd_import": rate(size, restored.wall_s) / rate(size, rbd_import.wall_s),
        "matches_snapshot": bench.checksum(target, size) == bench.checksum(name, size, "s1"),
    }  # fmt: skip
    bench.remove_image(target)


def evict(path: Path) -> None:
    """Write ``path`` out and drop it from the page cache, so a reader finds it on disk.

    Both restores then read their source from disk: ``rbd import`` this file, the
    restore the chunk files the node wrote around the page cache.
    """
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def measure_encrypted(bench: Bench, workdir: Path, name: str, size: int) -> None:
    """The full backup of the same snapshot into an encrypted pool on a second node."""
    fig = bench.figures
    make_pool(workdir / "pools-encrypted", encrypted=True)
    with node_process(workdir / "pools-encrypted", threads=4) as node:
        cpu_before = cpu_seconds(node.pid)
        timed, summary = bench.backup(node, f"{bench.pool}/{name}@s1", "full")
        sealed = _backup_figures(timed, summary, size, cpu_seconds(node.pid) - cpu_before)
    plain = fig["full_backup"]
    sealed["wall_ratio_vs_plain"] = sealed["wall_s"] / plain["wall_s"]
    sealed["cpu_ratio_vs_plain"] = sealed["cpu_s"] / plain["cpu_s"]
    sealed["extra_cpu_s_per_gib"] = sealed["cpu_s_per_gib"] - plain["cpu_s_per_gib"]
    fig["encrypted_full_backup"] = sealed


def measure_rss(
    bench: Bench, node: NodeProcess, size_gib: float, zero_fraction: float = 0.4
) -> dict[str, Any]:
    """Peak RSS of a full backup of an extra mixed image of ``size_gib``."""
    size = int(size_gib * GiB) // CHUNK_SIZE * CHUNK_SIZE
    chunks = size // CHUNK_SIZE
    name = bench.create_image(size, mixed_layout(chunks, 3, zero_fraction), seed=3)
    bench.snapshot(name, "s1")
    timed, summary = bench.backup(node, f"{bench.pool}/{name}@s1", "full", disk=name)
    bench.remove_image(name)
    return {"size_gib": size_gib, "zero_fraction": zero_fraction,
            "peak_rss_mib": timed.max_rss_bytes / (1 << 20),
            "mb_s": rate(size, timed.wall_s), "cpu_s_per_gib": timed.cpu_s / (size / GiB),
            "bytes_read": summary["bytes_read"]}  # fmt: skip


TARGETS = (
    ("full backup >= 0.5 x rbd export rate",
     lambda f: f["full_backup"]["ratio_vs_rbd_export"] >= 0.5),
    ("incremental (5%) <= 3 x rbd export-diff wall",
     lambda f: f["incremental_5pct"]["wall_ratio_vs_export_diff"] <= 3),
    ("nothing changed < 2 s", lambda f: f["incremental_unchanged"]["wall_s"] < 2),
    ("restore >= 0.8 x rbd import rate", lambda f: f["restore"]["ratio_vs_rbd_import"] >= 0.8),
    ("peak RSS <= 300 MiB at every size",
     lambda f: all(r["peak_rss_mib"] <= 300 for r in f["rss"])),
    ("restored image matches its snapshot", lambda f: f["restore"]["matches_snapshot"]),
)  # fmt: skip


ROOM_SHARE = 0.75
"""At most this share of the cluster's free space may be needed: a bluestore OSD that
fills up aborts and does not start again (BlueFS has no room to replay its log)."""


def space_needed(size: int, rss_sizes: list[float], zero_fraction: float) -> int:
    """Peak bytes the run stores in the cluster at once.

    The main image allocates everything but its never-written zero chunks (3/4 of its
    zero share), its second snapshot keeps the 5% it rewrites, and the restore writes
    the non-zero data once more; each extra RSS image is created after those are gone.
    """
    allocated = size * (1 - 0.4 * 0.75)
    main = allocated + 0.05 * size + size * 0.6
    extra = max((gib * GiB * (1 - zero_fraction * 0.75) for gib in rss_sizes), default=0)
    return int(max(main, extra))


def check_room(conf: str, needed: int) -> None:
    """Refuse to start (SystemExit with the reason) when the run would fill the cluster."""

    async def free() -> int:
        async with RbdCluster.connect(conf) as cluster:
            return (await cluster.cluster_stats()).avail_bytes

    available = asyncio.run(free())
    if needed > available * ROOM_SHARE:
        raise SystemExit(
            f"the benchmark needs about {needed / GiB:.1f} GiB in the cluster and only "
            f"{available / GiB:.1f} GiB are free (at most {ROOM_SHARE:.0%} of it may be "
            "used: a full OSD does not start again); free space, use a smaller --size-gib "
            "or --rss-sizes, or a larger OSD (ceph-dev-cluster.sh --osd-size-gb)"
        )


def run(args: argparse.Namespace) -> dict[str, Any]:
    size = int(args.size_gib * GiB) // CHUNK_SIZE * CHUNK_SIZE
    chunks = size // CHUNK_SIZE
    check_room(args.conf, space_needed(size, args.rss_sizes, args.rss_zero_fraction))
    workdir = Path(tempfile.mkdtemp(prefix="edgeback-bench-", dir=args.workdir))
    bench = Bench(args.conf, args.pool, workdir, args.streams)
    bench.figures.update(size_bytes=size, size_gib=size / GiB, streams=args.streams,
                         node="separate process: python -m edgeback_dedup")  # fmt: skip
    try:
        make_pool(workdir / "pools")
        with node_process(workdir / "pools", threads=4) as node:
            name = bench.create_image(size, mixed_layout(chunks), seed=1)
            bench.snapshot(name, "s1")
            measure_backups(bench, node, name, size, chunks)
            measure_restore(bench, node, name, size)
            if args.encrypted:
                measure_encrypted(bench, workdir, name, size)
            bench.remove_images()
            main_rss = {
                "size_gib": size / GiB,
                **{
                    k: bench.figures["full_backup"][k]
                    for k in ("peak_rss_mib", "mb_s", "cpu_s_per_gib", "bytes_read")
                },
            }
            bench.figures["rss"] = [main_rss] + [
                measure_rss(bench, node, gib, args.rss_zero_fraction)
                for gib in args.rss_sizes
                if gib != args.size_gib
            ]  # fmt: skip
    finally:
        bench.remove_images()
        shutil.rmtree(workdir, ignore_errors=True)
    bench.figures["targets"] = {label: bool(check(bench.figures)) for label, check in TARGETS}
    return bench.figures


def report(fig: dict[str, Any]) -> str:
    full, incr, same, rest = (fig[k] for k in ("full_backup", "incremental_5pct",
                                               "incremental_unchanged", "restore"))  # fmt: skip
    export, diff, imp = fig["rbd_export"], fig["rbd_export_diff_5pct"], fig["rbd_import"]
    stored = fig["stored_after_incrementals"]
    rss = ", ".join(f"{r['size_gib']:.1f} GiB: {r['peak_rss_mib']:.0f} MiB" for r in fig["rss"])
    lines = [
        f"image {fig['size_gib']:.2f} GiB (40% zero, 30% text, 30% random), "
        f"streams {fig['streams']}",
        f"rbd export         {export['mb_s']:8.1f} MB/s  {export['wall_s']:6.2f} s",
        f"full backup        {full['mb_s']:8.1f} MB/s  {full['wall_s']:6.2f} s  "
        f"ratio {full['ratio_vs_rbd_export']:.2f}x  (pipeline {full['pipeline_mb_s']:.1f} MB/s)",
        f"  cpu {full['cpu_s_per_gib']:.2f} s/GiB backup, "
        f"{full.get('node_cpu_s_per_gib', 0):.2f} s/GiB node, "
        f"osd {full['osd_cpu_s']:.1f} s (rbd export: {export['cpu_s']:.1f} s + osd "
        f"{export['osd_cpu_s']:.1f} s); peak RSS {full['peak_rss_mib']:.0f} MiB",
        f"rbd export-diff 5% {diff['wall_s']:6.2f} s",
        f"incremental 5%     {incr['wall_s']:6.2f} s  "
        f"ratio {incr['wall_ratio_vs_export_diff']:.2f}x (pipeline {incr['pipeline_s']:.2f} s, "
        f"{incr['pipeline_ratio_vs_export_diff']:.2f}x)",
        f"nothing changed    {same['wall_s']:6.2f} s  (pipeline {same['pipeline_s']:.2f} s)",
        f"rbd import         {imp['mb_s']:8.1f} MB/s  {imp['wall_s']:6.2f} s",
        f"restore            {rest['mb_s']:8.1f} MB/s  {rest['wall_s']:6.2f} s  "
        f"ratio {rest['ratio_vs_rbd_import']:.2f}x  matches snapshot: {rest['matches_snapshot']}",
        f"peak RSS           {rss}",
        f"stored bytes       {stored['stored_bytes']:,} (dedup ratio {stored['dedup_ratio']})",
    ]
    if "encrypted_full_backup" in fig:
        enc = fig["encrypted_full_backup"]
        lines.append(
            f"encrypted full     {enc['mb_s']:8.1f} MB/s  {enc['wall_s']:6.2f} s  "
            f"wall {enc['wall_ratio_vs_plain']:.2f}x plain, cpu {enc['cpu_s_per_gib']:.2f} s/GiB "
            f"backup ({enc['extra_cpu_s_per_gib']:+.2f} vs plain), "
            f"{enc.get('node_cpu_s_per_gib', 0):.2f} s/GiB node"
        )
    lines += [
        f"target {'met   ' if ok else 'MISSED'} {label}" for label, ok in fig["targets"].items()
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size-gib", type=float, default=4.0)
    parser.add_argument(
        "--rss-sizes",
        type=lambda t: [float(x) for x in t.split(",") if x],
        default=[],
        help="extra image sizes (GiB, comma separated) for peak RSS",
    )
    parser.add_argument(
        "--rss-zero-fraction",
        type=float,
        default=0.4,
        help="zero chunks of the extra RSS images (raise it when the OSD "
        "cannot hold a big image's data)",
    )
    parser.add_argument("--json", type=Path, help="write the figures as JSON here")
    parser.add_argument("--conf", default=os.environ.get("CEPH_CONF", "var/ceph/ceph.conf"))
    parser.add_argument("--pool", default="rbd")
    parser.add_argument("--streams", type=int, default=4)
    parser.add_argument("--workdir", help="where the pool directory and export file go")
    parser.add_argument(
        "--encrypted",
        action="store_true",
        help="also back up the image into an encrypted pool (cost of encryption)",
    )
    args = parser.parse_args(argv)  # fmt: skip
    figures = run(args)
    return emit(report(figures), figures, args.json)


def emit(text: str, figures: dict[str, Any], json_path: Path | None) -> int:
    """Print a benchmark's report, write its figures to ``json_path`` (if given); 0."""
    print(text)
    if json_path:
        json_path.write_text(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
