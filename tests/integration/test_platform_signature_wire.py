"""The client sends exactly the documented signature headers (the fixed vectors of
tests/unit/test_platform_signature_vectors.py), seen by a plain aiohttp server on
loopback that only records what arrives: no signing code on the receiving side."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from tests.unit.test_platform_signature_vectors import SECRET, VECTORS

from edgeback_core.errors import InvalidInputError
from edgeback_core.retry import RetryPolicy
from edgeback_core.settings import Secret
from edgeback_platform.client import EdgeCloudClient, PlatformEndpoint
from edgeback_platform.models import HypervisorId, VmId

ACCESS_KEY = "AK-vec"


@pytest.fixture
async def recorder() -> AsyncIterator[tuple[TestServer, list[web.Request]]]:
    seen: list[web.Request] = []

    async def record(request: web.Request) -> web.Response:
        await request.read()
        seen.append(request)
        body = b'{"error": {"code": "invalid_body", "message": "recorded"}}'
        return web.Response(status=400, body=body, content_type="application/json")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", record)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    yield server, seen
    await server.close()


def _client(port: int, date: str) -> EdgeCloudClient:
    endpoint = PlatformEndpoint(
        address="127.0.0.1", port=port, access_key=ACCESS_KEY, secret_key=Secret(SECRET)
    )
    moment = datetime.fromisoformat(date)
    return EdgeCloudClient(endpoint=endpoint, retry=RetryPolicy(retries=0), clock=lambda: moment)


async def test_the_client_sends_the_documented_headers(
    recorder: tuple[TestServer, list[web.Request]],
) -> None:
    server, seen = recorder
    calls: list[Callable[[EdgeCloudClient], Awaitable[object]]] = [
        lambda c: c.list_vms(HypervisorId("hv-01"), keyword="web server"),
        lambda c: c.create_snapshot(VmId("vm-7"), quiesce=True),
        lambda c: c.get_vm(VmId("hé a")),
    ]
    for call, (request, _canonical, signature) in zip(calls, VECTORS, strict=False):
        async with _client(server.port or 0, request.date) as client:
            with pytest.raises(InvalidInputError):
                await call(client)
        got = seen[-1]
        assert got.method == request.method.upper()
        assert got.headers["X-Edge-Date"] == request.date
        assert got.headers["Authorization"] == (
            f"EDGE-HMAC-SHA256 AccessKey={ACCESS_KEY},Signature={signature}"
        )
    assert len(seen) == 3
