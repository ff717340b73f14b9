"""The runs benchmark runs end to end at 8 MiB disks and reports every figure."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tests.bench.bench_runs import SETTINGS, main

pytestmark = pytest.mark.integration

EXPORT = {"wall_s", "mb_s", "rbd_cpu_s_per_gib", "osd_cpu_s_per_gib", "total_cpu_s_per_gib"}
RUN = {"wall_s", "mb_s", "read_mb_s", "ratio_vs_rbd_export", "ratio_vs_rbd_export_parallel",
       "bench_cpu_s_per_gib", "node_cpu_s_per_gib", "total_cpu_s_per_gib", "vm_overlap",
       "bytes_read", "bytes_new"}  # fmt: skip


def test_serial_and_parallel_runs_against_rbd_export_write_every_figure(
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
    for section, keys in [("rbd_export", EXPORT), ("rbd_export_parallel", EXPORT)] + [
        (label, RUN) for label in SETTINGS
    ]:
        values = figures[section]
        assert keys <= set(values), (section, keys - set(values))
        assert all(values[k] > 0 for k in keys), (section, values)
    assert figures["parallel"]["speedup_vs_serial"] > 0
    # each run wrote into a pool of its own: nothing of the second was deduplicated away
    assert figures["parallel"]["bytes_new"] == figures["serial"]["bytes_new"]
    assert "run, parallel" in capsys.readouterr().out
    assert list(tmp_path.iterdir()) == [out]  # node pools and emulator state removed
