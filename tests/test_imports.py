"""The import direction qgis_plugin → geobert → tiles holds, and tiles stays free of torch/QGIS."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_tiles_imports_neither_torch_nor_qgis_nor_geobert() -> None:
    code = (
        "import sys, tiles, tiles.engine, tiles.xarray_view, tiles.pair;"
        "bad = [m for m in ('torch', 'qgis', 'geobert') if m in sys.modules];"
        "print(bad); sys.exit(1 if bad else 0)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_no_import_statement_in_tiles_names_torch_geobert_or_qgis() -> None:
    banned = re.compile(r"^\s*(?:import|from)\s+(?:torch|torchvision|timm|geobert|qgis)\b", re.M)
    for path in (ROOT / "tiles").rglob("*.py"):
        assert not banned.search(path.read_text()), f"{path} imports a forbidden package"
