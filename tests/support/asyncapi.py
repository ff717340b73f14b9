"""Validating message bodies against an AsyncAPI document, as an integrator's consumer
would: the JSON Schema of the payload of the channel a routing key names."""

from __future__ import annotations

import copy
from typing import Any

import jsonschema


def payload_validator(
    doc: dict[str, Any], routing_key: str, *, strict: bool = False
) -> jsonschema.Validator:
    """A JSON Schema validator for the payload of the channel with ``routing_key``.

    ``strict``: a field the document does not describe is an error too. Consumers must
    ignore unknown fields, so the schemas allow them; a test of what the services send
    uses ``strict`` to catch a field added to a message but missing from the document.
    """
    (channel,) = (c for c in doc["channels"].values() if c["address"] == routing_key)
    (ref,) = (m["$ref"] for m in channel["messages"].values())
    message = doc["components"]["messages"][ref.rsplit("/", 1)[1]]
    components = doc["components"]
    if strict:
        components = copy.deepcopy(components)
        for schema in components["schemas"].values():
            if "properties" in schema:
                schema["additionalProperties"] = False
    schema = {**message["payload"], "components": components}
    return jsonschema.Draft202012Validator(schema)
