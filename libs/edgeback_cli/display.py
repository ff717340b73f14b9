"""Progress on stderr: a redrawn bar with rate and ETA on a terminal, plain lines otherwise.

Shared by the disk commands (the pipeline's ``Progress``) and ``edgeback run watch``
(a run's progress from the API); both only need the attributes of :class:`Progress`
below, so the API commands never import the data path (~0.25 s of start-up).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Protocol, TextIO


class Progress(Protocol):
    """What a progress line shows (``edgeback_blocks.pipeline.Progress`` has it all)."""

    @property
    def done_bytes(self) -> int: ...
    @property
    def total_bytes(self) -> int: ...
    @property
    def elapsed_s(self) -> float: ...
    @property
    def rate_bps(self) -> float: ...
    @property
    def final(self) -> bool: ...
    @property
    def fraction(self) -> float: ...
    @property
    def eta_s(self) -> float | None: ...


MB = 1_000_000


def human_bytes(value: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(value) < 1024 or unit == "TiB":
            return f"{value:.1f} {unit}" if unit != "B" else f"{int(value)} B"
        value /= 1024
    raise AssertionError("unreachable")


def clock_text(seconds: float | None) -> str:
    if seconds is None:
        return "--:--"
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes:02d}:{secs:02d}"


def progress_line(label: str, progress: Progress, *, width: int = 30, tail: str = "") -> str:
    """``label [#####.....] 42% 1.2 GiB/2.9 GiB 310.0 MB/s ETA 00:05 TAIL``."""
    filled = round(progress.fraction * width)
    bar = "#" * filled + "." * (width - filled)
    done, total = human_bytes(progress.done_bytes), human_bytes(progress.total_bytes)
    when = "in " + clock_text(progress.elapsed_s) if progress.final else (
        "ETA " + clock_text(progress.eta_s)
    )  # fmt: skip
    line = (
        f"{label} [{bar}] {progress.fraction:4.0%} {done}/{total} "
        f"{progress.rate_bps / MB:.1f} MB/s {when}"
    )
    return f"{line} {tail}" if tail else line


class ProgressDisplay:
    """A progress callback: redraws one line on a TTY, prints a line every ``every_s`` else."""

    def __init__(
        self,
        label: str,
        stream: TextIO,
        *,
        tty: bool | None = None,
        every_s: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._label = label
        self._stream = stream
        self._tty = stream.isatty() if tty is None else tty
        self._every_s = every_s
        self._clock = clock
        self._last = -every_s

    def __call__(self, progress: Progress, tail: str = "") -> None:
        line = progress_line(self._label, progress, tail=tail)
        if self._tty:
            end = "\n" if progress.final else ""
            self._stream.write(f"\r\x1b[K{line}{end}")
            self._stream.flush()
            return
        now = self._clock()
        if progress.final or now - self._last >= self._every_s:
            self._last = now
            print(line, file=self._stream, flush=True)
