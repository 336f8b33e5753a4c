"""geobert's Swin stages against timm's, which the first checkpoints were trained with: same
parameter names, same initialisation from a seed, same outputs (eval and training mode)."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from timm.models.swin_transformer import SwinTransformer as TimmSwin

from geobert.models.encoder import EncoderConfig, GeobertEncoder

S2 = [f"B{i:02d}" for i in range(1, 13)] + ["B8A"]


def _timm(config: EncoderConfig, bands: int) -> TimmSwin:
    # exactly how GeobertEncoder built its encoder before it had its own Swin stages
    return TimmSwin(
        img_size=256,
        patch_size=config.patch_size,
        in_chans=bands,
        num_classes=0,
        embed_dim=config.embed_dim,
        depths=config.depths,
        num_heads=config.num_heads,
        window_size=config.window_size,
        mlp_ratio=config.mlp_ratio,
        drop_path_rate=config.drop_path_rate,
        strict_img_size=False,
    )


def _fused(model: torch.nn.Module, enabled: bool) -> None:
    for m in model.modules():
        if hasattr(m, "fused_attn"):
            m.fused_attn = enabled


def _features(swin: torch.nn.Module, x: torch.Tensor) -> list[torch.Tensor]:
    tokens = swin.patch_embed(x)
    feats = []
    for stage in swin.layers:
        tokens = stage(tokens)
        feats.append(tokens)
    feats[-1] = swin.norm(tokens)
    return feats


@pytest.mark.parametrize(
    "config",
    [EncoderConfig(), EncoderConfig(embed_dim=96, depths=(2, 2, 6, 2), window_size=7)],
    ids=["geobert_s", "swin_t_window7"],
)
def test_same_seed_gives_timms_parameters(config: EncoderConfig) -> None:
    torch.manual_seed(3)
    ours = GeobertEncoder(S2, config).swin.state_dict()
    torch.manual_seed(3)
    theirs = _timm(config, len(S2)).state_dict()
    assert list(ours) == list(theirs)
    for name, value in ours.items():
        assert torch.equal(value, theirs[name]), name


@pytest.mark.parametrize("fused", [True, False])
@pytest.mark.parametrize("hw", [(256, 256), (96, 64), (512, 288), (32, 32)])
def test_same_parameters_give_timms_features(hw: tuple[int, int], fused: bool) -> None:
    # 96×64 and 32×32 pad windows and clip shifts; 512×288 has more windows than the reference
    torch.manual_seed(0)
    ours = GeobertEncoder(S2).eval()
    theirs = _timm(ours.config, len(S2)).eval()
    theirs.load_state_dict(ours.swin.state_dict(), strict=False)
    _fused(ours, fused)
    _fused(theirs, fused)
    x = torch.randn(2, 13, *hw)
    with torch.no_grad():
        for a, b in zip(_features(ours.swin, x), _features(theirs, x), strict=True):
            torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_training_step_matches_timm_with_stochastic_depth() -> None:
    # drop path draws random numbers in training mode: same draws, same loss, same gradients
    torch.manual_seed(1)
    ours = GeobertEncoder(S2, EncoderConfig(drop_path_rate=0.5)).train()
    theirs = _timm(ours.config, len(S2)).train()
    theirs.load_state_dict(ours.swin.state_dict(), strict=False)
    x = torch.randn(4, 13, 64, 64)
    losses, grads = [], []
    for swin in (ours.swin, theirs):
        torch.manual_seed(7)
        loss = sum(f.square().mean() for f in _features(swin, x))
        loss.backward()
        losses.append(loss.detach())
        grads.append(swin.patch_embed.proj.weight.grad.clone())
    torch.testing.assert_close(losses[0], losses[1], rtol=0, atol=0)
    torch.testing.assert_close(grads[0], grads[1], rtol=0, atol=0)


def test_running_a_model_does_not_import_torchvision_or_timm() -> None:
    code = (
        "import sys, torch\n"
        "from geobert.models.checkpoint import load_checkpoint\n"
        "from geobert.weights import pretrained_encoder_path\n"
        "model, card = load_checkpoint(pretrained_encoder_path('changenet_s_oscd'))\n"
        "x = torch.zeros(1, 13, 64, 64)\n"
        "model.eval()(x, x)\n"
        "print(sorted(m for m in ('timm', 'torchvision') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
