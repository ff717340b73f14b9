"""structlog configuration shared by every process.

JSON lines on stdout (a console renderer when stdout is a TTY); stdlib loggers
(aio_pika, aiohttp.access, pymongo) go through the same processors so one process
writes one format. Call :func:`configure` once, from a composition root.
"""

from __future__ import annotations

import logging
import sys
from typing import Literal, TextIO

import structlog

_NOISY = {"aio_pika": logging.WARNING, "aiormq": logging.WARNING, "pymongo": logging.WARNING}


class _LiveStreamHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever ``sys.stdout``/``sys.stderr`` is when a record is emitted.

    A handler holding the stream object seen at configuration time keeps writing to it
    after it was replaced and closed (pytest's capture does that between tests).
    """

    def __init__(self, name: Literal["stdout", "stderr"]) -> None:
        self._stream_name = name
        super().__init__()

    @property
    def stream(self) -> TextIO:
        stream: TextIO = getattr(sys, self._stream_name)
        return stream

    @stream.setter
    def stream(self, _value: object) -> None:
        """Ignored: the stream is looked up at every emit."""


def configure(
    level: str = "INFO",
    *,
    json: bool | None = None,
    service: str | None = None,
    stream: Literal["stdout", "stderr"] = "stdout",
) -> None:
    """Configure structlog and the stdlib root logger; idempotent. Services log on
    stdout; the CLI logs on stderr (its stdout carries results)."""
    use_json = (not getattr(sys, stream).isatty()) if json is None else json
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
        else structlog.dev.ConsoleRenderer(colors=getattr(sys, stream).isatty())
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
    handler = _LiveStreamHandler(stream)
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
