"""Helpers of the disk-image tests: capability requests against a storage node."""

from __future__ import annotations

from typing import Any

import aiohttp
from tests.support.storage_node import MANIFEST_KEY, TOKEN


async def create_capability(
    url: str, pool: str, vm: str, disk: str, version: str, *, ttl_s: float = 600.0,
    token: str = TOKEN, mac_key: bytes = MANIFEST_KEY.mac,
) -> tuple[int, dict[str, Any]]:  # fmt: skip
    """``POST /v1/pools/{pool}/capabilities``: (status, JSON body)."""
    body = {"vm": vm, "disk": disk, "version": version, "ttl_s": ttl_s,
            "manifest_mac_key": mac_key.hex()}  # fmt: skip
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            f"{url}/v1/pools/{pool}/capabilities",
            json=body,
            headers={"Authorization": f"Bearer {token}"},
        ) as response,
    ):
        return response.status, await response.json()


async def revoke_capability(url: str, pool: str, handle: str, *, token: str = TOKEN) -> int:
    async with (
        aiohttp.ClientSession() as session,
        session.delete(
            f"{url}/v1/pools/{pool}/capabilities/{handle}",
            headers={"Authorization": f"Bearer {token}"},
        ) as response,
    ):
        return response.status
