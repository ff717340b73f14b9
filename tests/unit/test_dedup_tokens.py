"""Tokens of the storage node: the tokens file, grants, minimum length, settings checks."""

from __future__ import annotations

import msgspec
import pytest

from edgeback_core.errors import ConfigError
from edgeback_core.settings import Secret
from edgeback_dedup.settings import DedupSettings
from edgeback_dedup.tokens import (
    MIN_TOKEN_LENGTH,
    Right,
    TokenEntry,
    TokensFile,
    TokenTable,
    entry_for,
    hash_token,
    new_token,
    parse_tokens_file,
)


def _file(*entries: TokenEntry) -> bytes:
    return msgspec.json.encode(TokensFile(tokens=list(entries)))


def test_a_token_finds_its_grant_and_only_its_pools_and_rights() -> None:
    token = new_token()
    assert len(token) >= 43
    table = TokenTable(parse_tokens_file(_file(entry_for("host-a", token, ["a"], [Right.WRITE]))))
    grant = table.authenticate(token.encode())
    assert grant is not None and grant.identity == "host-a"
    assert grant.allows("a", Right.WRITE)
    assert not grant.allows("a", Right.READ)
    assert not grant.allows("b", Right.WRITE)
    assert table.authenticate(new_token().encode()) is None


def test_the_file_holds_only_hashes() -> None:
    token = new_token()
    data = _file(entry_for("host-a", token, ["*"], [Right.READ]))
    assert token.encode() not in data and hash_token(token).hex().encode() in data


def test_admin_covers_every_right_on_its_pools() -> None:
    token = new_token()
    table = TokenTable(parse_tokens_file(_file(entry_for("ops", token, ["*"], [Right.ADMIN]))))
    grant = table.authenticate(token.encode())
    assert grant is not None and grant.admin
    assert all(grant.allows("any", right) for right in Right)


def test_a_short_token_is_refused_even_if_its_hash_is_known() -> None:
    short = "x" * (MIN_TOKEN_LENGTH - 1)
    table = TokenTable(parse_tokens_file(_file(entry_for("weak", short, ["a"], [Right.READ]))))
    assert table.authenticate(short.encode()) is None


@pytest.mark.parametrize(
    "data",
    [
        b"{",
        b'{"tokens": [{"id": "a", "sha256": "00", "pools": ["a"], "rights": ["read"]}]}',
        b'{"tokens": [{"id": "a", "sha256": "'
        + b"0" * 64
        + b'", "pools": [], "rights": ["read"]}]}',
        b'{"tokens": [{"id": "a", "sha256": "'
        + b"0" * 64
        + b'", "pools": ["../x"], "rights": ["read"]}]}',
        b'{"tokens": [{"id": "a", "sha256": "'
        + b"0" * 64
        + b'", "pools": ["a"], "rights": ["root"]}]}',
        _file(
            entry_for("a", new_token(), ["a"], [Right.READ]),
            entry_for("a", new_token(), ["b"], [Right.READ]),
        ),
    ],
)
def test_a_bad_tokens_file_is_a_config_error(data: bytes) -> None:
    with pytest.raises(ConfigError):
        parse_tokens_file(data)


def test_settings_need_a_token_source_long_tokens_and_both_tls_files() -> None:
    with pytest.raises(ConfigError) as bad:
        DedupSettings.load(
            {
                "EDGEBACK_DEDUP_DATA_DIR": "/tmp/x",
                "EDGEBACK_DEDUP_ADMIN_TOKEN": "short",
                "EDGEBACK_DEDUP_TLS_CERT_FILE": "/tmp/cert.pem",
            }
        )
    problems = bad.value.details["problems"]
    assert any("TOKENS_FILE or" in p for p in problems)
    assert any("ADMIN_TOKEN" in p for p in problems)
    assert any("TLS_CERT_FILE and TLS_KEY_FILE" in p for p in problems)
    ok = DedupSettings(data_dir="/tmp/x", token=Secret("t" * MIN_TOKEN_LENGTH))
    assert ok.problems() == []
