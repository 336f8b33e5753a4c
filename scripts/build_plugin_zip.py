"""Build the QGIS plugin zip, a release artefact: ``dist/geobert_qgis-VERSION.zip``.

The layout is what *Plugins ▸ Manage and Install Plugins ▸ Install from ZIP* expects: one
top-level folder, ``geobert_qgis/`` (the plugin's id), holding ``metadata.txt``, the icon and the
code of ``qgis_plugin/``, without caches. The version is the package's (``pyproject.toml``);
``qgis_plugin/metadata.txt`` must say the same, or nothing is built.

Usage: ``python scripts/build_plugin_zip.py [--dist DIR]`` (any Python ≥ 3.11; stdlib only).
"""

from __future__ import annotations

import argparse
import re
import sys
import tomllib
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PLUGIN_ID = "geobert_qgis"
# caches and editor or OS droppings that must not ship
EXCLUDED_SUFFIXES = (".pyc", ".pyo", "~", ".orig", ".rej", ".swp")


def package_version(root: Path) -> str:
    """The package version, from ``pyproject.toml`` (the one place it is written)."""
    return str(tomllib.loads((root / "pyproject.toml").read_text())["project"]["version"])


def plugin_files(src: Path) -> list[Path]:
    """The files of the plugin folder ``src`` that ship: no hidden files or folders, no
    ``__pycache__``, no compiled or editor files; sorted, so the zip lists them in order."""
    return sorted(
        p
        for p in src.rglob("*")
        if p.is_file()
        and not any(
            part.startswith(".") or part == "__pycache__" for part in p.relative_to(src).parts
        )
        and not p.name.endswith(EXCLUDED_SUFFIXES)
    )


def build_plugin_zip(root: Path, dist: Path) -> Path:
    """Write ``dist/geobert_qgis-VERSION.zip`` from ``root/qgis_plugin``; return its path.

    Raises:
        SystemExit: ``qgis_plugin/metadata.txt``'s version differs from the package's.
    """
    src = root / "qgis_plugin"
    version = package_version(root)
    meta = (src / "metadata.txt").read_text()
    if not re.search(rf"^version={re.escape(version)}$", meta, re.M):
        found = re.search(r"^version=(.*)$", meta, re.M)
        raise SystemExit(
            f"build_plugin_zip: qgis_plugin/metadata.txt's version "
            f"({found.group(1) if found else 'missing'}) differs from pyproject.toml's {version}; "
            f"set version={version} in qgis_plugin/metadata.txt"
        )
    dist.mkdir(parents=True, exist_ok=True)
    out = dist / f"{PLUGIN_ID}-{version}.zip"
    tmp = out.with_suffix(".zip.part")  # a failed build leaves no half-written zip
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as zf:
        for p in plugin_files(src):
            zf.write(p, f"{PLUGIN_ID}/{p.relative_to(src).as_posix()}")
    tmp.replace(out)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dist", type=Path, default=ROOT / "dist", help="output folder (dist/)")
    args = parser.parse_args(argv)
    print(f"wrote {build_plugin_zip(ROOT, args.dist)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
