"""Job scripts: exit status, run environment, bounded output, timeouts that kill the
whole process group (real subprocesses: no sockets, a few hundred milliseconds)."""

from __future__ import annotations

import asyncio
import os
import sys
import time
from pathlib import Path

import pytest

from edgeback_core.errors import InvalidInputError
from edgeback_worker.scripts import Script, run_script

PY = sys.executable


async def test_exit_status_and_output_are_reported() -> None:
    ok = await run_script(Script(command="echo hello"), {})
    assert ok.ok and ok.exit_code == 0 and ok.output == "hello\n"
    failed = await run_script(Script(command=f"{PY} -c 'import sys; sys.exit(3)'"), {})
    assert not failed.ok and failed.exit_code == 3 and not failed.timed_out


async def test_the_script_sees_the_run_in_its_environment() -> None:
    code = "import os; print(os.environ['EDGEBACK_RUN_ID'], os.environ['EDGEBACK_PHASE'])"
    result = await run_script(Script(command=f"{PY} -c {code!r}"), {"run_id": "r1", "phase": "pre"})
    assert result.output.split() == ["r1", "pre"]


async def test_stderr_is_kept_and_only_the_tail_of_long_output() -> None:
    code = "import sys; sys.stderr.write('E' * 1000); print('x' * 5000 + 'END')"
    result = await run_script(Script(command=f"{PY} -c {code!r}"), {}, output_limit=100)
    assert result.truncated
    assert len(result.output) == 100 and result.output.endswith("END\n")


async def test_a_timeout_kills_the_script_and_what_it_started(tmp_path: Path) -> None:
    pid_file = tmp_path / "child.pid"
    # the script starts a grandchild that would outlive a plain kill of the script
    code = (
        "import subprocess, sys, time; "
        f"p = subprocess.Popen([{PY!r}, '-c', 'import time; time.sleep(60)']); "
        f"open({str(pid_file)!r}, 'w').write(str(p.pid)); time.sleep(60)"
    )
    started = time.monotonic()
    result = await run_script(Script(command=f"{PY} -c {code!r}", timeout_s=1.0), {})
    assert result.timed_out and result.exit_code is None
    assert time.monotonic() - started < 10
    grandchild = int(pid_file.read_text())
    for _ in range(50):
        if not _alive(grandchild):
            break
        await asyncio.sleep(0.02)
    assert not _alive(grandchild)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as stat:  # a zombie is dead too
        return stat.read().split()[2] != "Z"


@pytest.mark.parametrize("command", ["", "   ", "echo 'unclosed"])
async def test_an_unparsable_or_empty_command_is_refused(command: str) -> None:
    with pytest.raises(InvalidInputError):
        await run_script(Script(command=command), {})


async def test_a_missing_program_is_refused_with_its_command() -> None:
    with pytest.raises(InvalidInputError, match="cannot start"):
        await run_script(Script(command="/nonexistent/edgeback-script"), {})
