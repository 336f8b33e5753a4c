from __future__ import annotations

import dataclasses
import doctest
import shutil
from pathlib import Path

import numpy as np
import pytest
import rasterio

import geobert.change.cva
import geobert.change.metrics
from geobert.change.cva import CvaMagnitude, cva_magnitude, otsu_threshold
from geobert.change.metrics import pooled, scores, to_markdown
from geobert.change.oscd import list_cities, read_label
from geobert.errors import GeobertError, SceneNotFoundError
from tiles.engine import EngineConfig, map_tiles
from tiles.pair import align_pair
from tiles.scene import open_scene


def test_doctests() -> None:
    assert doctest.testmod(geobert.change.metrics).failed == 0
    assert doctest.testmod(geobert.change.cva).failed == 0


def _oscd_tree(tmp_path: Path, beirut: Path) -> Path:
    root = tmp_path / "oscd"
    for date in ("imgs_1", "imgs_2"):
        shutil.copytree(beirut / date, root / "images" / "beirut" / date)
    shutil.copytree(beirut / "imgs_1", root / "images" / "nolabel" / "imgs_1")
    shutil.copytree(beirut / "imgs_2", root / "images" / "nolabel" / "imgs_2")
    (root / "labels" / "beirut").mkdir(parents=True)
    shutil.copy(beirut / "labels" / "beirut-cm.tif", root / "labels" / "beirut" / "beirut-cm.tif")
    return root


@pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")
def test_oscd_cities_and_label_quirks(tmp_path: Path, oscd_before: Path) -> None:
    root = _oscd_tree(tmp_path, oscd_before.parent)
    cities = list_cities(root)
    assert [c.name for c in cities] == ["beirut", "nolabel"]
    assert [c.name for c in list_cities(root, labelled_only=True)] == ["beirut"]
    before, _ = cities[0].scenes()
    assert cities[0].label is not None
    label = read_label(cities[0].label, before.grid)
    with rasterio.open(cities[0].label) as ds:
        raw = ds.read(1)
    assert set(np.unique(raw)) <= {1, 2}  # the file's own coding
    np.testing.assert_array_equal(label, (raw == 2).astype(np.uint8))
    assert label.shape == before.grid.shape and 0 < label.mean() < 0.05
    with pytest.raises(SceneNotFoundError, match="is not an OSCD folder"):
        list_cities(tmp_path)


def test_label_on_wrong_grid_is_rejected(oscd_before: Path) -> None:
    from tiles.scene import GridSpec

    before = open_scene(oscd_before)
    g = before.grid
    small = GridSpec(g.crs, g.transform, g.width - 1, g.height)
    with pytest.raises(GeobertError, match="must align with imgs_1's B02"):
        read_label(oscd_before.parent / "labels" / "beirut-cm.tif", small)


def test_scores_and_pooling() -> None:
    a = scores(np.array([1, 0, 1, 1]), np.array([1, 0, 0, 1]))
    b = scores(np.array([0, 0, 0, 1]), np.array([1, 0, 0, 1]), valid=np.array([1, 1, 0, 1], bool))
    assert (a.tp, a.fp, a.fn, a.tn) == (2, 1, 0, 1)
    assert (b.tp, b.fp, b.fn, b.tn) == (1, 0, 1, 1)  # the invalid pixel is not counted
    p = pooled({"a": a, "b": b})
    assert (p.tp, p.fp, p.fn, p.tn) == (3, 1, 1, 2) and p.f1 == pytest.approx(6 / 8)
    table = to_markdown({"cva": {"a": a, "b": b}})
    assert "| cva | **pooled** | 0.750 | 0.750 | 0.750 | 0.600 |" in table
    # counts are values: pooled tables and per-city dicts share them, so none may be edited
    with pytest.raises(dataclasses.FrozenInstanceError):
        a.tp = 0  # type: ignore[misc]
    assert len({a, scores(np.array([1, 0, 1, 1]), np.array([1, 0, 0, 1]))}) == 1  # hashable


def test_otsu_separates_two_modes() -> None:
    rng = np.random.default_rng(0)
    low, high = rng.normal(0.05, 0.01, 9000), rng.normal(0.3, 0.03, 1000)
    t = otsu_threshold(np.concatenate([low, high, [np.nan]]))
    assert (low < t).mean() > 0.99 and (high > t).mean() > 0.99
    assert np.isnan(otsu_threshold(np.array([np.nan])))


def test_cva_through_the_engine_on_a_real_pair(oscd_before: Path, oscd_after: Path) -> None:
    pair = align_pair(open_scene(oscd_before), open_scene(oscd_after))
    out = np.zeros(pair.grid.shape, np.float32)

    def emit(win, arr) -> None:  # type: ignore[no-untyped-def]
        out[win.toslices()] = arr[0]

    map_tiles(
        pair, CvaMagnitude(), emit, out_bands=1, config=EngineConfig(tile_size_px=48, overlap_px=8)
    )
    from rasterio.windows import Window

    data, _ = pair.read(Window(0, 0, pair.grid.width, pair.grid.height))
    np.testing.assert_allclose(out, cva_magnitude(data[:13], data[13:]), rtol=1e-5, atol=1e-6)
    label = read_label(oscd_before.parent / "labels" / "beirut-cm.tif", pair.grid)
    change = out > otsu_threshold(out)
    # the unsupervised baseline finds something, and more of it where the label says change
    assert change.any() and out[label == 1].mean() > out[label == 0].mean()
