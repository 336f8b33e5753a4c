"""PROJ_DATA/PROJ_LIB pointing at another PROJ's database: ignored when too old for the wheels."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from tiles.projdata import database_layout, wheel_proj_dirs

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "abudhabi"


def _fake_proj_db(folder: Path, minor: int) -> Path:
    folder.mkdir()
    with sqlite3.connect(folder / "proj.db") as con:
        con.execute("CREATE TABLE metadata (key TEXT, value TEXT)")
        con.executemany(
            "INSERT INTO metadata VALUES (?, ?)",
            [("DATABASE.LAYOUT.VERSION.MAJOR", "1"), ("DATABASE.LAYOUT.VERSION.MINOR", str(minor))],
        )
    return folder


def _run(code: str, **env: str) -> dict:  # type: ignore[type-arg]
    clean = {k: v for k, v in os.environ.items() if k not in ("PROJ_DATA", "PROJ_LIB")}
    out = subprocess.run([sys.executable, "-c", code], env={**clean, **env},
                         capture_output=True, text=True, check=True)  # fmt: skip
    return json.loads(out.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


PROBE = """
import json, os
from tiles.projdata import use_compatible_proj_data
note = use_compatible_proj_data()
from rasterio.crs import CRS
import pyproj
print(json.dumps({"note": note, "left": [v for v in ("PROJ_DATA", "PROJ_LIB") if v in os.environ],
                  "rasterio": CRS.from_epsg(32640).to_epsg(),
                  "pyproj": pyproj.CRS.from_epsg(32640).to_epsg()}))
"""


def test_wheels_carry_their_own_proj_data() -> None:
    dirs = wheel_proj_dirs()
    assert set(dirs) == {"rasterio", "pyproj"}
    assert all(database_layout(d) is not None for d in dirs.values())


def test_an_old_proj_database_is_ignored(tmp_path: Path) -> None:
    old = _fake_proj_db(tmp_path / "old", minor=2)  # Debian 12's PROJ 9.1 has layout 1.2
    res = _run(PROBE, PROJ_LIB=str(old))
    assert res["note"].startswith(f"ignoring PROJ_LIB={old}: proj.db layout 1.2 there")
    assert res["left"] == [] and res["rasterio"] == res["pyproj"] == 32640


def test_a_fitting_proj_data_is_kept() -> None:
    own = wheel_proj_dirs()["rasterio"]  # the newest layout of the two wheels
    res = _run(PROBE, PROJ_DATA=str(own))
    assert res["note"] is None and res["left"] == ["PROJ_DATA"]
    assert res["rasterio"] == res["pyproj"] == 32640


@pytest.mark.skipif(not Path("/usr/share/proj/proj.db").is_file(), reason="no system PROJ")
def test_geobert_works_with_the_systems_proj_lib_set(tmp_path: Path) -> None:
    """What a machine with GIS tools (or QGIS's environment) hands the worker."""
    env = {k: v for k, v in os.environ.items() if k not in ("PROJ_DATA", "PROJ_LIB")}
    env["PROJ_LIB"] = "/usr/share/proj"
    proc = subprocess.run(
        [sys.executable, "-m", "geobert.cli", "change", str(EXAMPLE / "imgs_1"),
         str(EXAMPLE / "imgs_2"), "-o", str(tmp_path / "out"), "-q", "--crs", "EPSG:32640"],
        env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "out" / "change.gpkg").is_file()
