"""Settings of the API service (besides the common ones of every service), under
``EDGEBACK_API_``: where it listens (``HOST``, ``PORT``), TLS (``TLS_CERT_FILE`` and
``TLS_KEY_FILE``, both or neither), how long a login lasts (``SESSION_TTL_S``), how
long it waits for the catalog (``RPC_TIMEOUT_S``; checks that reach a platform wait
``SLOW_RPC_TIMEOUT_S``), progress streams (``LIVE_BUFFER`` events kept per client,
a ``LIVE_HEARTBEAT_S`` keep-alive, the stream's token looked at again every
``LIVE_TOKEN_RECHECK_S``), and the first admin (``BOOTSTRAP_ADMIN`` with
``BOOTSTRAP_PASSWORD``: created at start unless an admin exists)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, ClassVar, Self

from edgeback_core.settings import POSITIVE, ProblemCollector, Rule, Secret, Settings, load


def _port_problem(port: int) -> str | None:
    return None if 0 <= port <= 65535 else "must be a TCP port (0-65535; 0 = any free one)"


@dataclass(frozen=True, slots=True, kw_only=True)
class ApiSettings(Settings):
    PREFIX: ClassVar[str] = "EDGEBACK_API_"

    host: str = "127.0.0.1"
    port: Annotated[int, Rule(_port_problem)] = 8440
    tls_cert_file: str | None = None
    tls_key_file: str | None = None
    session_ttl_s: Annotated[float, POSITIVE] = 8 * 3600.0
    rpc_timeout_s: Annotated[float, POSITIVE] = 10.0
    slow_rpc_timeout_s: Annotated[float, POSITIVE] = 60.0
    max_body_bytes: Annotated[int, POSITIVE] = 1 << 20
    live_buffer: Annotated[int, POSITIVE] = 256
    live_heartbeat_s: Annotated[float, POSITIVE] = 15.0
    live_token_recheck_s: Annotated[float, POSITIVE] = 30.0
    bootstrap_admin: str | None = None
    bootstrap_password: Secret | None = None

    @classmethod
    def load(cls, environ: Mapping[str, str]) -> Self:
        """Each field by its rules and the pairs across fields, all problems in one error."""
        collector = ProblemCollector()
        settings = collector.collect(lambda: load(cls, environ, prefix=cls.PREFIX))
        for first, second in _PAIRS:
            given = [bool(environ.get(cls.PREFIX + name)) for name in (first, second)]
            if given[0] != given[1]:
                collector.problems.append(f"{cls.PREFIX}{first} and {second}: set both or neither")
        collector.check()
        return settings


_PAIRS = (("TLS_CERT_FILE", "TLS_KEY_FILE"), ("BOOTSTRAP_ADMIN", "BOOTSTRAP_PASSWORD"))
