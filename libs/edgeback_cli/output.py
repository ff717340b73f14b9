"""What API commands print on stdout: the API's JSON as it is (``--output json``), or
a table of chosen columns (``--output table``, the default). Pure but for ``show``."""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from typing import Any

import msgspec

Column = tuple[str, str]
"""(heading, dotted path into an item), e.g. ``("POOL", "spec.target.pool.name")``."""
Columns = Sequence[Column]


def pick(item: Any, path: str) -> Any:
    value = item
    for part in path.split("."):
        if not isinstance(value, Mapping):
            return None
        value = value.get(part)
    return value


def cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list):
        return ",".join(cell(v) for v in value) or "-"
    if isinstance(value, str) and len(value) > 19 and value[10:11] == "T":
        return value[:19].replace("T", " ")  # an ISO time, to the second
    return str(value)


def table(items: Sequence[Any], columns: Sequence[Column]) -> str:
    rows = [[h for h, _ in columns]]
    rows += [[cell(pick(item, path)) for _, path in columns] for item in items]
    widths = [max(len(row[i]) for row in rows) for i in range(len(columns))]
    lines = [
        "  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip() for row in rows
    ]
    return "\n".join(lines)


def fields(item: Mapping[str, Any], columns: Sequence[Column]) -> str:
    """One item as ``heading: value`` lines."""
    width = max(len(h) for h, _ in columns)
    return "\n".join(f"{h.lower():>{width}}: {cell(pick(item, p))}" for h, p in columns)


def show(data: Any, *, as_json: bool, columns: Sequence[Column] = (), one: bool = False) -> None:
    """Print ``data``: JSON, a table of a list, or one item's fields."""
    if as_json:
        sys.stdout.write(msgspec.json.format(msgspec.json.encode(data)).decode() + "\n")
    elif one:
        print(fields(data, columns))
    else:
        print(table(data, columns) if data else "(none)")
