"""Access Key / Secret Key request signing of the edge-cloud API (pure, no I/O).

The client signs and the platform (our emulator) verifies with the same code. The
signature is HMAC-SHA256, keyed by the Secret Key, over a canonical string of the
method, path, sorted query, ``X-Edge-Date`` and the SHA-256 of the body, one per line::

    EDGE-HMAC-SHA256
    GET
    /api/v1/vms
    host_id=h1&keyword=web
    2025-01-01T12:00:00Z
    e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855

sent as ``Authorization: EDGE-HMAC-SHA256 AccessKey=<ak>,Signature=<hex>``. The date
bounds replay: a request older or newer than the skew window is refused.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from urllib.parse import quote, unquote

from edgeback_core.errors import PlatformAuthError

SCHEME = "EDGE-HMAC-SHA256"
DATE_HEADER = "X-Edge-Date"
AUTH_HEADER = "Authorization"
DEFAULT_SKEW = timedelta(minutes=5)
_UNRESERVED = "-_.~"


class SignatureError(PlatformAuthError):
    """A request's signature, key or date does not verify. ``reason`` says which."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"request signature rejected: {reason}", reason=reason)
        self.reason = reason


@dataclass(frozen=True, slots=True, kw_only=True)
class Credentials:
    access_key: str
    signature: str


@dataclass(frozen=True, slots=True, kw_only=True)
class RequestToSign:
    """The parts of an HTTP request covered by the signature (query and path decoded)."""

    method: str
    path: str
    query: tuple[tuple[str, str], ...] = ()
    date: str
    body: bytes = b""

    @classmethod
    def build(
        cls, method: str, path: str, query: Iterable[tuple[str, str]], date: str, body: bytes
    ) -> RequestToSign:
        return cls(method=method, path=path, query=tuple(query), date=date, body=body)

    def canonical(self) -> str:
        pairs = sorted(
            (quote(k, safe=_UNRESERVED), quote(v, safe=_UNRESERVED)) for k, v in self.query
        )
        return "\n".join(
            (
                SCHEME,
                self.method.upper(),
                quote(unquote(self.path), safe="/" + _UNRESERVED),
                "&".join(f"{k}={v}" for k, v in pairs),
                self.date,
                hashlib.sha256(self.body).hexdigest(),
            )
        )


def format_date(moment: datetime) -> str:
    """ISO 8601 in UTC with a ``Z``, to the second."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_date(text: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError as exc:
        raise SignatureError("malformed date") from exc
    if moment.tzinfo is None:
        raise SignatureError("date without time zone")
    return moment


def signature(secret_key: str, request: RequestToSign) -> str:
    mac = hmac.new(secret_key.encode(), request.canonical().encode(), hashlib.sha256)
    return mac.hexdigest()


def authorization(access_key: str, secret_key: str, request: RequestToSign) -> str:
    """The ``Authorization`` header value for ``request``."""
    return f"{SCHEME} AccessKey={access_key},Signature={signature(secret_key, request)}"


def parse_authorization(header: str) -> Credentials:
    scheme, _, params = header.strip().partition(" ")
    if scheme != SCHEME:
        raise SignatureError("unknown authorization scheme")
    fields: dict[str, str] = {}
    for item in params.split(","):
        name, sep, value = item.strip().partition("=")
        if not sep or not value:
            raise SignatureError("malformed authorization header")
        fields[name] = value
    if set(fields) != {"AccessKey", "Signature"}:
        raise SignatureError("malformed authorization header")
    return Credentials(access_key=fields["AccessKey"], signature=fields["Signature"])


def verify(
    request: RequestToSign,
    header: str | None,
    *,
    secrets: Mapping[str, str],
    now: datetime,
    skew: timedelta = DEFAULT_SKEW,
) -> str:
    """Check ``header`` against ``request``; return the access key or raise SignatureError.

    ``secrets`` maps each known Access Key to its Secret Key.
    """
    if not header:
        raise SignatureError("missing authorization header")
    creds = parse_authorization(header)
    secret_key = secrets.get(creds.access_key)
    if secret_key is None:
        raise SignatureError("unknown access key")
    if abs(now - parse_date(request.date)) > skew:
        raise SignatureError("date outside the allowed clock skew")
    if not hmac.compare_digest(creds.signature, signature(secret_key, request)):
        raise SignatureError("signature mismatch")
    return creds.access_key
