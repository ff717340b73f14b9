"""Run commands and events: tagged, versioned, decodable as one union, each routed."""

from __future__ import annotations

import json
import typing
from datetime import UTC, datetime

import jsonschema
import msgspec
import pytest
from tests.support.asyncapi import payload_validator
from tests.unit.test_asyncapi import DOC_PATH

from edgeback_core.bus.topology import RUN_EVENT_KEYS, START_RUN, topic_matches
from edgeback_core.messages import runs as r
from edgeback_core.messages.base import decoder, encode
from edgeback_worker.eligibility import Refusal, Skip

AT = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
VM = r.VmRef(platform_id="p", vm_id="v1", name="web", physical_host_id="hv1")


def all_events() -> list[msgspec.Struct]:
    return [
        r.RunStarted(
            run_id="r", job_id="j", host_id="h", backup_type="full", vm_count=2,
            requested_by="u", at=AT,
        ),
        r.RunSkipped(
            job_id="j", requested_by="u", idempotency_key="k", code="job_busy", at=AT,
        ),
        r.VmStarted(run_id="r", job_id="j", vm=VM, attempt=1, worker_id="w", at=AT),
        r.RunProgress(run_id="r", job_id="j", bytes_done=1, bytes_total=2, rate_bps=3, at=AT),
        r.VmFinished(run_id="r", job_id="j", vm=VM, attempt=1, outcome="succeeded", at=AT),
        r.VmSkipped(run_id="r", job_id="j", vm=VM, code=r.SKIP_LOW_FREE_SPACE, at=AT),
        r.VmRefused(run_id="r", job_id="j", vm=VM, code=r.REFUSE_SHELVED, at=AT),
        r.RunFinished(run_id="r", job_id="j", outcome="partially_succeeded", at=AT),
        r.BackupSetCreated(
            backup_set_id="b", run_id="r", job_id="j", vm=VM, backup_type="incremental",
            pool_node_url="http://n", pool_name="p", disk_count=2, taken_at=AT, at=AT,
        ),
    ]  # fmt: skip


def test_every_event_round_trips_through_the_union_with_its_tag_and_version() -> None:
    events = all_events()
    assert {type(e).__name__ for e in events} == {c.__name__ for c in typing.get_args(r.RunEvent)}
    for event in events:
        body = msgspec.json.decode(encode(event))
        assert body["type"] == type(event).__name__ and body["version"] == 1
        assert decoder(r.RunEvent).decode(encode(event)) == event  # type: ignore[arg-type]
    assert set(RUN_EVENT_KEYS) == {type(e).__name__ for e in events}


def test_newer_fields_are_ignored_by_older_consumers() -> None:
    body = msgspec.json.encode(
        {
            "type": "StartRun",
            "version": 1,
            "job_id": "j",
            "requested_by": "scheduler",
            "idempotency_key": "2026-01-02T03:00",
            "priority": "high",
        }
    )
    command = decoder(r.StartRun).decode(body)
    assert command.idempotency_key == "2026-01-02T03:00" and command.backup_type is None


def test_routing_keys_follow_the_house_form_and_do_not_reach_worker_queues() -> None:
    for key in [START_RUN, *RUN_EVENT_KEYS.values()]:
        domain, kind, _name = key.split(".")
        assert kind in ("command", "event") and domain in ("run", "backup")
        assert not topic_matches("run.h1", key)


def test_reason_codes_are_disjoint_snake_case() -> None:
    codes = r.SKIP_REASONS | r.REFUSE_REASONS
    assert not r.SKIP_REASONS & r.REFUSE_REASONS
    assert all(c.replace("_", "").isalpha() and c.islower() for c in codes)


def test_the_workers_eligibility_codes_are_reason_codes_the_catalog_accepts() -> None:
    assert {c.value for c in Refusal} <= r.REFUSE_REASONS
    assert {c.value for c in Skip} <= r.SKIP_REASONS


def test_every_event_validates_against_the_asyncapi_document() -> None:
    doc = json.loads(DOC_PATH.read_text())
    for event in all_events():
        body = json.loads(encode(event))
        payload_validator(doc, RUN_EVENT_KEYS[type(event).__name__]).validate(body)
        with pytest.raises(jsonschema.ValidationError):
            payload_validator(doc, RUN_EVENT_KEYS[type(event).__name__]).validate(
                {**body, "run_id": 7, "job_id": 7}
            )
