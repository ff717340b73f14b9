"""The API side of the ``edgeback`` CLI without a server: the command line and its
help, the session file, problem bodies to exit codes, tables, a job from flags, a
run's progress from its detail, start-up imports, and ``pool create``."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import msgspec
import pytest

from edgeback_blocks.chunk import Compression
from edgeback_blocks.pool_wire import PoolKind
from edgeback_cli import credentials, disk_cli, output
from edgeback_cli.apiclient import normalize_url, problem_error
from edgeback_cli.job_cli import apply_flags
from edgeback_cli.main import EXIT_AUTH, EXIT_FAILED, EXIT_INPUT, build_parser, exit_code, run
from edgeback_cli.restore_cli import restore_spec, shown_code
from edgeback_cli.runwatch import Tracker
from edgeback_cli.sse import Sse, parse
from edgeback_core.errors import (
    ConfigError,
    DigestMismatchError,
    InvalidInputError,
    NameTakenError,
    NotFoundError,
    UnauthenticatedError,
    UnavailableError,
    UnroutableError,
)
from edgeback_pools.pool_meta import read_pool


def _leaves(parser: argparse.ArgumentParser, path: str = "edgeback") -> list[tuple[str, str]]:
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subs:
        return [(path, parser.epilog or "")]
    return [
        leaf for name, child in subs[0].choices.items() for leaf in _leaves(child, f"{path} {name}")
    ]


def test_every_command_has_an_example_that_names_it() -> None:
    leaves = _leaves(build_parser())
    assert len(leaves) > 30
    for path, epilog in leaves:
        assert epilog.startswith("example:"), path
        assert path in epilog, (path, epilog)


def test_top_level_help_speaks_to_an_operator(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--help"])
    text = capsys.readouterr().out
    assert "``" not in text
    assert "edgeback login" in text and "exit codes:" in text


def test_disk_choices_follow_the_data_path() -> None:
    assert tuple(c.value for c in Compression) == disk_cli.COMPRESSIONS
    assert set(disk_cli.POOL_KINDS) <= {k.value for k in PoolKind}


def test_cli_start_up_imports_only_what_the_command_needs() -> None:
    probe = (
        "import sys, edgeback_cli.main as m; m.build_parser();"
        "print(sorted(x for x in ('aiohttp', 'http.client', 'edgeback_blocks.pipeline')"
        " if x in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def test_problem_bodies_become_our_errors_and_exit_codes() -> None:
    body = msgspec.json.encode({"code": "name_taken", "message": "taken", "status": 409})
    error = problem_error(409, "application/problem+json", body)
    assert isinstance(error, NameTakenError) and error.message == "taken"
    assert exit_code(error) == EXIT_INPUT
    assert isinstance(problem_error(502, "text/html", b"<h1>bad gateway</h1>"), UnavailableError)
    assert exit_code(UnauthenticatedError("no")) == EXIT_AUTH
    assert exit_code(UnavailableError("down")) == EXIT_FAILED
    assert exit_code(UnroutableError("nobody")) == EXIT_INPUT
    assert exit_code(DigestMismatchError("bad")) == 3
    # a code of no known kind (an unknown route's http_404): the status tells whose fault
    unknown = msgspec.json.encode({"code": "http_404", "message": "Not Found", "kinds": []})
    gone = problem_error(404, "application/problem+json", unknown)
    assert isinstance(gone, NotFoundError) and exit_code(gone) == EXIT_INPUT
    refused = problem_error(405, "application/problem+json", unknown)
    assert isinstance(refused, InvalidInputError) and exit_code(refused) == EXIT_INPUT
    assert exit_code(problem_error(500, "application/problem+json", unknown)) == EXIT_FAILED


def test_a_limit_below_one_exits_2_before_any_request(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    env = {"XDG_CONFIG_HOME": str(tmp_path), "EDGEBACK_API_TOKEN": "ebt_x"}
    for argv in (["job", "list"], ["restore", "list"], ["run", "events", "r1"], ["pool", "list"]):
        for limit in ("0", "-1"):
            given = [*argv, "--limit", limit, "--api", "http://127.0.0.1:9"]
            assert run(given, env) == EXIT_INPUT, given  # not unreachable: never asked
            assert "--limit must be at least 1" in capsys.readouterr().err


def test_an_unreadable_secret_key_file_exits_2_before_any_request(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    env = {"XDG_CONFIG_HOME": str(tmp_path), "EDGEBACK_API_TOKEN": "ebt_x"}
    argv = ["platform", "register", "--name", "e", "--address", "10.0.0.5", "--access-key"]
    argv += ["AK1", "--host", "bk-01", "--secret-key-file", str(tmp_path / "none")]
    assert run([*argv, "--api", "http://127.0.0.1:9"], env) == EXIT_INPUT  # not unreachable
    err = capsys.readouterr().err
    assert "[invalid_input]: cannot read" in err and "Traceback" not in err


def test_api_urls_are_normalized() -> None:
    assert normalize_url("https://api.example:8440/api/v1/") == "https://api.example:8440"
    assert normalize_url("http://127.0.0.1:8440") == "http://127.0.0.1:8440"
    with pytest.raises(ConfigError):
        normalize_url("127.0.0.1:8440")
    # once ValueError tracebacks, or "cannot reach the API" (exit 1) for a space
    for bad in ("http://[::1", "http://127.0.0.1:99999", "http://127.0.0.1:8440/x y"):
        with pytest.raises(ConfigError):
            normalize_url(bad)
    assert normalize_url("https://[::1]:8440/edge/api/v1") == "https://[::1]:8440/edge"


def test_the_session_file_is_private_and_only_sent_to_its_api(tmp_path: Path) -> None:
    env = {"XDG_CONFIG_HOME": str(tmp_path)}
    path = credentials.session_path(env)
    saved = credentials.Saved(api_url="http://a:8440", token="ebt_x", user="root")
    credentials.save(path, saved)
    assert path.stat().st_mode & 0o777 == 0o600
    assert path.parent.stat().st_mode & 0o777 == 0o700
    assert credentials.load(path) == saved
    mine = credentials.target(env, api=None, ca_file=None, saved=saved)
    assert (mine.api_url, mine.token) == ("http://a:8440", "ebt_x")
    other = credentials.target(env, api="http://b:8440", ca_file=None, saved=saved)
    assert other.token is None
    with pytest.raises(UnauthenticatedError):
        other.need_token()
    automation = credentials.target(
        {**env, "EDGEBACK_API_TOKEN": "ebt_y"}, api="http://b:8440", ca_file=None, saved=saved
    )
    assert automation.token == "ebt_y"
    path.chmod(0o644)
    with pytest.raises(ConfigError, match="readable by others"):
        credentials.load(path)
    assert credentials.remove(path) and not credentials.remove(path)


def test_api_commands_without_a_session_exit_4(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    env = {"XDG_CONFIG_HOME": str(tmp_path), "EDGEBACK_API_URL": "http://127.0.0.1:9"}
    # every group of API commands goes to the API (dispatch by how the verb was made)
    for argv in (["job", "list"], ["backup-set", "show", "x"], ["host", "list"]):
        assert run(argv, env) == EXIT_AUTH, argv
        assert "not signed in to http://127.0.0.1:9" in capsys.readouterr().err


def test_an_unreachable_api_exits_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    env = {"XDG_CONFIG_HOME": str(tmp_path), "EDGEBACK_API_TOKEN": "ebt_x"}
    # port 9 (discard) on loopback: nothing listens, the connection is refused at once
    assert run(["job", "list", "--api", "http://127.0.0.1:9"], env) == EXIT_FAILED
    assert "[unavailable]" in capsys.readouterr().err


def test_tables_pick_dotted_fields() -> None:
    items = [
        {"id": "j1", "spec": {"name": "nightly", "target": {"pool": {"name": "dd"}}}},
        {"id": "j2", "spec": {"name": "weekly"}, "enabled": False},
    ]
    text = output.table(items, (("ID", "id"), ("POOL", "spec.target.pool.name"), ("ON", "enabled")))
    assert text.splitlines() == ["ID  POOL  ON", "j1  dd    -", "j2  -     no"]
    assert output.cell("2025-01-02T03:04:05.678+00:00") == "2025-01-02 03:04:05"
    assert output.cell(["a", "b"]) == "a,b"


def _flags(**given: object) -> argparse.Namespace:
    names = ("name", "description", "type", "platform", "physical_host", "vms", "exclude",
             "host", "node_url", "pool")  # fmt: skip
    return argparse.Namespace(**{n: given.get(n) for n in names})


def test_a_job_from_flags_and_an_edit_that_keeps_the_rest() -> None:
    spec = apply_flags({}, _flags(name="n", platform="p1", vms=["v1", "v2"], host="bk",
                                  node_url="http://node:8710", pool="dd"))  # fmt: skip
    assert spec == {
        "name": "n",
        "content": {"vms": [
            {"platform_id": "p1", "physical_host_id": None, "vm_id": "v1"},
            {"platform_id": "p1", "physical_host_id": None, "vm_id": "v2"},
        ]},
        "target": {"host_id": "bk", "pool": {"node_url": "http://node:8710", "name": "dd"}},
    }  # fmt: skip
    edited = apply_flags(spec, _flags(type="incremental", exclude=["tmp-*"]))
    assert edited["type"] == "incremental"
    assert edited["content"]["exclude_names"] == ["tmp-*"]
    assert edited["content"]["vms"] == spec["content"]["vms"]
    assert edited["target"] == spec["target"]


def test_server_sent_events_are_parsed() -> None:
    lines = [
        ": events of run:r1", "",
        "id: k1", "event: RunProgress", 'data: {"bytes_done": 5}', "",
        ": keep-alive", "",
        "event: end", 'data: {"state": "succeeded"}', "",
    ]  # fmt: skip
    assert list(parse(lines)) == [
        Sse(event="RunProgress", data={"bytes_done": 5}, id="k1"),
        Sse(event="end", data={"state": "succeeded"}),
    ]


def _at(seconds: float) -> str:
    return datetime.fromtimestamp(1_700_000_000 + seconds, UTC).isoformat()


def test_a_runs_progress_sums_its_vms_and_settles_the_finished() -> None:
    tracker = Tracker()
    tracker.add({"type": "RunStarted", "vm_count": 2, "at": _at(0)})
    for vm, done in (("a", 300), ("b", 100)):
        tracker.add({"type": "RunProgress", "vm": {"vm_id": vm}, "bytes_done": done,
                     "bytes_total": 400, "rate_bps": 10.0, "at": _at(20)})  # fmt: skip
    half = tracker.view(1_700_000_000 + 20)
    assert (half.done_bytes, half.total_bytes, half.rate_bps, half.elapsed_s) == (
        400,
        800,
        20.0,
        20,
    )
    assert (half.fraction, half.eta_s, half.tail()) == (0.5, 20.0, "0/2 VMs running")
    tracker.add({"type": "VmFinished", "vm": {"vm_id": "a"}, "at": _at(30)})
    settled = tracker.view(1_700_000_000 + 30)
    assert (settled.total_bytes, settled.rate_bps, settled.vms_done) == (700, 10.0, 1)
    tracker.end("partially_succeeded")
    ended = tracker.view(1_700_000_000 + 100)
    assert ended.final and ended.fraction == 1.0 and ended.elapsed_s == 30 and ended.eta_s == 0.0


def test_a_restores_total_starts_from_its_points() -> None:
    tracker = Tracker(total_hint=1000)
    assert tracker.view(0).eta_s is None
    disk = {"type": "RestoreProgress", "backup_set_id": "s1", "disk_id": "d0", "at": _at(5)}
    tracker.add({**disk, "bytes_done": 250, "bytes_total": 500, "rate_bps": 50.0})
    view = tracker.view(1_700_000_000 + 5)
    assert (view.total_bytes, view.fraction, view.eta_s) == (1000, 0.25, 15.0)
    tracker.add({"type": "RestoreVmFinished", "backup_set_id": "s1", "at": _at(6)})
    assert tracker.view(1_700_000_000 + 6).rate_bps == 0.0


def _restore_flags(**given: object) -> argparse.Namespace:
    names = ("points", "name", "schedule", "at", "host", "to_vm", "map",
             "snapshot_before_overwrite", "keep_snapshot_on_success", "start_vm_after",
             "instant", "parallel_vms", "vms_per_physical_host", "disks_per_vm",
             "streams_per_disk", "changed_only")  # fmt: skip
    return argparse.Namespace(**{n: given.get(n) for n in names})


def test_a_restore_spec_from_flags() -> None:
    flags = _restore_flags(points=["s1"], host="bk", to_vm="p1/vm-9", map=["d0=t1", "d1=t0"],
                           snapshot_before_overwrite=True, streams_per_disk=8)  # fmt: skip
    assert restore_spec({"options": {"start_vm_after": True}}, flags) == {
        "backup_set_ids": ["s1"],
        "options": {"start_vm_after": True, "host_id": "bk",
                    "snapshot_before_overwrite": True, "streams_per_disk": 8},
        "target": {"new_path": {"platform_id": "p1", "vm_id": "vm-9", "disks": [
            {"source_disk_id": "d0", "target_disk_id": "t1"},
            {"source_disk_id": "d1", "target_disk_id": "t0"},
        ]}},
    }  # fmt: skip
    for bad in (_restore_flags(map=["d0=t0"]), _restore_flags(to_vm="vm-9"),
                _restore_flags(to_vm="p/v", map=["d0"])):  # fmt: skip
        with pytest.raises(InvalidInputError):
            restore_spec({}, bad)
    once = restore_spec({}, _restore_flags(at="2026-12-24T18:00:00+01:00"))
    assert once["schedule"] == {"kind": "once", "at": "2026-12-24T18:00:00+01:00"}
    with pytest.raises(InvalidInputError):
        restore_spec({}, _restore_flags(at="2026-12-24T18:00:00Z", schedule="manual"))
    rewrite = restore_spec({}, _restore_flags(changed_only=False))["options"]
    assert rewrite == {"changed_only": False}
    assert shown_code("K7QM2XPA") == "K7QM-2XPA"


def test_pool_create_makes_a_usable_directory(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "backups" / "dd"
    assert run(["pool", "create", str(target), "--json"], {}) == 0
    summary = json.loads(capsys.readouterr().out)
    info, key = read_pool(target)
    assert (summary["kind"], summary["key_id"], info.encrypted) == ("dedup", info.key_id, False)
    assert Path(summary["key_file"]).read_bytes() == key
    assert run(["pool", "create", str(target)], {}) == EXIT_INPUT
    assert "already exists" in capsys.readouterr().err
    assert run(["pool", "create", str(tmp_path / "sealed"), "--kind", "standard",
                "--encrypted"], {}) == 0  # fmt: skip
    assert read_pool(tmp_path / "sealed")[0].encrypted
