"""``edgeback catalog import``: rebuild the catalog's backup sets from a pool (X4).

Reads every manifest of the pool through the storage node (or a pool directory),
checks each with the pool's secret (MAC, checksum, and that it describes what its
name says: ``commands.load_manifest``), and sends what passed to the catalog's
``catalog.backup_set.import`` RPC over the bus. A manifest that fails its checks is
reported and left out; the catalog makes a repeated import add nothing. The bus is
``EDGEBACK_AMQP_URL`` (``EDGEBACK_AMQP_CAFILE``) under ``EDGEBACK_BUS_PREFIX``, as for
the services; the catalog authorizes by that broker user: ``--actor`` names the admin
the import is for (only from the API's broker user, ``docs/catalog.md``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from edgeback_cli.commands import PoolAccess, load_manifest, opened_pool
from edgeback_cli.refs import ManifestRef
from edgeback_core.bus.amqp import AmqpBus
from edgeback_core.bus.topology import Topology
from edgeback_core.errors import IntegrityError, NotFoundError
from edgeback_core.messages.catalog import ActorRef
from edgeback_core.messages.jobs import PoolRef
from edgeback_core.messages.restores import (
    BACKUP_SET_IMPORT,
    BackupSetImport,
    BackupSetImportReply,
    ImportedDisk,
)
from edgeback_core.service import BusSettings
from edgeback_core.settings import load

RPC_TIMEOUT_S = 120.0


@dataclass(frozen=True, slots=True, kw_only=True)
class PoolReading:
    disks: list[ImportedDisk]
    rejected: list[dict[str, str]]
    """One entry per manifest left out: its name, the error code and message."""


async def read_pool(access: PoolAccess) -> PoolReading:
    disks: list[ImportedDisk] = []
    rejected: list[dict[str, str]] = []
    async with opened_pool(access) as (handle, keys):
        for item in await handle.list_manifests():
            ref = ManifestRef(vm=item.vm, disk=item.disk, version=item.version)
            try:
                manifest = await load_manifest(ref, handle, keys, access)
            except (IntegrityError, NotFoundError) as exc:
                rejected.append({"manifest": str(ref), "code": exc.code, "message": exc.message})
                continue
            header, stats = manifest.header, manifest.stats
            disks.append(
                ImportedDisk(
                    vm_id=header.vm_id,
                    disk_id=header.disk_id,
                    version=item.version,
                    image=header.image,
                    image_size=header.image_size,
                    backup_type=str(header.backup_type),
                    created_ms=header.created_ms,
                    chunks=stats.chunks,
                    zero_chunks=stats.zero_chunks,
                )
            )
    return PoolReading(disks=disks, rejected=rejected)


async def run_import(
    access: PoolAccess, environ: Mapping[str, str], actor: ActorRef
) -> dict[str, Any]:
    bus_settings = load(BusSettings, environ)  # ConfigError names what is missing
    reading = await read_pool(access)
    where = access.location.url or str(access.location.directory)
    topology = Topology(prefix=bus_settings.bus_prefix)
    async with AmqpBus.open(
        bus_settings.amqp_url,
        topology,
        name="edgeback-cli",
        cafile=bus_settings.amqp_cafile,
        declare_exchanges=False,
    ) as bus:
        pool = PoolRef(node_url=where, name=access.pool)
        request = BackupSetImport(actor=actor, pool=pool, disks=reading.disks)
        reply = await bus.call(
            BACKUP_SET_IMPORT, request, BackupSetImportReply, timeout=RPC_TIMEOUT_S
        )
    return {
        "manifests": len(reading.disks) + len(reading.rejected),
        "imported": len(reading.disks),
        "backup_sets_added": reply.backup_sets_added,
        "disk_versions_added": reply.disk_versions_added,
        "rejected": reading.rejected,
    }
