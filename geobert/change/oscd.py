"""The Onera Satellite Change Detection (OSCD) dataset, with its quirks handled in one place.

Layout: ``images/<city>/imgs_1/*.tif``, ``images/<city>/imgs_2/*.tif`` (13 single-band files per
date, native 10/20/60 m, EPSG:4326) and ``labels/<city>/<city>-cm.tif``. Labels are uint8 with
**1 = no change, 2 = change**, carry **no CRS or transform**, and are pixel-aligned with the first
date's 10 m bands (B02); :func:`read_label` returns them as 0/1 on that grid.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rasterio
from rasterio.errors import NotGeoreferencedWarning

from geobert.errors import GeobertError, SceneNotFoundError
from tiles.scene import GridSpec, Scene, open_scene

__all__ = ["OscdCity", "list_cities", "read_label"]


@dataclass(frozen=True)
class OscdCity:
    """Paths of one OSCD city; ``label`` is None for the cities without public labels."""

    name: str
    before: Path
    after: Path
    label: Path | None

    def scenes(self) -> tuple[Scene, Scene]:
        return open_scene(self.before), open_scene(self.after)


def list_cities(root: str | os.PathLike[str], *, labelled_only: bool = False) -> list[OscdCity]:
    """Cities under an OSCD root (the folder holding ``images/`` and ``labels/``), by name."""
    root = Path(root)
    images = root / "images"
    if not images.is_dir():
        raise SceneNotFoundError(
            f"{root} is not an OSCD folder: {images} is missing (expected images/<city>/imgs_1)"
        )
    cities = []
    for city in sorted(p for p in images.iterdir() if p.is_dir()):
        label = root / "labels" / city.name / f"{city.name}-cm.tif"
        c = OscdCity(
            city.name, city / "imgs_1", city / "imgs_2", label if label.is_file() else None
        )
        if c.label is not None or not labelled_only:
            cities.append(c)
    return cities


def read_label(path: str | os.PathLike[str], grid: GridSpec) -> np.ndarray:
    """Read an OSCD change map as uint8 0 (no change) / 1 (change) on ``grid``.

    Raises:
        GeobertError: the label's size differs from the grid or holds values other than 1 and 2.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)  # OSCD labels have no CRS
        with rasterio.open(path) as ds:
            label = ds.read(1)
    if label.shape != grid.shape:
        raise GeobertError(
            f"{path} is {label.shape[1]}×{label.shape[0]} px but the first date's 10 m grid is "
            f"{grid.width}×{grid.height} px; OSCD labels must align with imgs_1's B02"
        )
    values = set(np.unique(label).tolist())
    if not values <= {1, 2}:
        raise GeobertError(f"{path} holds values {sorted(values)}; OSCD labels use 1 and 2")
    return np.asarray(label == 2, dtype=np.uint8)
