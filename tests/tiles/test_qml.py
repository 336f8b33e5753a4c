"""QGIS palette sidecars: well-formed XML QGIS reads (the real-QGIS check is in tests/qgis)."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from tiles.qml import PaletteEntry, palette_colormap, palette_qml, write_palette_qml


def test_palette_round_trips_through_an_xml_parser(tmp_path: Path) -> None:
    entries = [
        PaletteEntry(0, "#000000", "no change", alpha=0),
        PaletteEntry(3, "#1A2B3C", 'built-up & "urban" <dense>'),
    ]
    path = write_palette_qml(tmp_path / "change.tif", entries)
    assert path == tmp_path / "change.qml"
    root = ET.fromstring(path.read_text(encoding="utf-8").split("\n", 1)[1])  # after DOCTYPE
    renderer = root.find("pipe/rasterrenderer")
    assert (
        renderer is not None and renderer.get("type") == "paletted" and renderer.get("band") == "1"
    )
    got = [(e.get("value"), e.get("color"), e.get("alpha"), e.get("label"))
           for e in renderer.iter("paletteEntry")]  # fmt: skip
    assert got == [
        ("0", "#000000", "0", "no change"),
        ("3", "#1a2b3c", "255", 'built-up & "urban" <dense>'),
    ]
    assert palette_colormap(entries) == {0: (0, 0, 0, 0), 3: (26, 43, 60, 255)}


@pytest.mark.parametrize(
    "bad",
    [
        PaletteEntry(1, "red", "x"),
        PaletteEntry(1, "#ff0000", "x", 256),
        PaletteEntry(1, "#ff0000", "x", -1),
    ],
)
def test_bad_colours_are_refused(bad: PaletteEntry) -> None:
    with pytest.raises(ValueError, match="#rrggbb colour and an alpha"):
        palette_qml([bad])


def test_band_one_unless_told() -> None:
    entries = [PaletteEntry(1, "#ff0000", "x", 255)]
    assert 'band="1"' in palette_qml(entries) and 'band="2"' in palette_qml(entries, band=2)
