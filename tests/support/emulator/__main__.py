"""``python -m tests.support.emulator seed|serve|purge``: the edge-cloud emulator's CLI.

Commands::

    seed  --vms N --conf CEPH_CONF --pool rbd --state FILE [--disk-mib 64,128,256] [--disks 2,3]
          [--hosts H] [--eligible]
    serve --port P --state FILE --access-key AK (--secret-key SK | --secret-key-file F)
          [--bind 127.0.0.1]
    purge --state FILE      remove the RBD images (and snapshots) of a seeded state
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from aiohttp import web
from tests.support.emulator.app import make_app, open_emulator
from tests.support.emulator.seed import SeedPlan, purge, seed
from tests.support.emulator.state import CephTarget, load


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m tests.support.emulator")
    sub = parser.add_subparsers(dest="command", required=True)
    s = sub.add_parser("seed", help="create VMs with real RBD disks and write the state file")
    s.add_argument("--vms", type=int, required=True)
    s.add_argument("--hosts", type=int, default=0, help="0: one per four VMs, at least two")
    s.add_argument("--conf", required=True, help="ceph.conf path")
    s.add_argument("--pool", default="rbd")
    s.add_argument("--client-id", default="admin")
    s.add_argument("--state", type=Path, required=True)
    s.add_argument("--disk-mib", default="64,128,256", help="disk sizes to pick from, MiB")
    s.add_argument("--disks", default="", help="disks per VM, taken in turn (default 1-3)")
    s.add_argument("--fill", type=float, default=0.6, help="share of chunks written")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--eligible", action="store_true", help="every VM can be backed up")
    v = sub.add_parser("serve", help="serve the API on 127.0.0.1")
    v.add_argument("--port", type=int, required=True)
    v.add_argument("--bind", default="127.0.0.1")
    v.add_argument("--state", type=Path, required=True)
    v.add_argument("--access-key", required=True)
    key = v.add_mutually_exclusive_group(required=True)
    key.add_argument("--secret-key")
    key.add_argument("--secret-key-file", type=Path, help="the Secret Key, kept off ps")
    p = sub.add_parser("purge", help="remove the RBD images of a state file")
    p.add_argument("--state", type=Path, required=True)
    return parser


def _seed(args: argparse.Namespace) -> None:
    plan = SeedPlan(
        vms=args.vms,
        hosts=args.hosts,
        disk_mib=tuple(int(x) for x in args.disk_mib.split(",")),
        disks=tuple(int(x) for x in args.disks.split(",") if x),
        fill=args.fill,
        seed=args.seed,
        eligible=args.eligible,
    )
    ceph = CephTarget(conf=args.conf, pool=args.pool, client_id=args.client_id)
    started = time.monotonic()
    state, written = seed(plan, ceph, args.state)
    disks = sum(len(vm.disks) for vm in state.vms)
    print(
        f"seeded {len(state.vms)} VMs, {disks} disks on {len(state.hosts)} hosts, "
        f"{written / 2**20:.0f} MiB written in {time.monotonic() - started:.1f}s -> {args.state}"
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "seed":
        _seed(args)
    elif args.command == "serve":
        secret = args.secret_key or args.secret_key_file.read_text().strip()
        emulator = open_emulator(args.state, args.access_key, secret)
        web.run_app(make_app(emulator), host=args.bind, port=args.port, print=None)
    else:
        removed = purge(load(args.state))
        print(f"removed {len(removed)} images")
    return 0


if __name__ == "__main__":
    sys.exit(main())
