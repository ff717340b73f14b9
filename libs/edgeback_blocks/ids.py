"""Identifiers of the block data path: chunk digests, pool keys, manifest and pool ids.

Digests and keys are raw 32-byte values (``.hex()`` gives the file and URL name of a
chunk); manifest and pool ids are opaque strings chosen by the storage node and the
catalog. They are ``NewType``s so that signatures say which bytes they expect.
"""

from __future__ import annotations

from typing import NewType

DIGEST_SIZE = 32
"""Length in bytes of a chunk digest and of a pool key."""

ChunkDigest = NewType("ChunkDigest", bytes)
"""Keyed BLAKE3 digest (32 raw bytes) of a chunk's uncompressed data."""

PoolKey = NewType("PoolKey", bytes)
"""The 32-byte secret BLAKE3 key of one pool: digests are only comparable within it."""

ManifestId = NewType("ManifestId", str)
"""Name of a stored manifest (assigned by whoever stores it)."""

PoolId = NewType("PoolId", str)
"""Name of a storage pool."""
