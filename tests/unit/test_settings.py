from dataclasses import dataclass

import pytest

from edgeback_core.errors import ConfigError
from edgeback_core.settings import Secret, load


@dataclass(frozen=True, slots=True, kw_only=True)
class Example:
    amqp_url: str
    token: Secret
    port: int = 8080
    ratio: float = 0.5
    debug: bool = False
    note: str | None = None


def test_load_reads_typed_values_with_prefix():
    got = load(
        Example,
        {"X_AMQP_URL": "amqp://h", "X_TOKEN": "s3cret", "X_PORT": "9", "X_DEBUG": "yes"},
        prefix="X_",
    )
    assert got.amqp_url == "amqp://h"
    assert got.token.reveal() == "s3cret"
    assert got.port == 9
    assert got.debug is True
    assert got.ratio == 0.5
    assert got.note is None


def test_load_reports_every_bad_key_at_once():
    with pytest.raises(ConfigError) as info:
        load(Example, {"X_PORT": "nine", "X_DEBUG": "maybe"}, prefix="X_")
    problems = info.value.details["problems"]
    assert any(p.startswith("X_AMQP_URL: required") for p in problems)
    assert any(p.startswith("X_TOKEN: required") for p in problems)
    assert any(p.startswith("X_PORT:") for p in problems)
    assert any(p.startswith("X_DEBUG:") for p in problems)
    assert info.value.code == "config_error"


def test_secret_never_shows_in_repr():
    got = load(Example, {"X_AMQP_URL": "a", "X_TOKEN": "hunter2"}, prefix="X_")
    assert "hunter2" not in repr(got)
    assert "hunter2" not in str(got.token)
