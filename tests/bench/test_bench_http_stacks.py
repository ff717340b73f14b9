"""The HTTP-stack benchmark runs both stacks at a tiny size and reports every figure."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from tests.bench.bench_http_stacks import main

pytestmark = pytest.mark.integration


def test_both_stacks_upload_and_both_imports_are_timed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert (
        main(["--chunks", "4", "--rounds", "2", "--imports", "1", "--workdir", str(tmp_path)]) == 0
    )
    lines = [ast.literal_eval(line) for line in capsys.readouterr().out.splitlines()]
    assert set(lines[0]["import_s"]) == {"cli", "cli+aiohttp"}
    assert [line["stack"] for line in lines[1:]] == [
        "http.client",
        "aiohttp",
        "aiohttp",
        "http.client",
    ]
    assert all(line["mb_s"] > 0 and line["client_cpu_s"] >= 0 for line in lines[1:])
    assert list(tmp_path.iterdir()) == []
