"""API commands for storage pools registered in the catalog: ``edgeback pool register |
list | show | edit | delete | refresh``, beside ``pool create`` (a local pool directory,
``disk_cli``) in the same group.

Tables show capacity, used and free space in binary units; ``--output json`` gives the
API's figures in bytes."""

from __future__ import annotations

import argparse
from typing import Any

from edgeback_cli.apicli import Ctx, Groups, sends, verb
from edgeback_cli.display import human_bytes
from edgeback_cli.output import Columns

POOL_COLUMNS: Columns = (
    ("ID", "id"),
    ("NAME", "name"),
    ("NODE", "node_url"),
    ("HOST", "host_id"),
    ("KIND", "kind"),
    ("ENCRYPTED", "encrypted"),
    ("CAPACITY", "shown.capacity"),
    ("USED", "shown.used"),
    ("FREE", "shown.free"),
    ("CHECKED", "status.checked_at"),
    ("ERROR", "last_error.code"),
)
POOL_FIELDS: Columns = (
    *POOL_COLUMNS[:6],
    ("DESCRIPTION", "description"),
    *POOL_COLUMNS[6:9],
    ("CHUNKS", "status.chunks"),
    ("MANIFESTS", "status.manifests"),
    ("DEDUP RATIO", "status.dedup_ratio"),
    *POOL_COLUMNS[9:],
    ("ERROR MESSAGE", "last_error.message"),
    ("CREATED", "created_at"),
    ("CREATED BY", "created_by"),
)
ONE = "POOL_ID"


def shown(pool: dict[str, Any]) -> dict[str, Any]:
    """``pool`` with its space in binary units under ``shown`` (for tables)."""
    status = pool.get("status") or {}
    sizes = {
        label: human_bytes(status[field]) if isinstance(status.get(field), int) else None
        for label, field in (
            ("capacity", "capacity_bytes"), ("used", "used_bytes"), ("free", "free_bytes")
        )
    }  # fmt: skip
    return {**pool, "shown": sizes}


def add(pools: Groups) -> None:
    """The API verbs of the ``pool`` group."""
    reg = verb(
        pools,
        "register",
        "register a storage node's pool, checked from its backup host (admin)",
        "edgeback pool register --name dd --node-url https://node-1:8710 --host bk-01",
        _register,
    )
    reg.add_argument("--name", required=True, help="the pool's name on the storage node")
    reg.add_argument("--node-url", required=True, help="the storage node, http(s)://host:port")
    _host(reg, required=True)
    reg.add_argument("--description", help="free text shown with the pool")
    ls = verb(
        pools,
        "list",
        "registered pools of the backup hosts you may use, with capacity and free space",
        "edgeback pool list --host bk-01",
        _list,
    )
    ls.add_argument("--host", dest="host_id", metavar="HOST_ID", help="only this backup host's")
    ls.add_argument("--node-url", help="only the pools of this storage node")
    ls.add_argument("--name", help="part of the pool's name, any case")
    ls.add_argument("--limit", type=int, default=200, help="at most this many (default 200)")
    show = verb(
        pools, "show", "one registered pool and its last status", "edgeback pool show 7c1d…", _show
    )
    show.add_argument("pool", metavar=ONE)
    edit = verb(
        pools,
        "edit",
        "change a pool's description or backup host; the new host checks it first (admin)",
        "edgeback pool edit 7c1d… --host bk-02 --description 'rack 2'",
        _edit,
    )
    edit.add_argument("pool", metavar=ONE)
    _host(edit, required=False)
    edit.add_argument("--description", help="free text shown with the pool")
    delete = verb(
        pools,
        "delete",
        "forget a registered pool; its data stays on the node (refused while jobs use it; admin)",
        "edgeback pool delete 7c1d…",
        sends("DELETE", "/pools/{pool}", done="pool {pool} forgotten (its data stays on the node)"),
    )
    delete.add_argument("pool", metavar=ONE)
    refresh = verb(
        pools,
        "refresh",
        "ask the pool's backup host for its status now (capacity, free space, counts)",
        "edgeback pool refresh 7c1d…",
        _refresh,
    )
    refresh.add_argument("pool", metavar=ONE)


def _host(parser: argparse.ArgumentParser, *, required: bool) -> None:
    parser.add_argument(
        "--host",
        dest="host_id",
        required=required,
        metavar="HOST_ID",
        help="the backup host whose workers hold the pool's token and secret and reach the node",
    )


def _one(ctx: Ctx, pool: Any) -> int:
    ctx.show(pool if ctx.as_json else shown(pool), POOL_FIELDS, one=True)
    return 0


def _register(ctx: Ctx, args: argparse.Namespace) -> int:
    body = {"name": args.name, "node_url": args.node_url, "host_id": args.host_id}
    if args.description is not None:
        body["description"] = args.description
    return _one(ctx, ctx.client.request("POST", "/pools", body=body))


def _list(ctx: Ctx, args: argparse.Namespace) -> int:
    from edgeback_cli.apiclient import fetch_all  # noqa: PLC0415 - API commands only

    query = {"host_id": args.host_id, "node_url": args.node_url, "name": args.name}
    found = fetch_all(ctx.client, "/pools", query, args.limit)
    ctx.show(found if ctx.as_json else [shown(p) for p in found], POOL_COLUMNS)
    return 0


def _show(ctx: Ctx, args: argparse.Namespace) -> int:
    return _one(ctx, ctx.client.request("GET", f"/pools/{args.pool}"))


def _edit(ctx: Ctx, args: argparse.Namespace) -> int:
    body = {n: getattr(args, n) for n in ("host_id", "description") if getattr(args, n) is not None}
    return _one(ctx, ctx.client.request("PATCH", f"/pools/{args.pool}", body=body))


def _refresh(ctx: Ctx, args: argparse.Namespace) -> int:
    return _one(ctx, ctx.client.request("POST", f"/pools/{args.pool}/refresh"))
