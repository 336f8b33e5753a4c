"""The calibrated change probability: the map (fit, inverse), the card, and `geobert change`
with it against the same model without it on the shipped example pair."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.windows import Window

from geobert.change.calibration import (
    Calibration,
    brier_score,
    calibration_error,
    fit_calibration,
)
from geobert.errors import GeobertError
from geobert.weights import pretrained_encoder_path

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "abudhabi"


def test_the_fit_recovers_a_known_change_rate() -> None:
    """Pixels changed with probability p² at raw value p: the fitted map gives ≈ p² (it knows
    nothing of the square), rises strictly through its knots, and cuts the calibration error."""
    rng = np.random.default_rng(0)
    p = rng.random(400_000)
    y = rng.random(p.size) < p**2
    cal = fit_calibration([p], [y])
    assert np.all(np.diff(cal.x) > 0) and np.all(np.diff(cal.y) > 0)
    grid = np.linspace(0.05, 0.95, 19)
    np.testing.assert_allclose(cal.apply(grid), grid**2, atol=0.02)
    assert calibration_error(cal.apply(p), y) < 0.01 < calibration_error(p, y)
    assert brier_score(cal.apply(p), y) < brier_score(p, y)


def test_every_city_weighs_the_same() -> None:
    """A large city where nothing changed and a small one where everything did, at the same raw
    values: the map says one in two, not the large city's answer."""
    p_big, p_small = np.full(90_000, 0.3), np.full(1_000, 0.3)
    low, high = np.full(10, 0.05), np.full(10, 0.9)  # a second level, so there is a map
    cal = fit_calibration(
        [np.r_[p_big, low], np.r_[p_small, high]],
        [np.r_[np.zeros(p_big.size), np.zeros(10)], np.r_[np.ones(p_small.size), np.ones(10)]],
    )
    assert cal.apply(np.array([0.3]))[0] == pytest.approx(0.5, abs=0.01)


def test_raw_threshold_inverts_the_map() -> None:
    """The raw value above which the calibrated one is above t, at the floor and the ceiling
    too; NaN (nodata) stays NaN; a map that falls or leaves [0, 1] is refused."""
    cal = Calibration((0.1, 0.5, 0.9), (0.02, 0.1, 0.4))
    for t in (0.02, 0.05, 0.1, 0.2, 0.39):
        raw = cal.raw_threshold(t)
        assert cal.apply(np.array([raw]))[0] == pytest.approx(t, abs=1e-6)
    assert cal.raw_threshold(0.01) == -1.0 and cal.raw_threshold(0.4) == 1.0
    assert np.isnan(cal.apply(np.array([np.nan, 0.5]))[0])
    for x, y in (((0.1, 0.5), (0.3, 0.2)), ((0.5, 0.1), (0.1, 0.3)), ((0.1, 0.5), (0.1, 1.2))):
        with pytest.raises(GeobertError):
            Calibration(x, y)
    assert Calibration.from_dict(cal.as_dict()) == cal


class _Recorder:
    """A stand-in for a RasterWriter: keeps what it is given."""

    def __init__(self) -> None:
        self.written: list[np.ndarray] = []

    def write(self, window: Window, arr: np.ndarray) -> None:
        self.written.append(arr.copy())


def test_the_written_probability_is_above_the_threshold_exactly_where_the_mask_says_change() -> (
    None
):
    """The mask stays the raw probability against the raw threshold; the calibrated value
    written beside it is above the shown threshold on exactly those pixels, rounding at the
    threshold included."""
    from geobert.change.pipeline import _ChangeWriter

    cal = Calibration((0.0, 0.5, 1.0), (0.0, 0.1, 0.6))
    rng = np.random.default_rng(1)
    # the model's own threshold (shown rounded to 4 decimals) and a user's 0.1, which float32
    # cannot hold: pixels crowd both, and QGIS and GDAL compare in double where numpy uses float32
    for raw_t, shown in ((0.85, round(float(cal.apply(0.85)), 4)), (cal.raw_threshold(0.1), 0.1)):
        raw = (raw_t + rng.normal(0, 1e-6, (1, 64, 64))).astype(np.float32)
        raw[0, 0, :4] = [raw_t, np.nextafter(np.float32(raw_t), np.float32(1)), 0.2, np.nan]
        prob, mask = _Recorder(), _Recorder()
        writer = _ChangeWriter(prob, mask, raw_t, cal, shown)  # type: ignore[arg-type]
        writer(Window(0, 0, 64, 64), raw)
        change, written = mask.written[0], prob.written[0]
        assert 0 < (change == 1).sum() < (change == 0).sum() * 3
        np.testing.assert_array_equal(change == 1, raw.astype(np.float64) > raw_t)
        np.testing.assert_array_equal(change == 1, written > shown)  # float32
        np.testing.assert_array_equal(change == 1, written.astype(np.float64) > shown)  # double
        np.testing.assert_array_equal(np.isnan(written), change == 255)
        np.testing.assert_allclose(written, cal.apply(raw), atol=1e-4)  # nudged at the edge only


def test_without_a_calibration_the_mask_is_the_written_value_above_the_threshold_in_double() -> (
    None
):
    """A raw probability at the threshold's own float32 value (0.3 → 0.30000001) reads above
    0.3 in QGIS (double): the mask says change there too, and not just below it."""
    from geobert.change.pipeline import _ChangeWriter

    t32 = np.float32(0.3)
    raw = np.array([[[np.nextafter(t32, np.float32(0)), t32, np.nextafter(t32, np.float32(1))]]])
    prob, mask = _Recorder(), _Recorder()
    _ChangeWriter(prob, mask, 0.3)(Window(0, 0, 3, 1), raw)  # type: ignore[arg-type]
    assert float(t32) > 0.3 and mask.written[0].tolist() == [[[0, 1, 1]]]
    np.testing.assert_array_equal(prob.written[0], raw)  # written as it came
    np.testing.assert_array_equal(mask.written[0] == 1, prob.written[0].astype(np.float64) > 0.3)


def test_degenerate_calibrations_are_refused() -> None:
    for x, y, message in (
        ((0.0, np.nan), (0.0, 0.3), "finite"),
        ((0.0, 1.0), (0.0, np.inf), "finite"),
        ((0.0, 1.0), (0.0, 0.0), "above 0"),
    ):
        with pytest.raises(GeobertError, match=message):
            Calibration(x, y)


def _without_calibration(dst: Path) -> Path:
    from geobert.models.checkpoint import read_card, replace_card

    src = pretrained_encoder_path("changenet_s_oscd")
    dst.write_bytes(src.read_bytes())
    card = read_card(dst)
    training = {k: v for k, v in card.training.items() if k != "calibration"}
    return replace_card(dst, replace(card, training=training))


def _read(out: Path) -> tuple[np.ndarray, np.ndarray, dict]:  # type: ignore[type-arg]
    with rasterio.open(out / "change_probability.tif") as ds:
        prob = ds.read(1)
    with rasterio.open(out / "change.tif") as ds:
        change = ds.read(1)
    return prob, change, json.loads((out / "summary.json").read_text())


def test_change_writes_calibrated_probabilities_and_the_same_map(tmp_path: Path) -> None:
    """The shipped model against itself without its calibration, on the example pair: the same
    change pixels; the written probability is the card's map of the raw one (computed here from
    the uncalibrated run); the summary's threshold is on the written probability; a threshold
    of the user's is read on it too, and one above the map's ceiling flags nothing and says so.
    The probability's QGIS ramp breaks at the run's threshold and tops out at what it can write."""
    from geobert.change.pipeline import detect_change
    from geobert.models.checkpoint import read_card

    shipped = pretrained_encoder_path("changenet_s_oscd")
    cal = read_card(shipped).calibration
    assert cal is not None and read_card(shipped).describe()["threshold"] < 0.5
    plain_model = _without_calibration(tmp_path / "plain.safetensors")
    assert read_card(plain_model).calibration is None
    kw = {"min_area_m2": 0, "simplify_m": 0}
    pair = (EXAMPLE / "imgs_1", EXAMPLE / "imgs_2")
    detect_change(*pair, tmp_path / "cal", **kw)
    detect_change(*pair, tmp_path / "raw", model=plain_model, **kw)
    prob, change, summary = _read(tmp_path / "cal")
    raw, raw_change, raw_summary = _read(tmp_path / "raw")
    np.testing.assert_array_equal(change, raw_change)
    assert raw_summary["probability"] == "raw" and summary["probability"] == "calibrated"
    assert raw_summary["threshold"] == summary["network_threshold"] == 0.85
    assert summary["threshold"] == summary["model_threshold"] < 0.2
    np.testing.assert_array_equal(change == 1, prob > summary["threshold"])
    np.testing.assert_allclose(prob, cal.apply(raw), atol=1e-4, equal_nan=True)
    assert np.nanmax(prob) <= max(cal.y) and summary["changed_pixels"] > 0
    top = max(cal.y)
    assert _ramp(tmp_path / "cal") == [0.0, summary["threshold"], top]
    assert _ramp(tmp_path / "raw") == [0.0, 0.85, 1.0]

    mine = 0.3  # the user's threshold, on the calibrated probability they see
    detect_change(*pair, tmp_path / "mine", threshold=mine, **kw)
    prob3, change3, summary3 = _read(tmp_path / "mine")
    assert summary3["threshold"] == mine and summary3["network_threshold"] > 0.85
    np.testing.assert_array_equal(change3 == 1, prob3 > mine)
    np.testing.assert_array_equal(change3 == 1, prob3.astype(np.float64) > mine)  # as QGIS reads
    assert 0 < (change3 == 1).sum() < (change == 1).sum()
    assert _ramp(tmp_path / "mine") == [0.0, mine, top]
    # a model without a calibration reads the user's threshold on its raw probability
    detect_change(*pair, tmp_path / "raw5", model=plain_model, threshold=0.5, **kw)
    prob5, change5, summary5 = _read(tmp_path / "raw5")
    assert summary5["threshold"] == summary5["network_threshold"] == 0.5
    np.testing.assert_array_equal(change5 == 1, prob5 > 0.5)
    assert (change5 == 1).sum() > (raw_change == 1).sum()
    detect_change(*pair, tmp_path / "none", threshold=0.9, **kw)
    _, change4, summary4 = _read(tmp_path / "none")
    assert not (change4 == 1).any()
    assert any("highest calibrated change probability" in w for w in summary4["warnings"])
    assert summary4["network_threshold"] == 1.0
    assert _ramp(tmp_path / "none") == [0.0, top]  # no break above the ceiling
    detect_change(*pair, tmp_path / "all", threshold=1e-6, **kw)
    _, change5, summary5 = _read(tmp_path / "all")
    assert ((change5 == 1) == (change5 != 255)).all() and summary5["network_threshold"] == -1.0
    assert any("every valid pixel is flagged" in w for w in summary5["warnings"])
    assert not any("nothing can be flagged" in w for w in summary["warnings"])  # the model's own


def _ramp(out: Path) -> list[float]:
    """The stops of change_probability.qml's colour ramp, as QGIS reads them."""
    import xml.etree.ElementTree as ET

    text = (out / "change_probability.qml").read_text(encoding="utf-8")
    root = ET.fromstring(text.split("\n", 1)[1])  # after the DOCTYPE
    shader = root.find("pipe/rasterrenderer/rastershader/colorrampshader")
    assert shader is not None and shader.get("colorRampType") == "INTERPOLATED"
    return [float(item.get("value", "nan")) for item in shader.iter("item")]


def test_replace_card_keeps_the_weights(tmp_path: Path) -> None:
    """A new card, the same tensors; a file that is no geobert checkpoint is one clear error and
    stays as it was."""
    from safetensors.numpy import load_file

    from geobert.models.checkpoint import read_card, replace_card

    model = _without_calibration(tmp_path / "m.safetensors")
    before = load_file(str(pretrained_encoder_path("changenet_s_oscd")))
    after = load_file(str(model))
    assert before.keys() == after.keys()
    assert all(np.array_equal(before[k], after[k]) for k in before)
    assert "calibration" not in read_card(model).training
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(GeobertError):
        replace_card(junk, read_card(model))
    assert junk.read_bytes() == b"not a checkpoint" and sorted(
        p.name for p in tmp_path.iterdir()
    ) == [
        "junk.safetensors",
        "m.safetensors",
    ]


@pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")
def test_the_quicklook_titles_stay_inside_the_picture(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two-line titles (the date, the masked share) are drawn inside the figure, not cut at
    its top edge."""
    import matplotlib.figure

    from geobert.change.pipeline import _quicklook
    from tiles.dates import acquisition_date

    profile = {"driver": "GTiff", "width": 64, "height": 64, "count": 1, "dtype": "uint8"}
    with rasterio.open(tmp_path / "change.tif", "w", **profile) as ds:
        ds.write(np.zeros((1, 64, 64), np.uint8))
    seen = []
    save = matplotlib.figure.Figure.savefig

    def savefig(fig: matplotlib.figure.Figure, *args: object, **kw: object) -> None:
        save(fig, *args, **kw)  # type: ignore[arg-type]
        renderer = fig.canvas.get_renderer()  # type: ignore[attr-defined]
        seen.extend((fig.bbox, ax.title.get_window_extent(renderer)) for ax in fig.axes)

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", savefig)
    date = acquisition_date(EXAMPLE / "imgs_1")
    assert date is not None
    for h, w in ((64, 64), (64, 16), (16, 64)):  # square, tall and wide scenes
        sample = np.random.default_rng(0).random((6, h, w)).astype(np.float32)
        _quicklook(sample, tmp_path / "change.tif", tmp_path / "q.png", (date, date),
                   {"before": 0.2, "after": 0.1})  # fmt: skip
    assert len(seen) == 9
    for fig_box, title in seen:
        assert title.height > 0 and fig_box.y0 <= title.y0 and title.y1 <= fig_box.y1, title
