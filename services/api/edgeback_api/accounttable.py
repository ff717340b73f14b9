"""The routes that end what ``table.py``'s users section begins: deleting users and
groups, changing roles, reading one group. Admins only, each audited by the catalog.

Deleting a user revokes all its tokens; no change may leave edgeback without an admin
(``last_admin``); a group still named by a user, backup host, platform or job stays
(``group_in_use``, with how many of each name it).
"""

from __future__ import annotations

from edgeback_api.routing import Access, Route, no_content, row, rpc
from edgeback_core.messages import auth as a
from edgeback_core.messages import catalog as m

ADMIN = Access.ADMIN


def account_routes() -> list[Route]:
    return [
        row(
            "DELETE",
            "/users/{name}",
            "delete_user",
            "Delete a user and revoke all its tokens (never the last admin)",
            ADMIN,
            no_content(a.USER_DELETE, m.Done),
            request=a.UserDelete,
            status=204,
        ),
        row(
            "PUT",
            "/users/{name}/role",
            "set_user_role",
            "Change a user's role (never demoting the last admin)",
            ADMIN,
            rpc(a.USER_SET_ROLE, m.UserInfo),
            request=a.UserSetRole,
            reply=m.UserInfo,
        ),
        row(
            "GET",
            "/groups/{name}",
            "get_group",
            "One user group",
            ADMIN,
            rpc(a.GROUP_GET, m.GroupInfo),
            request=a.GroupGet,
            reply=m.GroupInfo,
        ),
        row(
            "DELETE",
            "/groups/{name}",
            "delete_group",
            "Delete a user group no one names any more",
            ADMIN,
            no_content(a.GROUP_DELETE, m.Done),
            request=a.GroupDelete,
            status=204,
        ),
    ]
