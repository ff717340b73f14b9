"""The error-code registry and the one wire form of our errors."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import msgspec
import pytest

from edgeback_core import errors
from edgeback_core.errors import EdgebackError, ErrorBody, body_of, error_of, registered
from edgeback_platform.signing import SignatureError

ALL = [registered()[code] for code in sorted(registered())]
DETAILS: dict[str, Any] = {"chunk": "ab" * 32, "offset": 4 << 20, "ok": True, "ids": ["a", "b"]}


def _over_the_wire(error: BaseException) -> EdgebackError:
    sent = msgspec.json.encode(body_of(error))
    return error_of(msgspec.json.decode(sent, type=ErrorBody))


@pytest.mark.parametrize("cls", ALL, ids=lambda c: c.code)
def test_every_registered_code_round_trips(cls: type[EdgebackError]) -> None:
    sent = cls("something went wrong", **DETAILS)
    back = _over_the_wire(sent)
    assert type(back) is cls
    assert (back.code, back.message, back.retryable) == (
        cls.code,
        "something went wrong",
        cls.retryable,
    )
    assert dict(back.details) == dict(sent.details)
    assert DETAILS.items() <= back.details.items()


def test_a_deferral_keeps_its_delay_over_the_wire() -> None:
    back = _over_the_wire(errors.DeferredError("lease busy", delay_s=30.0))
    assert type(back) is errors.DeferredError
    assert back.delay_s == 30.0


def test_pipeline_errors_are_registered() -> None:
    assert registered()["diff_mismatch"] is errors.DiffMismatchError
    assert issubclass(errors.DiffMismatchError, errors.IntegrityError)


@pytest.mark.parametrize(
    ("sent", "expected"),
    [
        (errors.RbdImageNotFoundError, errors.NotFoundError),
        (errors.DiffMismatchError, errors.IntegrityError),
        (errors.PlatformUnreachableError, errors.UnavailableError),
        (errors.UnavailableError, errors.TransientError),
        # the nearest known ancestor is retryable and this one is not: the flag wins
        (errors.PlatformTlsError, EdgebackError),
    ],
)
def test_an_unknown_code_becomes_its_nearest_known_ancestor(
    sent: type[EdgebackError], expected: type[EdgebackError]
) -> None:
    body = body_of(sent("from a newer sender", chunk="c"))
    newer = msgspec.structs.replace(body, code="made_up_later")
    back = error_of(newer)
    assert type(back) is expected
    assert back.retryable is sent.retryable
    assert back.message == "from a newer sender"
    assert dict(back.details) == {"chunk": "c", "remote_code": "made_up_later"}


@pytest.mark.parametrize(
    ("retryable", "expected"), [(True, errors.TransientError), (False, EdgebackError)]
)
def test_an_unknown_code_without_ancestry_keeps_its_retryable_flag(
    retryable: bool, expected: type[EdgebackError]
) -> None:
    back = error_of(ErrorBody(code="foreign", message="m", retryable=retryable))
    assert type(back) is expected
    assert back.details["remote_code"] == "foreign"


def test_a_bug_travels_as_internal_error() -> None:
    back = _over_the_wire(ValueError("oops"))
    assert type(back) is EdgebackError
    assert back.message == "ValueError: oops"


def test_a_local_refinement_travels_as_its_parent() -> None:
    back = _over_the_wire(SignatureError("signature mismatch"))
    assert type(back) is errors.PlatformAuthError
    assert back.details == {"reason": "signature mismatch"}


def test_details_that_json_cannot_hold_travel_as_text() -> None:
    when = datetime(2026, 1, 2, tzinfo=UTC)
    back = _over_the_wire(errors.ConflictError("x", at=when, parts=(1, 2), keys={3: b"k"}))
    assert dict(back.details) == {"at": str(when), "parts": [1, 2], "keys": {"3": "b'k'"}}


def test_a_second_class_under_a_taken_code_fails_at_import() -> None:
    with pytest.raises(TypeError, match=r"'not_found' of .* is taken by NotFoundError"):

        class AlsoNotFoundError(errors.PermanentError):
            code = "not_found"

    assert registered()["not_found"] is errors.NotFoundError


def test_codes_are_declared_in_the_errors_module_only() -> None:
    with pytest.raises(TypeError, match=r"outside edgeback_core\.errors"):

        class ElsewhereError(errors.PermanentError):
            code = "declared_elsewhere"

    assert "declared_elsewhere" not in registered()


def test_registered_errors_can_be_rebuilt_from_message_and_details() -> None:
    with pytest.raises(TypeError, match="constructible"):

        class OddError(errors.PermanentError):
            __module__ = errors.__name__
            code = "odd_constructor"

            def __init__(self, reason: str) -> None:
                super().__init__(f"odd: {reason}")

    assert "odd_constructor" not in registered()
