"""Names that become path components on the storage node: nothing may escape the pool."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edgeback_core.errors import InvalidInputError
from edgeback_pools.names import parse_digest_hex, safe_name, split_digests


@given(st.text(max_size=200))
def test_accepted_names_are_single_visible_components(value: str) -> None:
    try:
        name = safe_name(value, what="vm")
    except InvalidInputError:
        return
    assert name == value
    assert "/" not in name and "\\" not in name and "\0" not in name
    assert not name.startswith(".")
    assert 1 <= len(name) <= 128
    assert name.isascii()


@pytest.mark.parametrize(
    "value", ["", ".", "..", "../x", "a/b", ".hidden", "x\0y", "é", "a b", "a" * 129, "-x"]
)
def test_dangerous_names_are_refused(value: str) -> None:
    with pytest.raises(InvalidInputError) as refused:
        safe_name(value, what="disk")
    assert refused.value.details["field"] == "disk"


@pytest.mark.parametrize("value", ["vm-1", "disk.0", "a..b", "V_2026-01-01", "0" * 128])
def test_ordinary_names_pass(value: str) -> None:
    assert safe_name(value, what="vm") == value


@given(st.binary(min_size=32, max_size=32))
def test_digest_hex_round_trip(raw: bytes) -> None:
    assert parse_digest_hex(raw.hex()) == raw


@pytest.mark.parametrize("value", ["", "0" * 63, "0" * 65, "A" * 64, "g" * 64, "0" * 62 + "/."])
def test_malformed_digests_are_refused(value: str) -> None:
    with pytest.raises(InvalidInputError):
        parse_digest_hex(value)


@given(st.lists(st.binary(min_size=32, max_size=32), max_size=50))
def test_digest_lists_split_back(digests: list[bytes]) -> None:
    assert split_digests(b"".join(digests)) == digests


@given(st.binary().filter(lambda b: len(b) % 32 != 0))
def test_digest_lists_of_odd_length_are_refused(body: bytes) -> None:
    with pytest.raises(InvalidInputError):
        split_digests(body)
