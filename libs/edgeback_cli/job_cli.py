"""API commands for backup jobs and their runs: define, change, start, follow."""

from __future__ import annotations

import argparse
import sys
import uuid
from pathlib import Path
from typing import Any, get_args

import msgspec

from edgeback_cli.apicli import Ctx, Groups, group, listing, sends, verb
from edgeback_cli.output import Columns
from edgeback_core.errors import InvalidInputError
from edgeback_core.messages.catalog import RunStateName
from edgeback_core.messages.jobs import JobType

EXIT_RUN_NOT_SUCCEEDED = 1

JOB_COLUMNS: Columns = (
    ("ID", "id"),
    ("NAME", "spec.name"),
    ("TYPE", "spec.type"),
    ("ENABLED", "enabled"),
    ("HOST", "spec.target.host_id"),
    ("POOL", "spec.target.pool.name"),
    ("REVISION", "revision"),
    ("NEXT DUE", "next_due"),
)
RUN_COLUMNS: Columns = (
    ("ID", "id"),
    ("JOB", "job_id"),
    ("HOST", "host_id"),
    ("STATE", "state"),
    ("CREATED", "created_at"),
    ("UPDATED", "updated_at"),
)
VM_TASK_COLUMNS: Columns = (
    ("VM", "vm.vm_id"),
    ("NAME", "vm.name"),
    ("STATE", "state"),
    ("ATTEMPT", "attempt"),
    ("CODE", "code"),
    ("BACKUP SET", "backup_set_id"),
)
STATS_COLUMNS: Columns = tuple(
    (k.upper().replace("_", " "), f"stats.{k}")
    for k in (
        "bytes_read",
        "bytes_new",
        "bytes_deduplicated",
        "bytes_sparse",
        "bytes_unchanged",
        "duration_s",
    )
)
SET_COLUMNS: Columns = (
    ("ID", "id"),
    ("VM", "vm.vm_id"),
    ("NAME", "vm.name"),
    ("TYPE", "backup_type"),
    ("COMPLETE", "complete"),
    ("DISKS", "disk_count"),
    ("TAKEN", "taken_at"),
    ("BASE", "base_backup_set_id"),
)
DISK_VERSION_COLUMNS: Columns = (
    ("DISK", "disk_id"),
    ("VERSION", "manifest_name"),
    ("SIZE", "size_bytes"),
    ("READ", "stats.bytes_read"),
    ("NEW", "stats.bytes_new"),
    ("SNAPSHOT", "snapshot_name"),
    ("KEPT", "snapshot_kept"),
)
STOP_COLUMNS: Columns = (("ID", "run.id"), ("STATE", "run.state"), ("APPLIED", "applied"))
EVENT_COLUMNS: Columns = (
    ("AT", "event.at"),
    ("EVENT", "event.type"),
    ("VM", "event.vm.name"),
    ("CODE", "event.code"),
    ("OUTCOME", "event.outcome"),
)
BACKUP_TYPES = get_args(JobType)
RUN_STATES = get_args(RunStateName)


def add(groups: Groups) -> None:
    _jobs(group(groups, "job", "backup jobs: which VMs, to which pool, how"))
    _runs(group(groups, "run", "runs of backup jobs"))
    _sets(group(groups, "backup-set", "backup sets: one VM's disks from one run (restore points)"))


def _sets(verbs: Groups) -> None:
    ls = verb(
        verbs,
        "list",
        "backup sets of a job, a VM or a run, newest first",
        "edgeback backup-set list --job 6b0d… --complete",
        listing("/backup-sets", SET_COLUMNS, _set_query),
    )
    ls.add_argument("--job", metavar="JOB_ID", help="the backup sets this job made")
    ls.add_argument("--vm", metavar="VM_ID", help="the backup sets of this VM")
    ls.add_argument("--run", metavar="RUN_ID", help="the backup sets this run made")
    ls.add_argument("--complete", action="store_true", help="restore points only")
    ls.add_argument("--limit", type=int, default=50, help="at most this many (default 50)")
    show = verb(
        verbs, "show", "a backup set with its disk versions", "edgeback backup-set show 9e1f…",
        _set_show,
    )  # fmt: skip
    show.add_argument("backup_set", metavar="BACKUP_SET_ID")


def _set_query(args: argparse.Namespace) -> dict[str, Any]:
    if not (args.job or args.vm or args.run):
        raise InvalidInputError("give --job, --vm or --run")
    return {"job_id": args.job, "vm_id": args.vm, "run_id": args.run,
            "complete": True if args.complete else None}  # fmt: skip


def _set_show(ctx: Ctx, args: argparse.Namespace) -> int:
    found = ctx.client.request("GET", f"/backup-sets/{args.backup_set}")
    if ctx.as_json:
        ctx.show(found)
        return 0
    ctx.show(found["backup_set"], SET_COLUMNS, one=True)
    print()
    ctx.show(found["disks"], DISK_VERSION_COLUMNS)
    return 0


def _job_fields(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--file",
        type=Path,
        help="the job as JSON or YAML: a job spec (docs/cli.md), or "
        "{spec, enabled, groups}; flags given beside it override it",
    )
    parser.add_argument("--name", help="the job's name (unique)")
    parser.add_argument("--description", help="free text shown with the job")
    parser.add_argument("--type", choices=BACKUP_TYPES, help="backup type (default full)")
    parser.add_argument("--platform", metavar="PLATFORM_ID", help="back up VMs of this platform")
    parser.add_argument("--physical-host", help="only VMs of this physical host")
    parser.add_argument(
        "--vm",
        action="append",
        dest="vms",
        metavar="VM_ID",
        help="one VM (repeat; none: every VM of the platform or host)",
    )
    parser.add_argument(
        "--exclude",
        action="append",
        metavar="GLOB",
        help="leave out VMs whose name matches (repeat)",
    )
    parser.add_argument("--host", metavar="HOST_ID", help="the backup host that runs the job")
    parser.add_argument("--node-url", help="storage node of the target pool (http(s)://host:port)")
    parser.add_argument("--pool", help="the target pool on that node")
    parser.add_argument(
        "--pool-id",
        metavar="POOL_ID",
        help="a registered pool (edgeback pool list) instead of --node-url and --pool; "
        "its backup host unless --host",
    )


def _jobs(verbs: Groups) -> None:
    one = "JOB_ID"
    ls = verb(
        verbs,
        "list",
        "backup jobs you may see, by name",
        "edgeback job list -o json",
        listing("/jobs", JOB_COLUMNS, _job_query),
    )
    ls.add_argument("--host", metavar="HOST_ID", help="only jobs run by this backup host")
    ls.add_argument("--name", help="part of the name, any case")
    ls.add_argument("--platform", metavar="PLATFORM_ID", help="only jobs backing up its VMs")
    on_off = ls.add_mutually_exclusive_group()
    on_off.add_argument("--enabled", action="store_true", help="enabled jobs only")
    on_off.add_argument("--disabled", action="store_true", help="disabled jobs only")
    ls.add_argument("--limit", type=int, default=200, help="at most this many (default 200)")
    get_job = sends("GET", "/jobs/{job}", JOB_COLUMNS)
    show = verb(verbs, "show", "one job", "edgeback job show 6b0d…", get_job)
    show.add_argument("job", metavar=one)
    create = verb(
        verbs,
        "create",
        "create a backup job from a file or from flags",
        "edgeback job create --name nightly --platform 3f2a… --host bk-01 "
        "--node-url http://node:8710 --pool dedup",
        _job_create,
    )
    _job_fields(create)
    create.add_argument("--disabled", action="store_true", help="create it disabled")
    edit = verb(
        verbs,
        "edit",
        "change a job: flags change those fields, --file replaces it",
        "edgeback job edit 6b0d… --type incremental",
        _job_edit,
    )
    edit.add_argument("job", metavar=one)
    _job_fields(edit)
    clone = verb(
        verbs,
        "clone",
        "copy a job under a new name (the copy is disabled)",
        "edgeback job clone 6b0d… nightly-copy",
        sends("POST", "/jobs/{job}/clone", JOB_COLUMNS, body=lambda a: {"name": a.name}),
    )
    clone.add_argument("job", metavar=one)
    clone.add_argument("name", metavar="NEW_NAME")
    for name, text, handler in (
        ("delete", "delete a job (refused while it runs)",
         sends("DELETE", "/jobs/{job}", done="job {job} deleted")),
        ("enable", "let the job run (and its schedule fire)",
         sends("PUT", "/jobs/{job}/enabled", JOB_COLUMNS, body=lambda a: {"enabled": True})),
        ("disable", "stop the job's schedule; started runs go on",
         sends("PUT", "/jobs/{job}/enabled", JOB_COLUMNS, body=lambda a: {"enabled": False})),
    ):  # fmt: skip
        p = verb(verbs, name, text, f"edgeback job {name} 6b0d…", handler)
        p.add_argument("job", metavar=one)
    start = verb(
        verbs,
        "start",
        "start a run of the job now",
        "edgeback job start 6b0d… --type full",
        _job_start,
    )
    start.add_argument("job", metavar=one)
    start.add_argument("--type", choices=BACKUP_TYPES, help="this run only (default: the job's)")
    start.add_argument(
        "--idempotency-key",
        metavar="KEY",
        help="repeating a start with the same key starts one run (default: a new key, printed)",
    )
    stop = verb(
        verbs,
        "stop",
        "stop the job's pending, queued or running runs (as run stop does for one)",
        "edgeback job stop 6b0d… --reason 'wrong pool'",
        _job_stop,
    )
    stop.add_argument("job", metavar=one)
    stop.add_argument("--reason", default="", help="kept in each run and the audit log")


def read_document(path: Path, what: str) -> dict[str, Any]:
    """A mapping from a JSON (``.json``) or YAML file; refused with a clear reason."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise InvalidInputError(f"cannot read {path}: {exc.strerror}") from exc
    try:
        doc = msgspec.json.decode(raw) if path.suffix == ".json" else msgspec.yaml.decode(raw)
    except msgspec.DecodeError as exc:
        raise InvalidInputError(f"{path} is not valid JSON or YAML: {exc}") from exc
    if not isinstance(doc, dict):
        raise InvalidInputError(f"{path} holds no {what} (a mapping)")
    return doc


def _read_file(path: Path) -> dict[str, Any]:
    doc = read_document(path, "job")
    return doc if "spec" in doc else {"spec": doc}


def apply_flags(spec: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    """``spec`` with the fields the flags give replaced. Pure."""
    spec = {**spec}
    for name in ("name", "description", "type"):
        if getattr(args, name) is not None:
            spec[name] = getattr(args, name)
    content = {**spec.get("content", {})}
    if args.platform is not None:
        picked = {"platform_id": args.platform, "physical_host_id": args.physical_host}
        content["vms"] = [{**picked, "vm_id": vm} for vm in args.vms or [None]]
    if args.exclude is not None:
        content["exclude_names"] = args.exclude
    spec["content"] = content
    target = {**spec.get("target", {})}
    pool = {**target.get("pool", {})}
    if args.host is not None:
        target["host_id"] = args.host
    if args.node_url is not None:
        pool["node_url"] = args.node_url
    if args.pool is not None:
        pool["name"] = args.pool
    spec["target"] = {**target, "pool": pool}
    return spec


def _with_pool(ctx: Ctx, args: argparse.Namespace) -> argparse.Namespace:
    """``args`` with ``--pool-id`` resolved: the registered pool's node URL and name, and
    its backup host unless ``--host`` names one."""
    if args.pool_id is None:
        return args
    if args.node_url is not None or args.pool is not None:
        raise InvalidInputError(
            "--pool-id names the node and the pool: leave out --node-url, --pool"
        )
    pool = ctx.client.request("GET", f"/pools/{args.pool_id}")
    found = {
        "node_url": pool["node_url"],
        "pool": pool["name"],
        "host": args.host or pool["host_id"],
    }
    return argparse.Namespace(**{**vars(args), **found})


def _job_create(ctx: Ctx, args: argparse.Namespace) -> int:
    args = _with_pool(ctx, args)
    body = _read_file(args.file) if args.file else {"spec": {}}
    body["spec"] = apply_flags(body["spec"], args)
    if args.disabled:
        body["enabled"] = False
    ctx.show(ctx.client.request("POST", "/jobs", body=body), JOB_COLUMNS, one=True)
    return 0


def _job_edit(ctx: Ctx, args: argparse.Namespace) -> int:
    args = _with_pool(ctx, args)
    current = ctx.client.request("GET", f"/jobs/{args.job}")
    spec = _read_file(args.file)["spec"] if args.file else current["spec"]
    body = {"revision": current["revision"], "spec": apply_flags(spec, args)}
    ctx.show(ctx.client.request("PUT", f"/jobs/{args.job}", body=body), JOB_COLUMNS, one=True)
    return 0


def _job_stop(ctx: Ctx, args: argparse.Namespace) -> int:
    body = {"reason": args.reason}
    stopped = ctx.client.request("POST", f"/jobs/{args.job}/stop", body=body)
    if ctx.as_json:
        ctx.show(stopped)
    elif stopped["runs"]:
        ctx.show(stopped["runs"], RUN_COLUMNS)
    else:
        print(f"job {args.job}: no run pending, queued or running", file=sys.stderr)
    return 0


def _job_start(ctx: Ctx, args: argparse.Namespace) -> int:
    key = args.idempotency_key or uuid.uuid4().hex
    answer = ctx.client.request(
        "POST",
        f"/jobs/{args.job}/runs",
        body={"backup_type": args.type},
        headers={"Idempotency-Key": key},
    )
    shown = (("JOB", "job_id"), ("RUN", "run_id"), ("IDEMPOTENCY KEY", "idempotency_key"))
    ctx.show(answer, shown, one=True)
    return 0


def _job_query(args: argparse.Namespace) -> dict[str, Any]:
    enabled = True if args.enabled else False if args.disabled else None
    return {
        "host_id": args.host,
        "name": args.name,
        "platform_id": args.platform,
        "enabled": enabled,
    }


def _runs(verbs: Groups) -> None:
    ls = verb(
        verbs,
        "list",
        "runs of every job you may see (or of one), newest first",
        "edgeback run list --state failed --after 2024-05-01T00:00:00Z",
        listing("/runs", RUN_COLUMNS, _run_query),
    )
    ls.add_argument("--job", metavar="JOB_ID", help="only this job's runs")
    ls.add_argument("--host", metavar="HOST_ID", help="only runs by this backup host")
    ls.add_argument("--state", choices=RUN_STATES, help="only runs in this state")
    ls.add_argument("--type", choices=BACKUP_TYPES, help="only runs of this backup type")
    ls.add_argument("--after", metavar="TIME", help="created at or after (ISO 8601, with zone)")
    ls.add_argument("--before", metavar="TIME", help="created before (ISO 8601, with zone)")
    ls.add_argument("--limit", type=int, default=50, help="at most this many (default 50)")
    show = verb(
        verbs, "show", "a run with its VMs and totals", "edgeback run show 71c4…", _run_show
    )
    show.add_argument("run", metavar="RUN_ID")
    watch = verb(
        verbs,
        "watch",
        "follow a run live (progress bar with rate and ETA) until it ends",
        "edgeback run watch 71c4…",
        _run_watch,
    )
    watch.add_argument("run", metavar="RUN_ID")
    add_events(verbs, "run", "71c4…")
    stop = verb(
        verbs,
        "stop",
        "stop a run: a pending one at once, else its workers stop what they do",
        "edgeback run stop 71c4… --reason 'wrong pool'",
        sends("POST", "/runs/{run}/stop", STOP_COLUMNS, body=lambda a: {"reason": a.reason}),
    )
    stop.add_argument("run", metavar="RUN_ID")
    stop.add_argument("--reason", default="", help="kept in the run and the audit log")


def _run_query(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "job_id": args.job,
        "host_id": args.host,
        "state": args.state,
        "backup_type": args.type,
        "created_after": args.after,
        "created_before": args.before,
    }


def add_events(verbs: Groups, noun: str, example_id: str) -> None:
    """``edgeback <noun> events ID``: the event log of a run or a restore, oldest first."""
    events = verb(
        verbs,
        "events",
        f"a {noun}'s events, oldest first",
        f"edgeback {noun} events {example_id} -o json",
        listing(
            f"/{noun}s/{{{noun}}}/events",
            EVENT_COLUMNS,
            lambda a: {"type": a.type, "since": a.since},
        ),
    )
    events.add_argument(noun, metavar=f"{noun.upper()}_ID")
    events.add_argument("--type", metavar="EVENT", help="only events of this type")
    events.add_argument("--since", metavar="TIME", help="events at or after (ISO 8601, with zone)")
    events.add_argument("--limit", type=int, default=500, help="at most this many (default 500)")


def _show_detail(ctx: Ctx, detail: dict[str, Any]) -> None:
    if ctx.as_json:
        ctx.show(detail)
        return
    ctx.show(detail["run"], RUN_COLUMNS, one=True)
    ctx.show(detail, STATS_COLUMNS, one=True)
    print()
    ctx.show(detail["vms"], VM_TASK_COLUMNS)


def _run_show(ctx: Ctx, args: argparse.Namespace) -> int:
    _show_detail(ctx, ctx.client.request("GET", f"/runs/{args.run}"))
    return 0


def _run_watch(ctx: Ctx, args: argparse.Namespace) -> int:
    from edgeback_cli.runwatch import Tracker, watch  # noqa: PLC0415 - API commands only

    state = watch(ctx.client, f"/runs/{args.run}/progress", Tracker(), f"run {args.run[:12]}")
    _show_detail(ctx, ctx.client.request("GET", f"/runs/{args.run}"))
    return 0 if state == "succeeded" else EXIT_RUN_NOT_SUCCEEDED
