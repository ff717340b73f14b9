"""API commands for restores (S1-S7): browse restore points, create a restore, type the
verification code it shows to start it (S6), follow it live, show each VM's outcome,
stop it."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, get_args

from edgeback_cli.apicli import Ctx, Groups, group, listing, sends, verb
from edgeback_cli.job_cli import add_events, read_document
from edgeback_cli.output import Columns
from edgeback_core.errors import InvalidInputError
from edgeback_core.messages.restores import RestoreStateName

EXIT_RESTORE_NOT_SUCCEEDED = 1
RESTORE_STATES = get_args(RestoreStateName)
POINT_COLUMNS: Columns = (
    ("BACKUP SET", "backup_set_id"),
    ("VM", "vm.name"),
    ("VM ID", "vm.vm_id"),
    ("TYPE", "backup_type"),
    ("POOL", "pool.name"),
    ("TAKEN", "taken_at"),
)
RESTORE_COLUMNS: Columns = (
    ("ID", "id"),
    ("NAME", "spec.name"),
    ("STATE", "state"),
    ("HOST", "spec.options.host_id"),
    ("CREATED BY", "created_by"),
    ("CREATED", "created_at"),
    ("CODE EXPIRES", "code_expires_at"),
    ("DUE", "due_at"),
    ("REASON", "reason"),
)
VM_COLUMNS: Columns = (
    ("BACKUP SET", "backup_set_id"),
    ("SOURCE VM", "source_vm.vm_id"),
    ("TARGET VM", "target_vm.vm_id"),
    ("STATE", "state"),
    ("CODE", "code"),
    ("MESSAGE", "message"),
    ("ROLLED BACK", "rolled_back"),
    ("STARTED VM", "vm_started"),
)
DISK_COLUMNS: Columns = (
    ("TARGET VM", "vm"),
    ("DISK", "disk_id"),
    ("FROM", "source_disk_id"),
    ("WRITTEN", "bytes_written"),
    ("ZEROED", "bytes_zeroed"),
    ("LEFT AS WAS", "bytes_left"),
    ("FETCHED", "bytes_fetched"),
    ("SECONDS", "duration_s"),
)


def add(groups: Groups) -> None:
    from edgeback_cli import restore_job_cli  # noqa: PLC0415 - it builds on this module

    verbs = group(groups, "restore", "restores: restore points back into VMs")
    _browse(verbs)
    _create(verbs)
    _follow(verbs)
    restore_job_cli.add(verbs)


def _browse(verbs: Groups) -> None:
    points = verb(
        verbs,
        "points",
        "restore points (complete backup sets) by VM, pool and time, newest first",
        "edgeback restore points --vm web --pool dedup --after 2026-12-01T00:00:00Z",
        listing("/restore-points", POINT_COLUMNS, _point_query),
    )
    points.add_argument("--vm", metavar="TEXT", help="part of the VM's name or id, any case")
    points.add_argument("--vm-id", help="exactly this VM")
    points.add_argument("--pool", metavar="NAME", help="only points in this pool")
    points.add_argument("--node-url", help="with --pool: that pool of this storage node")
    points.add_argument("--after", metavar="TIME", help="taken at or after (ISO 8601)")
    points.add_argument("--before", metavar="TIME", help="taken before (ISO 8601)")
    points.add_argument("--limit", type=int, default=50, help="at most this many (default 50)")
    ls = verb(
        verbs,
        "list",
        "restores you may see, newest first",
        "edgeback restore list --state running",
        listing("/restores", RESTORE_COLUMNS, _restore_query),
    )
    ls.add_argument("--state", choices=RESTORE_STATES, help="only restores in this state")
    ls.add_argument("--host", metavar="HOST_ID", help="only restores by this backup host")
    ls.add_argument("--point", metavar="BACKUP_SET_ID", help="only restores of this point")
    ls.add_argument("--after", metavar="TIME", help="created at or after (ISO 8601, with zone)")
    ls.add_argument("--before", metavar="TIME", help="created before (ISO 8601, with zone)")
    ls.add_argument("--limit", type=int, default=50, help="at most this many (default 50)")
    show = verb(
        verbs,
        "show",
        "a restore with each VM's outcome and per-disk figures",
        "edgeback restore show 9c1e…",
        _show,
    )
    show.add_argument("restore", metavar="RESTORE_ID")
    add_events(verbs, "restore", "9c1e…")


def _restore_query(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "state": args.state,
        "host_id": args.host,
        "backup_set_id": args.point,
        "created_after": args.after,
        "created_before": args.before,
    }


def _point_query(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "vm": args.vm,
        "vm_id": args.vm_id,
        "pool": args.pool,
        "node_url": args.node_url,
        "taken_after": args.after,
        "taken_before": args.before,
    }


def _create(verbs: Groups) -> None:
    create = verb(
        verbs,
        "create",
        "create a restore, then type the verification code it shows to start it",
        "edgeback restore create --point 5d9a… --host bk-01 --snapshot-before --watch",
        _restore_create,
    )
    add_spec_flags(create)
    add_confirm_flags(create)
    start = verb(
        verbs,
        "start",
        "start a created restore with its verification code (asked for when not given)",
        "edgeback restore start 9c1e… --code K7QM-2XPA",
        _restore_start,
    )
    start.add_argument("restore", metavar="RESTORE_ID")
    start.add_argument("--code", help="the verification code create showed")
    start.add_argument("--watch", action="store_true", help="follow it once started")
    run = verb(
        verbs,
        "run",
        "queue a verified restore of schedule manual now",
        "edgeback restore run 9c1e… --watch",
        _restore_run,
    )
    run.add_argument("restore", metavar="RESTORE_ID")
    run.add_argument("--watch", action="store_true", help="follow it once queued")


def add_spec_flags(parser: argparse.ArgumentParser) -> None:
    """The flags of a ``RestoreSpec`` (``restore create``, ``restore job create|edit``)."""
    parser.add_argument(
        "--file",
        type=Path,
        help="a restore spec as JSON or YAML (docs/restores.md); flags override",
    )
    parser.add_argument(
        "--point",
        action="append",
        dest="points",
        metavar="BACKUP_SET_ID",
        help="a restore point (repeat: one per VM)",
    )
    parser.add_argument("--host", metavar="HOST_ID", help="the backup host that restores")
    parser.add_argument("--name", help="a name to find it by")
    parser.add_argument(
        "--to-vm",
        metavar="PLATFORM_ID/VM_ID",
        help="new path: restore into this existing VM (default: the original path)",
    )
    parser.add_argument(
        "--map",
        action="append",
        metavar="SOURCE_DISK=TARGET_DISK",
        help="with --to-vm: which of its disks each source disk is written to (repeat)",
    )
    parser.add_argument(
        "--schedule",
        choices=("immediate", "manual"),
        help="immediate (default): queued once verified; manual: held until run by hand",
    )
    parser.add_argument(
        "--at", metavar="TIME", help="schedule once at this time (ISO 8601, whole seconds)"
    )
    for flag, field, text in _SWITCHES:
        parser.add_argument(flag, dest=field, action="store_true", default=None, help=text)
    parser.add_argument(
        "--rewrite-all", dest="changed_only", action="store_const", const=False, default=None,
        help="write every data chunk, even on a disk that still holds the backup's "
        "snapshot (by default only what changed since is written there)",
    )  # fmt: skip
    for flag, field, text in _NUMBERS:
        parser.add_argument(flag, dest=field, type=int, metavar="N", help=text)


def add_confirm_flags(parser: argparse.ArgumentParser) -> None:
    """What to do with the verification code a new restore answers."""
    parser.add_argument(
        "--no-start",
        action="store_true",
        help="only create it and show its code (start it with `edgeback restore start`)",
    )
    parser.add_argument("--watch", action="store_true", help="follow it once started")


_SWITCHES = (
    ("--snapshot-before", "snapshot_before_overwrite", "snapshot the target first (rollback)"),
    ("--keep-snapshot", "keep_snapshot_on_success", "keep that snapshot after a success"),
    ("--start-vm", "start_vm_after", "start the VM after a successful restore"),
    ("--instant", "instant", "usable at once, data copied in behind (docs/instant-restore.md)"),
)
_NUMBERS = (
    ("--parallel-vms", "parallel_vms", "VMs restored at once over the restore (default 2)"),
    ("--vms-per-host", "vms_per_physical_host", "VMs at once on one physical host (default 2)"),
    ("--disks-per-vm", "disks_per_vm", "disks of one VM written at once (default 2)"),
    ("--streams", "streams_per_disk", "parallel writes into one disk (default 4)"),
)


def restore_spec(spec: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    """``spec`` (a ``RestoreSpec`` as JSON) with what the flags give. Pure."""
    spec = {**spec}
    if args.points:
        spec["backup_set_ids"] = args.points
    if args.name is not None:
        spec["name"] = args.name
    schedule = _schedule(args)
    if schedule is not None:
        spec["schedule"] = schedule
    options = {**spec.get("options", {})}
    if args.host is not None:
        options["host_id"] = args.host
    for name in [n for _, n, _ in _SWITCHES] + [n for _, n, _ in _NUMBERS] + ["changed_only"]:
        if getattr(args, name) is not None:
            options[name] = getattr(args, name)
    spec["options"] = options
    if args.map and not args.to_vm:
        raise InvalidInputError("--map maps disks of a new path: give --to-vm too")
    if args.to_vm:
        platform, _, vm = args.to_vm.partition("/")
        if not platform or not vm:
            raise InvalidInputError(f"--to-vm is PLATFORM_ID/VM_ID, not {args.to_vm!r}")
        disks = [_disk_map(m) for m in args.map or []]
        spec["target"] = {"new_path": {"platform_id": platform, "vm_id": vm, "disks": disks}}
    return spec


def _schedule(args: argparse.Namespace) -> dict[str, str] | None:
    if args.schedule is not None and args.at is not None:
        raise InvalidInputError("--at schedules the restore once: leave --schedule out")
    if args.at is not None:
        return {"kind": "once", "at": args.at}
    return None if args.schedule is None else {"kind": args.schedule}


def _disk_map(text: str) -> dict[str, str]:
    source, _, target = text.partition("=")
    if not source or not target:
        raise InvalidInputError(f"--map is SOURCE_DISK=TARGET_DISK, not {text!r}")
    return {"source_disk_id": source, "target_disk_id": target}


def shown_code(code: str) -> str:
    """``K7QM2XPA`` as ``K7QM-2XPA``: easier to read back (dashes are ignored)."""
    return f"{code[:4]}-{code[4:]}" if len(code) == 8 else code


def _restore_create(ctx: Ctx, args: argparse.Namespace) -> int:
    doc = read_document(args.file, "restore spec") if args.file else {}
    spec = doc.get("spec", doc)
    created = ctx.client.request("POST", "/restores", body={"spec": restore_spec(spec, args)})
    return confirm(ctx, created, args)


def confirm(ctx: Ctx, created: dict[str, Any], args: argparse.Namespace) -> int:
    """Show a new restore's code, then (unless ``--no-start``) ask for it and start it."""
    restore, code = created["restore"], created["verification_code"]
    if args.no_start:
        if ctx.as_json:
            ctx.show(created)
        else:
            ctx.show(
                {**restore, "code": shown_code(code)},
                (*RESTORE_COLUMNS, ("CODE", "code")),
                one=True,
            )
        return 0
    print(
        f"restore {restore['id']} created; verification code: {shown_code(code)} "
        f"(valid until {restore.get('code_expires_at')})",
        file=sys.stderr,
    )
    return start_restore(ctx, restore["id"], None, watch=args.watch)


def _restore_start(ctx: Ctx, args: argparse.Namespace) -> int:
    return start_restore(ctx, args.restore, args.code, watch=args.watch)


def _restore_run(ctx: Ctx, args: argparse.Namespace) -> int:
    queued = ctx.client.request("POST", f"/restores/{args.restore}/run")
    if not args.watch:
        ctx.show(queued, RESTORE_COLUMNS, one=True)
        return 0
    return _watch(ctx, queued)


def start_restore(ctx: Ctx, restore_id: str, code: str | None, *, watch: bool) -> int:
    if code is None:
        # the question on stderr: stdout stays the answer (``-o json``)
        print("type the verification code to start the restore: ", end="", file=sys.stderr)
        sys.stderr.flush()
        code = sys.stdin.readline().strip()
        if not code:
            raise InvalidInputError(
                f"no verification code typed: restore {restore_id} was not started "
                "(`edgeback restore start ID --code CODE` before it expires)"
            )
    body = {"verification_code": code}
    started = ctx.client.request("POST", f"/restores/{restore_id}/start", body=body)
    if not watch:
        ctx.show(started, RESTORE_COLUMNS, one=True)
        return 0
    return _watch(ctx, started)


def _follow(verbs: Groups) -> None:
    watch = verb(
        verbs,
        "watch",
        "follow a restore live (progress bar with rate and ETA) until it ends",
        "edgeback restore watch 9c1e…",
        lambda ctx, a: _watch(ctx, ctx.client.request("GET", f"/restores/{a.restore}")),
    )
    watch.add_argument("restore", metavar="RESTORE_ID")
    stop = verb(
        verbs,
        "stop",
        "stop a restore: at once before a worker has it, else its workers stop",
        "edgeback restore stop 9c1e…",
        sends("POST", "/restores/{restore}/stop", RESTORE_COLUMNS),
    )
    stop.add_argument("restore", metavar="RESTORE_ID")


def _watch(ctx: Ctx, restore: dict[str, Any]) -> int:
    from edgeback_cli.runwatch import Tracker, watch  # noqa: PLC0415 - API commands only

    sizes = sum(d["size_bytes"] for p in restore.get("points", []) for d in p.get("disks", []))
    rid = restore["id"]
    state = watch(ctx.client, f"/restores/{rid}/progress", Tracker(sizes), f"restore {rid[:12]}")
    _show_restore(ctx, ctx.client.request("GET", f"/restores/{rid}"))
    return 0 if state == "succeeded" else EXIT_RESTORE_NOT_SUCCEEDED


def _show(ctx: Ctx, args: argparse.Namespace) -> int:
    _show_restore(ctx, ctx.client.request("GET", f"/restores/{args.restore}"))
    return 0


def _show_restore(ctx: Ctx, restore: dict[str, Any]) -> None:
    if ctx.as_json:
        ctx.show(restore)
        return
    ctx.show(restore, RESTORE_COLUMNS, one=True)
    vms = restore.get("vms") or []
    if vms:
        print()
        ctx.show(vms, VM_COLUMNS)
        disks = [{"vm": vm["target_vm"]["vm_id"], **d} for vm in vms for d in vm.get("stats", [])]
        if disks:
            print()
            ctx.show(disks, DISK_COLUMNS)
