"""Screenshot of the QGIS desktop with geobert change results loaded (for the README).

Run by scripts/qgis_screenshot.sh inside Xvfb: ``qgis --code scripts/qgis_screenshot.py``.
Environment: GEOBERT_SHOT_DIR (a finished ``geobert change`` output folder, plus before.tif),
GEOBERT_SHOT_PNG (where to save), QGIS_PLUGINPATH (with geobert_qgis); with
GEOBERT_SHOT_PROBABILITY_PNG, the same map with the probability layer shown instead of the
mask is saved there; with GEOBERT_SHOT_DIALOG_PNG, the *Change detection* dialog (the geobert
provider registered, its advanced options open) is saved there too.
"""

import os
import sys

from qgis.core import (
    QgsContrastEnhancement,
    QgsMultiBandColorRenderer,
    QgsProject,
    QgsRasterLayer,
    QgsRasterMinMaxOrigin,
    QgsVectorLayer,
)
from qgis.PyQt.QtCore import QTimer
from qgis.utils import iface

d = os.environ["GEOBERT_SHOT_DIR"]
png = os.environ["GEOBERT_SHOT_PNG"]
sys.path.insert(0, os.environ["QGIS_PLUGINPATH"])
from geobert_qgis.algorithms import apply_style  # noqa: E402 - the plugin folder is added above

before = QgsRasterLayer(os.path.join(d, "before.tif"), "abudhabi 2016 (B04, B03, B02)")
before.setRenderer(QgsMultiBandColorRenderer(before.dataProvider(), 4, 3, 2))
before.setContrastEnhancement(
    QgsContrastEnhancement.StretchToMinimumMaximum, QgsRasterMinMaxOrigin.CumulativeCut
)
QgsProject.instance().addMapLayer(before)
prob = os.path.join(d, "change_probability.tif")
polys = os.path.join(d, "change.gpkg") + "|layername=change"
layers = [
    (QgsRasterLayer(prob, "change probability 2016 → 2018"), "probability"),
    (QgsRasterLayer(os.path.join(d, "change.tif"), "change 2016 → 2018"), "change"),
    (QgsVectorLayer(polys, "change polygons 2016 → 2018", "ogr"), "change_polygons"),
]
for layer, kind in layers:
    QgsProject.instance().addMapLayer(layer)
    apply_style(layer, kind)
QgsProject.instance().layerTreeRoot().findLayer(layers[0][0].id()).setItemVisibilityChecked(False)


def shoot():
    iface.mapCanvas().setExtent(before.extent())
    iface.mapCanvas().refreshAllLayers()
    QTimer.singleShot(4000, save)


def save():
    try:
        _save()
    except Exception:  # the log says why; QGIS would otherwise keep running
        import traceback

        traceback.print_exc()
        iface.actionExit().trigger()


def _save():
    iface.mainWindow().grab().save(png)
    probability_png = os.environ.get("GEOBERT_SHOT_PROBABILITY_PNG")
    if not probability_png:
        dialog()
        return
    root = QgsProject.instance().layerTreeRoot()
    for layer, kind in layers:
        node = root.findLayer(layer.id())
        node.setItemVisibilityChecked(kind != "change")
    iface.layerTreeView().collapseAllNodes()
    iface.mapCanvas().refreshAllLayers()

    def grab_probability():
        try:
            iface.mainWindow().grab().save(probability_png)
            dialog()
        except Exception:
            import traceback

            traceback.print_exc()
            iface.actionExit().trigger()

    QTimer.singleShot(4000, grab_probability)


def dialog():
    dialog_png = os.environ.get("GEOBERT_SHOT_DIALOG_PNG")
    if not dialog_png:
        iface.actionExit().trigger()
        return
    import processing
    from geobert_qgis.provider import GeobertProvider
    from processing.core.Processing import Processing
    from qgis.core import QgsApplication

    Processing.initialize()  # --noplugins leaves the Processing framework unloaded
    registry = QgsApplication.processingRegistry()
    if registry.providerById("geobert") is None:
        registry.addProvider(GeobertProvider())
    alg = registry.algorithmById("geobert:change")
    if alg is None:
        raise RuntimeError(f"no geobert:change; providers {[p.id() for p in registry.providers()]}")
    dialog = processing.createAlgorithmDialog(alg.id(), {})
    dialog.resize(900, 860)
    dialog.show()

    def grab_dialog():
        dialog.grab().save(dialog_png)
        dialog.close()
        iface.actionExit().trigger()

    QTimer.singleShot(2500, grab_dialog)


QTimer.singleShot(3000, shoot)
