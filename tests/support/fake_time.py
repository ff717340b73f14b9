"""A monotonic clock that moves only when the code under test sleeps."""

from __future__ import annotations


class FakeTime:
    """Pass ``clock`` and ``sleep`` to code that takes them; ``slept`` lists each wait."""

    def __init__(self, now: float = 0.0) -> None:
        self.now = now
        self.slept: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds
