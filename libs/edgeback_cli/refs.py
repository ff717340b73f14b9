"""Parsing of what operators type: images, manifest references, pool locations, keys.

Pure except :func:`read_key`, :func:`is_manifest_file` (they look at files). Every bad
input becomes an ``InvalidInputError`` with a message that says what was expected.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from edgeback_blocks.ids import DIGEST_SIZE, PoolKey
from edgeback_core.errors import InvalidInputError

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
_RBD_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,250}")


@dataclass(frozen=True, slots=True)
class ImageRef:
    pool: str
    image: str
    snap: str | None = None

    @classmethod
    def parse(cls, text: str) -> ImageRef:
        """``POOL/IMAGE`` or ``POOL/IMAGE@SNAP``."""
        spec, _, snap = text.partition("@")
        pool, sep, image = spec.partition("/")
        names = [pool, image, *([snap] if snap else [])]
        if not sep or not all(_RBD_NAME.fullmatch(n) for n in names) or text.endswith("@"):
            raise InvalidInputError(
                f"image must look like POOL/IMAGE[@SNAP], got {text!r}", image=text
            )
        return cls(pool, image, snap or None)

    def __str__(self) -> str:
        return f"{self.pool}/{self.image}" + (f"@{self.snap}" if self.snap else "")


@dataclass(frozen=True, slots=True)
class ManifestRef:
    """A manifest in a pool (``vm/disk/version``) or a manifest file on this machine."""

    vm: str = ""
    disk: str = ""
    version: str = ""
    path: Path | None = None

    @classmethod
    def parse(cls, text: str) -> ManifestRef:
        path = Path(text)
        if path.is_file():
            return cls(path=path)
        parts = text.split("/")
        if len(parts) != 3 or not all(_NAME.fullmatch(part) for part in parts):
            raise InvalidInputError(
                f"manifest must be VM/DISK/VERSION in the pool or an existing file, got {text!r}",
                manifest=text,
            )
        return cls(vm=parts[0], disk=parts[1], version=parts[2])

    def __str__(self) -> str:
        return str(self.path) if self.path else f"{self.vm}/{self.disk}/{self.version}"


def check_name(value: str, what: str) -> str:
    if not _NAME.fullmatch(value):
        raise InvalidInputError(
            f"{what} must be letters, digits, '.', '_' or '-' (at most 128), got {value!r}"
        )
    return value


@dataclass(frozen=True, slots=True)
class PoolLocation:
    """A storage node's URL, or a pool directory opened in this process (no node)."""

    url: str = ""
    directory: Path | None = None

    @classmethod
    def parse(cls, text: str) -> PoolLocation:
        if text.startswith(("http://", "https://")):
            return cls(url=text.rstrip("/"))
        path = Path(text)
        if path.is_dir():
            return cls(directory=path)
        raise InvalidInputError(
            f"{text!r} is neither a storage node URL (http://...) nor a pool directory",
            location=text,
        )

    def __str__(self) -> str:
        return self.url or str(self.directory)


def read_key(path: str) -> PoolKey:
    """The pool's 32-byte chunk key from a file (a pool's ``pool.key``, raw or hex)."""
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise InvalidInputError(f"cannot read the pool key file {path}: {exc.strerror}") from exc
    if len(raw) != DIGEST_SIZE:
        try:
            raw = bytes.fromhex(raw.decode().strip())
        except (UnicodeDecodeError, ValueError):
            raw = b""
    if len(raw) != DIGEST_SIZE:
        raise InvalidInputError(f"{path} holds no 32-byte pool key (raw or 64 hex characters)")
    return PoolKey(raw)


def version_name(now: datetime) -> str:
    """A default version (and snapshot) name: UTC time and 64 random bits,
    ``20260102T030405Z-9f2c4e1a7b3d5c60``. Sorts by time; cannot be predicted, so no
    one can take the name a future backup will use."""
    return f"{now.strftime('%Y%m%dT%H%M%SZ')}-{secrets.token_hex(8)}"
