"""API commands for what backups are made from: backup hosts, platforms, their Ceph
storages, and browsing a platform's physical hosts, VMs and disks."""

from __future__ import annotations

import argparse
import getpass
from pathlib import Path
from typing import Any

from edgeback_cli.apicli import Ctx, Groups, group, listing, sends, verb
from edgeback_cli.output import Columns
from edgeback_core.errors import InvalidInputError

HOST_COLUMNS: Columns = (
    ("ID", "id"),
    ("HOSTNAME", "hostname"),
    ("ACTIVE", "active"),
    ("ONLINE", "online"),
    ("GROUPS", "groups"),
    ("LAST SEEN", "last_seen"),
)
PLATFORM_COLUMNS: Columns = (
    ("ID", "id"),
    ("NAME", "name"),
    ("ADDRESS", "address"),
    ("PORT", "port"),
    ("SSL", "ssl"),
    ("HOST", "default_host_id"),
    ("TAGS", "tags"),
)
STORAGE_COLUMNS: Columns = (
    ("ID", "id"),
    ("NAME", "name"),
    ("PLATFORM", "platform_id"),
    ("HOST", "host_id"),
    ("POOL", "pool"),
    ("CLIENT", "client_id"),
    ("CONF", "conf_path"),
)
VM_COLUMNS: Columns = (
    ("PHYSICAL HOST", "host"),
    ("VM ID", "id"),
    ("NAME", "name"),
    ("STATE", "state"),
    ("ON CEPH", "on_ceph"),
    ("AGENT", "agent"),
    ("DISKS", "disks"),
)


def add(groups: Groups) -> None:
    _hosts(group(groups, "host", "backup hosts: the machines whose workers run backups"))
    _platforms(group(groups, "platform", "edge-cloud platforms backups are made from"))
    _storages(group(groups, "storage", "Ceph storages of a platform"))
    browse = verb(
        groups,
        "browse",
        "a platform's physical hosts, VMs and disks, live",
        "edgeback browse PLATFORM_ID --keyword web",
        _browse,
    )
    browse.add_argument("platform", metavar="PLATFORM_ID")
    browse.add_argument("--keyword", help="part of a VM's name or id, any case")
    browse.add_argument("--physical-host", help="only this physical host of the platform")


def _limit(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--limit", type=int, default=200, help="at most this many (default 200)")


def _hosts(verbs: Groups) -> None:
    ls = verb(
        verbs,
        "list",
        "backup hosts you may use",
        "edgeback host list --online",
        listing("/backup-hosts", HOST_COLUMNS, _host_query),
    )
    ls.add_argument("--active", action=argparse.BooleanOptionalAction, help="only (in)active")
    ls.add_argument("--online", action=argparse.BooleanOptionalAction, help="only on/offline")
    ls.add_argument("--group", help="only hosts authorized to this user group")
    _limit(ls)
    show = verb(
        verbs,
        "show",
        "one backup host",
        "edgeback host show bk-01",
        sends("GET", "/backup-hosts/{host}", HOST_COLUMNS),
    )
    show.add_argument("host", metavar="HOST_ID")
    act = verb(
        verbs,
        "activate",
        "activate registered backup hosts (admin)",
        "edgeback host activate bk-01 bk-02",
        _host_activate,
    )
    act.add_argument("hosts", metavar="HOST_ID", nargs="+")
    auth = verb(
        verbs,
        "authorize",
        "set the user groups that may use a backup host (admin)",
        "edgeback host authorize bk-01 --group site-a --group site-b",
        sends(
            "PUT", "/backup-hosts/{host}/groups", HOST_COLUMNS, body=lambda a: {"groups": a.groups}
        ),
    )
    auth.add_argument("host", metavar="HOST_ID")
    auth.add_argument(
        "--group",
        action="append",
        default=[],
        dest="groups",
        help="a user group (repeat; none: only admins)",
    )


def _host_activate(ctx: Ctx, args: argparse.Namespace) -> int:
    if len(args.hosts) == 1:
        hosts = [ctx.client.request("POST", f"/backup-hosts/{args.hosts[0]}/activate")]
    else:
        body = {"host_ids": args.hosts}
        hosts = ctx.client.request("POST", "/backup-hosts/activate", body=body)["hosts"]
    ctx.show(hosts, HOST_COLUMNS)
    return 0


def _host_query(args: argparse.Namespace) -> dict[str, Any]:
    return {"active": args.active, "online": args.online, "group": args.group}


def _platform_settings(parser: argparse.ArgumentParser, *, required: bool) -> None:
    parser.add_argument("--address", required=required, help="the platform API's host name or IP")
    parser.add_argument("--port", type=int, help="the platform API's port (default 30188)")
    parser.add_argument(
        "--ssl", action=argparse.BooleanOptionalAction, help="https to the platform (default: on)"
    )
    parser.add_argument("--access-key", required=required, help="the platform's Access Key")
    parser.add_argument(
        "--secret-key-file",
        metavar="FILE",
        help="file holding the Secret Key (default: asked for; never an "
        "argument, which other users could read in the process list)",
    )
    parser.add_argument(
        "--host",
        dest="default_host_id",
        required=required,
        metavar="HOST_ID",
        help="the backup host that reaches the platform",
    )
    parser.add_argument(
        "--group", action="append", dest="groups", help="user group that sees the platform (repeat)"
    )


def _platforms(verbs: Groups) -> None:
    one = "PLATFORM_ID"
    ls = verb(
        verbs,
        "list",
        "platforms you may see",
        "edgeback platform list --name edge",
        listing("/platforms", PLATFORM_COLUMNS, lambda a: {"name": a.name, "tag": a.tag}),
    )
    ls.add_argument("--name", help="part of the name, any case")
    ls.add_argument("--tag", help="only platforms with this tag")
    _limit(ls)
    reg = verb(
        verbs,
        "register",
        "register a platform, checked from its backup host (admin)",
        "edgeback platform register --name edge-1 --address 10.0.0.5 --access-key AK1 "
        "--secret-key-file sk.txt --host bk-01",
        _platform_register,
    )
    reg.add_argument("--name", required=True, help="what to call the platform (unique)")
    _platform_settings(reg, required=True)
    reg.add_argument("--tag", action="append", dest="tags", help="a tag (repeat)")
    show = verb(
        verbs,
        "show",
        "one platform (its Secret Key is never shown)",
        "edgeback platform show 3f2a…",
        sends("GET", "/platforms/{platform}", PLATFORM_COLUMNS),
    )
    show.add_argument("platform", metavar=one)
    ren = verb(
        verbs,
        "rename",
        "rename a platform (admin)",
        "edgeback platform rename 3f2a… edge-west",
        sends(
            "PUT", "/platforms/{platform}/name", PLATFORM_COLUMNS, body=lambda a: {"name": a.name}
        ),
    )
    ren.add_argument("platform", metavar=one)
    ren.add_argument("name", metavar="NEW_NAME")
    upd = verb(
        verbs,
        "update",
        "change a platform's settings; the others stay (admin)",
        "edgeback platform update 3f2a… --address 10.0.0.6 --no-ssl",
        _platform_update,
    )
    upd.add_argument("platform", metavar=one)
    _platform_settings(upd, required=False)
    unreg = verb(
        verbs,
        "unregister",
        "unregister a platform and its Ceph storages (admin)",
        "edgeback platform unregister 3f2a…",
        sends("DELETE", "/platforms/{platform}", done="platform {platform} unregistered"),
    )
    unreg.add_argument("platform", metavar=one)


def _secret_key(args: argparse.Namespace) -> str:
    if args.secret_key_file:
        try:
            return Path(args.secret_key_file).read_text().strip()
        except OSError as exc:
            raise InvalidInputError(f"cannot read {args.secret_key_file}: {exc.strerror}") from exc
    return getpass.getpass("the platform's Secret Key: ")


def _settings_body(args: argparse.Namespace) -> dict[str, Any]:
    names = ("address", "port", "ssl", "access_key", "default_host_id", "groups")
    return {n: getattr(args, n) for n in names if getattr(args, n) is not None}


def _platform_register(ctx: Ctx, args: argparse.Namespace) -> int:
    body = {"name": args.name, **_settings_body(args), "secret_key": _secret_key(args)}
    if args.tags:
        body["tags"] = args.tags
    ctx.show(ctx.client.request("POST", "/platforms", body=body), PLATFORM_COLUMNS, one=True)
    return 0


def _platform_update(ctx: Ctx, args: argparse.Namespace) -> int:
    body = _settings_body(args)
    if args.secret_key_file:
        body["secret_key"] = _secret_key(args)
    changed = ctx.client.request("PATCH", f"/platforms/{args.platform}", body=body)
    ctx.show(changed, PLATFORM_COLUMNS, one=True)
    return 0


def _storages(verbs: Groups) -> None:
    ls = verb(
        verbs,
        "list",
        "Ceph storages of a platform",
        "edgeback storage list 3f2a…",
        listing(
            "/platforms/{platform}/storages",
            STORAGE_COLUMNS,
            lambda a: {"name": a.name, "pool": a.pool},
        ),
    )
    ls.add_argument("platform", metavar="PLATFORM_ID")
    ls.add_argument("--name", help="part of the name, any case")
    ls.add_argument("--pool", help="only storages of this Ceph pool")
    _limit(ls)
    add = verb(
        verbs,
        "add",
        "add a Ceph storage, checked from its backup host (admin)",
        "edgeback storage add 3f2a… --name ceph-a --host bk-01 --pool rbd "
        "--conf /etc/ceph/ceph.conf",
        _storage_add,
    )
    add.add_argument("platform", metavar="PLATFORM_ID")
    add.add_argument("--name", required=True, help="what to call the storage")
    add.add_argument(
        "--host",
        dest="host_id",
        required=True,
        metavar="HOST_ID",
        help="the backup host that reads the cluster",
    )
    add.add_argument("--pool", required=True, help="the RBD pool of the VMs' disks")
    add.add_argument("--conf", dest="conf_path", help="ceph.conf on the backup host")
    add.add_argument("--client-id", help="cephx client id (default admin)")
    for name, default in (
        ("volume", "{volume_id}"),
        ("snapshot", "{snapshot_id}"),
        ("instance", "{instance_id}_disk"),
    ):
        add.add_argument(
            f"--{name}-template", help=f"RBD name of the platform's {name}s (default {default})"
        )
    add.add_argument(
        "--rbd-client",
        choices=("librbd", "krbd"),
        help="how the hypervisors open the images (default librbd; krbd: no instant restore)",
    )
    rm = verb(
        verbs,
        "remove",
        "remove a Ceph storage (admin)",
        "edgeback storage remove 9c1e…",
        sends("DELETE", "/storages/{storage}", done="storage {storage} removed"),
    )
    rm.add_argument("storage", metavar="STORAGE_ID")


def _storage_add(ctx: Ctx, args: argparse.Namespace) -> int:
    names = (
        "name",
        "host_id",
        "pool",
        "conf_path",
        "client_id",
        "volume_template",
        "snapshot_template",
        "instance_template",
        "rbd_client",
    )
    body = {n: getattr(args, n) for n in names if getattr(args, n) is not None}
    added = ctx.client.request("POST", f"/platforms/{args.platform}/storages", body=body)
    ctx.show(added, STORAGE_COLUMNS, one=True)
    return 0


def _browse(ctx: Ctx, args: argparse.Namespace) -> int:
    query = {"keyword": args.keyword, "host_id": args.physical_host}
    tree = ctx.client.request("GET", f"/platforms/{args.platform}/tree", query=query)
    if ctx.as_json:
        ctx.show(tree)
        return 0
    rows = [
        {
            "host": h["name"],
            "id": vm["id"],
            "name": vm["name"],
            "state": vm["state"],
            "on_ceph": vm["on_ceph"],
            "agent": vm.get("guest_agent_running"),
            "disks": len(vm.get("disks") or []),
        }
        for h in tree["hosts"]
        for vm in h.get("vms") or []
    ]
    ctx.show(rows, VM_COLUMNS)
    return 0
