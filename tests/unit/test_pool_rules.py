"""Registered storage pools without a server: the rules of a node URL and pool name
(shared with jobs), descriptions, which jobs hold a pool, the worker's reading of its
token file, the CLI's tables and its ``pool`` group (API verbs beside ``create``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgeback_catalog.pools import check_description, check_pool_ref, jobs_of
from edgeback_cli.main import EXIT_AUTH, EXIT_INPUT, build_parser, run
from edgeback_cli.output import table
from edgeback_cli.pool_cli import POOL_COLUMNS, shown
from edgeback_core.errors import InvalidInputError, PoolAccessMissingError
from edgeback_core.jobrules import pool_ref_problems
from edgeback_worker.pool_check import read_token


@pytest.mark.parametrize(
    ("url", "name", "wrong"),
    [
        ("http://node:8710", "dd", []),
        ("https://10.0.0.5:8710/edge/", "site-a.dedup_1", []),
        ("ftp://node", "dd", ["node_url"]),
        ("http://", "dd", ["node_url"]),
        ("http://node?x=1", "dd", ["node_url"]),
        ("http://[::1", "dd", ["node_url"]),  # urlsplit raises: a problem, not a crash
        ("http://node", "", ["name"]),
        ("http://node", "a/b", ["name"]),
        ("node", "x" * 65, ["node_url", "name"]),
    ],
)
def test_node_urls_and_pool_names(url: str, name: str, wrong: list[str]) -> None:
    problems = list(pool_ref_problems(url, name, prefix="target.pool."))
    assert [p.split(":")[0] for p in problems] == [f"target.pool.{w}" for w in wrong]


def test_a_registered_pools_url_loses_its_slash_and_jobs_match_either() -> None:
    assert check_pool_ref("http://node:8710/", "dd") == "http://node:8710"
    with pytest.raises(InvalidInputError, match="node_url"):
        check_pool_ref("node:8710", "dd")
    query = jobs_of("http://node:8710", "dd")
    assert query["spec.target.pool.node_url"] == {"$in": ["http://node:8710", "http://node:8710/"]}
    assert query["spec.target.pool.name"] == "dd"


def test_descriptions_are_short_printable_text() -> None:
    assert check_description("site A, rack 2 (dedup)") == "site A, rack 2 (dedup)"
    for bad in ("x" * 501, "two\nlines", "bell\x07"):
        with pytest.raises(InvalidInputError):
            check_description(bad)


def test_the_worker_reads_its_token_file(tmp_path: Path) -> None:
    assert read_token(tmp_path, "dd") is None
    (tmp_path / "dd.token").write_text("  tok-123\n")
    assert read_token(tmp_path, "dd") == "tok-123"
    (tmp_path / "empty.token").write_text("\n")
    assert read_token(tmp_path, "empty") is None
    (tmp_path / "dir.token").mkdir()
    with pytest.raises(PoolAccessMissingError):
        read_token(tmp_path, "dir")


def test_pool_tables_show_space_in_binary_units() -> None:
    pool = {
        "id": "p1",
        "name": "dd",
        "node_url": "http://node:8710",
        "host_id": "bk-01",
        "kind": "dedup",
        "encrypted": False,
        "status": {"capacity_bytes": 2 * 2**40, "used_bytes": 3 * 2**30, "free_bytes": 512},
        "last_error": {"code": "storage_node_unreachable", "message": "down"},
    }
    lines = table([shown(pool)], POOL_COLUMNS).splitlines()
    assert lines[0].split()[:4] == ["ID", "NAME", "NODE", "HOST"]
    row = lines[1]
    assert "2.0 TiB" in row and "3.0 GiB" in row and "512 B" in row
    assert row.endswith("storage_node_unreachable")
    assert shown({"id": "p2"})["shown"] == {"capacity": None, "used": None, "free": None}


def test_the_pool_group_holds_api_verbs_and_local_create(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    parser = build_parser()
    created = parser.parse_args(["pool", "create", str(tmp_path / "dd")])
    assert not hasattr(created, "needs_token")  # the local command: no API
    listed = parser.parse_args(["pool", "list", "--host", "bk-01", "-o", "json"])
    assert listed.needs_token and listed.host_id == "bk-01"
    with pytest.raises(SystemExit):
        parser.parse_args(["pool", "register", "--name", "dd", "--host", "bk-01"])  # no node
    env = {"XDG_CONFIG_HOME": str(tmp_path), "EDGEBACK_API_URL": "http://127.0.0.1:9"}
    assert run(["pool", "refresh", "p1"], env) == EXIT_AUTH
    capsys.readouterr()
    signed = {**env, "EDGEBACK_API_TOKEN": "ebt_x"}
    argv = ["job", "create", "--name", "n", "--pool-id", "p1", "--pool", "dd"]
    assert run(argv, signed) == EXIT_INPUT  # refused before any request
    assert "--pool-id names the node and the pool" in capsys.readouterr().err
