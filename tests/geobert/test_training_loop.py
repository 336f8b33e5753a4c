"""The shared training loop (geobert.training.loop) and timm-style weight decay groups."""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from geobert.change.train import ChangeTrainConfig
from geobert.errors import GeobertError
from geobert.landcover.train import LandCoverTrainConfig
from geobert.models.changenet import ChangeNet
from geobert.models.registry import create_model
from geobert.models.simmim import SimMIM
from geobert.training.ema import WeightEma
from geobert.training.finetune import scaled_adamw
from geobert.training.loop import train_steps
from geobert.training.optim import no_weight_decay_names
from geobert.training.pretrain import PretrainConfig
from geobert.training.schedule import warmup_cosine

TABLE = re.compile(r"relative_position_bias_table$")


def _scalar_net(w: float = 1.0) -> torch.nn.Linear:
    net = torch.nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        net.weight.fill_(w)
    return net


def test_hooks_lr_and_micro_batches_follow_the_steps() -> None:
    net = _scalar_net()
    opt = torch.optim.SGD(
        [{"params": net.parameters(), "scale": 0.5}], lr=0.0
    )  # the group's scale multiplies the schedule's rate
    seen_k: list[int] = []
    seen_lr: list[float] = []
    steps_seen: list[int] = []
    checkpoints: list[int] = []

    def forward(k: int) -> torch.Tensor:
        seen_k.append(k)
        seen_lr.append(opt.param_groups[0]["lr"])
        return net(torch.ones(1, 1))

    done = train_steps(
        net, opt, forward, lambda y: (y**2).mean(), steps=5, start=1, accum_steps=3,
        lr_at=lambda s: 0.01 * (s + 1),
        on_step=lambda n, loss: steps_seen.append(n),
        checkpoint_at={2, 5, 9}, on_checkpoint=checkpoints.append,
    )  # fmt: skip
    assert done == 5
    assert seen_k == list(range(3, 15))  # resumed at step 1: micro-batches 3 … 14
    assert seen_lr == [0.5 * 0.01 * (s + 1) for s in range(1, 5) for _ in range(3)]
    assert steps_seen == [2, 3, 4, 5] and checkpoints == [2, 5]


def test_accumulated_step_uses_the_mean_gradient_and_reports_the_mean_loss() -> None:
    net = _scalar_net(2.0)
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    targets = [1.0, 3.0]  # micro-batch k fits w to targets[k]
    losses: list[float] = []
    train_steps(
        net, opt, lambda k: net(torch.ones(1, 1)) - targets[k], lambda r: (r**2).mean(),
        steps=1, accum_steps=2, lr_at=lambda s: 0.1, clip_grad_norm=None,
        on_step=lambda n, loss: losses.append(loss),
    )  # fmt: skip
    # loss ((w-1)² + (w-3)²)/2 at w = 2: 1; gradient ((w-1) + (w-3)) = 0: w stays
    assert losses == [1.0] and net.weight.item() == 2.0
    targets[:] = [0.0, 0.0]
    train_steps(
        net, opt, lambda k: net(torch.ones(1, 1)) - targets[k], lambda r: (r**2).mean(),
        steps=1, accum_steps=2, lr_at=lambda s: 0.1, clip_grad_norm=None,
    )  # fmt: skip
    assert net.weight.item() == pytest.approx(2.0 - 0.1 * 2 * 2.0)  # w − lr·2w


def test_gradient_is_clipped_to_the_norm() -> None:
    net = _scalar_net(100.0)
    opt = torch.optim.SGD(net.parameters(), lr=1.0)
    train_steps(
        net, opt, lambda k: net(torch.ones(1, 1)), lambda y: (y**2).mean(),
        steps=1, lr_at=lambda s: 1.0, clip_grad_norm=3.0,
    )  # fmt: skip
    assert net.weight.item() == pytest.approx(97.0)  # gradient 200, clipped to 3


def test_ema_follows_every_step_and_hooks_may_evaluate() -> None:
    net = _scalar_net(0.0)
    opt = torch.optim.SGD(net.parameters(), lr=1.0)
    ema = WeightEma(net, decay=0.5)
    weights: list[float] = []
    modes: list[bool] = []

    def forward(k: int) -> torch.Tensor:
        modes.append(net.training)
        return net(torch.ones(1, 1)) - 1.0

    train_steps(
        net, opt, forward, lambda r: (r**2).mean(), steps=4, lr_at=lambda s: 0.25,
        clip_grad_norm=None, ema=ema,
        on_step=lambda n, loss: weights.append(net.weight.item()),
        checkpoint_at={1, 2, 3}, on_checkpoint=lambda n: net.eval(),
    )  # fmt: skip
    assert modes == [True] * 4  # the loop sets training mode back after a checkpoint hook
    avg = 0.0
    for n, w in enumerate(weights, start=1):  # timm's warm-up: min(decay, (1 + n) / (10 + n))
        d = min(0.5, (1 + n) / (10 + n))
        avg = d * avg + (1 - d) * w
    assert ema.updates == 4 and ema.model.weight.item() == pytest.approx(avg)


def test_a_hook_stops_the_run_after_a_last_checkpoint() -> None:
    net = _scalar_net()
    opt = torch.optim.SGD(net.parameters(), lr=0.0)
    checkpoints: list[int] = []
    done = train_steps(
        net, opt, lambda k: net(torch.ones(1, 1)), lambda y: y.mean(), steps=10,
        lr_at=lambda s: 0.0, on_step=lambda n, loss: n == 3,
        checkpoint_at={2}, on_checkpoint=checkpoints.append,
    )  # fmt: skip
    assert done == 3 and checkpoints == [2, 3]


def test_autocast_covers_forward_not_loss() -> None:
    net = _scalar_net()
    opt = torch.optim.SGD(net.parameters(), lr=0.0)
    inside: list[tuple[str, bool]] = []

    def forward(k: int) -> torch.Tensor:
        inside.append(("forward", torch.is_autocast_enabled("cpu")))
        return net(torch.ones(1, 1))

    def loss(y: torch.Tensor) -> torch.Tensor:
        inside.append(("loss", torch.is_autocast_enabled("cpu")))
        return y.float().mean()

    train_steps(net, opt, forward, loss, steps=1, lr_at=lambda s: 0.0, bf16=True)
    assert inside == [("forward", True), ("loss", False)]


@pytest.mark.parametrize(
    "cfg",
    [
        ChangeTrainConfig(steps=40, warmup_steps=5, lr=1e-3),  # floor 0
        LandCoverTrainConfig(steps=30, warmup_steps=3),  # floor 0
        PretrainConfig(steps=20, warmup_steps=2, lr=1e-3, min_lr=1e-5),  # floor min_lr
    ],
)
def test_configs_share_one_schedule(cfg: ChangeTrainConfig) -> None:
    floor = getattr(cfg, "min_lr", 0.0)
    for s in (0, cfg.warmup_steps - 1, cfg.warmup_steps, cfg.steps // 2, cfg.steps):
        expect = warmup_cosine(
            s, steps=cfg.steps, warmup=cfg.warmup_steps, peak=cfg.lr, floor=floor
        )
        assert cfg.lr_at(s) == expect
    assert cfg.lr_at(cfg.steps) == pytest.approx(floor)


def _decayed_by_adamw(model: torch.nn.Module, opt: torch.optim.Optimizer) -> set[str]:
    """Names of the parameters one AdamW step moves when every gradient is zero: only weight
    decay moves a parameter then (Adam's own update is 0 / (0 + eps)); every parameter starts
    at 1, as decay leaves zeros (fresh biases) where they are."""
    with torch.no_grad():
        for p in model.parameters():
            p.fill_(1.0)
            p.grad = torch.zeros_like(p)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    opt.step()
    return {n for n, p in model.named_parameters() if not torch.equal(p, before[n])}


def test_finetuning_decays_only_matrices_and_scales_the_encoder() -> None:
    torch.manual_seed(0)
    model = ChangeNet(create_model("geobert_s", bands=["b1", "b2", "b3"]))
    names = dict(model.named_parameters())
    tables = {n for n in names if TABLE.search(n)}
    assert len(tables) == 8  # one per Swin block
    expect = {n for n, p in names.items() if p.ndim > 1} - tables
    assert any(re.search(r"norm", n) for n in set(names) - expect)  # norms are among the rest

    opt = scaled_adamw(model, model.encoder, lr=0.1, weight_decay=0.01, encoder_lr_scale=0.5)
    for g in opt.param_groups:
        g["lr"] = 0.1 * g["scale"]
    assert _decayed_by_adamw(model, opt) == expect
    enc = {id(p) for p in model.encoder.parameters()}
    for g in opt.param_groups:  # every group is wholly encoder (scale 0.5) or wholly head (1)
        assert {id(p) in enc for p in g["params"]} == {g["scale"] == 0.5}

    old = scaled_adamw(
        model, model.encoder, lr=0.1, weight_decay=0.01, encoder_lr_scale=0.5,
        decay_all_params=True,
    )  # fmt: skip
    assert _decayed_by_adamw(model, old) == set(names)  # the recipe before issue 19


def test_pretraining_keeps_mask_token_and_tables_out_of_decay() -> None:
    model = SimMIM(create_model("geobert_s", bands=["b1", "b2"]))  # type: ignore[arg-type]
    names = {n for n, _ in model.named_parameters()}
    assert no_weight_decay_names(model) == {"mask_token"} | {n for n in names if TABLE.search(n)}


@pytest.mark.slow
def test_pretraining_resumes_with_the_weight_decay_it_started_with(
    tmp_path: Path, s2_jp2: Path
) -> None:
    from geobert.models.checkpoint import read_card
    from geobert.training.pretrain import pretrain

    torch.set_num_threads(2)
    cfg = PretrainConfig(
        window_px=64, batch_size=2, accum_steps=1, steps=3, warmup_steps=1,
        checkpoint_every=1, stats_windows=4, decay_position_tables=True,
    )  # fmt: skip
    out = tmp_path / "mim.safetensors"

    def stop_after_two(step: int, total: int, loss: float) -> None:
        if step == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        pretrain([s2_jp2], out, cfg, on_step=stop_after_two)
    state_path = tmp_path / "mim.safetensors.train.pt"
    state = torch.load(state_path, weights_only=True)
    assert state["decay_position_tables"] is True
    del state["decay_position_tables"]  # a state saved before issue 19
    torch.save(state, state_path)
    # resumed with today's default (tables not decayed): the state's optimiser groups win
    pretrain([s2_jp2], out, replace(cfg, decay_position_tables=False), resume=True)
    training = read_card(out).training
    assert training["steps_done"] == 3 and training["config"]["decay_position_tables"] is True


@pytest.mark.parametrize("train_bf16", [False, True])
def test_pretraining_steps_run_in_bf16_only_when_asked(
    tmp_path: Path, s2_jp2: Path, monkeypatch: pytest.MonkeyPatch, train_bf16: bool
) -> None:
    """``train_bf16`` puts the CPU forward passes under bf16 autocast (the card says so); the
    default stays fp32 on CPU."""
    from geobert.models.checkpoint import read_card
    from geobert.training import pretrain as pretrain_module

    seen: list[bool] = []

    class Recording(SimMIM):
        def forward(self, x: torch.Tensor, mask: torch.Tensor):  # type: ignore[no-untyped-def]
            seen.append(torch.is_autocast_enabled("cpu"))
            return super().forward(x, mask)

    monkeypatch.setattr(pretrain_module, "SimMIM", Recording)
    cfg = PretrainConfig(
        window_px=64, batch_size=2, accum_steps=2, steps=1, warmup_steps=1,
        stats_windows=4, train_bf16=train_bf16,
    )  # fmt: skip
    out = tmp_path / "mim.safetensors"
    pretrain_module.pretrain([s2_jp2], out, cfg)
    assert seen == [train_bf16, train_bf16]  # both micro-batches
    assert read_card(out).training["config"]["train_bf16"] is train_bf16


@pytest.mark.slow
def test_a_resumed_pretraining_records_each_session_and_keeps_its_schedule(
    tmp_path: Path, s2_jp2: Path
) -> None:
    """Reading from the files then, resumed, from memory: the card says how each session ran
    and the losses are those of one uninterrupted run; another schedule is refused."""
    from geobert.models.checkpoint import read_card
    from geobert.training.pretrain import pretrain

    cfg = PretrainConfig(
        window_px=64, batch_size=2, accum_steps=1, steps=3, warmup_steps=1,
        checkpoint_every=1, stats_windows=4, scenes_in_memory=False,
    )  # fmt: skip
    whole: list[float] = []
    pretrain([s2_jp2], tmp_path / "whole.safetensors", cfg, on_step=lambda s, n, v: whole.append(v))
    training = read_card(tmp_path / "whole.safetensors").training
    assert training["sessions"] == [
        {"from_step": 0, "device": "cpu", "bf16_steps": False, "scenes_in_memory": False}
    ]

    out = tmp_path / "mim.safetensors"

    def stop_after_two(step: int, total: int, loss: float) -> None:
        if step == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        pretrain([s2_jp2], out, cfg, on_step=stop_after_two)
    resumed: list[float] = []
    memory = replace(cfg, scenes_in_memory=True)
    pretrain([s2_jp2], out, memory, resume=True, on_step=lambda s, n, v: resumed.append(v))
    np.testing.assert_allclose(resumed, whole[1:], rtol=1e-5)  # from the step-1 checkpoint
    assert read_card(out).training["sessions"] == [
        {"from_step": 0, "device": "cpu", "bf16_steps": False, "scenes_in_memory": False},
        {"from_step": 1, "device": "cpu", "bf16_steps": False, "scenes_in_memory": True},
    ]
    with pytest.raises(GeobertError, match=r"steps=3 \(not 12\)"):
        pretrain([s2_jp2], out, replace(cfg, steps=12), resume=True)
