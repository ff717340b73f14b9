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
    assert (figures["vms"], figures["disks"]) == (4, 8)
    assert len(set(figures["disk_mib"])) > 1, figures["disk_mib"]  # uneven sizes
    for section, keys in [("rbd_import", IMPORT), ("rbd_import_parallel", IMPORT)] + [
        (label, RESTORE) for label in SETTINGS
    ]:
        values = figures[section]
        assert keys <= set(values), (section, keys - set(values))
        assert all(values[k] > 0 for k in keys), (section, values)
    for label in SETTINGS:  # every disk written whole: its data chunks and its zeros
        run = figures[label]
        assert run["bytes_written"] + run["bytes_zeroed"] == figures["size_bytes"], run
    assert figures["parallel"]["speedup_vs_serial"] > 0
    assert "restore, parallel" in capsys.readouterr().out
    assert list(tmp_path.iterdir()) == [out]  # pools, exported files, emulator state removed
