"""The API's OpenAPI document is the route table, and its pure parts behave."""

from __future__ import annotations

import pytest

from edgeback_api.openapi import document
from edgeback_api.paging import decode_cursor, encode_cursor, page_of, position_of
from edgeback_api.routing import Access
from edgeback_api.table import route_table
from edgeback_api.tokens import bearer_of, new_token, token_hash
from edgeback_catalog.loginthrottle import delay_s
from edgeback_catalog.passwords import MAX_LENGTH, MIN_LENGTH
from edgeback_core import jobrules
from edgeback_core.errors import InvalidInputError
from edgeback_core.messages.jobs import MAX_KEEP


def test_the_document_lists_exactly_the_route_table() -> None:
    doc = document(route_table())
    documented = {(m.upper(), p) for p, item in doc["paths"].items() for m in item}
    assert documented == {(r.method, r.url) for r in route_table()}
    assert doc["openapi"] == "3.1.0"


def test_no_documented_body_lets_a_client_name_the_actor() -> None:
    schemas = document(route_table())["components"]["schemas"]
    bodies = {name: s for name, s in schemas.items() if name.endswith("Body")}
    assert "PlatformRegisterBody" in bodies
    for name, schema in bodies.items():
        assert "actor" not in schema.get("properties", {}), name


def test_every_protected_operation_requires_the_bearer_scheme() -> None:
    doc = document(route_table())
    for route in route_table():
        op = doc["paths"][route.url][route.method.lower()]
        assert (op["security"] == []) == (route.access is Access.PUBLIC), route.operation
        assert {"401", "403"} <= set(op["responses"]) or route.access is Access.PUBLIC


def test_new_passwords_are_documented_with_the_catalogs_length_rule() -> None:
    # the fuzz run found both bodies documented as 1-1024 characters, refused under 10
    schemas = document(route_table())["components"]["schemas"]
    password = schemas["PasswordBody"]["properties"]["password"]
    assert (password["minLength"], password["maxLength"]) == (MIN_LENGTH, MAX_LENGTH)
    # an admin's body is the same: the session a user keeps is the API's to name
    assert "UserSetPasswordBody" not in schemas
    assert schemas["LoginBody"]["properties"]["password"]["minLength"] == 1  # any may be tried


def test_the_many_hosts_bodies_are_documented_as_naming_one_host_at_least() -> None:
    # the fuzz run found "host_ids": [] documented as valid and answered 400
    schemas = document(route_table())["components"]["schemas"]
    for body in ("HostActivateManyBody", "HostAuthorizeManyBody"):
        assert schemas[body]["properties"]["host_ids"]["minItems"] == 1, body


def test_job_option_ranges_are_documented_as_the_job_rules_check_them() -> None:
    # the fuzz run found e.g. "request_retries": -90687789 documented as valid
    schemas = document(route_table())["components"]["schemas"]
    options = schemas["JobOptions"]["properties"]
    for name, (low, high) in jobrules.INT_RANGES.items():
        assert (options[name]["minimum"], options[name]["maximum"]) == (low, high), name
    keep = schemas["RetentionPolicy"]["properties"]["keep_weekly"]["anyOf"][0]
    assert (keep["minimum"], keep["maximum"]) == (1, MAX_KEEP)


def test_platform_ports_are_documented_in_range() -> None:
    # the fuzz run found "port": -1054355864317793794004149600256 documented as valid
    schemas = document(route_table())["components"]["schemas"]
    register = schemas["PlatformRegisterBody"]["properties"]["port"]
    update = schemas["PlatformUpdateBody"]["properties"]["port"]["anyOf"][0]
    for port in (register, update):
        assert (port["minimum"], port["maximum"]) == (1, 65535)


def test_pages_follow_their_cursor_to_the_end() -> None:
    items = [f"i{n:03}" for n in range(25)]
    seen, cursor = [], None
    while True:
        page = page_of(items, lambda s: (s,), cursor, 10)
        seen += page.items
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert seen == items
    with pytest.raises(InvalidInputError):
        decode_cursor("not-a-cursor!")


@pytest.mark.parametrize("key", [(), ("a", "b"), (7,), (None,)])
def test_a_catalog_position_is_one_text_else_a_bad_cursor(key: tuple[object, ...]) -> None:
    """A cursor of another shape (``W10`` is ``[]``) is refused, never an IndexError (500)."""
    with pytest.raises(InvalidInputError):
        position_of(encode_cursor(key))
    assert position_of(encode_cursor(("2024-05-01|ab",))) == "2024-05-01|ab"
    assert position_of(None) is None


def test_tokens_are_random_and_only_well_formed_bearers_are_read() -> None:
    token = new_token()
    assert token != new_token() and len(token_hash(token)) == 64
    assert bearer_of(f"Bearer {token}") == token
    assert bearer_of(f"Basic {token}") is None and bearer_of("Bearer short") is None


def test_failed_logins_wait_longer_and_longer_up_to_a_bound() -> None:
    waits = [delay_s(n) for n in range(1, 15)]
    assert waits[:3] == [0, 0, 0] and waits[3] == 1.0
    assert waits == sorted(waits) and max(waits) == 300.0


def test_progress_streams_are_documented_as_server_sent_events() -> None:
    doc = document(route_table())
    streams = {
        path: op
        for path, ops in doc["paths"].items()
        for op in ops.values()
        if "text/event-stream" in op["responses"].get("200", {}).get("content", {})
    }
    assert sorted(streams) == [
        "/api/v1/restores/{restore_id}/progress",
        "/api/v1/runs/{run_id}/progress",
    ]
    for op in streams.values():
        assert "Last-Event-ID" in [p["name"] for p in op["parameters"] if p["in"] == "header"]
        schema = op["responses"]["200"]["content"]["text/event-stream"]["schema"]
        assert "anyOf" in schema or "oneOf" in schema  # one of the run's or restore's events


def test_problem_bodies_are_documented_as_sent() -> None:
    doc = document(route_table())
    problem = doc["components"]["schemas"]["Problem"]
    assert {"code", "message", "status", "title"} <= set(problem["required"])
    login = doc["paths"]["/api/v1/auth/login"]["post"]["responses"]
    ref = login["400"]["content"]["application/problem+json"]["schema"]["$ref"]
    assert ref == "#/components/schemas/Problem"
