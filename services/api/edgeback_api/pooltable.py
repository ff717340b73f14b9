"""The routes of storage pools (R5), beside the rest of the table (``table.py``).

A pool is registered with the backup host whose workers use it; the catalog checks it
from there (the storage node's status with that host's token) before storing it, and
a refresh asks again: capacity, used and free space, counts, or why the check failed.
"""

from __future__ import annotations

from edgeback_api.paging import Page, page_of
from edgeback_api.routing import Access, Call, Route, no_content, row, rpc
from edgeback_api.wire import PoolQuery
from edgeback_core.messages import catalog as m
from edgeback_core.messages import catalog_rpc as n

USER, ADMIN = Access.USER, Access.ADMIN


async def pools(call: Call) -> Page[m.PoolInfo]:
    q = call.query_as(PoolQuery)
    request = m.PoolList(actor=call.actor, host_id=q.host_id, node_url=q.node_url)
    found = (await call.api.call(n.POOL_LIST, request, m.PoolListReply)).pools
    part = (q.name or "").casefold()
    kept = [p for p in found if part in p.name.casefold()]
    return page_of(kept, lambda p: (p.node_url, p.name, p.id), q.cursor, q.limit)


def pool_routes() -> list[Route]:
    one = "/pools/{pool_id}"
    return [
        row(
            "GET",
            "/pools",
            "list_pools",
            "Storage pools of the backup hosts I may use, with their last status",
            USER,
            pools,
            query=PoolQuery,
            reply=Page[m.PoolInfo],
        ),
        row(
            "POST",
            "/pools",
            "register_pool",
            "Register a storage node's pool (checked from its backup host)",
            ADMIN,
            rpc(n.POOL_REGISTER, m.PoolInfo, slow=True),
            request=m.PoolRegister,
            reply=m.PoolInfo,
            status=201,
        ),
        row(
            "GET",
            one,
            "get_pool",
            "One storage pool with its last status",
            USER,
            rpc(n.POOL_GET, m.PoolInfo),
            request=m.PoolGet,
            reply=m.PoolInfo,
        ),
        row(
            "PATCH",
            one,
            "edit_pool",
            "Change a pool's description or backup host (absent fields stay)",
            ADMIN,
            rpc(n.POOL_EDIT, m.PoolInfo, slow=True),
            request=m.PoolEdit,
            reply=m.PoolInfo,
        ),
        row(
            "DELETE",
            one,
            "delete_pool",
            "Forget a pool (its data stays on the node; refused while jobs use it)",
            ADMIN,
            no_content(n.POOL_DELETE, m.Done),
            request=m.PoolDelete,
            status=204,
        ),
        row(
            "POST",
            f"{one}/refresh",
            "refresh_pool",
            "Ask the pool's backup host for its status now",
            USER,
            rpc(n.POOL_REFRESH, m.PoolInfo, slow=True),
            request=m.PoolRefresh,
            reply=m.PoolInfo,
        ),
    ]
