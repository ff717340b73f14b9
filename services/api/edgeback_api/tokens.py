"""Bearer tokens as the API draws and recognises them. Pure.

A token is ``ebt_`` followed by 43 URL-safe characters (32 random bytes): unguessable,
so one round of SHA-256 is enough to store it (a slow hash is for passwords, which
people choose). Only the hash ever leaves this process; the token itself is shown to
its user once.
"""

from __future__ import annotations

import hashlib
import re
import secrets

PREFIX = "ebt_"
_SHAPE = re.compile(r"ebt_[A-Za-z0-9_-]{43}")


def new_token() -> str:
    return PREFIX + secrets.token_urlsafe(32)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def bearer_of(authorization: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header, if well formed."""
    if authorization is None:
        return None
    scheme, _, value = authorization.strip().partition(" ")
    value = value.strip()
    if scheme.lower() != "bearer" or not _SHAPE.fullmatch(value):
        return None
    return value
