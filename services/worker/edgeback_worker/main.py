"""Composition root of the worker service: bus, ping and health for now."""

from __future__ import annotations

from edgeback_core.service import serve


def main() -> None:
    serve("worker")
