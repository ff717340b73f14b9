"""Who is calling the catalog, from the broker user RabbitMQ validated, and what each
caller may do: pure rules, no I/O (the gate in ``gate.py`` applies them).

A request's ``actor`` no longer says who asks: the broker user does. Only the API's
broker user may speak for an end user, by naming them (the catalog loads the user's
role and groups from its database); a backup host's user ``host-<id>`` may call only
what a host needs, and only for its own runs, restores, jobs and platforms; the scheduler reads
jobs and starts runs. A broker user that maps to nothing may call nothing.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping
from dataclasses import dataclass

from edgeback_core.ids import BackupHostId
from edgeback_core.messages import auth as a
from edgeback_core.messages import backups as b
from edgeback_core.messages import catalog_rpc as names
from edgeback_core.messages import jobs as j
from edgeback_core.messages import restores as rs
from edgeback_core.messages import retention as rt
from edgeback_core.messages import scheduling as s

_USERS = re.compile(r"[^\s,]+")


class Kind(enum.StrEnum):
    API = "api"
    SCHEDULER = "scheduler"
    HOST = "host"
    CATALOG = "catalog"
    TEST = "test"
    """The test suites' broker user: every service at once. Only when configured."""
    UNKNOWN = "unknown"


@dataclass(frozen=True, slots=True, kw_only=True)
class Principal:
    broker_user: str
    kind: Kind
    host_id: BackupHostId | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Identities:
    """Which broker users are which services (settings ``EDGEBACK_CATALOG_*_USERS``)."""

    api: frozenset[str] = frozenset({"api"})
    scheduler: frozenset[str] = frozenset({"scheduler"})
    catalog: frozenset[str] = frozenset({"catalog"})
    host_prefix: str = "host-"
    test: frozenset[str] = frozenset()
    """Never set in production: these users may do anything any service may."""

    def principal_of(self, broker_user: str) -> Principal:
        for kind, users in (
            (Kind.API, self.api),
            (Kind.SCHEDULER, self.scheduler),
            (Kind.CATALOG, self.catalog),
            (Kind.TEST, self.test),
        ):
            if broker_user in users:
                return Principal(broker_user=broker_user, kind=kind)
        host = broker_user.removeprefix(self.host_prefix)
        if self.host_prefix and host != broker_user and host:
            return Principal(broker_user=broker_user, kind=Kind.HOST, host_id=BackupHostId(host))
        return Principal(broker_user=broker_user, kind=Kind.UNKNOWN)


def parse_users(raw: str) -> frozenset[str]:
    """A comma-separated list of broker users (settings)."""
    return frozenset(_USERS.findall(raw))


class Scope(enum.StrEnum):
    """Which of a host's resources a request must concern (the gate loads it)."""

    ANY = "any"  # no resource of its own to check (leases)
    RUN = "run"  # ``run_id``: a run routed to the host
    JOB = "job"  # ``job_id``: a job whose target is the host
    PLATFORM = "platform"  # ``platform_id``: default backup host, or one of its jobs'
    BACKUP_SET = "backup_set"  # ``backup_set_id``: made by a job whose target is the host
    RESTORE = "restore"  # ``restore_id``: a restore whose backup host is the host


@dataclass(frozen=True, slots=True, kw_only=True)
class Rule:
    """Who may call one RPC: end users through the API (``users``), services speaking
    for themselves (``services``), backup hosts for their own ``host_scope``."""

    users: bool = True
    services: frozenset[Kind] = frozenset()
    host_scope: Scope | None = None


_SCHEDULER = frozenset({Kind.SCHEDULER})
_API = frozenset({Kind.API})

USER_ONLY = Rule()
"""Every RPC not listed below: an admin or operator through the API."""

RULES: Mapping[str, Rule] = {
    j.JOB_GET: Rule(services=_SCHEDULER, host_scope=Scope.JOB),
    j.JOB_LIST: Rule(services=_SCHEDULER),
    b.RUN_START: Rule(services=_SCHEDULER),
    b.RUN_DETAIL: Rule(host_scope=Scope.RUN),
    names.RUN_GET: Rule(host_scope=Scope.RUN),
    names.RUN_TRANSITION: Rule(users=False, host_scope=Scope.RUN),
    b.RUN_FINISH: Rule(users=False, host_scope=Scope.RUN),
    b.VM_PLAN: Rule(users=False, host_scope=Scope.RUN),
    b.VM_START: Rule(users=False, host_scope=Scope.RUN),
    b.VM_RENEW: Rule(users=False, host_scope=Scope.RUN),
    b.VM_FINISH: Rule(users=False, host_scope=Scope.RUN),
    b.DISK_COMMIT: Rule(users=False, host_scope=Scope.RUN),
    b.BACKUP_SET_BASE: Rule(users=False, host_scope=Scope.JOB),
    b.LEASE_ACQUIRE: Rule(users=False, host_scope=Scope.ANY),
    b.LEASE_RENEW: Rule(users=False, host_scope=Scope.ANY),
    b.LEASE_RELEASE: Rule(users=False, host_scope=Scope.ANY),
    # a restore, run by the workers of its backup host (docs/restores.md)
    rs.RESTORE_GET: Rule(host_scope=Scope.RESTORE),
    rs.RESTORE_TRANSITION: Rule(users=False, host_scope=Scope.RESTORE),
    rs.RESTORE_VM_PLAN: Rule(users=False, host_scope=Scope.RESTORE),
    rs.RESTORE_VM_START: Rule(users=False, host_scope=Scope.RESTORE),
    rs.RESTORE_VM_RENEW: Rule(users=False, host_scope=Scope.RESTORE),
    rs.RESTORE_VM_FINISH: Rule(users=False, host_scope=Scope.RESTORE),
    names.PLATFORM_CREDENTIALS: Rule(users=False, host_scope=Scope.PLATFORM),
    # what a worker reads while it backs up a VM: the platform's address, its Ceph
    # storages, and the job's backup sets of the VM (snapshots it may release)
    names.PLATFORM_GET: Rule(host_scope=Scope.PLATFORM),
    names.STORAGE_LIST: Rule(host_scope=Scope.PLATFORM),
    b.BACKUP_SET_LIST: Rule(host_scope=Scope.JOB),
    b.BACKUP_SET_GET: Rule(host_scope=Scope.BACKUP_SET),
    # the API for nobody yet: a login, a bearer token to resolve, the first admin
    a.LOGIN: Rule(users=False, services=_API),
    a.TOKEN_RESOLVE: Rule(users=False, services=_API),
    a.USER_BOOTSTRAP: Rule(users=False, services=_API),
    s.LEADER_ACQUIRE: Rule(users=False, services=_SCHEDULER),
    s.LEADER_RELEASE: Rule(users=False, services=_SCHEDULER),
    s.SCHEDULE_DUE: Rule(users=False, services=_SCHEDULER),
    s.SCHEDULE_MARK_FIRED: Rule(users=False, services=_SCHEDULER),
    s.SCHEDULE_QUEUE_RESTORES: Rule(users=False, services=_SCHEDULER),
    rt.RETENTION_JOBS: Rule(users=False, services=_SCHEDULER),
    rt.RETENTION_PLAN: Rule(users=False, services=_SCHEDULER),
    rt.RETENTION_CONFIRM: Rule(users=False, services=_SCHEDULER),
}


def rule_of(rpc: str) -> Rule:
    return RULES.get(rpc, USER_ONLY)


@dataclass(frozen=True, slots=True, kw_only=True)
class Verdict:
    """What the gate does next: load ``user`` (the API speaks for them), check the host's
    ``scope``, admit the caller as a service (neither), or refuse (``refused``: why)."""

    user: str | None = None
    scope: Scope | None = None
    refused: str = ""


def judge(principal: Principal, rule: Rule, *, user: str | None, role: str | None) -> Verdict:
    """The verdict on a request naming ``user`` (or nobody) and claiming ``role``."""
    if role is not None:
        return Verdict(refused=f"a request may not claim a role (claimed {role!r})")
    if user is not None:
        return _speaking_for(principal, rule, user)
    kind = principal.kind
    service_rpc = bool(rule.services) or rule.host_scope is not None
    if kind is Kind.TEST or kind in rule.services or (kind is Kind.CATALOG and service_rpc):
        return Verdict()
    if kind is Kind.HOST and rule.host_scope is not None:
        return Verdict(scope=rule.host_scope)
    return Verdict(refused=f"{kind} callers may not call this without naming a user")


def _speaking_for(principal: Principal, rule: Rule, user: str) -> Verdict:
    if principal.kind not in (Kind.API, Kind.TEST):
        return Verdict(refused=f"only the API may speak for a user (named {user!r})")
    if not rule.users:
        return Verdict(refused="reserved to edgeback services")
    return Verdict(user=user)
