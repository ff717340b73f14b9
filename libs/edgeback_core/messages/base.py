"""Base of every wire message and the JSON codec the bus uses for bodies.

Messages are frozen, keyword-only ``msgspec.Struct`` types; new fields always get
defaults so older consumers keep decoding newer messages. Bodies are JSON (never
pickle), so any language and any version of a service can read them.
"""

from __future__ import annotations

from typing import Any, TypeVar

import msgspec

_encoder = msgspec.json.Encoder()

T = TypeVar("T")


class Message(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=False):
    """Base class of every command, event, RPC request and RPC response."""


def encode(message: msgspec.Struct) -> bytes:
    """The JSON body of ``message``."""
    return _encoder.encode(message)


_decoders: dict[type[Any], msgspec.json.Decoder[Any]] = {}


def decoder(message_type: type[T]) -> msgspec.json.Decoder[T]:
    """A decoder for ``message_type``, built once per type and reused."""
    found = _decoders.get(message_type)
    if found is None:
        found = _decoders[message_type] = msgspec.json.Decoder(message_type)
    return found
