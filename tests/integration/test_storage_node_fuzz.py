"""A bounded fuzz run of the node's HTTP API, driven by its OpenAPI document: never a 5xx.

Hypothesis draws an operation of ``docs/storage-node.openapi.json``, path and query
values (names that match the documented pattern, or hostile text), a token (scoped,
all-pool, admin, wrong, none) and a body (random bytes, a valid or mangled JSON pool,
sized or not) and sends it to a node running as its own process. Every answer must be
below 500 and, when it is an error, a problem body with a ``code``.
"""

from __future__ import annotations

import asyncio
import http.client
import json
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tests.support.processes import node_process_async
from tests.support.storage_node import (
    ADMIN_TOKEN,
    TOKEN,
    make_pools,
    scoped_token,
    write_tokens_file,
)

DOC = json.loads(
    (Path(__file__).resolve().parents[2] / "docs/storage-node.openapi.json").read_text()
)
OPERATIONS = [
    (method.upper(), path, operation)
    for path, item in DOC["paths"].items()
    for method, operation in item.items()
]
EXAMPLES = 400

tokens = st.sampled_from(
    [TOKEN, ADMIN_TOKEN, scoped_token("host-dd"), scoped_token("reader-dd"), "x" * 30, "", None]
)
hostile = st.text(min_size=0, max_size=40) | st.sampled_from(["..", ".", "%2F", "a/../b", "\x00"])


def values(schema: dict[str, Any], name: str) -> st.SearchStrategy[str]:
    known = {"pool": ["dd", "std", "tiny"], "vm": ["vm-1"], "disk": ["disk-0"], "version": ["v1"]}
    good = st.from_regex(schema["pattern"], fullmatch=True) if "pattern" in schema else st.text()
    return st.sampled_from(known.get(name, ["x"])) | good | hostile


@st.composite
def requests(draw: st.DrawFn) -> tuple[str, str, bytes | None, dict[str, str]]:
    method, template, operation = draw(st.sampled_from(OPERATIONS))
    path, query = template, {}
    for param in operation.get("parameters", []):
        value = draw(values(param["schema"], param["name"]))
        if param["in"] == "path":
            path = path.replace("{" + param["name"] + "}", quote(value, safe="") or "x")
        elif draw(st.booleans()):
            query[param["name"]] = value
    if query:
        path += "?" + urlencode(query)
    body = None
    if "requestBody" in operation:
        pool = {"name": draw(values({}, "pool")), "kind": draw(st.sampled_from(["dedup", "x"]))}
        body = draw(st.binary(max_size=5000) | st.just(json.dumps(pool).encode()))
    headers = {}
    token = draw(tokens)
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    return method, path, body, headers


def fuzz(port: int) -> None:
    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    )
    @given(requests())
    def one(request: tuple[str, str, bytes | None, dict[str, str]]) -> None:
        method, path, body, headers = request
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        try:
            connection.request(method, path, body=body, headers=headers)
            answer = connection.getresponse()
            data = answer.read()
        finally:
            connection.close()
        assert answer.status < 500, (method, path, answer.status, data[:300])
        if answer.status >= 400:
            assert json.loads(data)["code"], (method, path, data[:300])

    one()


async def test_fuzzing_the_documented_api_never_gets_a_5xx(tmp_path: Path) -> None:
    make_pools(tmp_path / "pools")
    settings_env = {"EDGEBACK_DEDUP_TOKENS_FILE": str(write_tokens_file(tmp_path / "tokens.json"))}
    log = tmp_path / "node.log"
    async with node_process_async(tmp_path / "pools", log_path=log, env=settings_env) as node:
        await asyncio.to_thread(fuzz, node.port)
    assert "request.failed" not in log.read_text()
