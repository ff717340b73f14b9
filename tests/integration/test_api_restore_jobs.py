"""Restore jobs through the API in-process against a real catalog on the catalog DB,
over RabbitMQ: create (the first restore's code in the answer), confirm with the code,
start again, busy and disabled refusals, edit (naming the cancelled restores), clone,
list filtered and paged, stop, delete, scoping for an operator, the audit log."""

from __future__ import annotations

from typing import Any

import pytest
from tests.integration.test_api_restores import (
    HOST,
    World,
    _operator,
    _spec,
    setup_points,
    world,
)

pytestmark = pytest.mark.integration
__all__ = ["world"]


def _job(world: World, point: str, name: str, **spec: Any) -> dict[str, Any]:
    body = _spec(world, point)
    body["spec"] |= {"name": name, **spec}
    return body


async def _code(world: World, made: dict[str, Any]) -> dict[str, Any]:
    rid, code = made["restore"]["id"], made["verification_code"]
    return dict(
        await world.ok("POST", f"/restores/{rid}/start", 202, json={"verification_code": code})
    )


async def test_restore_job_lifecycle(world: World) -> None:
    newest, oldest = await setup_points(world)
    made = await world.ok("POST", "/restore-jobs", 201, json=_job(world, newest, "web"))
    job = made["job"]
    one = f"/restore-jobs/{job['id']}"
    assert (job["name"], job["revision"], job["enabled"]) == ("web", 1, True)
    assert made["restore"]["job_id"] == job["id"]
    assert (await _code(world, made))["state"] == "queued"
    detail = await world.ok("GET", one)
    assert [(x["id"], x["state"]) for x in detail["restores"]] == [
        (made["restore"]["id"], "queued")
    ]

    busy = await world.go("POST", f"{one}/start")
    assert (busy.status, (await busy.json())["code"]) == (409, "restore_job_busy")
    edit = {"revision": 1, "spec": _job(world, oldest, "web-old")["spec"]}
    refused = await world.go("PUT", one, json=edit)
    assert (refused.status, (await refused.json())["code"]) == (409, "restore_job_busy")
    stopped = await world.ok("POST", f"{one}/stop")
    assert [x["state"] for x in stopped["restores"]] == ["cancelled"]

    again = await world.ok("POST", f"{one}/start", 201)
    assert again["verification_code"] != made["verification_code"]
    edited = await world.ok("PUT", one, json=edit)
    assert edited["cancelled"] == [again["restore"]["id"]]
    assert (edited["job"]["name"], edited["job"]["revision"]) == ("web-old", 2)
    stale = await world.go("PUT", one, json=edit)
    assert (stale.status, (await stale.json())["code"]) == (409, "stale_version")

    copy = await world.ok("POST", f"{one}/clone", 201, json={"name": "web-copy"})
    assert copy["spec"]["backup_set_ids"] == [oldest]
    off = await world.ok("POST", f"/restore-jobs/{copy['id']}/disable")
    assert off["enabled"] is False
    disabled = await world.go("POST", f"/restore-jobs/{copy['id']}/start")
    assert (disabled.status, (await disabled.json())["code"]) == (409, "job_disabled")
    page = await world.ok("GET", "/restore-jobs?limit=1")
    assert [j["name"] for j in page["items"]] == ["web-copy"]
    rest = await world.ok("GET", f"/restore-jobs?limit=1&cursor={page['next_cursor']}")
    assert ([j["name"] for j in rest["items"]], rest["next_cursor"]) == (["web-old"], None)
    enabled = await world.ok("GET", f"/restore-jobs?enabled=true&host_id={HOST}&name=OLD")
    assert [j["name"] for j in enabled["items"]] == ["web-old"]
    assert (await world.ok("POST", f"/restore-jobs/{copy['id']}/enable"))["enabled"] is True

    operator = await _operator(world)  # its group is not authorized on the host
    assert (await world.ok("GET", "/restore-jobs", token=operator))["items"] == []
    assert (await world.go("GET", one, token=operator)).status == 404
    assert (await world.go("POST", f"{one}/start", token=operator)).status == 404

    waiting = await world.ok("POST", f"{one}/start", 201)
    deleted = await world.ok("DELETE", one)
    assert deleted["cancelled"] == [waiting["restore"]["id"]]
    assert (await world.go("GET", one)).status == 404
    audit = await world.ok("GET", f"/audit?resource=restore_job/{job['id']}&limit=50")
    assert sorted({e["action"] for e in audit["items"]}) == [
        "restore_job.created",
        "restore_job.deleted",
        "restore_job.started",
        "restore_job.stopped",
        "restore_job.updated",
    ]
