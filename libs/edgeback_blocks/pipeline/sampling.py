"""Which unchanged chunks an incremental backup re-reads to check the snapshot diff.

Snapshot diffs have been wrong in real Ceph releases (Benji's authors hit it), so an
incremental never trusts the diff blindly: it re-reads a small random sample of the
chunks the diff calls unchanged and compares them with the parent manifest. Pure: the
random generator is passed in.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterable

DEFAULT_FRACTION = 0.01
DEFAULT_CAP = 8


def sample_unchanged(
    unchanged: Iterable[int],
    rng: random.Random,
    *,
    fraction: float = DEFAULT_FRACTION,
    cap: int = DEFAULT_CAP,
) -> list[int]:
    """A sorted sample of ``fraction`` of ``unchanged`` (at least one, at most ``cap``)."""
    pool = list(unchanged)
    if not pool or cap <= 0 or fraction <= 0:
        return []
    size = min(cap, len(pool), max(1, math.ceil(len(pool) * fraction)))
    return sorted(rng.sample(pool, size))
