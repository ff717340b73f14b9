"""Wire structs of authentication: passwords, logins, bearer tokens, users listed.

The API is the only caller (as role ``service``; from issue 12 on, the broker user
proves it). Tokens never travel in clear: the API draws a token, answers it to the
user once, and hands the catalog only its SHA-256 (``token_hash``), which the catalog
stores and looks tokens up by. Passwords travel once, to be hashed (Argon2id) or
checked by the catalog; neither is ever stored, logged or answered.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Final, Literal

import msgspec

from edgeback_core.messages.base import Message
from edgeback_core.messages.catalog import ActorRef, Request, UserInfo

USER_LIST = "catalog.user.list"
USER_SET_PASSWORD = "catalog.user.set_password"  # noqa: S105 - an RPC name
USER_BOOTSTRAP = "catalog.user.bootstrap"
LOGIN = "catalog.auth.login"
TOKEN_CREATE = "catalog.token.create"  # noqa: S105 - an RPC name
TOKEN_RESOLVE = "catalog.token.resolve"  # noqa: S105 - an RPC name
TOKEN_LIST = "catalog.token.list"  # noqa: S105 - an RPC name
TOKEN_REVOKE = "catalog.token.revoke"  # noqa: S105 - an RPC name
USER_DELETE = "catalog.user.delete"
USER_SET_ROLE = "catalog.user.set_role"
GROUP_GET = "catalog.group.get"
GROUP_DELETE = "catalog.group.delete"

TokenKind = Literal["session", "api"]

PASSWORD_MIN_LENGTH: Final = 10
PASSWORD_MAX_LENGTH: Final = 1024
NewPassword = Annotated[
    str,
    msgspec.Meta(
        min_length=PASSWORD_MIN_LENGTH,
        max_length=PASSWORD_MAX_LENGTH,
        description="10 to 1024 characters: length is the only rule (NIST SP 800-63B)",
    ),
]
"""A password being set (a login may try any: it is only checked)."""


class UserList(Request, frozen=True, kw_only=True):
    actor: ActorRef


class UserListReply(Message, frozen=True, kw_only=True):
    users: list[UserInfo]


class UserSetPassword(Request, frozen=True, kw_only=True):
    """An admin sets anyone's password, a user their own."""

    actor: ActorRef
    name: str
    password: NewPassword
    keep_token_id: str | None = None
    """The session to keep when users change their own password (the API sends the one
    the change came with); every other session token of the user is revoked."""


class UserBootstrap(Request, frozen=True, kw_only=True):
    """Services only: create the first admin, unless an admin exists (then nothing)."""

    actor: ActorRef
    name: str
    password: str


class UserBootstrapReply(Message, frozen=True, kw_only=True):
    applied: bool
    """False: an admin existed already and nothing changed."""


class Login(Request, frozen=True, kw_only=True):
    """Services only: check a user's password and, if right, store a session token.

    ``client`` (the caller's address) counts failures beside the user name: repeated
    failures of either answer ``login_throttled`` until the delay has passed."""

    actor: ActorRef
    name: str
    password: str
    client: str
    token_hash: str
    ttl_s: float


class TokenInfo(Message, frozen=True, kw_only=True):
    id: str
    user: str
    kind: TokenKind
    label: str = ""
    created_at: datetime
    expires_at: datetime | None = None
    """None: an API token that never expires (until revoked)."""


class LoginReply(Message, frozen=True, kw_only=True):
    user: UserInfo
    token: TokenInfo


class TokenCreate(Request, frozen=True, kw_only=True):
    """An API token of the actor itself, for automation."""

    actor: ActorRef
    label: str
    token_hash: str
    ttl_s: float | None = None


class TokenResolve(Request, frozen=True, kw_only=True):
    """Services only: who a live (unexpired, unrevoked) token belongs to."""

    actor: ActorRef
    token_hash: str


class TokenIdentity(Message, frozen=True, kw_only=True):
    user: UserInfo
    token: TokenInfo


class TokenList(Request, frozen=True, kw_only=True):
    """Live tokens of ``user`` (default: the actor's; another user's: admins)."""

    actor: ActorRef
    user: str | None = None


class TokenListReply(Message, frozen=True, kw_only=True):
    tokens: list[TokenInfo]


class TokenRevoke(Request, frozen=True, kw_only=True):
    """Revoke one token: its owner or an admin. ``logout`` records a logout."""

    actor: ActorRef
    token_id: str
    logout: bool = False


class UserDelete(Request, frozen=True, kw_only=True):
    """Admins: delete a user and revoke all its tokens (never the last admin)."""

    actor: ActorRef
    name: str


class UserSetRole(Request, frozen=True, kw_only=True):
    """Admins: change a user's role (never demoting the last admin)."""

    actor: ActorRef
    name: str
    role: Literal["admin", "operator"]


class GroupGet(Request, frozen=True, kw_only=True):
    actor: ActorRef
    name: str


class GroupDelete(Request, frozen=True, kw_only=True):
    """Admins: delete a group no user, backup host, platform or job names."""

    actor: ActorRef
    name: str
