import dataclasses
from dataclasses import dataclass
from typing import Annotated, ClassVar

import pytest

from edgeback_catalog.secretbox import SecretBox
from edgeback_catalog.settings import CatalogSettings
from edgeback_core.errors import ConfigError
from edgeback_core.settings import (
    POSITIVE,
    EnvName,
    Secret,
    Settings,
    at_least,
    between,
    load,
)
from edgeback_dedup.settings import DedupSettings
from edgeback_worker.settings import WorkerSettings


@dataclass(frozen=True, slots=True, kw_only=True)
class Example:
    amqp_url: str
    token: Secret
    port: int = 8080
    ratio: float = 0.5
    debug: bool = False
    note: str | None = None


def test_load_reads_typed_values_with_prefix():
    got = load(
        Example,
        {"X_AMQP_URL": "amqp://h", "X_TOKEN": "s3cret", "X_PORT": "9", "X_DEBUG": "yes"},
        prefix="X_",
    )
    assert got.amqp_url == "amqp://h"
    assert got.token.reveal() == "s3cret"
    assert got.port == 9
    assert got.debug is True
    assert got.ratio == 0.5
    assert got.note is None


def test_load_reports_every_bad_key_at_once():
    with pytest.raises(ConfigError) as info:
        load(Example, {"X_PORT": "nine", "X_DEBUG": "maybe"}, prefix="X_")
    problems = info.value.details["problems"]
    assert any(p.startswith("X_AMQP_URL: required") for p in problems)
    assert any(p.startswith("X_TOKEN: required") for p in problems)
    assert any(p.startswith("X_PORT:") for p in problems)
    assert any(p.startswith("X_DEBUG:") for p in problems)
    assert info.value.code == "config_error"


def test_secret_never_shows_in_repr():
    got = load(Example, {"X_AMQP_URL": "a", "X_TOKEN": "hunter2"}, prefix="X_")
    assert "hunter2" not in repr(got)
    assert "hunter2" not in str(got.token)


VALID: dict[type[Settings], dict[str, str]] = {
    CatalogSettings: {
        "EDGEBACK_MONGO_URL": "mongodb://db",
        "EDGEBACK_CATALOG_MASTER_KEY": SecretBox.generate_key(),
    },
    DedupSettings: {"EDGEBACK_DEDUP_DATA_DIR": "/d", "EDGEBACK_DEDUP_TOKEN": "t" * 20},
    WorkerSettings: {"EDGEBACK_WORKER_HOST_ID": "h1"},
}


@dataclass(frozen=True, slots=True, kw_only=True)
class Ruled(Settings):
    PREFIX: ClassVar[str] = "R_"

    url: Annotated[str, EnvName("OTHER_URL")]
    workers: Annotated[int, at_least(1)] = 0
    wait_s: Annotated[float, POSITIVE] = 1.0
    port: Annotated[int, between(1, 9)] = 5


def test_rules_and_parse_errors_come_back_in_one_error() -> None:
    with pytest.raises(ConfigError) as info:
        Ruled.load({"R_URL": "ignored", "R_WAIT_S": "soon", "R_PORT": "10"})
    assert info.value.details["problems"] == [
        "OTHER_URL: required",
        "R_WORKERS: must be at least 1",  # a default is checked too
        "R_WAIT_S: could not convert string to float: 'soon'",
        "R_PORT: must be between 1 and 9",
    ]


def test_settings_load_reads_its_prefix_and_env_names() -> None:
    got = Ruled.load({"OTHER_URL": "amqp://h", "R_WORKERS": "3", "R_WAIT_S": "0.5"})
    assert got == Ruled(url="amqp://h", workers=3, wait_s=0.5, port=5)


@pytest.mark.parametrize("cls", [CatalogSettings, DedupSettings, WorkerSettings])
def test_every_service_settings_class_loads_one_way(cls: type[Settings]) -> None:
    assert issubclass(cls, Settings) and cls.PREFIX.startswith("EDGEBACK_")
    field = dataclasses.fields(cls)[0].name  # type: ignore[arg-type]
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(cls.load(VALID[cls]), field, "changed")


def test_worker_reports_bad_types_and_bad_values_together() -> None:
    env = {"EDGEBACK_WORKER_HOST_ID": "a.b", "EDGEBACK_WORKER_HEARTBEAT_S": "often"}
    env |= {"EDGEBACK_WORKER_CHECK_RETRIES": "-1", "EDGEBACK_WORKER_PLATFORM_TIMEOUT_S": "0"}
    with pytest.raises(ConfigError) as info:
        WorkerSettings.load(env)
    assert [p.split(":")[0] for p in info.value.details["problems"]] == [
        "EDGEBACK_WORKER_HOST_ID",
        "EDGEBACK_WORKER_HEARTBEAT_S",
        "EDGEBACK_WORKER_CHECK_RETRIES",
        "EDGEBACK_WORKER_PLATFORM_TIMEOUT_S",
    ]
    assert WorkerSettings.load({"EDGEBACK_WORKER_HOST_ID": "h1"}).resolved_host_id == "h1"


def test_catalog_reports_a_missing_url_and_a_bad_master_key_together() -> None:
    with pytest.raises(ConfigError) as info:
        CatalogSettings.load({"EDGEBACK_CATALOG_MASTER_KEY": "bm90IDMyIGJ5dGVz"})
    assert info.value.details["problems"] == [
        "EDGEBACK_MONGO_URL: required",
        "EDGEBACK_CATALOG_MASTER_KEY: the master key must be 32 bytes, got 12",
    ]
    key = SecretBox.generate_key()
    env = {"EDGEBACK_MONGO_URL": "mongodb://db", "EDGEBACK_CATALOG_MASTER_KEY": key}
    assert CatalogSettings.load(env).master_key.reveal() == key


def test_storage_node_reports_every_bad_value() -> None:
    env = {"EDGEBACK_DEDUP_TOKEN": "short", "EDGEBACK_DEDUP_THREADS": "0"}
    with pytest.raises(ConfigError) as info:
        DedupSettings.load(env | {"EDGEBACK_DEDUP_PORT": "70000"})
    assert info.value.details["problems"] == [
        "EDGEBACK_DEDUP_DATA_DIR: required",
        "EDGEBACK_DEDUP_TOKEN: use at least 20 characters",
        "EDGEBACK_DEDUP_PORT: must be between 0 and 65535",
        "EDGEBACK_DEDUP_THREADS: must be at least 1",
    ]
