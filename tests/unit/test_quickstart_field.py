"""The quickstart's ``field`` helper (deploy/quickstart.sh) run by bash as the script
defines it: ids go in as arguments, so a value holding quotes and code stays data."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import msgspec

SCRIPT = Path(__file__).resolve().parents[2] / "deploy" / "quickstart.sh"


def _field(expr: str, *values: str, stdin: object) -> str:
    """``field "EXPR" VALUE...`` with the script's function and constants, as the script
    calls it (bash expands ``$IMAGE_OF`` and the like inside EXPR's double quotes)."""
    text = SCRIPT.read_text()
    function = re.search(r"^field\(\) \{\n.*?^\}\n", text, re.S | re.M)
    constants = re.findall(r"^(?:VMS_OF|VM_OF|DISKS_OF|IMAGE_OF)=.*$", text, re.M)
    assert function is not None and len(constants) == 4
    call = f'field "{expr}" "$@"'
    program = "\n".join([f"PY={sys.executable}", function.group(0), *constants, call])
    done = subprocess.run(
        ["bash", "-c", program, "quickstart", *values],
        input=msgspec.json.encode(stdin),
        capture_output=True,
        check=True,
        timeout=30,
    )
    return done.stdout.decode().strip()


def test_values_are_arguments_never_code(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    evil = f"x' + __import__('pathlib').Path('{marker}').touch() + '"
    disks = [{"id": "d0", "volume_id": None}, {"id": "d1", "volume_id": "vol-1"}]
    cloud = {"hosts": [{"vms": [{"id": evil, "name": "a", "disks": disks}]}]}
    assert _field("$IMAGE_OF", evil, "d0", stdin=cloud) == evil + "_disk"
    assert _field("$IMAGE_OF", evil, "d1", stdin=cloud) == "vol-1"
    ids = "' '.join(x['id'] for x in $DISKS_OF)"
    assert _field(ids, evil, stdin=cloud) == "d0 d1"
    assert _field("d['id']", stdin={"id": "abc"}) == "abc"
    assert not marker.exists()


def test_no_field_expression_holds_a_shell_value() -> None:
    """Ids are passed after the expression, not pasted into it ('$src' would be code)."""
    calls = [line for line in SCRIPT.read_text().splitlines() if "field " in line]
    assert calls
    pasted = [line for line in calls if re.search(r"'\$\{?[a-z_]", line)]
    assert pasted == []
