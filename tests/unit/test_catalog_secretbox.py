"""Secrets at rest: AES-GCM sealing bound to its place, and masking for reads."""

from __future__ import annotations

import base64

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edgeback_catalog.secretbox import SecretBox, mask
from edgeback_core.errors import ConfigError, IntegrityError
from edgeback_core.settings import Secret

BOX = SecretBox.from_setting(Secret(SecretBox.generate_key()))


@given(st.text(max_size=200))
def test_seal_then_open_gives_the_secret_back(secret: str) -> None:
    sealed = BOX.seal(secret, context="platforms/p1/secret_key")
    assert BOX.open(sealed, context="platforms/p1/secret_key") == secret


def test_sealed_text_does_not_contain_the_secret_and_differs_each_time() -> None:
    secret = "SK-very-secret-0123456789"
    a = BOX.seal(secret, context="c")
    b = BOX.seal(secret, context="c")
    assert a != b
    assert secret not in a
    assert secret.encode() not in base64.b64decode(a[3:])


def test_a_sealed_value_moved_elsewhere_or_opened_with_another_key_fails() -> None:
    sealed = BOX.seal("secret", context="platforms/p1/secret_key")
    with pytest.raises(IntegrityError):
        BOX.open(sealed, context="platforms/p2/secret_key")
    other = SecretBox.from_setting(Secret(SecretBox.generate_key()))
    with pytest.raises(IntegrityError):
        other.open(sealed, context="platforms/p1/secret_key")
    tampered = sealed[:-4] + ("AAAA" if not sealed.endswith("AAAA") else "BBBB")
    with pytest.raises(IntegrityError):
        BOX.open(tampered, context="platforms/p1/secret_key")


@pytest.mark.parametrize("key", ["not base64!", base64.b64encode(b"short").decode()])
def test_a_bad_master_key_is_a_config_error(key: str) -> None:
    with pytest.raises(ConfigError):
        SecretBox.from_setting(Secret(key))


def test_mask_shows_little() -> None:
    assert mask("AKIAEXAMPLE1234") == "AK…1234"
    assert mask("abcdef") == "…ef"
    assert mask("abc") == "…"
