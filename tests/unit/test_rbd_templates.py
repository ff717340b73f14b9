"""RBD name templates: the defaults, each way to get one wrong, and expansion."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edgeback_core.errors import InvalidTemplateError
from edgeback_platform.templates import RbdTemplates, validate_template


def test_defaults_expand_to_the_platform_names() -> None:
    t = RbdTemplates()
    assert t.volume_image("vol-1") == "vol-1"
    assert t.snapshot_name("snap-9") == "snap-9"
    assert t.instance_image("i-42") == "i-42_disk"


def test_custom_templates_expand() -> None:
    t = RbdTemplates(volume="volume-{volume_id}", snapshot="snapshot-{snapshot_id}.b")
    assert t.volume_image("abc") == "volume-abc"
    assert t.snapshot_name("s1") == "snapshot-s1.b"


@pytest.mark.parametrize(
    ("template", "reason"),
    [
        ("volume", "exactly once"),
        ("{volume_id}-{volume_id}", "exactly once"),
        ("{instance_id}", "unknown placeholder"),
        ("{volume_id}{snapshot_id}", "unknown placeholder"),
        ("{volume}", "unknown placeholder"),
        ("{}", "unknown placeholder"),
        ("vol/{volume_id}", "only letters"),
        ("vol@{volume_id}", "only letters"),
        ("vol {volume_id}", "only letters"),
        ("{volume_id", "exactly once"),
        ("{{volume_id}}", "only letters"),
        ("x" * 250 + "{volume_id}", "longer than"),
    ],
)
def test_malformed_templates_are_refused(template: str, reason: str) -> None:
    with pytest.raises(InvalidTemplateError) as err:
        validate_template(template, "volume_id", field="volume_template")
    assert err.value.code == "invalid_template"
    assert reason in err.value.message


def test_the_dataclass_refuses_a_bad_field_and_names_it() -> None:
    with pytest.raises(InvalidTemplateError, match="instance_template"):
        RbdTemplates(instance="{volume_id}_disk")


def test_ids_that_would_break_a_name_are_refused() -> None:
    with pytest.raises(InvalidTemplateError):
        RbdTemplates().volume_image("a/b")
    with pytest.raises(InvalidTemplateError):
        RbdTemplates().snapshot_name("")


_VALID = re.compile(r"[A-Za-z0-9_.\-]+")


@given(st.text(max_size=40))
def test_validation_only_ever_raises_invalid_template(template: str) -> None:
    try:
        validate_template(template, "snapshot_id", field="snapshot_template")
    except InvalidTemplateError:
        return
    assert template.count("{snapshot_id}") == 1
    name = RbdTemplates(snapshot=template).snapshot_name("s-1")
    assert _VALID.fullmatch(name)
