"""structlog configuration shared by every process.

JSON lines on stdout (a console renderer when stdout is a TTY); stdlib loggers
(aio_pika, aiohttp.access, pymongo) go through the same processors so one process
writes one format. Call :func:`configure` once, from a composition root.
"""

from __future__ import annotations

import logging
import sys

import structlog

_NOISY = {"aio_pika": logging.WARNING, "aiormq": logging.WARNING, "pymongo": logging.WARNING}


def configure(level: str = "INFO", *, json: bool | None = None, service: str | None = None) -> None:
    """Configure structlog and the stdlib root logger; idempotent."""
    use_json = (not sys.stdout.isatty()) if json is None else json
    timestamper = structlog.processors.TimeStamper(fmt="iso", utc=True)
    shared: list[structlog.types.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        timestamper,
    ]
    if service:
        shared.append(_add_service(service))
    renderer: structlog.types.Processor = (
        structlog.processors.JSONRenderer()
        if use_json
        else structlog.dev.ConsoleRenderer(colors=sys.stdout.isatty())
    )
    structlog.configure(
        processors=[
            *shared,
            structlog.processors.StackInfoRenderer(),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            renderer,
        ],
    )
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name, noisy_level in _NOISY.items():
        logging.getLogger(name).setLevel(max(noisy_level, root.level))


def _add_service(service: str) -> structlog.types.Processor:
    def add(
        _logger: object, _method: str, event_dict: structlog.types.EventDict
    ) -> structlog.types.EventDict:
        event_dict.setdefault("service", service)
        return event_dict

    return add
