"""The API's error middleware: every failure is an ``application/problem+json`` body with
a stable ``code``, ``status`` and ``title``; an unexpected exception is an
``internal_error`` that names a request id and never the exception's text."""

from __future__ import annotations

import msgspec
import structlog
from aiohttp import web
from aiohttp.test_utils import make_mocked_request

from edgeback_api.app import problem_middleware
from edgeback_api.openapi import PROBLEM, Problem
from edgeback_core.errors import NameTakenError

SECRET = "SK-very-secret-value"


async def _answer(error: Exception) -> tuple[web.Response, Problem, str]:
    async def handler(_request: web.Request) -> web.StreamResponse:
        raise error

    request = make_mocked_request("GET", "/api/v1/jobs")
    response = await problem_middleware(request, handler)
    assert isinstance(response, web.Response) and isinstance(response.body, bytes)
    assert response.content_type == PROBLEM
    return response, msgspec.json.decode(response.body, type=Problem), response.body.decode()


async def test_an_unexpected_exception_is_an_internal_error_without_its_text() -> None:
    with structlog.testing.capture_logs() as logs:
        response, body, sent = await _answer(RuntimeError(f"db password {SECRET}"))
    assert (response.status, body.code, body.status, body.title) == (
        500, "internal_error", 500, "internal_error",
    )  # fmt: skip
    request_id = body.details["request_id"]
    assert response.headers["X-Request-Id"] == request_id
    assert SECRET not in sent and "RuntimeError" not in sent
    crashed = [e for e in logs if e["event"] == "api.crashed"]
    assert crashed and crashed[0]["request_id"] == request_id  # the server's log has it


async def test_our_errors_and_http_errors_keep_their_code_and_status() -> None:
    response, body, _ = await _answer(NameTakenError("name already taken", fields=["name"]))
    assert (response.status, body.code, body.status, body.title) == (
        409,
        "name_taken",
        409,
        "name_taken",
    )
    response, body, _ = await _answer(web.HTTPMethodNotAllowed("POST", ["GET"]))
    assert (response.status, body.code, body.status) == (405, "http_405", 405)
