"""Ceph RBD through Debian's rados/rbd bindings: the operations the backup data path is
built on (snapshots, diff between snapshots, reads from a snapshot), on the dev cluster.

The bindings block; plain sync tests are fine here (services run them off the loop)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import rados
import rbd

pytestmark = pytest.mark.integration

KiB = 1024
MiB = 1024 * KiB
OBJECT = 4 * MiB  # default RBD object size (order 22)
SIZE = 4 * OBJECT

Extent = tuple[int, int, bool]


@pytest.fixture(scope="module")
def ioctx(ceph_conf: str, ceph_pool: str) -> Iterator[Any]:
    # an explicit conffile: without one librados looks the monitors up in DNS
    cluster = rados.Rados(conffile=ceph_conf)
    cluster.connect(timeout=30)
    try:
        with cluster.open_ioctx(ceph_pool) as ctx:
            yield ctx
    finally:
        cluster.shutdown()


@pytest.fixture
def image_name(ioctx: Any) -> Iterator[str]:
    name = f"test-{uuid.uuid4().hex[:12]}"
    rbd.RBD().create(ioctx, name, SIZE)
    try:
        yield name
    finally:
        with rbd.Image(ioctx, name) as image:
            for snap in list(image.list_snaps()):
                image.remove_snap(snap["name"])
        rbd.RBD().remove(ioctx, name)


def _diff(image: Any, from_snapshot: str | None) -> list[Extent]:
    extents: list[Extent] = []

    def collect(offset: int, length: int, exists: bool) -> int:
        extents.append((offset, length, exists))
        return 0

    image.diff_iterate(0, SIZE, from_snapshot, collect)
    return sorted(extents)


def test_diff_between_snapshots_is_exactly_what_changed(ioctx: Any, image_name: str) -> None:
    base, tail = os.urandom(OBJECT), os.urandom(64 * KiB)
    with rbd.Image(ioctx, image_name) as image:
        image.write(base, 0)
        image.write(tail, 2 * OBJECT)
        image.create_snap("s1")
        # inside data that existed at s1: reported exactly as written
        image.write(os.urandom(4 * KiB), 4 * KiB)
        image.write(os.urandom(8 * KiB), 2 * OBJECT + 16 * KiB)
        # past object 2's end of data at s1 (64 KiB): reported from that old end to the
        # new end, zeros in between; a new object fully written: reported whole
        image.write(os.urandom(8 * KiB), 2 * OBJECT + 128 * KiB)
        image.write(os.urandom(OBJECT), 3 * OBJECT)
        image.create_snap("s2")
        image.write(os.urandom(4 * KiB), 0)  # after s2: in no s1..s2 diff

    with rbd.Image(ioctx, image_name, snapshot="s2", read_only=True) as at_s2:
        assert _diff(at_s2, "s1") == [
            (4 * KiB, 4 * KiB, True),
            (2 * OBJECT + 16 * KiB, 8 * KiB, True),
            (2 * OBJECT + 64 * KiB, 72 * KiB, True),
            (3 * OBJECT, OBJECT, True),
        ]
    with rbd.Image(ioctx, image_name, snapshot="s1", read_only=True) as at_s1:
        # a full diff lists allocated data only (object 1 was never written)
        assert _diff(at_s1, None) == [(0, OBJECT, True), (2 * OBJECT, len(tail), True)]


def test_read_back_from_snapshots_and_head(ioctx: Any, image_name: str) -> None:
    old, new = os.urandom(MiB), os.urandom(4096)
    with rbd.Image(ioctx, image_name) as image:
        image.write(old, OBJECT)
        image.create_snap("s1")
        image.write(new, OBJECT + 4096)
        assert [s["name"] for s in image.list_snaps()] == ["s1"]
        head = image.read(OBJECT, MiB)

    with rbd.Image(ioctx, image_name, snapshot="s1", read_only=True) as at_s1:
        assert at_s1.read(OBJECT, MiB) == old
        assert at_s1.read(0, 4096) == bytes(4096)  # never written: reads as zeros
    assert head == old[:4096] + new + old[8192:]
