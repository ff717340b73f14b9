"""Settings of the storage node, from ``EDGEBACK_DEDUP_*`` environment variables."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from edgeback_core.errors import ConfigError
from edgeback_core.settings import Secret, load

PREFIX = "EDGEBACK_DEDUP_"


@dataclass(frozen=True, slots=True, kw_only=True)
class DedupSettings:
    data_dir: str
    """Directory holding one sub-directory per pool."""
    token: Secret
    """Bearer token of the data API (workers, CLI)."""
    admin_token: Secret | None = None
    """Bearer token allowed to create pools over HTTP; unset disables it."""
    host: str = "127.0.0.1"
    port: int = 8710
    threads: int = 4
    """Threads for file I/O and upload verification."""
    max_manifest_bytes: int = 256 * 1024 * 1024

    @property
    def data_path(self) -> Path:
        return Path(self.data_dir)

    @classmethod
    def load(cls, environ: Mapping[str, str]) -> DedupSettings:
        settings = load(cls, environ, prefix=PREFIX)
        problems = []
        if settings.threads < 1:
            problems.append(f"{PREFIX}THREADS: must be at least 1")
        if not 0 <= settings.port <= 65535:
            problems.append(f"{PREFIX}PORT: out of range")
        if len(settings.token.reveal()) < 16:
            problems.append(f"{PREFIX}TOKEN: use at least 16 characters")
        if problems:
            raise ConfigError("invalid settings: " + "; ".join(problems), problems=problems)
        return settings
