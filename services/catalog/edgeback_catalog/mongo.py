"""The catalog's MongoDB adapter: the only module that imports PyMongo.

Opens an ``AsyncMongoClient``, brings the schema up to date at start-up (indexes are
created idempotently, then the ``schema_version`` document is bumped), and offers the
few operations the repositories need, each translating PyMongo errors into ours:
a duplicate key becomes :class:`NameTakenError` (unique name indexes) or
:class:`AlreadyExistsError` (ids), a lost server :class:`UnavailableError`. Documents
are plain dicts here; ``documents.py`` converts them to and from domain values.
Everything used also works on the ``mongoeco`` wire server (no change streams).
"""

from __future__ import annotations

import contextlib
import enum
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Self

import structlog
from pymongo import AsyncMongoClient, ReturnDocument, UpdateOne
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import (
    ConnectionFailure,
    DuplicateKeyError,
    ExecutionTimeout,
    PyMongoError,
    ServerSelectionTimeoutError,
)

from edgeback_core.errors import (
    AlreadyExistsError,
    ConflictError,
    DeadlineExceededError,
    NameTakenError,
    UnavailableError,
)

log = structlog.get_logger(__name__)

_SOCKET_TIMEOUT_MS = 60_000
"""Longest wait for one answer of the database: a server that stops answering fails the
call (``UnavailableError``), it never hangs the catalog."""

Doc = dict[str, Any]
SCHEMA_VERSION = 1


class Coll(enum.StrEnum):
    PLATFORMS = "platforms"
    CEPH_STORAGES = "ceph_storages"
    BACKUP_HOSTS = "backup_hosts"
    POOLS = "pools"
    JOBS = "jobs"
    RUNS = "runs"
    RUN_EVENTS = "run_events"
    RUN_LOG = "run_log"
    BACKUP_SETS = "backup_sets"
    DISK_VERSIONS = "disk_versions"
    USERS = "users"
    GROUPS = "groups"
    TOKENS = "tokens"
    AUDIT_LOG = "audit_log"
    LEASES = "leases"
    LOGIN_FAILURES = "login_failures"
    VM_TASKS = "vm_tasks"
    LEADERS = "leaders"
    RESTORES = "restores"
    RESTORE_VM_TASKS = "restore_vm_tasks"
    RESTORE_JOBS = "restore_jobs"
    SCHEMA = "schema"


@dataclass(frozen=True, slots=True)
class IndexSpec:
    coll: Coll
    keys: tuple[tuple[str, int], ...]
    unique: bool = False

    @property
    def name(self) -> str:
        suffix = "_unique" if self.unique else ""
        return "_".join(f"{k}_{d}" for k, d in self.keys) + suffix


def _ix(coll: Coll, *keys: str, unique: bool = False) -> IndexSpec:
    parsed = tuple((k.lstrip("-"), -1 if k.startswith("-") else 1) for k in keys)
    return IndexSpec(coll, parsed, unique)


INDEXES: tuple[IndexSpec, ...] = (
    _ix(Coll.PLATFORMS, "name", unique=True),
    _ix(Coll.PLATFORMS, "groups"),
    _ix(Coll.CEPH_STORAGES, "platform_id", "name", unique=True),
    _ix(Coll.BACKUP_HOSTS, "hostname"),
    _ix(Coll.POOLS, "node_url", "name", unique=True),
    _ix(Coll.POOLS, "host_id"),
    _ix(Coll.JOBS, "name", unique=True),
    _ix(Coll.JOBS, "platform_ids"),
    _ix(Coll.JOBS, "host_id", "name"),
    _ix(Coll.JOBS, "next_due", "_id"),
    _ix(Coll.RUNS, "job_id", "-created_at"),
    _ix(Coll.RUNS, "state"),
    _ix(Coll.RUN_EVENTS, "run_id", "seq", unique=True),
    _ix(Coll.RUN_LOG, "run_id", "key"),
    _ix(Coll.RUN_LOG, "job_id", "key"),
    _ix(Coll.RUN_LOG, "restore_id", "key"),
    _ix(Coll.BACKUP_SETS, "run_id"),
    _ix(Coll.BACKUP_SETS, "vm_id", "-created_at"),
    _ix(Coll.DISK_VERSIONS, "backup_set_id", "disk_id", unique=True),
    _ix(Coll.DISK_VERSIONS, "run_id"),
    _ix(Coll.USERS, "name", unique=True),
    _ix(Coll.USERS, "groups"),
    _ix(Coll.GROUPS, "name", unique=True),
    _ix(Coll.TOKENS, "token_hash", unique=True),
    _ix(Coll.TOKENS, "user"),
    _ix(Coll.AUDIT_LOG, "-at"),
    _ix(Coll.AUDIT_LOG, "resource", "-at"),
    _ix(Coll.LEASES, "scope", "slot", unique=True),
    _ix(Coll.LEASES, "scope", "holder"),
    _ix(Coll.VM_TASKS, "run_id", "vm_id", unique=True),
    _ix(Coll.BACKUP_SETS, "vm_id", "job_id", "-taken_at"),
    _ix(Coll.BACKUP_SETS, "complete", "-taken_at"),
    _ix(Coll.BACKUP_SETS, "job_id", "retention_state"),
    _ix(Coll.RESTORES, "state", "-created_at"),
    _ix(Coll.RESTORES, "spec.options.host_id", "-created_at"),
    _ix(Coll.RESTORES, "state", "due_at", "_id"),
    _ix(Coll.RESTORES, "job_id", "-created_at"),
    _ix(Coll.RESTORE_JOBS, "name", unique=True),
    _ix(Coll.RESTORE_JOBS, "host_id", "name"),
    _ix(Coll.RESTORE_VM_TASKS, "restore_id", "backup_set_id", unique=True),
    # the filters of the lists across jobs (``listfilters``)
    _ix(Coll.RUNS, "-created_at"),
    _ix(Coll.RUNS, "host_id", "-created_at"),
    _ix(Coll.AUDIT_LOG, "actor", "-_id"),
    _ix(Coll.AUDIT_LOG, "action", "-_id"),
    _ix(Coll.RESTORES, "spec.backup_set_ids"),
)

OBSOLETE_INDEXES: tuple[tuple[Coll, str], ...] = (
    (Coll.POOLS, "name_1_unique"),
    (Coll.RESTORES, "created_by_1_created_at_-1"),
)
"""Dropped at start-up when present. Pools are unique per storage node, not by name (no
pool was stored before that index changed). Operators see restores by their backup
host, no longer by who created them."""


@contextlib.contextmanager
def translated(action: str) -> Iterator[None]:
    """Turn PyMongo errors raised inside into edgeback errors."""
    try:
        yield
    except DuplicateKeyError as exc:
        fields = sorted((exc.details or {}).get("keyPattern", {}))
        if fields and fields != ["_id"]:
            raise NameTakenError(f"{action}: name already taken", fields=fields) from exc
        raise AlreadyExistsError(f"{action}: already exists") from exc
    except ExecutionTimeout as exc:
        raise DeadlineExceededError(f"{action}: the catalog DB timed out") from exc
    except (ConnectionFailure, ServerSelectionTimeoutError) as exc:
        raise UnavailableError(f"{action}: the catalog DB is unreachable: {exc}") from exc
    except PyMongoError as exc:
        raise UnavailableError(f"{action}: catalog DB error: {exc}") from exc


class CatalogDb:
    """One database of the catalog and the operations the repositories use."""

    def __init__(self, client: AsyncMongoClient[Doc], database: str) -> None:
        self._client = client
        self._db: AsyncDatabase[Doc] = client[database]
        self.name = database

    @classmethod
    @contextlib.asynccontextmanager
    async def open(cls, url: str, database: str, *, timeout_ms: int = 5000) -> AsyncIterator[Self]:
        """Connect, migrate the schema, and close the client on exit."""
        client: AsyncMongoClient[Doc] = AsyncMongoClient(
            url,
            serverSelectionTimeoutMS=timeout_ms,
            socketTimeoutMS=_SOCKET_TIMEOUT_MS,
            tz_aware=True,
            connect=False,
        )
        try:
            db = cls(client, database)
            await db.migrate()
            yield db
        finally:
            await client.close()

    async def ping(self) -> bool:
        with translated("ping"):
            await self._db.command("ping")
        return True

    async def migrate(self) -> int:
        """Bring indexes and the schema version up to date; safe to run at every start."""
        with translated("migrate"):
            for coll, name in OBSOLETE_INDEXES:
                if name in await self._db[coll].index_information():
                    await self._db[coll].drop_index(name)
            for spec in INDEXES:
                await self._db[spec.coll].create_index(
                    list(spec.keys), unique=spec.unique, name=spec.name
                )
            doc = await self._db[Coll.SCHEMA].find_one_and_update(
                {"_id": "schema_version"},
                {"$max": {"version": SCHEMA_VERSION}},
                upsert=True,
                return_document=ReturnDocument.AFTER,
            )
        version = int(doc["version"]) if doc else SCHEMA_VERSION
        log.info("catalog.schema.migrated", database=self.name, version=version)
        return version

    async def schema_version(self) -> int:
        doc = await self.find_one(Coll.SCHEMA, {"_id": "schema_version"})
        return int(doc["version"]) if doc else 0

    async def index_names(self, coll: Coll) -> set[str]:
        with translated("index_information"):
            return set(await self._db[coll].index_information())

    async def insert(self, coll: Coll, doc: Mapping[str, Any]) -> None:
        with translated(f"insert into {coll}"):
            await self._db[coll].insert_one(dict(doc))

    async def insert_many(self, coll: Coll, docs: Sequence[Mapping[str, Any]]) -> None:
        """Insert ``docs`` with one command, in order, stopping at the first error (tests
        and tools: seeding thousands of documents; a duplicate is ``catalog DB error``)."""
        if docs:
            with translated(f"insert many into {coll}"):
                await self._db[coll].insert_many([dict(doc) for doc in docs], ordered=True)

    async def find_one(self, coll: Coll, query: Mapping[str, Any]) -> Doc | None:
        with translated(f"read {coll}"):
            return await self._db[coll].find_one(dict(query))

    async def find(
        self,
        coll: Coll,
        query: Mapping[str, Any],
        *,
        sort: Sequence[tuple[str, int]] = (("_id", 1),),
        limit: int = 0,
    ) -> list[Doc]:
        with translated(f"list {coll}"):
            cursor = self._db[coll].find(dict(query)).sort(list(sort)).limit(limit)
            return [doc async for doc in cursor]

    async def count(self, coll: Coll, query: Mapping[str, Any]) -> int:
        with translated(f"count {coll}"):
            return await self._db[coll].count_documents(dict(query))

    async def update(
        self, coll: Coll, query: Mapping[str, Any], change: Mapping[str, Any]
    ) -> Doc | None:
        """Apply ``change`` to the one document matching ``query``; the document after,
        or None when nothing matched (the condition in ``query`` did not hold)."""
        with translated(f"update {coll}"):
            return await self._db[coll].find_one_and_update(
                dict(query), dict(change), return_document=ReturnDocument.AFTER
            )

    async def update_each(
        self, coll: Coll, updates: Sequence[tuple[Mapping[str, Any], Mapping[str, Any]]]
    ) -> int:
        """Apply each ``(query, change)`` to the one document its query matches, all in one
        command (unordered, each document atomically); how many queries matched. A query
        that matched nothing changed nothing: its condition did not hold."""
        if not updates:
            return 0
        with translated(f"update each in {coll}"):
            result = await self._db[coll].bulk_write(
                [UpdateOne(dict(query), dict(change)) for query, change in updates],
                ordered=False,
            )
        return result.matched_count

    async def upsert(self, coll: Coll, query: Mapping[str, Any], change: Mapping[str, Any]) -> Doc:
        with translated(f"upsert {coll}"):
            doc = await self._db[coll].find_one_and_update(
                dict(query), dict(change), upsert=True, return_document=ReturnDocument.AFTER
            )
        if doc is None:  # an upsert always returns the document it wrote
            raise ConflictError(f"upsert into {coll} returned nothing")
        return doc

    async def delete(self, coll: Coll, query: Mapping[str, Any]) -> bool:
        with translated(f"delete in {coll}"):
            result = await self._db[coll].delete_one(dict(query))
        return result.deleted_count == 1

    async def delete_all(self, coll: Coll, query: Mapping[str, Any]) -> int:
        """Delete every document matching ``query``; how many there were."""
        with translated(f"delete all in {coll}"):
            result = await self._db[coll].delete_many(dict(query))
        return result.deleted_count

    async def drop(self) -> None:
        """Drop the whole database (tests and tools only)."""
        with translated("drop database"):
            await self._client.drop_database(self.name)
