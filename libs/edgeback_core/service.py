"""What every service process shares: common settings, the bus, health answers.

``serve`` is the whole ``main()`` of a service. It serves ``/healthz`` over HTTP for
every service. A service that uses the bus (all but the storage node) also gets
``open_service_bus``: connected for the lifetime of its runtime, answering
``health.ping.<service>`` over it, with a ``bus`` health check that is a real round
trip through the broker back to this process. A service that does not use the bus
(``bus=False``) neither needs ``EDGEBACK_AMQP_URL`` nor connects to a broker.
"""

from __future__ import annotations

import asyncio
import os
import socket
import sys
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, NoReturn, TypeVar, overload

from edgeback_core import logging as edgeback_logging
from edgeback_core.bus.amqp import AmqpBus
from edgeback_core.bus.port import Bus
from edgeback_core.bus.topology import Topology
from edgeback_core.errors import ConfigError, EdgebackError
from edgeback_core.health import serve_health
from edgeback_core.lifecycle import ServiceRuntime, run_service
from edgeback_core.messages.health import Ping, Pong, ping_rpc
from edgeback_core.settings import ProblemCollector, load, process_environ

_PING_TIMEOUT_S = 1.5


@dataclass(frozen=True, slots=True, kw_only=True)
class CommonSettings:
    """Settings every service reads, under ``EDGEBACK_``."""

    log_level: str = "INFO"
    log_json: bool | None = None
    grace_s: float = 30.0
    instance: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class BusSettings:
    """Where a service that uses the bus finds the broker, under ``EDGEBACK_``.

    ``amqp_url`` names the service's own broker user (``amqps://catalog:...@host:5671/``
    in production: identity comes from the broker); ``amqp_cafile`` is the CA that
    signed the broker's certificate (unset: the system's CAs).
    """

    amqp_url: str
    amqp_cafile: str | None = None
    bus_prefix: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class HealthSettings:
    """Where one service answers ``/healthz``, under ``EDGEBACK_<SERVICE>_``."""

    health_host: str = "127.0.0.1"
    health_port: int = 0


def load_common(
    environ: Mapping[str, str], service: str, problems: ProblemCollector
) -> tuple[CommonSettings, HealthSettings]:
    """Load the settings every service has; problems go to ``problems``."""
    common = problems.collect(lambda: load(CommonSettings, environ))
    health = problems.collect(
        lambda: load(HealthSettings, environ, prefix=f"EDGEBACK_{service.upper()}_")
    )
    return common, health


def exit_on_config_error(service: str, error: ConfigError) -> NoReturn:
    """A settings problem is the operator's to fix: say what, no traceback, exit 2."""
    print(f"edgeback-{service}: {error.message}", file=sys.stderr)
    sys.exit(2)


def instance_name(common: CommonSettings) -> str:
    return common.instance or f"{socket.gethostname()}-{os.getpid()}"


async def open_service_bus(
    runtime: ServiceRuntime, settings: BusSettings, instance: str, *, declare_exchanges: bool
) -> Bus:
    """Connect to RabbitMQ, answer pings, add the ``bus`` health check; closed with the runtime.

    ``declare_exchanges=False``: only check that the exchanges exist (backup hosts,
    whose broker users may not declare, hence not delete, them)."""
    topology = Topology(prefix=settings.bus_prefix)
    bus = await runtime.stack.enter_async_context(
        AmqpBus.open(
            settings.amqp_url,
            topology,
            tracker=runtime.inflight,
            cafile=settings.amqp_cafile,
            declare_exchanges=declare_exchanges,
        )
    )

    async def pong(request: Ping) -> Pong:
        return Pong(service=runtime.name, instance=instance, nonce=request.nonce)

    handle = await bus.serve_rpc(ping_rpc(runtime.name), pong, Ping)
    runtime.on_stop_intake(handle.stop)

    async def bus_round_trip() -> bool:
        nonce = uuid.uuid4().hex
        try:
            reply = await bus.call(
                ping_rpc(runtime.name), Ping(nonce=nonce), Pong, timeout=_PING_TIMEOUT_S
            )
        except EdgebackError:
            return False
        return reply.nonce == nonce

    runtime.health_checks["bus"] = bus_round_trip
    return bus


async def open_health(runtime: ServiceRuntime, health: HealthSettings) -> None:
    """Serve ``/healthz`` with the runtime's checks and phase until the runtime closes."""
    port = await runtime.stack.enter_async_context(
        serve_health(
            service=runtime.name,
            host=health.health_host,
            port=health.health_port,
            checks=runtime.health_checks,
            phase=lambda: runtime.phase,
            inflight=runtime.inflight,
        )
    )
    runtime.health_port = port


S = TypeVar("S")
Setup = Callable[[ServiceRuntime, Bus, S], Awaitable[None]]
"""Setup of a service that uses the bus: runtime, bus, the service's own settings."""
LocalSetup = Callable[[ServiceRuntime, S], Awaitable[None]]
"""Setup of a service without the bus (``serve(..., bus=False)``)."""


@overload
def serve(service: str) -> None: ...


@overload
def serve(
    service: str,
    load_own: Callable[[Mapping[str, str]], S],
    setup: Setup[S],
    *,
    declare_exchanges: bool = True,
) -> None: ...


@overload
def serve(
    service: str,
    load_own: Callable[[Mapping[str, str]], S],
    setup: LocalSetup[S],
    *,
    bus: Literal[False],
) -> None: ...


def serve(
    service: str,
    load_own: Callable[[Mapping[str, str]], Any] | None = None,
    setup: Callable[..., Awaitable[None]] | None = None,
    *,
    bus: bool = True,
    declare_exchanges: bool = True,
) -> None:
    """The whole ``main()`` of a service: settings (every problem at once, exit 2),
    logging, the bus with its ping (unless ``bus=False``), ``/healthz``, then ``setup``
    with the service's own settings (``load_own``); run until SIGTERM and exit with the
    runner's code. ``declare_exchanges``: see :func:`open_service_bus`."""
    environ = process_environ()
    problems = ProblemCollector()
    common, health = load_common(environ, service, problems)
    wire = problems.collect(lambda: load(BusSettings, environ)) if bus else None
    own = problems.collect(lambda: load_own(environ)) if load_own else None
    try:
        problems.check()
    except ConfigError as exc:
        exit_on_config_error(service, exc)
    edgeback_logging.configure(common.log_level, json=common.log_json, service=service)

    async def run(runtime: ServiceRuntime) -> None:
        opened = None
        if wire is not None:
            name = instance_name(common)
            opened = await open_service_bus(
                runtime, wire, name, declare_exchanges=declare_exchanges
            )
        await open_health(runtime, health)
        if setup is not None:
            await (setup(runtime, own) if opened is None else setup(runtime, opened, own))

    sys.exit(asyncio.run(run_service(service, run, grace_s=common.grace_s)))
