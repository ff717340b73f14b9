"""``edgeback serve --all``: the five services in one process, for a one-node site.

The catalog, the storage node, a worker (backup host ``--host-id``), the scheduler and
the API run their own ``setup`` (the fleet's code paths) in one process and one
runtime; only the bus differs: an in-memory broker, each service its own client under
the broker user it has in a fleet (``catalog``, ``api``, ``scheduler``,
``host-<id>``), so the catalog's trust rules apply unchanged. The catalog DB (the
``mongoeco`` wire server of ``.venv-catalogdb``) is started beside it unless
``--mongo-url`` names one, and a local dedup pool ``default`` is created and, once the
worker's heartbeat has registered the backup host, the host is activated and the pool
registered in the catalog for the first admin (``site_pool.py``).

Everything lives under ``--data-dir``: ``secrets.env`` (0600, made once: node tokens,
the catalog's master key, the first admin's password), ``pools/`` (the node's data
directory), ``pool-access/`` (the backup host's pool secret, token and key),
``catalogdb/``. Settings are the fleet's ``EDGEBACK_*`` variables; the environment
wins over what this command derives. See docs/all-in-one.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import secrets
import shutil
import socket
import sys
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from edgeback_core.errors import ConfigError

if TYPE_CHECKING:
    from edgeback_api.settings import ApiSettings
    from edgeback_catalog.settings import CatalogSettings
    from edgeback_core.lifecycle import ServiceRuntime
    from edgeback_core.service import HealthSettings
    from edgeback_dedup.settings import DedupSettings
    from edgeback_scheduler.settings import SchedulerSettings
    from edgeback_worker.settings import WorkerSettings

REPO = Path(__file__).resolve().parents[2]
POOL = "default"
SERVICES = ("dedup", "catalog", "worker", "scheduler", "api")
_DB_START_S = 30.0
_DB_STAND_IN = "mongodb://127.0.0.1/"


@dataclass(frozen=True, slots=True, kw_only=True)
class Site:
    data_dir: Path
    host_id: str
    api_port: int
    node_port: int

    @property
    def pools(self) -> Path:
        return self.data_dir / "pools"

    @property
    def pool_access(self) -> Path:
        return self.data_dir / "pool-access"

    @property
    def secrets_file(self) -> Path:
        return self.data_dir / "secrets.env"

    @property
    def node_url(self) -> str:
        return f"http://127.0.0.1:{self.node_port}"


def add(groups: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    serve = groups.add_parser(
        "serve",
        help="run edgeback on this machine (all-in-one)",
        description=(
            "Run the five services in one process: catalog, storage node, worker,\n"
            "scheduler and API, on an in-memory bus, with the catalog DB beside them and\n"
            "a local dedup pool `default`, which it registers in the catalog (activating\n"
            "its backup host) once the worker's first heartbeat is in. The embedded\n"
            "default for a one-node site; a fleet runs each service on its own\n"
            "(docs/all-in-one.md, docs/fleet.md)."
        ),
        epilog="example:\n  edgeback serve --all --data-dir /var/lib/edgeback --host-id bk-01",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    serve.add_argument("--all", action="store_true", required=True, help="every service")
    serve.add_argument(
        "--data-dir",
        type=Path,
        default=Path("var/edgeback"),
        help="secrets, pools, pool access files, catalog DB (default var/edgeback)",
    )
    serve.add_argument("--host-id", default="local", help="this backup host's id")
    serve.add_argument("--api-port", type=_port, default=8440, help="the API's port (default 8440)")
    serve.add_argument("--node-port", type=_port, default=8710, help="the storage node's port")
    serve.add_argument(
        "--mongo-url", help="an existing catalog DB (default: start one under --data-dir)"
    )
    serve.add_argument("--catalogdb-port", type=_port, default=0, help="0: any free port")


def _port(text: str) -> int:
    """A TCP port (0: any free one) or a usage error (exit 2) before anything is made."""
    if not text.isdigit() or not 0 <= int(text) <= 65535:
        raise argparse.ArgumentTypeError(f"not a TCP port (0-65535): {text!r}")
    return int(text)


def run(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    from edgeback_core import logging as edgeback_logging  # noqa: PLC0415
    from edgeback_core.lifecycle import run_service  # noqa: PLC0415

    site = Site(
        data_dir=args.data_dir.resolve(), host_id=args.host_id,
        api_port=args.api_port, node_port=args.node_port,
    )  # fmt: skip
    first = prepare(site)
    env = site_environ(site, environ)
    given_db = args.mongo_url or env.get("EDGEBACK_MONGO_URL")
    # every settings problem now, before anything starts (a bad one: exit 2, no traceback);
    # until the catalog DB started below has a URL, the catalog's is checked with a stand-in
    settings = load_settings({**env, "EDGEBACK_MONGO_URL": given_db or _DB_STAND_IN})
    edgeback_logging.configure(
        env.get("EDGEBACK_LOG_LEVEL", "INFO"), json=env.get("EDGEBACK_LOG_JSON") == "true",
        service="all",
    )  # fmt: skip
    if first:
        print(
            f"edgeback: first start: admin {env['EDGEBACK_API_BOOTSTRAP_ADMIN']!r}, password in "
            f"{site.secrets_file} (EDGEBACK_API_BOOTSTRAP_PASSWORD)",
            file=sys.stderr,
        )

    async def setup(runtime: ServiceRuntime) -> None:
        started = settings
        if not given_db:
            mongo_url = await runtime.stack.enter_async_context(
                catalog_db(site.data_dir / "catalogdb", args.catalogdb_port)
            )
            started = replace(settings, catalog=replace(settings.catalog, mongo_url=mongo_url))
        await start_services(runtime, site, env, started)

    return asyncio.run(run_service("all", setup, grace_s=float(env.get("EDGEBACK_GRACE_S", 30))))


def prepare(site: Site) -> bool:
    """Create the data directory's secrets, pool and pool access once; True the first time."""
    from edgeback_blocks.keys import write_secret_file  # noqa: PLC0415
    from edgeback_pools.pool_meta import create_pool  # noqa: PLC0415

    try:
        site.data_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(
            f"cannot make the data directory {site.data_dir}: {exc.strerror}"
        ) from exc
    first = not site.secrets_file.exists()
    if first:
        values = {
            "EDGEBACK_DEDUP_TOKEN": secrets.token_urlsafe(32),
            "EDGEBACK_DEDUP_ADMIN_TOKEN": secrets.token_urlsafe(32),
            "EDGEBACK_CATALOG_MASTER_KEY": _master_key(),
            "EDGEBACK_API_BOOTSTRAP_ADMIN": "admin",
            "EDGEBACK_API_BOOTSTRAP_PASSWORD": secrets.token_urlsafe(18),
        }
        _write_private(site.secrets_file, "".join(f"{k}={v}\n" for k, v in values.items()))
    site.pools.mkdir(exist_ok=True)
    if not (site.pools / POOL / "pool.json").exists():
        create_pool(site.pools, POOL, "dedup")
    site.pool_access.mkdir(mode=0o700, exist_ok=True)
    secret = site.pool_access / f"{POOL}.secret"
    if not secret.exists():
        write_secret_file(secret)
    token = read_secrets(site.secrets_file)["EDGEBACK_DEDUP_TOKEN"]
    _write_private(site.pool_access / f"{POOL}.token", token)
    key = site.pool_access / f"{POOL}.key"
    if not key.exists():
        shutil.copyfile(site.pools / POOL / "pool.key", key)
        key.chmod(0o600)
    return first


def _master_key() -> str:
    from edgeback_catalog.secretbox import SecretBox  # noqa: PLC0415

    return SecretBox.generate_key()


def _write_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(text)


def read_secrets(path: Path) -> dict[str, str]:
    pairs = (line.partition("=") for line in path.read_text().splitlines() if "=" in line)
    return {k.strip(): v.strip() for k, _, v in pairs}


def site_environ(site: Site, environ: Mapping[str, str]) -> dict[str, str]:
    """The services' settings for this site; ``environ`` wins over every default."""
    derived = {
        "EDGEBACK_DEDUP_DATA_DIR": str(site.pools),
        "EDGEBACK_DEDUP_PORT": str(site.node_port),
        "EDGEBACK_API_PORT": str(site.api_port),
        "EDGEBACK_WORKER_HOST_ID": site.host_id,
        "EDGEBACK_WORKER_DATA_DIR": str(site.data_dir),
        "EDGEBACK_WORKER_POOL_DIR": str(site.pool_access),
        **read_secrets(site.secrets_file),
    }
    return {**derived, **environ}


@contextlib.asynccontextmanager
async def catalog_db(folder: Path, port: int) -> AsyncIterator[str]:
    """The catalog DB server (``deploy/catalog-db/server.py`` on ``.venv-catalogdb``) as a
    child process on 127.0.0.1, stopped on exit; yields its URL."""
    python = REPO / ".venv-catalogdb" / "bin" / "python"
    server = REPO / "deploy" / "catalog-db" / "server.py"
    if not python.exists() or not server.exists():
        raise ConfigError(
            f"no catalog DB server at {python} {server}: run deploy/setup.sh, or pass --mongo-url"
        )
    await asyncio.to_thread(folder.mkdir, parents=True, exist_ok=True)
    port = port or _free_port()
    log = await asyncio.to_thread((folder / "server.log").open, "ab")
    child = await asyncio.create_subprocess_exec(
        str(python), str(server), str(port), str(folder / "catalog.sqlite"),
        stdout=log, stderr=asyncio.subprocess.STDOUT, stdin=asyncio.subprocess.DEVNULL,
        start_new_session=True,  # a ^C of the terminal must not stop it before the services
    )  # fmt: skip
    try:
        await _listening(child, port)
        yield f"mongodb://127.0.0.1:{port}/"
    finally:
        if child.returncode is None:
            child.terminate()
            try:
                await asyncio.wait_for(child.wait(), 10)
            except TimeoutError:
                child.kill()
                await child.wait()
        log.close()


async def _listening(child: asyncio.subprocess.Process, port: int) -> None:
    deadline = time.monotonic() + _DB_START_S
    while time.monotonic() < deadline:
        if child.returncode is not None:
            raise ConfigError(f"the catalog DB server exited ({child.returncode}): see its log")
        with contextlib.suppress(OSError):
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.close()
            return
        await asyncio.sleep(0.2)
    raise ConfigError(f"the catalog DB server did not listen on {port} within {_DB_START_S} s")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@dataclass(frozen=True, slots=True, kw_only=True)
class SiteSettings:
    """The five services' settings and the site's ``/healthz`` (``EDGEBACK_ALL_``)."""

    node: DedupSettings
    catalog: CatalogSettings
    worker: WorkerSettings
    scheduler: SchedulerSettings
    api: ApiSettings
    health: HealthSettings


def load_settings(env: Mapping[str, str]) -> SiteSettings:
    """Every service's settings from ``env``; one ``ConfigError`` naming every problem."""
    from edgeback_api.settings import ApiSettings  # noqa: PLC0415 - the services only when serving
    from edgeback_catalog.settings import CatalogSettings  # noqa: PLC0415
    from edgeback_core.service import HealthSettings  # noqa: PLC0415
    from edgeback_core.settings import ProblemCollector, load  # noqa: PLC0415
    from edgeback_dedup.settings import DedupSettings  # noqa: PLC0415
    from edgeback_scheduler.settings import SchedulerSettings  # noqa: PLC0415
    from edgeback_worker.settings import WorkerSettings  # noqa: PLC0415

    problems = ProblemCollector()
    settings = SiteSettings(
        node=problems.collect(lambda: DedupSettings.load(env)),
        catalog=problems.collect(lambda: CatalogSettings.load(env)),
        worker=problems.collect(lambda: WorkerSettings.load(env)),
        scheduler=problems.collect(lambda: SchedulerSettings.load(env)),
        api=problems.collect(lambda: ApiSettings.load(env)),
        health=problems.collect(lambda: load(HealthSettings, env, prefix="EDGEBACK_ALL_")),
    )
    problems.check()
    return settings


async def start_services(
    runtime: ServiceRuntime, site: Site, env: Mapping[str, str], settings: SiteSettings
) -> None:
    """Each service's own ``setup`` on its own in-memory bus client; ``/healthz`` of all."""
    from edgeback_api import main as api  # noqa: PLC0415 - the services only when serving
    from edgeback_catalog import main as catalog  # noqa: PLC0415
    from edgeback_cli.site_pool import node_url_of, register_site_pool  # noqa: PLC0415
    from edgeback_core.bus.memory import MemoryBroker, MemoryBus  # noqa: PLC0415
    from edgeback_core.bus.topology import Topology  # noqa: PLC0415
    from edgeback_core.messages.health import Ping, Pong, ping_rpc  # noqa: PLC0415
    from edgeback_core.service import open_health  # noqa: PLC0415
    from edgeback_dedup import main as dedup  # noqa: PLC0415
    from edgeback_scheduler import main as scheduler  # noqa: PLC0415
    from edgeback_worker import main as worker  # noqa: PLC0415

    broker = MemoryBroker()
    topology = Topology(prefix=env.get("EDGEBACK_BUS_PREFIX", ""))

    async def bus_of(service: str, user: str) -> MemoryBus:
        bus = await runtime.stack.enter_async_context(
            MemoryBus.open(broker, topology, runtime.inflight, user_id=user)
        )

        async def pong(request: Ping) -> Pong:
            return Pong(service=service, instance=f"all-{os.getpid()}", nonce=request.nonce)

        handle = await bus.serve_rpc(ping_rpc(service), pong, Ping)
        runtime.on_stop_intake(handle.stop)
        return bus

    await dedup.setup(runtime, settings.node)
    await catalog.setup(runtime, await bus_of("catalog", "catalog"), settings.catalog)
    host_user = f"host-{site.host_id}"
    await worker.setup(runtime, await bus_of("worker", host_user), settings.worker)
    await scheduler.setup(runtime, await bus_of("scheduler", "scheduler"), settings.scheduler)
    api_bus = await bus_of("api", "api")
    await api.setup(runtime, api_bus, settings.api)
    await open_health(runtime, settings.health)
    node, admin = settings.node, settings.api.bootstrap_admin
    node_url = node_url_of(node.host, node.port, tls=node.tls_cert_file is not None)
    if admin and node_url:
        registered = register_site_pool(
            api_bus,
            admin=admin,
            host_id=settings.worker.host_id or site.host_id,
            pool=POOL,
            node_url=node_url,
        )
        runtime.start_task(registered, name="all.site_pool")
