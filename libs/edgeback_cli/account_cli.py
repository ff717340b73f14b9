"""API commands for who may use edgeback: ``user``, ``group``, ``token`` and
``password`` (one's own). Managing users and groups is for admins; anyone lists,
creates and revokes their own API tokens (admins: anyone's).

Passwords are asked for on the terminal (or read from stdin with
``--password-stdin``), never taken as an argument that other users could read in the
process list.
"""

from __future__ import annotations

import argparse
import getpass
import sys
from typing import Any

from edgeback_cli.apicli import Ctx, Groups, group, listing, sends, verb
from edgeback_cli.output import Columns
from edgeback_core.errors import InvalidInputError

USER_COLUMNS: Columns = (
    ("NAME", "name"),
    ("ROLE", "role"),
    ("GROUPS", "groups"),
    ("CREATED", "created_at"),
)
GROUP_COLUMNS: Columns = (
    ("NAME", "name"),
    ("DESCRIPTION", "description"),
    ("CREATED", "created_at"),
)
TOKEN_COLUMNS: Columns = (
    ("ID", "id"),
    ("USER", "user"),
    ("KIND", "kind"),
    ("LABEL", "label"),
    ("CREATED", "created_at"),
    ("EXPIRES", "expires_at"),
)


def add(groups: Groups) -> None:
    _users(group(groups, "user", "users and their roles (admin)"))
    _groups(group(groups, "group", "user groups: who may use which backup hosts (admin)"))
    _tokens(group(groups, "token", "API tokens for automation, and sessions"))
    own = verb(
        groups,
        "password",
        "change your own password (your other sessions end)",
        "edgeback password",
        _own_password,
    )
    _password_stdin(own)


def _limit(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--limit", type=int, default=200, help="at most this many (default 200)")


def _password_stdin(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--password-stdin",
        action="store_true",
        help="read the new password from stdin (scripts) instead of asking twice",
    )


def _users(verbs: Groups) -> None:
    ls = verb(
        verbs,
        "list",
        "users, by name",
        "edgeback user list --role operator",
        listing("/users", USER_COLUMNS, lambda a: {"role": a.role, "group": a.group}),
    )
    ls.add_argument("--role", choices=("admin", "operator"), help="only users of this role")
    ls.add_argument("--group", help="only members of this user group")
    _limit(ls)
    show = verb(
        verbs,
        "show",
        "one user",
        "edgeback user show alice",
        sends("GET", "/users/{name}", USER_COLUMNS),
    )
    show.add_argument("name", metavar="NAME")
    create = verb(
        verbs,
        "create",
        "create a user (then set a password with `user set-password`)",
        "edgeback user create alice --role operator --group site-a",
        sends("POST", "/users", USER_COLUMNS, body=_user_body),
    )
    create.add_argument("name", metavar="NAME")
    create.add_argument(
        "--role",
        choices=("admin", "operator"),
        default="operator",
        help="admin (everything) or operator (jobs and restores of its groups); default operator",
    )
    _group_options(create)
    groups = verb(
        verbs,
        "set-groups",
        "replace a user's groups",
        "edgeback user set-groups alice --group site-a --group site-b",
        sends("PUT", "/users/{name}/groups", USER_COLUMNS, body=lambda a: {"groups": a.groups}),
    )
    groups.add_argument("name", metavar="NAME")
    _group_options(groups)
    role = verb(
        verbs,
        "set-role",
        "change a user's role (the last admin stays admin)",
        "edgeback user set-role alice admin",
        sends("PUT", "/users/{name}/role", USER_COLUMNS, body=lambda a: {"role": a.role}),
    )
    role.add_argument("name", metavar="NAME")
    role.add_argument("role", choices=("admin", "operator"), help="the new role: admin or operator")
    password = verb(
        verbs,
        "set-password",
        "set a user's password: all the user's sessions end (API tokens stay)",
        "edgeback user set-password alice",
        _user_password,
    )
    password.add_argument("name", metavar="NAME")
    _password_stdin(password)
    delete = verb(
        verbs,
        "delete",
        "delete a user and revoke all its tokens (never the last admin)",
        "edgeback user delete alice",
        sends("DELETE", "/users/{name}", done="user {name} deleted, its tokens revoked"),
    )
    delete.add_argument("name", metavar="NAME")


def _group_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--group", action="append", default=[], dest="groups", help="a user group (repeat)"
    )


def _user_body(args: argparse.Namespace) -> dict[str, Any]:
    return {"name": args.name, "role": args.role, "groups": args.groups}


def _groups(verbs: Groups) -> None:
    ls = verb(
        verbs,
        "list",
        "user groups, by name",
        "edgeback group list",
        listing("/groups", GROUP_COLUMNS, lambda a: {}),
    )
    _limit(ls)
    show = verb(
        verbs,
        "show",
        "one user group",
        "edgeback group show site-a",
        sends("GET", "/groups/{name}", GROUP_COLUMNS),
    )
    show.add_argument("name", metavar="NAME")
    create = verb(
        verbs,
        "create",
        "create a user group",
        'edgeback group create site-a --description "the Hangzhou site"',
        sends(
            "POST",
            "/groups",
            GROUP_COLUMNS,
            body=lambda a: {"name": a.name, "description": a.description},
        ),
    )
    create.add_argument("name", metavar="NAME")
    create.add_argument("--description", default="", help="what the group is for")
    delete = verb(
        verbs,
        "delete",
        "delete a user group no user, backup host, platform or job names any more",
        "edgeback group delete site-a",
        sends("DELETE", "/groups/{name}", done="group {name} deleted"),
    )
    delete.add_argument("name", metavar="NAME")


def _tokens(verbs: Groups) -> None:
    ls = verb(
        verbs,
        "list",
        "live tokens (never their values): yours, or with --user another user's (admin)",
        "edgeback token list --user alice",
        listing("/auth/tokens", TOKEN_COLUMNS, lambda a: {"user": a.user}),
    )
    ls.add_argument("--user", help="this user's tokens (admins)")
    _limit(ls)
    create = verb(
        verbs,
        "create",
        "an API token for automation: shown once, send it as EDGEBACK_API_TOKEN",
        "edgeback token create nightly-report --ttl-days 90",
        _token_create,
    )
    create.add_argument("label", metavar="LABEL", help="what the token is for (1-64 characters)")
    create.add_argument(
        "--ttl-days", type=float, help="expires after this many days (default: never; revoke it)"
    )
    revoke = verb(
        verbs,
        "revoke",
        "revoke a token or session: yours, or anyone's (admin)",
        "edgeback token revoke 5f0c…",
        sends("DELETE", "/auth/tokens/{token}", done="token {token} revoked"),
    )
    revoke.add_argument("token", metavar="TOKEN_ID")


def _token_create(ctx: Ctx, args: argparse.Namespace) -> int:
    ttl_s = None if args.ttl_days is None else args.ttl_days * 86400
    made = ctx.client.request("POST", "/auth/tokens", body={"label": args.label, "ttl_s": ttl_s})
    info = made["info"]
    shown = {"token": made["token"], **{k: info.get(k) for k in ("id", "label", "expires_at")}}
    ctx.show(shown, [(k.upper(), k) for k in shown], one=True)
    print("the token is shown once: keep it where your automation reads secrets", file=sys.stderr)
    return 0


def _user_password(ctx: Ctx, args: argparse.Namespace) -> int:
    body = {"password": _new_password(args, f"new password for {args.name}: ")}
    ctx.client.request("PUT", f"/users/{args.name}/password", body=body)
    print(f"password of {args.name} set; its sessions ended", file=sys.stderr)
    return 0


def _own_password(ctx: Ctx, args: argparse.Namespace) -> int:
    body = {"password": _new_password(args, "new password: ")}
    ctx.client.request("PUT", "/auth/me/password", body=body)
    print("password changed; your other sessions ended", file=sys.stderr)
    return 0


def _new_password(args: argparse.Namespace, prompt: str) -> str:
    if args.password_stdin:
        return sys.stdin.readline().rstrip("\n")
    first = getpass.getpass(prompt)
    if getpass.getpass("again: ") != first:
        raise InvalidInputError("the two passwords differ", field="password")
    return first
