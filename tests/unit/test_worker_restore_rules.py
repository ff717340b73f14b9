"""Pure parts of the worker's VM restore: resume segments and watermark, the marks on
the target images, the mapping re-check, and where a restore point's manifest is."""

from __future__ import annotations

import random

from hypothesis import given
from hypothesis import strategies as st

from edgeback_blocks.ids import ChunkDigest
from edgeback_blocks.pipeline.restore import Watermark, segments
from edgeback_core.messages import restores as r
from edgeback_core.messages.restores import DiskMap, PointDisk
from edgeback_platform.models import Disk, DiskId, GuestAgent, HypervisorId, Vm, VmId
from edgeback_worker import restoremarks as marks
from edgeback_worker.restorechecks import pairs, refusals
from edgeback_worker.vm_restore import manifest_ref

DIGEST = ChunkDigest(b"\x01" * 32)


@given(st.lists(st.booleans(), max_size=60), st.integers(1, 7))
def test_segments_cover_every_chunk_once_in_order(zeros: list[bool], step: int) -> None:
    entries = tuple(None if z else DIGEST for z in zeros)
    found = segments(entries, zero_step=step)
    covered = [i for seg in found for i in range(seg.first, seg.end)]
    assert covered == list(range(len(entries)))
    assert all(seg.zero == (entries[seg.first] is None) for seg in found)
    assert all(seg.count <= step for seg in found if seg.zero)
    assert all(seg.count == 1 for seg in found if not seg.zero)


@given(
    st.lists(st.booleans(), max_size=60),
    st.integers(1, 7),
    st.none() | st.frozensets(st.integers(0, 59)),
    st.none() | st.frozensets(st.integers(0, 59)),
)
def test_segments_keep_to_the_changed_and_allocated_chunks(
    zeros: list[bool], step: int, changed: frozenset[int] | None, allocated: frozenset[int] | None
) -> None:
    entries = tuple(None if z else DIGEST for z in zeros)
    found = segments(entries, zero_step=step, changed=changed, allocated=allocated)
    covered = [i for seg in found for i in range(seg.first, seg.end)]
    expected = [
        i
        for i, entry in enumerate(entries)
        if (changed is None or i in changed)
        and (entry is not None or allocated is None or i in allocated)
    ]
    assert covered == expected
    assert all(seg.zero == (entries[seg.first] is None) for seg in found)
    assert all(seg.count <= step for seg in found if seg.zero)
    # a zero segment is a run of consecutive chunks
    assert all(all(entries[i] is None for i in range(s.first, s.end)) for s in found if s.zero)


@given(st.lists(st.booleans(), min_size=1, max_size=40), st.randoms(use_true_random=False))
def test_watermark_is_the_first_unfinished_segment(zeros: list[bool], rng: random.Random) -> None:
    entries = tuple(None if z else DIGEST for z in zeros)
    work = segments(entries, zero_step=3)
    mark = Watermark(work, len(entries))
    order = list(range(len(work)))
    rng.shuffle(order)
    done: set[int] = set()
    for position in order:
        mark.finish(position)
        done.add(position)
        pending = [p for p in range(len(work)) if p not in done]
        expected = work[pending[0]].first if pending else len(entries)
        assert mark.value == expected
        # every chunk below the watermark belongs to a finished segment
        assert all(p in done for p, seg in enumerate(work) if seg.end <= mark.value)


def test_a_checkpoint_of_another_manifest_is_ignored() -> None:
    value = marks.encode_mark("vm/d0/v1", 7)
    assert marks.resume_index(value, "vm/d0/v1") == 7
    assert marks.resume_index(value, "vm/d0/v2") == 0
    assert marks.resume_index(None, "vm/d0/v1") == 0
    assert marks.resume_index("{not json", "vm/d0/v1") == 0
    assert marks.decode_safety(marks.encode_safety("s1", "snap-1")) == marks.SafetyMark(
        snapshot_id="s1", rbd_snap="snap-1"
    )
    assert marks.decode_safety("[]") is None


def _vm(*sizes: int) -> Vm:
    disks = tuple(Disk(id=DiskId(f"t{i}"), size=size, pool="rbd") for i, size in enumerate(sizes))
    agent = GuestAgent(installed=True, running=True)
    return Vm(id=VmId("vm"), name="vm", host_id=HypervisorId("h"), state="running",
              guest_agent=agent, disks=disks)  # fmt: skip


POINT = [
    PointDisk(disk_id="s0", size_bytes=8, manifest_name="src/s0/v1", manifest_version="v1"),
    PointDisk(disk_id="s1", size_bytes=8, manifest_name="src/s1", manifest_version="v1"),
]


def test_a_mapping_naming_a_disk_twice_is_refused() -> None:
    twice = [DiskMap(source_disk_id="s0", target_disk_id="t0"),
             DiskMap(source_disk_id="s1", target_disk_id="t0")]  # fmt: skip
    found = refusals(POINT, _vm(8, 8), twice, needs_agent=False)
    assert [f.code for f in found] == [r.MAPPING_TARGET_TWICE]


def test_a_good_mapping_pairs_each_disk_with_its_target() -> None:
    mapping = [DiskMap(source_disk_id="s0", target_disk_id="t1"),
               DiskMap(source_disk_id="s1", target_disk_id="t0")]  # fmt: skip
    vm = _vm(8, 16)
    assert refusals(POINT, vm, mapping, needs_agent=True) == []
    assert [(p.source.disk_id, p.target.id) for p in pairs(POINT, vm, mapping)] == [
        ("s0", "t1"),
        ("s1", "t0"),
    ]


def test_the_manifest_of_a_point_disk_from_a_run_or_an_import() -> None:
    assert manifest_ref(POINT[0]) == manifest_ref(
        PointDisk(disk_id="s0", size_bytes=8, manifest_name="src/s0", manifest_version="v1")
    )
    ref = manifest_ref(POINT[1])
    assert (ref.vm, ref.disk, ref.version) == ("src", "s1", "v1")
