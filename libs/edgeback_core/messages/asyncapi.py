"""An AsyncAPI 3.0 document of what edgeback publishes and accepts on RabbitMQ (X9).

Built from the same msgspec types that encode and decode the messages (their JSON
Schemas come from ``msgspec.json.schema_components``), so the document cannot say
something the code does not do. ``docs/asyncapi.json`` is this module's output, and a
test fails when the two differ: regenerate it with
``python -m edgeback_core.messages.asyncapi > docs/asyncapi.json``.

Pure: no I/O but the ``__main__`` print.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import msgspec

SCHEMA_REF = "#/components/schemas/{name}"


@dataclass(frozen=True, slots=True, kw_only=True)
class Channel:
    """One routing key on one of edgeback's topic exchanges and the message it carries.

    ``action`` is from an integrator's side: ``receive`` for what edgeback publishes
    (events), ``send`` for what edgeback accepts (commands).
    """

    exchange: Literal["commands", "events"]
    routing_key: str
    message: type[msgspec.Struct]
    summary: str
    action: Literal["send", "receive"] = "receive"

    @property
    def channel_id(self) -> str:
        return self.routing_key.replace(".", "_").replace("*", "any").replace("#", "all")


def document(
    channels: Sequence[Channel], *, version: str, exchange_prefix: str = ""
) -> dict[str, Any]:
    """The AsyncAPI 3.0 document of ``channels`` (JSON-ready, keys in a stable order)."""
    types = sorted({c.message for c in channels}, key=lambda t: t.__name__)
    _, schemas = msgspec.json.schema_components(types, ref_template=SCHEMA_REF)
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "edgeback events and commands",
            "version": version,
            "description": (
                "Messages on RabbitMQ topic exchanges. Bodies are JSON; fields may be added "
                "in a later version (consumers must ignore unknown fields), never removed "
                "or changed in meaning without a new message type."
            ),
        },
        "defaultContentType": "application/json",
        "servers": {
            "broker": {
                "host": "rabbitmq.example:5671",
                "protocol": "amqps",
                "description": "each client connects as its own RabbitMQ user",
            }
        },
        "channels": {c.channel_id: _channel(c, exchange_prefix) for c in channels},
        "operations": {_operation_id(c): _operation(c) for c in channels},
        "components": {
            "messages": {t.__name__: _message(t) for t in types},
            "schemas": dict(sorted(schemas.items())),
        },
    }


def _channel(channel: Channel, prefix: str) -> dict[str, Any]:
    name = channel.message.__name__
    return {
        "address": channel.routing_key,
        "summary": channel.summary,
        "messages": {name: {"$ref": f"#/components/messages/{name}"}},
        "bindings": {
            "amqp": {
                "is": "routingKey",
                "exchange": {
                    "name": f"{prefix}edgeback.{channel.exchange}",
                    "type": "topic",
                    "durable": True,
                    "autoDelete": False,
                    "vhost": "/",
                },
                "bindingVersion": "0.3.0",
            }
        },
    }


def _operation_id(channel: Channel) -> str:
    return f"{channel.action}_{channel.channel_id}"


def _operation(channel: Channel) -> dict[str, Any]:
    return {
        "action": channel.action,
        "channel": {"$ref": f"#/channels/{channel.channel_id}"},
        "summary": channel.summary,
    }


def _message(message_type: type[msgspec.Struct]) -> dict[str, Any]:
    doc = (message_type.__doc__ or "").strip()
    return {
        "name": message_type.__name__,
        "title": message_type.__name__,
        "summary": doc.splitlines()[0] if doc else message_type.__name__,
        "payload": {"$ref": SCHEMA_REF.format(name=message_type.__name__)},
        "bindings": {"amqp": {"deliveryMode": 2, "bindingVersion": "0.3.0"}},
    }


def render(doc: dict[str, Any]) -> str:
    """The document as the checked-in file holds it."""
    return json.dumps(doc, indent=2, sort_keys=False) + "\n"
