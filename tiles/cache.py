"""Size GDAL's block cache to the tiles in flight, so each input block is decoded about once.

GDAL keeps decoded blocks of the files it reads in one process-wide cache (``GDAL_CACHEMAX``;
geobert's CLI starts it small, 64 MB, to keep memory down). Tiles overlap and are smaller than
the 512–1024 px storage blocks of typical GeoTIFFs and JPEG 2000 files, so neighbouring tiles read
the same blocks; if those blocks do not fit in the cache they are decoded again and again (on a
13-band pair this cost a fifth of the run and ate the second core). The engine reads tiles in block
order (:meth:`tiles.grid.TileGrid.block_order`) and, before a run, raises the cache — never lowers
it — to what the tiles in flight touch: two block rows by the columns in flight, per file.
"""

from __future__ import annotations

import math
import os
import threading

import rasterio.env

__all__ = [
    "block_cache_need",
    "configured_cache_bytes",
    "current_cache_bytes",
    "grow_block_cache",
    "physical_ram",
    "reader_block_rows",
    "set_block_cache",
]

_lock = threading.Lock()
_current: int | None = None  # what this process set last, if anything


def physical_ram() -> int:
    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):  # not POSIX
        return 8 << 30


def configured_cache_bytes(value: str | None = None, ram: int | None = None) -> int:
    """GDAL's block-cache limit for a ``GDAL_CACHEMAX`` value: megabytes below 100000, bytes
    above, or a percentage of RAM; GDAL's default is 5 % of RAM.

    >>> configured_cache_bytes("64"), configured_cache_bytes("200000000")
    (67108864, 200000000)
    >>> configured_cache_bytes("10%", ram=1000), configured_cache_bytes(None, ram=1000)
    (100, 50)
    """
    ram = physical_ram() if ram is None else ram
    value = (value or "5%").strip()
    try:
        if value.endswith("%"):
            return int(float(value[:-1]) / 100 * ram)
        n = float(value)
    except ValueError:
        return 64 << 20
    return int(n * (1 << 20)) if n < 100000 else int(n)


def reader_block_rows(reader: object) -> int:
    """The reader's storage block height in rows (its optional ``block_rows()``), else 1."""
    hint = getattr(reader, "block_rows", None)
    return max(1, int(hint())) if callable(hint) else 1


def block_cache_need(
    reader: object, block_rows: int, tile_px: int, stride_px: int, tiles_in_flight: int
) -> int | None:
    """Bytes of block cache for the tiles in flight of ``reader`` (None if it cannot tell).

    Tiles run column by column within a block row (``block_rows`` high, see
    :func:`reader_block_rows`), so the ones in flight cover that block row plus a tile, over
    ``tiles_in_flight / tile rows per group`` columns.
    """
    bytes_for = getattr(reader, "block_cache_bytes", None)
    if not callable(bytes_for):
        return None
    per_group = max(1, math.ceil(block_rows / stride_px))
    cols = math.ceil(tiles_in_flight / per_group)
    return int(bytes_for(block_rows + tile_px, cols * stride_px + tile_px))


def current_cache_bytes() -> int:
    """This process's GDAL block-cache limit in bytes."""
    if _current is not None:
        return _current
    value = rasterio.env.get_gdal_config("GDAL_CACHEMAX")  # rasterio gives bytes for "64"
    if isinstance(value, int):
        return value
    return configured_cache_bytes(None if value is None else str(value))


def grow_block_cache(nbytes: int | None) -> int | None:
    """Raise this process's GDAL block cache to ``nbytes`` (capped at 1/8 of RAM) if it is
    smaller; return the previous limit when it changed, for :func:`set_block_cache`."""
    global _current
    if nbytes is None:
        return None
    nbytes = min(nbytes, physical_ram() // 8)
    with _lock:
        now = (
            _current
            if _current is not None
            else configured_cache_bytes(os.environ.get("GDAL_CACHEMAX"))
        )
        if nbytes <= now:
            return None
        rasterio.env.set_gdal_config("GDAL_CACHEMAX", int(nbytes))  # an int is bytes
        _current = nbytes
        return now


def set_block_cache(nbytes: int) -> None:
    """Set this process's GDAL block cache (used to put back what :func:`grow_block_cache` saw)."""
    global _current
    with _lock:
        rasterio.env.set_gdal_config("GDAL_CACHEMAX", int(nbytes))
        _current = nbytes
