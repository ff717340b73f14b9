"""Settings of the storage node, from ``EDGEBACK_DEDUP_*`` environment variables."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, ClassVar

from edgeback_core.settings import Rule, Secret, Settings, at_least, between

_MIN_TOKEN = 16
LONG_TOKEN = Rule(
    lambda token: (
        None if len(token.reveal()) >= _MIN_TOKEN else f"use at least {_MIN_TOKEN} characters"
    )
)


@dataclass(frozen=True, slots=True, kw_only=True)
class DedupSettings(Settings):
    PREFIX: ClassVar[str] = "EDGEBACK_DEDUP_"

    data_dir: str
    """Directory holding one sub-directory per pool."""
    token: Annotated[Secret, LONG_TOKEN]
    """Bearer token of the data API (workers, CLI)."""
    admin_token: Secret | None = None
    """Bearer token allowed to create pools over HTTP; unset disables it."""
    host: str = "127.0.0.1"
    port: Annotated[int, between(0, 65535)] = 8710
    threads: Annotated[int, at_least(1)] = 4
    """Threads for file I/O and upload verification."""
    max_manifest_bytes: int = 256 * 1024 * 1024

    @property
    def data_path(self) -> Path:
        return Path(self.data_dir)
