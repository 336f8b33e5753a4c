"""Clouds in Sentinel-2 L1C scenes become nodata: s2cloudless on the scene at 160 m.

An L2A product brings its own cloud classification (SCL, see :mod:`tiles.products`); an L1C scene
— an L1C product, the OSCD layout, any band folder or stack with Sentinel-2's B10 cirrus band —
has none. :func:`detect_clouds` runs **s2cloudless** (Sentinel Hub's pixel-wise LightGBM cloud
detector, Zupanc et al. 2017, CC BY-SA 4.0; its model ships inside its PyPI wheel: install
``geobert[clouds]``) the way Sentinel Hub produces its CLM/CLP layers: on top-of-atmosphere
reflectances **averaged to 160 m pixels**, ten bands (B01, B02, B04, B05, B08, B8A, B09, B10,
B11, B12); the probability smoothed over a disk is thresholded — at 0.6 rather than
s2cloudless's 0.4, which takes bright building sites for cloud (see :class:`CloudDetector`) —
and the mask dilated by one 160 m pixel so cloud edges go too. The mask is kept on its 160 m
grid and read onto whatever grid and window a tile asks for (nearest), so it costs one decimated
read of ten bands and ~0.5 M LightGBM predictions for a whole 10 980² tile.

s2cloudless finds clouds, not their shadows; a shadow in one date can still read as change.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import warnings
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from rasterio.errors import NotGeoreferencedWarning
from rasterio.warp import Resampling, reproject
from rasterio.windows import Window

from tiles.errors import GeobertError
from tiles.scene import GridSpec, Scene
from tiles.target import pixel_size_m

__all__ = [
    "S2CLOUDLESS_BANDS",
    "CloudDetector",
    "DetectedClouds",
    "cloud_mask",
    "cloud_mask_hides_all",
    "cloud_probability",
    "detect_clouds",
    "s2cloudless_available",
]

S2CLOUDLESS_BANDS = ("B01", "B02", "B04", "B05", "B08", "B8A", "B09", "B10", "B11", "B12")
"""The bands s2cloudless's model takes, in its order (B10 makes a scene L1C: L2A has none)."""

_MODEL = os.path.join("models", "pixel_s2_cloud_detector_lightGBM_v0.1.txt")


@dataclass(frozen=True)
class CloudDetector:
    """How clouds are found: at Sentinel Hub's 160 m, with a stricter threshold."""

    #: pixel size the detector runs at (band values averaged onto it)
    resolution_m: float = 160.0
    #: cloud probability above which a (smoothed) pixel is cloud. 0.6, not s2cloudless's 0.4:
    #: at 0.4 bright building sites are "cloud" — on OSCD's Beihai 53 % of the labelled change
    #: would be masked; 0.6 is the lowest threshold at which no labelled OSCD city has its change
    #: masked more often than its other pixels, and it still masks Paris's clouds
    #: (results/clouds/README.md)
    threshold: float = 0.6
    #: radius in detector pixels of the disk the probability is averaged over (0: none)
    average_px: int = 1
    #: radius in detector pixels of the disk the mask is dilated by (0: none)
    dilate_px: int = 1


def s2cloudless_available() -> bool:
    """Whether s2cloudless's model file is installed (``pip install geobert[clouds]``)."""
    return _model_path() is not None


def _model_path() -> str | None:
    # the package's __init__ imports sentinelhub (6 s); only its model file and lightgbm are used
    spec = importlib.util.find_spec("s2cloudless")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = os.path.join(next(iter(spec.submodule_search_locations)), _MODEL)
    return path if os.path.isfile(path) else None


@functools.lru_cache(maxsize=1)
def _booster() -> Any:
    path = _model_path()
    if path is None:
        raise GeobertError(
            "cloud detection for L1C scenes needs s2cloudless: pip install 'geobert[clouds]' "
            "(or run with --no-cloud-mask)"
        )
    from lightgbm import Booster

    return Booster(model_file=path)


def cloud_probability(reflectance: np.ndarray) -> np.ndarray:
    """s2cloudless's cloud probability of each pixel.

    Args:
        reflectance: ``(10, H, W)`` top-of-atmosphere reflectance (DN / 10000) of
            :data:`S2CLOUDLESS_BANDS`, in that order.

    Returns:
        ``(H, W)`` float32 in [0, 1] (non-finite inputs give 0).
    """
    if reflectance.ndim != 3 or reflectance.shape[0] != len(S2CLOUDLESS_BANDS):
        raise GeobertError(
            f"s2cloudless takes {len(S2CLOUDLESS_BANDS)} bands {list(S2CLOUDLESS_BANDS)}; got "
            f"an array of shape {reflectance.shape}"
        )
    _, h, w = reflectance.shape
    pixels = np.nan_to_num(reflectance.reshape(len(S2CLOUDLESS_BANDS), -1).T, nan=0.0)
    if not pixels.size:
        return np.zeros((h, w), np.float32)
    return np.asarray(_booster().predict(pixels), np.float32).reshape(h, w)


def _disk(radius: int) -> np.ndarray:
    """A disk of ``radius`` pixels (as s2cloudless's ``cv2_disk``: ``x² + y² ≤ r²``)."""
    y, x = np.ogrid[-radius : radius + 1, -radius : radius + 1]
    return np.asarray(x * x + y * y <= radius * radius)


def _disk_shifts(a: np.ndarray, disk: np.ndarray, pad_mode: str) -> list[np.ndarray]:
    """The arrays ``a`` shifted by every offset of ``disk`` (padded by ``pad_mode``)."""
    r = disk.shape[0] // 2
    padded = np.pad(a, r, mode=pad_mode)  # type: ignore[call-overload]
    h, w = a.shape
    return [padded[dy : dy + h, dx : dx + w] for dy, dx in zip(*np.nonzero(disk), strict=True)]


def cloud_mask(probability: np.ndarray, detector: CloudDetector = CloudDetector()) -> np.ndarray:
    """Cloud mask from probabilities: averaged over a disk (edges mirrored), thresholded,
    dilated by a disk (s2cloudless's ``get_mask_from_prob``, in numpy instead of OpenCV).

    >>> p = np.zeros((7, 7), np.float32); p[3, 3] = 1.0
    >>> cloud_mask(p, CloudDetector(average_px=0, dilate_px=1)).astype(int)[2:5, 2:5]
    array([[0, 1, 0],
           [1, 1, 1],
           [0, 1, 0]])
    """
    p = probability.astype(np.float32)
    if detector.average_px > 0:
        disk = _disk(detector.average_px)
        p = np.sum(_disk_shifts(p, disk, "symmetric"), axis=0) / disk.sum()  # cv2 BORDER_REFLECT
    mask = p > detector.threshold
    if detector.dilate_px > 0:
        mask = np.any(_disk_shifts(mask, _disk(detector.dilate_px), "constant"), axis=0)
    return np.asarray(mask)


@dataclass(frozen=True, eq=False)
class DetectedClouds:
    """A cloud mask on its own (coarse) grid, as one of a :class:`~tiles.scene.Scene`'s masks:
    read onto any grid and window with nearest resampling."""

    grid: GridSpec
    mask: np.ndarray  # bool, True = cloud
    #: share of the scene's valid pixels (at the detector's resolution) that are cloud
    cloud_share: float
    name: str = "clouds (s2cloudless)"

    def valid(self, grid: GridSpec, window: Window) -> np.ndarray:
        """False where a cloud covers the window's pixels of ``grid`` (the mask pixel under each
        pixel's centre)."""
        h, w = int(window.height), int(window.width)
        dst, src = grid.window_transform(window), self.grid.transform
        if grid.crs == self.grid.crs and dst.b == dst.d == src.b == src.d == 0:
            xs = dst.c + dst.a * (np.arange(w) + 0.5)
            ys = dst.f + dst.e * (np.arange(h) + 0.5)
            cols = np.floor((xs - src.c) / src.a).astype(np.int64)
            rows = np.floor((ys - src.f) / src.e).astype(np.int64)
            mh, mw = self.mask.shape
            ok = ((rows >= 0) & (rows < mh))[:, None] & ((cols >= 0) & (cols < mw))[None, :]
            cloud = self.mask[np.clip(rows, 0, mh - 1)[:, None], np.clip(cols, 0, mw - 1)[None, :]]
            return np.asarray(~(cloud & ok))
        out = np.zeros((h, w), np.uint8)
        with warnings.catch_warnings():
            # rasterio warns "no geotransform" for in-memory arrays even when both are given
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            reproject(
                self.mask.astype(np.uint8),
                out,
                src_transform=self.grid.transform,
                src_crs=self.grid.crs,
                dst_transform=grid.window_transform(window),
                dst_crs=grid.crs,
                resampling=Resampling.nearest,
            )
        return np.asarray(out == 0)

    def share(self, max_px: int = 512) -> float:
        return self.cloud_share


def needs_detection(scene: Scene) -> bool:
    """An L1C scene without a cloud mask yet: it has every band s2cloudless takes (B10 is L1C's
    alone) and no scene-classification or detected mask."""
    return set(S2CLOUDLESS_BANDS) <= set(scene.band_names) and not scene.masks


def detect_clouds(scene: Scene, detector: CloudDetector = CloudDetector()) -> Scene:
    """The scene with its clouds masked (they read as nodata), found by s2cloudless at
    ``detector.resolution_m``; an L2A scene with its SCL, or a scene without the bands, is
    returned as it is.

    Raises:
        GeobertError: s2cloudless is not installed.
    """
    if not needs_detection(scene):
        return scene
    factor = max(1, round(detector.resolution_m / pixel_size_m(scene.grid)))
    coarse = scene.grid.coarsened(factor)
    bands = replace(scene.select(S2CLOUDLESS_BANDS), resampling="average", masks=())
    data, valid = bands.on_grid(coarse).read(Window(0, 0, coarse.width, coarse.height))
    reflectance = data.astype(np.float32)
    seen = reflectance[:, valid]
    seen = seen[np.isfinite(seen)]
    if not seen.size:  # nothing valid to look at: nothing to mask
        return scene
    if np.issubdtype(np.dtype(scene.dtype), np.integer) or float(np.median(seen)) > 2:
        reflectance /= 10000.0  # digital numbers (offsets already applied by the scene)
    probability = np.where(valid, cloud_probability(reflectance), 0.0)
    mask = cloud_mask(probability, detector) & valid
    share = float(mask.sum() / valid.sum()) if valid.any() else 0.0
    found = DetectedClouds(coarse, mask, round(share, 4))
    return replace(scene, masks=(*scene.masks, found))


def cloud_mask_hides_all(scene: Scene, name: str, share: float = 0.98) -> str | None:
    """Why ``scene`` (called ``name``) has no valid pixel left when its detected clouds cover at
    least ``share`` of it, else None. A clear scene read that way usually has its bands in
    another order than the names given to them (``gdalbuildvrt -separate`` on a glob sorts B8A
    after B12): the detector then sees no land it knows.

    >>> from types import SimpleNamespace
    >>> from affine import Affine
    >>> from rasterio.crs import CRS
    >>> g = GridSpec(CRS.from_epsg(32633), Affine(10, 0, 0, 0, -10, 0), 4, 4)
    >>> cloudy = SimpleNamespace(masks=(DetectedClouds(g, np.ones((4, 4), bool), 1.0),))
    >>> cloud_mask_hides_all(cloudy, "x.vrt")[:57]
    'the cloud mask flagged 100 % of x.vrt as cloud or shadow,'
    >>> cloud_mask_hides_all(SimpleNamespace(masks=()), "x.vrt") is None
    True
    """
    clouds = [m.cloud_share for m in scene.masks if isinstance(m, DetectedClouds)]
    if not clouds or max(clouds) < share:
        return None
    return (
        f"the cloud mask flagged {100 * max(clouds):.0f} % of {name} as cloud or shadow, "
        "leaving nothing to process; if the scene is clear, check that --bands names its bands "
        "in the file's order (gdalbuildvrt -separate on a glob puts B8A after B12), or pass "
        "--no-cloud-mask"
    )


def mask_clouds(scene: Scene, name: str, enabled: bool = True) -> tuple[Scene, list[str]]:
    """What the pipelines do with ``cloud_mask``: an L1C scene gets its clouds detected; where
    s2cloudless is not installed, a warning says the clouds are not masked (not an error: the
    run goes on, as it did before the detector existed)."""
    if not enabled or not needs_detection(scene):
        return scene, []
    if not s2cloudless_available():
        return scene, [
            f"clouds in {name} (Sentinel-2 L1C) are not masked: s2cloudless is not installed "
            "(pip install 'geobert[clouds]'); a cloud may read as change or as a class"
        ]
    return detect_clouds(scene), []
