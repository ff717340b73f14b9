"""The API in-process (aiohttp's test client) against a real catalog on the catalog
DB, over RabbitMQ: sign-in, the auth matrix generated from the route table, slowed
logins, resources, and no secret in any response or log line."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest
import structlog
from tests.support.api_world import ADMIN, World, api_world

from edgeback_api.routing import Access
from edgeback_api.table import route_table
from edgeback_core.bus.topology import HOST_HEARTBEAT
from edgeback_core.messages import catalog as m

pytestmark = pytest.mark.integration
ADMIN_PASSWORD = "admin-pass-Qx7-" + uuid.uuid4().hex[:8]
OPERATOR_PASSWORD = "oper-pass-Zr2-" + uuid.uuid4().hex[:8]
PLATFORM_SECRET = "SK-" + uuid.uuid4().hex


@pytest.fixture
async def world(amqp_url: str, mongo_url: str) -> AsyncIterator[World]:
    async with api_world(amqp_url, mongo_url, ADMIN_PASSWORD) as running:
        yield running


def _auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _url(path: str) -> str:
    return "/api/v1" + path.replace("{", "x").replace("}", "")


async def _operator(world: World, admin: str) -> str:
    c = world.client
    assert (
        await c.post("/api/v1/groups", json={"name": "site-a"}, headers=_auth(admin))
    ).status == 201
    made = await c.post(
        "/api/v1/users",
        json={"name": "op", "role": "operator", "groups": ["site-a"]},
        headers=_auth(admin),
    )
    assert made.status == 201
    pw = await c.put(
        "/api/v1/users/op/password", json={"password": OPERATOR_PASSWORD}, headers=_auth(admin)
    )
    assert pw.status == 204
    return await world.login("op", OPERATOR_PASSWORD)


async def test_every_route_needs_its_token_and_role(world: World) -> None:
    admin = await world.login(ADMIN, ADMIN_PASSWORD)
    operator = await _operator(world, admin)
    # signing out ends the operator's session: that route goes last
    for route in sorted(route_table(), key=lambda r: r.operation == "logout"):
        if route.access is Access.PUBLIC:
            continue
        url = _url(route.path)
        anonymous = await world.client.request(route.method, url)
        assert anonymous.status == 401, (route.operation, await anonymous.text())
        assert anonymous.content_type == "application/problem+json"
        assert (await anonymous.json())["code"] == "unauthenticated"
        forged = await world.client.request(route.method, url, headers=_auth("ebt_" + "A" * 43))
        assert forged.status == 401, route.operation
        as_operator = await world.client.request(
            route.method, url, headers=_auth(operator), json={}
        )
        if route.access is Access.ADMIN:
            assert as_operator.status == 403, route.operation
            assert (await as_operator.json())["code"] == "permission_denied"
        else:
            assert as_operator.status not in {401, 403, 500}, (
                route.operation,
                await as_operator.text(),
            )


async def test_repeated_failed_logins_are_slowed_down(world: World) -> None:
    """Three failures are free, then each one doubles the wait (1 s, 2 s, 4 s...).
    Waits are honoured rather than raced, so a slow machine cannot change the answer."""
    statuses, waits = [], []
    for _ in range(12):
        resp = await world.client.post(
            "/api/v1/auth/login", json={"name": "root", "password": "wrong-password"}
        )
        statuses.append(resp.status)
        if resp.status == 429:
            waits.append(int(resp.headers["Retry-After"]))
            if waits[-1] >= 4:
                break
            await asyncio.sleep(waits[-1])
    assert statuses[:4] == [401, 401, 401, 401] and statuses[-1] == 429, statuses
    assert waits[0] >= 1 and waits[-1] >= 4, waits
    # the right password waits too: the delay is per user, whoever guesses
    late = await world.client.post(
        "/api/v1/auth/login", json={"name": "root", "password": ADMIN_PASSWORD}
    )
    assert late.status == 429 and (await late.json())["code"] == "login_throttled"


async def test_resources_flow_and_secrets_stay_out(world: World) -> None:
    c = world.client
    with structlog.testing.capture_logs() as logs:
        admin = await world.login(ADMIN, ADMIN_PASSWORD)
        await world.api.bus.publish(
            "events", HOST_HEARTBEAT, m.HostHeartbeat(host_id="h1", hostname="bk1")
        )
        bodies = [await _host_active(world, admin)]
        register = {
            "name": "edge-1",
            "address": "edge.example.net",
            "access_key": "AKEDGE0000001234",
            "secret_key": PLATFORM_SECRET,
            "default_host_id": "h1",
        }
        made = await c.post("/api/v1/platforms", json=register, headers=_auth(admin))
        assert made.status == 201, await made.text()
        platform = await made.json()
        bodies.append(await made.text())
        job = {
            "spec": {
                "name": "nightly",
                "content": {"vms": [{"platform_id": platform["id"]}]},
                "target": {
                    "host_id": "h1",
                    "pool": {"node_url": "http://127.0.0.1:9", "name": "p"},
                },
            }
        }
        created = await c.post("/api/v1/jobs", json=job, headers=_auth(admin))
        assert created.status == 201, await created.text()
        listed = await c.get("/api/v1/jobs?limit=1", headers=_auth(admin))
        assert [j["spec"]["name"] for j in (await listed.json())["items"]] == ["nightly"]
        token = await c.post("/api/v1/auth/tokens", json={"label": "ci"}, headers=_auth(admin))
        api_token = (await token.json())["token"]
        assert (await c.get("/api/v1/platforms", headers=_auth(api_token))).status == 200
        for resp in [
            await c.get(f"/api/v1/platforms/{platform['id']}", headers=_auth(admin)),
            await c.get("/api/v1/audit", headers=_auth(admin)),
        ]:
            bodies.append(await resp.text())
        assert (await c.post("/api/v1/auth/logout", headers=_auth(admin))).status == 204
        assert (await c.get("/api/v1/auth/me", headers=_auth(admin))).status == 401
    text = "\n".join(bodies) + "\n".join(map(repr, logs))
    for secret in (PLATFORM_SECRET, ADMIN_PASSWORD, admin, api_token):
        assert secret not in text
    assert any(e.get("event") == "api.request" for e in logs)


async def _host_active(world: World, admin: str) -> str:
    for _ in range(100):
        resp = await world.client.post("/api/v1/backup-hosts/h1/activate", headers=_auth(admin))
        if resp.status == 200:
            return await resp.text()
        await asyncio.sleep(0.05)
    raise AssertionError("the heartbeat never registered the host")
