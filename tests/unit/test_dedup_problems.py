"""Errors as HTTP problems on the node, and back to the same errors in the client."""

from __future__ import annotations

import msgspec
import pytest

from edgeback_blocks.pool_client import error_from_problem
from edgeback_core import errors
from edgeback_core.errors import EdgebackError, registered
from edgeback_core.problems import status_of


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (errors.InvalidInputError("x"), 400),
        (errors.NotFoundError("x"), 404),
        (errors.ConflictError("x"), 409),
        (errors.DigestMismatchError("x"), 422),
        (errors.PoolFullError("x"), 507),
        (errors.UnauthenticatedError("x"), 401),
        (errors.PermissionDeniedError("x"), 403),
        (errors.UnavailableError("x"), 503),
        (errors.DeadlineExceededError("x"), 504),
        (errors.ConfigError("x"), 500),
        (EdgebackError("x"), 500),
    ],
)
def test_status_of(error: EdgebackError, status: int) -> None:
    assert status_of(error) == status


@pytest.mark.parametrize("cls", [registered()[c] for c in sorted(registered())], ids=str)
def test_every_error_survives_the_wire(cls: type[EdgebackError]) -> None:
    sent = cls("something went wrong", chunk="ab" * 32)
    body = msgspec.json.encode(sent.to_dict())
    received = error_from_problem(status_of(sent), body)
    assert type(received) is cls
    assert received.message == "something went wrong"
    assert received.details == sent.details


def test_a_code_of_the_http_layer_maps_by_status() -> None:
    body = msgspec.json.encode({"code": "http_405", "message": "Method Not Allowed", "details": {}})
    error = error_from_problem(405, body)
    assert type(error) is errors.PermanentError
    assert error.message == "Method Not Allowed"


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (502, errors.UnavailableError),
        (404, errors.NotFoundError),
        (401, errors.UnauthenticatedError),
        (418, errors.PermanentError),
    ],
)
def test_answers_without_a_problem_body_map_by_status(
    status: int, expected: type[EdgebackError]
) -> None:
    error = error_from_problem(status, b"<html>proxy error</html>")
    assert type(error) is expected
    assert str(status) in error.message
