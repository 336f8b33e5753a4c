"""QGIS style sidecars (``NAME.qml`` beside ``NAME.tif``): paletted rasters and colour ramps.

GeoTIFF colour tables cannot keep alpha, so "no change" drew opaque black over the basemap and the
legend showed class numbers. QGIS loads ``NAME.qml`` as a raster's default style when the file is
opened (drag and drop, Add Raster Layer), so the sidecar gives every user, plugin or not,
transparent classes and the class names in the legend. A ramp sidecar does the same for a
continuous layer whose meaningful range is not 0–1 (a calibrated change probability never
reaches 1: a 0–1 ramp drew it faint everywhere). Plain XML, no QGIS import.
"""

from __future__ import annotations

import itertools
import math
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple
from xml.sax.saxutils import quoteattr

__all__ = [
    "PaletteEntry",
    "RampStop",
    "palette_colormap",
    "palette_qml",
    "ramp_qml",
    "write_palette_qml",
    "write_ramp_qml",
]

_HEX = re.compile(r"^#[0-9a-fA-F]{6}$")


class PaletteEntry(NamedTuple):
    """One raster value drawn in one colour (``#rrggbb``), ``alpha`` 0 (transparent)–255."""

    value: int
    color: str
    label: str
    alpha: int = 255


class RampStop(NamedTuple):
    """A value of a continuous ramp and its colour (``#rrggbb``, ``alpha`` 0–255); colours are
    interpolated between stops, and values beyond the end stops take the end colours."""

    value: float
    color: str
    label: str
    alpha: int = 255


def _check_colour(entry: PaletteEntry | RampStop) -> None:
    if not _HEX.match(entry.color) or not 0 <= entry.alpha <= 255:
        raise ValueError(f"{entry} needs a #rrggbb colour and an alpha in 0–255")


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
        _check_colour(e)
    rows = "\n".join(
        f'        <paletteEntry value="{int(e.value)}" color="{e.color.lower()}" '
        f'alpha="{int(e.alpha)}" label={quoteattr(str(e.label))}/>'
        for e in entries
    )
    return _document(
        f'    <rasterrenderer type="paletted" band="{band}" opacity="1" alphaBand="-1">\n'
        "      <colorPalette>\n"
        f"{rows}\n"
        "      </colorPalette>\n"
        "    </rasterrenderer>\n"
    )


def ramp_qml(stops: Sequence[RampStop], band: int = 1) -> str:
    """The QML of a pseudocolour renderer over ``band``: colours interpolated between the
    stops (values strictly increasing), a fixed range from the first stop to the last (QGIS does
    not stretch it to the layer's statistics), and a legend entry per stop with its label (a
    continuous legend would show only the two ends).

    >>> qml = ramp_qml([RampStop(0.0, "#2b83ba", "0", 0), RampStop(0.5, "#d7191c", "0.5")])
    >>> print(qml.splitlines()[8].strip())
    <item value="0.5" color="#d7191c" alpha="255" label="0.5"/>
    """
    if len(stops) < 2:
        raise ValueError("a colour ramp needs at least two stops")
    if not all(math.isfinite(e.value) for e in stops):
        raise ValueError(f"ramp stops must be finite numbers: {[e.value for e in stops]}")
    for a, b in itertools.pairwise(stops):
        if not b.value > a.value:
            raise ValueError(f"ramp stops must increase: {a.value!r} then {b.value!r}")
    for stop in stops:
        _check_colour(stop)
    lo, hi = repr(float(stops[0].value)), repr(float(stops[-1].value))
    rows = "\n".join(
        f'          <item value="{float(e.value)!r}" color="{e.color.lower()}" '
        f'alpha="{int(e.alpha)}" label={quoteattr(str(e.label))}/>'
        for e in stops
    )
    return _document(
        f'    <rasterrenderer type="singlebandpseudocolor" band="{band}" opacity="1" '
        f'alphaBand="-1" classificationMin="{lo}" classificationMax="{hi}">\n'
        "      <minMaxOrigin><limits>None</limits></minMaxOrigin>\n"
        "      <rastershader>\n"
        f'        <colorrampshader colorRampType="INTERPOLATED" classificationMode="1" clip="0" '
        f'minimumValue="{lo}" maximumValue="{hi}">\n'
        f"{rows}\n"
        '          <rampLegendSettings useContinuousLegend="0" orientation="2" direction="0"/>\n'
        "        </colorrampshader>\n"
        "      </rastershader>\n"
        "    </rasterrenderer>\n"
    )


def _document(renderer: str) -> str:
    """A QML style document holding one raster renderer's XML."""
    return (
        "<!DOCTYPE qgis PUBLIC 'http://mrcc.com/qgis.dtd' 'SYSTEM'>\n"
        '<qgis version="3.22" styleCategories="Symbology">\n'
        "  <pipe>\n"
        f"{renderer}"
        "  </pipe>\n"
        "</qgis>\n"
    )


def _write_sidecar(raster: str | os.PathLike[str], qml: str) -> Path:
    path = Path(raster).with_suffix(".qml")
    path.write_text(qml, encoding="utf-8")
    return path


def write_ramp_qml(
    raster: str | os.PathLike[str], stops: Sequence[RampStop], band: int = 1
) -> Path:
    """Write ``raster``'s sidecar colour-ramp style (same name, ``.qml``); returns its path."""
    return _write_sidecar(raster, ramp_qml(stops, band))


def write_palette_qml(
    raster: str | os.PathLike[str], entries: Sequence[PaletteEntry], band: int = 1
) -> Path:
    """Write ``raster``'s sidecar style (same name, ``.qml``); returns its path."""
    return _write_sidecar(raster, palette_qml(entries, band))
