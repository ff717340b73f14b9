"""The node's OpenAPI document describes exactly the routes it serves."""

from __future__ import annotations

import json
from pathlib import Path

from edgeback_dedup.app import route_table

DOC = Path(__file__).resolve().parents[2] / "docs" / "storage-node.openapi.json"


def test_the_document_and_the_route_table_list_the_same_operations() -> None:
    doc = json.loads(DOC.read_text())
    documented = {(method.upper(), path) for path, item in doc["paths"].items() for method in item}
    served = {(method, path) for method, path, _, _ in route_table()}
    assert documented == served


def test_every_path_parameter_is_declared() -> None:
    doc = json.loads(DOC.read_text())
    for path, item in doc["paths"].items():
        wanted = {part[1:-1] for part in path.split("/") if part.startswith("{")}
        for operation in item.values():
            declared = {p["name"] for p in operation.get("parameters", []) if p["in"] == "path"}
            assert declared == wanted, (path, operation["operationId"])
