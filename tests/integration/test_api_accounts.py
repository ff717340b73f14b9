"""Users, groups and tokens through the API (in-process, aiohttp's test server) against a
real catalog on the catalog DB over RabbitMQ: deleting users and groups, changing
roles, an admin's view of another user's tokens, password changes and deletions that
revoke tokens, the last admin kept, parallel wrong logins held to the throttle,
expired tokens and forgotten login counters purged, the API over HTTPS, and the
``edgeback user | group | token`` commands."""

from __future__ import annotations

import asyncio
import json
import os
import ssl
import sys
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from tests.support.api_world import ADMIN, World, api_world
from tests.support.tls import make_tls

from edgeback_api.app import build_app, serve
from edgeback_api.settings import ApiSettings
from edgeback_catalog import auth, loginthrottle, passwords
from edgeback_catalog.mongo import CatalogDb, Coll
from edgeback_cli.main import EXIT_INPUT
from edgeback_core.listener import tls_context

pytestmark = pytest.mark.integration
ADMIN_PASSWORD = "acct-admin-Wd4-" + uuid.uuid4().hex[:8]
PASSWORD = "acct-oper-Hn6-" + uuid.uuid4().hex[:8]


@pytest.fixture
async def world(amqp_url: str, mongo_url: str) -> AsyncIterator[World]:
    async with api_world(amqp_url, mongo_url, ADMIN_PASSWORD) as running:
        yield running


def _auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


class Admin:
    """Requests as the signed-in admin: (status, JSON body or None)."""

    def __init__(self, world: World, token: str) -> None:
        self.world, self.token = world, token

    async def __call__(
        self, method: str, path: str, body: Any = None, *, token: str | None = None
    ) -> tuple[int, Any]:
        headers = _auth(token or self.token)
        resp = await self.world.client.request(method, "/api/v1" + path, json=body, headers=headers)
        data = await resp.json() if resp.content_length or resp.status != 204 else None
        if resp.status >= 400:
            assert resp.content_type == "application/problem+json", path
        return resp.status, data


async def _member(call: Admin, name: str, group: str) -> None:
    user = {"name": name, "role": "operator", "groups": [group]}
    assert (await call("POST", "/users", user))[0] == 201
    assert (await call("PUT", f"/users/{name}/password", {"password": PASSWORD}))[0] == 204


async def test_users_groups_and_their_tokens_are_managed_and_revoked(world: World) -> None:
    call = Admin(world, await world.login(ADMIN, ADMIN_PASSWORD))
    assert (await call("POST", "/groups", {"name": "site-a", "description": "A"}))[0] == 201
    await _member(call, "op", "site-a")
    first = await world.login("op", PASSWORD)
    made = await call("POST", "/auth/tokens", {"label": "cron"}, token=first)
    api_token = made[1]["token"]
    # an admin pages through another user's tokens; an operator may not look at others'
    status, page = await call("GET", "/auth/tokens?user=op&limit=1")
    assert status == 200 and len(page["items"]) == 1 and page["next_cursor"]
    status, rest = await call("GET", f"/auth/tokens?user=op&cursor={page['next_cursor']}")
    kinds = {t["kind"] for t in page["items"] + rest["items"]}
    assert kinds == {"session", "api"} and rest["next_cursor"] is None
    assert (await call("GET", "/auth/tokens?user=op&user=root"))[0] == 400
    status, refused = await call("GET", f"/auth/tokens?user={ADMIN}", token=first)
    assert (status, refused["code"]) == (403, "permission_denied")
    # an admin's password change ends the user's sessions; API tokens go on
    assert (await call("PUT", "/users/op/password", {"password": PASSWORD + "2"}))[0] == 204
    assert (await call("GET", "/auth/me", token=first))[0] == 401
    assert (await call("GET", "/auth/me", token=api_token))[0] == 200
    # changing one's own password keeps the session it came from and ends the others
    other = await world.login("op", PASSWORD + "2")
    mine = await world.login("op", PASSWORD + "2")
    assert (await call("PUT", "/auth/me/password", {"password": PASSWORD}, token=mine))[0] == 204
    assert (await call("GET", "/auth/me", token=mine))[0] == 200
    assert (await call("GET", "/auth/me", token=other))[0] == 401
    # roles change both ways; the last admin stays an admin
    assert (await call("PUT", "/users/op/role", {"role": "admin"}))[1]["role"] == "admin"
    assert (await call("PUT", "/users/op/role", {"role": "operator"}))[1]["role"] == "operator"
    for method, path, body in (
        ("PUT", f"/users/{ADMIN}/role", {"role": "operator"}),
        ("DELETE", f"/users/{ADMIN}", None),
    ):
        status, problem = await call(method, path, body)
        assert (status, problem["code"]) == (409, "last_admin"), path
    assert (await call("GET", f"/users/{ADMIN}"))[1]["role"] == "admin"
    # a group someone names stays
    status, problem = await call("DELETE", "/groups/site-a")
    assert (status, problem["code"]) == (409, "group_in_use")
    assert problem["details"]["users"] == 1
    assert (await call("GET", "/groups/site-a"))[1]["description"] == "A"
    # deleting a user revokes all its tokens; then the group can go
    assert (await call("DELETE", "/users/op"))[0] == 204
    assert (await call("GET", "/auth/me", token=api_token))[0] == 401
    assert (await call("GET", "/auth/me", token=mine))[0] == 401
    assert (await call("GET", "/users/op"))[0] == 404
    assert (await call("GET", "/auth/tokens?user=op"))[1]["items"] == []
    assert (await call("DELETE", "/groups/site-a"))[0] == 204
    assert (await call("GET", "/groups/site-a"))[0] == 404
    assert (await call("DELETE", "/groups/site-a"))[0] == 404
    actions = {e["action"] for e in (await call("GET", "/audit?limit=200"))[1]["items"]}
    wanted = {"user.deleted", "user.role_set", "group.deleted", "user.password_set"}
    assert wanted <= actions, actions
    # with a second admin, the first may be demoted; then the second is the last
    assert (await call("POST", "/users", {"name": "deputy", "role": "admin"}))[0] == 201
    assert (await call("PUT", "/users/deputy/password", {"password": PASSWORD}))[0] == 204
    assert (await call("PUT", f"/users/{ADMIN}/role", {"role": "operator"}))[0] == 200
    deputy = await world.login("deputy", PASSWORD)
    status, problem = await call("DELETE", "/users/deputy", token=deputy)
    assert (status, problem["code"]) == (409, "last_admin")
    promoted = await call("PUT", f"/users/{ADMIN}/role", {"role": "admin"}, token=deputy)
    assert promoted[0] == 200
    assert (await call("DELETE", "/users/deputy"))[0] == 204


async def test_a_login_racing_a_password_change_keeps_no_session(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The password changes (and the user's sessions are revoked) while a login with the
    old one is being checked: that login is refused and leaves no token behind."""
    call = Admin(world, await world.login(ADMIN, ADMIN_PASSWORD))
    assert (await call("POST", "/groups", {"name": "site-r", "description": "R"}))[0] == 201
    await _member(call, "racer", "site-r")
    checked = passwords.verify_password  # what auth imported

    async def changed_meanwhile(stored: str | None, password: str) -> Any:
        verdict = await checked(stored, password)
        if password == PASSWORD:  # the racing login, not the admin's own
            new = {"password": PASSWORD + "-new"}
            assert (await call("PUT", "/users/racer/password", new))[0] == 204
        return verdict

    monkeypatch.setattr(auth, "verify_password", changed_meanwhile)
    resp = await world.client.post(
        "/api/v1/auth/login", json={"name": "racer", "password": PASSWORD}
    )
    assert resp.status == 401, await resp.text()
    status, tokens = await call("GET", "/auth/tokens?user=racer")
    assert (status, tokens["items"]) == (200, [])


async def test_parallel_wrong_logins_are_held_to_the_throttle(world: World) -> None:
    """All at once, as many wrong guesses are checked as one after another would be."""
    bad = {"name": ADMIN, "password": "wrong-password"}
    replies = await asyncio.gather(
        *(world.client.post("/api/v1/auth/login", json=bad) for _ in range(12))
    )
    statuses = sorted(r.status for r in replies)
    # at most the free ones and the one after are checked; fewer may be (a guess refused
    # meanwhile stays counted until it is given back); the rest are told to wait
    checked = statuses.count(401)
    assert 1 <= checked <= loginthrottle.FREE_FAILURES + 1, statuses
    assert statuses == [401] * checked + [429] * (12 - checked), statuses


async def test_right_logins_give_their_count_back_and_purge(world: World, mongo_url: str) -> None:
    """A right login is counted before its check and gives the address its count back
    (three failures and then logins, none throttled); the first one purges expired tokens
    and forgotten counters."""
    now = datetime.now(UTC)
    async with CatalogDb.open(mongo_url, world.database) as db:
        old = now - timedelta(hours=1)
        for n, expires in enumerate((old, None, now + timedelta(hours=1))):
            await db.insert(
                Coll.TOKENS,
                {
                    "_id": f"t{n}", "user": ADMIN, "kind": "api", "label": "x",
                    "token_hash": f"{n:064x}", "created_at": old, "expires_at": expires,
                },
            )  # fmt: skip
        stale = now - loginthrottle.FORGET_AFTER - timedelta(minutes=1)
        await db.insert(Coll.LOGIN_FAILURES, {"_id": "addr:10.9.9.9", "count": 9, "last_at": stale})
        await db.insert(Coll.LOGIN_FAILURES, {"_id": "user:fresh", "count": 2, "last_at": now})
        for _ in range(loginthrottle.FREE_FAILURES):
            resp = await world.client.post(
                "/api/v1/auth/login", json={"name": "ghost", "password": "wrong-password"}
            )
            assert resp.status == 401
        for _ in range(3):  # the first purges (then not again for 10 min)
            await world.login(ADMIN, ADMIN_PASSWORD)
        tokens = {
            d["_id"] for d in await db.find(Coll.TOKENS, {"_id": {"$in": ["t0", "t1", "t2"]}})
        }
        assert tokens == {"t1", "t2"}
        counters = {d["_id"] for d in await db.find(Coll.LOGIN_FAILURES, {})}
        assert "addr:10.9.9.9" not in counters and "user:fresh" in counters


async def test_the_api_serves_https_when_a_certificate_is_configured(
    world: World, tmp_path: Path
) -> None:
    files = make_tls(tmp_path)
    settings = ApiSettings.load(
        {
            "EDGEBACK_API_PORT": "0",
            "EDGEBACK_API_TLS_CERT_FILE": str(files.cert_file),
            "EDGEBACK_API_TLS_KEY_FILE": str(files.key_file),
        }
    )
    tls = tls_context(settings.tls_cert_file, settings.tls_key_file, who="the API")
    assert tls is not None
    trust = ssl.create_default_context(cafile=str(files.ca_file))
    async with (
        serve(build_app(world.api), host=settings.host, port=settings.port, tls=tls) as bound,
        aiohttp.ClientSession() as http,
    ):
        base = f"https://{bound.host}:{bound.port}/api/v1"
        login = {"name": ADMIN, "password": ADMIN_PASSWORD}
        async with http.post(f"{base}/auth/login", json=login, ssl=trust) as resp:
            assert resp.status == 200
            token = (await resp.json())["token"]
        async with http.get(f"{base}/auth/me", headers=_auth(token), ssl=trust) as resp:
            assert resp.status == 200 and (await resp.json())["name"] == ADMIN
        with pytest.raises(aiohttp.ClientError):
            async with http.get(f"http://{bound.host}:{bound.port}/api/v1/health") as resp:
                await resp.read()


async def test_the_cli_manages_users_groups_and_tokens(world: World, tmp_path: Path) -> None:
    env = {
        **os.environ,
        "XDG_CONFIG_HOME": str(tmp_path),
        "EDGEBACK_API_TOKEN": await world.login(ADMIN, ADMIN_PASSWORD),
        "EDGEBACK_API_URL": str(world.client.make_url("/")),
    }

    async def cli(*args: str, stdin: str = "") -> tuple[int, str, str]:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-c", "from edgeback_cli.main import main; main()", *args,
            env=env, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        out, err = await proc.communicate(stdin.encode())
        assert proc.returncode is not None
        return proc.returncode, out.decode(), err.decode()

    assert (await cli("group", "create", "site-b", "--description", "B"))[0] == 0
    code, out, _ = await cli("user", "create", "bob", "--group", "site-b", "-o", "json")
    assert code == 0 and json.loads(out)["groups"] == ["site-b"]
    assert (await cli("user", "set-password", "bob", "--password-stdin", stdin=PASSWORD))[0] == 0
    await world.login("bob", PASSWORD)
    code, out, _ = await cli("token", "list", "--user", "bob", "-o", "json")
    assert code == 0 and [t["kind"] for t in json.loads(out)] == ["session"]
    code, out, _ = await cli("user", "set-role", "bob", "admin", "-o", "json")
    assert code == 0 and json.loads(out)["role"] == "admin"
    code, _, err = await cli("group", "delete", "site-b")
    assert code == EXIT_INPUT and "group_in_use" in err, err
    assert (await cli("user", "delete", "bob"))[0] == 0
    code, out, _ = await cli("token", "list", "--user", "bob", "-o", "json")
    assert code == 0 and json.loads(out) == []
    assert (await cli("group", "delete", "site-b"))[0] == 0
    code, _, err = await cli("group", "show", "site-b")
    assert code == EXIT_INPUT and "not_found" in err, err
