"""Pages of lists: ``limit`` items at a time and an opaque ``cursor`` to go on. Pure.

A cursor is the base64url of the JSON sort key of the last item shown; the next page
holds the items after it. Lists the catalog returns whole are paged here; lists it
pages itself (jobs, runs, backup sets, restores, events, audit) carry the catalog's own
position in the cursor.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable, Sequence
from typing import Annotated, Any, Generic, TypeVar

import msgspec

from edgeback_core.errors import InvalidInputError
from edgeback_core.messages.base import Message

T = TypeVar("T")
Key = tuple[Any, ...]

Limit = Annotated[int, msgspec.Meta(ge=1, le=200, description="items per page")]


class Page(Message, Generic[T], frozen=True, kw_only=True):
    items: list[T]
    next_cursor: str | None = None
    """Pass it as ``cursor`` for the next page; null on the last page."""


def encode_cursor(key: Key) -> str:
    return base64.urlsafe_b64encode(msgspec.json.encode(list(key))).decode().rstrip("=")


def decode_cursor(cursor: str) -> Key:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        value = msgspec.json.decode(raw)
    except (binascii.Error, ValueError, msgspec.DecodeError) as exc:
        raise InvalidInputError("cursor is not one this API gave", field="cursor") from exc
    if not isinstance(value, list):
        raise InvalidInputError("cursor is not one this API gave", field="cursor")
    return tuple(value)


def position_of(cursor: str | None) -> str | None:
    """The catalog's position (one text) inside a cursor of a catalog-paged list."""
    if cursor is None:
        return None
    key = decode_cursor(cursor)
    if len(key) != 1 or not isinstance(key[0], str):
        raise InvalidInputError("cursor is not one this API gave", field="cursor")
    return key[0]


def page_of(items: Sequence[T], key: Callable[[T], Key], cursor: str | None, limit: int) -> Page[T]:
    """The page of ``items`` (in any order) after ``cursor``, sorted by ``key``."""
    ordered = sorted(items, key=key)
    if cursor is not None:
        after = decode_cursor(cursor)
        try:
            ordered = [item for item in ordered if key(item) > after]
        except TypeError as exc:
            raise InvalidInputError("cursor is not one this API gave", field="cursor") from exc
    shown = ordered[:limit]
    more = len(ordered) > limit
    return Page(items=shown, next_cursor=encode_cursor(key(shown[-1])) if more else None)
