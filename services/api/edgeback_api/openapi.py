"""The OpenAPI 3.1 document of ``/api/v1``, generated from the route table. Pure.

Schemas come from the same msgspec types that validate requests and encode replies
(``msgspec.json.schema_components``): nothing is written twice. A catalog request
used as a route's request loses the fields the API fills (``actor``, the path's) in a
``<Name>Body`` schema; query structs become query parameters; every error is an
``application/problem+json`` ``Problem`` with its stable ``code``.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator, Sequence
from typing import Any, Final

import msgspec

from edgeback_api.routing import ACTOR_FIELD, BASE, EVENT_STREAM, Access, Route
from edgeback_core.errors import ErrorBody


class Problem(ErrorBody, frozen=True, kw_only=True):
    """An error as the API answers it (``application/problem+json``, RFC 9457's members
    ``status`` and ``title`` beside edgeback's ``code``): unexpected failures are
    ``internal_error`` with a ``request_id`` in ``details`` to find the server's log."""

    status: int
    """The HTTP status, repeated."""
    title: str
    """The ``code`` again (a stable, short summary)."""


REF: Final = "#/components/schemas/{name}"
PROBLEM: Final = "application/problem+json"
_ERRORS: Final = {
    "400": "Malformed request (`invalid_input`, ...)",
    "404": "Not found, or not visible to you (`not_found`)",
    "409": "Conflicts with the current state (`name_taken`, `stale_version`, `job_busy`, ...)",
    "422": "Well-formed but names what does not exist (`unknown_reference`)",
    "503": "A service or backup host is unreachable (retry later)",
}
Doc = dict[str, Any]
_OK: Final = {
    EVENT_STREAM: (
        "Server-sent events: `id` (resume with `Last-Event-ID`), `event` (the type), `data` "
        "(the event as JSON, this schema); then `event: end` with `{state}`. `event: lagged` "
        "`{dropped}`: a slow reader lost that many; `event: error`: a problem body."
    )
}


def document(routes: Sequence[Route], *, version: str = "1") -> Doc:
    types: list[Any] = [Problem]
    for route in routes:
        types += [t for t in (route.request, route.query, route.reply) if t is not None]
    _, schemas = msgspec.json.schema_components(types, ref_template=REF)
    paths: Doc = {}
    for route in routes:
        paths.setdefault(route.url, {})[route.method.lower()] = _operation(route, schemas)
    components = {"schemas": _reachable(schemas, paths), "securitySchemes": _SECURITY}
    return {
        "openapi": "3.1.0",
        "info": {"title": "edgeback API", "version": version, "description": _ABOUT},
        "paths": paths,
        "components": components,
    }


_ABOUT = (
    "Backups of the VMs of an edge cloud. Sign in with `POST /auth/login`, then send "
    "`Authorization: Bearer <token>`. Errors are `application/problem+json` bodies with a "
    "stable `code`. Lists take `limit` and `cursor` and answer `next_cursor`."
)
_SECURITY = {"bearer": {"type": "http", "scheme": "bearer"}}


def _operation(route: Route, schemas: Doc) -> Doc:
    op: Doc = {
        "operationId": route.operation,
        "summary": route.summary,
        "tags": [route.tag],
        "parameters": [
            *_path_parameters(route),
            *_query_parameters(route, schemas),
            *_stream_parameters(route),
        ],
        "responses": _responses(route),
    }
    if route.has_body and route.request is not None:
        op["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": _body_schema(route, schemas)}},
        }
    op["security"] = [] if route.access is Access.PUBLIC else [{"bearer": []}]
    if route.access is Access.ADMIN:
        op["description"] = "Admins only."
    return op


def _path_parameters(route: Route) -> Iterator[Doc]:
    for name in route.path_fields:
        yield {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}


def _stream_parameters(route: Route) -> Iterator[Doc]:
    if route.media == EVENT_STREAM:
        text = "Resume after this event (the `id` of the last one received)"
        yield {"name": "Last-Event-ID", "in": "header", "required": False,
               "description": text, "schema": {"type": "string", "maxLength": 200}}  # fmt: skip


def _query_parameters(route: Route, schemas: Doc) -> Iterator[Doc]:
    if route.query is None:
        return
    component = schemas[route.query.__name__]
    required = set(component.get("required", ()))
    for name, schema in component.get("properties", {}).items():
        yield {"name": name, "in": "query", "required": name in required, "schema": schema}


def _body_schema(route: Route, schemas: Doc) -> Doc:
    """The request's schema less the fields the API fills, as its own component."""
    assert route.request is not None
    name = route.request.__name__
    filled = {ACTOR_FIELD, *route.path_fields}
    if not filled & set(route.request.__struct_fields__):
        return {"$ref": REF.format(name=name)}
    body = copy.deepcopy(schemas[name])
    body["properties"] = {k: v for k, v in body.get("properties", {}).items() if k not in filled}
    required = [k for k in body.get("required", ()) if k not in filled]
    if required:
        body["required"] = required
    else:
        body.pop("required", None)
    body["title"] = f"{name}Body"
    schemas[f"{name}Body"] = body
    return {"$ref": REF.format(name=f"{name}Body")}


def _responses(route: Route) -> Doc:
    problem = {PROBLEM: {"schema": {"$ref": REF.format(name="Problem")}}}
    if route.reply is None:
        done: Doc = {"description": "Done"}
    else:
        schema = msgspec.json.schema_components([route.reply], ref_template=REF)[0][0]
        done = {
            "description": _OK.get(route.media, "OK"),
            "content": {route.media: {"schema": schema}},
        }
    responses: Doc = {str(route.status): done}
    errors = dict(_ERRORS)
    if route.access is not Access.PUBLIC:
        errors["401"] = "No token, or a token unknown, expired or revoked (`unauthenticated`)"
        errors["403"] = "Your role may not do this (`permission_denied`)"
    if route.operation == "login":
        errors["401"] = "Wrong user name or password (`unauthenticated`)"
        errors["429"] = "Too many failed logins: wait `Retry-After` seconds (`login_throttled`)"
    for status, text in sorted(errors.items()):
        responses[status] = {"description": text, "content": problem}
    return responses


def _reachable(schemas: Doc, paths: Doc) -> Doc:
    """Only the components something refers to (catalog requests, whose ``actor`` the
    API fills, are replaced by their ``Body`` schemas)."""
    seen: set[str] = set()
    todo = list(_refs(paths))
    while todo:
        name = todo.pop()
        if name not in seen:
            seen.add(name)
            todo += _refs(schemas[name])
    return {name: schemas[name] for name in sorted(seen)}


def _refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                yield value.rsplit("/", 1)[-1]
            else:
                yield from _refs(value)
    elif isinstance(node, list):
        for item in node:
            yield from _refs(item)


__all__ = ["BASE", "document"]
