"""Fixed test vectors of the platform request signature (docs/platform-api.md).

The expected canonical strings and signatures were computed outside this code base
(``printf ... | openssl dgst -sha256 -hmac SECRET``), so a bug shared by our client and
our emulator, which both use ``edgeback_platform.signing``, cannot pass here.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from edgeback_platform import signing

SECRET = "sk-TEST-0123456789abcdef"
EMPTY_SHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

# (request, canonical string, signature): the table of docs/platform-api.md
VECTORS = [
    (
        signing.RequestToSign.build(
            "GET",
            "/api/v1/vms",
            [("keyword", "web server"), ("host_id", "hv-01")],
            "2025-03-01T12:00:00Z",
            b"",
        ),
        "EDGE-HMAC-SHA256\nGET\n/api/v1/vms\nhost_id=hv-01&keyword=web%20server\n"
        f"2025-03-01T12:00:00Z\n{EMPTY_SHA256}",
        "d481b7b9640421f608de2515b0e9525fbf06e8719451ac25c0c09334f271b15e",
    ),
    (
        signing.RequestToSign.build(
            "post", "/api/v1/vms/vm-7/snapshots", [], "2025-03-01T12:00:05Z", b'{"quiesce":true}'
        ),
        "EDGE-HMAC-SHA256\nPOST\n/api/v1/vms/vm-7/snapshots\n\n2025-03-01T12:00:05Z\n"
        "ee01cbd5db2b1e0eb22eeb43d6fd0781d61a64e2da83070a5405e7c2c9de652d",
        "ab8a2971e18c52ff331819cd2377e84b50ce97aa74e5e0d835f0cf24cc2b3542",
    ),
    (
        signing.RequestToSign.build("GET", "/api/v1/vms/hé a", [], "2025-03-01T12:00:10Z", b""),
        f"EDGE-HMAC-SHA256\nGET\n/api/v1/vms/h%C3%A9%20a\n\n2025-03-01T12:00:10Z\n{EMPTY_SHA256}",
        "95510997e5ab30dd016ebc0bdaf3bd3a77ccee5bd5613de06f8b154d34a0befe",
    ),
    (
        signing.RequestToSign.build(
            "GET",
            "/api/v1/hosts/h%C3%A9%20a/vms",
            [("b", "+/"), ("a", "2"), ("a", "1")],
            "2025-12-31T23:59:59Z",
            b"",
        ),
        "EDGE-HMAC-SHA256\nGET\n/api/v1/hosts/h%C3%A9%20a/vms\na=1&a=2&b=%2B%2F\n"
        f"2025-12-31T23:59:59Z\n{EMPTY_SHA256}",
        "c7818ec17a57fb90453f13ef570a19d79bf0b183a2774c41515ff62c426d0d49",
    ),
]


@pytest.mark.parametrize(("request_", "canonical", "expected"), VECTORS)
def test_canonical_string_and_signature_match_the_fixed_vector(
    request_: signing.RequestToSign, canonical: str, expected: str
) -> None:
    assert request_.canonical() == canonical
    assert signing.signature(SECRET, request_) == expected


@pytest.mark.parametrize(("request_", "canonical", "expected"), VECTORS)
def test_the_vector_header_verifies_and_one_changed_hex_digit_does_not(
    request_: signing.RequestToSign, canonical: str, expected: str
) -> None:
    now = datetime.fromisoformat(request_.date)
    assert now.tzinfo == UTC
    header = f"EDGE-HMAC-SHA256 AccessKey=AK-vec,Signature={expected}"
    assert signing.verify(request_, header, secrets={"AK-vec": SECRET}, now=now) == "AK-vec"
    flipped = expected[:-1] + ("0" if expected[-1] != "0" else "1")
    with pytest.raises(signing.SignatureError, match="signature mismatch"):
        signing.verify(
            request_,
            f"EDGE-HMAC-SHA256 AccessKey=AK-vec,Signature={flipped}",
            secrets={"AK-vec": SECRET},
            now=now,
        )
