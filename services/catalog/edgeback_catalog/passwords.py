"""Password hashing: the only module that imports ``argon2`` (argon2-cffi).

Argon2id with the library's defaults (RFC 9106's low-memory profile: 3 passes over
64 MiB, 4 lanes), which take tens of milliseconds: hashing and checking run in a
worker thread, never on the event loop. A user without a password, or an unknown
user, is checked against a fixed dummy hash so that a wrong name costs the same time
as a wrong password (no user enumeration by timing).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from edgeback_core.errors import InvalidInputError
from edgeback_core.messages.auth import PASSWORD_MAX_LENGTH, PASSWORD_MIN_LENGTH

MIN_LENGTH = PASSWORD_MIN_LENGTH  # the wire schema states the same rule
MAX_LENGTH = PASSWORD_MAX_LENGTH

_hasher = PasswordHasher()
_DUMMY = _hasher.hash("edgeback-dummy-password-for-unknown-users")


@dataclass(frozen=True, slots=True, kw_only=True)
class Checked:
    ok: bool
    rehashed: str | None = None
    """A new hash when the stored one used older parameters (store it)."""


def check_strength(password: str) -> None:
    """Length only (NIST SP 800-63B): at least 10 characters, at most 1024."""
    if not MIN_LENGTH <= len(password) <= MAX_LENGTH:
        raise InvalidInputError(
            f"a password has {MIN_LENGTH} to {MAX_LENGTH} characters", field="password"
        )


async def hash_password(password: str) -> str:
    check_strength(password)
    return await asyncio.to_thread(_hasher.hash, password)


def _verify(stored: str | None, password: str) -> Checked:
    try:
        _hasher.verify(stored or _DUMMY, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return Checked(ok=False)
    if stored is None:
        return Checked(ok=False)
    if _hasher.check_needs_rehash(stored):
        return Checked(ok=True, rehashed=_hasher.hash(password))
    return Checked(ok=True)


async def verify_password(stored: str | None, password: str) -> Checked:
    """Whether ``password`` matches ``stored`` (None: no password, never matches)."""
    return await asyncio.to_thread(_verify, stored, password)
