"""Outputs appear together or not at all, one run per output folder."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

import pytest

import geobert._staging as staging
from geobert._staging import staged_outputs
from geobert.errors import OutputExistsError

NAMES = ("a.tif", "b.gpkg", "summary.json")


def _write_all(stage: Path, text: str) -> None:
    for n in NAMES:
        (stage / n).write_text(text)


def test_a_failed_move_puts_the_old_set_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "out"
    with staged_outputs(out, NAMES, overwrite=False, tag="t") as stage:
        _write_all(stage, "old")
    (out / "unrelated.txt").write_text("keep")
    real = os.replace
    calls = {"n": 0}

    def flaky(src: object, dst: object) -> None:
        # fail while moving the *new* summary.json in (after the old set went aside)
        moving_in = ".geobert-" in str(src) and ".previous" not in str(src)
        if str(dst).endswith("summary.json") and moving_in:
            calls["n"] += 1
            raise OSError(28, "No space left on device")
        real(src, dst)  # type: ignore[arg-type]

    monkeypatch.setattr(staging.os, "replace", flaky)
    with (
        pytest.raises(OSError, match="No space left"),
        staged_outputs(out, NAMES, overwrite=True, tag="t") as stage,
    ):
        _write_all(stage, "new")
    monkeypatch.undo()
    assert calls["n"] == 1
    assert {p.name for p in out.iterdir()} == {*NAMES, "unrelated.txt"}
    assert all((out / n).read_text() == "old" for n in NAMES)  # the old set, whole


def test_an_output_name_taken_by_a_folder_is_refused_before_work(tmp_path: Path) -> None:
    out = tmp_path / "out"
    (out / "summary.json").mkdir(parents=True)
    with (
        pytest.raises(OutputExistsError, match=r"folder\(s\) named \['summary.json'\]"),
        staged_outputs(out, NAMES, overwrite=True, tag="t"),
    ):
        raise AssertionError("no work may start")
    assert [p.name for p in out.iterdir()] == ["summary.json"]


def test_two_runs_into_one_folder_at_once(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    with open(out / ".geobert.lock", "a+") as held:  # another run holds the folder
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        with (
            pytest.raises(OutputExistsError, match="another geobert run is writing"),
            staged_outputs(out, NAMES, overwrite=True, tag="t"),
        ):
            raise AssertionError("no work may start")
    with staged_outputs(out, NAMES, overwrite=True, tag="t") as stage:  # free again
        _write_all(stage, "x")
    assert sorted(p.name for p in out.iterdir()) == sorted(NAMES)  # no lock file left
