"""geobert's tiling engine: scenes, tile grids, threaded or Dask execution, blending, raster output.

This package knows numpy, rasterio and dask; it never imports torch or QGIS.
"""

from __future__ import annotations

from tiles.engine import EngineConfig, InputSample, RunReport, map_tiles, map_tiles_to_raster
from tiles.errors import (
    BandMismatchError,
    Cancelled,
    GeobertError,
    MissingCRSError,
    NoOverlapError,
    OutputExistsError,
    OutputNotWritableError,
    RasterReadError,
    SceneNotFoundError,
)
from tiles.grid import TileGrid
from tiles.pair import ScenePair, align_pair
from tiles.progress import CallbackProgress, Progress
from tiles.scene import GridSpec, Scene, open_scene
from tiles.writer import RasterWriter

__all__ = [
    "BandMismatchError",
    "CallbackProgress",
    "Cancelled",
    "EngineConfig",
    "GeobertError",
    "GridSpec",
    "InputSample",
    "MissingCRSError",
    "NoOverlapError",
    "OutputExistsError",
    "OutputNotWritableError",
    "Progress",
    "RasterReadError",
    "RasterWriter",
    "RunReport",
    "Scene",
    "SceneNotFoundError",
    "ScenePair",
    "TileGrid",
    "align_pair",
    "map_tiles",
    "map_tiles_to_raster",
    "open_scene",
]
