"""``edgeback`` console script: argument parsing, environment, exit codes.

Exit codes: 0 done; 1 failed (node or cluster trouble, retry may help); 2 bad input,
nothing changed; 3 integrity problem (corrupt or missing chunks, untrustworthy diff).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from edgeback_blocks.chunk import Compression
from edgeback_blocks.keys import read_secret_file, write_secret_file
from edgeback_blocks.manifest import BackupType
from edgeback_blocks.pipeline import DedupMode
from edgeback_cli import commands
from edgeback_cli.catalog_import import run_import
from edgeback_cli.refs import ImageRef, ManifestRef, PoolLocation, check_name, read_key
from edgeback_core import logging as edgeback_logging
from edgeback_core.errors import (
    ConfigError,
    EdgebackError,
    IntegrityError,
    InvalidInputError,
    PermanentError,
)
from edgeback_core.messages.catalog import ActorRef
from edgeback_core.settings import process_environ

EXIT_FAILED, EXIT_INPUT, EXIT_INTEGRITY = 1, 2, 3


def _pool_options(parser: argparse.ArgumentParser, direction: str) -> None:
    parser.add_argument(
        direction,
        dest="node",
        required=True,
        metavar="NODE_URL|POOL_DIR",
        help="storage node URL (http://127.0.0.1:8710) or a pool directory (no node)",
    )
    parser.add_argument(
        "--pool",
        default="default",
        help="pool on the node (default: default); unused with a POOL_DIR",
    )
    parser.add_argument(
        "--token-env",
        default="EDGEBACK_TOKEN",
        metavar="VAR",
        help="environment variable holding the node's bearer token",
    )
    parser.add_argument(
        "--ca-file",
        help="PEM CA file an https node's certificate must chain to (default: system CAs)",
    )
    parser.add_argument(
        "--key-file",
        help="the pool's 32-byte chunk key (its pool.key); needed with a node URL "
        "unless the pool is encrypted",
    )
    parser.add_argument(
        "--secret-key-file",
        required=True,
        metavar="FILE",
        help="the pool's secret (mode 0600, never sent to the node): authenticates "
        "manifests, and encrypts an encrypted pool (docs/encryption.md)",
    )
    parser.add_argument(
        "--allow-unauthenticated-manifest",
        action="store_true",
        help="also accept format-1 manifests, which carry no MAC (written before format 2)",
    )
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    parser.add_argument("-v", "--verbose", action="store_true", help="log to stderr")  # fmt: skip


def _ceph_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--image", required=True, help="POOL/IMAGE of the RBD image")
    parser.add_argument("--conf", help="ceph.conf path (default: $CEPH_CONF)")
    parser.add_argument("--client-id", default="admin", help="cephx client id")
    parser.add_argument("--streams", type=int, default=4, help="parallel reads or writes")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="edgeback", description=__doc__.split("\n")[0])
    groups = parser.add_subparsers(dest="group", required=True)
    disk = groups.add_parser("disk", help="one RBD disk, without the other services")
    verbs = disk.add_subparsers(dest="verb", required=True)
    backup = verbs.add_parser("backup", help="back up an RBD image into a pool")
    _ceph_options(backup)
    backup.add_argument("--snap", help="snapshot to back up (default: create one)")
    backup.add_argument("--base-snap", help="snapshot of the base backup (incremental)")
    backup.add_argument("--base", help="MANIFEST_REF of the base backup (VM/DISK/VERSION or file)")
    backup.add_argument("--cumulative", action="store_true",
                        help="label the backup cumulative (the base is the last full)")  # fmt: skip
    backup.add_argument("--vm", default="cli", help="VM name in the manifest (default: cli)")
    backup.add_argument("--disk", help="disk name in the manifest (default: the image name)")
    backup.add_argument("--version", help="version name (default: UTC time)")
    backup.add_argument("--compression", choices=[c.value for c in Compression],
                        default=Compression.FAST.value)  # fmt: skip
    backup.add_argument("--server-side-dedup", action="store_true",
                        help="upload every chunk and let the node deduplicate")  # fmt: skip
    backup.add_argument("--uploads", type=int, default=8, help="chunk uploads in flight")
    backup.add_argument("--checkpoint-interval", type=float, default=10.0, metavar="SECONDS")
    _pool_options(backup, "--to")
    restore = verbs.add_parser("restore", help="restore a manifest into an RBD image")
    restore.add_argument("manifest", metavar="MANIFEST_REF")
    _ceph_options(restore)
    restore.add_argument("--force", action="store_true", help="overwrite an existing image")
    restore.add_argument(
        "--snapshot-before",
        action="store_true",
        help="snapshot an existing image first; roll back if the restore fails",
    )
    _pool_options(restore, "--from")
    verify = verbs.add_parser("verify", help="check every chunk of a manifest in the pool")
    verify.add_argument("manifest", metavar="MANIFEST_REF")
    verify.add_argument("--sample", type=int, help="check only this many random chunks")
    _pool_options(verify, "--from")
    catalog = groups.add_parser("catalog", help="the catalog service, over the bus")
    catalog_verbs = catalog.add_subparsers(dest="verb", required=True)
    imp = catalog_verbs.add_parser(
        "import", help="recreate backup sets from a pool's manifests (into an empty catalog)"
    )
    imp.add_argument(
        "--actor",
        default=None,
        help="the admin user the import is made for (the catalog accepts a named user only "
        "from the API's broker user: run the CLI with that EDGEBACK_AMQP_URL)",
    )
    _pool_options(imp, "--from")
    keys = groups.add_parser("key", help="pool secrets of the backup hosts")
    key_verbs = keys.add_subparsers(dest="verb", required=True)
    create = key_verbs.add_parser("create", help="write a new random pool secret (mode 0600)")
    create.add_argument("file", metavar="FILE")
    return parser


def _access(args: argparse.Namespace, environ: Mapping[str, str]) -> commands.PoolAccess:
    location = PoolLocation.parse(args.node)
    token = environ.get(args.token_env, "")
    if location.url and not token:
        raise ConfigError(f"the node's token is not set: export {args.token_env}=...")
    return commands.PoolAccess(
        location=location,
        pool=check_name(args.pool, "--pool"),
        token=token or None,
        key=read_key(args.key_file) if args.key_file else None,
        secret=read_secret_file(Path(args.secret_key_file)),
        allow_unauthenticated=args.allow_unauthenticated_manifest,
        ca_file=args.ca_file,
    )


def _ceph(args: argparse.Namespace, environ: Mapping[str, str]) -> tuple[str, str]:
    conf = args.conf or environ.get("CEPH_CONF")
    if not conf:
        raise ConfigError("no ceph.conf: pass --conf or set CEPH_CONF")
    if args.streams < 1:
        raise InvalidInputError("--streams must be at least 1")
    return conf, args.client_id


def _backup_request(args: argparse.Namespace, environ: Mapping[str, str]) -> commands.BackupRequest:
    image = ImageRef.parse(args.image)
    if args.snap is not None:
        if image.snap is not None and image.snap != args.snap:
            raise InvalidInputError("--snap and --image POOL/IMAGE@SNAP name different snapshots")
        image = ImageRef.parse(f"{image.pool}/{image.image}@{args.snap}")
    if (args.base is None) != (args.base_snap is None):
        raise InvalidInputError("--base and --base-snap go together (incremental backup)")
    conf, client_id = _ceph(args, environ)
    return commands.BackupRequest(
        image=image, access=_access(args, environ), ceph_conf=conf, ceph_client=client_id,
        vm=check_name(args.vm, "--vm"), disk=check_name(args.disk or image.image, "--disk"),
        version=None if args.version is None else check_name(args.version, "--version"),
        base=None if args.base is None else ManifestRef.parse(args.base),
        base_snap=args.base_snap,
        backup_type=BackupType.CUMULATIVE if args.cumulative else BackupType.INCREMENTAL,
        compression=Compression(args.compression),
        dedup=DedupMode.SERVER if args.server_side_dedup else DedupMode.AGENT,
        streams=args.streams, uploads=max(1, args.uploads),
        checkpoint_interval_s=args.checkpoint_interval,
    )  # fmt: skip


async def _dispatch(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    if args.group == "key":
        write_secret_file(Path(args.file))
        commands.note(f"wrote a new pool secret to {args.file}: back it up (docs/encryption.md)")
        return 0
    if args.group == "catalog":
        actor = ActorRef(user=args.actor)
        summary = await run_import(_access(args, environ), environ, actor)
        commands.emit(summary, as_json=args.json)
        return EXIT_INTEGRITY if summary["rejected"] else 0
    if args.verb == "backup":
        summary = await commands.run_backup(_backup_request(args, environ))
    elif args.verb == "restore":
        ref, image = ManifestRef.parse(args.manifest), ImageRef.parse(args.image)
        summary = await commands.run_restore(
            ref, image, _access(args, environ), ceph=_ceph(args, environ),
            force=args.force, streams=args.streams, snapshot_before=args.snapshot_before,
        )  # fmt: skip
    else:
        ok, summary = await commands.run_verify(
            ManifestRef.parse(args.manifest), _access(args, environ), sample=args.sample
        )
        commands.emit(summary, as_json=args.json)
        return 0 if ok else EXIT_INTEGRITY
    commands.emit(summary, as_json=args.json)
    return 0


def _configure_logging(verbose: bool) -> None:
    edgeback_logging.configure("INFO" if verbose else "WARNING", json=False, stream="stderr")


def run(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _configure_logging(getattr(args, "verbose", False))
    try:
        return asyncio.run(_dispatch(args, process_environ() if environ is None else environ))
    except IntegrityError as exc:
        commands.note(f"integrity error [{exc.code}]: {exc.message}")
        return EXIT_INTEGRITY
    except (ConfigError, PermanentError) as exc:
        commands.note(f"error [{exc.code}]: {exc.message}")
        return EXIT_INPUT
    except EdgebackError as exc:
        commands.note(f"failed [{exc.code}]: {exc.message}")
        return EXIT_FAILED
    except KeyboardInterrupt:
        commands.note("interrupted (a backup resumes from its checkpoint when re-run)")
        return 130


def main() -> None:
    sys.exit(run())
