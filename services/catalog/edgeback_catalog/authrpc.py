"""The catalog's RPCs for the API: logins, passwords, tokens, the first admin, deleting
users and groups and changing roles, and the lists the API pages through (users, runs
of a job)."""

from __future__ import annotations

from typing import cast

from edgeback_catalog import wire
from edgeback_catalog.auth import LoginAttempt, Token
from edgeback_catalog.domain import JobId
from edgeback_catalog.gate import current_actor
from edgeback_catalog.jobscope import jobs_visible_to
from edgeback_catalog.listfilters import run_filters
from edgeback_catalog.routes import Route
from edgeback_catalog.service import Catalog
from edgeback_core.messages import auth as a
from edgeback_core.messages import backups as b
from edgeback_core.messages import catalog as m


class AuthRpc:
    def __init__(self, catalog: Catalog) -> None:
        self._c = catalog
        self._auth = catalog.auth

    def routes(self) -> list[Route]:
        return [
            Route(a.USER_LIST, a.UserList, self.user_list),
            Route(a.USER_SET_PASSWORD, a.UserSetPassword, self.set_password),
            Route(a.USER_BOOTSTRAP, a.UserBootstrap, self.bootstrap),
            Route(a.LOGIN, a.Login, self.login),
            Route(a.TOKEN_CREATE, a.TokenCreate, self.token_create),
            Route(a.TOKEN_RESOLVE, a.TokenResolve, self.token_resolve),
            Route(a.TOKEN_LIST, a.TokenList, self.token_list),
            Route(a.TOKEN_REVOKE, a.TokenRevoke, self.token_revoke),
            Route(a.USER_DELETE, a.UserDelete, self.user_delete),
            Route(a.USER_SET_ROLE, a.UserSetRole, self.user_set_role),
            Route(a.GROUP_GET, a.GroupGet, self.group_get),
            Route(a.GROUP_DELETE, a.GroupDelete, self.group_delete),
            Route(b.RUN_LIST, b.RunList, self.run_list),
        ]

    async def user_list(self, req: a.UserList) -> a.UserListReply:
        users = await self._auth.list_users(current_actor())
        return a.UserListReply(users=[wire.user_info(u) for u in users])

    async def set_password(self, req: a.UserSetPassword) -> m.Done:
        await self._auth.set_password(current_actor(), req.name, req.password, req.keep_token_id)
        return m.Done()

    async def user_delete(self, req: a.UserDelete) -> m.Done:
        await self._c.users.delete_user(current_actor(), req.name)
        return m.Done()

    async def user_set_role(self, req: a.UserSetRole) -> m.UserInfo:
        return wire.user_info(await self._c.users.set_role(current_actor(), req.name, req.role))

    async def group_get(self, req: a.GroupGet) -> m.GroupInfo:
        current_actor().require_admin("reading a user group")
        return wire.group_info(await self._c.users.group(req.name))

    async def group_delete(self, req: a.GroupDelete) -> m.Done:
        await self._c.users.delete_group(current_actor(), req.name)
        return m.Done()

    async def bootstrap(self, req: a.UserBootstrap) -> a.UserBootstrapReply:
        applied = await self._auth.bootstrap(current_actor(), req.name, req.password)
        return a.UserBootstrapReply(applied=applied)

    async def login(self, req: a.Login) -> a.LoginReply:
        attempt = LoginAttempt(
            name=req.name,
            password=req.password,
            client=req.client,
            token_hash=req.token_hash,
            ttl_s=req.ttl_s,
        )
        user, token = await self._auth.login(current_actor(), attempt)
        return a.LoginReply(user=wire.user_info(user), token=_token_info(token))

    async def token_create(self, req: a.TokenCreate) -> a.TokenInfo:
        actor = current_actor()
        return _token_info(
            await self._auth.create_token(actor, req.label, req.token_hash, req.ttl_s)
        )

    async def token_resolve(self, req: a.TokenResolve) -> a.TokenIdentity:
        user, token = await self._auth.resolve(current_actor(), req.token_hash)
        return a.TokenIdentity(user=wire.user_info(user), token=_token_info(token))

    async def token_list(self, req: a.TokenList) -> a.TokenListReply:
        tokens = await self._auth.tokens(current_actor(), req.user)
        return a.TokenListReply(tokens=[_token_info(t) for t in tokens])

    async def token_revoke(self, req: a.TokenRevoke) -> m.Done:
        await self._auth.revoke(current_actor(), req.token_id, logout=req.logout)
        return m.Done()

    async def run_list(self, req: b.RunList) -> b.RunListReply:
        """The runs of one job, which must be visible to the actor (``not_found``
        otherwise), or of every job it sees (``jobscope``)."""
        actor = current_actor()
        if req.job_id is not None:
            scope = {"job_id": (await self._c.jobs.get(actor, JobId(req.job_id))).id}
        else:
            scope = await jobs_visible_to(self._c.jobs, actor)
        limit = max(1, min(req.limit, 200))
        query = scope | run_filters(req)
        runs, after = await self._c.runs.page(query, after=req.after, limit=limit)
        before = runs[-1].created_at if after is not None else None
        return b.RunListReply(
            runs=[wire.run_info(r) for r in runs], next_before=before, next_after=after
        )


def _token_info(token: Token) -> a.TokenInfo:
    return a.TokenInfo(
        id=token.id,
        user=token.user,
        kind=cast(a.TokenKind, token.kind),
        label=token.label,
        created_at=token.created_at,
        expires_at=token.expires_at,
    )
