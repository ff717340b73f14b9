"""The edge-cloud HTTP client against in-process aiohttp servers (loopback, no services).

One server is the emulator app without Ceph (real signature checking, injected faults);
small ad-hoc apps answer fixed statuses to pin the error mapping.
"""

from __future__ import annotations

import ipaddress
import socket
import ssl
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import structlog
from aiohttp import web
from aiohttp.test_utils import TestServer
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from tests.support.emulator.app import make_app
from tests.support.emulator.runtime import Emulator
from tests.support.emulator.seed import SeedPlan, build
from tests.support.emulator.state import CephTarget

from edgeback_core.errors import (
    ConflictError,
    InvalidInputError,
    NotFoundError,
    PlatformAuthError,
    PlatformTlsError,
    PlatformUnreachableError,
    UnavailableError,
)
from edgeback_core.retry import RetryPolicy
from edgeback_core.settings import Secret
from edgeback_platform.client import DEFAULT_RETRY, EdgeCloudClient, PlatformEndpoint
from edgeback_platform.models import HypervisorId, VmId

AK, SK = "AK-unit", "sk-unit-very-secret"


class Sleeps:
    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)


def _client(
    port: int, *, secret: str = SK, retries: int = 3, sleep: Sleeps | None = None, **kw: object
) -> EdgeCloudClient:
    endpoint = PlatformEndpoint(
        address="127.0.0.1", port=port, access_key=AK, secret_key=Secret(secret)
    )
    return EdgeCloudClient(
        endpoint=endpoint,
        retry=RetryPolicy(retries=retries, base_delay=0.1, max_delay=0.4),
        sleep=sleep or Sleeps(),
        jitter=lambda: 1.0,
        **kw,  # type: ignore[arg-type]
    )


@pytest.fixture
async def emulator(tmp_path: Path) -> AsyncIterator[tuple[Emulator, int]]:
    state = build(SeedPlan(vms=10, disk_mib=(8,)), CephTarget(conf="/nonexistent"))
    emu = Emulator(state=state, path=tmp_path / "state.json", secrets={AK: SK})
    server = TestServer(make_app(emu, with_ceph=False), host="127.0.0.1")
    await server.start_server()
    try:
        yield emu, server.port or 0
    finally:
        await server.close()


async def _fixed_server(handler: Callable[[web.Request], object]) -> TestServer:
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)  # type: ignore[arg-type]
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    return server


async def test_check_proves_keys(emulator: tuple[Emulator, int]) -> None:
    async with _client(emulator[1]) as client:
        info = await client.check()
    assert info.access_key == AK


async def test_list_hosts_and_vms(emulator: tuple[Emulator, int]) -> None:
    emu, port = emulator
    async with _client(port) as client:
        hosts = await client.list_hosts()
        everything = await client.list_vms(None)
        first_host = await client.list_vms(hosts[0].id)
        web_vms = await client.list_vms(None, keyword="WEB")
        vm = await client.get_vm(everything[3].id)
    assert [h.id for h in hosts] == [h.id for h in emu.state.hosts]
    assert len(everything) == 10
    assert first_host and all(v.host_id == hosts[0].id for v in first_host)
    assert len(first_host) < len(everything)
    assert web_vms and all("web" in v.name for v in web_vms)
    assert vm == everything[3]
    assert {v.state for v in everything} >= {"running", "stopped", "suspended", "paused", "shelved"}


async def test_unknown_ids_are_not_found(emulator: tuple[Emulator, int]) -> None:
    async with _client(emulator[1]) as client:
        with pytest.raises(NotFoundError):
            await client.get_vm(VmId("no-such-vm"))
        with pytest.raises(NotFoundError):
            await client.list_vms(HypervisorId("no-such-host"))


async def test_wrong_secret_is_auth_error_without_retry(emulator: tuple[Emulator, int]) -> None:
    sleeps = Sleeps()
    async with _client(emulator[1], secret="wrong", sleep=sleeps) as client:
        with pytest.raises(PlatformAuthError) as info:
            await client.list_hosts()
    assert info.value.code == "platform_auth_failed"
    assert info.value.details["platform_code"] == "auth_failed"
    assert sleeps.delays == []


async def test_skewed_clock_is_refused(emulator: tuple[Emulator, int]) -> None:
    late = datetime.now(UTC) - timedelta(minutes=10)
    async with _client(emulator[1], clock=lambda: late) as client:
        with pytest.raises(PlatformAuthError, match="clock skew"):
            await client.check()


async def test_transient_failures_are_retried_with_backoff(
    emulator: tuple[Emulator, int],
) -> None:
    emu, port = emulator
    emu.faults.extend([503, 429, 502, 500])
    sleeps = Sleeps()
    async with _client(port, retries=5, sleep=sleeps) as client:
        hosts = await client.list_hosts()
    assert len(hosts) == len(emu.state.hosts)
    assert sleeps.delays == [0.1, 0.2, 0.4, 0.4]  # doubled, capped at max_delay


async def test_retries_run_out(emulator: tuple[Emulator, int]) -> None:
    emu, port = emulator
    emu.faults.extend([503] * 10)
    sleeps = Sleeps()
    async with _client(port, retries=2, sleep=sleeps) as client:
        with pytest.raises(UnavailableError) as info:
            await client.list_hosts()
    assert info.value.retryable
    assert len(sleeps.delays) == 2
    assert len(emu.faults) == 7  # three attempts were made


@pytest.mark.parametrize(
    ("status", "error"),
    [
        (400, InvalidInputError),
        (403, PlatformAuthError),
        (404, NotFoundError),
        (409, ConflictError),
        (422, InvalidInputError),
    ],
)
async def test_permanent_statuses_map_without_retry(status: int, error: type[Exception]) -> None:
    calls: list[str] = []

    async def handler(request: web.Request) -> web.Response:
        calls.append(request.path)
        return web.json_response({"error": {"code": "x", "message": "nope"}}, status=status)

    server = await _fixed_server(handler)
    try:
        async with _client(server.port or 0) as client:
            with pytest.raises(error):
                await client.get_vm(VmId("vm-1"))
    finally:
        await server.close()
    assert calls == ["/api/v1/vms/vm-1"]


async def test_retried_post_keeps_its_idempotency_key() -> None:
    keys: list[str] = []

    async def handler(request: web.Request) -> web.Response:
        keys.append(request.headers["Idempotency-Key"])
        if len(keys) < 3:
            return web.Response(status=502, text="bad gateway")
        return web.json_response(
            {
                "id": "s1",
                "vm_id": "vm-1",
                "disks": [],
                "frozen": True,
                "created": "2025-03-01T12:00:00Z",
            },
            status=201,
        )

    server = await _fixed_server(handler)
    try:
        async with _client(server.port or 0) as client:
            snap = await client.create_snapshot(VmId("vm-1"), quiesce=True)
            await client.create_snapshot(VmId("vm-1"), quiesce=True)
    finally:
        await server.close()
    assert snap.frozen and snap.id == "s1"
    assert len(set(keys[:3])) == 1
    assert keys[3] != keys[0]


async def test_unreadable_answer_is_unavailable() -> None:
    async def handler(request: web.Request) -> web.Response:
        return web.json_response({"hosts": "not a list"})

    server = await _fixed_server(handler)
    try:
        async with _client(server.port or 0, retries=0) as client:
            with pytest.raises(UnavailableError, match="cannot read"):
                await client.list_hosts()
    finally:
        await server.close()


async def test_unreachable_platform_after_retries_and_no_secret_in_logs() -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    sleeps = Sleeps()
    client = _client(port, retries=3, sleep=sleeps)
    with structlog.testing.capture_logs() as logs:
        async with client:
            with pytest.raises(PlatformUnreachableError) as info:
                await client.check()
    assert info.value.code == "platform_unreachable"
    assert len(sleeps.delays) == 3
    assert [e["event"] for e in logs] == ["platform.retry"] * 3
    assert SK not in repr(logs) + repr(client) + str(info.value) + repr(info.value.to_dict())


def test_endpoint_urls_and_tls() -> None:
    plain = PlatformEndpoint(address="10.0.0.5", access_key=AK, secret_key=Secret(SK))
    assert plain.base_url == "http://10.0.0.5:30188"
    assert plain.ssl_option() is False
    tls = PlatformEndpoint(address="::1", ssl=True, port=443, access_key=AK, secret_key=Secret(SK))
    assert tls.base_url == "https://[::1]:443"
    assert tls.ssl_option() is not False
    unverified = PlatformEndpoint(
        address="h", ssl=True, verify_ssl=False, access_key=AK, secret_key=Secret(SK)
    )
    assert unverified.ssl_option() is False
    assert SK not in repr(plain)


def self_signed(directory: Path) -> tuple[Path, ssl.SSLContext]:
    """A certificate for 127.0.0.1 signed by its own key (written as PEM), and a server
    context that presents it."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "edge-cloud test")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = directory / "platform.pem", directory / "platform.key"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(cert_file, key_file)
    return cert_file, server


async def test_tls_verifies_the_platform_certificate(tmp_path: Path) -> None:
    cert_file, server_tls = self_signed(tmp_path)
    state = build(SeedPlan(vms=1, disk_mib=(8,)), CephTarget(conf="/nonexistent"))
    emu = Emulator(state=state, path=tmp_path / "state.json", secrets={AK: SK})
    server = TestServer(make_app(emu, with_ceph=False), host="127.0.0.1")
    await server.start_server(ssl=server_tls)

    async def check(**tls: object) -> str:
        endpoint = PlatformEndpoint(
            address="127.0.0.1", port=server.port or 0, ssl=True, access_key=AK,
            secret_key=Secret(SK), **tls,  # type: ignore[arg-type]
        )  # fmt: skip
        async with EdgeCloudClient(endpoint=endpoint, retry=RetryPolicy(retries=0)) as client:
            return (await client.check()).access_key

    try:
        # verification on by default: a certificate nobody vouches for is refused
        with pytest.raises(PlatformTlsError) as refused:
            await check()
        assert refused.value.details["reason"] == "tls"
        assert "CERTIFICATE_VERIFY_FAILED" in refused.value.message
        # the same server is fine once its CA is trusted, or verification is off
        assert await check(ca_file=str(cert_file)) == AK
        assert await check(verify_ssl=False) == AK
    finally:
        await server.close()


def test_default_retry_count_is_fifteen() -> None:
    assert DEFAULT_RETRY.retries == 15
