"""Users, user groups and roles (admin, operator), as the catalog stores them.

Authentication (bearer tokens) is the API's business: it resolves a token to a user
through the catalog and passes an ``Actor`` with every request. Only admins manage
users and groups.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any

from edgeback_catalog.access import AuditLog, check_name, new_id, require_groups
from edgeback_catalog.documents import UserDoc, user_of, utc
from edgeback_catalog.domain import Actor, Clock, Group, GroupName, Role, User, UserName
from edgeback_catalog.mongo import CatalogDb, Coll
from edgeback_core.errors import InvalidInputError, NotFoundError


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
