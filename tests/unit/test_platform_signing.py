"""Request signing: a signed request verifies, and any tampered part does not."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edgeback_core.errors import PlatformAuthError
from edgeback_platform import signing
from edgeback_platform.signing import RequestToSign, SignatureError

NOW = datetime(2025, 3, 1, 12, 0, 0, tzinfo=UTC)
SECRETS = {"AK1": "secret-one", "AK2": "secret-two"}

texts = st.text(min_size=1, max_size=20)
requests = st.builds(
    RequestToSign.build,
    st.sampled_from(["GET", "POST", "DELETE", "PATCH"]),
    st.from_regex(r"/api/v1(/[A-Za-z0-9_.~-]{1,12}){0,3}", fullmatch=True),
    st.lists(st.tuples(texts, st.text(max_size=20)), max_size=4),
    st.just(signing.format_date(NOW)),
    st.binary(max_size=64),
)


def _header(request: RequestToSign, access_key: str = "AK1") -> str:
    return signing.authorization(access_key, SECRETS[access_key], request)


@given(requests)
def test_signed_request_verifies(request: RequestToSign) -> None:
    assert signing.verify(request, _header(request), secrets=SECRETS, now=NOW) == "AK1"


@given(requests, st.data())
def test_any_tampered_part_fails(request: RequestToSign, data: st.DataObject) -> None:
    header = _header(request)
    part = data.draw(st.sampled_from(["method", "path", "query", "date", "body"]))
    if part == "method":
        other = data.draw(st.sampled_from(["PUT", "HEAD", "OPTIONS"]))
        tampered = RequestToSign.build(
            other, request.path, request.query, request.date, request.body
        )
    elif part == "path":
        tampered = RequestToSign.build(
            request.method, request.path + "/x", request.query, request.date, request.body
        )
    elif part == "query":
        extra = data.draw(st.tuples(texts, texts))
        query = (*request.query, extra)
        tampered = RequestToSign.build(
            request.method, request.path, query, request.date, request.body
        )
    elif part == "date":
        date = signing.format_date(NOW + timedelta(seconds=data.draw(st.integers(1, 299))))
        tampered = RequestToSign.build(
            request.method, request.path, request.query, date, request.body
        )
    else:
        body = request.body + data.draw(st.binary(min_size=1, max_size=8))
        tampered = RequestToSign.build(
            request.method, request.path, request.query, request.date, body
        )
    with pytest.raises(SignatureError, match="signature mismatch"):
        signing.verify(tampered, header, secrets=SECRETS, now=NOW)


@given(requests, st.integers(min_value=0, max_value=63), st.sampled_from("0123456789abcdef"))
def test_tampered_signature_fails(request: RequestToSign, pos: int, digit: str) -> None:
    header = _header(request)
    prefix, sig = header.rsplit("Signature=", 1)
    if sig[pos] == digit:
        digit = "f" if digit != "f" else "0"
    forged = f"{prefix}Signature={sig[:pos]}{digit}{sig[pos + 1 :]}"
    with pytest.raises(SignatureError):
        signing.verify(request, forged, secrets=SECRETS, now=NOW)


@given(requests)
def test_another_keys_signature_fails(request: RequestToSign) -> None:
    # signed with AK2's secret but claiming to be AK1
    sig = signing.signature(SECRETS["AK2"], request)
    header = f"{signing.SCHEME} AccessKey=AK1,Signature={sig}"
    with pytest.raises(SignatureError, match="signature mismatch"):
        signing.verify(request, header, secrets=SECRETS, now=NOW)


def _simple(date: str = signing.format_date(NOW)) -> RequestToSign:
    return RequestToSign.build("GET", "/api/v1/hosts", [], date, b"")


@pytest.mark.parametrize("offset", [timedelta(minutes=-6), timedelta(minutes=6)])
def test_date_outside_skew_window_fails(offset: timedelta) -> None:
    request = _simple(signing.format_date(NOW + offset))
    with pytest.raises(SignatureError, match="clock skew"):
        signing.verify(request, _header(request), secrets=SECRETS, now=NOW)


def test_date_inside_skew_window_verifies() -> None:
    request = _simple(signing.format_date(NOW - timedelta(minutes=4, seconds=59)))
    assert signing.verify(request, _header(request), secrets=SECRETS, now=NOW) == "AK1"


@pytest.mark.parametrize(
    ("header", "reason"),
    [
        (None, "missing"),
        ("", "missing"),
        ("Bearer abc", "unknown authorization scheme"),
        (f"{signing.SCHEME} AccessKey=AK1", "malformed"),
        (f"{signing.SCHEME} AccessKey=AK1,Signature=", "malformed"),
        (f"{signing.SCHEME} AccessKey=NOPE,Signature=00", "unknown access key"),
    ],
)
def test_bad_headers_fail_with_reason(header: str | None, reason: str) -> None:
    with pytest.raises(SignatureError, match=reason) as info:
        signing.verify(_simple(), header, secrets=SECRETS, now=NOW)
    assert isinstance(info.value, PlatformAuthError)
    assert info.value.code == "platform_auth_failed"


@pytest.mark.parametrize("date", ["yesterday", "2025-03-01T12:00:00"])
def test_bad_dates_fail(date: str) -> None:
    request = _simple(date)
    with pytest.raises(SignatureError, match="date"):
        signing.verify(request, _header(request), secrets=SECRETS, now=NOW)


def test_query_order_does_not_matter() -> None:
    a = RequestToSign.build("GET", "/p", [("b", "2"), ("a", "1")], "d", b"")
    b = RequestToSign.build("GET", "/p", [("a", "1"), ("b", "2")], "d", b"")
    assert a.canonical() == b.canonical()


def test_canonical_string_layout() -> None:
    request = RequestToSign.build("get", "/api/v1/vms", [("keyword", "web 1")], "D", b"")
    assert request.canonical().split("\n") == [
        "EDGE-HMAC-SHA256",
        "GET",
        "/api/v1/vms",
        "keyword=web%201",
        "D",
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    ]


def test_format_date_is_utc_iso8601() -> None:
    local = datetime(2025, 3, 1, 20, 0, 0, tzinfo=UTC).astimezone(timezone(timedelta(hours=8)))
    assert signing.format_date(local) == "2025-03-01T20:00:00Z"
