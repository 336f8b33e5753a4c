"""geobert's tiling engine: scenes, tile grids, threaded or Dask execution, blending, raster output.

This package knows numpy, rasterio and dask; it never imports torch or QGIS.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

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

if TYPE_CHECKING:
    from tiles.engine import EngineConfig, InputSample, RunReport, map_tiles, map_tiles_to_raster
    from tiles.grid import TileGrid
    from tiles.pair import ScenePair, align_pair
    from tiles.progress import CallbackProgress, Progress
    from tiles.scene import GridSpec, Scene, open_scene
    from tiles.writer import RasterWriter

# The rest loads on first use (rasterio and dask take ~0.5 s to import): ``import tiles.errors``
# (what every error class needs) stays instant, so a command line is inside its own error
# handling — Ctrl-C included — before anything heavy loads.
_LAZY = {
    "EngineConfig": "tiles.engine",
    "InputSample": "tiles.engine",
    "RunReport": "tiles.engine",
    "map_tiles": "tiles.engine",
    "map_tiles_to_raster": "tiles.engine",
    "TileGrid": "tiles.grid",
    "ScenePair": "tiles.pair",
    "align_pair": "tiles.pair",
    "CallbackProgress": "tiles.progress",
    "Progress": "tiles.progress",
    "GridSpec": "tiles.scene",
    "Scene": "tiles.scene",
    "open_scene": "tiles.scene",
    "RasterWriter": "tiles.writer",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'tiles' has no attribute {name!r}")


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
