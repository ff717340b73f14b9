"""Typed settings loaded from the environment, all errors reported at once.

Every service declares its settings one way: a frozen dataclass subclassing
:class:`Settings`, with a ``PREFIX``; ``MySettings.load(environ)`` fills it from a
mapping (the process environment in ``main.py``, a plain dict in tests). A field's
environment name is ``<PREFIX><FIELD_NAME upper>`` unless annotated with
:class:`EnvName`; fields without a default are required, and an empty variable counts
as unset. Conditions on a value are rules (:class:`Rule`) in the field's ``Annotated``
type (``Annotated[float, POSITIVE]``), checked on defaults too. Parse errors and
broken rules of every field come back in one :class:`ConfigError`. Supported field
types: ``str``, ``int``, ``float``, ``bool``, ``Secret`` and ``X | None`` of those.
This is the only module that reads ``os.environ``.
"""

from __future__ import annotations

import dataclasses
import os
import types
import typing
from collections.abc import Callable, Mapping
from typing import Annotated, Any, ClassVar, Final, Self, TypeVar, cast

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


@dataclasses.dataclass(frozen=True, slots=True)
class Rule:
    """A condition on one setting's value: ``problem`` says what is wrong, or None."""

    problem: Callable[[Any], str | None]


@dataclasses.dataclass(frozen=True, slots=True)
class EnvName:
    """Read this field from ``name`` instead of ``<PREFIX><FIELD>``."""

    name: str


def at_least(low: float) -> Rule:
    return Rule(lambda v: None if v >= low else f"must be at least {low:g}")


def between(low: float, high: float) -> Rule:
    return Rule(lambda v: None if low <= v <= high else f"must be between {low:g} and {high:g}")


POSITIVE = Rule(lambda v: None if v > 0 else "must be positive")
NOT_NEGATIVE = Rule(lambda v: None if v >= 0 else "must be 0 or more")


def process_environ() -> Mapping[str, str]:
    """The process environment; call once, in a composition root."""
    return dict(os.environ)


DEAD_LETTER_STRATEGIES: Final = ("at-least-once", "at-most-once")


def dead_letter_strategy(environ: Mapping[str, str] | None = None) -> str:
    """How the work queues dead-letter (``EDGEBACK_BUS_DEAD_LETTER_STRATEGY``, default
    ``at-least-once``). Read here, not per service, because every process declaring a
    queue must declare it with the same arguments (the broker refuses a redeclaration
    that differs); ``docs/bus.md`` says when ``at-most-once`` is the right choice."""
    found = (os.environ if environ is None else environ).get(
        "EDGEBACK_BUS_DEAD_LETTER_STRATEGY", DEAD_LETTER_STRATEGIES[0]
    )
    if found not in DEAD_LETTER_STRATEGIES:
        raise ConfigError(
            f"EDGEBACK_BUS_DEAD_LETTER_STRATEGY: {found!r} is none of "
            f"{', '.join(DEAD_LETTER_STRATEGIES)}"
        )
    return found


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


def _annotations(hint: Any) -> tuple[Any, tuple[Any, ...]]:
    if typing.get_origin(hint) is Annotated:
        base, *extras = typing.get_args(hint)
        return base, tuple(extras)
    return hint, ()


def _default(field: dataclasses.Field[Any]) -> Any:
    if field.default is not dataclasses.MISSING:
        return field.default
    if field.default_factory is not dataclasses.MISSING:
        return field.default_factory()
    return dataclasses.MISSING


def _field_value(field: dataclasses.Field[Any], hint: Any, raw: str | None) -> Any:
    """The value of one field (``MISSING`` if required and unset); ``ValueError`` says why."""
    kind, optional = _unwrap_optional(hint)
    if raw is not None and raw != "":  # an empty variable counts as unset
        return _convert(raw, kind)
    default = _default(field)
    if default is dataclasses.MISSING and optional:
        return None
    if default is dataclasses.MISSING:
        raise ValueError("required")
    return default


def load(cls: type[T], environ: Mapping[str, str], *, prefix: str = "EDGEBACK_") -> T:
    """Build ``cls`` from ``environ``; raise one :class:`ConfigError` listing every problem."""
    if not dataclasses.is_dataclass(cls):
        raise TypeError(f"{cls!r} is not a dataclass")
    hints = typing.get_type_hints(cls, include_extras=True)
    values: dict[str, Any] = {}
    problems: list[str] = []
    for field in dataclasses.fields(cls):
        hint, extras = _annotations(hints[field.name])
        names = [extra.name for extra in extras if isinstance(extra, EnvName)]
        name = names[0] if names else f"{prefix}{field.name.upper()}"
        try:
            value = _field_value(field, hint, environ.get(name))
        except ValueError as exc:
            problems.append(f"{name}: {exc}")
            continue
        rules = [extra for extra in extras if isinstance(extra, Rule)]
        broken = [p for rule in rules if value is not None and (p := rule.problem(value))]
        problems += [f"{name}: {problem}" for problem in broken]
        values[field.name] = value
    if problems:
        raise ConfigError("invalid settings: " + "; ".join(problems), problems=problems)
    return cls(**values)


class Settings:
    """Base of every service's settings dataclass: ``load`` reads ``<PREFIX><FIELD>``."""

    __slots__ = ()
    PREFIX: ClassVar[str] = "EDGEBACK_"

    @classmethod
    def load(cls, environ: Mapping[str, str]) -> Self:
        """Every field from ``environ``; one :class:`ConfigError` lists every problem."""
        return load(cls, environ, prefix=cls.PREFIX)


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
