"""Positions in the catalog's event log of runs and restores. Pure.

An entry's key is the event's time (UTC, fixed width) then its message id, a string
that sorts like the pair: the catalog pages its log by it (``after``), and the API
uses it as the id of each server-sent event, so a client that resumes with
``Last-Event-ID`` is given the log after the last event it saw.
"""

from __future__ import annotations

from datetime import UTC, datetime


def entry_key(at: datetime, message_id: str) -> str:
    """Sorts as (``at`` in UTC, ``message_id``): fixed-width time, then the id."""
    moment = at.astimezone(UTC) if at.tzinfo else at.replace(tzinfo=UTC)
    return f"{moment:%Y-%m-%dT%H:%M:%S.%f}Z|{message_id}"
