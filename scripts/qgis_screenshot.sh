#!/usr/bin/env bash
# Run geobert change on the example pair and take a screenshot of QGIS (under Xvfb) with the
# styled results (docs/qgis_change_abudhabi.png; with the probability layer shown instead of
# the mask, docs/qgis_change_probability.png) and of the Change detection dialog
# (docs/qgis_change_dialog.png). Needs qgis, python3-qgis, xvfb (apt) and .venv.
set -euo pipefail
cd "$(dirname "$0")/.."
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
mkdir -p "$WORK/plugins" "$WORK/out" "$WORK/home"
ln -s "$PWD/qgis_plugin" "$WORK/plugins/geobert_qgis"
.venv/bin/python - "$WORK/out/before.tif" <<'PY'
import sys
import rasterio
from rasterio.windows import Window
from tiles import open_scene

s = open_scene("examples/abudhabi/imgs_1")
data, _ = s.read(Window(0, 0, s.grid.width, s.grid.height))
profile = {"driver": "GTiff", "width": s.grid.width, "height": s.grid.height, "count": s.count,
           "dtype": "uint16", "crs": s.grid.crs, "transform": s.grid.transform}
with rasterio.open(sys.argv[1], "w", **profile) as dst:
    dst.write(data.astype("uint16"))
PY
.venv/bin/geobert change examples/abudhabi/imgs_1 examples/abudhabi/imgs_2 -o "$WORK/out" -q
HOME="$WORK/home" QGIS_PLUGINPATH="$WORK/plugins" GEOBERT_SHOT_DIR="$WORK/out" \
    GEOBERT_SHOT_PNG="$PWD/docs/qgis_change_abudhabi.png" \
    GEOBERT_SHOT_PROBABILITY_PNG="$PWD/docs/qgis_change_probability.png" \
    GEOBERT_SHOT_DIALOG_PNG="$PWD/docs/qgis_change_dialog.png" GEOBERT_PYTHON="$PWD/.venv/bin/python" \
    xvfb-run -a -s "-screen 0 1400x900x24" timeout 180 \
    /usr/bin/qgis --nologo --noversioncheck --noplugins --code scripts/qgis_screenshot.py
echo "wrote docs/qgis_change_abudhabi.png, docs/qgis_change_probability.png and docs/qgis_change_dialog.png"
