"""Change detection between two dates of a place, from Python — with a report per zone.

Runs on the shipped example pair (Abu Dhabi, Sentinel-2 L1C, 2016 → 2018) unless given others:

    python examples/change_two_dates.py [BEFORE AFTER] [-o OUTDIR]

BEFORE and AFTER may be rasters, band folders, Sentinel-2 ``.SAFE`` folders or ``.zip`` files,
or STAC items. The zones here are two halves of the scene (west, east), made on the fly; use your
own districts or parcels (any vector format, any CRS) instead.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

HERE = Path(__file__).resolve().parent


def halves(scene: Path, path: Path) -> Path:
    """Two zones, the west and east halves of ``scene``, as a GeoPackage layer in its CRS."""
    import numpy as np
    import pyogrio
    import shapely

    from tiles import open_scene

    grid = open_scene(scene).grid
    left, bottom, right, top = grid.bounds
    mid = (left + right) / 2
    pyogrio.raw.write(
        str(path),
        geometry=shapely.to_wkb([shapely.box(left, bottom, mid, top),
                                 shapely.box(mid, bottom, right, top)]),
        field_data=[np.array(["West", "East"])],
        fields=["name"],
        layer="zones",
        driver="GPKG",
        geometry_type="Polygon",
        crs=grid.crs.to_wkt(),
    )  # fmt: skip
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("before", nargs="?", default=HERE / "abudhabi" / "imgs_1", type=Path)
    ap.add_argument("after", nargs="?", default=HERE / "abudhabi" / "imgs_2", type=Path)
    ap.add_argument("-o", "--outdir", default=Path("out/change_example"), type=Path)
    args = ap.parse_args()

    from geobert.change.pipeline import detect_change

    args.outdir.parent.mkdir(parents=True, exist_ok=True)
    zones = halves(args.before, args.outdir.parent / "zones_example.gpkg")
    summary = detect_change(args.before, args.after, args.outdir, zones=zones, overwrite=True)
    print(f"{summary['polygons']} change polygons, {summary['polygon_area_ha']:.1f} ha")
    for zone in summary["zones"]:
        print(f"  {zone['zone']}: {zone['changed_ha']:.1f} ha ({zone['changed_percent']:.1f} %)")
    for warning in summary["warnings"]:
        print(f"  warning: {warning}")
    print(json.dumps(summary["dates"]))
    print(f"outputs and report.html in {args.outdir}")


if __name__ == "__main__":
    main()
