"""Verification codes of restores (S6): made, stored hashed, and judged. Pure (no I/O).

A code is 8 characters of an alphabet without look-alikes (40 bits), shown once. The
catalog keeps only ``sha256(restore id, request hash, code)``, where the request hash
covers the restore's spec: the code is bound to that request and to nothing else.
Guessing is bounded by the expiry (default 10 minutes: 2^40 tries do not fit), and
every wrong try is audited. :func:`judge` decides with an injected ``now``.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

ALPHABET = "ABCDEFGHJKMNPQRSTVWXYZ23456789"
LENGTH = 8


class Verdict(enum.StrEnum):
    ACCEPTED = "accepted"
    WRONG = "wrong"
    EXPIRED = "expired"
    USED = "used"


@dataclass(frozen=True, slots=True, kw_only=True)
class Verification:
    """What the catalog stores of a code."""

    code_hash: str
    request_hash: str
    expires_at: datetime
    used_at: datetime | None = None


def new_code(choose: Callable[[str], str] = secrets.choice) -> str:
    return "".join(choose(ALPHABET) for _ in range(LENGTH))


def normalize(code: str) -> str:
    """What the user typed, as compared: case, spaces and dashes do not matter."""
    return "".join(code.split()).replace("-", "").upper()


def request_hash(restore_id: str, request: bytes) -> str:
    return hashlib.sha256(
        b"restore-request\x00" + restore_id.encode() + b"\x00" + request
    ).hexdigest()


def code_hash(restore_id: str, request: str, code: str) -> str:
    material = "\x00".join(("restore-code", restore_id, request, normalize(code)))
    return hashlib.sha256(material.encode()).hexdigest()


def issue(restore_id: str, request: bytes, expires_at: datetime, code: str) -> Verification:
    bound = request_hash(restore_id, request)
    return Verification(
        code_hash=code_hash(restore_id, bound, code), request_hash=bound, expires_at=expires_at
    )


def judge(restore_id: str, stored: Verification, offered: str, now: datetime) -> Verdict:
    """Used beats expired beats wrong: a used code says so whatever is offered."""
    if stored.used_at is not None:
        return Verdict.USED
    if now >= stored.expires_at:
        return Verdict.EXPIRED
    wanted = code_hash(restore_id, stored.request_hash, offered)
    if not hmac.compare_digest(wanted, stored.code_hash):
        return Verdict.WRONG
    return Verdict.ACCEPTED
