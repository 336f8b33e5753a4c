from __future__ import annotations

import doctest
from pathlib import Path

import numpy as np
import pytest
import torch

import geobert.models.registry
from geobert.errors import BandMismatchError, GeobertError
from geobert.models import create_model, list_models, load_checkpoint, save_checkpoint
from geobert.models.card import ModelCard
from geobert.models.encoder import (
    GeobertEncoder,
    InputBandsError,
    InputShapeError,
    TileSizeError,
    pad_to_stride,
)

S2 = ("B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B09", "B10", "B11", "B12", "B8A")


def _card(model: GeobertEncoder, **kw: object) -> ModelCard:
    n = model.in_chans
    args = {
        "arch": "geobert_s",
        "arch_config": model.config.to_dict(),
        "task": "mim",
        "bands": model.bands,
        "scale": 1e-4,
        "mean": tuple(0.1 * i for i in range(n)),
        "std": (0.05,) * n,
        "gsd_m": 10.0,
        "tile_size_px": 256,
        "geobert_version": "test",
    }
    args.update(kw)
    return ModelCard(**args)  # type: ignore[arg-type]


def test_registry_doctest_and_presets() -> None:
    assert doctest.testmod(geobert.models.registry).failed == 0
    assert {"changenet", "fcsiamdiff", "geobert_s", "geobert_t", "landcovernet"} <= set(
        list_models()
    )
    sizes = {
        n: sum(p.numel() for p in create_model(n, bands=S2).parameters())
        for n in ("geobert_s", "geobert_t")
    }
    assert 4e6 < sizes["geobert_s"] < 6e6  # ~5 M, the CPU default
    assert 25e6 < sizes["geobert_t"] < 30e6  # Swin-T sized
    with pytest.raises(
        GeobertError,
        match="unknown model 'nope'; available: changenet, fcsiamdiff, geobert_s, geobert_t, "
        "landcovernet",
    ):
        create_model("nope", bands=S2)


@pytest.mark.parametrize(
    ("bands", "h", "w"),
    [
        (3, 64, 64),  # RGB
        (4, 96, 64),  # RGB + NIR, non-square
        (6, 64, 128),  # Landsat-like, wide
        (12, 32, 32),  # smallest tile: one window per stage
        (13, 128, 96),  # Sentinel-2, non-square
    ],
)
def test_feature_pyramid_shapes(bands: int, h: int, w: int) -> None:
    model = create_model("geobert_s", bands=[f"b{i}" for i in range(bands)]).eval()
    with torch.no_grad():
        feats = model.forward_features(torch.randn(2, bands, h, w))
    assert [tuple(f.shape) for f in feats] == [
        (2, 48 * 2**i, h // (4 * 2**i), w // (4 * 2**i)) for i in range(4)
    ]
    assert all(torch.isfinite(f).all() for f in feats)


@pytest.mark.parametrize(
    ("shape", "error", "match"),
    [
        ((1, 13, 100, 128), TileSizeError,
         r"100×128 px: height and width must be positive multiples of 32"),
        ((1, 4, 64, 64), InputBandsError,
         r"input has 4 channels but the encoder was built for 13 bands"),
        ((13, 64, 64), InputBandsError, r"expected a \(B, C, H, W\) tensor"),
    ],
)  # fmt: skip
def test_bad_input_shapes_are_clear_errors(
    shape: tuple[int, ...], error: type[InputShapeError], match: str
) -> None:
    model = create_model("geobert_s", bands=S2)
    with pytest.raises(error, match=match) as info:
        model(torch.randn(*shape))
    assert isinstance(info.value, InputShapeError)  # one class catches every shape problem
    assert not (error is InputBandsError and isinstance(info.value, TileSizeError))


def test_fused_attention_matches_explicit_attention() -> None:
    # shifted windows (masked) at stages 1-3 and the relative position bias go through the fused
    # kernel as an additive mask; both paths must give the same features, forward and backward
    torch.manual_seed(0)
    model = create_model("geobert_s", bands=S2).eval()
    attn = [m for m in model.modules() if hasattr(m, "fused_attn")]
    assert len(attn) == 8 and all(m.fused_attn for m in attn)
    x = torch.randn(2, 13, 96, 64, requires_grad=True)
    fused = model(x)
    (g_fused,) = torch.autograd.grad(sum(f.square().mean() for f in fused), x)
    model.set_fused_attention(False)
    explicit = model(x)
    (g_explicit,) = torch.autograd.grad(sum(f.square().mean() for f in explicit), x)
    for a, b in zip(fused, explicit, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(g_fused, g_explicit, rtol=1e-3, atol=1e-6)


def test_padding_makes_any_size_usable() -> None:
    model = create_model("geobert_s", bands=S2).eval()
    x, (h, w) = pad_to_stride(torch.randn(1, 13, 100, 70), 32)
    assert x.shape[-2:] == (128, 96) and (h, w) == (100, 70)
    with torch.no_grad():
        assert model(x)[0].shape[-2:] == (32, 24)


def test_checkpoint_round_trip_is_bit_identical(tmp_path: Path) -> None:
    model = create_model("geobert_s", bands=S2).eval()
    card = _card(model)
    path = save_checkpoint(model, card, tmp_path / "enc.safetensors")
    loaded, card2 = load_checkpoint(path)
    assert card2 == card
    x = torch.randn(2, 13, 64, 64)
    with torch.no_grad():
        for a, b in zip(model(x), loaded(x), strict=True):
            assert torch.equal(a, b)
    assert b"geobert_card" in path.read_bytes()[:4096]  # the card sits in the file header
    assert not list(tmp_path.glob(".*partial"))


def test_band_remapping_by_name_and_missing_bands() -> None:
    model = create_model("geobert_s", bands=("B02", "B03", "B04", "B08"))
    card = _card(model)
    scene = ("B08", "B04", "B03", "B02", "B11")  # other order, one extra band
    idx = card.band_indices(scene)
    assert idx == [3, 2, 1, 0]
    x = np.arange(5, dtype=np.float32).reshape(1, 5, 1, 1) * 1000  # B08=0 … B11=4000
    z = card.normalize(x, idx)
    expect = [(x[0, i, 0, 0] * 1e-4 - card.mean[k]) / card.std[k] for k, i in enumerate(idx)]
    np.testing.assert_allclose(z[0, :, 0, 0], expect, rtol=1e-6)
    with pytest.raises(BandMismatchError, match=r"needs band\(s\) \['B08'\] that the scene lacks"):
        card.band_indices(("B02", "B03", "B04"))
    idx = card.band_indices(("B02", "B03", "B04"), fill="mean")
    assert idx == [0, 1, 2, None]
    assert card.normalize(np.ones((1, 3, 2, 2), np.float32), idx)[0, 3].max() == 0.0


def test_cards_from_newer_versions_and_foreign_files_are_refused(tmp_path: Path) -> None:
    model = create_model("geobert_s", bands=S2)
    newer = _card(model, card_format=99, geobert_version="9.0")
    save_checkpoint(model, newer, tmp_path / "new.safetensors")
    with pytest.raises(GeobertError, match=r"written by geobert 9.0 .* upgrade geobert"):
        load_checkpoint(tmp_path / "new.safetensors")
    (tmp_path / "junk.safetensors").write_bytes(b"\x00" * 100)
    with pytest.raises(GeobertError, match="is not a geobert model file"):
        load_checkpoint(tmp_path / "junk.safetensors")
    with pytest.raises(GeobertError, match="does not exist"):
        load_checkpoint(tmp_path / "missing.safetensors")


def test_shipped_pretrained_encoder_loads_and_describes_itself(oscd_before: Path) -> None:
    import geobert
    from tiles.scene import open_scene

    path = geobert.pretrained_encoder_path()
    assert path.stat().st_size <= 25 * 2**20  # shipped checkpoints stay small
    model, card = geobert.load_checkpoint(path)
    assert card.task == "mim" and card.arch == "geobert_s" and card.bands == S2
    assert card.training["recipe"] == "SimMIM" and card.training["steps_done"] >= 100
    assert card.gsd_m == 10.0 and card.scale == 1e-4
    # a real scene goes through band matching, normalisation and the encoder
    scene = open_scene(oscd_before)
    from rasterio.windows import Window

    data, _ = scene.read(Window(0, 0, 64, 64))
    z = card.normalize(data[None].astype(np.float32), card.band_indices(scene.band_names))
    assert abs(float(z.mean())) < 3  # normalisation in the right units
    with torch.no_grad():
        feats = model(torch.from_numpy(z))
    assert feats[-1].shape == (1, 384, 2, 2) and torch.isfinite(feats[-1]).all()
    with pytest.raises(GeobertError, match="no shipped checkpoint 'nope'"):
        geobert.pretrained_encoder_path("nope")


def test_model_file_travels_on_from_a_machine_without_the_path(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Dask broadcasts a scattered model from worker to worker: a copy unpickled where its path
    does not exist must pickle again from the bytes it carries (this hung multi-worker runs)."""
    import pickle
    import shutil

    from geobert.models.checkpoint import ModelFile
    from geobert.weights import pretrained_encoder_path

    local = tmp_path / "m.safetensors"
    shutil.copy(pretrained_encoder_path("changenet_s_oscd"), local)
    first_hop = pickle.loads(pickle.dumps(ModelFile(str(local))))
    local.unlink()  # the second worker's machine has no such file
    second_hop = pickle.loads(pickle.dumps(first_hop))
    model, card = second_hop.load()
    assert card.task == "change" and sum(p.numel() for p in model.parameters()) > 1e6
