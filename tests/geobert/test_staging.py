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


def test_two_processes_and_a_killed_run(tmp_path: Path) -> None:
    """Real processes: while one run holds the folder a second is refused; a run killed with
    SIGKILL in the middle of publishing (its old outputs moved aside, new ones not yet in)
    leaves a staging folder that the next run clears, putting the old outputs back first."""
    import signal
    import subprocess
    import sys
    import time

    out = tmp_path / "out"
    with staged_outputs(out, NAMES, overwrite=False, tag="t") as stage:
        _write_all(stage, "old")
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from geobert._staging import staged_outputs\n"
         f"with staged_outputs({str(out)!r}, ['x'], overwrite=True, tag='h') as s:\n"
         "    print('in', flush=True); time.sleep(60)"],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert holder.stdout is not None and holder.stdout.readline().strip() == "in"
    with (
        pytest.raises(OutputExistsError, match="another geobert run is writing"),
        staged_outputs(out, NAMES, overwrite=True, tag="t"),
    ):
        raise AssertionError("no work may start")
    holder.send_signal(signal.SIGKILL)  # dies holding the lock: the kernel releases it
    holder.wait()
    stale = [p for p in out.glob(".geobert-h-*")]
    assert len(stale) == 1  # what a killed run leaves
    # as if killed mid-publish: the old summary.json was moved aside, the new not yet in
    (stale[0] / ".previous").mkdir()
    os.replace(out / "summary.json", stale[0] / ".previous" / "summary.json")
    time.sleep(0.1)
    with staged_outputs(out, ("other.txt",), overwrite=True, tag="t") as stage:
        (stage / "other.txt").write_text("y")
    assert sorted(p.name for p in out.iterdir()) == sorted([*NAMES, "other.txt"])
    assert (out / "summary.json").read_text() == "old"
