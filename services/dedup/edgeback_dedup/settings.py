"""Settings of the storage node, from ``EDGEBACK_DEDUP_*`` environment variables."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, ClassVar, Self

from edgeback_core.settings import (
    POSITIVE,
    ProblemCollector,
    Rule,
    Secret,
    Settings,
    at_least,
    between,
    load,
)
from edgeback_dedup.tokens import MIN_TOKEN_LENGTH
from edgeback_pools.pool import DEFAULT_PIN_TTL_S

LONG_TOKEN = Rule(
    lambda token: (
        None
        if len(token.reveal()) >= MIN_TOKEN_LENGTH
        else f"use at least {MIN_TOKEN_LENGTH} characters"
    )
)


@dataclass(frozen=True, slots=True, kw_only=True)
class DedupSettings(Settings):
    PREFIX: ClassVar[str] = "EDGEBACK_DEDUP_"

    data_dir: str
    """Directory holding one sub-directory per pool."""
    tokens_file: str | None = None
    """JSON file of token hashes bound to pools and rights (``edgeback_dedup.tokens``)."""
    token: Annotated[Secret | None, LONG_TOKEN] = None
    """A token that may read and write every pool (a one-host site); prefer ``tokens_file``."""
    admin_token: Annotated[Secret | None, LONG_TOKEN] = None
    """A token with every right on every pool, incl. creating pools over HTTP."""
    host: str = "127.0.0.1"
    port: Annotated[int, between(0, 65535)] = 8710
    tls_cert_file: str | None = None
    """PEM certificate chain: with ``tls_key_file``, the node speaks only HTTPS."""
    tls_key_file: str | None = None
    threads: Annotated[int, at_least(1)] = 4
    """Threads for file I/O and upload verification."""
    max_manifest_bytes: Annotated[int, POSITIVE] = 256 * 1024 * 1024
    body_bytes_in_flight: Annotated[int, POSITIVE] = 256 * 1024 * 1024
    """Upload bodies (chunks, manifests, checkpoints) held at once; the rest wait."""
    body_wait_s: Annotated[float, at_least(0)] = 10.0
    """Longest wait for room under ``body_bytes_in_flight``, then 503 + Retry-After."""
    body_read_timeout_s: Annotated[float, POSITIVE] = 30.0
    """Longest wait for the next bytes of a request body, then 408."""
    gc_grace_s: Annotated[float, at_least(0)] = 6 * 3600.0
    """GC keeps unreferenced chunk files younger than this (a request may say otherwise)."""
    pin_ttl_s: Annotated[float, POSITIVE] = DEFAULT_PIN_TTL_S
    """GC keeps chunks answered present or uploaded within this window."""
    image_streams: Annotated[int, at_least(1)] = 16
    """Disk-image reads (capability URLs) served at once; the others wait their turn."""
    image_cache_bytes: Annotated[int, at_least(0)] = 256 * 1024 * 1024
    """Decoded, verified chunks kept for disk-image reads (least recently used out)."""
    image_bytes_per_s: Annotated[float, at_least(0)] = 0.0
    """Throughput limit of all disk-image reads together; 0: none."""
    capability_max_ttl_s: Annotated[float, POSITIVE] = 7 * 24 * 3600.0
    """Longest lifetime a disk-image capability may be given."""

    @property
    def data_path(self) -> Path:
        return Path(self.data_dir)

    @property
    def tls(self) -> bool:
        return self.tls_cert_file is not None

    @classmethod
    def load(cls, environ: Mapping[str, str]) -> Self:
        """Each field by its rules and the rules across fields, all problems in one error."""
        collector = ProblemCollector()
        settings = collector.collect(lambda: load(cls, environ, prefix=cls.PREFIX))
        given = {name for name in _PAIRED if environ.get(cls.PREFIX + name.upper())}
        collector.problems += _cross_field(given, cls.PREFIX)
        collector.check()
        return settings

    def problems(self) -> list[str]:
        """What is wrong across fields, each as one line."""
        return _cross_field({n for n in _PAIRED if getattr(self, n) is not None}, self.PREFIX)


_PAIRED = ("token", "tokens_file", "tls_cert_file", "tls_key_file")


def _cross_field(given: set[str], prefix: str) -> list[str]:
    """The rules across fields, from which of :data:`_PAIRED` are set."""
    problems = []
    if not given & {"token", "tokens_file"}:
        problems.append(f"{prefix}TOKENS_FILE or {prefix}TOKEN: one is required")
    if len(given & {"tls_cert_file", "tls_key_file"}) == 1:
        problems.append(f"{prefix}TLS_CERT_FILE and TLS_KEY_FILE: set both or neither")
    return problems
