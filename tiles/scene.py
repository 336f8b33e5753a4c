"""Multispectral scenes: band files on one target grid, read lazily by window.

A :class:`Scene` is a picklable description (paths, band indices, target grid); pixels are read
on demand with :meth:`Scene.read`, which opens datasets lazily in whichever thread or worker process
calls it. Bands whose native grid differs from the target grid (Sentinel-2's 20 m and 60 m bands,
a second date in another CRS) are read through a GDAL warped view (:class:`rasterio.vrt.WarpedVRT`),
so only the requested window is ever resampled and the whole scene is never in memory.

Arrays on this side are ``(bands, rows, cols)``; validity is a ``(rows, cols)`` boolean mask that is
``False`` wherever any band is nodata, NaN/inf, masked, or outside the band's footprint.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import re
import threading
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal, Protocol, runtime_checkable

import numpy as np
import rasterio
from affine import Affine
from rasterio._err import CPLE_BaseError
from rasterio.crs import CRS
from rasterio.enums import Interleaving, MaskFlags, Resampling
from rasterio.errors import RasterioIOError
from rasterio.vrt import WarpedVRT
from rasterio.windows import Window

from tiles.errors import (
    BandMismatchError,
    MissingCRSError,
    RasterReadError,
    SceneNotFoundError,
    exception_chain,
)

__all__ = [
    "BandSource",
    "GridSpec",
    "Reader",
    "ResamplingName",
    "Scene",
    "band_name_from_path",
    "open_scene",
]

log = logging.getLogger(__name__)

ResamplingName = Literal["nearest", "bilinear", "cubic", "average"]

RASTER_SUFFIXES = (".tif", ".tiff", ".jp2", ".vrt")

#: Largest raster side and pixel count accepted. A header beyond this is corrupt or hostile (a
#: 13-band uint16 scene of 2**34 px is 450 GB); real mosaics that large are tiled first.
MAX_SIDE_PX = 1 << 20
MAX_PIXELS = 1 << 34

# "..._B8A.jp2", "T33UUU_..._B01.tif", "s2_B12.jp2", "B4.TIF" (Landsat), "band_03.tif"
_BAND_RE = re.compile(r"(?:^|[_\-.])(B(?:AND)?_?(\d{1,2})(A?))$", re.IGNORECASE)


BAND_PRESETS = {
    "s2-l1c": ("B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B10", "B11",
               "B12"),
    "s2-l2a": ("B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B11", "B12"),
    "s2-10m": ("B02", "B03", "B04", "B08"),
    "s2-rgbn": ("B04", "B03", "B02", "B08"),
}  # fmt: skip
"""Sentinel-2's usual stack orders, by name: the products' band order (B8A after B08), L2A's
(no B10), the four 10 m bands, natural colour then near infrared."""


def parse_band_names(text: str) -> list[str]:
    """Band names from a preset name (:data:`BAND_PRESETS`) or a comma-separated list.

    >>> parse_band_names("B02, B03,B04"), parse_band_names("S2-10m")
    (['B02', 'B03', 'B04'], ['B02', 'B03', 'B04', 'B08'])
    """
    preset = BAND_PRESETS.get(text.strip().lower())
    names = list(preset) if preset else [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        raise ValueError(
            f"{text!r} names no band; give e.g. B02,B03,B04,B08 or a preset: "
            + ", ".join(BAND_PRESETS)
        )
    return names


def band_name_from_path(path: str | os.PathLike[str]) -> str | None:
    """Band name encoded at the end of a file name, normalised to ``B01``/``B8A`` style.

    >>> band_name_from_path("S2A_OPER_MSI_L1C_TL_EPA__20160929_T36SYC_B8A.tif")
    'B8A'
    >>> band_name_from_path("LC08_L1TP_B4.TIF"), band_name_from_path("scene.tif") is None
    ('B04', True)
    """
    stem = Path(path).name
    for suffix in RASTER_SUFFIXES:
        if stem.lower().endswith(suffix):
            stem = stem[: -len(suffix)]
            break
    m = _BAND_RE.search(stem)
    if m is None:
        return None
    number, suffix = int(m.group(2)), m.group(3).upper()
    # Sentinel-2 spells the narrow NIR band B8A, all others with two digits (B01 … B12)
    return f"B{number}{suffix}" if suffix else f"B{number:02d}"


@dataclass(frozen=True)
class GridSpec:
    """A georeferenced pixel grid: CRS, affine transform and size.

    ``bounds`` are ``(left, bottom, right, top)`` in CRS units.
    """

    crs: CRS
    transform: Affine
    width: int
    height: int

    def __post_init__(self) -> None:
        if self.width < 1 or self.height < 1:
            raise RasterReadError(
                f"grid of {self.width}×{self.height} pixels is empty; a raster needs at least 1×1"
            )

    @property
    def shape(self) -> tuple[int, int]:
        return self.height, self.width

    @property
    def res(self) -> tuple[float, float]:
        """Pixel size (x, y) in CRS units, both positive."""
        return abs(self.transform.a), abs(self.transform.e)

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        left, top = self.transform @ (0, 0)
        right, bottom = self.transform @ (self.width, self.height)
        return min(left, right), min(bottom, top), max(left, right), max(bottom, top)

    def window_transform(self, window: Window) -> Affine:
        return self.transform @ Affine.translation(window.col_off, window.row_off)

    def crop(self, window: Window) -> GridSpec:
        """The sub-grid covered by ``window`` (same pixel lattice, smaller extent)."""
        return GridSpec(
            self.crs, self.window_transform(window), int(window.width), int(window.height)
        )

    def coarsened(self, factor: int) -> GridSpec:
        """The grid of ``factor`` × ``factor`` blocks of this one (same origin; the last row and
        column of blocks may reach past the edge).

        >>> from rasterio.crs import CRS
        >>> g = GridSpec(CRS.from_epsg(32633), Affine(10, 0, 0, 0, -10, 0), 100, 65)
        >>> c = g.coarsened(32); (c.width, c.height, c.res)
        (4, 3, (320.0, 320.0))
        """
        return GridSpec(
            self.crs,
            self.transform @ Affine.scale(factor),
            -(-self.width // factor),
            -(-self.height // factor),
        )

    def offset_in(self, other: GridSpec) -> tuple[int, int] | None:
        """``(col, row)`` of this grid's origin in ``other`` if this grid is a pixel-aligned
        sub-grid of ``other`` (same CRS and pixel size, whole-pixel offset, inside it), else None.
        """
        offset = self.lattice_offset(other)
        if offset is None:
            return None
        ci, ri = offset
        if ci < 0 or ri < 0 or ci + self.width > other.width or ri + self.height > other.height:
            return None
        return ci, ri

    def lattice_offset(self, other: GridSpec) -> tuple[int, int] | None:
        """``(col, row)`` of this grid's origin in ``other``'s pixels if both grids share one
        pixel lattice (same CRS and pixel size, whole-pixel offset), wherever they lie; else
        None.

        >>> a = GridSpec(CRS.from_epsg(32633), Affine(10, 0, 1000, 0, -10, 5000), 4, 4)
        >>> b = GridSpec(CRS.from_epsg(32633), Affine(10, 0, 950, 0, -10, 5020), 4, 4)
        >>> a.lattice_offset(b), a.offset_in(b)
        ((5, 2), None)
        """
        if self.crs != other.crs:
            return None
        a, o = self.transform, other.transform
        px = max(abs(o.a), abs(o.e))
        if abs(a.a - o.a) > 1e-9 * px or abs(a.e - o.e) > 1e-9 * px or a.b or a.d or o.b or o.d:
            return None
        col, row = (a.c - o.c) / o.a, (a.f - o.f) / o.e
        ci, ri = round(col), round(row)
        if abs(col - ci) > 1e-6 or abs(row - ri) > 1e-6:
            return None
        return ci, ri

    def same_as(self, other: GridSpec, tol: float = 1e-9) -> bool:
        """True if both grids put every pixel at the same place."""
        return (
            self.crs == other.crs
            and self.shape == other.shape
            and self.transform.almost_equals(other.transform, precision=tol * max(self.res))
        )


@dataclass(frozen=True)
class BandSource:
    """One band of one file: ``path`` and 1-based ``index``, exposed under ``name``; ``offset``
    is added to its values (Sentinel-2's digital-number offset from processing baseline 04.00)."""

    path: str
    index: int
    name: str
    offset: float = 0.0


@runtime_checkable
class Reader(Protocol):
    """What the tiling engine reads from: a grid, band names, and windowed reads.

    Implementations must be picklable and open their files lazily, because they are shipped to
    Dask workers and read there.
    """

    @property
    def grid(self) -> GridSpec: ...

    @property
    def band_names(self) -> tuple[str, ...]: ...

    @property
    def dtype(self) -> str: ...

    def read(self, window: Window) -> tuple[np.ndarray, np.ndarray]:
        """Return ``(data (bands, rows, cols), valid (rows, cols) bool)`` for ``window``."""
        ...


# ---------------------------------------------------------------------------------------------
# Open datasets. A rasterio dataset handle must not be used by two threads at once. Metadata
# lookups use a per-thread cache of handles; pixel reads go through one handle per file and
# process, used under its lock: GDAL caches decoded blocks per handle, so per-thread handles made
# every thread decode the same input blocks again (measured: 1.8x the decoding CPU with 2
# threads).

_local = threading.local()
_CACHE_SIZE = 96


def _lru(cache: OrderedDict[tuple[Any, ...], Any], key: tuple[Any, ...], opener: Any) -> Any:
    """``cache[key]``, opened if missing or closed; the least recently used beyond
    ``_CACHE_SIZE`` are closed."""
    item = cache.get(key)
    if item is None or item.closed:
        item = cache[key] = opener()
        while len(cache) > _CACHE_SIZE:
            cache.popitem(last=False)[1].close()
    else:
        cache.move_to_end(key)
    return item


def _cached(key: tuple[Any, ...], opener: Any) -> Any:
    cache: OrderedDict[tuple[Any, ...], Any] | None = getattr(_local, "datasets", None)
    if cache is None:
        cache = _local.datasets = OrderedDict()
    return _lru(cache, key, opener)


class _Shared:
    """A dataset (or warped view) shared by the threads of a process, used under ``lock``, with
    its grid and per-band mask rule worked out once."""

    __slots__ = ("base", "ds", "grid", "lock", "masks")

    def __init__(self, ds: Any, base: Any = None) -> None:
        self.ds = ds
        self.base = base  # the dataset under a warped view, closed with it
        self.lock = threading.Lock()
        self.grid = GridSpec(ds.crs, ds.transform, ds.width, ds.height)
        #: per band: None (all valid), "nodata" (compare with the nodata value), "mask"
        self.masks: list[str | None] = []
        for flags in ds.mask_flag_enums:
            if MaskFlags.all_valid in flags:
                self.masks.append(None)
            elif MaskFlags.nodata in flags and ds.nodata is not None:
                self.masks.append("nodata")
            else:  # per-dataset mask or alpha band
                self.masks.append("mask")

    @property
    def closed(self) -> bool:
        return bool(self.ds.closed)

    def close(self) -> None:
        with self.lock:
            self.ds.close()
            if self.base is not None:
                self.base.close()


_shared: OrderedDict[tuple[Any, ...], _Shared] = OrderedDict()
_shared_lock = threading.Lock()


def _shared_handle(key: tuple[Any, ...], opener: Any) -> _Shared:
    with _shared_lock:
        handle: _Shared = _lru(_shared, key, opener)
        return handle


@contextlib.contextmanager
def _using(key: tuple[Any, ...], opener: Any) -> Iterator[_Shared]:
    """The shared handle for ``key``, held under its lock (reopened if it was evicted and closed
    between the lookup and the lock)."""
    while True:
        handle = _shared_handle(key, opener)
        with handle.lock:
            if not handle.closed:
                yield handle
                return


def close_cached_datasets() -> None:
    """Close the datasets this thread keeps open and the read handles this process shares
    (needed before deleting or replacing inputs)."""
    cache = getattr(_local, "datasets", None)
    while cache:
        _, ds = cache.popitem()
        ds.close()
    with _shared_lock:
        while _shared:
            _, handle = _shared.popitem()
            handle.close()


def _open(path: str) -> Any:
    try:
        return rasterio.open(path)
    except (RasterioIOError, CPLE_BaseError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise RasterReadError(
            f"cannot open {path} as a raster ({reason}); check that it is a complete GeoTIFF or "
            "JPEG 2000 file"
        ) from exc


def _grid_of(ds: Any, path: str) -> GridSpec:
    if ds.transform == Affine.identity() and ds.gcps[0]:
        raise MissingCRSError(
            f"{path} is georeferenced by ground control points, not a geotransform; warp it "
            f"onto a grid first: gdalwarp -r bilinear {path} warped.tif"
        )
    if ds.crs is None:
        raise MissingCRSError(
            f"{path} has no coordinate reference system; assign one (e.g. "
            f"`gdal_edit.py -a_srs EPSG:32633 {path}`) or use a georeferenced export"
        )
    if ds.transform == Affine.identity():
        raise MissingCRSError(
            f"{path} has no geotransform (pixel coordinates only); export it with georeferencing"
        )
    if ds.transform.b != 0 or ds.transform.d != 0:
        raise MissingCRSError(
            f"{path} has a rotated geotransform; warp it north-up first (`gdalwarp in.tif out.tif`)"
        )
    check_dimensions(ds.width, ds.height, path)
    return GridSpec(CRS.from_user_input(ds.crs), ds.transform, ds.width, ds.height)


def check_dimensions(width: int, height: int, path: str) -> None:
    """Refuse raster headers whose size no real scene has (corrupt or crafted files).

    >>> check_dimensions(10980, 10980, "T33UUU.tif")
    >>> check_dimensions(2_000_000_000, 64, "bad.tif")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    tiles.errors.RasterReadError: bad.tif claims 2000000000×64 pixels, beyond geobert's limit ...
    """
    if max(width, height) > MAX_SIDE_PX or width * height > MAX_PIXELS:
        raise RasterReadError(
            f"{path} claims {width}×{height} pixels, beyond geobert's limit of {MAX_SIDE_PX} px "
            f"per side and {MAX_PIXELS} px in all; the header is probably corrupt (check it with "
            f"`gdalinfo {path}`), or split the raster with `gdal_retile.py`"
        )


def is_gdal_url(source: str) -> bool:
    """True for paths GDAL resolves itself: ``/vsicurl/…``, ``/vsis3/…``, ``https://…``, ``s3://…``.

    >>> [is_gdal_url(s) for s in ["/vsis3/b/k.tif", "https://h/x.tif", "data/x.tif", "C:/x.tif"]]
    [True, True, False, False]
    """
    return source.startswith("/vsi") or re.match(r"^[a-z][a-z0-9+.-]+://", source) is not None


# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Scene:
    """Bands from one or more files, presented on one target grid.

    Build scenes with :func:`open_scene`. ``nodata`` overrides the files' own nodata value (e.g. 0
    for Sentinel-2 L1C digital numbers stored without a nodata tag).
    """

    bands: tuple[BandSource, ...]
    grid: GridSpec
    dtype: str
    nodata: float | None = None
    resampling: ResamplingName = "bilinear"
    #: what else makes a pixel invalid: class layers whose listed codes do (clouds and shadows
    #: of a scene classification, :class:`ClassMask`), clouds found by a detector
    #: (:mod:`tiles.clouds`); each read with nearest resampling onto the scene's grid
    masks: tuple[PixelMask, ...] = ()

    @property
    def band_names(self) -> tuple[str, ...]:
        return tuple(b.name for b in self.bands)

    @property
    def count(self) -> int:
        return len(self.bands)

    def __repr__(self) -> str:
        h, w = self.grid.shape
        return (
            f"Scene({self.count} bands {list(self.band_names)}, {w}×{h} px, "
            f"res={self.grid.res}, crs={self.grid.crs.to_string()})"
        )

    def masked_share(self) -> float | None:
        """The largest share of pixels one of :attr:`masks` makes invalid (e.g. clouds), from a
        decimated read; None without masks."""
        return round(max(m.share() for m in self.masks), 4) if self.masks else None

    # -- views -----------------------------------------------------------------------------

    def on_grid(self, grid: GridSpec) -> Scene:
        """The same bands resampled onto ``grid`` (any CRS, resolution or extent)."""
        return replace(self, grid=grid)

    def select(self, names: Sequence[str]) -> Scene:
        """The bands called ``names``, in that order.

        Raises:
            BandMismatchError: if a name is not in the scene.
        """
        by_name = {b.name: b for b in self.bands}
        missing = [n for n in names if n not in by_name]
        if missing:
            raise BandMismatchError(
                f"scene has no band(s) {missing}; it has {list(self.band_names)}"
            )
        return replace(self, bands=tuple(by_name[n] for n in names))

    # -- reading ---------------------------------------------------------------------------

    def block_rows(self) -> int:
        """Height of the tallest storage block among the files, in rows of the target grid (a
        hint for the order tiles are read in; 1 for files stored in single-row strips)."""
        tallest = 1
        for path in dict.fromkeys(b.path for b in self.bands):
            ds = _cached(("ds", path), lambda path=path: _open(path))
            rows = ds.block_shapes[0][0]
            if ds.crs == self.grid.crs:
                rows = rows * abs(ds.transform.e / self.grid.transform.e)
            tallest = max(tallest, round(rows))
        return tallest

    def block_cache_bytes(self, rows: int, cols: int) -> int:
        """Bytes of GDAL block cache that hold every storage block a ``rows`` × ``cols`` window
        of the target grid (anywhere) touches, summed over the files."""
        total = 0
        for path in dict.fromkeys(b.path for b in self.bands):
            ds = _cached(("ds", path), lambda path=path: _open(path))
            bh, bw = ds.block_shapes[0]
            sy = sx = 1.0
            if ds.crs == self.grid.crs:
                sy = abs(self.grid.transform.e / ds.transform.e)
                sx = abs(self.grid.transform.a / ds.transform.a)
            n_rows = min(math.ceil(rows * sy / bh) + 1, math.ceil(ds.height / bh))
            n_cols = min(math.ceil(cols * sx / bw) + 1, math.ceil(ds.width / bw))
            # a pixel-interleaved file decodes (and caches) all its bands at once
            bands = (
                ds.count
                if ds.interleaving == Interleaving.pixel
                else sum(b.path == path for b in self.bands)
            )
            total += n_rows * n_cols * bh * bw * bands * np.dtype(ds.dtypes[0]).itemsize
        return total

    def read(self, window: Window) -> tuple[np.ndarray, np.ndarray]:
        """Read ``window`` of the target grid.

        Returns:
            ``data`` of shape ``(bands, rows, cols)`` in :attr:`dtype` and ``valid`` of shape
            ``(rows, cols)``, False where any band is nodata or outside its footprint.
        """
        rows, cols = int(window.height), int(window.width)
        # one read call per file: multi-band files decode each block once for all bands
        groups: dict[str, list[int]] = {}
        for k, band in enumerate(self.bands):
            groups.setdefault(band.path, []).append(k)
        single = len(groups) == 1
        data = None if single else np.empty((self.count, rows, cols), dtype=self.dtype)
        valid = np.ones((rows, cols), dtype=bool)
        for path, ks in groups.items():
            indexes = [self.bands[k].index for k in ks]
            try:
                arr, file_valid = self._read_file(path, indexes, window)
            except (RasterioIOError, CPLE_BaseError) as exc:
                raise RasterReadError(
                    f"reading window {_fmt_window(window)} of {path} failed: "
                    f"{_read_failure(exc)}; the file may be truncated or corrupt (download or "
                    "copy it again)"
                ) from exc
            if data is None:
                data = arr.astype(self.dtype, copy=False)  # one multi-band file: no copy
            else:
                data[ks] = arr
            valid &= file_valid
        assert data is not None
        for mask in self.masks:
            valid &= mask.valid(self.grid, window)
        offsets = [b.offset for b in self.bands]
        if any(offsets):  # after the nodata test: a no-data DN stays no-data
            data = data + np.asarray(offsets, data.dtype)[:, None, None]
        return data, valid

    def _read_file(
        self, path: str, indexes: list[int], window: Window
    ) -> tuple[np.ndarray, np.ndarray]:
        direct = ("ds", path)
        # the file's grid (fixed once opened; read without the lock)
        file_grid = _shared_handle(direct, lambda: _Shared(_open(path))).grid
        offset = self.grid.lattice_offset(file_grid)
        if offset is not None:
            # same pixel lattice: read the file directly, no resampling; pixels of the window
            # beyond the file (an output grid larger than the input) are invalid
            window = Window(
                window.col_off + offset[0], window.row_off + offset[1], window.width, window.height
            )
            inside = _clip(window, file_grid)
            rows, cols = int(window.height), int(window.width)
            if inside is None:
                arr = np.zeros((len(indexes), rows, cols), dtype=self.dtype)
                valid = np.zeros((rows, cols), dtype=bool)
            else:
                part, part_valid = self._read_direct(direct, indexes, inside)
                if (inside.width, inside.height) == (cols, rows):
                    arr, valid = part, part_valid
                else:
                    r0 = int(inside.row_off - window.row_off)
                    c0 = int(inside.col_off - window.col_off)
                    h, w = part.shape[1:]
                    arr = np.zeros((len(indexes), rows, cols), dtype=part.dtype)
                    valid = np.zeros((rows, cols), dtype=bool)
                    arr[:, r0 : r0 + h, c0 : c0 + w] = part
                    valid[r0 : r0 + h, c0 : c0 + w] = part_valid
        else:
            key = ("vrt", path, self.grid, self.resampling)
            with _using(key, lambda: self._shared_warped(path)) as shared:
                arr = shared.ds.read(indexes, window=window)
                # the alpha band added by the warped view is per dataset: one mask for all bands
                valid = shared.ds.read_masks(indexes[0], window=window) > 0
        if self.nodata is not None:
            valid &= ~_equal_nodata(arr, self.nodata).any(axis=0)
        if arr.dtype.kind == "f":
            valid &= np.isfinite(arr).all(axis=0)
        return arr, valid

    def _read_direct(
        self, key: tuple[str, str], indexes: list[int], window: Window
    ) -> tuple[np.ndarray, np.ndarray]:
        """Bands ``indexes`` of a window inside the file, and where the file says they are
        valid (its nodata value or masks)."""
        with _using(key, lambda: _Shared(_open(key[1]))) as shared:
            arr = shared.ds.read(indexes, window=window)
            valid = np.ones(arr.shape[1:], dtype=bool)
            for k, index in enumerate(indexes):
                rule = shared.masks[index - 1]
                if rule == "nodata":
                    valid &= ~_equal_nodata(arr[k], shared.ds.nodata)
                elif rule == "mask":
                    valid &= shared.ds.read_masks(index, window=window) > 0
        return arr, valid

    def _shared_warped(self, path: str) -> _Shared:
        base = _open(path)
        try:
            return _Shared(self._warped(base), base)
        except BaseException:
            base.close()
            raise

    def _warped(self, ds: Any) -> WarpedVRT:
        # add_alpha marks pixels outside the source footprint (and source nodata) as invalid even
        # when the source has no nodata value to fill them with.
        return WarpedVRT(
            ds,
            crs=self.grid.crs,
            transform=self.grid.transform,
            width=self.grid.width,
            height=self.grid.height,
            resampling=Resampling[self.resampling],
            add_alpha=True,
        )


class PixelMask(Protocol):
    """Something that makes pixels of a scene invalid (see :attr:`Scene.masks`)."""

    @property
    def name(self) -> str: ...

    def valid(self, grid: GridSpec, window: Window) -> np.ndarray: ...

    def share(self, max_px: int = 512) -> float: ...


@dataclass(frozen=True)
class ClassMask:
    """A class layer (e.g. Sentinel-2 L2A's scene classification) and the codes that make a pixel
    invalid; where the layer itself has no data, pixels stay valid (the bands decide)."""

    scene: Scene
    invalid: tuple[int, ...]
    name: str = "mask"

    def valid(self, grid: GridSpec, window: Window) -> np.ndarray:
        codes, has = self.scene.on_grid(grid).read(window)
        return np.asarray(~(has & np.isin(codes[0], self.invalid)))

    def share(self, max_px: int = 512) -> float:
        """Share of the layer's pixels with an invalid code, from a decimated read."""
        g = self.scene.grid
        coarse = g.coarsened(max(1, math.ceil(max(g.shape) / max_px)))
        codes, has = self.scene.on_grid(coarse).read(Window(0, 0, coarse.width, coarse.height))
        n = int(has.sum())
        return float((has & np.isin(codes[0], self.invalid)).sum() / n) if n else 0.0


def _clip(window: Window, grid: GridSpec) -> Window | None:
    """The part of ``window`` inside ``grid`` (None if they do not meet)."""
    c0, r0 = max(0, int(window.col_off)), max(0, int(window.row_off))
    c1 = min(grid.width, int(window.col_off + window.width))
    r1 = min(grid.height, int(window.row_off + window.height))
    if c1 <= c0 or r1 <= r0:
        return None
    return Window(c0, r0, c1 - c0, r1 - r0)


def _equal_nodata(arr: np.ndarray, nodata: float) -> np.ndarray:
    if np.isnan(nodata):
        return np.asarray(np.isnan(arr))
    return np.asarray(arr == nodata)


def _read_failure(exc: BaseException) -> str:
    """The first line of the first message in ``exc``'s chain that says what failed: rasterio's
    own ("Read failed. See previous exception for details.") points at GDAL's, its cause.

    >>> try:
    ...     raise OSError("Read failed. See previous exception for details.") from OSError(
    ...         "TIFFReadEncodedTile() failed.")
    ... except OSError as e:
    ...     _read_failure(e)
    'TIFFReadEncodedTile() failed.'
    """
    for e in exception_chain(exc):
        text = str(e).strip()
        if text and "see previous exception" not in text.lower():
            return text.splitlines()[0]
    return "the read failed"


def _fmt_window(w: Window) -> str:
    return f"(col {int(w.col_off)}, row {int(w.row_off)}, {int(w.width)}×{int(w.height)} px)"


# ---------------------------------------------------------------------------------------------
# Constructors


_NOT_BANDS = re.compile(r"(^\._)|(_TCI(_\d+m)?\.)|(_PVI\.)|(preview)|(quicklook)", re.IGNORECASE)
"""Files in a band folder that are not bands: Sentinel-2's true-colour image (``…_TCI.jp2``,
``…_TCI_10m.jp2``) and preview (``…_PVI.jp2``), previews and quicklooks, macOS resource forks
(``._B02.tif``)."""


def _band_files(folder: Path) -> list[Path]:
    files = sorted(
        p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in RASTER_SUFFIXES
    )
    skipped = {p for p in files if _NOT_BANDS.search(p.name)}
    if skipped:
        names = ", ".join(sorted(p.name for p in skipped))
        log.info("%s: skipped files that are not bands: %s", folder, names)
    return [p for p in files if p not in skipped]


def open_scene(
    source: str | os.PathLike[str] | Iterable[str | os.PathLike[str]],
    *,
    bands: Sequence[str] | None = None,
    grid: GridSpec | None = None,
    nodata: float | None = None,
    resampling: ResamplingName = "bilinear",
    band_names: Sequence[str] | None = None,
    cloud_mask: bool = True,
) -> Scene:
    """Open a multispectral scene.

    Args:
        source: One multi-band raster (GeoTIFF, COG, JPEG 2000, VRT); a folder of single-band
            files whose names end in the band name (``..._B02.tif``, ``..._B8A.jp2``, the OSCD
            ``imgs_1/`` and Sentinel-2 ``IMG_DATA`` layouts); a list of such files; or a
            Sentinel-2 L1C/L2A product as downloaded (``.SAFE`` folder or its ``.zip``, see
            :mod:`tiles.products`: band files, digital-number offsets, no-data 0); or a STAC
            Item saved as ``.json`` (see :mod:`tiles.stac`: its band assets, local or remote).
        bands: Keep only these bands, in this order.
        grid: Target grid. Default: the grid of the finest-resolution band.
        nodata: Value treated as nodata in every band, overriding the files' own.
        resampling: How bands on other grids are resampled onto the target grid (bilinear for
            reflectances; nearest for class codes).
        band_names: Names of the source's bands in their order (the bands of a multi-band
            file, or one per file of a folder — sorted by name — or list), replacing what the
            files say: a stack built without band names (``gdalbuildvrt -separate``, QGIS
            *Build Virtual Raster*) gets its names here.
        cloud_mask: For a Sentinel-2 L2A product, make pixels its scene classification calls
            cloud (medium, high), thin cirrus, cloud shadow or saturated invalid (they are then
            nodata in every output, never change).

    Raises:
        SceneNotFoundError: the path does not exist or holds no raster files.
        RasterReadError: a file is not a readable raster.
        MissingCRSError: a file has no CRS or geotransform.
        BandMismatchError: duplicate band names, or ``bands`` names a band that is missing.
    """
    from tiles.products import read_product

    product = None
    local = isinstance(source, str | os.PathLike) and not (
        isinstance(source, str) and is_gdal_url(source)
    )
    if local:
        product = read_product(source)  # type: ignore[arg-type]
    if product is not None:
        paths = list(product.bands.values())
        band_names = band_names or list(product.bands)
        if nodata is None:  # the products' documented no-data digital number; an item's own
            nodata = product.nodata
        log.info("%s: %s", source, product.describe())
    else:
        paths = _source_paths(source)
    sources: list[BandSource] = []
    grids: list[GridSpec] = []
    dtypes: list[str] = []
    for path in paths:
        with _open(str(path)) as ds:
            g = _grid_of(ds, str(path))
            if len(paths) == 1:
                names = _multiband_names(ds)
                sources += [BandSource(str(path), i + 1, n) for i, n in enumerate(names)]
                grids += [g] * ds.count
                dtypes += list(ds.dtypes)
            else:
                if ds.count != 1:
                    raise BandMismatchError(
                        f"{path} has {ds.count} bands; a folder or list of files must hold one "
                        "band per file (pass a multi-band file on its own instead)"
                    )
                name = band_name_from_path(path) or ("" if band_names is not None else None)
                if name is None:
                    raise BandMismatchError(
                        f"cannot tell which band {Path(path).name} is: band files must end in "
                        "the band name, e.g. `..._B04.tif` or `..._B8A.jp2`"
                    )
                sources.append(BandSource(str(path), 1, name))
                grids.append(g)
                dtypes.append(ds.dtypes[0])
    masks: tuple[PixelMask, ...] = ()
    if product is not None and product.scl is not None and cloud_mask:
        from tiles.products import SCL_INVALID

        scl = open_scene(product.scl, resampling="nearest")
        masks = (ClassMask(scl, SCL_INVALID, "clouds and shadows (scene classification)"),)
    if band_names is not None:
        given = [str(n).strip() for n in band_names]
        if len(given) != len(sources) or not all(given):
            raise BandMismatchError(
                f"{len(given)} band names were given for {len(sources)} bands of {source}; name "
                "each band once, in the file's order"
            )
        sources = [replace(s, name=n) for s, n in zip(sources, given, strict=True)]
    if product is not None and product.offsets:
        sources = [replace(s, offset=product.offsets.get(s.name, 0.0)) for s in sources]
        dtypes = ["float32"]
    names = [s.name for s in sources]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise BandMismatchError(
            f"band name(s) {dupes} occur more than once in {source}; keep one file per band"
        )
    if grid is None:
        # finest band: smallest pixel area; ties keep the first, i.e. the lowest band name
        grid = min(grids, key=lambda g: g.res[0] * g.res[1])
    scene = Scene(
        bands=tuple(sources),
        grid=grid,
        dtype=np.result_type(*dtypes).name,
        nodata=nodata,
        resampling=resampling,
        masks=masks,
    )
    if bands is not None:
        scene = scene.select(bands)
    log.debug("opened %r", scene)
    return scene


def _source_paths(source: str | os.PathLike[str] | Iterable[str | os.PathLike[str]]) -> list[str]:
    if isinstance(source, str | os.PathLike):
        if isinstance(source, str) and is_gdal_url(source):
            return [_gdal_path(source)]  # GDAL reads it (and says so if it cannot)
        p = Path(source)
        if not p.exists():
            raise SceneNotFoundError(
                f"{p} does not exist; pass a raster file or a folder of band files"
            )
        if not p.is_dir() and not p.is_file():  # a FIFO or device would block the reader
            raise SceneNotFoundError(
                f"{p} is not a regular file or folder (a pipe or device?); pass a raster file or "
                "a folder of band files"
            )
        if p.is_dir():
            files = _band_files(p)
            if not files:
                raise SceneNotFoundError(
                    f"{p} holds no raster files ({', '.join(RASTER_SUFFIXES)}); pass the folder "
                    "that contains the band files"
                )
            return [os.path.abspath(f) for f in files]
        # absolute: a Scene travels to Dask workers, which run in other folders
        return [os.path.abspath(p)]
    items = [str(s) if isinstance(s, str) else os.fspath(s) for s in source]
    if not items:
        raise SceneNotFoundError("an empty list of band files was given")
    for f in items:
        if not is_gdal_url(f) and not Path(f).is_file():
            raise SceneNotFoundError(f"band file {f} does not exist")
    return [_gdal_path(f) if is_gdal_url(f) else os.path.abspath(f) for f in items]


def _gdal_path(url: str) -> str:
    """``https://…`` → ``/vsicurl/https://…``, ``s3://b/k`` → ``/vsis3/b/k``; ``/vsi…`` as is."""
    if url.startswith(("http://", "https://", "ftp://")):
        return "/vsicurl/" + url
    m = re.match(r"^(s3|gs|az)://(.*)$", url)
    if m:
        return {"s3": "/vsis3/", "gs": "/vsigs/", "az": "/vsiaz/"}[m.group(1)] + m.group(2)
    return url


def _multiband_names(ds: Any) -> list[str]:
    descriptions = list(ds.descriptions)
    if all(descriptions) and len(set(descriptions)) == len(descriptions):
        return [str(d) for d in descriptions]
    return [f"band{i + 1}" for i in range(ds.count)]
