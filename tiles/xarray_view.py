"""Scenes and results as dask-backed :class:`xarray.DataArray` (rioxarray conventions).

For notebook users: ``to_dataarray(scene)`` gives ``(band, y, x)`` with pixel-centre coordinates,
band names, and a ``spatial_ref`` coordinate holding the CRS WKT and GDAL geotransform, so
``rioxarray`` (if installed) recognises ``.rio.crs`` and ``.rio.transform()``. Each chunk is read
lazily through the scene's :class:`~tiles.scene.Reader`; the block finds its own window from its
location. The tiling engine never goes through this path.
"""

from __future__ import annotations

import os
from typing import Any

import dask.array as da
import numpy as np
import xarray as xr
from rasterio.windows import Window

from tiles.scene import Reader, open_scene

__all__ = ["open_dataarray", "to_dataarray"]


def _read_block(reader: Reader, masked: bool, fill: float, block_info: Any = None) -> np.ndarray:
    (_, _), (r0, r1), (c0, c1) = block_info[None]["array-location"]
    data, valid = reader.read(Window(c0, r0, c1 - c0, r1 - r0))
    if masked:
        data = data.astype(np.float32, copy=False)
        data[:, ~valid] = np.nan
    else:
        data[:, ~valid] = fill
    return data


def to_dataarray(reader: Reader, *, chunks: int = 1024, masked: bool = True) -> xr.DataArray:
    """A lazy ``(band, y, x)`` DataArray over ``reader``.

    Args:
        reader: A scene, a scene pair, or any :class:`~tiles.scene.Reader`.
        chunks: Chunk edge in pixels along y and x (all bands in one chunk).
        masked: Return float32 with NaN where pixels are invalid; otherwise the native dtype with
            invalid pixels set to the scene's nodata value (0 if it has none), recorded in
            ``_FillValue``.
    """
    grid = reader.grid
    h, w = grid.shape
    t = grid.transform
    fill = getattr(reader, "nodata", None)
    fill = 0 if fill is None else fill
    dtype = np.float32 if masked else np.dtype(reader.dtype)
    nb = len(reader.band_names)
    arr = da.map_blocks(
        _read_block,
        reader,
        masked,
        fill,
        dtype=dtype,
        chunks=((nb,), _split(h, chunks), _split(w, chunks)),
        meta=np.empty((0, 0, 0), dtype=dtype),
    )
    x = t.c + t.a * (np.arange(w) + 0.5)
    y = t.f + t.e * (np.arange(h) + 0.5)
    spatial_ref = xr.Variable(
        (),
        0,
        attrs={
            "crs_wkt": grid.crs.to_wkt(),
            "spatial_ref": grid.crs.to_wkt(),
            "GeoTransform": " ".join(str(v) for v in (t.c, t.a, t.b, t.f, t.d, t.e)),
        },
    )
    attrs: dict[str, Any] = {"long_name": tuple(reader.band_names), "grid_mapping": "spatial_ref"}
    if not masked:
        attrs["_FillValue"] = fill
    return xr.DataArray(
        arr,
        dims=("band", "y", "x"),
        coords={"band": list(reader.band_names), "y": y, "x": x, "spatial_ref": spatial_ref},
        attrs=attrs,
    )


def open_dataarray(
    path: str | os.PathLike[str], *, chunks: int = 1024, masked: bool = True
) -> xr.DataArray:
    """Open a raster (e.g. a geobert result) or band folder lazily as a DataArray."""
    return to_dataarray(open_scene(path), chunks=chunks, masked=masked)


def _split(n: int, size: int) -> tuple[int, ...]:
    full, rest = divmod(n, size)
    return (size,) * full + ((rest,) if rest else ())
