"""Random training windows streamed from scenes through the ``tiles`` readers.

No pre-extracted patch dataset: each batch is drawn from a generator seeded with ``(seed, k)``, so
batch ``k`` is the same whatever the number of loader processes and whether training resumed.
Scenes small enough are read whole once (:func:`in_memory`): a 128 px window of 13 bands then
costs a slice instead of 13 warped file reads (about 60 ms of CPU each), the same values.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from rasterio.windows import Window

from geobert.errors import GeobertError, NoOverlapError, SceneNotFoundError
from tiles.cache import physical_ram
from tiles.pair import ScenePair, align_pair
from tiles.scene import RASTER_SUFFIXES, GridSpec, Reader, Scene, band_name_from_path, open_scene

__all__ = [
    "InMemoryScene",
    "WindowSampler",
    "discover_pairs",
    "discover_scenes",
    "in_memory",
    "open_training_pairs",
]

log = logging.getLogger(__name__)


def discover_scenes(paths: Sequence[str | os.PathLike[str]]) -> list[Path]:
    """Expand data paths into scenes: raster files, and folders that directly hold band files.

    A folder of folders (``oscd/images``) is searched recursively, so one path can name a whole
    dataset.
    """
    found: list[Path] = []
    for p in map(Path, paths):
        if not p.exists():
            raise SceneNotFoundError(f"training data path {p} does not exist")
        if p.is_file():
            found.append(p)
            continue
        for folder in sorted({p, *(d for d in p.rglob("*") if d.is_dir())}):
            if _is_band_folder(folder):
                found.append(folder)
    if not found:
        raise SceneNotFoundError(f"no scenes (band folders or rasters) found under {list(paths)}")
    return found


def _is_band_folder(folder: Path) -> bool:
    bands = [
        f
        for f in folder.iterdir()
        if f.suffix.lower() in RASTER_SUFFIXES and band_name_from_path(f)
    ]
    return len(bands) >= 2


def discover_pairs(paths: Sequence[str | os.PathLike[str]]) -> list[tuple[Path, Path]]:
    """Expand data paths into two-date pairs of a place: every folder (the paths and the folders
    under them) whose direct contents are exactly two scenes — band folders, or rasters that are
    not single bands — is a pair, its dates in name order (OSCD's ``city/imgs_1``,
    ``city/imgs_2``; ``place/2019.tif``, ``place/2023.tif``)."""
    found: list[tuple[Path, Path]] = []
    for p in map(Path, paths):
        if not p.is_dir():
            raise SceneNotFoundError(
                f"pair data path {p} is not a folder; give folders that hold two dates of a "
                "place (two band folders or two rasters), or folders of such folders"
            )
        for folder in sorted({p, *(d for d in p.rglob("*") if d.is_dir())}):
            dates = sorted(
                c
                for c in folder.iterdir()
                if (c.is_dir() and _is_band_folder(c))
                or (
                    c.is_file()
                    and c.suffix.lower() in RASTER_SUFFIXES
                    and not band_name_from_path(c)
                )
            )
            if len(dates) == 2:
                found.append((dates[0], dates[1]))
    if not found:
        raise SceneNotFoundError(
            f"no pairs (folders holding exactly two dates: band folders or rasters) found under "
            f"{[str(p) for p in paths]}"
        )
    return found


@dataclass(frozen=True, eq=False)
class InMemoryScene:
    """A scene read whole into memory once; its windows are slices of it (a
    :class:`tiles.scene.Reader` for training, not for Dask workers: it pickles its pixels).

    The values are those windowed reads of the files give where the bands are resampled onto a
    grid in their own CRS (the 20 and 60 m bands of a Sentinel-2 scene: tested); a scene
    reprojected on read may differ by GDAL's approximate transformer between whole and windowed
    reads."""

    grid: GridSpec
    band_names: tuple[str, ...]
    data: np.ndarray  # (bands, rows, cols) in the scene's dtype
    valid: np.ndarray  # (rows, cols) bool

    @classmethod
    def read_whole(cls, scene: Reader) -> InMemoryScene:
        h, w = scene.grid.shape
        data, valid = scene.read(Window(0, 0, w, h))
        return cls(scene.grid, tuple(scene.band_names), data, valid)

    @property
    def dtype(self) -> str:
        return str(self.data.dtype)

    def read(self, window: Window) -> tuple[np.ndarray, np.ndarray]:
        """``window`` (inside the grid) as ``(data, valid)`` copies."""
        r, c = int(window.row_off), int(window.col_off)
        h, w = int(window.height), int(window.width)
        if r < 0 or c < 0 or r + h > self.grid.height or c + w > self.grid.width:
            raise GeobertError(f"window {window} is not inside the {self.grid.shape} px scene")
        return self.data[:, r : r + h, c : c + w].copy(), self.valid[r : r + h, c : c + w].copy()


def scene_bytes(scene: Reader) -> int:
    """Bytes :class:`InMemoryScene` needs for ``scene`` (data and validity mask)."""
    h, w = scene.grid.shape
    return h * w * (len(scene.band_names) * np.dtype(scene.dtype).itemsize + 1)


def in_memory(scenes: Sequence[Reader], max_bytes: int | None = None) -> list[Reader]:
    """``scenes`` read whole into memory if all of them together fit in ``max_bytes`` (default:
    a quarter of this machine's physical RAM); as they are (windows read from the files)
    otherwise."""
    limit = physical_ram() // 4 if max_bytes is None else max_bytes
    need = sum(scene_bytes(s) for s in scenes)
    if need > limit:
        log.info(
            "training scenes need %.1f GB, more than %.1f GB: windows are read from the files",
            need / 1e9,
            limit / 1e9,
        )
        return list(scenes)
    log.info("reading %d training scenes into memory (%.2f GB)", len(scenes), need / 1e9)
    return [InMemoryScene.read_whole(s) for s in scenes]


@dataclass
class WindowSampler:
    """Draw random square windows from scenes, skipping mostly-nodata ones, with flips/rot90.

    Args:
        scenes: Scenes with the bands wanted, in one band order.
        window_px: Window edge in pixels.
        min_valid: Minimum fraction of valid pixels for a window to be used.
        augment: Random flips and 90° rotations.
    """

    scenes: Sequence[Reader]
    window_px: int
    min_valid: float = 0.95
    augment: bool = True
    max_tries: int = 50

    def __post_init__(self) -> None:
        usable = [s for s in self.scenes if min(s.grid.shape) >= self.window_px]
        if not usable:
            raise GeobertError(f"no scene is at least {self.window_px} px on each side")
        self.scenes = usable
        areas = np.array([s.grid.width * s.grid.height for s in usable], dtype=float)
        self._p = areas / areas.sum()  # sample scenes by area: every pixel equally likely
        self.skipped = 0

    def window(self, rng: np.random.Generator) -> np.ndarray:
        """One window ``(bands, window_px, window_px)`` float32 in file units."""
        n = self.window_px
        for _ in range(self.max_tries):
            scene = self.scenes[rng.choice(len(self.scenes), p=self._p)]
            r = int(rng.integers(0, scene.grid.height - n + 1))
            c = int(rng.integers(0, scene.grid.width - n + 1))
            data, valid = scene.read(Window(c, r, n, n))
            if valid.mean() < self.min_valid:
                self.skipped += 1
                continue
            x = data.astype(np.float32)
            x[:, ~valid] = np.nan
            if self.augment:
                x = np.rot90(x, k=int(rng.integers(0, 4)), axes=(1, 2))
                if rng.random() < 0.5:
                    x = x[:, :, ::-1]
            return np.ascontiguousarray(x)
        raise GeobertError(
            f"{self.max_tries} random {n} px windows in a row were mostly nodata; check the data "
            "or lower min_valid"
        )

    def batch(self, seed: int, k: int, size: int) -> np.ndarray:
        """Batch ``k`` of ``size`` windows, ``(size, bands, n, n)``.

        The same arguments always give the same batch.
        """
        rng = np.random.default_rng([seed, k])
        return np.stack([self.window(rng) for _ in range(size)])

    def batches(self, seed: int, start: int, size: int) -> Iterator[np.ndarray]:
        k = start
        while True:
            yield self.batch(seed, k, size)
            k += 1


def band_stats(
    sampler: WindowSampler, *, seed: int, windows: int, scale: float
) -> tuple[list[float], list[float]]:
    """Per-band mean and std (after ``scale``) over ``windows`` random windows' valid pixels."""
    # a batch index training never reaches (2**40), so the statistics windows are their own draw
    x = sampler.batch(seed, 2**40, windows) * scale  # (N, C, n, n), NaN where invalid
    flat = np.moveaxis(x, 1, 0).reshape(x.shape[1], -1)
    mean = np.nanmean(flat, axis=1)
    std = np.nanstd(flat, axis=1)
    return [float(v) for v in mean], [float(max(v, 1e-6)) for v in std]


def open_training_scenes(paths: Sequence[Path], bands: Sequence[str] | None) -> list[Scene]:
    """Open scenes, keeping ``bands`` (default: the first scene's bands) in one order."""
    scenes = []
    for p in paths:
        scene = open_scene(p)
        if bands is None:
            bands = scene.band_names
        missing = [b for b in bands if b not in scene.band_names]
        if missing:
            log.warning("skipping %s: it lacks band(s) %s", p, missing)
            continue
        scenes.append(scene.select(bands))
    return scenes


def open_training_pairs(
    pairs: Sequence[tuple[Path, Path]], bands: Sequence[str] | None
) -> tuple[list[tuple[Path, Path]], list[ScenePair]]:
    """Open two-date pairs on one grid each (where both dates exist), keeping ``bands``
    (default: the first date's bands) in one order; a pair whose dates lack one of them, or do
    not overlap, is skipped with a warning, as :func:`open_training_scenes` skips a scene.
    Returns the pairs used and their readers."""
    used, opened = [], []
    for first, second in pairs:
        a, b = open_scene(first), open_scene(second)
        if bands is None:
            bands = a.band_names
        missing = [n for n in bands if n not in a.band_names or n not in b.band_names]
        if missing:
            log.warning("skipping the pair %s, %s: it lacks band(s) %s", first, second, missing)
            continue
        try:
            opened.append(align_pair(a.select(bands), b.select(bands)))
        except NoOverlapError as exc:
            log.warning("skipping the pair %s, %s: %s", first, second, exc)
            continue
        used.append((first, second))
    return used, opened
