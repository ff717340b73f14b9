"""The scheduler benchmark runs end to end at a tiny size and reports every figure."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tests.bench.bench_scheduler import main

pytestmark = pytest.mark.integration

FIGURES = {
    "lag_p50_s",
    "lag_p99_s",
    "scheduling_db_ops_per_due_run",
    "catalog_db_ops_per_due_run",
    "scheduler_cpu_s_per_1000_due_runs",
    "started",
    "doubled",
}


def test_benchmark_with_200_jobs_writes_every_figure(
    amqp_url: str, mongo_url: str, tmp_path: Path
) -> None:
    out = tmp_path / "bench.json"
    args = ["--jobs", "200", "--due", "40", "--window-s", "2", "--lead-s", "2", "--grace-s",
            "30", "--tick-s", "0.2", "--deadline-s", "200", "--json", str(out)]  # fmt: skip
    assert main(args) == 0
    figures = json.loads(out.read_text())
    assert set(figures) >= FIGURES
    assert (figures["started"], figures["doubled"]) == (40, 0)
    assert 0 <= figures["lag_p50_s"] <= figures["lag_p99_s"]  # no bound: timing is the figure
    assert figures["scheduling_db_ops_per_due_run"] > 0  # the scheduler's RPCs were counted
    assert figures["scheduler_cpu_s_per_1000_due_runs"] > 0  # read from its own process
