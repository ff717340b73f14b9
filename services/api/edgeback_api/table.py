"""The API's route table: every operation of ``/api/v1``, declared once.

The app serves exactly these (plus the OpenAPI document and its docs page), the
OpenAPI document is generated from them, and the tests check auth on each of them.
Catalog requests are the request types as they are: the API fills ``actor`` with the
signed-in user and the path's fields, the client sends the rest as JSON.
"""

from __future__ import annotations

from typing import Any

import msgspec

from edgeback_api import commands, lists, session
from edgeback_api.paging import Page
from edgeback_api.routing import Access, Handler, Route, no_content, rpc
from edgeback_api.wire import (
    AuditQuery,
    BackupSetQuery,
    BrowseQuery,
    Health,
    HostQuery,
    JobQuery,
    LoginBody,
    NewToken,
    PageQuery,
    PasswordBody,
    PlatformQuery,
    RunQuery,
    RunRequested,
    Session,
    StartBody,
    TokenBody,
    UserQuery,
)
from edgeback_core.messages import auth as a
from edgeback_core.messages import backups as b
from edgeback_core.messages import catalog as m
from edgeback_core.messages import catalog_rpc as n
from edgeback_core.messages import jobs as j
from edgeback_core.messages import worker as w

PUBLIC, USER, ADMIN = Access.PUBLIC, Access.USER, Access.ADMIN


def _r(  # noqa: PLR0917 - one row of the table per call, read like a table
    method: str,
    path: str,
    op: str,
    summary: str,
    access: Access,
    handler: Handler,
    *,
    request: type[msgspec.Struct] | None = None,
    query: type[msgspec.Struct] | None = None,
    reply: type[Any] | None = None,
    status: int = 200,
) -> Route:
    tag = path.split("/")[1]
    return Route(
        method=method,
        path=path,
        operation=op,
        summary=summary,
        tag=tag,
        access=access,
        handler=handler,
        request=request,
        query=query,
        reply=reply,
        status=status,
    )


def _auth() -> list[Route]:
    return [
        _r(
            "GET",
            "/health",
            "health",
            "Whether the API reaches the catalog",
            PUBLIC,
            session.health,
            reply=Health,
        ),
        _r(
            "POST",
            "/auth/login",
            "login",
            "Sign in: a bearer token for the session",
            PUBLIC,
            session.login,
            request=LoginBody,
            reply=Session,
        ),
        _r(
            "POST",
            "/auth/logout",
            "logout",
            "Sign out: revoke this session's token",
            USER,
            session.logout,
            status=204,
        ),
        _r("GET", "/auth/me", "me", "The signed-in user", USER, session.me, reply=m.UserInfo),
        _r(
            "PUT",
            "/auth/me/password",
            "set_my_password",
            "Change my password",
            USER,
            session.set_my_password,
            request=PasswordBody,
            status=204,
        ),
        _r(
            "GET",
            "/auth/tokens",
            "list_my_tokens",
            "My live tokens (never their values)",
            USER,
            session.my_tokens,
            reply=a.TokenListReply,
        ),
        _r(
            "POST",
            "/auth/tokens",
            "create_token",
            "An API token for automation (shown once)",
            USER,
            session.create_token,
            request=TokenBody,
            reply=NewToken,
            status=201,
        ),
        _r(
            "DELETE",
            "/auth/tokens/{token_id}",
            "revoke_token",
            "Revoke a token (mine; admins: anyone's)",
            USER,
            no_content(a.TOKEN_REVOKE, m.Done),
            request=a.TokenRevoke,
            status=204,
        ),
    ]


def _hosts() -> list[Route]:
    one = "/backup-hosts/{host_id}"
    return [
        _r(
            "GET",
            "/backup-hosts",
            "list_backup_hosts",
            "Backup hosts I may use",
            USER,
            lists.hosts,
            query=HostQuery,
            reply=Page[m.HostInfo],
        ),
        _r(
            "GET",
            one,
            "get_backup_host",
            "One backup host",
            USER,
            rpc(n.HOST_GET, m.HostInfo),
            request=m.HostGet,
            reply=m.HostInfo,
        ),
        _r(
            "POST",
            f"{one}/activate",
            "activate_backup_host",
            "Activate a registered backup host",
            ADMIN,
            rpc(n.HOST_ACTIVATE, m.HostInfo),
            request=m.HostActivate,
            reply=m.HostInfo,
        ),
        _r(
            "PUT",
            f"{one}/groups",
            "authorize_backup_host",
            "Replace the user groups allowed on a backup host",
            ADMIN,
            rpc(n.HOST_AUTHORIZE, m.HostInfo),
            request=m.HostAuthorize,
            reply=m.HostInfo,
        ),
        _r(
            "POST",
            "/backup-hosts/activate",
            "activate_backup_hosts",
            "Activate several backup hosts (all or none)",
            ADMIN,
            rpc(n.HOST_ACTIVATE_MANY, m.HostListReply),
            request=m.HostActivateMany,
            reply=m.HostListReply,
        ),
        _r(
            "PUT",
            "/backup-hosts/groups",
            "authorize_backup_hosts",
            "Authorize groups on several backup hosts (all or none)",
            ADMIN,
            rpc(n.HOST_AUTHORIZE_MANY, m.HostListReply),
            request=m.HostAuthorizeMany,
            reply=m.HostListReply,
        ),
    ]


def _platforms() -> list[Route]:
    one = "/platforms/{platform_id}"
    return [
        _r(
            "GET",
            "/platforms",
            "list_platforms",
            "Platforms I may see",
            USER,
            lists.platforms,
            query=PlatformQuery,
            reply=Page[m.PlatformInfo],
        ),
        _r(
            "POST",
            "/platforms",
            "register_platform",
            "Register a platform (checked from its backup host)",
            ADMIN,
            rpc(n.PLATFORM_REGISTER, m.PlatformInfo, slow=True),
            request=m.PlatformRegister,
            reply=m.PlatformInfo,
            status=201,
        ),
        _r(
            "GET",
            one,
            "get_platform",
            "One platform (the Secret Key is never shown)",
            USER,
            rpc(n.PLATFORM_GET, m.PlatformInfo),
            request=m.PlatformGet,
            reply=m.PlatformInfo,
        ),
        _r(
            "PATCH",
            one,
            "update_platform",
            "Change a platform's settings (absent fields stay)",
            ADMIN,
            rpc(n.PLATFORM_UPDATE, m.PlatformInfo, slow=True),
            request=m.PlatformUpdate,
            reply=m.PlatformInfo,
        ),
        _r(
            "PUT",
            f"{one}/name",
            "rename_platform",
            "Rename a platform",
            ADMIN,
            rpc(n.PLATFORM_RENAME, m.PlatformInfo),
            request=m.PlatformRename,
            reply=m.PlatformInfo,
        ),
        _r(
            "PUT",
            f"{one}/tags",
            "set_platform_tags",
            "Replace a platform's tags",
            ADMIN,
            rpc(n.PLATFORM_SET_TAGS, m.PlatformInfo),
            request=m.PlatformSetTags,
            reply=m.PlatformInfo,
        ),
        _r(
            "DELETE",
            one,
            "unregister_platform",
            "Unregister a platform and its Ceph storages",
            ADMIN,
            no_content(n.PLATFORM_UNREGISTER, m.Done),
            request=m.PlatformUnregister,
            status=204,
        ),
        _r(
            "GET",
            f"{one}/tree",
            "browse_platform",
            "Physical hosts, VMs and disks, with keyword search",
            USER,
            lists.browse,
            query=BrowseQuery,
            reply=w.PlatformInventory,
        ),
        _r(
            "GET",
            f"{one}/storages",
            "list_storages",
            "Ceph storages of a platform",
            USER,
            lists.storages,
            query=PageQuery,
            reply=Page[m.StorageInfo],
        ),
        _r(
            "POST",
            f"{one}/storages",
            "add_storage",
            "Add a Ceph storage (checked from its backup host)",
            ADMIN,
            rpc(n.STORAGE_ADD, m.StorageInfo, slow=True),
            request=m.StorageAdd,
            reply=m.StorageInfo,
            status=201,
        ),
        _r(
            "GET",
            "/storages/{storage_id}",
            "get_storage",
            "One Ceph storage",
            USER,
            rpc(n.STORAGE_GET, m.StorageInfo),
            request=m.StorageGet,
            reply=m.StorageInfo,
        ),
        _r(
            "DELETE",
            "/storages/{storage_id}",
            "remove_storage",
            "Remove a Ceph storage",
            ADMIN,
            no_content(n.STORAGE_REMOVE, m.Done),
            request=m.StorageRemove,
            status=204,
        ),
    ]


def _jobs() -> list[Route]:
    one = "/jobs/{job_id}"
    return [
        _r(
            "GET",
            "/jobs",
            "list_jobs",
            "Backup jobs I may see, by name",
            USER,
            lists.jobs,
            query=JobQuery,
            reply=Page[j.JobInfo],
        ),
        _r(
            "POST",
            "/jobs",
            "create_job",
            "Create a backup job",
            USER,
            rpc(j.JOB_CREATE, j.JobInfo),
            request=j.JobCreate,
            reply=j.JobInfo,
            status=201,
        ),
        _r(
            "GET",
            one,
            "get_job",
            "One backup job",
            USER,
            rpc(j.JOB_GET, j.JobInfo),
            request=j.JobGet,
            reply=j.JobInfo,
        ),
        _r(
            "PUT",
            one,
            "edit_job",
            "Replace a job's definition (name the revision you edited)",
            USER,
            rpc(j.JOB_UPDATE, j.JobInfo),
            request=j.JobUpdate,
            reply=j.JobInfo,
        ),
        _r(
            "POST",
            f"{one}/clone",
            "clone_job",
            "Copy a job under a new name (created disabled)",
            USER,
            rpc(j.JOB_CLONE, j.JobInfo),
            request=j.JobClone,
            reply=j.JobInfo,
            status=201,
        ),
        _r(
            "DELETE",
            one,
            "delete_job",
            "Delete a job (refused while it runs)",
            USER,
            no_content(j.JOB_DELETE, m.Done),
            request=j.JobDelete,
            status=204,
        ),
        _r(
            "PUT",
            f"{one}/enabled",
            "set_job_enabled",
            "Enable or disable a job",
            USER,
            rpc(j.JOB_SET_ENABLED, j.JobInfo),
            request=j.JobSetEnabled,
            reply=j.JobInfo,
        ),
        _r(
            "POST",
            f"{one}/runs",
            "start_job",
            "Start a run now (Idempotency-Key header: once per key)",
            USER,
            commands.start_run,
            request=StartBody,
            reply=RunRequested,
            status=202,
        ),
        _r(
            "GET",
            f"{one}/runs",
            "list_runs",
            "Runs of a job, newest first",
            USER,
            lists.runs,
            query=RunQuery,
            reply=Page[m.RunInfo],
        ),
        _r(
            "GET",
            "/runs/{run_id}",
            "get_run",
            "A run with its VMs, backup sets and totals",
            USER,
            lists.run_detail,
            reply=b.RunDetail,
        ),
        _r(
            "GET",
            "/backup-sets",
            "list_backup_sets",
            "Backup sets (restore points when complete), newest first",
            USER,
            lists.backup_sets,
            query=BackupSetQuery,
            reply=Page[b.BackupSetInfo],
        ),
        _r(
            "GET",
            "/backup-sets/{backup_set_id}",
            "get_backup_set",
            "A backup set with its disk versions",
            USER,
            lists.backup_set,
            reply=b.BackupSetWithDisks,
        ),
    ]


def _users() -> list[Route]:
    one = "/users/{name}"
    return [
        _r(
            "GET",
            "/users",
            "list_users",
            "Users",
            ADMIN,
            lists.users,
            query=UserQuery,
            reply=Page[m.UserInfo],
        ),
        _r(
            "POST",
            "/users",
            "create_user",
            "Create a user (then set a password)",
            ADMIN,
            rpc(n.USER_CREATE, m.UserInfo),
            request=m.UserCreate,
            reply=m.UserInfo,
            status=201,
        ),
        _r(
            "GET",
            one,
            "get_user",
            "One user",
            ADMIN,
            rpc(n.USER_GET, m.UserInfo),
            request=m.UserGet,
            reply=m.UserInfo,
        ),
        _r(
            "PUT",
            f"{one}/groups",
            "set_user_groups",
            "Replace a user's groups",
            ADMIN,
            rpc(n.USER_SET_GROUPS, m.UserInfo),
            request=m.UserSetGroups,
            reply=m.UserInfo,
        ),
        _r(
            "PUT",
            f"{one}/password",
            "set_user_password",
            "Set a user's password",
            ADMIN,
            no_content(a.USER_SET_PASSWORD, m.Done),
            request=a.UserSetPassword,
            status=204,
        ),
        _r(
            "GET",
            "/groups",
            "list_groups",
            "User groups",
            ADMIN,
            lists.groups,
            query=PageQuery,
            reply=Page[m.GroupInfo],
        ),
        _r(
            "POST",
            "/groups",
            "create_group",
            "Create a user group",
            ADMIN,
            rpc(n.GROUP_CREATE, m.GroupInfo),
            request=m.GroupCreate,
            reply=m.GroupInfo,
            status=201,
        ),
        _r(
            "GET",
            "/audit",
            "list_audit",
            "The audit log, newest first",
            ADMIN,
            lists.audit,
            query=AuditQuery,
            reply=Page[m.AuditEntry],
        ),
    ]


def route_table() -> list[Route]:
    return [*_auth(), *_hosts(), *_platforms(), *_jobs(), *_users()]
