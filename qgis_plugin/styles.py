"""Renderers for geobert's outputs: what a planner expects to see when a result is added."""

import json
from pathlib import Path

from qgis.core import (
    QgsCategorizedSymbolRenderer,
    QgsColorRampShader,
    QgsFillSymbol,
    QgsPalettedRasterRenderer,
    QgsPalLayerSettings,
    QgsRasterLayer,
    QgsRasterShader,
    QgsRendererCategory,
    QgsSingleBandPseudoColorRenderer,
    QgsTextFormat,
    QgsVectorLayer,
    QgsVectorLayerSimpleLabeling,
)
from qgis.PyQt.QtGui import QColor

CHANGE_RED = QColor(230, 25, 25, 255)


def style_change_mask(layer: QgsRasterLayer) -> None:
    """0 transparent, 1 red (nodata stays transparent)."""
    classes = [
        QgsPalettedRasterRenderer.Class(0, QColor(0, 0, 0, 0), "no change"),
        QgsPalettedRasterRenderer.Class(1, CHANGE_RED, "change"),
    ]
    layer.setRenderer(QgsPalettedRasterRenderer(layer.dataProvider(), 1, classes))
    layer.triggerRepaint()


def style_from_sidecar(layer: QgsRasterLayer) -> bool:
    """Load the style geobert wrote beside the raster (``NAME.qml``: the change probability's
    ramp, fixed to the run's threshold and the model's highest value); False when there is none
    (outputs of an older geobert) or it does not load."""
    qml = Path(layer.source()).with_suffix(".qml")
    if not qml.is_file():
        return False
    _message, ok = layer.loadNamedStyle(str(qml))
    layer.triggerRepaint()
    return bool(ok)


def style_probability(layer: QgsRasterLayer) -> None:
    """A graduated ramp over 0…1: transparent blue → yellow → red."""
    fn = QgsColorRampShader(0.0, 1.0)
    fn.setColorRampType(QgsColorRampShader.Interpolated)
    fn.setColorRampItemList(
        [
            QgsColorRampShader.ColorRampItem(0.0, QColor(43, 131, 186, 0), "0"),
            QgsColorRampShader.ColorRampItem(0.5, QColor(255, 255, 191, 200), "0.5"),
            QgsColorRampShader.ColorRampItem(1.0, QColor(215, 25, 28, 255), "1"),
        ]
    )
    shader = QgsRasterShader()
    shader.setRasterShaderFunction(fn)
    renderer = QgsSingleBandPseudoColorRenderer(layer.dataProvider(), 1, shader)
    renderer.setClassificationMin(0.0)
    renderer.setClassificationMax(1.0)
    layer.setRenderer(renderer)
    layer.triggerRepaint()


#: area labels only from this scale inwards (1:25 000): thousands of labels over a whole scene
#: are unreadable and slow to draw
LABEL_MIN_SCALE = 25000.0


def _label_area(layer: QgsVectorLayer, expression: str) -> None:
    settings = QgsPalLayerSettings()
    settings.fieldName = expression
    settings.isExpression = True
    settings.scaleVisibility = True
    settings.minimumScale = LABEL_MIN_SCALE  # the most zoomed-out scale that shows labels
    settings.maximumScale = 0.0
    fmt = QgsTextFormat()
    fmt.setSize(8)
    settings.setFormat(fmt)
    layer.setLabeling(QgsVectorLayerSimpleLabeling(settings))
    layer.setLabelsEnabled(True)


def style_change_polygons(layer: QgsVectorLayer) -> None:
    """Red outlines, labelled with their area in hectares."""
    symbol = QgsFillSymbol.createSimple(
        {"color": "230,25,25,60", "outline_color": "230,25,25,255", "outline_width": "0.4"}
    )
    layer.renderer().setSymbol(symbol)
    _label_area(layer, "format_number(\"area_ha\", 2) || ' ha'")
    layer.triggerRepaint()
    layer.emitStyleChanged()  # the legend's swatch follows (it kept the random colour)


def landcover_classes(layer: QgsRasterLayer) -> list[tuple[int, str, str]]:
    """``(code, name, #rrggbb)`` from the class names and colours geobert writes in metadata."""
    from osgeo import gdal

    ds = gdal.Open(layer.source())
    names = json.loads(ds.GetMetadataItem("class_names") or "[]")
    colors = json.loads(ds.GetMetadataItem("class_colors") or "[]")
    return [(i, n, c) for i, (n, c) in enumerate(zip(names, colors, strict=False))]


def style_landcover(layer: QgsRasterLayer) -> None:
    """Paletted with the model's class colours and names."""
    classes = [
        QgsPalettedRasterRenderer.Class(code, QColor(color), name)
        for code, name, color in landcover_classes(layer)
    ]
    layer.setRenderer(QgsPalettedRasterRenderer(layer.dataProvider(), 1, classes))
    layer.triggerRepaint()


def style_landcover_polygons(layer: QgsVectorLayer, colors: dict[str, str]) -> None:
    """Categorised by ``class`` with the model's colours, labelled with their area."""
    categories = []
    for name, color in colors.items():
        symbol = QgsFillSymbol.createSimple(
            {"color": QColor(color).name(), "outline_color": "60,60,60,255", "outline_width": "0.2"}
        )
        categories.append(QgsRendererCategory(name, symbol, name))
    layer.setRenderer(QgsCategorizedSymbolRenderer("class", categories))
    _label_area(layer, "format_number(\"area_ha\", 1) || ' ha'")
    layer.triggerRepaint()
    layer.emitStyleChanged()
