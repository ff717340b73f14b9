"""What operators type into ``edgeback disk``: images, manifest refs, pool locations, keys."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from edgeback_blocks.keys import read_secret_file
from edgeback_blocks.pipeline import Progress
from edgeback_cli.display import ProgressDisplay, clock_text, human_bytes, progress_line
from edgeback_cli.main import EXIT_INPUT, run
from edgeback_cli.refs import ImageRef, ManifestRef, PoolLocation, read_key, version_name
from edgeback_core.errors import InvalidInputError


def test_image_refs() -> None:
    assert ImageRef.parse("rbd/vm1_disk") == ImageRef("rbd", "vm1_disk", None)
    assert ImageRef.parse("rbd/vol-1@snap.2") == ImageRef("rbd", "vol-1", "snap.2")
    assert str(ImageRef("rbd", "a", "s")) == "rbd/a@s"
    for bad in ("noslash", "rbd/", "/img", "rbd/img@", "rbd/a/b", "rbd/im g"):
        with pytest.raises(InvalidInputError):
            ImageRef.parse(bad)


def test_manifest_refs_name_a_pool_version_or_an_existing_file(tmp_path: Path) -> None:
    assert ManifestRef.parse("vm-1/disk-0/v1") == ManifestRef("vm-1", "disk-0", "v1")
    file = tmp_path / "m.bin"
    file.write_bytes(b"x")
    assert ManifestRef.parse(str(file)).path == file
    for bad in ("vm/disk", "vm/disk/v/extra", "../etc/passwd", "vm/../v"):
        with pytest.raises(InvalidInputError):
            ManifestRef.parse(bad)


def test_pool_locations(tmp_path: Path) -> None:
    assert PoolLocation.parse("http://node:8710/").url == "http://node:8710"
    assert PoolLocation.parse(str(tmp_path)).directory == tmp_path
    with pytest.raises(InvalidInputError, match="neither"):
        PoolLocation.parse(str(tmp_path / "absent"))


def test_keys_raw_or_hex(tmp_path: Path) -> None:
    raw, text, short = tmp_path / "raw", tmp_path / "hex", tmp_path / "short"
    raw.write_bytes(bytes(range(32)))
    text.write_text(bytes(range(32)).hex() + "\n")
    short.write_bytes(b"abc")
    assert read_key(str(raw)) == read_key(str(text)) == bytes(range(32))
    with pytest.raises(InvalidInputError):
        read_key(str(short))
    with pytest.raises(InvalidInputError):
        read_key(str(tmp_path / "none"))


def test_progress_rendering() -> None:
    assert human_bytes(512) == "512 B" and human_bytes(3 * 2**30) == "3.0 GiB"
    assert clock_text(None) == "--:--" and clock_text(3725) == "1:02:05"
    progress = Progress(done_bytes=2**30, total_bytes=2**32, elapsed_s=2.0, rate_bps=5e8)
    line = progress_line("backup", progress, width=8)
    assert line.startswith("backup [##......]  25% 1.0 GiB/4.0 GiB 500.0 MB/s ETA 00:06")


def test_plain_progress_lines_are_spaced_out(tmp_path: Path) -> None:
    now = [0.0]
    out = (tmp_path / "log").open("w+")
    display = ProgressDisplay("restore", out, tty=False, every_s=10, clock=lambda: now[0])
    for t in (0.0, 1.0, 5.0, 11.0):
        now[0] = t
        display(Progress(done_bytes=1, total_bytes=4, elapsed_s=t, rate_bps=1.0))
    display(Progress(done_bytes=4, total_bytes=4, elapsed_s=12, rate_bps=1.0, final=True))
    out.seek(0)
    assert len(out.read().splitlines()) == 3  # t=0, t=11 and the final line


def test_bad_command_lines_exit_2_before_touching_anything(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    key = tmp_path / "k"
    key.write_bytes(b"\0" * 32)
    secret = tmp_path / "secret"
    secret.write_bytes(b"\1" * 32)
    secret.chmod(0o600)
    base = ["disk", "backup", "--to", "http://127.0.0.1:9", "--key-file", str(key)]
    base += ["--secret-key-file", str(secret)]
    env = {"EDGEBACK_TOKEN": "t" * 20, "CEPH_CONF": "/nonexistent"}
    assert run([*base, "--image", "bad"], env) == EXIT_INPUT
    assert run([*base, "--image", "rbd/x", "--base", "a/b/c"], env) == EXIT_INPUT
    assert run([*base, "--image", "rbd/x"], {"CEPH_CONF": "/x"}) == EXIT_INPUT  # no token
    err = capsys.readouterr().err
    assert "POOL/IMAGE" in err and "--base-snap" in err and "EDGEBACK_TOKEN" in err
    for flag in ("--uploads", "--streams"):
        assert run([*base, "--image", "rbd/x", flag, "0"], env) == EXIT_INPUT
        assert f"{flag} must be at least 1" in capsys.readouterr().err
    # --sample 0 checked nothing and said all was well; -1 was a traceback
    verify = ["disk", "verify", "vm/disk/v1", "--from", str(tmp_path / "pool")]
    verify += ["--secret-key-file", str(secret)]
    for sample in ("0", "-1"):
        assert run([*verify, "--sample", sample], env) == EXIT_INPUT
        assert "--sample must be at least 1" in capsys.readouterr().err


def test_secret_files_are_new_private_and_never_overwritten(tmp_path: Path) -> None:
    secret = tmp_path / "pool.secret"
    assert run(["key", "create", str(secret)], {}) == 0
    assert secret.stat().st_mode & 0o777 == 0o600 and len(secret.read_bytes()) == 32
    before = secret.read_bytes()
    assert run(["key", "create", str(secret)], {}) == EXIT_INPUT
    assert secret.read_bytes() == before
    nowhere = tmp_path / "no-such-folder" / "pool.secret"
    assert run(["key", "create", str(nowhere)], {}) == EXIT_INPUT  # not a traceback
    assert not nowhere.parent.exists()
    secret.chmod(0o644)
    with pytest.raises(InvalidInputError, match="readable by others"):
        read_secret_file(secret)


def test_default_version_names_sort_by_time_and_cannot_be_predicted() -> None:
    early = version_name(datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC))
    late = version_name(datetime(2026, 1, 2, 3, 4, 6, tzinfo=UTC))
    again = version_name(datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC))
    assert early.startswith("20260102T030405Z-") and early < late
    assert early != again and len(early.rsplit("-", 1)[1]) == 16
