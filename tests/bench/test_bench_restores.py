"""The restores benchmark runs end to end at 8 MiB disks and reports every figure (it
checks every restored disk against the bytes backed up, or fails)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tests.bench.bench_restores import SETTINGS, main

pytestmark = pytest.mark.integration

IMPORT = {"wall_s", "mb_s", "rbd_cpu_s_per_gib", "osd_cpu_s_per_gib", "total_cpu_s_per_gib"}
RESTORE = {"wall_s", "mb_s", "data_mb_s", "ratio_vs_rbd_import",
           "ratio_vs_rbd_import_parallel", "bench_cpu_s_per_gib", "node_cpu_s_per_gib",
           "total_cpu_s_per_gib", "vm_overlap", "bytes_written", "bytes_fetched"}  # fmt: skip


def test_serial_and_parallel_restores_against_rbd_import_write_every_figure(
    amqp_url: str, mongo_url: str, ceph_conf: str, tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    out = tmp_path / "bench.json"
    args = ["--disk-mib", "8", "--fill", "0.5", "--json", str(out), "--conf", ceph_conf,
            "--workdir", str(tmp_path)]  # fmt: skip
    assert main(args) == 0
    figures = json.loads(out.read_text())
    size = figures["size_bytes"]
    assert (figures["vms"], figures["disks"]) == (4, 8)
    assert len(set(figures["disk_mib"])) > 1, figures["disk_mib"]  # uneven sizes
    full = [label for label in SETTINGS if label != "changed"]
    for section, keys in [("rbd_import", IMPORT), ("rbd_import_parallel", IMPORT)] + [
        (label, RESTORE) for label in full
    ]:
        values = figures[section]
        assert keys <= set(values), (section, keys - set(values))
        assert all(values[k] > 0 for k in keys), (section, values)
    for label in full:  # every disk written whole: its data chunks, its zeros where the
        run = figures[label]  # image holds data, the rest left (it reads as zeros)
        assert run["bytes_written"] + run["bytes_zeroed"] + run["bytes_left"] == size, run
        assert run["bytes_written"] == figures["serial"]["bytes_written"] > 0, run
    quick = figures["changed"]  # only the chunks written to since the backup
    assert quick["bytes_written"] + quick["bytes_zeroed"] + quick["bytes_left"] == size
    assert 0 < quick["bytes_written"] + quick["bytes_zeroed"] <= quick["chunks_changed"] << 22
    assert quick["bytes_left"] > 0, quick
    assert figures["parallel"]["speedup_vs_serial"] > 0
    printed = capsys.readouterr().out
    assert "restore, parallel" in printed and "restore, changed only" in printed
    assert list(tmp_path.iterdir()) == [out]  # pools, exported files, emulator state removed
