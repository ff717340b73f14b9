"""Users, user groups and roles (admin, operator), as the catalog stores them.

Authentication (bearer tokens) is the API's business: it resolves a token to a user
through the catalog and passes an ``Actor`` with every request. Only admins manage
users and groups. A user is deleted rather than disabled (the guide names neither;
nothing refers to a user but the audit log, which keeps the name): deleting one revokes
all its tokens. No change may leave the catalog without an admin, and a group still
named by a user, a backup host, a platform or a job cannot be deleted.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any

from edgeback_catalog.access import AuditLog, check_name, new_id, require_groups
from edgeback_catalog.documents import UserDoc, user_of, utc
from edgeback_catalog.domain import Actor, Clock, Group, GroupName, Role, User, UserName
from edgeback_catalog.mongo import CatalogDb, Coll
from edgeback_core.errors import (
    GroupInUseError,
    InvalidInputError,
    LastAdminError,
    NotFoundError,
)

_NAMING_GROUPS = (
    ("users", Coll.USERS),
    ("backup_hosts", Coll.BACKUP_HOSTS),
    ("platforms", Coll.PLATFORMS),
    ("jobs", Coll.JOBS),
)
"""Where a group is named (``groups`` lists): a group in any of them stays."""


class Users:
    def __init__(self, db: CatalogDb, audit: AuditLog, clock: Clock) -> None:
        self._db, self._audit, self._clock = db, audit, clock

    async def create_group(self, actor: Actor, name: str, description: str = "") -> Group:
        actor.require_admin("creating a user group")
        check_name(name)
        group = Group(name=GroupName(name), description=description, created_at=self._clock())
        doc = {"_id": new_id(), "name": name, "description": description}
        await self._db.insert(Coll.GROUPS, doc | {"created_at": group.created_at})
        await self._audit.record(actor, "group.created", f"group/{name}")
        return group

    async def groups(self, name: Mapping[str, Any] | None = None) -> list[Group]:
        """By name; ``name``: a clause on it (``listfilters.contains``)."""
        query = {} if name is None else {"name": dict(name)}
        docs = await self._db.find(Coll.GROUPS, query, sort=(("name", 1),))
        return [_group_of(doc) for doc in docs]

    async def group(self, name: str) -> Group:
        doc = await self._db.find_one(Coll.GROUPS, {"name": name})
        if doc is None:
            raise NotFoundError(f"group {name} not found", group=name)
        return _group_of(doc)

    async def delete_group(self, actor: Actor, name: str) -> None:
        """Delete a group no one names (``group_in_use`` with the counts otherwise)."""
        actor.require_admin("deleting a user group")
        await self.group(name)
        used = {what: await self._db.count(coll, {"groups": name}) for what, coll in _NAMING_GROUPS}
        if any(used.values()):
            raise GroupInUseError(f"group {name} is still in use", group=name, **used)
        if not await self._db.delete(Coll.GROUPS, {"name": name}):
            raise NotFoundError(f"group {name} not found", group=name)
        await self._audit.record(actor, "group.deleted", f"group/{name}")

    async def create_user(
        self, actor: Actor, name: str, role: str, groups: Collection[str]
    ) -> User:
        actor.require_admin("creating a user")
        check_name(name)
        parsed = _role(role)
        checked = await require_groups(self._db, groups)
        doc = UserDoc(
            _id=new_id(), name=name, role=parsed, groups=sorted(checked), created_at=self._clock()
        )
        await self._db.insert(Coll.USERS, doc)
        await self._audit.record(actor, "user.created", f"user/{name}", {"role": parsed})
        return user_of(dict(doc))

    async def set_groups(self, actor: Actor, name: str, groups: Collection[str]) -> User:
        actor.require_admin("changing a user's groups")
        checked = await require_groups(self._db, groups)
        doc = await self._db.update(
            Coll.USERS, {"name": name}, {"$set": {"groups": sorted(checked)}}
        )
        if doc is None:
            raise NotFoundError(f"user {name} not found", user=name)
        shown = {"groups": sorted(checked)}
        await self._audit.record(actor, "user.groups_set", f"user/{name}", shown)
        return user_of(doc)

    async def set_role(self, actor: Actor, name: str, role: str) -> User:
        """Change a user's role; demoting the last admin is refused (``last_admin``)."""
        actor.require_admin("changing a user's role")
        parsed = _role(role)
        current = await self.get(UserName(name))
        if current.role is parsed:
            return current
        if current.role is Role.ADMIN:
            await self._require_other_admin(name)
        doc = await self._db.update(
            Coll.USERS, {"name": name, "role": current.role.value}, {"$set": {"role": parsed}}
        )
        if doc is None:
            raise NotFoundError(f"user {name} not found", user=name)
        if current.role is Role.ADMIN and not await self._admins():
            # two admins demoted at once, each seeing the other: put this one back
            change = {"$set": {"role": Role.ADMIN.value}}
            await self._db.update(Coll.USERS, {"name": name}, change)
            raise LastAdminError(f"{name} is the last admin", user=name)
        details = {"role": parsed.value, "was": current.role.value}
        await self._audit.record(actor, "user.role_set", f"user/{name}", details)
        return user_of(doc)

    async def delete_user(self, actor: Actor, name: str) -> int:
        """Delete a user and revoke all its tokens (how many); never the last admin."""
        actor.require_admin("deleting a user")
        doc = await self._db.find_one(Coll.USERS, {"name": name})
        if doc is None:
            raise NotFoundError(f"user {name} not found", user=name)
        admin = doc["role"] == Role.ADMIN.value
        if admin:
            await self._require_other_admin(name)
        if not await self._db.delete(Coll.USERS, {"_id": doc["_id"]}):
            raise NotFoundError(f"user {name} not found", user=name)
        if admin and not await self._admins():
            await self._db.insert(Coll.USERS, doc)  # deleted at once with the other admin
            raise LastAdminError(f"{name} is the last admin", user=name)
        revoked = await self._db.delete_all(Coll.TOKENS, {"user": name})
        await self._db.delete(Coll.LOGIN_FAILURES, {"_id": f"user:{name}"})
        details = {"role": doc["role"], "tokens_revoked": revoked}
        await self._audit.record(actor, "user.deleted", f"user/{name}", details)
        return revoked

    async def _admins(self) -> int:
        return await self._db.count(Coll.USERS, {"role": Role.ADMIN.value})

    async def _require_other_admin(self, name: str) -> None:
        others = {"role": Role.ADMIN.value, "name": {"$ne": name}}
        if not await self._db.count(Coll.USERS, others):
            raise LastAdminError(f"{name} is the last admin", user=name)

    async def get(self, name: UserName) -> User:
        doc = await self._db.find_one(Coll.USERS, {"name": name})
        if doc is None:
            raise NotFoundError(f"user {name} not found", user=name)
        return user_of(doc)

    async def actor_of(self, name: UserName) -> Actor:
        """The actor a stored user acts as."""
        user = await self.get(name)
        return Actor(name=user.name, role=user.role, groups=user.groups)


def _role(role: str) -> Role:
    if role not in (Role.ADMIN, Role.OPERATOR):
        raise InvalidInputError(f"role must be admin or operator, not {role!r}", field="role")
    return Role(role)


def _group_of(doc: dict[str, Any]) -> Group:
    return Group(
        name=GroupName(doc["name"]),
        description=doc["description"],
        created_at=utc(doc["created_at"]),
    )
