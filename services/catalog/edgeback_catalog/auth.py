"""Who a request comes from: passwords, logins, bearer tokens (session and API).

The API authenticates users through these use cases and names the user in every
request it makes on their behalf; the catalog stores only what cannot be replayed:
Argon2id password hashes (``passwords``) and SHA-256 hashes of tokens the API drew.
A token is live until it expires or is revoked (its document deleted); expired ones
are purged now and then on the logins and creations that add tokens. A password
change revokes the user's sessions. Repeated failed logins are slowed down per user
and per client address (``loginthrottle``, counted in ``logincounters``), here rather
than in the API so that every API instance shares the count. Logins, logouts,
password changes and token creations and revocations are audited.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import structlog

from edgeback_catalog.access import AuditLog, new_id
from edgeback_catalog.documents import user_of, utc
from edgeback_catalog.domain import Actor, Clock, Role, User, UserName
from edgeback_catalog.logincounters import LoginCounters
from edgeback_catalog.mongo import CatalogDb, Coll
from edgeback_catalog.passwords import hash_password, verify_password
from edgeback_catalog.users import Users
from edgeback_core.errors import (
    InvalidInputError,
    NameTakenError,
    NotFoundError,
    PermissionDeniedError,
    UnauthenticatedError,
)

log = structlog.get_logger(__name__)
_TOKEN_HASH = re.compile(r"[0-9a-f]{64}")
MAX_TTL = timedelta(days=366)
PURGE_EVERY = timedelta(minutes=10)
_WRONG = "wrong user name or password"


@dataclass(frozen=True, slots=True, kw_only=True)
class Token:
    id: str
    user: UserName
    kind: str
    label: str
    created_at: datetime
    expires_at: datetime | None


@dataclass(frozen=True, slots=True, kw_only=True)
class LoginAttempt:
    name: str
    password: str
    client: str
    token_hash: str
    ttl_s: float


class Auth:
    def __init__(self, db: CatalogDb, audit: AuditLog, users: Users, clock: Clock) -> None:
        self._db, self._audit, self._users, self._clock = db, audit, users, clock
        self._counters = LoginCounters(db)
        self._purged_at: datetime | None = None

    async def list_users(self, actor: Actor) -> list[User]:
        actor.require_admin("listing users")
        return [user_of(doc) for doc in await self._db.find(Coll.USERS, {}, sort=(("name", 1),))]

    async def set_password(
        self, actor: Actor, name: str, password: str, keep_token_id: str | None = None
    ) -> None:
        """Set ``name``'s password and revoke its session tokens: all of them, but the
        one ``keep_token_id`` names when users change their own (API tokens stay)."""
        if actor.name != name:
            actor.require_admin("setting another user's password")
            keep_token_id = None
        stored = await hash_password(password)
        doc = await self._db.update(Coll.USERS, {"name": name}, {"$set": {"password_hash": stored}})
        if doc is None:
            raise NotFoundError(f"user {name} not found", user=name)
        sessions: dict[str, Any] = {"user": name, "kind": "session"}
        if keep_token_id is not None:
            sessions["_id"] = {"$ne": keep_token_id}
        revoked = await self._db.delete_all(Coll.TOKENS, sessions)
        details = {"sessions_revoked": revoked}
        await self._audit.record(actor, "user.password_set", f"user/{name}", details)

    async def bootstrap(self, actor: Actor, name: str, password: str) -> bool:
        """Create the first admin with ``password``; False when an admin exists."""
        actor.require_service("creating the first admin")
        stored = await hash_password(password)
        if await self._db.count(Coll.USERS, {"role": Role.ADMIN.value}) > 0:
            return False
        try:
            await self._users.create_user(actor, name, Role.ADMIN.value, [])
        except NameTakenError:
            return False  # another API instance bootstrapped at the same instant
        await self._db.update(Coll.USERS, {"name": name}, {"$set": {"password_hash": stored}})
        await self._audit.record(actor, "user.bootstrapped", f"user/{name}")
        return True

    async def login(self, actor: Actor, attempt: LoginAttempt) -> tuple[User, Token]:
        actor.require_service("checking a login")
        _check_hash(attempt.token_hash)
        ttl = _ttl(attempt.ttl_s)
        now = self._clock()
        user_key, addr_key = f"user:{attempt.name}", f"addr:{attempt.client}"
        # counted before the (slow) check: parallel guesses cannot share one old count
        _, on_address = await self._counters.take((user_key, addr_key), now)
        doc = await self._db.find_one(Coll.USERS, {"name": attempt.name})
        stored = None if doc is None else doc.get("password_hash")
        checked = await verify_password(stored, attempt.password)
        if doc is None or not checked.ok:
            details = {"client": attempt.client}
            await self._audit.record(actor, "user.login_failed", f"user/{attempt.name}", details)
            raise UnauthenticatedError(_WRONG)
        if checked.rehashed is not None:
            change = {"$set": {"password_hash": checked.rehashed}}
            await self._db.update(Coll.USERS, {"name": attempt.name}, change)
        await self._counters.clear(user_key)
        await self._counters.give_back(on_address)
        await self._purge_if_due(now)  # only once it succeeded: a refusal changes no token
        checked_hash = checked.rehashed or stored
        return await self._open_session(
            user_of(doc), attempt, now, ttl, user_id=doc["_id"], checked_hash=checked_hash
        )

    async def _open_session(
        self,
        user: User,
        attempt: LoginAttempt,
        now: datetime,
        ttl: timedelta,
        *,
        user_id: object,
        checked_hash: str | None,
    ) -> tuple[User, Token]:
        token = await self._store(
            user.name, kind="session", label="", token_hash=attempt.token_hash, now=now, ttl=ttl
        )
        # A password change or a delete between the check and the insert revoked the
        # user's sessions before this one existed: looked at again, this one goes too.
        now_doc = await self._db.find_one(Coll.USERS, {"_id": user_id})
        if now_doc is None or now_doc.get("password_hash") != checked_hash:
            await self._db.delete(Coll.TOKENS, {"token_hash": attempt.token_hash})
            raise UnauthenticatedError(_WRONG)
        who = Actor(name=user.name, role=user.role, groups=user.groups)
        details = {"client": attempt.client, "token_id": token.id}
        await self._audit.record(who, "user.logged_in", f"user/{user.name}", details)
        return user, token

    async def create_token(
        self, actor: Actor, label: str, token_hash: str, ttl_s: float | None
    ) -> Token:
        if actor.role is Role.SERVICE:
            raise PermissionDeniedError("API tokens belong to users, not services")
        _check_hash(token_hash)
        if not 1 <= len(label) <= 64 or not label.isprintable():
            raise InvalidInputError("a token label has 1 to 64 printable characters", field="label")
        ttl = None if ttl_s is None else _ttl(ttl_s)
        token = await self._store(
            UserName(actor.name),
            kind="api",
            label=label,
            token_hash=token_hash,
            now=self._clock(),
            ttl=ttl,
        )
        details = {"token_id": token.id, "label": label}
        await self._audit.record(actor, "token.created", f"user/{actor.name}", details)
        await self._purge_if_due(token.created_at)
        return token

    async def resolve(self, actor: Actor, token_hash: str) -> tuple[User, Token]:
        actor.require_service("resolving a token")
        doc = await self._db.find_one(Coll.TOKENS, {"token_hash": token_hash})
        token = None if doc is None else _token_of(doc)
        if token is None or _expired(token, self._clock()):
            raise UnauthenticatedError("the token is unknown, expired or revoked")
        try:
            return await self._users.get(token.user), token
        except NotFoundError as exc:
            raise UnauthenticatedError("the token's user no longer exists") from exc

    async def tokens(self, actor: Actor, user: str | None) -> list[Token]:
        owner = user or actor.name
        if owner != actor.name:
            actor.require_admin("listing another user's tokens")
        docs = await self._db.find(Coll.TOKENS, {"user": owner}, sort=(("created_at", 1),))
        now = self._clock()
        return [t for t in map(_token_of, docs) if not _expired(t, now)]

    async def revoke(self, actor: Actor, token_id: str, *, logout: bool) -> None:
        doc = await self._db.find_one(Coll.TOKENS, {"_id": token_id})
        if doc is None or (doc["user"] != actor.name and not actor.sees_everything):
            raise NotFoundError(f"token {token_id} not found", token_id=token_id)
        await self._db.delete(Coll.TOKENS, {"_id": token_id})
        action = "user.logged_out" if logout else "token.revoked"
        await self._audit.record(actor, action, f"user/{doc['user']}", {"token_id": token_id})

    async def _store(
        self,
        user: UserName,
        *,
        kind: str,
        label: str,
        token_hash: str,
        now: datetime,
        ttl: timedelta | None,
    ) -> Token:
        token = Token(
            id=new_id(),
            user=user,
            kind=kind,
            label=label,
            created_at=now,
            expires_at=None if ttl is None else now + ttl,
        )
        doc = {
            "_id": token.id,
            "user": user,
            "kind": kind,
            "label": label,
            "token_hash": token_hash,
            "created_at": now,
            "expires_at": token.expires_at,
        }
        await self._db.insert(Coll.TOKENS, doc)
        return token

    async def _purge_if_due(self, now: datetime) -> None:
        """Expired tokens and forgotten login counters go, at most once a ``PURGE_EVERY``
        per catalog process, on the successful logins and token creations (which add
        documents anyway: a refused request changes nothing else)."""
        if self._purged_at is not None and now - self._purged_at < PURGE_EVERY:
            return
        self._purged_at = now
        await self.purge(now)

    async def purge(self, now: datetime) -> tuple[int, int]:
        """Delete expired tokens and forgotten login counters: how many of each."""
        expired = {"expires_at": {"$ne": None, "$lte": now}}
        tokens = await self._db.delete_all(Coll.TOKENS, expired)
        counters = await self._counters.purge(now)
        if tokens or counters:
            log.info("auth.purged", tokens=tokens, login_counters=counters)
        return tokens, counters


def _check_hash(token_hash: str) -> None:
    if not _TOKEN_HASH.fullmatch(token_hash):
        raise InvalidInputError("token_hash is 64 lower-case hex digits", field="token_hash")


def _ttl(ttl_s: float) -> timedelta:
    if not 0 < ttl_s <= MAX_TTL.total_seconds():
        raise InvalidInputError(
            f"ttl_s must be in (0, {MAX_TTL.total_seconds():.0f}]", field="ttl_s"
        )
    return timedelta(seconds=ttl_s)


def _expired(token: Token, now: datetime) -> bool:
    return token.expires_at is not None and token.expires_at <= now


def _token_of(doc: dict[str, Any]) -> Token:
    expires = doc.get("expires_at")
    return Token(
        id=doc["_id"],
        user=UserName(doc["user"]),
        kind=doc["kind"],
        label=doc.get("label", ""),
        created_at=utc(doc["created_at"]),
        expires_at=None if expires is None else utc(expires),
    )
