"""Handlers of signing in and out, the signed-in user, API tokens, and health.

The API draws every token (``tokens.new_token``) and gives the catalog only its
hash; the token goes back to its user once, in the reply. The catalog checks
passwords, counts failed logins (per user and per client address) and audits.
A password change ends the user's sessions (but the one changing its own password).
"""

from __future__ import annotations

import uuid
from typing import Annotated

import msgspec

from edgeback_api.paging import Page, page_of
from edgeback_api.routing import Api, Call
from edgeback_api.tokens import new_token, token_hash
from edgeback_api.wire import (
    Health,
    LoginBody,
    NewToken,
    PageQuery,
    PasswordBody,
    Session,
    TokenBody,
)
from edgeback_core.errors import EdgebackError
from edgeback_core.messages import auth as a
from edgeback_core.messages import catalog as m
from edgeback_core.messages.health import Ping, Pong, ping_rpc

API_ACTOR = m.ActorRef()
"""The API acting for nobody yet (logins, resolving tokens, the first admin): the catalog
knows it by its broker user."""


async def login(call: Call) -> Session:
    body = call.request_as(LoginBody)
    token = new_token()
    request = a.Login(
        actor=API_ACTOR,
        name=body.name,
        password=body.password,
        client=call.client,
        token_hash=token_hash(token),
        ttl_s=call.api.session_ttl_s,
    )
    reply = await call.api.call(a.LOGIN, request, a.LoginReply)
    return Session(token=token, expires_at=reply.token.expires_at, user=reply.user)


async def logout(call: Call) -> None:
    assert call.identity is not None
    request = a.TokenRevoke(actor=call.actor, token_id=call.identity.token.id, logout=True)
    await call.api.call(a.TOKEN_REVOKE, request, m.Done)


async def me(call: Call) -> m.UserInfo:
    assert call.identity is not None
    return call.identity.user


async def set_my_password(call: Call) -> None:
    """Change my password: my other sessions end, this one goes on."""
    assert call.identity is not None
    body = call.request_as(PasswordBody)
    request = a.UserSetPassword(
        actor=call.actor,
        name=call.user_name,
        password=body.password,
        keep_token_id=call.identity.token.id,
    )
    await call.api.call(a.USER_SET_PASSWORD, request, m.Done)


async def set_user_password(call: Call) -> None:
    """An admin sets a user's password: all that user's sessions end."""
    body = call.request_as(PasswordBody)
    request = a.UserSetPassword(actor=call.actor, name=call.params["name"], password=body.password)
    await call.api.call(a.USER_SET_PASSWORD, request, m.Done)


class TokenQuery(PageQuery, frozen=True, kw_only=True):
    user: Annotated[str, msgspec.Meta(min_length=1, max_length=64)] | None = None
    """Another user's tokens (admins only); default: mine."""


async def tokens(call: Call) -> Page[a.TokenInfo]:
    """Live tokens, oldest first: mine, or (admins) ``user``'s."""
    q = call.query_as(TokenQuery)
    request = a.TokenList(actor=call.actor, user=q.user)
    found = (await call.api.call(a.TOKEN_LIST, request, a.TokenListReply)).tokens
    return page_of(found, lambda t: (t.created_at.isoformat(), t.id), q.cursor, q.limit)


async def create_token(call: Call) -> NewToken:
    body = call.request_as(TokenBody)
    token = new_token()
    request = a.TokenCreate(
        actor=call.actor, label=body.label, token_hash=token_hash(token), ttl_s=body.ttl_s
    )
    info = await call.api.call(a.TOKEN_CREATE, request, a.TokenInfo)
    return NewToken(token=token, info=info)


async def health(call: Call) -> Health:
    """Whether the catalog answers over the bus (a round trip, not a cached flag)."""
    nonce = uuid.uuid4().hex
    try:
        pong = await call.api.bus.call(ping_rpc("catalog"), Ping(nonce=nonce), Pong, timeout=2.0)
    except EdgebackError:
        return Health(status="degraded", catalog=False)
    return Health(status="ok", catalog=pong.nonce == nonce)


async def bootstrap_admin(api: Api, name: str, password: str) -> bool:
    """Create the first admin unless one exists; True when it was created."""
    request = a.UserBootstrap(actor=API_ACTOR, name=name, password=password)
    reply = await api.call(a.USER_BOOTSTRAP, request, a.UserBootstrapReply)
    return reply.applied
