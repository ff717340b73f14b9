"""``edgeback restore ...`` and ``edgeback run ...`` over a real API (in-process, aiohttp's
test server on a loopback port) with the catalog on the catalog DB over RabbitMQ: the
CLI browses restore points, creates a restore and starts it with the code it shows
(typed on stdin), refuses a wrong one with exit 2, follows the restore live with a
progress bar until it is stopped, and shows and lists it."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from tests.integration.test_api_restores import (
    HOST,
    World,
    end_run,
    setup_points,
    started_run,
    world,
)

from edgeback_cli.main import EXIT_INPUT
from edgeback_core.bus.topology import RESTORE_PROGRESS, RESTORE_STARTED, RUN_PROGRESS
from edgeback_core.messages import restores as r
from edgeback_core.messages.runs import RunProgress, VmRef

pytestmark = pytest.mark.integration
__all__ = ["world"]


class Cli:
    """``edgeback ARGS`` as a process (its stdout its own: the in-process API logs to
    this one), signed in with the admin's token."""

    def __init__(self, world: World, tmp_path: Path) -> None:
        self._env = {
            **os.environ,
            "XDG_CONFIG_HOME": str(tmp_path),
            "EDGEBACK_API_TOKEN": world.admin,
            "EDGEBACK_API_URL": str(world.client.make_url("/")),
        }

    async def __call__(self, *args: str, stdin: str = "") -> tuple[int, str, str]:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-c", "from edgeback_cli.main import main; main()", *args,
            env=self._env, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        out, err = await proc.communicate(stdin.encode())
        assert proc.returncode is not None
        return proc.returncode, out.decode(), err.decode()


async def test_restore_commands_over_the_api(world: World, tmp_path: Path) -> None:
    cli = Cli(world, tmp_path)
    newest, oldest = await setup_points(world)
    code, out, _ = await cli("restore", "points", "--vm", "VM-A", "-o", "json")
    assert code == 0 and [p["backup_set_id"] for p in json.loads(out)] == [newest, oldest]

    code, _, err = await cli("restore", "create", "--point", newest, "--host", HOST)
    assert code == EXIT_INPUT and "restore it to a new path" in err  # imported: no original
    home = ("--to-vm", f"{world.platform}/vm-a", "--map", "d0=d0")
    code, out, _ = await cli(
        "restore", "create", "--point", newest, *home, "--host", HOST, "--no-start", "-o", "json"
    )
    created = json.loads(out)
    rid, shown = created["restore"]["id"], created["verification_code"]
    code, _, err = await cli("restore", "start", rid, "--code", "AAAA-AAAA")
    assert code == EXIT_INPUT and "[verification_code_wrong]" in err
    code, _, err = await cli("restore", "create", "--point", oldest, *home, "--host", HOST)
    assert code == EXIT_INPUT and "no verification code typed" in err
    assert "verification code: " in err  # shown, then asked for

    code, out, _ = await cli("restore", "start", rid, stdin=f"{shown[:4]}-{shown[4:]}\n")
    assert code == 0 and "queued" in out

    watching = asyncio.create_task(cli("restore", "watch", rid))
    now = datetime.now(UTC)
    started = r.RestoreStarted(restore_id=rid, host_id=HOST, vm_count=1, requested_by="r", at=now)
    await world.bus.publish("events", RESTORE_STARTED, started, message_id=f"s-{rid}")
    progress = r.RestoreProgress(
        restore_id=rid, backup_set_id=newest, target_vm=VmRef(platform_id="p", vm_id="vm-a"),
        disk_id="d0", bytes_done=1 << 29, bytes_total=1 << 30, rate_bps=1e8, at=now,
    )  # fmt: skip
    await world.bus.publish("events", RESTORE_PROGRESS, progress, message_id=f"p-{rid}")
    await world.ok("POST", f"/restores/{rid}/stop")
    async with asyncio.timeout(30):
        code, out, err = await watching
    assert code == 1, err  # it ended, but not succeeded
    assert f"restore {rid[:12]}" in err and "100%" in err
    assert "cancelled" in out

    code, out, _ = await cli("restore", "list")
    assert code == 0 and rid in out
    code, out, _ = await cli("restore", "list", "--host", HOST, "--point", newest, "-o", "json")
    assert [x["id"] for x in json.loads(out)] == [rid]
    code, out, _ = await cli("restore", "list", "--host", "elsewhere", "-o", "json")
    assert (code, json.loads(out)) == (0, [])
    code, out, _ = await cli("restore", "show", rid, "-o", "json")
    assert json.loads(out)["state"] == "cancelled"
    code, out, _ = await cli("restore", "events", rid)
    assert code == 0 and "RestoreFinished" in out
    code, _, err = await cli("restore", "stop", rid)
    assert code == EXIT_INPUT and "invalid_transition" in err


async def test_run_watch_follows_a_run_until_it_is_stopped(world: World, tmp_path: Path) -> None:
    cli = Cli(world, tmp_path)
    job_id, run_id = await started_run(world)
    watching = asyncio.create_task(cli("run", "watch", run_id))
    progress = RunProgress(
        run_id=run_id, job_id=job_id, bytes_done=3 << 20, bytes_total=4 << 20, rate_bps=1e6,
        vms_total=1, at=datetime.now(UTC),
    )  # fmt: skip
    await world.bus.publish("events", RUN_PROGRESS, progress, message_id=f"rp-{run_id}")
    code, out, _ = await cli("run", "stop", run_id, "--reason", "wrong pool")
    assert code == 0 and run_id in out
    if "cancelling" in out:
        await end_run(world, run_id)
    async with asyncio.timeout(30):
        code, out, err = await watching
    assert code == 1 and f"run {run_id[:12]}" in err and "cancelled" in out
    code, out, _ = await cli("run", "events", run_id, "--type", "RunFinished", "-o", "json")
    assert {e["event"]["type"] for e in json.loads(out)} == {"RunFinished"}
    # without --job: the runs of every job (GET /runs), filtered there
    code, out, _ = await cli("run", "list", "--host", HOST, "--state", "cancelled", "-o", "json")
    assert [x["id"] for x in json.loads(out)] == [run_id]
    code, out, err = await cli("run", "list", "--after", "yesterday")
    assert code == EXIT_INPUT and "invalid_input" in err

    # every active run of a job stopped at once: a new one (no worker takes its plan)
    await world.ok("POST", f"/jobs/{job_id}/runs", 202, json={})
    runs: list[Any] = []
    async with asyncio.timeout(20):
        while len(runs) < 2:
            runs = (await world.ok("GET", f"/jobs/{job_id}/runs"))["items"]
    code, out, _ = await cli("job", "stop", job_id, "--reason", "wrong pool", "-o", "json")
    stopped = json.loads(out)["runs"]
    assert code == 0 and [x["id"] for x in stopped] == [runs[0]["id"]]
    assert stopped[0]["state"] in {"cancelled", "cancelling"}
    code, _, err = await cli("job", "stop", job_id)
    assert code == 0 and "no run pending, queued or running" in err


async def test_ids_that_are_not_ids_are_refused_as_input(world: World, tmp_path: Path) -> None:
    """Typed ids go to the API as one path segment each: a space, ``?``, ``#`` or ``%``
    is not a broken URL (once: exit 1, "cannot reach the API"), a ``..`` reaches no
    route (once: exit 1, internal_error); both are not found (exit 2)."""
    cli = Cli(world, tmp_path)
    for args in (("restore", "show", "a b"), ("run", "show", "x?y"), ("job", "show", "50%")):
        code, _, err = await cli(*args)
        assert code == EXIT_INPUT and f"{args[2]} not found" in err, (args, err)
    code, _, err = await cli("platform", "show", "../restores")
    assert code == EXIT_INPUT and "[not_found]" in err, err


async def test_restore_run_queues_a_manual_restore(world: World, tmp_path: Path) -> None:
    cli = Cli(world, tmp_path)
    newest, _ = await setup_points(world)
    code, out, err = await cli(
        "restore", "create", "--point", newest, "--host", HOST, "--schedule", "manual",
        "--to-vm", f"{world.platform}/vm-a", "--map", "d0=d0", "--no-start", "-o", "json",
    )  # fmt: skip
    assert code == 0, err
    created = json.loads(out)
    rid = created["restore"]["id"]
    code, _, err = await cli("restore", "run", rid)
    assert code == EXIT_INPUT and "[restore_not_runnable]" in err
    code, out, _ = await cli("restore", "start", rid, "--code", created["verification_code"])
    assert code == 0 and "scheduled" in out
    code, out, err = await cli("restore", "run", rid, "-o", "json")
    assert code == 0, err
    assert json.loads(out)["state"] == "queued"
