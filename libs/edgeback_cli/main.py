"""``edgeback`` console script: the command line, the top-level help, exit codes.

API commands (login, host, platform, storage, pool, browse, job, run, restore) talk to the
HTTP API; the others (disk, pool create, key, catalog import) work without it. Each side
imports what it needs only when it runs, so ``edgeback disk ...`` never loads the HTTP
client and the API commands never load the data path.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Mapping, Sequence

from edgeback_cli import (
    account_cli,
    apicli,
    disk_cli,
    job_cli,
    resource_cli,
    restore_cli,
    serve_all,
)
from edgeback_core.errors import (
    ConfigError,
    EdgebackError,
    IntegrityError,
    PermanentError,
    PermissionDeniedError,
    UnauthenticatedError,
)
from edgeback_core.settings import process_environ

EXIT_OK, EXIT_FAILED, EXIT_INPUT, EXIT_INTEGRITY, EXIT_AUTH = 0, 1, 2, 3, 4
EXIT_INTERRUPTED = 130

DESCRIPTION = """\
edgeback backs up and restores the virtual machines of an edge cloud whose disks are
Ceph RBD images. Most commands talk to the edgeback API (sign in first with `edgeback
login`); `disk`, `pool create` and `key` work on their own, for disaster recovery."""

EPILOG = """\
getting started:
  edgeback login --api http://127.0.0.1:8440 --user admin
  edgeback host list
  edgeback host activate bk-01
  edgeback platform register --name edge-1 --address 10.0.0.5 --access-key AK1 \\
      --secret-key-file sk.txt --host bk-01
  edgeback storage add PLATFORM_ID --name ceph --host bk-01 --pool rbd
  edgeback pool register --name dedup --node-url http://node:8710 --host bk-01
  edgeback browse PLATFORM_ID --keyword web
  edgeback job create --name nightly --platform PLATFORM_ID --pool-id POOL_ID
  edgeback job start JOB_ID && edgeback run list --job JOB_ID
  edgeback run watch RUN_ID
  edgeback restore points --vm web
  edgeback restore create --point BACKUP_SET_ID --host bk-01 --watch   # asks for the code

without the services:
  edgeback pool create /srv/backup/dd && edgeback key create ~/pool.secret
  edgeback disk backup --image rbd/vm-1-disk-0 --to /srv/backup/dd --secret-key-file ~/pool.secret

every command takes --help (with an example); API commands take --output json.

exit codes:
  0  done
  1  failed: a service, node or cluster is unreachable or failed (a retry may help);
     `run watch`, `restore watch`: it ended other than succeeded
  2  bad input or refused (not found, conflict, invalid): nothing changed
  3  integrity problem: corrupt or missing chunks, untrustworthy diff
  4  not signed in, session expired, or not allowed (role or group)
  130 interrupted

environment: EDGEBACK_API_URL, EDGEBACK_API_TOKEN (an API token; beats the login),
EDGEBACK_API_CA_FILE; EDGEBACK_TOKEN is the storage node's token of `edgeback disk`.
See docs/cli.md."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="edgeback", description=DESCRIPTION, epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    groups = parser.add_subparsers(dest="group", required=True, metavar="COMMAND")
    apicli.add_session(groups)
    resource_cli.add(groups)
    job_cli.add(groups)
    restore_cli.add(groups)
    account_cli.add(groups)
    disk_cli.add(groups)
    serve_all.add(groups)
    apicli.add_group_examples(parser)
    return parser


def exit_code(error: EdgebackError) -> int:
    """The exit code of a command that failed with ``error``."""
    if isinstance(error, IntegrityError):
        return EXIT_INTEGRITY
    if isinstance(error, UnauthenticatedError | PermissionDeniedError):
        return EXIT_AUTH
    if isinstance(error, ConfigError | PermanentError):
        return EXIT_INPUT
    return EXIT_FAILED


def _note(message: str) -> None:
    print(f"edgeback: {message}", file=sys.stderr, flush=True)


def _configure_logging(verbose: bool) -> None:
    from edgeback_core import logging as edgeback_logging  # noqa: PLC0415 - disk commands

    edgeback_logging.configure("INFO" if verbose else "WARNING", json=False, stream="stderr")


def _run(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    if hasattr(args, "needs_token"):  # made by apicli.verb: every API command, no other
        return apicli.run_api(args, environ)
    if args.group == "serve":
        return serve_all.run(args, environ)
    _configure_logging(getattr(args, "verbose", False))
    return asyncio.run(disk_cli.dispatch(args, environ))


def run(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return _run(args, process_environ() if environ is None else environ)
    except EdgebackError as exc:
        what = {EXIT_INTEGRITY: "integrity error", EXIT_FAILED: "failed"}.get(
            code := exit_code(exc), "error"
        )
        _note(f"{what} [{exc.code}]: {exc.message}")
        return code
    except KeyboardInterrupt:
        _note("interrupted (a backup resumes from its checkpoint when re-run)")
        return EXIT_INTERRUPTED


def main() -> None:
    sys.exit(run())
