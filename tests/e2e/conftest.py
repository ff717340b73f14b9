"""Fixtures the end-to-end tests share with the integration tests: the dev cluster's
RBD pool and a factory of scratch images (restores are compared there)."""

from tests.integration.conftest import new_image, pool

__all__ = ["new_image", "pool"]
