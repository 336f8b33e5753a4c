"""Spectral indices through the tiling engine: the smallest complete geobert pipeline.

:func:`normalized_difference` computes ``(a - b) / (a + b)`` (NDVI for NIR and red) of one scene,
or its change between two dates (second minus first) on the first date's grid, and writes a
Cloud-Optimized GeoTIFF. It exercises every part of the engine that the model pipelines use: band
files at mixed resolutions, two-date alignment, Dask execution, blending and the COG writer.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tiles import (
    BandMismatchError,
    EngineConfig,
    Progress,
    RunReport,
    map_tiles_to_raster,
    open_scene,
)
from tiles.engine import TileFunction
from tiles.scene import Reader
from tiles.target import GridRequest, place_pair, place_scene
from tiles.writer import check_output_path

__all__ = ["NormalizedDifference", "normalized_difference"]

PathLike = str | os.PathLike[str]


@dataclass(frozen=True)
class NormalizedDifference:
    """Tile-function factory for ``(a - b) / (a + b)``; with ``a2``/``b2`` set, the change
    ``nd(a2, b2) - nd(a, b)`` between two stacked dates."""

    a: int
    b: int
    a2: int | None = None
    b2: int | None = None

    def __call__(self) -> TileFunction:
        def nd(x: np.ndarray, a: int, b: int) -> np.ndarray:
            num = x[:, a] - x[:, b]
            den = x[:, a] + x[:, b]
            return np.asarray(np.divide(num, den, out=np.zeros_like(num), where=den != 0))

        def fn(x: np.ndarray, valid: np.ndarray) -> np.ndarray:
            out = nd(x, self.a, self.b)
            if self.a2 is not None and self.b2 is not None:
                out = nd(x, self.a2, self.b2) - out
            return out[:, None]

        return fn


def normalized_difference(
    scene: PathLike,
    out: PathLike,
    *,
    after: PathLike | None = None,
    band_a: str = "B08",
    band_b: str = "B04",
    nodata: float | None = None,
    overwrite: bool = False,
    config: EngineConfig | None = None,
    progress: Progress | None = None,
    grid: GridRequest | None = None,
    band_names: Sequence[str] | None = None,
) -> RunReport:
    """Write the normalised difference of two bands (default NDVI) as a COG.

    Args:
        scene: Raster file or folder of band files.
        out: Output GeoTIFF path (written only if the run succeeds).
        after: Optional second date; the output is then ``nd(after) - nd(scene)`` on ``scene``'s
            grid, cropped to where both dates exist.
        band_a: Name of the first band (NIR for NDVI; ``B08`` for Sentinel-2).
        band_b: Name of the second band (red; ``B04`` for Sentinel-2).
        nodata: Input value to treat as nodata in addition to the files' own.
        overwrite: Replace an existing output.
        config: Tiling and scheduling.
        progress: Progress and cancellation.
        grid: Output grid (default: ``scene``'s, see above); another CRS or resolution is
            cropped to where the input has data, bounds or a ``like`` grid are kept whole.
        band_names: Names of the bands in file order, for stacks without band names.
    """
    request = grid or GridRequest()
    out = check_output_path(
        out, overwrite=overwrite, inputs=[scene, *([after] if after is not None else [])]
    )
    first = open_scene(scene, nodata=nodata, band_names=band_names)
    _require(first.band_names, (band_a, band_b), Path(scene))
    reader: Reader
    if after is None:
        reader = place_scene(first.select([band_a, band_b]), request, f"{scene}")
        factory = NormalizedDifference(0, 1)
        name = f"nd({band_a},{band_b})"
    else:
        second = open_scene(after, nodata=nodata, band_names=band_names)
        _require(second.band_names, (band_a, band_b), Path(after))
        reader = place_pair(
            first.select([band_a, band_b]), second.select([band_a, band_b]), request
        )
        factory = NormalizedDifference(0, 1, 2, 3)
        name = f"delta_nd({band_a},{band_b})"
    return map_tiles_to_raster(
        reader,
        factory,
        out,
        band_names=(name,),
        dtype="float32",
        nodata=float("nan"),
        overwrite=overwrite,
        tags={"geobert_product": name},
        config=config,
        progress=progress,
    )


def _require(have: tuple[str, ...], need: tuple[str, str], path: Path) -> None:
    missing = [n for n in need if n not in have]
    if missing:
        raise BandMismatchError(
            f"{path} has no band(s) {missing} (it has {list(have)}); name the bands to use with "
            "--band-a/--band-b"
        )
