"""Who may call which route of the node: bearer tokens and their grants.

:func:`token_table` builds the node's :class:`~edgeback_dedup.tokens.TokenTable` from
its settings (the tokens file, and the optional all-pool ``TOKEN``/``ADMIN_TOKEN``).
:func:`access_middleware` authenticates every request (``/healthz`` is on the
service's health listener): 401 when the token is missing, short or unknown. It keeps
the grant on the request (:data:`GRANT`) and, for routes under ``/v1/pools/{pool}``,
checks the route's right on that pool (403 ``permission_denied`` otherwise, whether or
not the pool exists, so a token learns nothing of pools it may not use). Routes
without a pool in the path (listing, creating pools) check in their handler.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Final

from aiohttp import web

from edgeback_core.errors import ConfigError, PermissionDeniedError, UnauthenticatedError
from edgeback_core.settings import Secret
from edgeback_dedup.settings import DedupSettings
from edgeback_dedup.tokens import (
    ALL_POOLS,
    Grant,
    Right,
    TokenTable,
    hash_token,
    parse_tokens_file,
)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

TOKENS: Final = web.AppKey("tokens", TokenTable)
ROUTE_RIGHTS: Final = web.AppKey("route_rights", Mapping[Handler, Right])
PUBLIC: Final = web.AppKey("public", frozenset[Handler])
"""Handlers that take no bearer token (their path holds a capability, ``images.py``)."""
GRANT: Final = web.RequestKey("grant", Grant)


def token_table(settings: DedupSettings) -> TokenTable:
    """*Blocking* (reads the tokens file): every grant the settings define."""
    pairs = []
    if settings.tokens_file is not None:
        try:
            data = Path(settings.tokens_file).read_bytes()
        except OSError as exc:
            raise ConfigError(f"cannot read the tokens file: {exc}") from exc
        pairs.extend(parse_tokens_file(data))
    pairs.extend(_setting_grant("token", settings.token, {Right.READ, Right.WRITE}))
    pairs.extend(_setting_grant("admin", settings.admin_token, {Right.ADMIN}))
    return TokenTable(pairs)


def _setting_grant(
    identity: str, secret: Secret | None, rights: set[Right]
) -> list[tuple[bytes, Grant]]:
    if secret is None:
        return []
    grant = Grant(identity=identity, pools=frozenset({ALL_POOLS}), rights=frozenset(rights))
    return [(hash_token(secret.reveal()), grant)]


@web.middleware
async def access_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    if request.match_info.handler in request.app[PUBLIC]:
        return await handler(request)
    grant = request.app[TOKENS].authenticate(_bearer(request))
    if grant is None:
        raise UnauthenticatedError("missing or wrong bearer token")
    request[GRANT] = grant
    right = request.app[ROUTE_RIGHTS].get(request.match_info.handler)
    pool = request.match_info.get("pool")
    if right is not None and pool is not None:
        require(grant, pool, right)
    return await handler(request)


def require(grant: Grant, pool: str, right: Right) -> None:
    """:class:`PermissionDeniedError` unless ``grant`` has ``right`` on ``pool``."""
    if not grant.allows(pool, right):
        raise PermissionDeniedError(
            f"this token has no {right} right on this pool", pool=pool[:140], right=str(right)
        )


def _bearer(request: web.Request) -> bytes:
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    return token.strip().encode() if scheme.lower() == "bearer" else b""
