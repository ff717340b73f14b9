"""Handlers of signing in and out, the signed-in user, API tokens, and health.

The API draws every token (``tokens.new_token``) and gives the catalog only its
hash; the token goes back to its user once, in the reply. The catalog checks
passwords, counts failed logins (per user and per client address) and audits.
"""

from __future__ import annotations

import uuid

from edgeback_api.routing import Api, Call
from edgeback_api.tokens import new_token, token_hash
from edgeback_api.wire import Health, LoginBody, NewToken, PasswordBody, Session, TokenBody
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
    body = call.request_as(PasswordBody)
    request = a.UserSetPassword(actor=call.actor, name=call.user_name, password=body.password)
    await call.api.call(a.USER_SET_PASSWORD, request, m.Done)


async def my_tokens(call: Call) -> a.TokenListReply:
    return await call.api.call(a.TOKEN_LIST, a.TokenList(actor=call.actor), a.TokenListReply)


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
