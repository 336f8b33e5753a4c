"""QGIS style sidecars (``NAME.qml`` beside ``NAME.tif``) for paletted rasters.

GeoTIFF colour tables cannot keep alpha, so "no change" drew opaque black over the basemap and the
legend showed class numbers. QGIS loads ``NAME.qml`` as a raster's default style when the file is
opened (drag and drop, Add Raster Layer), so the sidecar gives every user, plugin or not,
transparent classes and the class names in the legend. Plain XML, no QGIS import.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple
from xml.sax.saxutils import quoteattr

__all__ = ["PaletteEntry", "palette_colormap", "palette_qml", "write_palette_qml"]

_HEX = re.compile(r"^#[0-9a-fA-F]{6}$")


class PaletteEntry(NamedTuple):
    """One raster value drawn in one colour (``#rrggbb``), ``alpha`` 0 (transparent)–255."""

    value: int
    color: str
    label: str
    alpha: int = 255


def palette_colormap(entries: Sequence[PaletteEntry]) -> dict[int, tuple[int, int, int, int]]:
    """The same palette as a GeoTIFF colour table (``{value: (r, g, b, a)}``; TIFF drops ``a``).

    >>> palette_colormap([PaletteEntry(1, "#e61919", "change")])
    {1: (230, 25, 25, 255)}
    """
    return {
        int(e.value): (int(e.color[1:3], 16), int(e.color[3:5], 16), int(e.color[5:7], 16), e.alpha)
        for e in entries
    }


def palette_qml(entries: Sequence[PaletteEntry], band: int = 1) -> str:
    """The QML of a paletted renderer over ``band`` (values not listed are not drawn).

    >>> print(palette_qml([PaletteEntry(1, "#e61919", "change")]).splitlines()[5].strip())
    <paletteEntry value="1" color="#e61919" alpha="255" label="change"/>
    """
    for e in entries:
        if not _HEX.match(e.color) or not 0 <= e.alpha <= 255:
            raise ValueError(f"palette entry {e} needs a #rrggbb colour and an alpha in 0–255")
    rows = "\n".join(
        f'        <paletteEntry value="{int(e.value)}" color="{e.color.lower()}" '
        f'alpha="{int(e.alpha)}" label={quoteattr(str(e.label))}/>'
        for e in entries
    )
    return (
        "<!DOCTYPE qgis PUBLIC 'http://mrcc.com/qgis.dtd' 'SYSTEM'>\n"
        '<qgis version="3.22" styleCategories="Symbology">\n'
        "  <pipe>\n"
        f'    <rasterrenderer type="paletted" band="{band}" opacity="1" alphaBand="-1">\n'
        "      <colorPalette>\n"
        f"{rows}\n"
        "      </colorPalette>\n"
        "    </rasterrenderer>\n"
        "  </pipe>\n"
        "</qgis>\n"
    )


def write_palette_qml(
    raster: str | os.PathLike[str], entries: Sequence[PaletteEntry], band: int = 1
) -> Path:
    """Write ``raster``'s sidecar style (same name, ``.qml``); returns its path."""
    path = Path(raster).with_suffix(".qml")
    path.write_text(palette_qml(entries, band), encoding="utf-8")
    return path
