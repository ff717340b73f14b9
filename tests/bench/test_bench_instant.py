"""The instant restore benchmark runs end to end at a 64 MiB disk and reports every figure."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tests.bench.bench_instant import main

pytestmark = pytest.mark.integration

INSTANT = {"vm_started_s", "first_read_s", "committed_s", "mb_s", "total_cpu_s_per_gib"}


def test_normal_and_instant_restores_of_one_point_write_every_figure(
    amqp_url: str, mongo_url: str, ceph_conf: str, tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    out = tmp_path / "bench.json"
    args = ["--disk-mib", "64", "--fill", "0.5", "--bench-mib", "1", "--json", str(out),
            "--conf", ceph_conf, "--workdir", str(tmp_path)]  # fmt: skip
    assert main(args) == 0  # both restored disks byte-identical to the snapshot
    figures = json.loads(out.read_text())
    instant = figures["instant"]
    assert set(instant) >= INSTANT, INSTANT - set(instant)
    assert 0 < instant["vm_started_s"] <= instant["first_read_s"] <= instant["committed_s"]
    for reads in (instant["random_4k_during_copy"], instant["random_4k_after_commit"]):
        assert reads["ops_per_s"] > 0 and reads["mean_latency_us"] > 0
    assert figures["normal"]["usable_s"] > 0 and figures["normal"]["identical"]
    assert "instant restore  VM started" in capsys.readouterr().out
    assert list(tmp_path.iterdir()) == [out]  # node pools and emulator state removed
