"""The AsyncAPI document: generated from the message types, checked in, and able to
validate real message bodies (what an integrator's consumer would do with it)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import msgspec
import pytest
from tests.support.asyncapi import payload_validator

from edgeback_core.bus.topology import HOST_HEARTBEAT
from edgeback_core.messages.asyncapi import Channel, document
from edgeback_core.messages.base import Message, encode
from edgeback_core.messages.catalog import HostHeartbeat
from edgeback_core.messages.channels import CHANNELS, asyncapi_json

DOC_PATH = Path(__file__).resolve().parents[2] / "docs" / "asyncapi.json"


def test_the_checked_in_document_is_what_the_code_generates() -> None:
    assert DOC_PATH.read_text() == asyncapi_json(), (
        "docs/asyncapi.json is stale: regenerate it with "
        "python -m edgeback_core.messages.channels > docs/asyncapi.json"
    )


def test_every_channel_has_an_operation_and_every_reference_resolves() -> None:
    doc = json.loads(asyncapi_json())
    assert doc["asyncapi"] == "3.0.0"
    assert len(doc["channels"]) == len(CHANNELS)
    for op in doc["operations"].values():
        assert op["action"] in ("send", "receive")
        assert op["channel"]["$ref"].removeprefix("#/channels/") in doc["channels"]
    refs = _refs(doc)
    assert refs
    for ref in refs:
        node: Any = doc
        for part in ref.removeprefix("#/").split("/"):
            node = node[part]
        assert isinstance(node, dict)


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        own = [node["$ref"]] if "$ref" in node else []
        return own + [r for v in node.values() for r in _refs(v)]
    if isinstance(node, list):
        return [r for v in node for r in _refs(v)]
    return []


def test_a_real_body_validates_and_a_broken_one_does_not() -> None:
    doc = json.loads(asyncapi_json())
    validator = payload_validator(doc, HOST_HEARTBEAT)
    body = json.loads(encode(HostHeartbeat(host_id="h1", hostname="backup-1")))
    validator.validate(body)
    with pytest.raises(jsonschema.ValidationError):
        validator.validate({"hostname": "backup-1"})  # host_id is required
    with pytest.raises(jsonschema.ValidationError):
        validator.validate({"host_id": 7, "hostname": "backup-1"})


class Nested(Message, frozen=True, kw_only=True):
    """A part."""

    size: int


class Sample(Message, frozen=True, kw_only=True):
    """Event: a sample.

    More text."""

    kind: str
    parts: tuple[Nested, ...] = ()


def test_nested_types_land_in_the_schemas_and_channels_share_a_message() -> None:
    channels = [
        Channel(exchange="events", routing_key="sample.event.a", message=Sample, summary="a"),
        Channel(exchange="events", routing_key="sample.event.*", message=Sample, summary="b"),
        Channel(
            exchange="commands",
            routing_key="sample.command.go",
            message=Nested,
            summary="c",
            action="send",
        ),
    ]
    doc = document(channels, version="9.9.9", exchange_prefix="t.")
    assert set(doc["components"]["schemas"]) == {"Sample", "Nested"}
    assert set(doc["components"]["messages"]) == {"Sample", "Nested"}
    assert doc["components"]["messages"]["Sample"]["summary"] == "Event: a sample."
    assert doc["channels"]["sample_event_any"]["address"] == "sample.event.*"
    exchange = doc["channels"]["sample_command_go"]["bindings"]["amqp"]["exchange"]
    assert exchange["name"] == "t.edgeback.commands"
    assert doc["operations"]["send_sample_command_go"]["action"] == "send"
    body = json.loads(msgspec.json.encode(Sample(kind="x", parts=(Nested(size=1),))))
    payload_validator(doc, "sample.event.a").validate(body)
    with pytest.raises(jsonschema.ValidationError):
        payload_validator(doc, "sample.event.a").validate({"kind": "x", "parts": [{"size": "1"}]})


def test_a_strict_validator_refuses_a_field_the_document_does_not_describe() -> None:
    doc = json.loads(asyncapi_json())
    body = json.loads(encode(HostHeartbeat(host_id="h1", hostname="backup-1")))
    payload_validator(doc, HOST_HEARTBEAT).validate({**body, "extra": 1})  # consumers ignore it
    payload_validator(doc, HOST_HEARTBEAT, strict=True).validate(body)
    with pytest.raises(jsonschema.ValidationError):
        payload_validator(doc, HOST_HEARTBEAT, strict=True).validate({**body, "extra": 1})
