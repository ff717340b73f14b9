"""The storage nodes' admin tokens, as the scheduler's maintenance uses them.

Deleting a restore point's manifests and collecting a pool's garbage need a node's
``admin`` right, which no backup host has. The scheduler reads them from a JSON file
named by ``EDGEBACK_SCHEDULER_NODE_TOKENS_FILE``, keyed by the node URL as jobs name it
(``PoolRef.node_url``)::

    {"nodes": {"https://node-1:8443": "<admin token of node-1>"}}

An https node's certificate must chain to ``EDGEBACK_SCHEDULER_NODE_CA_FILE`` (default:
the system's store). Tokens are wrapped so ``repr`` never shows them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

import msgspec

from edgeback_blocks.pool_client import PoolClient
from edgeback_core.errors import ConfigError, NotFoundError
from edgeback_core.messages.jobs import PoolRef
from edgeback_core.settings import Secret

GC_TIMEOUT_S: Final = 3600.0
"""GC answers when done; a large pool takes long (``docs/storage-node.md``)."""


class _NodeTokensFile(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    nodes: dict[str, str]


def _url(node_url: str) -> str:
    return node_url.rstrip("/")


@dataclass(frozen=True, slots=True, kw_only=True)
class NodeTokens:
    tokens: dict[str, Secret] = field(default_factory=dict)
    ca_file: str | None = None

    @classmethod
    def load(cls, path: str | None, ca_file: str | None) -> NodeTokens:
        """The tokens of ``path`` (none without a file: maintenance then skips every pool)."""
        if path is None:
            return cls(ca_file=ca_file)
        try:
            parsed = msgspec.json.decode(Path(path).read_bytes(), type=_NodeTokensFile)
        except (OSError, msgspec.DecodeError) as exc:
            raise ConfigError(f"node tokens file {path}: {exc}") from exc
        tokens = {_url(url): Secret(token) for url, token in parsed.nodes.items()}
        return cls(tokens=tokens, ca_file=ca_file)

    def admin_client(self, pool: PoolRef, *, timeout_s: float = GC_TIMEOUT_S) -> PoolClient:
        """A client of ``pool`` with its node's admin token; ``not_found`` if none is known."""
        token = self.tokens.get(_url(pool.node_url))
        if token is None:
            raise NotFoundError(f"no admin token for storage node {pool.node_url}")
        return PoolClient(
            pool.node_url,
            token.reveal(),
            pool.name,
            connections=4,
            timeout_s=timeout_s,
            ca_file=self.ca_file,
        )
