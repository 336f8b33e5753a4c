"""A one-page HTML change report planners can hand on (``geobert change --zones``).

One self-contained file (no scripts, no network): the map of the change polygons over the zones
with a legend, a scale bar and a north arrow (SVG), the table of changed area per zone, both
acquisition dates, the model and its threshold, and every reason not to trust the result. Print it
from a browser for a PDF.
"""

from __future__ import annotations

import base64
import html
import math
from pathlib import Path
from typing import Any

import numpy as np
import shapely

from tiles.zones import ZoneStats

__all__ = ["write_change_report"]

MAP_PX = 640


def _svg_path(geom: Any, to_px: Any) -> str:
    parts = []
    for poly in getattr(geom, "geoms", [geom]):
        for ring in [poly.exterior, *poly.interiors]:
            xy = to_px(np.asarray(ring.coords))
            parts.append("M" + " L".join(f"{x:.1f},{y:.1f}" for x, y in xy) + " Z")
    return " ".join(parts)


def _nice(length: float) -> float:
    """A round number (1, 2 or 5 × 10ⁿ) at most ``length``."""
    if length <= 0:
        return 0.0
    p = 10.0 ** math.floor(math.log10(length))
    return float(max(m * p for m in (1, 2, 5) if m * p <= length))


def map_svg(
    bounds: tuple[float, float, float, float],
    metres_per_unit: float,
    change: np.ndarray,
    zones: np.ndarray,
) -> str:
    """The map: zones (outlined) and change polygons (red) over the run's extent, with a legend,
    a scale bar and a north arrow (the grid is north-up)."""
    left, bottom, right, top = bounds
    scale = MAP_PX / max(right - left, top - bottom)
    w, h = (right - left) * scale, (top - bottom) * scale

    def to_px(xy: np.ndarray) -> np.ndarray:
        return np.column_stack([(xy[:, 0] - left) * scale, (top - xy[:, 1]) * scale])

    shapes = [
        f'<path d="{_svg_path(g, to_px)}" fill="none" stroke="#1f4e9c" stroke-width="1.5"/>'
        for g in zones
        if g is not None and not shapely.is_empty(g)
    ]
    shapes += [
        f'<path d="{_svg_path(g, to_px)}" fill="#e61919" fill-opacity="0.8" stroke="none"/>'
        for g in change
    ]
    bar_m = _nice((right - left) * metres_per_unit / 4)
    bar_px = bar_m / metres_per_unit * scale
    label = f"{bar_m / 1000:g} km" if bar_m >= 1000 else f"{bar_m:g} m"
    y0 = h + 30
    return f"""<svg xmlns="http://www.w3.org/2000/svg" width="{w:.0f}" height="{h + 60:.0f}"
 viewBox="0 0 {w:.0f} {h + 60:.0f}" font-family="sans-serif" font-size="12">
<rect width="{w:.0f}" height="{h:.0f}" fill="#f4f4f0" stroke="#888"/>
{"".join(shapes)}
<g transform="translate({w - 30:.0f},30)"><path d="M0,-18 L8,8 L0,3 L-8,8 Z" fill="#222"/>
<text x="0" y="22" text-anchor="middle">N</text></g>
<rect x="10" y="{y0:.0f}" width="{bar_px:.1f}" height="6" fill="#222"/>
<text x="10" y="{y0 - 4:.0f}">0</text><text x="{10 + bar_px:.1f}" y="{y0 - 4:.0f}"
 text-anchor="middle">{label}</text>
<rect x="{w - 250:.0f}" y="{y0 - 10:.0f}" width="14" height="10" fill="#e61919"/>
<text x="{w - 230:.0f}" y="{y0:.0f}">change</text>
<rect x="{w - 160:.0f}" y="{y0 - 10:.0f}" width="14" height="10" fill="none" stroke="#1f4e9c"
 stroke-width="1.5"/><text x="{w - 140:.0f}" y="{y0:.0f}">zone</text>
</svg>"""


def write_change_report(
    path: Path,
    summary: dict[str, Any],
    zones: list[ZoneStats],
    svg: str,
    quicklook: Path | None = None,
) -> None:
    """Write ``report.html`` from the run's summary, zone statistics and map."""
    esc = html.escape
    dates = summary.get("dates") or {}
    when = " → ".join(
        (d or {}).get("date", "unknown date") for d in (dates.get("before"), dates.get("after"))
    )
    rows = "".join(
        f"<tr><td>{esc(z.name)}</td><td>{z.analysed_ha:,.2f}</td><td>{z.changed_ha:,.2f}</td>"
        f"<td>{z.changed_percent:.2f}</td><td>{z.nodata_ha:,.2f}</td></tr>"
        for z in zones
    )
    total_a = sum(z.analysed_ha for z in zones)
    total_c = sum(z.changed_ha for z in zones)
    warnings = summary.get("warnings") or []
    caveats = (
        "<ul>" + "".join(f"<li>{esc(w)}</li>" for w in warnings) + "</ul>"
        if warnings
        else "<p>No warnings were raised for this run.</p>"
    )
    look = ""
    if quicklook is not None and quicklook.is_file():
        data = base64.b64encode(quicklook.read_bytes()).decode()
        look = f'<h2>Both dates</h2><img alt="quicklook" src="data:image/png;base64,{data}">'
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Change report {esc(when)}</title>
<style>body{{font-family:sans-serif;max-width:60em;margin:2em auto;color:#222}}
table{{border-collapse:collapse}}td,th{{border:1px solid #bbb;padding:.25em .6em;
text-align:right}}td:first-child,th:first-child{{text-align:left}}img{{max-width:100%}}
.small{{color:#555;font-size:90%}}</style></head><body>
<h1>Change {esc(when)}</h1>
<p>{esc(str(summary.get("before")))} → {esc(str(summary.get("after")))}</p>
{svg}
<h2>Changed area per zone</h2>
<table><tr><th>zone</th><th>analysed (ha)</th><th>changed (ha)</th><th>changed (%)</th>
<th>no data (ha)</th></tr>{rows}
<tr><th>all zones</th><th>{total_a:,.2f}</th><th>{total_c:,.2f}</th>
<th>{100 * total_c / total_a if total_a else 0:.2f}</th><th></th></tr></table>
<p class="small">Analysed: pixels valid in both dates (clouds and nodata excluded) whose centre
lies in the zone. Changed: pixels the model flags (probability above {summary.get("threshold")}).
Ground areas.</p>
<h2>Can this be trusted?</h2>{caveats}
{look}
<p class="small">Model: {esc(str(summary.get("model")))}; threshold {summary.get("threshold")};
precision {esc(str(summary.get("precision")))}. Made by geobert.</p>
</body></html>
"""
    path.write_text(page, encoding="utf-8")
