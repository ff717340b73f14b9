"""A state machine as data: states, the transitions allowed between them, and their
check. Runs, restores and VM tasks each declare their table and get the same rules
(``runstate``, ``restorestate``, ``vmtaskstate``); the stores enforce each checked
transition again with a conditional update whose filter is :meth:`allowed_from`.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from typing import Generic, TypeVar

from edgeback_core.errors import InvalidTransitionError

S = TypeVar("S", bound=enum.StrEnum)


class StateMachine(Generic[S]):
    def __init__(self, noun: str, transitions: Mapping[S, frozenset[S]]) -> None:
        self.noun, self.transitions = noun, transitions
        self.terminal: frozenset[S] = frozenset(s for s, nxt in transitions.items() if not nxt)

    def is_allowed(self, current: S, target: S) -> bool:
        return target in self.transitions[current]

    def allowed_from(self, target: S) -> frozenset[S]:
        """Every state from which ``target`` may be entered."""
        return frozenset(s for s, nxt in self.transitions.items() if target in nxt)

    def check(self, current: S, target: S) -> None:
        """Raise :class:`InvalidTransitionError` unless ``current → target`` is allowed."""
        if not self.is_allowed(current, target):
            raise InvalidTransitionError(
                f"a {self.noun} cannot go from {current} to {target}",
                current=str(current),
                target=str(target),
            )
