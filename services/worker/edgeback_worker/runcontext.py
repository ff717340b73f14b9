"""What every run handler of one worker process shares: the bus, the catalog calls,
settings, the process-wide speed throttles, and how to reach a platform or a pool.

Throttles are per worker process and per job (the job's windows), shared by every
VM task of the job this process runs at once, so a job's limit holds per worker
whatever its disks and streams do. Events go out here, on the routing key of their type.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path

import structlog

from edgeback_blocks.keys import ClientKeys, read_secret_file
from edgeback_blocks.pipeline.rate_windows import WindowedThrottle
from edgeback_cli.commands import PoolAccess, PoolHandle, opened_pool
from edgeback_cli.refs import PoolLocation, read_key
from edgeback_core.bus.port import Bus
from edgeback_core.bus.topology import RESTORE_EVENT_KEYS, RUN_EVENT_KEYS
from edgeback_core.messages.jobs import JobInfo, JobOptions, PoolRef, SpeedWindow
from edgeback_core.messages.restores import RestoreOptions
from edgeback_core.messages.runs import Versioned
from edgeback_core.retry import OnRetry, RetryPolicy
from edgeback_core.settings import Secret
from edgeback_platform.client import EdgeCloudClient, PlatformEndpoint
from edgeback_worker.runcatalog import RunCatalog
from edgeback_worker.runrules import (
    catalog_policy,
    event_message_id,
    rate_windows,
    reconnect_policy,
    reconnect_s,
)
from edgeback_worker.settings import WorkerSettings

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True, kw_only=True)
class JobThrottles:
    read: WindowedThrottle
    net: WindowedThrottle


@dataclass(slots=True, kw_only=True)
class RunContext:
    bus: Bus
    catalog: RunCatalog
    settings: WorkerSettings
    _throttles: dict[tuple[str, int], JobThrottles] = field(default_factory=dict)

    @property
    def worker_id(self) -> str:
        return self.catalog.worker_id

    def throttles(self, job: JobInfo) -> JobThrottles:
        """This process's throttles of ``job`` (made once per job revision)."""
        opts = job.spec.options
        return self.throttles_of((job.id, job.revision), opts.backup_speed, opts.transfer_speed)

    def throttles_of(
        self, key: tuple[str, int], disk: Sequence[SpeedWindow], net: Sequence[SpeedWindow]
    ) -> JobThrottles:
        """This process's throttles of one job revision or restore (``key``): ``read``
        limits the disk (backup or restore speed), ``net`` the transfer speed."""
        found = self._throttles.get(key)
        if found is None:
            zone = self.settings.zone
            found = self._throttles[key] = JobThrottles(
                read=WindowedThrottle(rate_windows(disk), zone),
                net=WindowedThrottle(rate_windows(net), zone),
            )
        return found

    async def publish(self, event: Versioned) -> None:
        """Publish a run or restore event on the events exchange under its type's routing
        key and its stable message id."""
        name = type(event).__name__
        key = RUN_EVENT_KEYS.get(name) or RESTORE_EVENT_KEYS[name]
        await self.bus.publish("events", key, event, message_id=event_message_id(event))

    def reconnecting(
        self, opts: JobOptions | RestoreOptions, on_retry: OnRetry | None = None
    ) -> RunContext:
        """This context for one VM task of a job (or restore) with ``opts``: its catalog
        calls tried again while the catalog is lost, until the reconnect time
        (``on_retry`` told of each retry); throttles shared with the process's other
        tasks."""
        policy = catalog_policy(reconnect_s(opts, self.settings.reconnect_cap_s))
        return replace(self, catalog=self.catalog.reconnecting(policy, on_retry))

    @contextlib.asynccontextmanager
    async def platform(self, platform_id: str, opts: JobOptions) -> AsyncIterator[EdgeCloudClient]:
        """A client of ``platform_id`` with the job's request retries and reconnect time."""
        policy = reconnect_policy(opts, self.settings.reconnect_cap_s)
        async with self.platform_with(platform_id, policy) as client:
            yield client

    @contextlib.asynccontextmanager
    async def platform_with(
        self, platform_id: str, retry: RetryPolicy
    ) -> AsyncIterator[EdgeCloudClient]:
        """A client of ``platform_id`` whose requests are retried by ``retry``."""
        info, creds = await self.catalog.platform(platform_id)
        endpoint = PlatformEndpoint(
            address=info.address,
            port=info.port,
            ssl=info.ssl,
            access_key=creds.access_key,
            secret_key=Secret(creds.secret_key),
            ca_file=self.settings.ca_file,
        )
        async with EdgeCloudClient(endpoint=endpoint, retry=retry) as client:
            yield client

    @contextlib.asynccontextmanager
    async def pool(
        self, job: JobInfo, on_retry: OnRetry | None = None
    ) -> AsyncIterator[tuple[PoolHandle, ClientKeys]]:
        """The pool ``job`` writes to, with this host's token, secret and (plain) key;
        its requests retried within the job's reconnect time (``on_retry`` told of each)."""
        policy = reconnect_policy(job.spec.options, self.settings.reconnect_cap_s)
        async with self.pool_at(job.spec.target.pool, policy, on_retry) as opened:
            yield opened

    @contextlib.asynccontextmanager
    async def pool_at(
        self, ref: PoolRef, retry: RetryPolicy, on_retry: OnRetry | None = None
    ) -> AsyncIterator[tuple[PoolHandle, ClientKeys]]:
        """The pool ``ref`` with this host's files for it, its requests retried by ``retry``."""
        retried = replace(
            self.pool_access(ref), retry=retry, timeout_s=self.settings.node_timeout_s,
            on_retry=on_retry,
        )  # fmt: skip
        async with opened_pool(retried) as opened:
            yield opened

    def pool_access(self, ref: PoolRef) -> PoolAccess:
        folder = Path(self.settings.pool_dir)
        key_file = folder / f"{ref.name}.key"
        token_file = folder / f"{ref.name}.token"
        return PoolAccess(
            location=PoolLocation(url=ref.node_url),
            pool=ref.name,
            token=token_file.read_text().strip() if token_file.exists() else None,
            key=read_key(str(key_file)) if key_file.exists() else None,
            secret=read_secret_file(folder / f"{ref.name}.secret"),
            ca_file=self.settings.ca_file,
        )


def now() -> datetime:
    return datetime.now(UTC)
