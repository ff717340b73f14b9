"""A bounded property-based fuzz run (schemathesis) of the API, driven by the OpenAPI
document it serves at ``/api/v1/openapi.json``, as an admin (bearer token) against a
live API: the app on 127.0.0.1 with a real catalog over RabbitMQ, on a catalog DB
server of the test's own (the one ``serve --all`` starts), so that the digests below
are not queued behind other tests' database traffic.

For every operation, schemathesis draws schema-valid (positive) and schema-invalid
(negative) requests; each answer must
- never be a 5xx (``not_a_server_error``);
- conform to the document: a documented status, its content type
  (``application/problem+json`` for errors), a body valid against its schema
  (``status_code_conformance``, ``content_type_conformance``,
  ``response_schema_conformance``, ``response_headers_conformance``);
- reject negative data with a 4xx (``negative_data_rejection``), and, when it succeeded,
  be refused without the token or with a wrong one (``ignored_auth``);
- when it is a 4xx, have changed nothing: the digest of the catalog's database (every
  document of every collection: ``dbHash``, and the count of the empty collections)
  is the same before and after. A failed login is the one rejection that writes, by
  design: its counters in ``login_failures`` and one ``user.login_failed`` audit entry,
  nothing else. Reads must change nothing whatever their answer: they are checked in
  batches (the digest before the next write and at the end of each operation), writes
  one by one.

Not checked: ``positive_data_acceptance`` (that every schema-valid request is
accepted). The catalog enforces rules the document does not state (the syntax of
names, printable text, host names, cursors only the API hands out, "at least one of"
filters, the job rules of ``edgeback_core.jobrules``) and answers them with
``400 invalid_input`` naming the field, or ``422 unknown_reference`` for what does not
exist: documented answers, checked as such above.

No route is excluded. ``POST /auth/logout`` revokes the token it is sent with, so each
of its cases signs out a token of its own (made by ``POST /auth/tokens``); the run's
token must still work at the end, so no case revoked it.

Bounds: ``EXAMPLES`` per operation and mode (about six requests per operation of the
document, however many it has: docs/api.md), no shrinking, no example database, and
``derandomize`` so that a CI failure replays the same requests; about 60-90 s on a
2-core machine.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from pymongo import MongoClient
from pymongo.database import Database
from schemathesis import GenerationMode
from schemathesis.core.result import Ok
from schemathesis.specs.openapi.checks import positive_data_acceptance
from tests.support.api_world import ADMIN, World, api_world

from edgeback_cli.serve_all import catalog_db

pytestmark = pytest.mark.integration
ADMIN_PASSWORD = "fuzz-admin-Kq4-" + uuid.uuid4().hex[:8]
EXAMPLES = {GenerationMode.POSITIVE: 4, GenerationMode.NEGATIVE: 2}
AUDIT = "audit_log"
LOGIN_TRACES = frozenset({AUDIT, "login_failures"})
READS = frozenset({"GET", "HEAD"})
Case = schemathesis.Case[Any]


@pytest.fixture
async def catalog_url(tmp_path: Path) -> AsyncIterator[str]:
    async with catalog_db(tmp_path / "catalogdb", 0) as url:
        yield url


@pytest.fixture
async def world(amqp_url: str, catalog_url: str) -> AsyncIterator[World]:
    async with api_world(amqp_url, catalog_url, ADMIN_PASSWORD) as running:
        yield running


@dataclass(frozen=True)
class CatalogState:
    digests: dict[str, str]
    """Per collection: its count, and the ``dbHash`` of its documents when it has any."""
    audit_count: int
    newest_audit: str


class Ledger:
    """The catalog's database, read directly (not through the API under test)."""

    def __init__(self, db: Database[dict[str, Any]]) -> None:
        self.db = db

    def state(self) -> CatalogState:
        # an empty collection can only change by an insert, which its count shows: only
        # the others are digested (dbHash costs a few ms per collection)
        counts = {n: self.db[n].estimated_document_count() for n in self.db.list_collection_names()}
        filled = sorted(n for n, count in counts.items() if count)
        hashes = self.db.command("dbHash", collections=filled)["collections"] if filled else {}
        newest = self.db[AUDIT].find_one({}, sort=[("_id", -1)]) or {"_id": ""}
        return CatalogState(
            digests={n: f"{counts[n]}:{hashes.get(n, '')}" for n in counts},
            audit_count=counts.get(AUDIT, 0),
            newest_audit=str(newest["_id"]),
        )

    def audit_since(self, state: CatalogState) -> list[str]:
        return [e["action"] for e in self.db[AUDIT].find({"_id": {"$gt": state.newest_audit}})]


def changed(before: CatalogState, after: CatalogState) -> set[str]:
    names = before.digests.keys() | after.digests.keys()
    return {n for n in names if before.digests.get(n) != after.digests.get(n)}


@dataclass
class Fuzzer:
    base: str
    token: str = field(repr=False)
    ledger: Ledger
    known: CatalogState
    """The catalog's state after the last write (or check)."""
    session: requests.Session = field(default_factory=requests.Session)
    reads: list[str] = field(default_factory=list)
    """Reads sent since ``known`` was taken: none may have changed anything."""
    failures: list[str] = field(default_factory=list)
    sent: int = 0

    def one(self, case: Case) -> None:
        headers = {"Authorization": f"Bearer {self.token_for(case)}"}
        before = self.settled()
        response = case.call(base_url=self.base, session=self.session, headers=headers, timeout=60)
        self.sent += 1
        try:
            case.validate_response(
                response, headers=headers, excluded_checks=[positive_data_acceptance]
            )
        finally:
            status = response.status_code
            if case.method in READS:
                self.reads.append(f"{case.method} {case.formatted_path} -> {status}")
            else:
                self.known = self.ledger.state()
                if 400 <= status < 500:
                    self.check_unchanged(case, status, before, self.known)

    def token_for(self, case: Case) -> str:
        if not case.operation.path.endswith("/auth/logout"):
            return self.token
        made = self.session.post(
            f"{self.base}/api/v1/auth/tokens",
            json={"label": "fuzz-logout"},
            headers={"Authorization": f"Bearer {self.token}"},
            timeout=60,
        )
        assert made.status_code == 201, made.text
        self.settled()
        self.known = self.ledger.state()
        return str(made.json()["token"])

    def settled(self) -> CatalogState:
        """The state now, once the reads since the last check are shown to have changed nothing."""
        if self.reads:
            now = self.ledger.state()
            moved = changed(self.known, now)
            assert not moved, f"reads changed {sorted(moved)}: {self.reads}"
            self.known, self.reads = now, []
        return self.known

    def check_unchanged(
        self, case: Case, status: int, before: CatalogState, after: CatalogState
    ) -> None:
        allowed: frozenset[str] = frozenset()
        if case.operation.path.endswith("/auth/login") and status == 401:
            allowed = LOGIN_TRACES
            assert self.ledger.audit_since(before) == ["user.login_failed"]
            assert after.audit_count == before.audit_count + 1
        moved = changed(before, after) - allowed
        assert not moved, f"{case.method} {case.formatted_path} answered {status}, changed {moved}"


def fuzz(fuzzer: Fuzzer) -> int:
    """Every operation of the served document, in both modes; the number of operations."""
    schema = schemathesis.openapi.from_url(f"{fuzzer.base}/api/v1/openapi.json")
    operations = []
    for result in schema.get_all_operations():
        assert isinstance(result, Ok), f"schemathesis cannot read an operation: {result.err()}"
        operations.append(result.ok())
    for operation in operations:
        has_input = bool(operation.path_parameters or operation.query or operation.body)
        for mode, examples in EXAMPLES.items():
            if mode is GenerationMode.NEGATIVE and not has_input:
                continue  # nothing to make invalid

            @settings(
                max_examples=examples,
                deadline=None,
                database=None,
                derandomize=True,
                phases=[Phase.explicit, Phase.generate],
                suppress_health_check=list(HealthCheck),
            )
            @given(case=operation.as_strategy(generation_mode=mode))
            def run(case: Case) -> None:
                fuzzer.one(case)

            try:
                run()
                fuzzer.settled()
            except (AssertionError, BaseExceptionGroup) as exc:
                fuzzer.failures.append(f"{operation.label} ({mode.value}): {exc}")
    return len(operations)


async def test_fuzzing_the_openapi_document_finds_no_5xx_no_mismatch_and_no_change(
    world: World, catalog_url: str
) -> None:
    token = await world.login(ADMIN, ADMIN_PASSWORD)
    base = str(world.client.make_url("")).rstrip("/")
    client: MongoClient[dict[str, Any]] = MongoClient(catalog_url, tz_aware=True)
    try:
        ledger = Ledger(client[world.database])
        fuzzer = Fuzzer(base=base, token=token, ledger=ledger, known=ledger.state())
        operations = await asyncio.to_thread(fuzz, fuzzer)
    finally:
        client.close()
    assert not fuzzer.failures, "\n\n".join(fuzzer.failures)
    assert operations >= 40 and fuzzer.sent >= 4 * operations, (operations, fuzzer.sent)
    me = await world.client.get("/api/v1/auth/me", headers={"Authorization": f"Bearer {token}"})
    assert me.status == 200, "a fuzzed request revoked the run's own token"
