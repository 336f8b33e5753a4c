"""PROJ data that fits the PROJ built into the rasterio and pyproj wheels.

Both wheels carry their own PROJ and its database (``proj.db``), but honour ``PROJ_DATA`` /
``PROJ_LIB`` when set. Machines with GIS software often set those for the system's PROJ (Debian
12's is 9.1, database layout 1.2; the wheels here need layouts 1.6 and 1.4): every CRS lookup then
fails, and a user sees ``unknown CRS 'EPSG:32640'`` for a perfectly good code.
:func:`use_compatible_proj_data` notices a database older than the wheels need and points both
libraries back at their own data. A database that fits (the user's own, newer or extra grids) is
left alone.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

__all__ = ["database_layout", "use_compatible_proj_data", "wheel_proj_dirs"]

VARIABLES = ("PROJ_DATA", "PROJ_LIB")


def database_layout(folder: str | os.PathLike[str]) -> tuple[int, int] | None:
    """``(major, minor)`` layout version of ``folder/proj.db`` (None if there is none or it
    cannot be read)."""
    db = Path(folder) / "proj.db"
    if not db.is_file():
        return None
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as con:
            rows = dict(
                con.execute(
                    "SELECT key, value FROM metadata WHERE key LIKE 'DATABASE.LAYOUT.VERSION.%'"
                ).fetchall()
            )
        major, minor = rows["DATABASE.LAYOUT.VERSION.MAJOR"], rows["DATABASE.LAYOUT.VERSION.MINOR"]
        return int(major), int(minor)
    except (sqlite3.Error, KeyError, ValueError):
        return None


def wheel_proj_dirs() -> dict[str, Path]:
    """The PROJ data folders inside the installed rasterio and pyproj wheels (those present)."""
    import pyproj
    from rasterio._env import PROJDataFinder

    dirs = {}
    found = PROJDataFinder().search_wheel()
    if found:
        dirs["rasterio"] = Path(found)
    bundled = Path(pyproj.__file__).parent / "proj_dir" / "share" / "proj"
    if (bundled / "proj.db").is_file():
        dirs["pyproj"] = bundled
    return dirs


def use_compatible_proj_data() -> str | None:
    """Stop using ``PROJ_DATA``/``PROJ_LIB`` if the ``proj.db`` they point at is older than a
    wheel's PROJ needs: remove them from this process's environment (and so its children's) and
    point rasterio and pyproj at their own data. Returns a line saying what was ignored, or None
    when nothing had to change.
    """
    user = next(((v, os.environ[v]) for v in VARIABLES if os.environ.get(v)), None)
    if user is None:
        return None
    variable, value = user
    # PROJ opens the first proj.db on its search path
    have = next(
        (lay for p in value.split(os.pathsep) if (lay := database_layout(p)) is not None), None
    )
    wheels = wheel_proj_dirs()
    need = {name: database_layout(d) for name, d in wheels.items()}
    too_old = [
        name
        for name, layout in need.items()
        if layout is not None and (have is None or have[0] != layout[0] or have < layout)
    ]
    if not too_old:
        return None
    for v in VARIABLES:
        os.environ.pop(v, None)
    from rasterio._env import set_proj_data_search_path

    if "rasterio" in wheels:
        set_proj_data_search_path(str(wheels["rasterio"]))
    if "pyproj" in wheels:
        import pyproj.datadir

        pyproj.datadir.set_data_dir(wheels["pyproj"])
    found = "no proj.db" if have is None else f"proj.db layout {have[0]}.{have[1]}"
    wanted = ", ".join(f"{n} {lay[0]}.{lay[1]}" for n in too_old if (lay := need[n]) is not None)
    return (
        f"ignoring {variable}={value}: {found} there, older than the PROJ inside geobert's "
        f"{wanted} needs; using the wheels' own PROJ data"
    )
