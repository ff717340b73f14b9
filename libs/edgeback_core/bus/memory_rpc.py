"""RPC of the in-memory bus: requests and replies cross as JSON, like over RabbitMQ,
so a type that would not survive the wire fails here too."""

from __future__ import annotations

import asyncio
import itertools
from collections import defaultdict
from typing import TYPE_CHECKING, TypeVar, cast

import msgspec

from edgeback_core.bus.rpc import answer, reply_of
from edgeback_core.errors import DeadlineExceededError, UnroutableError
from edgeback_core.messages.base import encode

if TYPE_CHECKING:
    from edgeback_core.bus.port import InFlightTracker, RpcHandler

Req = TypeVar("Req", bound=msgspec.Struct)
Resp = TypeVar("Resp", bound=msgspec.Struct)


class _Server:
    def __init__(
        self,
        rpc: MemoryRpc,
        *,
        owner: object,
        name: str,
        answer: RpcHandler[msgspec.Struct],
        request_type: type[msgspec.Struct],
        tracker: InFlightTracker,
    ) -> None:
        self._rpc, self.owner, self.name = rpc, owner, name
        self._answer, self._request_type, self._tracker = answer, request_type, tracker
        self._tasks: set[asyncio.Task[tuple[str, bytes]]] = set()

    def start(self, body: bytes, caller: str) -> asyncio.Task[tuple[str, bytes]]:
        task = asyncio.get_running_loop().create_task(self._serve(body, caller))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _serve(self, body: bytes, caller: str) -> tuple[str, bytes]:
        async with self._tracker.track():
            return await answer(
                self._answer, self._request_type, body, rpc=self.name, caller=caller
            )

    async def stop(self) -> None:
        self._rpc.remove(self)
        if self._tasks:
            await asyncio.wait(list(self._tasks))

    async def kill(self) -> None:
        self._rpc.remove(self)
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


class MemoryRpc:
    """RPC servers by name; calls are spread round-robin over a name's servers."""

    def __init__(self) -> None:
        self._servers: dict[str, list[_Server]] = defaultdict(list)
        self._turn = itertools.count()

    def serve(
        self,
        owner: object,
        name: str,
        answer: RpcHandler[Req],
        request_type: type[Req],
        tracker: InFlightTracker,
    ) -> _Server:
        server = _Server(
            self,
            owner=owner,
            name=name,
            answer=cast("RpcHandler[msgspec.Struct]", answer),
            request_type=request_type,
            tracker=tracker,
        )
        self._servers[name].append(server)
        return server

    def remove(self, server: _Server) -> None:
        if server in self._servers[server.name]:
            self._servers[server.name].remove(server)

    async def close_owner(self, owner: object) -> None:
        for servers in list(self._servers.values()):
            for server in [s for s in servers if s.owner is owner]:
                await server.kill()

    async def call(
        self,
        name: str,
        request: msgspec.Struct,
        response_type: type[Resp],
        *,
        timeout: float,  # noqa: ASYNC109 - the deadline also sets the request's expiration
        caller: str,
    ) -> Resp:
        """Call ``name`` as broker user ``caller``."""
        servers = self._servers.get(name)
        if not servers:
            raise UnroutableError(f"no server for rpc {name!r}")
        server = servers[next(self._turn) % len(servers)]
        task = server.start(encode(request), caller)
        try:
            async with asyncio.timeout(timeout):
                kind, reply = await asyncio.shield(task)
        except TimeoutError as exc:
            raise DeadlineExceededError(f"rpc {name!r} gave no answer in {timeout}s") from exc
        return reply_of(kind, reply, response_type)
