"""The HTTP status of each of our errors, for every HTTP server (the storage node, the
API). Pure.

Problem bodies are ``edgeback_core.errors.ErrorBody`` (``EdgebackError.to_dict``);
clients rebuild the error class from it, so the status is for humans and proxies.
"""

from __future__ import annotations

from typing import Final

from edgeback_core.errors import (
    BodyTimeoutError,
    ConflictError,
    DeadlineExceededError,
    EdgebackError,
    GoneError,
    IntegrityError,
    InvalidInputError,
    LoginThrottledError,
    NotFoundError,
    PermanentError,
    PermissionDeniedError,
    PoolFullError,
    RangeNotSatisfiableError,
    TransientError,
    UnauthenticatedError,
    UnknownReferenceError,
    UnroutableError,
)

_STATUS: Final[dict[type[EdgebackError], int]] = {
    LoginThrottledError: 429,
    UnauthenticatedError: 401,
    BodyTimeoutError: 408,
    PermissionDeniedError: 403,
    NotFoundError: 404,
    GoneError: 410,
    RangeNotSatisfiableError: 416,
    ConflictError: 409,
    UnknownReferenceError: 422,  # well-formed, but names what does not exist
    InvalidInputError: 400,
    UnroutableError: 503,  # no service consumes the command (yet)
    PoolFullError: 507,
    PermanentError: 400,
    IntegrityError: 422,
    DeadlineExceededError: 504,
    TransientError: 503,
}


def status_of(error: EdgebackError) -> int:
    """The HTTP status for ``error``: its nearest classified ancestor's, else 500."""
    for cls in type(error).__mro__:
        status = _STATUS.get(cls)
        if status is not None:
            return status
    return 500
