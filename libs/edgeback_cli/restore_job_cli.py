"""API commands for restore jobs (``edgeback restore job ...``, issue 11): a named, saved
restore definition. ``create`` and ``start`` make a restore and ask for the
verification code it shows (S6), as ``edgeback restore create`` does."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from edgeback_cli.apicli import Ctx, Groups, group, listing, sends, verb
from edgeback_cli.job_cli import read_document
from edgeback_cli.output import Columns
from edgeback_cli.restore_cli import (
    RESTORE_COLUMNS,
    add_confirm_flags,
    add_spec_flags,
    confirm,
    restore_spec,
)
from edgeback_core.errors import InvalidInputError

JOB_COLUMNS: Columns = (
    ("ID", "id"),
    ("NAME", "name"),
    ("ENABLED", "enabled"),
    ("REVISION", "revision"),
    ("HOST", "spec.options.host_id"),
    ("SCHEDULE", "spec.schedule.kind"),
    ("CREATED BY", "created_by"),
    ("UPDATED", "updated_at"),
)
ONE = "/restore-jobs/{job}"


def add(restore_verbs: Groups) -> None:
    verbs = group(restore_verbs, "job", "restore jobs: saved restore definitions")
    _save(verbs)
    _read(verbs)
    _act(verbs)


def _job_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("job", metavar="JOB_ID")


def _save(verbs: Groups) -> None:
    create = verb(
        verbs,
        "create",
        "save a restore job and make its first restore: type the code it shows to start it",
        "edgeback restore job create --name web-back --point 5d9a… --host bk-01 --schedule manual",
        _create,
    )
    add_spec_flags(create)
    add_confirm_flags(create)
    edit = verb(
        verbs,
        "edit",
        "change a restore job's spec (flags or --file); its waiting restores are cancelled",
        "edgeback restore job edit 7b2c… --point 8e4f… --start-vm",
        _edit,
    )
    _job_arg(edit)
    add_spec_flags(edit)
    clone = verb(
        verbs,
        "clone",
        "copy a restore job under a new name (no restore made)",
        "edgeback restore job clone 7b2c… --name web-back-2",
        sends("POST", f"{ONE}/clone", JOB_COLUMNS, body=lambda a: {"name": a.name}),
    )
    _job_arg(clone)
    clone.add_argument("--name", required=True, help="the copy's name")
    delete = verb(
        verbs,
        "delete",
        "delete a restore job (refused while a restore of it runs)",
        "edgeback restore job delete 7b2c…",
        _delete,
    )
    _job_arg(delete)


def _read(verbs: Groups) -> None:
    ls = verb(
        verbs,
        "list",
        "restore jobs you may see, by name",
        "edgeback restore job list --name web --enabled",
        listing("/restore-jobs", JOB_COLUMNS, _query),
    )
    ls.add_argument("--host", metavar="HOST_ID", help="only jobs restoring through this host")
    ls.add_argument("--name", metavar="TEXT", help="part of the name, any case")
    on = ls.add_mutually_exclusive_group()
    on.add_argument("--enabled", action="store_true", default=None, help="only enabled ones")
    on.add_argument("--disabled", action="store_true", help="only disabled ones")
    ls.add_argument("--limit", type=int, default=50, help="at most this many (default 50)")
    show = verb(
        verbs,
        "show",
        "a restore job and its most recent restores",
        "edgeback restore job show 7b2c…",
        _show,
    )
    _job_arg(show)


def _act(verbs: Groups) -> None:
    for name, text in (
        ("enable", "enable a restore job"),
        ("disable", "disable a restore job: it makes no restore, its scheduled ones wait"),
    ):
        flag = verb(
            verbs,
            name,
            text,
            f"edgeback restore job {name} 7b2c…",
            sends("POST", f"{ONE}/{name}", JOB_COLUMNS),
        )
        _job_arg(flag)
    start = verb(
        verbs,
        "start",
        "make a new restore of the job, then type the code it shows to start it",
        "edgeback restore job start 7b2c… --watch",
        _start,
    )
    _job_arg(start)
    add_confirm_flags(start)
    stop = verb(
        verbs,
        "stop",
        "stop the job's queued or running restores",
        "edgeback restore job stop 7b2c…",
        _stop,
    )
    _job_arg(stop)


def _query(args: argparse.Namespace) -> dict[str, Any]:
    enabled = False if args.disabled else args.enabled
    return {"host_id": args.host, "name": args.name, "enabled": enabled}


def _spec_from(args: argparse.Namespace, spec: dict[str, Any]) -> dict[str, Any]:
    if args.file:
        doc = read_document(args.file, "restore spec")
        spec = doc.get("spec", doc)
    return restore_spec(spec, args)


def _create(ctx: Ctx, args: argparse.Namespace) -> int:
    spec = _spec_from(args, {})
    if not spec.get("name"):
        raise InvalidInputError("a restore job needs a name: --name (or name in --file)")
    made = ctx.client.request("POST", "/restore-jobs", body={"spec": spec})
    print(f"restore job {made['job']['id']} ({made['job']['name']}) saved", file=sys.stderr)
    return confirm(ctx, made, args)


def _start(ctx: Ctx, args: argparse.Namespace) -> int:
    made = ctx.client.request("POST", f"/restore-jobs/{args.job}/start")
    _cancelled(made.get("cancelled", []), "superseded")
    return confirm(ctx, made, args)


def _edit(ctx: Ctx, args: argparse.Namespace) -> int:
    current = ctx.client.request("GET", f"/restore-jobs/{args.job}")["job"]
    spec = _spec_from(args, current["spec"])
    body = {"revision": current["revision"], "spec": spec}
    changed = ctx.client.request("PUT", f"/restore-jobs/{args.job}", body=body)
    _cancelled(changed["cancelled"], "cancelled (bound to the old spec)")
    ctx.show(changed if ctx.as_json else changed["job"], JOB_COLUMNS, one=True)
    return 0


def _delete(ctx: Ctx, args: argparse.Namespace) -> int:
    deleted = ctx.client.request("DELETE", f"/restore-jobs/{args.job}")
    _cancelled(deleted["cancelled"], "cancelled")
    if ctx.as_json:
        ctx.show(deleted)
    else:
        print(f"restore job {args.job} deleted", file=sys.stderr)
    return 0


def _stop(ctx: Ctx, args: argparse.Namespace) -> int:
    stopped = ctx.client.request("POST", f"/restore-jobs/{args.job}/stop")
    if ctx.as_json:
        ctx.show(stopped)
    elif stopped["restores"]:
        ctx.show(stopped["restores"], RESTORE_COLUMNS)
    else:
        print(f"restore job {args.job}: no restore queued or running", file=sys.stderr)
    return 0


def _show(ctx: Ctx, args: argparse.Namespace) -> int:
    detail = ctx.client.request("GET", f"/restore-jobs/{args.job}")
    if ctx.as_json:
        ctx.show(detail)
        return 0
    ctx.show(detail["job"], JOB_COLUMNS, one=True)
    if detail["restores"]:
        print()
        ctx.show(detail["restores"], RESTORE_COLUMNS)
    return 0


def _cancelled(ids: list[str], how: str) -> None:
    for restore_id in ids:
        print(f"restore {restore_id} {how}", file=sys.stderr)
