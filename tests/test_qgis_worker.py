"""The QGIS plugin's worker runner, which has no QGIS imports, with real processes."""

from __future__ import annotations

import shutil
import subprocess
import sys
import threading
import time
import zipfile
from pathlib import Path

import pytest

from qgis_plugin.worker import check_environment, geobert_command, run_worker

FAKE = """
import signal, sys, time
def stop(*_):
    print("geobert: interrupted; no output was written", file=sys.stderr)
    sys.exit(130)
signal.signal(signal.SIGTERM, stop)
for p in (10, 20, 30):
    print(f"progress: {p}.0", flush=True)
    time.sleep(0.05)
print("a plain line", flush=True)
if sys.argv[1] == "fail":
    print("Traceback noise", file=sys.stderr)
    print("geobert: error: scene.tif has no CRS; assign one", file=sys.stderr)
    sys.exit(2)
if sys.argv[1] == "hang":
    time.sleep(60)
"""


def test_progress_lines_errors_and_cancel(tmp_path: Path) -> None:
    script = tmp_path / "fake.py"
    script.write_text(FAKE)
    seen: list[float] = []
    lines: list[str] = []
    threads: set[int] = set()

    def on_progress(p: float) -> None:
        threads.add(threading.get_ident())
        seen.append(p)

    def on_line(line: str) -> None:
        threads.add(threading.get_ident())
        lines.append(line)

    ok = run_worker([sys.executable, str(script), "ok"], on_progress, lambda: False, on_line)
    assert ok.ok and seen == [10.0, 20.0, 30.0] and lines == ["a plain line"]
    # on the caller's thread: QGIS's feedback signals from another thread were queued to a
    # main thread that this very call blocks (qgis_process, batch mode)
    assert threads == {threading.get_ident()}
    bad = run_worker([sys.executable, str(script), "fail"], seen.append, lambda: False)
    assert not bad.ok and bad.returncode == 2
    assert bad.error == "geobert: error: scene.tif has no CRS; assign one"
    t0 = time.monotonic()
    stop = run_worker(
        [sys.executable, str(script), "hang"], lambda p: None, lambda: time.monotonic() - t0 > 1
    )
    assert stop.cancelled and stop.returncode == 130 and time.monotonic() - t0 < 20


def _python_without_geobert(tmp_path: Path) -> str:
    """A Python program without site-packages (so without geobert), as a plain Python is."""
    py = tmp_path / "bare-python"
    py.write_text(f'#!/bin/sh\nexec "{sys.executable}" -S "$@"\n')
    py.chmod(0o755)
    return str(py)


def test_environment_check_names_the_fix(tmp_path: Path) -> None:
    ok, version = check_environment(sys.executable)
    assert ok and version.startswith("geobert ")
    ok, msg = check_environment(str(tmp_path / "nope" / "python"))
    assert not ok and "no Python at" in msg and "Providers ▸ geobert" in msg
    ok, msg = check_environment("/usr/bin/true")
    assert not ok  # runs, but prints no geobert version
    ok, msg = check_environment(str(tmp_path))  # a venv folder instead of its Python
    assert not ok and f"{tmp_path}/bin/python" in msg and "not to a Python program" in msg
    ok, msg = check_environment(_python_without_geobert(tmp_path))
    assert not ok and "has no geobert installed" in msg and "pip install geobert" in msg
    assert geobert_command("py", "change", "a", "b")[:5] == [
        "py", "-P", "-m", "geobert.cli", "--progress-lines"
    ]  # fmt: skip


def test_a_python_that_cannot_start_or_lacks_geobert_is_one_line(tmp_path: Path) -> None:
    """The worker's setup mistakes arrive as one line pointing at the setting, not a traceback."""
    never = lambda: False  # noqa: E731
    for python, expected in [
        (str(tmp_path / "deleted" / "python"), "there is no Python at"),
        (str(tmp_path), "not to a Python program"),
        (_python_without_geobert(tmp_path), "has no geobert installed"),
    ]:
        res = run_worker(geobert_command(python, "--version"), lambda p: None, never)
        assert not res.ok and expected in res.error and "\n" not in res.error
        assert res.error.startswith("geobert: ") and "Check geobert environment" in res.error


def test_a_geobert_folder_in_qgis_current_folder_does_not_shadow_the_package(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """QGIS started from ~ with a ~/geobert checkout (the README's editable install): the worker
    must import the installed geobert, not the folder."""
    shadow = tmp_path / "geobert"
    shadow.mkdir()
    (shadow / "__init__.py").write_text("")  # a package without __version__ or cli
    monkeypatch.chdir(tmp_path)
    ok, version = check_environment(sys.executable)
    assert ok and version.startswith("geobert "), version


def _build_zip(repo: Path, dist: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(repo / "scripts" / "build_plugin_zip.py"), "--dist", str(dist)],
        capture_output=True,
        text=True,
    )


def test_plugin_zip_installs_as_one_folder(tmp_path: Path) -> None:
    """The release zip: one top-level folder named as the plugin, its metadata at the
    package's version, every file of the plugin and no caches; a stale version builds nothing."""
    import tomllib

    root = Path(__file__).resolve().parents[1]
    repo = tmp_path / "repo"
    shutil.copytree(root / "qgis_plugin", repo / "qgis_plugin", ignore=_ignore_caches)
    shutil.copytree(root / "scripts", repo / "scripts", ignore=_ignore_caches)
    shutil.copy(root / "pyproject.toml", repo / "pyproject.toml")
    # what a working copy holds besides the plugin: caches, an editor's backup
    (repo / "qgis_plugin" / "__pycache__").mkdir()
    (repo / "qgis_plugin" / "__pycache__" / "worker.cpython-311.pyc").write_bytes(b"\0")
    (repo / "qgis_plugin" / ".mypy_cache").mkdir()
    (repo / "qgis_plugin" / ".mypy_cache" / "x.json").write_text("{}")
    (repo / "qgis_plugin" / "worker.py~").write_text("old")
    version = tomllib.loads((root / "pyproject.toml").read_text())["project"]["version"]
    proc = _build_zip(repo, tmp_path / "dist")
    assert proc.returncode == 0, proc.stderr
    zip_path = tmp_path / "dist" / f"geobert_qgis-{version}.zip"
    assert proc.stdout.strip() == f"wrote {zip_path}"
    with zipfile.ZipFile(zip_path) as zf:
        names = zf.namelist()
        meta = zf.read("geobert_qgis/metadata.txt").decode()
    shipped = sorted(
        p.relative_to(root / "qgis_plugin").as_posix()
        for p in (root / "qgis_plugin").iterdir()
        if p.is_file() and p.suffix in {".py", ".txt", ".svg"}
    )
    assert names == [f"geobert_qgis/{n}" for n in shipped]  # and nothing else
    assert "metadata.txt" in shipped and "icon.svg" in shipped and "worker.py" in shipped
    assert "qgisMinimumVersion=3.22" in meta and "hasProcessingProvider=yes" in meta
    assert f"\nversion={version}\n" in meta  # one version number: the package's
    (repo / "qgis_plugin" / "metadata.txt").write_text(meta.replace(version, "9.9"))
    stale = _build_zip(repo, tmp_path / "dist2")
    assert stale.returncode != 0 and "differs from pyproject.toml's" in stale.stderr
    assert not (tmp_path / "dist2").exists() or not any((tmp_path / "dist2").iterdir())


def _ignore_caches(folder: str, names: list[str]) -> list[str]:
    return [n for n in names if n == "__pycache__" or n.startswith(".")]
