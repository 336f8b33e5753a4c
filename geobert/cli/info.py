"""``geobert info``: describe a scene or a model."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from geobert.cli.options import add_command
from geobert.errors import GeobertError
from geobert.weights import SHIPPED_MODELS
from tiles.scene import is_gdal_url

if TYPE_CHECKING:
    from geobert.cli.options import Subparsers


def add_info(sub: Subparsers) -> None:
    """Add ``info`` to the commands."""
    p = add_command(
        sub,
        "info",
        help="describe a scene (bands, grid, CRS) or a model (task, bands, training)",
        description="Print the bands, grid, CRS, date and product geobert sees in a scene; or, "
        "for a model file (.safetensors) or a shipped model's name (change, landcover, encoder), "
        "its task, bands and the band sets it also runs on, pixel size, classes, threshold and "
        "what it was trained and validated on.",
    )
    p.add_argument(
        "scene",
        help="raster file, folder of single-band files (e.g. OSCD imgs_1/), Sentinel-2 "
        ".SAFE/.zip, STAC item .json; or a model: a .safetensors file, change, landcover, encoder",
    )
    p.add_argument("--json", action="store_true", help="print JSON instead of text")


def run_info(args: argparse.Namespace) -> int:
    """Print what :func:`add_info`'s arguments describe; returns the exit status."""
    source = str(args.scene)
    if (source in SHIPPED_MODELS and not Path(source).exists()) or source.endswith(".safetensors"):
        _print_info(_model_info(args.scene), args.json)
    elif _missing(source):
        raise GeobertError(
            f"{args.scene} does not exist; pass a scene (raster file, folder of band files, "
            "Sentinel-2 .SAFE/.zip, STAC item .json), a model file (.safetensors) or a shipped "
            f"model's name ({', '.join(SHIPPED_MODELS)})"
        )
    else:
        _print_info(_scene_info(args.scene), args.json)
    return 0


def _missing(source: str) -> bool:
    """True for a local path that does not exist (remote sources — URLs, GDAL's ``/vsi…``
    paths — are left to the reader).

    >>> _missing("no/such/scene.tif"), _missing("/vsis3/bucket/key.tif"), _missing("https://x/a.tif")
    (True, False, False)
    """
    return not is_gdal_url(source) and not Path(source).exists()


def _model_info(name: str) -> dict[str, Any]:
    """A model file's card, or a shipped model's (by its name in ``SHIPPED_MODELS``, where no
    file or folder of that name exists)."""
    from geobert.models.checkpoint import read_card
    from geobert.weights import pretrained_encoder_path

    path = SHIPPED_MODELS.get(name)
    card = read_card(pretrained_encoder_path(path) if path else name)
    return {"model": path or name, **card.describe()}


def _scene_info(source: str) -> dict[str, Any]:
    """A scene's bands, files, grid and, where known, date and product."""
    from tiles import open_scene
    from tiles.dates import acquisition_date
    from tiles.products import read_product
    from tiles.target import pixel_size_m

    scene = open_scene(source)
    g = scene.grid
    info: dict[str, Any] = {
        "bands": list(scene.band_names),
        "files": sorted({b.path for b in scene.bands}),
        "dtype": scene.dtype,
        "width": g.width,
        "height": g.height,
        "crs": g.crs.to_string(),
        "resolution": list(g.res),
        "pixel_m": round(pixel_size_m(g), 2),  # on the ground, at the centre
        "bounds": list(g.bounds),
    }
    when = acquisition_date(source)
    if when is not None:
        info["date"] = f"{when.date} (from {when.source})"
    product = read_product(source)
    if product is not None:
        info["product"] = product.describe()
    return info


def _print_info(info: dict[str, Any], as_json: bool) -> None:
    """``info`` as JSON, or as aligned ``key: value`` lines without the file list."""
    if as_json:
        print(json.dumps(info, indent=2))
        return
    width = max(map(len, info))
    for key, value in info.items():
        if key != "files":
            print(f"{key:>{width}}: {value}")
