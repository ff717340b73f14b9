"""The catalog's use cases wired together over one database, one key and one clock."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING

from edgeback_catalog.access import AuditLog
from edgeback_catalog.auth import Auth
from edgeback_catalog.backupsets import BackupSets
from edgeback_catalog.documents import stored_clock
from edgeback_catalog.domain import Clock, utc_now
from edgeback_catalog.duejobs import DueJobs
from edgeback_catalog.expiry import Retention
from edgeback_catalog.hosts import BackupHosts
from edgeback_catalog.jobs import Jobs
from edgeback_catalog.leadership import Leadership
from edgeback_catalog.leasing import Leases
from edgeback_catalog.mongo import CatalogDb
from edgeback_catalog.platforms import Platforms
from edgeback_catalog.poolimport import PoolImport
from edgeback_catalog.pools import Pools
from edgeback_catalog.probes import ResourceProbe
from edgeback_catalog.restoreends import RestoreEnds
from edgeback_catalog.restores import DEFAULT_CODE_TTL, Restores
from edgeback_catalog.restoretasks import RestoreTasks
from edgeback_catalog.runcancel import RunCancels
from edgeback_catalog.runends import RunEnds
from edgeback_catalog.runlog import RunLog
from edgeback_catalog.runs import Runs
from edgeback_catalog.runstart import RunStarter
from edgeback_catalog.runtasks import RunTasks
from edgeback_catalog.secretbox import SecretBox
from edgeback_catalog.storages import CephStorages
from edgeback_catalog.users import Users

if TYPE_CHECKING:
    from edgeback_core.bus.port import Bus


@dataclass(frozen=True, slots=True, kw_only=True)
class Catalog:
    db: CatalogDb
    clock: Clock
    audit: AuditLog
    hosts: BackupHosts
    platforms: Platforms
    storages: CephStorages
    pools: Pools
    users: Users
    runs: Runs
    jobs: Jobs
    run_starter: RunStarter
    run_tasks: RunTasks
    backup_sets: BackupSets
    leases: Leases
    auth: Auth
    leadership: Leadership
    due_jobs: DueJobs
    restores: Restores
    restore_tasks: RestoreTasks
    restore_ends: RestoreEnds
    pool_import: PoolImport
    run_ends: RunEnds
    run_log: RunLog
    run_cancels: RunCancels
    retention: Retention

    @classmethod
    def build(
        cls,
        db: CatalogDb,
        box: SecretBox,
        *,
        clock: Clock = utc_now,
        offline_after: timedelta = timedelta(seconds=90),
        probe: ResourceProbe | None,
        restore_code_ttl: timedelta = DEFAULT_CODE_TTL,
        events: Bus | None = None,
    ) -> Catalog:
        """``probe`` checks platforms, storages and pools from their backup host before
        they are stored (``WorkerProbe`` in the service). ``probe=None`` must be said out
        loud: resources are then stored unchecked and browsing is unavailable (tests of
        the catalog's own rules). ``events`` is where the catalog publishes the
        ``RunFinished`` of runs and the ``RestoreFinished`` of restores it ends
        (``runends.py``, ``restoreends.py``); None publishes none."""
        clock = stored_clock(clock)
        audit = AuditLog(db, clock)
        hosts = BackupHosts(db, audit, clock, offline_after=offline_after)
        sets = BackupSets(db, clock)
        users = Users(db, audit, clock)
        leadership = Leadership(db, clock)
        ends = RunEnds(db, sets, clock, events)
        runs = Runs(db, audit, clock, on_end=ends.announce)
        jobs = Jobs(db, audit, hosts, clock)
        restore_ends = RestoreEnds(db, clock, events)
        restores = Restores(
            db, audit, hosts, clock, code_ttl=restore_code_ttl, on_end=restore_ends.announce
        )
        return cls(
            db=db,
            clock=clock,
            audit=audit,
            hosts=hosts,
            platforms=Platforms(db, audit, hosts, box, clock, probe=probe),
            storages=CephStorages(db, audit, hosts, clock, probe=probe),
            pools=Pools(db, audit, hosts, clock, probe=probe),
            users=users,
            runs=runs,
            jobs=jobs,
            run_starter=RunStarter(db, audit, runs, clock),
            run_tasks=RunTasks(db, runs, sets, clock),
            backup_sets=sets,
            leases=Leases(db, clock),
            auth=Auth(db, audit, users, clock),
            leadership=leadership,
            due_jobs=DueJobs(db, leadership),
            restores=restores,
            restore_tasks=RestoreTasks(db, restores, clock),
            restore_ends=restore_ends,
            pool_import=PoolImport(db, audit, clock),
            run_ends=ends,
            run_log=RunLog(db, clock),
            run_cancels=RunCancels(runs, jobs, audit),
            retention=Retention(db, audit, leadership, jobs, clock),
        )
