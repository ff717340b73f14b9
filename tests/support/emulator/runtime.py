"""Shared pieces of the emulator app: its state holder, app key, error and reply helpers."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec
from aiohttp import web
from tests.support.emulator.ceph import CephImages
from tests.support.emulator.state import EmulatorState, save

from edgeback_platform.models import ErrorBody, ErrorDetail, Vm, VmId

_encoder = msgspec.json.Encoder()


@dataclass(kw_only=True)
class Emulator:
    state: EmulatorState
    path: Path
    secrets: dict[str, str]
    images: CephImages | None = None
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    replies: dict[str, tuple[int, bytes]] = field(default_factory=dict)
    inflight: dict[str, asyncio.Task[tuple[int, bytes]]] = field(default_factory=dict)
    """Requests still being served, by idempotency key: a repeat that arrives meanwhile
    waits for the first one's answer instead of doing the work twice."""
    faults: list[int] = field(default_factory=list)

    async def persist(self) -> None:
        await asyncio.to_thread(save, self.state, self.path)

    def require_images(self) -> CephImages:
        if self.images is None:
            raise ApiError(503, "storage_unavailable", "emulator has no Ceph connection")
        return self.images


EMULATOR = web.AppKey("emulator", Emulator)


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def reply(payload: Any, status: int = 200) -> web.Response:
    return web.Response(
        body=_encoder.encode(payload), status=status, content_type="application/json"
    )


def error_reply(status: int, code: str, message: str) -> web.Response:
    return reply(ErrorBody(error=ErrorDetail(code=code, message=message)), status)


def find_vm(emu: Emulator, request: web.Request) -> Vm:
    vm = emu.state.vm(VmId(request.match_info["vm_id"]))
    if vm is None:
        raise ApiError(404, "vm_not_found", f"no VM {request.match_info['vm_id']}")
    return vm
