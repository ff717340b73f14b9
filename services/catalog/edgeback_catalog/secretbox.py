"""Encryption at rest of secrets stored in the catalog (platform keys and the like).

AES-256-GCM with a master key from settings (32 bytes, base64). Each sealed value is
``v1:<base64(nonce || ciphertext+tag)>`` with a random 96-bit nonce; the associated
data binds it to where it is stored (collection, document id, field) so a ciphertext
copied into another document or field does not open. Reads of the catalog show a
:func:`mask` of a key, never the key.
"""

from __future__ import annotations

import base64
import binascii
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from edgeback_core.errors import ConfigError, IntegrityError
from edgeback_core.settings import Secret

_VERSION = "v1:"
_NONCE_BYTES = 12
_KEY_BYTES = 32


class SecretBox:
    """Seals and opens short secrets with the catalog's master key."""

    def __init__(self, key: bytes) -> None:
        if len(key) != _KEY_BYTES:
            raise ConfigError(f"the master key must be {_KEY_BYTES} bytes, got {len(key)}")
        self._aead = AESGCM(key)

    @classmethod
    def from_setting(cls, master_key: Secret) -> SecretBox:
        """Build from the base64 text of ``EDGEBACK_CATALOG_MASTER_KEY``."""
        try:
            key = base64.b64decode(master_key.reveal(), validate=True)
        except binascii.Error as exc:
            raise ConfigError("the master key is not valid base64") from exc
        return cls(key)

    @staticmethod
    def generate_key() -> str:
        """A fresh master key in the form the setting expects."""
        return base64.b64encode(os.urandom(_KEY_BYTES)).decode()

    def seal(self, plaintext: str, *, context: str) -> str:
        nonce = os.urandom(_NONCE_BYTES)
        sealed = self._aead.encrypt(nonce, plaintext.encode(), context.encode())
        return _VERSION + base64.b64encode(nonce + sealed).decode()

    def open(self, sealed: str, *, context: str) -> str:
        if not sealed.startswith(_VERSION):
            raise IntegrityError("sealed secret has an unknown format", context=context)
        try:
            raw = base64.b64decode(sealed[len(_VERSION) :], validate=True)
            nonce, body = raw[:_NONCE_BYTES], raw[_NONCE_BYTES:]
            return self._aead.decrypt(nonce, body, context.encode()).decode()
        except (binascii.Error, InvalidTag, ValueError) as exc:
            # Wrong master key, a tampered value or one copied from another place.
            raise IntegrityError("sealed secret does not open", context=context) from exc


def mask(secret: str) -> str:
    """What a read shows of an access key: its first 2 and last 4 characters."""
    if len(secret) <= 8:
        return "…" + secret[-2:] if len(secret) > 4 else "…"
    return f"{secret[:2]}…{secret[-4:]}"
