"""Cut the small real-data crops shipped in ``tests/data/`` and ``examples/`` from the shared data.

Deterministic: fixed windows, lossless formats. Run from the repository root::

    python scripts/cut_real_crops.py --shared ../shared/data

Sources and licences: ``tests/data/README.md`` and ``examples/README.md``.
"""

from __future__ import annotations

import argparse
import math
import shutil
import warnings
from pathlib import Path

import rasterio
from rasterio.windows import Window, from_bounds

ROOT = Path(__file__).resolve().parents[1]
HERE = ROOT / "tests" / "data"
EXAMPLES = ROOT / "examples"


def crop_band_file(
    src_path: Path, dst_path: Path, bounds: tuple[float, ...], **creation: object
) -> None:
    """Crop one band file to the pixels covering ``bounds`` (snapped outward), keeping its grid."""
    with rasterio.open(src_path) as src:
        w = from_bounds(*bounds, transform=src.transform)
        c0, r0 = math.floor(w.col_off + 1e-6), math.floor(w.row_off + 1e-6)
        c1 = math.ceil(w.col_off + w.width - 1e-6)
        r1 = math.ceil(w.row_off + w.height - 1e-6)
        win = Window(c0, r0, c1 - c0, r1 - r0)
        data = src.read(window=win)
        profile = src.profile.copy()
        profile.update(
            width=win.width, height=win.height, transform=src.window_transform(win), **creation
        )
        for key in ("blockxsize", "blockysize", "tiled", "interleave"):
            profile.pop(key, None)
        dst_path.parent.mkdir(parents=True, exist_ok=True)
        with rasterio.open(dst_path, "w", **profile) as dst:
            dst.write(data)


def crop_scene(
    folder: Path,
    out: Path,
    ref_band: str,
    window: Window,
    suffix: str | None = None,
    **creation: object,
) -> None:
    """Crop every band file of ``folder`` to the area of ``window`` on ``ref_band``'s grid
    (written with ``suffix``, default: the source's)."""
    ref = next(p for p in sorted(folder.iterdir()) if p.stem.endswith(ref_band))
    with rasterio.open(ref) as src:
        bounds = rasterio.windows.bounds(window, src.transform)
    for p in sorted(folder.iterdir()):
        if p.suffix.lower() not in (".tif", ".jp2"):
            continue
        crop_band_file(p, out / (p.stem + (suffix or p.suffix)), bounds, **creation)


def clip_polygons(src: Path, folder: Path, name: str) -> None:
    """Copy the polygons of ``src`` that touch the crop in ``folder``, clipped to its bounds."""
    import numpy as np
    import pyogrio.raw
    import shapely

    ref = next(p for p in sorted(folder.iterdir()) if p.stem.endswith("B02"))
    with rasterio.open(ref) as ds:
        box = ds.bounds
    meta, _, wkb, fields = pyogrio.raw.read(src)
    clipped = shapely.clip_by_rect(shapely.from_wkb(wkb), *box)
    multi = []
    for g in clipped:  # polygonal parts only, as MultiPolygons like the source layer
        parts = [p for p in shapely.get_parts(g) if p.geom_type == "Polygon" and p.area > 0]
        multi.append(shapely.MultiPolygon(parts) if parts else None)
    keep = np.array([m is not None for m in multi])
    out = folder / name
    out.unlink(missing_ok=True)
    pyogrio.raw.write(
        str(out),
        geometry=shapely.to_wkb(np.array(multi, dtype=object)[keep]),
        field_data=[f[keep] for f in fields],
        fields=meta["fields"],
        geometry_type="MultiPolygon",
        crs=meta["crs"],
        driver="GPKG",
        dataset_options={"VERSION": "1.2"},
    )


def cut_label(shared: Path, city: str, win: Window, out: Path) -> None:
    """An OSCD change map cut as in the dataset: no CRS, pixel-aligned with imgs_1's B02 crop."""
    label = shared / "oscd" / "labels" / city / f"{city}-cm.tif"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
        with rasterio.open(label) as src:
            cut = src.read(1, window=win)
        out.parent.mkdir(parents=True, exist_ok=True)
        with rasterio.open(
            out, "w", driver="GTiff", width=cut.shape[1], height=cut.shape[0], count=1,
            dtype="uint8", compress="deflate",
        ) as dst:  # fmt: skip
            dst.write(cut, 1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shared", type=Path, default=Path("../shared/data"))
    args = ap.parse_args()
    oscd = args.shared / "oscd" / "images" / "beirut"
    # 96×96 px at 10 m (0.96 km²) over the port of Beirut; the 20 m and 60 m bands keep their native
    # pixel sizes (about 48×48 and 17×17 px) so tests exercise the resampling onto one grid.
    win = Window(600, 300, 96, 96)
    for date in ("imgs_1", "imgs_2"):
        crop_scene(oscd / date, HERE / "oscd_beirut" / date, "B02", win, compress="deflate")
    shutil.copy(oscd / "dates.txt", HERE / "oscd_beirut" / "dates.txt")
    # its change label, cut as in the dataset: no CRS, pixel-aligned with imgs_1's B02 crop
    cut_label(args.shared, "beirut", win, HERE / "oscd_beirut" / "labels" / "beirut-cm.tif")
    # 120×120 px at 10 m of the JPEG 2000 scene (UTM 18N), written losslessly as JPEG 2000
    s2 = args.shared / "sentinel2_scene"
    crop_scene(
        s2,
        HERE / "s2_jp2",
        "B02",
        Window(900, 900, 120, 120),
        driver="JP2OpenJPEG",
        QUALITY="100",
        REVERSIBLE="YES",
    )
    # the example pair for the README's main command: 256×256 px (2.56 km) of Abu Dhabi, where
    # the second date's rasters are a few pixels smaller than the first's (resampled on read)
    city = args.shared / "oscd" / "images" / "abudhabi"
    for date in ("imgs_1", "imgs_2"):
        crop_scene(
            city / date,
            EXAMPLES / "abudhabi" / date,
            "B02",
            Window(448, 320, 256, 256),
            compress="deflate",
            predictor=2,
        )
    shutil.copy(city / "dates.txt", EXAMPLES / "abudhabi" / "dates.txt")
    # the example pair's change label (12 % change), for the test of the shipped model
    cut_label(
        args.shared,
        "abudhabi",
        Window(448, 320, 256, 256),
        HERE / "abudhabi_label" / "abudhabi-cm.tif",
    )
    # Brandenburg (land cover): 192×192 px of the labelled west with seven OSM classes, bands as
    # GeoTIFF, and the OSM land-use polygons that touch it, clipped to it
    bb = args.shared / "landcover_brandenburg"
    gtiff = {"driver": "GTiff", "compress": "deflate", "predictor": 2, "suffix": ".tif"}
    crop_scene(bb, HERE / "brandenburg", "B02", Window(672, 288, 192, 192), **gtiff)
    clip_polygons(bb / "landuse_west.gpkg", HERE / "brandenburg", "landuse.gpkg")
    # the land-cover example: 384×384 px of the scene's east, where no training polygon lies
    crop_scene(bb, EXAMPLES / "brandenburg", "B02", Window(1100, 192, 384, 384), **gtiff)
    # Landsat 7 RGB with nodata 0 along the scene edge
    src = args.shared / "rasterio_samples" / "RGB.byte.tif"
    with rasterio.open(src) as ds:
        win = Window(0, 200, 200, 160)
        profile = ds.profile.copy()
        profile.update(
            width=win.width,
            height=win.height,
            transform=ds.window_transform(win),
            compress="deflate",
        )
        for key in ("blockxsize", "blockysize", "tiled", "interleave"):
            profile.pop(key, None)
        with rasterio.open(HERE / "rgb_byte_edge.tif", "w", **profile) as dst:
            dst.write(ds.read(window=win))


if __name__ == "__main__":
    main()
