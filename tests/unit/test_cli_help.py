"""``edgeback ... --help`` stays helpful: every command and group says what it is, every
group shows examples of its commands, every option says what it does, every command
takes ``-o/--output table|json`` (``--json`` still works where it did), and the help
signs in as the admin the quickstart and ``serve --all`` create."""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from edgeback_cli.main import build_parser, run

NO_OUTPUT = {"edgeback serve"}
"""Commands that print no answer: ``serve`` runs until stopped."""
JSON_ALIAS = (
    ["pool", "create", "D"],
    ["key", "create", "F"],
    ["disk", "backup", "--image", "rbd/i", "--to", "D", "--secret-key-file", "F"],
    ["disk", "restore", "v/d/1", "--image", "rbd/i", "--from", "D", "--secret-key-file", "F"],
    ["disk", "verify", "v/d/1", "--from", "D", "--secret-key-file", "F"],
    ["catalog", "import", "--from", "D", "--secret-key-file", "F"],
)


def _parsers(
    parser: argparse.ArgumentParser, path: str = "edgeback"
) -> Iterator[tuple[str, argparse.ArgumentParser, list[str]]]:
    """Every parser under ``parser``: its command path, itself, its subcommands' names."""
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    names = list(subs[0].choices) if subs else []
    yield path, parser, names
    for name in names:
        yield from _parsers(subs[0].choices[name], f"{path} {name}")


def test_every_command_and_group_says_what_it_is() -> None:
    found = list(_parsers(build_parser()))
    assert len(found) > 60
    for path, parser, _ in found:
        assert parser.description, path


def test_every_group_shows_examples_of_its_commands() -> None:
    groups = [(p, x, names) for p, x, names in _parsers(build_parser()) if names]
    assert {"edgeback job", "edgeback run", "edgeback restore job", "edgeback key"} <= {
        p for p, _, _ in groups
    }
    for path, parser, names in groups[1:]:  # the top level has its getting-started epilog
        epilog = parser.epilog or ""
        assert epilog.startswith("examples:\n"), path
        shown = {line.split()[len(path.split())] for line in epilog.splitlines()[1:]
                 if line.startswith(f"  {path} ")}  # fmt: skip
        assert shown == set(names), (path, shown)


def test_every_option_says_what_it_does() -> None:
    for path, parser, _ in _parsers(build_parser()):
        for action in parser._actions:
            if isinstance(action, argparse._HelpAction | argparse._SubParsersAction):
                continue
            if action.option_strings:  # a hidden alias (SUPPRESS) is help on purpose
                assert action.help, (path, action.option_strings)
            else:  # a positional: its metavar (JOB_ID) or a help text says what it is
                assert action.help or action.metavar, (path, action.dest)
        assert " a instance" not in parser.format_help(), path


def test_descriptions_are_wrapped() -> None:
    """Raw descriptions are printed as written: a long line would run across the screen."""
    for path, parser, _ in _parsers(build_parser()):
        assert max(map(len, (parser.description or "").splitlines())) <= 100, path


def test_help_signs_in_as_the_admin_the_quickstart_makes(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--help"])
    text = capsys.readouterr().out
    assert "--user admin" in text and "--user root" not in text
    login = {p: x for p, x, _ in _parsers(build_parser())}["edgeback login"]
    assert "--user admin" in (login.epilog or "")


def test_every_command_takes_output_table_or_json() -> None:
    for path, parser, names in _parsers(build_parser()):
        if names or path in NO_OUTPUT:
            continue
        output = [a for a in parser._actions if "--output" in a.option_strings]
        assert output and "-o" in output[0].option_strings, path
        assert tuple(output[0].choices or ()) == ("table", "json"), path


@pytest.mark.parametrize("argv", JSON_ALIAS, ids=lambda a: " ".join(a[:2]))
def test_json_stays_an_alias_of_output_json(argv: list[str]) -> None:
    parser = build_parser()
    assert parser.parse_args(argv).output == "table"
    assert parser.parse_args([*argv, "-o", "json"]).output == "json"
    assert parser.parse_args([*argv, "--json"]).output == "json"
    command = {p: x for p, x, _ in _parsers(parser)}[" ".join(["edgeback", *argv[:2]])]
    assert "--json" not in command.format_help()  # hidden: -o json is the way shown


def test_pool_and_key_create_answer_json(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(["pool", "create", str(tmp_path / "dd"), "-o", "json"], {}) == 0
    assert json.loads(capsys.readouterr().out)["kind"] == "dedup"
    secret = tmp_path / "pool.secret"
    assert run(["key", "create", str(secret), "--output", "json"], {}) == 0
    out = capsys.readouterr()
    assert json.loads(out.out) == {"secret_file": str(secret), "bytes": 32}
    assert secret.stat().st_mode & 0o777 == 0o600 and len(secret.read_bytes()) == 32
    assert "back it up" in out.err
    assert run(["key", "create", str(tmp_path / "other.secret")], {}) == 0
    assert "secret_file" in capsys.readouterr().out  # a table: field: value lines
