"""Job scripts on the backup host: the precondition, the pre-script and the post-script.

A script is a command line run without a shell (``shlex.split``), in its own process
group so a timeout kills everything it started, with ``EDGEBACK_*`` variables that
describe the run added to the worker's environment. Its output (stdout and stderr
interleaved) is kept up to ``output_limit`` bytes, the tail wins, for the run's log.
What a non-zero exit means is the caller's business: a failed precondition aborts the
run before anything is touched, a failed pre-script fails the VM, a failed post-script
is a warning.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shlex
import signal
import time
from collections.abc import Mapping
from dataclasses import dataclass

import structlog

from edgeback_core.errors import InvalidInputError
from edgeback_core.messages.jobs import Script as JobScript

log = structlog.get_logger(__name__)

OUTPUT_LIMIT = 64 * 1024


@dataclass(frozen=True, slots=True, kw_only=True)
class Script:
    command: str
    timeout_s: float = 300.0

    def argv(self) -> list[str]:
        try:
            argv = shlex.split(self.command)
        except ValueError as exc:
            raise InvalidInputError(f"script command cannot be parsed: {exc}") from exc
        if not argv:
            raise InvalidInputError("script command is empty")
        return argv


@dataclass(frozen=True, slots=True, kw_only=True)
class ScriptResult:
    exit_code: int | None
    """None when the script was killed at its timeout."""
    output: str
    duration_s: float
    truncated: bool = False

    @property
    def ok(self) -> bool:
        return self.exit_code == 0

    @property
    def timed_out(self) -> bool:
        return self.exit_code is None


def run_environment(run: Mapping[str, str]) -> dict[str, str]:
    """``EDGEBACK_<NAME>`` for each item of ``run`` (run id, job id, phase, VM, ...)."""
    return {f"EDGEBACK_{name.upper()}": value for name, value in run.items()}


async def run_script(
    script: Script, run: Mapping[str, str], *, output_limit: int = OUTPUT_LIMIT
) -> ScriptResult:
    """Run ``script`` to completion or to its timeout; never raises for its exit status."""
    argv = script.argv()
    started = time.monotonic()
    try:
        process = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            env={**os.environ, **run_environment(run)},
            start_new_session=True,
        )
    except OSError as exc:
        raise InvalidInputError(f"script cannot start: {exc}", command=script.command) from exc
    assert process.stdout is not None
    tail = bytearray()
    dropped = False
    try:
        async with asyncio.timeout(script.timeout_s):
            while chunk := await process.stdout.read(65536):
                tail += chunk
                if len(tail) > output_limit:
                    del tail[: len(tail) - output_limit]
                    dropped = True
            exit_code: int | None = await process.wait()
    except TimeoutError:
        exit_code = None
        log.warning("script.timed_out", command=script.command, timeout_s=script.timeout_s)
    finally:
        await _reap(process)
    return ScriptResult(
        exit_code=exit_code,
        output=tail.decode(errors="replace"),
        duration_s=round(time.monotonic() - started, 3),
        truncated=dropped,
    )


async def _reap(process: asyncio.subprocess.Process) -> None:
    """Kill the script's whole process group if it is still there, then wait for it."""
    if process.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
    await process.wait()


async def run_job_script(script: JobScript, run: Mapping[str, str]) -> ScriptResult:
    """Run one of a job's scripts and put its outcome and output in the log."""
    result = await run_script(Script(command=script.command, timeout_s=script.timeout_s), run)
    log.info(
        "script.ran", **run, exit_code=result.exit_code, output=result.output,
        duration_s=result.duration_s,
    )  # fmt: skip
    return result
