"""Typed settings loaded from the environment, all errors reported at once.

Each service declares a frozen dataclass; :func:`load` fills it from a mapping (the
process environment in ``main.py``, a plain dict in tests). A field's environment name
is ``<prefix><FIELD_NAME upper>``; fields without a default are required, and an
empty variable counts as unset. Supported
field types: ``str``, ``int``, ``float``, ``bool``, ``Secret`` and ``X | None`` of those.
This is the only module that reads ``os.environ``.
"""

from __future__ import annotations

import dataclasses
import os
import types
import typing
from collections.abc import Callable, Mapping
from typing import Any, TypeVar, cast

from edgeback_core.errors import ConfigError

T = TypeVar("T")

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


@dataclasses.dataclass(frozen=True, slots=True)
class Secret:
    """A string that never shows itself in ``repr`` or logs."""

    value: str = dataclasses.field(repr=False)

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def reveal(self) -> str:
        return self.value


def process_environ() -> Mapping[str, str]:
    """The process environment; call once, in a composition root."""
    return dict(os.environ)


def _convert(raw: str, kind: Any) -> Any:
    if kind is str:
        return raw
    if kind is Secret:
        return Secret(raw)
    if kind is bool:
        low = raw.strip().lower()
        if low in _TRUE:
            return True
        if low in _FALSE:
            return False
        raise ValueError(f"expected a boolean (true/false), got {raw!r}")
    if kind is int:
        return int(raw)
    if kind is float:
        return float(raw)
    raise TypeError(f"unsupported settings type {kind!r}")


def _unwrap_optional(kind: Any) -> tuple[Any, bool]:
    if isinstance(kind, types.UnionType) or typing.get_origin(kind) is typing.Union:
        args = [a for a in typing.get_args(kind) if a is not type(None)]
        if len(args) == 1:
            return args[0], True
    return kind, False


def load(cls: type[T], environ: Mapping[str, str], *, prefix: str = "EDGEBACK_") -> T:
    """Build ``cls`` from ``environ``; raise one :class:`ConfigError` listing every problem."""
    if not dataclasses.is_dataclass(cls):
        raise TypeError(f"{cls!r} is not a dataclass")
    hints = typing.get_type_hints(cls)
    values: dict[str, Any] = {}
    problems: list[str] = []
    for field in dataclasses.fields(cls):
        name = f"{prefix}{field.name.upper()}"
        kind, optional = _unwrap_optional(hints[field.name])
        raw = environ.get(name)
        if raw is None or raw == "":  # an empty variable counts as unset
            has_default = (
                field.default is not dataclasses.MISSING
                or field.default_factory is not dataclasses.MISSING
            )
            if not has_default and not optional:
                problems.append(f"{name}: required")
            elif optional and not has_default:
                values[field.name] = None
            continue
        try:
            values[field.name] = _convert(raw, kind)
        except ValueError as exc:
            problems.append(f"{name}: {exc}")
    if problems:
        raise ConfigError("invalid settings: " + "; ".join(problems), problems=problems)
    return cls(**values)


class ProblemCollector:
    """Load several settings groups and report the problems of all of them at once.

    ``collect`` runs one load and keeps its problems; ``check`` raises one
    :class:`ConfigError` listing them all (call it before using any collected value).
    """

    def __init__(self) -> None:
        self.problems: list[str] = []

    def collect(self, build: Callable[[], T]) -> T:
        try:
            return build()
        except ConfigError as exc:
            self.problems.extend(exc.details.get("problems", [exc.message]))
            return cast(T, None)  # never used: check() raises first

    def check(self) -> None:
        if self.problems:
            raise ConfigError(
                "invalid settings: " + "; ".join(self.problems), problems=self.problems
            )
