"""The RBD name templates now live in ``edgeback_platform.templates`` (the worker
validates them too); this name stays for the catalog modules that import it."""

from edgeback_platform.templates import RbdTemplates, validate_template

__all__ = ["RbdTemplates", "validate_template"]
