"""Admission of request bodies: at most so many bytes of bodies held by the node at once.

Every upload (chunk, manifest, checkpoint, digest list) reserves the bytes its body
will take (its ``Content-Length``, or the route's limit without one) before a byte of
it is read, and keeps them until its handler is done with the body. Requests that do
not fit wait in arrival order, without reading their bodies (the kernel's socket
buffers hold what the clients already sent); a request still waiting after
``wait_s`` is answered ``503 overloaded`` with ``Retry-After``. So the memory of
bodies stays under the budget whatever the number of clients. A body larger than the
whole budget is admitted alone.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections import deque
from collections.abc import AsyncIterator

from edgeback_core.errors import OverloadedError


class BodyBudget:
    def __init__(self, capacity: int, *, wait_s: float) -> None:
        self.capacity = capacity
        self.free = capacity
        self._wait_s = wait_s
        self._waiters: deque[tuple[int, asyncio.Future[None]]] = deque()

    @contextlib.asynccontextmanager
    async def hold(self, size: int) -> AsyncIterator[None]:
        """Reserve ``size`` bytes (at most the capacity) for the duration of the block."""
        size = min(size, self.capacity)
        await self._acquire(size)
        try:
            yield
        finally:
            self.free += size
            self._wake()

    async def _acquire(self, size: int) -> None:
        if not self._waiters and self.free >= size:
            self.free -= size
            return
        entry = (size, asyncio.get_running_loop().create_future())
        self._waiters.append(entry)
        try:
            async with asyncio.timeout(self._wait_s):
                await entry[1]
        except BaseException as exc:
            if entry[1].done() and not entry[1].cancelled():
                self.free += size  # granted just as we gave up: hand it on
            else:
                self._waiters.remove(entry)
            self._wake()
            if isinstance(exc, TimeoutError):
                raise OverloadedError(
                    "too many upload bodies in flight; try again shortly",
                    retry_after_s=max(1, math.ceil(self._wait_s / 4)),
                ) from None
            raise

    def _wake(self) -> None:
        while self._waiters and self.free >= self._waiters[0][0]:
            size, future = self._waiters.popleft()
            if not future.done():
                self.free -= size
                future.set_result(None)
