"""Server-sent events as the API's progress streams send them (``docs/api.md``, Live
progress): parsed from lines (pure), and followed with reconnects.

``follow`` resumes a broken stream with ``Last-Event-ID`` (the API replays its event
log after it), a few times in a row, and stops after ``event: end``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import msgspec

from edgeback_cli.apiclient import ApiClient
from edgeback_core.errors import UnavailableError

RECONNECTS = 5


@dataclass(frozen=True, slots=True, kw_only=True)
class Sse:
    event: str
    data: Any
    """The decoded JSON of ``data:`` (None when it had none)."""
    id: str = ""


def parse(lines: Iterable[str]) -> Iterator[Sse]:
    """The events of a stream's lines (comments and keep-alives skipped)."""
    fields: dict[str, list[str]] = {}
    for line in lines:
        if not line:
            if "event" in fields or "data" in fields:
                yield _event(fields)
            fields = {}
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        fields.setdefault(name, []).append(value.removeprefix(" "))
    if "event" in fields or "data" in fields:
        yield _event(fields)


def _event(fields: dict[str, list[str]]) -> Sse:
    data = "\n".join(fields.get("data", []))
    return Sse(
        event=(fields.get("event") or ["message"])[-1],
        data=msgspec.json.decode(data) if data else None,
        id=(fields.get("id") or [""])[-1],
    )


def follow(
    client: ApiClient,
    path: str,
    *,
    reconnects: int = RECONNECTS,
    pause: Callable[[float], None] = time.sleep,
) -> Iterator[Sse]:
    """The events of the stream at ``path`` up to and with ``end``, across broken
    connections (``UnavailableError`` once ``reconnects`` tries in a row failed)."""
    last_id, failures = "", 0
    while True:
        headers = {"Last-Event-ID": last_id} if last_id else {}
        try:
            for event in parse(client.lines(path, headers=headers)):
                failures = 0
                last_id = event.id or last_id
                yield event
                if event.event == "end":
                    return
        except UnavailableError:
            failures += 1
            if failures > reconnects:
                raise
            pause(min(2.0**failures, 10.0))
            continue
        failures += 1  # the server closed the stream without an end
        if failures > reconnects:
            raise UnavailableError(f"the stream {path} kept closing before its end")
        pause(1.0)
