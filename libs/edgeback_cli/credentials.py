"""Where the CLI keeps its session: the API's address and the token ``edgeback login``
got, in ``$XDG_CONFIG_HOME/edgeback/session.json`` (default ``~/.config``), mode 0600.

``EDGEBACK_API_TOKEN`` (an API token for automation) takes precedence over the file;
``EDGEBACK_TOKEN`` stays the storage node's token of ``edgeback disk``, so a node
token is never sent to the API. A saved token is only sent to the API it came from.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import msgspec

from edgeback_cli.apiclient import DEFAULT_URL, normalize_url
from edgeback_core.errors import ConfigError, UnauthenticatedError

TOKEN_ENV = "EDGEBACK_API_TOKEN"  # noqa: S105 - the variable's name
URL_ENV = "EDGEBACK_API_URL"
CA_ENV = "EDGEBACK_API_CA_FILE"
FILE_NAME = "session.json"


class Saved(msgspec.Struct, frozen=True, kw_only=True):
    api_url: str
    token: str
    user: str
    expires_at: str | None = None
    ca_file: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Target:
    """The API a command talks to, and with which token."""

    api_url: str
    token: str | None
    ca_file: str | None

    def need_token(self) -> str:
        if not self.token:
            raise UnauthenticatedError(
                f"not signed in to {self.api_url}: run `edgeback login` or set {TOKEN_ENV}"
            )
        return self.token


def session_path(environ: Mapping[str, str]) -> Path:
    base = environ.get("XDG_CONFIG_HOME") or str(Path(environ.get("HOME") or "~") / ".config")
    return Path(base).expanduser() / "edgeback" / FILE_NAME


def load(path: Path) -> Saved | None:
    """The saved session; refused when others may read the file (like ssh keys)."""
    try:
        mode = path.stat().st_mode
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from exc
    if mode & 0o077:
        raise ConfigError(f"{path} is readable by others: chmod 600 it or log in again")
    try:
        return msgspec.json.decode(data, type=Saved)
    except msgspec.DecodeError as exc:
        raise ConfigError(f"{path} is not a session file: log in again") from exc


def save(path: Path, saved: Saved) -> None:
    """Write ``saved`` readable by its owner only (created 0600, never widened)."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    staging = path.with_name(f".{path.name}.{os.getpid()}")
    fd = os.open(staging, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, msgspec.json.encode(saved))
        os.fsync(fd)
    finally:
        os.close(fd)
    staging.replace(path)


def remove(path: Path) -> bool:
    try:
        path.unlink()
    except FileNotFoundError:
        return False
    return True


def target(
    environ: Mapping[str, str], *, api: str | None, ca_file: str | None, saved: Saved | None
) -> Target:
    """The API from ``--api``, else ``EDGEBACK_API_URL``, else the saved session's, else
    the local default; the token from ``EDGEBACK_API_TOKEN``, else the saved one if it
    belongs to that API."""
    url = normalize_url(api or environ.get(URL_ENV) or (saved.api_url if saved else DEFAULT_URL))
    own = saved if saved is not None and normalize_url(saved.api_url) == url else None
    token = environ.get(TOKEN_ENV) or (own.token if own else None)
    ca = ca_file or environ.get(CA_ENV) or (own.ca_file if own else None)
    return Target(api_url=url, token=token, ca_file=ca)
