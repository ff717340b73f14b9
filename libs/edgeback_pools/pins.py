"""Chunks the node recently vouched for: answered "present" to a client, or stored.

Between a backup's ``chunks/missing`` answer (or upload) and its manifest commit, the
chunks it relies on are referenced by nothing the garbage collector can see, except
the run's last checkpoint. :class:`RecentDigests` remembers every digest the node
vouched for during the last ``ttl_s`` seconds so that GC never sweeps them (see
``docs/storage-node.md``, garbage collection).

Memory is kept small and bounded by the window: digests are kept as their first 8
bytes (a collision only keeps a garbage chunk a little longer, never the reverse) in
one set per time bucket, and whole buckets are dropped as they age out. Time is an
injected monotonic clock. Used only on the event loop: no lock.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterable

from edgeback_blocks.ids import ChunkDigest

_PREFIX = 8
_BUCKETS = 24


def _short(digest: ChunkDigest) -> int:
    return int.from_bytes(digest[:_PREFIX], "big")


class RecentDigests:
    """Digests seen during the last ``ttl_s`` seconds (at least; up to one bucket more)."""

    def __init__(self, ttl_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl_s = ttl_s
        self._clock = clock
        self._width = max(ttl_s / _BUCKETS, 1e-3)
        self._buckets: deque[tuple[float, set[int]]] = deque()

    def add(self, digests: Iterable[ChunkDigest]) -> None:
        if self.ttl_s <= 0:
            return
        now = self._clock()
        self._expire(now)
        if not self._buckets or now - self._buckets[-1][0] >= self._width:
            self._buckets.append((now, set()))
        self._buckets[-1][1].update(_short(d) for d in digests)

    def __contains__(self, digest: ChunkDigest) -> bool:
        self._expire(self._clock())
        short = _short(digest)
        return any(short in bucket for _, bucket in self._buckets)

    def __len__(self) -> int:
        return sum(len(bucket) for _, bucket in self._buckets)

    def _expire(self, now: float) -> None:
        # a bucket started at t holds digests seen in [t, t + width): drop it once the
        # newest of them is older than the window
        while self._buckets and now - self._buckets[0][0] > self.ttl_s + self._width:
            self._buckets.popleft()
