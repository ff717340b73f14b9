"""Who may call what on the catalog, decided from the broker user alone (pure rules)."""

from __future__ import annotations

import pytest

from edgeback_catalog.principals import (
    RULES,
    Identities,
    Kind,
    Scope,
    Verdict,
    judge,
    parse_users,
    rule_of,
)
from edgeback_core.messages import backups as b
from edgeback_core.messages import catalog_rpc as names
from edgeback_core.messages import jobs as j

IDS = Identities(test=frozenset({"edgeback-test"}))


def test_broker_users_map_to_principals() -> None:
    assert IDS.principal_of("api").kind is Kind.API
    assert IDS.principal_of("scheduler").kind is Kind.SCHEDULER
    assert IDS.principal_of("catalog").kind is Kind.CATALOG
    assert IDS.principal_of("edgeback-test").kind is Kind.TEST
    host = IDS.principal_of("host-h1")
    assert (host.kind, host.host_id) == (Kind.HOST, "h1")
    for stranger in ("guest", "host-", "hostess", "API"):
        assert IDS.principal_of(stranger).kind is Kind.UNKNOWN, stranger
    assert Identities().principal_of("edgeback-test").kind is Kind.UNKNOWN  # not by default


def test_parse_users_splits_on_commas_and_spaces() -> None:
    assert parse_users(" api, api2 ,,") == frozenset({"api", "api2"})
    assert parse_users("") == frozenset()


def _verdict(user: str, rpc: str, *, named: str | None = None, role: str | None = None) -> Verdict:
    return judge(IDS.principal_of(user), rule_of(rpc), user=named, role=role)


@pytest.mark.parametrize("caller", ["api", "scheduler", "catalog", "host-h1", "edgeback-test"])
def test_a_claimed_role_is_refused_from_anyone(caller: str) -> None:
    for role in ("admin", "service"):
        assert _verdict(caller, names.HOST_LIST, role=role).refused


def test_only_the_api_speaks_for_users() -> None:
    assert _verdict("api", names.AUDIT_LIST, named="alice") == Verdict(user="alice")
    for caller in ("host-h1", "scheduler", "catalog", "guest"):
        assert "only the API" in _verdict(caller, names.AUDIT_LIST, named="root").refused
    assert _verdict("api", b.VM_START, named="alice").refused  # users never drive VM tasks
    assert _verdict("api", names.AUDIT_LIST).refused  # the API itself is nobody


def test_hosts_call_what_a_host_needs_for_their_own_resources() -> None:
    assert _verdict("host-h1", b.VM_START) == Verdict(scope=Scope.RUN)
    assert _verdict("host-h1", names.PLATFORM_CREDENTIALS) == Verdict(scope=Scope.PLATFORM)
    assert _verdict("host-h1", b.BACKUP_SET_BASE) == Verdict(scope=Scope.JOB)
    assert _verdict("host-h1", b.LEASE_ACQUIRE) == Verdict(scope=Scope.ANY)
    # what a worker reads while it backs up a VM
    assert _verdict("host-h1", names.PLATFORM_GET) == Verdict(scope=Scope.PLATFORM)
    assert _verdict("host-h1", names.STORAGE_LIST) == Verdict(scope=Scope.PLATFORM)
    assert _verdict("host-h1", b.BACKUP_SET_LIST) == Verdict(scope=Scope.JOB)
    assert _verdict("host-h1", b.BACKUP_SET_GET) == Verdict(scope=Scope.BACKUP_SET)
    for rpc in (names.AUDIT_LIST, names.PLATFORM_REGISTER, names.USER_CREATE, j.JOB_CREATE):
        assert _verdict("host-h1", rpc).refused, rpc


def test_the_scheduler_reads_jobs_and_starts_runs_only() -> None:
    for rpc in (j.JOB_GET, j.JOB_LIST, b.RUN_START):
        assert _verdict("scheduler", rpc) == Verdict(), rpc
    for rpc in (b.VM_START, names.PLATFORM_CREDENTIALS, names.AUDIT_LIST, j.JOB_DELETE):
        assert _verdict("scheduler", rpc).refused, rpc


def test_unknown_users_call_nothing_and_unlisted_rpcs_need_a_user() -> None:
    for rpc in [*RULES, names.HOST_LIST, "catalog.something.new"]:
        assert _verdict("guest", rpc).refused, rpc
        assert _verdict("host-h1", rpc).refused or rpc in RULES, rpc
    assert _verdict("edgeback-test", "catalog.something.new") == Verdict()
