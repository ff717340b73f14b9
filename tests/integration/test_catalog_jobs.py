"""Backup jobs through the catalog's RPCs over both buses, with the catalog DB behind:
create, read, list by page and host, optimistic edits, clone, enable, delete (refused
while a run is active), every problem of a definition named, every change audited."""

# ruff: noqa: F811 (``world`` is the fixture imported from test_catalog_rpc)
from __future__ import annotations

import asyncio

import msgspec
import pytest
from tests.integration.test_catalog_rpc import (  # noqa: F401
    ADMIN,
    World,
    register,
    registered_host,
    world,
)

from edgeback_catalog.mongo import Coll
from edgeback_core.messages import backups as b
from edgeback_core.messages import catalog as m
from edgeback_core.messages import catalog_rpc
from edgeback_core.messages import jobs as j

pytestmark = pytest.mark.integration


async def setup(world: World) -> tuple[str, str]:
    """An active backup host and a platform on it: what a job refers to."""
    host = await registered_host(world)
    await world.call(
        catalog_rpc.HOST_ACTIVATE, m.HostActivate(actor=ADMIN, host_id=host), m.HostInfo
    )
    platform = await world.call(catalog_rpc.PLATFORM_REGISTER, register(host), m.PlatformInfo)
    return host, platform.id


def spec(host: str, platform: str, name: str = "nightly", **options: object) -> j.JobSpec:
    return j.JobSpec(
        name=name,
        type="incremental",
        content=j.JobContent(
            vms=[j.VmSelection(platform_id=platform, physical_host_id="hv1", vm_id="vm-1")],
            exclude_names=["test-*"],
        ),
        target=j.JobTarget(host_id=host, pool=j.PoolRef(node_url="http://node:8080", name="p1")),
        options=msgspec.structs.replace(j.JobOptions(), **options),
    )


async def create(world: World, s: j.JobSpec) -> j.JobInfo:
    return await world.call(j.JOB_CREATE, j.JobCreate(actor=ADMIN, spec=s), j.JobInfo)


async def test_job_lifecycle(world: World) -> None:
    host, platform = await setup(world)
    job = await create(world, spec(host, platform, parallel_vms=3))
    assert (job.revision, job.enabled, job.spec.options.parallel_vms) == (1, True, 3)
    got = await world.call(j.JOB_GET, j.JobGet(actor=ADMIN, job_id=job.id), j.JobInfo)
    assert got == job
    edited = spec(host, platform, parallel_vms=4)
    update = j.JobUpdate(actor=ADMIN, job_id=job.id, revision=1, spec=edited)
    after = await world.call(j.JOB_UPDATE, update, j.JobInfo)
    assert (after.revision, after.spec.options.parallel_vms) == (2, 4)
    assert await world.code_of(j.JOB_UPDATE, update) == "stale_version"
    clone = await world.call(
        j.JOB_CLONE, j.JobClone(actor=ADMIN, job_id=job.id, name="nightly-2"), j.JobInfo
    )
    assert (clone.enabled, clone.spec.name, clone.spec.options) == (
        False,
        "nightly-2",
        after.spec.options,
    )
    same_name = j.JobClone(actor=ADMIN, job_id=job.id, name="nightly")
    assert await world.code_of(j.JOB_CLONE, same_name) == "name_taken"
    off = j.JobSetEnabled(actor=ADMIN, job_id=job.id, enabled=False)
    assert not (await world.call(j.JOB_SET_ENABLED, off, j.JobInfo)).enabled
    gone = j.JobDelete(actor=ADMIN, job_id=clone.id)
    assert (await world.call(j.JOB_DELETE, gone, m.Done)).ok
    assert await world.code_of(j.JOB_GET, j.JobGet(actor=ADMIN, job_id=clone.id)) == "not_found"
    audit = await world.call(catalog_rpc.AUDIT_LIST, m.AuditList(actor=ADMIN), m.AuditListReply)
    actions = [e.action for e in audit.entries if e.resource.startswith("job/")]
    assert actions == [
        "job.deleted", "job.disabled", "job.cloned", "job.created", "job.updated", "job.created",
    ]  # fmt: skip
    code = await world.code_of(
        catalog_rpc.PLATFORM_UNREGISTER, m.PlatformUnregister(actor=ADMIN, platform_id=platform)
    )
    assert code == "platform_in_use"


async def test_every_problem_is_named_and_nothing_is_stored(world: World) -> None:
    host, platform = await setup(world)
    bad = spec(host, platform, name="a/b", vms_per_physical_host=9, keep_latest_snapshot=False)
    with pytest.raises(Exception) as err:
        await create(world, bad)
    assert getattr(err.value, "code", None) == "invalid_input"
    for field in ("name:", "options.vms_per_physical_host", "options.keep_latest_snapshot"):
        assert field in str(err.value)
    dangling = spec(host, "no-such-platform")
    assert await world.code_of(j.JOB_CREATE, j.JobCreate(actor=ADMIN, spec=dangling)) == (
        "unknown_reference"
    )
    no_host = msgspec.structs.replace(
        spec(host, platform),
        target=j.JobTarget(host_id="h-none", pool=j.PoolRef(node_url="http://n", name="p")),
    )
    assert await world.code_of(j.JOB_CREATE, j.JobCreate(actor=ADMIN, spec=no_host)) == (
        "unknown_reference"
    )
    assert await world.db.count(Coll.JOBS, {}) == 0


async def test_list_pages_by_name_and_filters_by_host(world: World) -> None:
    host, platform = await setup(world)
    other = await registered_host(world, "h2")
    await world.call(
        catalog_rpc.HOST_ACTIVATE, m.HostActivate(actor=ADMIN, host_id=other), m.HostInfo
    )
    names = [f"job-{i:02d}" for i in range(7)]
    for i, name in enumerate(names):
        s = spec(other if i % 3 == 0 else host, platform, name=name)
        await create(world, s)
    seen: list[str] = []
    after: str | None = None
    while True:
        page = await world.call(
            j.JOB_LIST, j.JobList(actor=ADMIN, after=after, limit=3), j.JobListReply
        )
        seen += [job.spec.name for job in page.jobs]
        if page.next_after is None:
            break
        after = page.next_after
    assert seen == names
    on_h2 = await world.call(j.JOB_LIST, j.JobList(actor=ADMIN, host_id=other), j.JobListReply)
    assert [job.spec.name for job in on_h2.jobs] == ["job-00", "job-03", "job-06"]
    too_big = j.JobList(actor=ADMIN, limit=1000)
    assert await world.code_of(j.JOB_LIST, too_big) == "invalid_input"


async def test_concurrent_edits_of_one_revision_one_wins(world: World) -> None:
    host, platform = await setup(world)
    job = await create(world, spec(host, platform))
    edits = [
        j.JobUpdate(
            actor=ADMIN, job_id=job.id, revision=1, spec=spec(host, platform, parallel_vms=n)
        )
        for n in range(1, 9)
    ]
    results = await asyncio.gather(
        *(world.call(j.JOB_UPDATE, e, j.JobInfo) for e in edits), return_exceptions=True
    )
    won = [r for r in results if isinstance(r, j.JobInfo)]
    assert len(won) == 1 and won[0].revision == 2
    assert all(getattr(r, "code", None) == "stale_version" for r in results if r not in won)
    final = await world.call(j.JOB_GET, j.JobGet(actor=ADMIN, job_id=job.id), j.JobInfo)
    assert final == won[0]


async def test_operators_see_only_their_groups_jobs(world: World) -> None:
    host, platform = await setup(world)
    for group in ("ops", "dev"):
        await world.call(
            catalog_rpc.GROUP_CREATE, m.GroupCreate(actor=ADMIN, name=group), m.GroupInfo
        )
    for host_or_platform in ("host", "platform"):
        if host_or_platform == "host":
            req: msgspec.Struct = m.HostAuthorize(actor=ADMIN, host_id=host, groups=["ops"])
            await world.call(catalog_rpc.HOST_AUTHORIZE, req, m.HostInfo)
        else:
            req = m.PlatformUpdate(actor=ADMIN, platform_id=platform, groups=["ops"])
            await world.call(catalog_rpc.PLATFORM_UPDATE, req, m.PlatformInfo)
    for name, group in (("o", "ops"), ("d", "dev")):
        user = m.UserCreate(actor=ADMIN, name=name, role="operator", groups=[group])
        await world.call(catalog_rpc.USER_CREATE, user, m.UserInfo)
    ops, dev = m.ActorRef(user="o"), m.ActorRef(user="d")
    job = await world.call(
        j.JOB_CREATE, j.JobCreate(actor=ops, spec=spec(host, platform)), j.JobInfo
    )
    assert job.groups == ["ops"] and job.created_by == "o"
    assert await world.code_of(j.JOB_GET, j.JobGet(actor=dev, job_id=job.id)) == "not_found"
    as_dev = j.JobCreate(actor=dev, spec=spec(host, platform, name="x"))
    assert await world.code_of(j.JOB_CREATE, as_dev) == "unknown_reference"
    foreign = j.JobCreate(actor=ops, spec=spec(host, platform, name="y"), groups=["dev"])
    assert await world.code_of(j.JOB_CREATE, foreign) == "permission_denied"
    listed = await world.call(j.JOB_LIST, j.JobList(actor=dev), j.JobListReply)
    assert listed.jobs == []


async def test_a_job_is_seen_while_its_backup_host_is_authorized_to_the_operator(
    world: World,
) -> None:
    """Who sees a job follows its backup host's groups, not the job's own: an operator
    of g1 and g2 puts a job on a g2-only host and names g1, and g1 still does not see
    it; taking g1 off the host takes the job (edit, clone, start, stop, runs) away."""
    host, platform = await setup(world)
    for group in ("g1", "g2"):
        made_group = m.GroupCreate(actor=ADMIN, name=group)
        await world.call(catalog_rpc.GROUP_CREATE, made_group, m.GroupInfo)
    for name, groups in (("both", ["g1", "g2"]), ("one", ["g1"])):
        user = m.UserCreate(actor=ADMIN, name=name, role="operator", groups=groups)
        await world.call(catalog_rpc.USER_CREATE, user, m.UserInfo)
    share = m.PlatformUpdate(actor=ADMIN, platform_id=platform, groups=["g1", "g2"])
    await world.call(catalog_rpc.PLATFORM_UPDATE, share, m.PlatformInfo)

    async def authorize(*groups: str) -> None:
        req = m.HostAuthorize(actor=ADMIN, host_id=host, groups=list(groups))
        await world.call(catalog_rpc.HOST_AUTHORIZE, req, m.HostInfo)

    await authorize("g2")
    both, one = m.ActorRef(user="both"), m.ActorRef(user="one")
    made = j.JobCreate(actor=both, spec=spec(host, platform), groups=["g1"])
    job = await world.call(j.JOB_CREATE, made, j.JobInfo)
    assert job.groups == ["g1"]
    start = b.RunStart(actor=one, job_id=job.id, requested_by="one", idempotency_key="k")
    refused: list[msgspec.Struct] = [
        j.JobGet(actor=one, job_id=job.id),
        j.JobUpdate(actor=one, job_id=job.id, revision=1, spec=spec(host, platform, name="z")),
        j.JobClone(actor=one, job_id=job.id, name="copy"),
        j.JobSetEnabled(actor=one, job_id=job.id, enabled=False),
        j.JobStop(actor=one, job_id=job.id),
        j.JobDelete(actor=one, job_id=job.id),
        b.RunList(actor=one, job_id=job.id),
        start,
    ]
    rpcs = {j.JobGet: j.JOB_GET, j.JobUpdate: j.JOB_UPDATE, j.JobClone: j.JOB_CLONE,
            j.JobSetEnabled: j.JOB_SET_ENABLED, j.JobStop: j.JOB_STOP,
            j.JobDelete: j.JOB_DELETE, b.RunList: b.RUN_LIST, b.RunStart: b.RUN_START}  # fmt: skip

    async def refusals() -> list[str]:
        return [await world.code_of(rpcs[type(req)], req) for req in refused]

    assert await refusals() == ["not_found"] * len(refused)
    assert (await world.call(j.JOB_LIST, j.JobList(actor=one), j.JobListReply)).jobs == []
    await authorize("g1", "g2")
    assert (await world.call(j.JOB_GET, j.JobGet(actor=one, job_id=job.id), j.JobInfo)) == job
    await authorize("g2")  # g1 taken off the host: its operators lose the job at once
    assert await refusals() == ["not_found"] * len(refused)
    on_host = j.JobList(actor=one, host_id=host)
    assert (await world.call(j.JOB_LIST, on_host, j.JobListReply)).jobs == []
    assert await world.db.count(Coll.RUNS, {}) == 0
    after = await world.call(j.JOB_GET, j.JobGet(actor=both, job_id=job.id), j.JobInfo)
    assert after == job  # nothing changed
    listed = await world.call(j.JOB_LIST, j.JobList(actor=both, host_id=host), j.JobListReply)
    assert [x.id for x in listed.jobs] == [job.id]
    stopped = await world.call(j.JOB_STOP, j.JobStop(actor=both, job_id=job.id), j.JobStopped)
    assert stopped.runs == []
    stops = await world.db.find(Coll.AUDIT_LOG, {"action": "job.stopped"})
    assert [(d["actor"], d["resource"]) for d in stops] == [("both", f"job/{job.id}")]
