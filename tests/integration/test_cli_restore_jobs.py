"""``edgeback restore job ...`` over a real API (in-process, on a loopback port) with the
catalog on the catalog DB over RabbitMQ: a job created and its first restore started
with the code typed on stdin, listed, shown, refused while busy, stopped, started again
without starting, edited (its waiting restore cancelled), cloned, disabled, enabled and
deleted."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tests.integration.test_api_restores import HOST, World, setup_points, world
from tests.integration.test_cli_restores import Cli

from edgeback_cli.main import EXIT_INPUT
from edgeback_cli.restore_cli import shown_code

pytestmark = pytest.mark.integration
__all__ = ["world"]


async def test_restore_job_commands_over_the_api(world: World, tmp_path: Path) -> None:
    cli = Cli(world, tmp_path)
    newest, oldest = await setup_points(world)
    code, _, err = await cli("restore", "job", "create", "--point", newest, "--host", HOST)
    assert code == EXIT_INPUT and "needs a name" in err
    code, out, err = await cli(
        "restore", "job", "create", "--name", "web-back", "--point", newest, "--host", HOST,
        "--to-vm", f"{world.platform}/vm-a", "--map", "d0=d0", "--no-start", "-o", "json",
    )  # fmt: skip
    assert code == 0, err
    made = json.loads(out)
    job_id, first = made["job"]["id"], made["restore"]
    code, out, err = await cli(
        "restore", "start", first["id"], stdin=shown_code(made["verification_code"]) + "\n"
    )
    assert code == 0 and "queued" in out, err
    code, out, _ = await cli("restore", "job", "list", "--name", "WEB", "--enabled")
    assert code == 0 and "web-back" in out
    code, out, _ = await cli("restore", "job", "show", job_id)
    assert code == 0 and first["id"] in out and "queued" in out
    code, _, err = await cli("restore", "job", "start", job_id)
    assert code == EXIT_INPUT and "[restore_job_busy]" in err
    code, out, _ = await cli("restore", "job", "stop", job_id)
    assert code == 0 and "cancelled" in out

    code, out, err = await cli("restore", "job", "start", job_id, "--no-start", "-o", "json")
    assert code == 0, err
    waiting = json.loads(out)["restore"]["id"]
    code, out, err = await cli("restore", "job", "edit", job_id, "--point", oldest, "--start-vm")
    assert code == 0 and f"restore {waiting} cancelled" in err
    code, out, _ = await cli("restore", "job", "show", job_id, "-o", "json")
    shown = json.loads(out)["job"]
    assert (shown["revision"], shown["spec"]["backup_set_ids"]) == (2, [oldest])
    assert shown["spec"]["options"]["start_vm_after"] is True

    code, out, _ = await cli("restore", "job", "clone", job_id, "--name", "web-copy", "-o", "json")
    copy = json.loads(out)
    assert code == 0 and copy["name"] == "web-copy"
    code, out, _ = await cli("restore", "job", "disable", copy["id"])
    assert code == 0 and "enabled: no" in out
    code, out, _ = await cli("restore", "job", "list", "--disabled", "-o", "json")
    assert [j["name"] for j in json.loads(out)] == ["web-copy"]
    code, _, err = await cli("restore", "job", "start", copy["id"])
    assert code == EXIT_INPUT and "[job_disabled]" in err
    code, out, _ = await cli("restore", "job", "enable", copy["id"])
    assert code == 0 and "enabled: yes" in out
    code, _, err = await cli("restore", "job", "delete", copy["id"])
    assert code == 0 and "deleted" in err
    code, out, _ = await cli("restore", "job", "list", "-o", "json")
    assert [j["name"] for j in json.loads(out)] == ["web-back"]
