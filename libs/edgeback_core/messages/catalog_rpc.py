"""Names of the catalog's RPCs, ``catalog.<resource>.<verb>``: the one place they are spelt.

The catalog serves each under its name (``edgeback_catalog.handlers``); callers use the
same constant. Request and reply types are in ``edgeback_core.messages.catalog``.
"""

from __future__ import annotations

from typing import Final

HOST_ACTIVATE: Final = "catalog.host.activate"
HOST_AUTHORIZE: Final = "catalog.host.authorize"
HOST_ACTIVATE_MANY: Final = "catalog.host.activate_many"
HOST_AUTHORIZE_MANY: Final = "catalog.host.authorize_many"
HOST_GET: Final = "catalog.host.get"
HOST_LIST: Final = "catalog.host.list"

PLATFORM_REGISTER: Final = "catalog.platform.register"
PLATFORM_RENAME: Final = "catalog.platform.rename"
PLATFORM_UPDATE: Final = "catalog.platform.update"
PLATFORM_SET_TAGS: Final = "catalog.platform.set_tags"
PLATFORM_UNREGISTER: Final = "catalog.platform.unregister"
PLATFORM_GET: Final = "catalog.platform.get"
PLATFORM_LIST: Final = "catalog.platform.list"
PLATFORM_CREDENTIALS: Final = "catalog.platform.credentials"
PLATFORM_BROWSE: Final = "catalog.platform.browse"

STORAGE_ADD: Final = "catalog.storage.add"
STORAGE_REMOVE: Final = "catalog.storage.remove"
STORAGE_GET: Final = "catalog.storage.get"
STORAGE_LIST: Final = "catalog.storage.list"

POOL_REGISTER: Final = "catalog.pool.register"
POOL_LIST: Final = "catalog.pool.list"
POOL_GET: Final = "catalog.pool.get"
POOL_EDIT: Final = "catalog.pool.edit"
POOL_DELETE: Final = "catalog.pool.delete"
POOL_REFRESH: Final = "catalog.pool.refresh"

GROUP_CREATE: Final = "catalog.group.create"
GROUP_LIST: Final = "catalog.group.list"

USER_CREATE: Final = "catalog.user.create"
USER_SET_GROUPS: Final = "catalog.user.set_groups"
USER_GET: Final = "catalog.user.get"

RUN_CREATE: Final = "catalog.run.create"
RUN_TRANSITION: Final = "catalog.run.transition"
RUN_GET: Final = "catalog.run.get"

AUDIT_LIST: Final = "catalog.audit.list"
