#!/usr/bin/env bash
# Build the QGIS plugin zip for "Plugins ▸ Manage and Install ▸ Install from ZIP":
# dist/geobert_qgis.zip holding the folder geobert_qgis/ (metadata.txt, icon, code).
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p dist
rm -f dist/geobert_qgis.zip
python3 - <<'PY'
import re
import tomllib
import zipfile
from pathlib import Path

src = Path("qgis_plugin")
version = tomllib.loads(Path("pyproject.toml").read_text())["project"]["version"]
meta = (src / "metadata.txt").read_text()
if not re.search(rf"^version={re.escape(version)}$", meta, re.M):
    raise SystemExit(f"qgis_plugin/metadata.txt's version differs from pyproject's {version}")
with zipfile.ZipFile("dist/geobert_qgis.zip", "w", zipfile.ZIP_DEFLATED) as zf:
    for p in sorted(src.rglob("*")):
        if p.is_file() and "__pycache__" not in p.parts:
            zf.write(p, Path("geobert_qgis") / p.relative_to(src))
PY
echo "wrote dist/geobert_qgis.zip"
