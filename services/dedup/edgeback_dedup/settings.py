"""Settings of the storage node, from ``EDGEBACK_DEDUP_*`` environment variables."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from edgeback_core.errors import ConfigError
from edgeback_core.settings import Secret, load
from edgeback_dedup.tokens import MIN_TOKEN_LENGTH

PREFIX = "EDGEBACK_DEDUP_"


@dataclass(frozen=True, slots=True, kw_only=True)
class DedupSettings:
    data_dir: str
    """Directory holding one sub-directory per pool."""
    tokens_file: str | None = None
    """JSON file of token hashes bound to pools and rights (``edgeback_dedup.tokens``)."""
    token: Secret | None = None
    """A token that may read and write every pool (a one-host site); prefer ``tokens_file``."""
    admin_token: Secret | None = None
    """A token with every right on every pool, incl. creating pools over HTTP."""
    host: str = "127.0.0.1"
    port: int = 8710
    tls_cert_file: str | None = None
    """PEM certificate chain: with ``tls_key_file``, the node speaks only HTTPS."""
    tls_key_file: str | None = None
    threads: int = 4
    """Threads for file I/O and upload verification."""
    max_manifest_bytes: int = 256 * 1024 * 1024
    body_bytes_in_flight: int = 256 * 1024 * 1024
    """Upload bodies (chunks, manifests, checkpoints) held at once; the rest wait."""
    body_wait_s: float = 10.0
    """Longest wait for room under ``body_bytes_in_flight``, then 503 + Retry-After."""
    body_read_timeout_s: float = 30.0
    """Longest wait for the next bytes of a request body, then 408."""

    @property
    def data_path(self) -> Path:
        return Path(self.data_dir)

    @property
    def tls(self) -> bool:
        return self.tls_cert_file is not None

    @classmethod
    def load(cls, environ: Mapping[str, str]) -> DedupSettings:
        settings = load(cls, environ, prefix=PREFIX)
        problems = settings.problems()
        if problems:
            raise ConfigError("invalid settings: " + "; ".join(problems), problems=problems)
        return settings

    def problems(self) -> list[str]:
        """What is wrong with these settings, each as one line."""
        problems = []
        if self.threads < 1:
            problems.append(f"{PREFIX}THREADS: must be at least 1")
        if not 0 <= self.port <= 65535:
            problems.append(f"{PREFIX}PORT: out of range")
        if self.token is None and self.tokens_file is None:
            problems.append(f"{PREFIX}TOKENS_FILE or {PREFIX}TOKEN: one is required")
        for name, secret in (("TOKEN", self.token), ("ADMIN_TOKEN", self.admin_token)):
            if secret is not None and len(secret.reveal()) < MIN_TOKEN_LENGTH:
                problems.append(f"{PREFIX}{name}: use at least {MIN_TOKEN_LENGTH} characters")
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            problems.append(f"{PREFIX}TLS_CERT_FILE and TLS_KEY_FILE: set both or neither")
        if self.body_bytes_in_flight < 1 or self.body_wait_s < 0 or self.body_read_timeout_s <= 0:
            problems.append(f"{PREFIX}BODY_*: must be positive")
        return problems
