"""Searching logs and answers for secrets: each secret in the forms it could be printed in.

A test first finds each secret where it is known to be (the file that holds it), so
its search for leaks is one that can fail."""

from __future__ import annotations

import base64
from collections.abc import Iterable


def binary_forms(secret: bytes) -> list[str]:
    """A binary secret as raw text, hex (both cases) and base64 (both alphabets)."""
    return [
        secret.decode("latin-1"), secret.hex(), secret.hex().upper(),
        base64.b64encode(secret).decode().rstrip("="),
        base64.urlsafe_b64encode(secret).decode().rstrip("="),
    ]  # fmt: skip


def leaks(secrets: dict[str, list[str]], texts: Iterable[str]) -> set[str]:
    """The names of the secrets some text contains."""
    return {
        name for text in texts for name, forms in secrets.items() if any(f in text for f in forms)
    }
