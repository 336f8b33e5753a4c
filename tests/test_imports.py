"""The import direction qgis_plugin → geobert → tiles holds, and tiles stays free of torch/QGIS."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _run_clean(code: str) -> None:
    """Run ``code`` in a fresh interpreter (nothing imported yet); it exits 1 naming what it
    found wrong."""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_tiles_imports_neither_torch_nor_qgis_nor_geobert() -> None:
    code = (
        "import sys, tiles, tiles.engine, tiles.xarray_view, tiles.pair;"
        "bad = [m for m in ('torch', 'qgis', 'geobert') if m in sys.modules];"
        "print(bad); sys.exit(1 if bad else 0)"
    )
    _run_clean(code)


def test_no_import_statement_in_tiles_names_torch_geobert_or_qgis() -> None:
    banned = re.compile(r"^\s*(?:import|from)\s+(?:torch|torchvision|timm|geobert|qgis)\b", re.M)
    for path in (ROOT / "tiles").rglob("*.py"):
        assert not banned.search(path.read_text()), f"{path} imports a forbidden package"


def test_building_a_model_imports_no_task() -> None:
    """Registration flows one way (timm's): model modules register themselves, the registry
    imports no task, so building or loading a network never loads a trainer or a pipeline."""
    code = (
        "import sys, geobert.models as m;"
        "m.create_model('geobert_s', bands=['B02', 'B03', 'B04', 'B08']);"
        "from geobert.models.checkpoint import load_checkpoint;"
        "from geobert.weights import pretrained_encoder_path as p;"
        "[load_checkpoint(p(n)) for n in ('changenet_s_oscd', 'landcover_s_bb')];"
        "bad = sorted(k for k in sys.modules if k.startswith("
        "('geobert.change', 'geobert.landcover', 'geobert.training', 'geobert.cli')));"
        "print(bad); sys.exit(1 if bad else 0)"
    )
    _run_clean(code)


def test_no_import_cycle_between_tiles_modules() -> None:
    """No tiles module imports one that imports it back (not even inside a function)."""
    mods = {p.stem: p.read_text() for p in (ROOT / "tiles").glob("*.py")}
    edges = {
        a: {
            b
            for b in mods
            if b != a and re.search(rf"from tiles\.{b} import|import tiles\.{b}\b", src)
        }
        for a, src in mods.items()
    }
    cycles = [(a, b) for a in edges for b in edges[a] if a in edges.get(b, set())]
    assert cycles == [], cycles
