"""The data-path benchmark runs end to end at a tiny size and reports every figure."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tests.bench.bench_data_path import TARGETS, main, space_needed

pytestmark = pytest.mark.integration

FIGURES = {
    "rbd_export": {"wall_s", "mb_s"},
    "full_backup": {"wall_s", "mb_s", "ratio_vs_rbd_export", "cpu_s_per_gib", "peak_rss_mib",
                    "node_cpu_s_per_gib", "bytes_new", "bytes_sparse"},
    "rbd_export_diff_5pct": {"wall_s", "changed_chunks"},
    "incremental_5pct": {"wall_s", "wall_ratio_vs_export_diff", "chunks_read"},
    "incremental_unchanged": {"wall_s", "pipeline_s", "chunks_read"},
    "rbd_import": {"wall_s", "mb_s"},
    "restore": {"wall_s", "mb_s", "ratio_vs_rbd_import", "matches_snapshot"},
    "stored_after_full": {"stored_bytes", "dedup_ratio"},
    "stored_after_incrementals": {"stored_bytes", "dedup_ratio"},
    "encrypted_full_backup": {"wall_s", "wall_ratio_vs_plain", "cpu_s_per_gib",
                              "extra_cpu_s_per_gib", "node_cpu_s_per_gib", "bytes_new"},
}  # fmt: skip


def test_benchmark_at_64_mib_writes_every_figure(
    ceph_conf: str, ceph_pool: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "bench.json"
    args = ["--size-gib", "0.0625", "--rss-sizes", "0.125", "--json", str(out),
            "--conf", ceph_conf, "--pool", ceph_pool, "--workdir", str(tmp_path),
            "--encrypted"]  # fmt: skip
    assert main(args) == 0
    figures = json.loads(out.read_text())
    for section, keys in FIGURES.items():
        assert keys <= set(figures[section]), (section, keys - set(figures[section]))
    assert figures["restore"]["matches_snapshot"] is True
    assert [r["size_gib"] for r in figures["rss"]] == [0.0625, 0.125]
    assert all(r["peak_rss_mib"] > 0 for r in figures["rss"])
    assert set(figures["targets"]) == {label for label, _ in TARGETS}
    # 16 chunks, 5% rewritten = 1 chunk; nothing changed reads nothing
    assert figures["rbd_export_diff_5pct"]["changed_chunks"] == 1
    assert figures["incremental_5pct"]["chunks_read"] == 1
    assert figures["incremental_unchanged"]["chunks_read"] == 0
    assert figures["full_backup"]["bytes_new"] > 0
    assert "full backup" in capsys.readouterr().out
    assert list(tmp_path.iterdir()) == [out]  # pool directory and export file removed


def test_a_run_that_would_fill_the_cluster_is_refused_before_it_starts(
    ceph_conf: str, ceph_pool: str, tmp_path: Path
) -> None:
    args = ["--size-gib", "100000", "--conf", ceph_conf, "--pool", ceph_pool,
            "--workdir", str(tmp_path)]  # fmt: skip
    with pytest.raises(SystemExit, match=r"only .* GiB are free"):
        main(args)
    assert list(tmp_path.iterdir()) == []  # nothing was created


def test_space_needed_covers_the_image_its_snapshot_and_the_restored_copy() -> None:
    gib = 1 << 30
    assert space_needed(4 * gib, [], 0.4) == int(4 * gib * (0.7 + 0.05 + 0.6))
    assert space_needed(1 * gib, [16.0], 0.4) == int(16 * gib * 0.7)
