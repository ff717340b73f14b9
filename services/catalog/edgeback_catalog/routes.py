"""An RPC route of the catalog: its name, request type and handler."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import msgspec

Handler = Callable[[Any], Awaitable[msgspec.Struct]]


@dataclass(frozen=True, slots=True)
class Route:
    name: str
    request_type: type[msgspec.Struct]
    handler: Handler
