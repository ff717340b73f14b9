"""``edgeback serve --all`` registers its own local pool in the catalog, so the site is
usable at once: the backup host of the process (registered by its worker's first
heartbeat) is activated, then pool ``default`` of the process's storage node is
registered with it.

Both go through the catalog RPCs the API's ``POST /backup-hosts/{id}/activate`` and
``POST /pools`` use, sent under the API's broker user for the first admin, so they are
checked (the pool from the backup host, with its token) and audited as that admin's. A
pool registered already (by an earlier start, or by hand) is left as it is; a failure
is logged and leaves the site as before (``edgeback pool register`` still works)."""

from __future__ import annotations

import asyncio
import time

import structlog

from edgeback_core.bus.port import Bus
from edgeback_core.errors import EdgebackError, NotFoundError
from edgeback_core.messages import catalog as m
from edgeback_core.messages import catalog_rpc as n

log = structlog.get_logger(__name__)
RPC_TIMEOUT_S = 30.0
REGISTER_TIMEOUT_S = 120.0
"""The catalog checks the pool from the backup host first (the API's slow RPCs)."""
HEARTBEAT_WAIT_S = 60.0
POLL_S = 0.3
DESCRIPTION = "the local dedup pool of edgeback serve --all"


def node_url_of(host: str, port: int, *, tls: bool) -> str | None:
    """The URL the site's worker reaches its storage node at (bound to ``host``,
    ``port``); None for port 0, a free port only the node knows."""
    if port == 0:
        return None
    if host in ("", "0.0.0.0"):
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    shown = f"[{host}]" if ":" in host else host
    return f"{'https' if tls else 'http'}://{shown}:{port}"


async def register_site_pool(
    bus: Bus, *, admin: str, host_id: str, node_url: str, pool: str
) -> m.PoolInfo | None:
    """Activate ``host_id`` and register ``pool`` of ``node_url`` with it, for ``admin``;
    the pool (found or registered), or None when that failed (logged)."""
    actor = m.ActorRef(user=admin)
    try:
        await _activate(bus, actor, host_id)
        listed = m.PoolList(actor=actor, host_id=host_id, node_url=node_url)
        found = await bus.call(n.POOL_LIST, listed, m.PoolListReply, timeout=RPC_TIMEOUT_S)
        mine = [p for p in found.pools if p.name == pool]
        if mine:
            log.info("pool.found", pool=pool, pool_id=mine[0].id, node_url=node_url)
            return mine[0]
        request = m.PoolRegister(
            actor=actor, name=pool, node_url=node_url, host_id=host_id, description=DESCRIPTION
        )
        made = await bus.call(n.POOL_REGISTER, request, m.PoolInfo, timeout=REGISTER_TIMEOUT_S)
    except (EdgebackError, TimeoutError) as exc:
        code = exc.code if isinstance(exc, EdgebackError) else "timeout"
        log.warning(
            "pool.register_failed", pool=pool, host_id=host_id, error_code=code,
            hint="edgeback host activate / edgeback pool register",
        )  # fmt: skip
        return None
    log.info("pool.registered", pool=pool, pool_id=made.id, host_id=host_id, by=admin)
    return made


async def _activate(bus: Bus, actor: m.ActorRef, host_id: str) -> None:
    """Wait for the host's first heartbeat to register it; activate it unless it is."""
    deadline = time.monotonic() + HEARTBEAT_WAIT_S
    while True:
        try:
            host = await bus.call(
                n.HOST_GET, m.HostGet(actor=actor, host_id=host_id), m.HostInfo,
                timeout=RPC_TIMEOUT_S,
            )  # fmt: skip
            break
        except NotFoundError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(POLL_S)
    if not host.active:
        request = m.HostActivate(actor=actor, host_id=host_id)
        await bus.call(n.HOST_ACTIVATE, request, m.HostInfo, timeout=RPC_TIMEOUT_S)
        log.info("host.activated", host_id=host_id, by=actor.user)
