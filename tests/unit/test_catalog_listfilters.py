"""The query clauses of the catalog's filtered lists (``listfilters``) and the API's
filter types: each filter one clause, text escaped, empty time ranges refused."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import get_args

import pytest

from edgeback_api.wire import RestoreEventType, RunEventType
from edgeback_catalog.listfilters import (
    audit_filters,
    between,
    event_filters,
    job_filters,
    restore_filters,
    run_filters,
    storage_filters,
)
from edgeback_core.errors import InvalidInputError
from edgeback_core.messages import backups as b
from edgeback_core.messages import catalog as m
from edgeback_core.messages import restores as r
from edgeback_core.messages import runs

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
T1 = T0 + timedelta(hours=1)
ME = m.ActorRef(user="root")


def test_a_time_range_is_since_inclusive_until_exclusive_and_never_empty() -> None:
    names = ("since", "until")
    assert between("at", None, None, names=names) == {}
    assert between("at", T0, None, names=names) == {"at": {"$gte": T0}}
    assert between("at", T0, T1, names=names) == {"at": {"$gte": T0, "$lt": T1}}
    for since, until in ((T1, T0), (T0, T0)):
        with pytest.raises(InvalidInputError) as refused:
            between("at", since, until, names=names)
        assert refused.value.details["field"] == "since"


def test_run_filters_are_one_clause_each_and_the_old_cursor_narrows_the_range() -> None:
    assert run_filters(b.RunList(actor=ME)) == {}
    query = run_filters(
        b.RunList(actor=ME, state="failed", host_id="h1", backup_type="full", created_after=T0)
    )
    assert query == {
        "created_at": {"$gte": T0},
        "state": "failed",
        "host_id": "h1",
        "backup_type": "full",
    }
    later = T1 + timedelta(hours=1)
    both = run_filters(b.RunList(actor=ME, before=T1, created_before=later))
    assert both == {"created_at": {"$lt": T1}}


def test_audit_filters_match_an_action_or_a_prefix_ending_in_a_dot() -> None:
    query = audit_filters(m.AuditList(by="root", action="job.created", resource="job/1"))
    assert query == {"actor": "root", "action": "job.created", "resource": "job/1"}
    prefix = audit_filters(m.AuditList(action="job.", since=T0, until=T1))["action"]["$regex"]
    assert prefix == "^job\\." and re.match(prefix, "job.created")
    assert not re.match(prefix, "jobXcreated")
    assert audit_filters(m.AuditList(since=T0)) == {"at": {"$gte": T0}}


def test_restore_filters_name_the_spec_fields_the_restore_is_stored_with() -> None:
    req = r.RestoreList(actor=ME, host_id="h1", backup_set_id="s1", created_before=T1)
    assert restore_filters(req) == {
        "created_at": {"$lt": T1},
        "spec.options.host_id": "h1",
        "spec.backup_set_ids": "s1",
    }


def test_text_filters_are_escaped_and_case_blind() -> None:
    name = job_filters(name="a.b(", enabled=False, platform_id="p1")
    assert name == {
        "name": {"$regex": re.escape("a.b("), "$options": "i"},
        "enabled": False,
        "platform_ids": "p1",
    }
    assert job_filters(name="", enabled=None, platform_id=None) == {}
    assert storage_filters(name=None, pool="rbd") == {"pool": "rbd"}


def test_event_filters_bound_the_log_key_by_time() -> None:
    query = event_filters("VmFinished", T0)
    assert query["type"] == "VmFinished"
    # a key is the event's time then its message id: every key of T0 sorts after the bound
    assert query["key"]["$gte"] <= "2024-05-01T12:00:00.000000Z|m1"
    assert query["key"]["$gte"] > "2024-05-01T11:59:59.999999Z|m1"
    assert event_filters(None, None) == {}


def test_the_event_type_filters_name_every_event() -> None:
    def names(union: object) -> set[str]:
        return {kind.__name__ for kind in get_args(union)}

    assert set(get_args(RunEventType)) == names(runs.RunEvent)
    assert set(get_args(RestoreEventType)) == names(r.RestoreEvent)
