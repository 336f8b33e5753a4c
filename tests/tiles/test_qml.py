"""QGIS style sidecars (palettes, ramps): well-formed XML that QGIS reads (the real-QGIS checks
are in tests/qgis)."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from tiles.qml import (
    PaletteEntry,
    RampStop,
    palette_colormap,
    palette_qml,
    ramp_qml,
    write_palette_qml,
    write_ramp_qml,
)


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


def test_ramp_round_trips_through_an_xml_parser(tmp_path: Path) -> None:
    stops = [
        RampStop(0.0, "#2B83BA", "0", alpha=0),
        RampStop(0.1434, "#ffffbf", "0.1434 <threshold>", alpha=200),
        RampStop(0.4622, "#d7191c", "0.46"),
    ]
    path = write_ramp_qml(tmp_path / "change_probability.tif", stops)
    assert path == tmp_path / "change_probability.qml"
    root = ET.fromstring(path.read_text(encoding="utf-8").split("\n", 1)[1])
    renderer = root.find("pipe/rasterrenderer")
    assert renderer is not None and renderer.get("type") == "singlebandpseudocolor"
    # a fixed range: QGIS would otherwise stretch the ramp to the layer's statistics
    assert (renderer.get("classificationMin"), renderer.get("classificationMax")) == (
        "0.0",
        "0.4622",
    )
    assert renderer.findtext("minMaxOrigin/limits") == "None"
    got = [(e.get("value"), e.get("color"), e.get("alpha"), e.get("label"))
           for e in renderer.iter("item")]  # fmt: skip
    assert got == [
        ("0.0", "#2b83ba", "0", "0"),
        ("0.1434", "#ffffbf", "200", "0.1434 <threshold>"),
        ("0.4622", "#d7191c", "255", "0.46"),
    ]


@pytest.mark.parametrize(
    ("stops", "message"),
    [
        ([RampStop(0.0, "#000000", "0")], "at least two stops"),
        ([RampStop(0.5, "#000000", "a"), RampStop(0.5, "#ffffff", "b")], "must increase"),
        ([RampStop(0.5, "#000000", "a"), RampStop(0.2, "#ffffff", "b")], "must increase"),
        ([RampStop(0.0, "black", "a"), RampStop(1.0, "#ffffff", "b")], "#rrggbb colour"),
        ([RampStop(0.0, "#000000", "a"), RampStop(float("nan"), "#ffffff", "b")], "finite"),
    ],
)
def test_bad_ramps_are_refused(stops: list[RampStop], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ramp_qml(stops)
