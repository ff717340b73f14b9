"""``edgeback serve --all`` refuses bad input with exit 2 and a line saying what, before
any service starts: a port out of range (nothing made), a data directory it cannot
make, a bad ``EDGEBACK_*`` setting (every problem at once). No traceback."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgeback_cli.main import EXIT_INPUT, run


def test_a_port_out_of_range_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    site = tmp_path / "site"
    for flag in ("--api-port", "--node-port", "--catalogdb-port"):
        with pytest.raises(SystemExit) as stopped:
            run(["serve", "--all", "--data-dir", str(site), flag, "99999"], {})
        assert stopped.value.code == EXIT_INPUT
        assert f"argument {flag}: not a TCP port" in capsys.readouterr().err
    assert not site.exists()


def test_a_data_directory_it_cannot_make_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    assert run(["serve", "--all", "--data-dir", str(blocker / "site")], {}) == EXIT_INPUT
    err = capsys.readouterr().err
    assert "[config_error]: cannot make the data directory" in err and "Traceback" not in err


def test_bad_settings_are_all_named_before_anything_starts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    environ = {"EDGEBACK_WORKER_CLAIM_S": "-3", "EDGEBACK_API_RPC_TIMEOUT_S": "soon"}
    # an unreachable catalog DB: had a service started, it would wait for it
    argv = ["serve", "--all", "--data-dir", str(tmp_path), "--mongo-url", "mongodb://127.0.0.1:9/"]
    assert run(argv, environ) == EXIT_INPUT
    err = capsys.readouterr().err
    assert "[config_error]: invalid settings:" in err and "Traceback" not in err
    assert "EDGEBACK_WORKER_CLAIM_S" in err and "EDGEBACK_API_RPC_TIMEOUT_S" in err
