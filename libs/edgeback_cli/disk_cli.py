"""The commands that work without the services (disaster recovery): ``disk backup |
restore | verify`` of one RBD disk, ``pool create`` of a local pool directory, ``key
create`` of a pool secret, and ``catalog import`` of a pool's manifests over the bus.

Their parsers are built from here for every command line; the data path they need
(~0.3 s to import) and the bus are imported only when one of them runs.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from edgeback_cli import pool_cli
from edgeback_cli.apicli import Groups, Raw
from edgeback_core.errors import ConfigError, InvalidInputError

if TYPE_CHECKING:
    from edgeback_cli import commands

COMPRESSIONS = ("none", "fast", "balanced", "best")
"""``edgeback_blocks.chunk.Compression``'s values (a unit test holds them equal)."""
POOL_KINDS = ("dedup", "standard")
MANIFEST_HELP = "VM/DISK/VERSION of a disk version in the pool, or a manifest file"
EXIT_INTEGRITY = 3

BACKUP_EXAMPLE = """\
edgeback key create /etc/edgeback/pool.secret
edgeback pool create /srv/backup/dd
edgeback disk backup --image rbd/vm-1-disk-0 --to /srv/backup/dd \\
    --secret-key-file /etc/edgeback/pool.secret
edgeback disk backup --image rbd/vm-1-disk-0 --to /srv/backup/dd \\
    --secret-key-file /etc/edgeback/pool.secret \\
    --base cli/vm-1-disk-0/20250101T000000Z --base-snap edgeback-20250101T000000Z"""


def _verb(
    verbs: Groups, name: str, help_text: str, example: str, **kw: object
) -> argparse.ArgumentParser:
    return verbs.add_parser(
        name,
        help=help_text,
        description=help_text,
        epilog=f"example:\n  {example}",
        formatter_class=Raw,
        **kw,  # type: ignore[arg-type]
    )


def _group(groups: Groups, name: str, help_text: str) -> Groups:
    parser = groups.add_parser(name, help=help_text, description=help_text, formatter_class=Raw)
    return parser.add_subparsers(dest="verb", required=True, metavar="COMMAND")


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
        help="the pool's 32-byte chunk key (its pool.key); needed "
        "with a node URL unless the pool is encrypted",
    )
    parser.add_argument(
        "--secret-key-file",
        required=True,
        metavar="FILE",
        help="the pool's secret (mode 0600, never sent to the node): "
        "authenticates manifests, and encrypts an encrypted pool "
        "(docs/encryption.md)",
    )
    parser.add_argument(
        "--allow-unauthenticated-manifest",
        action="store_true",
        help="also accept format-1 manifests, which carry no MAC (written before format 2)",
    )
    output_options(parser)
    parser.add_argument("-v", "--verbose", action="store_true", help="log to stderr")


def output_options(parser: argparse.ArgumentParser) -> None:
    """``-o/--output`` as on the API commands; ``--json``, its older spelling, still works."""
    parser.add_argument(
        "-o",
        "--output",
        choices=("table", "json"),
        default="table",
        help="table for people (default), json for scripts",
    )
    parser.add_argument(
        "--json", dest="output", action="store_const", const="json", help=argparse.SUPPRESS
    )


def _ceph_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--image", required=True, help="POOL/IMAGE of the RBD image")
    parser.add_argument("--conf", help="ceph.conf path (default: $CEPH_CONF)")
    parser.add_argument("--client-id", default="admin", help="cephx client id")
    parser.add_argument("--streams", type=int, default=4, help="parallel reads or writes")


def _backup(verbs: Groups) -> None:
    backup = _verb(
        verbs,
        "backup",
        "back up an RBD image into a pool (full, or incremental from --base)",
        BACKUP_EXAMPLE.replace("\n", "\n  "),
    )
    _ceph_options(backup)
    backup.add_argument("--snap", help="snapshot to back up (default: create one)")
    backup.add_argument("--base-snap", help="snapshot of the base backup (incremental)")
    backup.add_argument("--base", help="MANIFEST_REF of the base backup (VM/DISK/VERSION or file)")
    backup.add_argument(
        "--cumulative",
        action="store_true",
        help="label the backup cumulative (the base is the last full)",
    )
    backup.add_argument("--vm", default="cli", help="VM name in the manifest (default: cli)")
    backup.add_argument("--disk", help="disk name in the manifest (default: the image name)")
    backup.add_argument("--version", help="version name (default: UTC time)")
    backup.add_argument(
        "--compression",
        choices=COMPRESSIONS,
        default="fast",
        help="zstd effort for new chunks (default fast); a chunk that does not shrink stays raw",
    )
    backup.add_argument(
        "--server-side-dedup",
        action="store_true",
        help="upload every chunk and let the node deduplicate",
    )
    backup.add_argument("--uploads", type=int, default=8, help="chunk uploads in flight")
    backup.add_argument(
        "--checkpoint-interval",
        type=float,
        default=10.0,
        metavar="SECONDS",
        help="save the partial manifest this often, to resume from (default 10)",
    )
    _pool_options(backup, "--to")


def add(groups: Groups) -> None:
    verbs = _group(groups, "disk", "one RBD disk, without the other services")
    _backup(verbs)
    restore = _verb(
        verbs,
        "restore",
        "restore a manifest into an RBD image",
        "edgeback disk restore cli/vm-1-disk-0/20250101T000000Z --image rbd/vm-1-new "
        "--from /srv/backup/dd --secret-key-file /etc/edgeback/pool.secret",
    )
    restore.add_argument("manifest", metavar="MANIFEST_REF", help=MANIFEST_HELP)
    _ceph_options(restore)
    restore.add_argument("--force", action="store_true", help="overwrite an existing image")
    restore.add_argument(
        "--snapshot-before",
        action="store_true",
        help="snapshot an existing image first; roll back if the restore fails",
    )
    _pool_options(restore, "--from")
    verify = _verb(
        verbs,
        "verify",
        "check every chunk of a manifest in the pool",
        "edgeback disk verify cli/vm-1-disk-0/20250101T000000Z --from /srv/backup/dd "
        "--secret-key-file /etc/edgeback/pool.secret --sample 100",
    )
    verify.add_argument("manifest", metavar="MANIFEST_REF", help=MANIFEST_HELP)
    verify.add_argument("--sample", type=int, help="check only this many random chunks")
    _pool_options(verify, "--from")
    _local_groups(groups)


def _local_groups(groups: Groups) -> None:
    pools = _group(
        groups,
        "pool",
        "storage pools: registered in the catalog (API), or a local pool directory (create)",
    )
    pool_cli.add(pools)
    create = _verb(
        pools,
        "create",
        "create an empty pool directory with a new chunk key",
        "edgeback pool create /srv/backup/dd --kind dedup",
    )
    create.add_argument("dir", metavar="DIR", type=Path, help="the pool directory (must not exist)")
    create.add_argument(
        "--kind",
        choices=POOL_KINDS,
        default="dedup",
        help="dedup (default): each chunk stored once; standard: no dedup",
    )
    create.add_argument(
        "--encrypted",
        action="store_true",
        help="encrypt chunks and manifests with the pool secret (docs/encryption.md)",
    )
    output_options(create)
    catalog = _group(groups, "catalog", "the catalog service, over the bus")
    imp = _verb(
        catalog,
        "import",
        "recreate backup sets from a pool's manifests (into an empty catalog)",
        "edgeback catalog import --from /srv/backup/dd --secret-key-file /etc/edgeback/pool.secret",
    )
    imp.add_argument(
        "--actor",
        default=None,
        help="the admin user the import is made for (the catalog accepts a named user only "
        "from the API's broker user: run the CLI with that EDGEBACK_AMQP_URL)",
    )
    _pool_options(imp, "--from")
    keys = _group(groups, "key", "pool secrets of the backup hosts")
    key = _verb(
        keys,
        "create",
        "write a new random pool secret (mode 0600)",
        "edgeback key create /etc/edgeback/pool.secret",
    )
    key.add_argument("file", metavar="FILE", help="where to write it (must not exist)")
    output_options(key)


def _access(args: argparse.Namespace, environ: Mapping[str, str]) -> commands.PoolAccess:
    from edgeback_blocks.keys import read_secret_file  # noqa: PLC0415 - when used only
    from edgeback_cli import commands  # noqa: PLC0415
    from edgeback_cli.refs import PoolLocation, check_name, read_key  # noqa: PLC0415

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
    _at_least_one(args.streams, "--streams")
    return conf, args.client_id


def _at_least_one(value: int, flag: str) -> int:
    if value < 1:
        raise InvalidInputError(f"{flag} must be at least 1, not {value}")
    return value


def _backup_request(args: argparse.Namespace, environ: Mapping[str, str]) -> commands.BackupRequest:
    from edgeback_blocks.chunk import Compression  # noqa: PLC0415 - when used only
    from edgeback_blocks.manifest import BackupType  # noqa: PLC0415
    from edgeback_blocks.pipeline import DedupMode  # noqa: PLC0415
    from edgeback_cli import commands  # noqa: PLC0415
    from edgeback_cli.refs import ImageRef, ManifestRef, check_name  # noqa: PLC0415

    image = ImageRef.parse(args.image)
    if args.snap is not None:
        if image.snap is not None and image.snap != args.snap:
            raise InvalidInputError("--snap and --image POOL/IMAGE@SNAP name different snapshots")
        image = ImageRef.parse(f"{image.pool}/{image.image}@{args.snap}")
    if (args.base is None) != (args.base_snap is None):
        raise InvalidInputError("--base and --base-snap go together (incremental backup)")
    conf, client_id = _ceph(args, environ)
    return commands.BackupRequest(
        image=image,
        access=_access(args, environ),
        ceph_conf=conf,
        ceph_client=client_id,
        vm=check_name(args.vm, "--vm"),
        disk=check_name(args.disk or image.image, "--disk"),
        version=None if args.version is None else check_name(args.version, "--version"),
        base=None if args.base is None else ManifestRef.parse(args.base),
        base_snap=args.base_snap,
        backup_type=BackupType.CUMULATIVE if args.cumulative else BackupType.INCREMENTAL,
        compression=Compression(args.compression),
        dedup=DedupMode.SERVER if args.server_side_dedup else DedupMode.AGENT,
        streams=args.streams,
        uploads=_at_least_one(args.uploads, "--uploads"),
        checkpoint_interval_s=args.checkpoint_interval,
    )


def _pool_create(args: argparse.Namespace) -> int:
    from edgeback_cli import commands  # noqa: PLC0415 - when used only
    from edgeback_pools.pool_meta import KEY_FILE, create_pool  # noqa: PLC0415

    directory: Path = args.dir.resolve()
    info = create_pool(directory.parent, directory.name, args.kind, encrypted=args.encrypted)
    summary = {
        "pool": str(directory),
        "kind": str(info.kind),
        "encrypted": info.encrypted,
        "key_file": str(directory / KEY_FILE),
        "key_id": info.key_id,
    }
    commands.emit(summary, as_json=args.output == "json")
    keys = (
        "the chunks and manifests are sealed with the pool secret only"
        if info.encrypted
        else f"the chunk key is {directory / KEY_FILE}"
    )
    commands.note(
        f"{keys}; the pool secret is yours to keep (`edgeback key create FILE`, mode 0600, "
        f"backed up apart from the pool), then: edgeback disk backup --image POOL/IMAGE "
        f"--to {directory} --secret-key-file FILE"
    )
    return 0


async def dispatch(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    """Run a disk, pool, key or catalog command; its exit code."""
    from edgeback_cli import commands  # noqa: PLC0415 - when used only

    if args.group == "pool":
        return _pool_create(args)
    if args.group == "key":
        from edgeback_blocks.keys import SECRET_SIZE, write_secret_file  # noqa: PLC0415

        write_secret_file(Path(args.file))
        summary = {"secret_file": args.file, "bytes": SECRET_SIZE}
        commands.emit(summary, as_json=args.output == "json")
        commands.note(f"wrote a new pool secret to {args.file}: back it up (docs/encryption.md)")
        return 0
    if args.group == "catalog":
        from edgeback_cli.catalog_import import run_import  # noqa: PLC0415 - imports the bus
        from edgeback_core.messages.catalog import ActorRef  # noqa: PLC0415

        actor = ActorRef(user=args.actor)
        summary = await run_import(_access(args, environ), environ, actor)
        commands.emit(summary, as_json=args.output == "json")
        return EXIT_INTEGRITY if summary["rejected"] else 0
    return await _disk(args, environ)


async def _disk(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    from edgeback_cli import commands  # noqa: PLC0415 - when used only
    from edgeback_cli.refs import ImageRef, ManifestRef  # noqa: PLC0415

    if args.verb == "backup":
        summary = await commands.run_backup(_backup_request(args, environ))
    elif args.verb == "restore":
        ref, image = ManifestRef.parse(args.manifest), ImageRef.parse(args.image)
        summary = await commands.run_restore(
            ref,
            image,
            _access(args, environ),
            ceph=_ceph(args, environ),
            force=args.force,
            streams=args.streams,
            snapshot_before=args.snapshot_before,
        )
    else:
        sample = None if args.sample is None else _at_least_one(args.sample, "--sample")
        ok, summary = await commands.run_verify(
            ManifestRef.parse(args.manifest), _access(args, environ), sample=sample
        )
        commands.emit(summary, as_json=args.output == "json")
        return 0 if ok else EXIT_INTEGRITY
    commands.emit(summary, as_json=args.output == "json")
    return 0
