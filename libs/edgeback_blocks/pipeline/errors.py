"""Errors of the pipelines that the shared taxonomy does not have yet."""

from __future__ import annotations

from edgeback_core.errors import IntegrityError


class DiffMismatchError(IntegrityError):
    """Chunks a snapshot diff called unchanged differ from the parent manifest."""

    code = "diff_mismatch"
