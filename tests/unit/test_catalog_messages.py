"""The catalog's wire structs refuse what they do not know."""

from __future__ import annotations

import msgspec
import pytest

from edgeback_core.messages import catalog as m
from edgeback_core.messages.base import decoder, encode

ADMIN = {"user": "root"}


def test_unknown_fields_are_refused() -> None:
    body = msgspec.json.encode({"actor": ADMIN, "platform_id": "p", "surprise": 1})
    with pytest.raises(msgspec.ValidationError, match="surprise"):
        decoder(m.PlatformGet).decode(body)


def test_wrong_types_and_unknown_roles_are_refused() -> None:
    with pytest.raises(msgspec.ValidationError):
        decoder(m.PlatformRegister).decode(
            msgspec.json.encode(
                {
                    "actor": ADMIN,
                    "name": "p",
                    "address": "a",
                    "port": "30188",
                    "access_key": "k",
                    "secret_key": "s",
                    "default_host_id": "h",
                }
            )
        )
    with pytest.raises(msgspec.ValidationError):
        decoder(m.HostList).decode(msgspec.json.encode({"actor": {"user": "x", "role": "root"}}))


def test_register_defaults_port_30188_and_round_trips() -> None:
    req = m.PlatformRegister(
        actor=m.ActorRef(user="root"),
        name="edge-1",
        address="10.0.0.1",
        access_key="AK",
        secret_key="SK",
        default_host_id="h1",
    )
    assert req.port == 30188
    assert decoder(m.PlatformRegister).decode(encode(req)) == req


def test_heartbeat_event_tolerates_newer_fields() -> None:
    body = msgspec.json.encode({"host_id": "h", "hostname": "n", "future": True})
    assert decoder(m.HostHeartbeat).decode(body).host_id == "h"
