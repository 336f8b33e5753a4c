"""Which pretrained encoder a protocol script's methods start from (shared by
``change_loco.py`` and ``landcover_strips.py``; scripts/ is on the path when they run)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import NamedTuple

from geobert.errors import GeobertError
from geobert.models.checkpoint import read_card
from geobert.weights import pretrained_encoder_path

#: steps of the long pretraining run (results/pretrain_long/PROTOCOL.md; scripts/pretrain_long.sh)
LONG_STEPS = 12_000
#: steps of the bi-temporal run from the shipped encoder (results/pretrain_bitemporal/PROTOCOL.md,
#: amendment 1; scripts/pretrain_bitemporal.sh)
BITEMPORAL_STEPS = 1_500
#: SimMIM steps on the land-cover scene from the shipped encoder
#: (results/landcover_bb/scene_mim/PROTOCOL.md; scripts/landcover_scene_mim.sh)
SCENE_STEPS = 1_000
#: the same three times longer (results/landcover_bb/scene_mim_3k/PROTOCOL.md)
SCENE_3K_STEPS = 3_000


class EncoderRun(NamedTuple):
    """What a protocol's encoder must be: the pretraining steps it has (a cosine schedule is
    only read at its end), its objective and, for the bi-temporal one, its decoder's head."""

    steps: int
    objective: str
    head: str = "direct"
    #: continued from a pretrained encoder (``pretrain --init``), not from random weights
    from_init: bool = False


LONG = EncoderRun(LONG_STEPS, "simmim")
BITEMPORAL = EncoderRun(BITEMPORAL_STEPS, "bitemporal")
#: results/pretrain_bitemporal/PROTOCOL.md, amendment 2
BITEMPORAL_RELATIVE = EncoderRun(BITEMPORAL_STEPS, "bitemporal", "relative")
#: results/pretrain_bitemporal/PROTOCOL.md, amendment 3
BITEMPORAL_RESIDUAL = EncoderRun(BITEMPORAL_STEPS, "bitemporal", "residual")
SCENE = EncoderRun(SCENE_STEPS, "simmim", from_init=True)
SCENE_3K = EncoderRun(SCENE_3K_STEPS, "simmim", from_init=True)


def encoder_for(
    methods: Iterable[str], other: Mapping[str, EncoderRun], encoder: Path | None
) -> Path:
    """The encoder ``methods`` start from: the shipped one, or ``encoder`` for the methods of
    ``other`` (method name → the :class:`EncoderRun` the encoder must be). Mixing the two, or a
    missing, unfinished or other kind of ``encoder``, exits with one line that says so."""
    chosen = set(methods)
    named = chosen & set(other)
    if not named:
        if encoder is not None:
            raise SystemExit(f"--encoder is for {sorted(other)} only")
        return pretrained_encoder_path()
    if named != chosen or len({other[m] for m in named}) > 1:
        raise SystemExit(f"run {sorted(named)} on their own, with --encoder")
    if encoder is None:
        raise SystemExit(
            f"{sorted(named)} need --encoder (results/pretrain_long/PROTOCOL.md, "
            "results/pretrain_bitemporal/PROTOCOL.md, results/landcover_bb/scene_mim/PROTOCOL.md, "
            "results/landcover_bb/scene_mim_3k/PROTOCOL.md)"
        )
    steps, objective, head, from_init = other[next(iter(named))]
    try:
        training = read_card(encoder).training
    except GeobertError as exc:
        raise SystemExit(f"--encoder {encoder}: {exc}") from None
    done = int(training.get("steps_done", 0))
    was = training.get("config", {}).get("objective", "simmim")
    if was != objective:
        raise SystemExit(f"{encoder} was pretrained with {was}, not {objective}: another encoder")
    had = training.get("config", {}).get("head", "direct")
    if was == "bitemporal" and had != head:
        raise SystemExit(f"{encoder} has the {had} head, not {head}: another encoder")
    if from_init and "init_card" not in training:
        raise SystemExit(f"{encoder} was pretrained from random weights, not continued from one")
    if done != steps:
        raise SystemExit(f"{encoder} has {done} of {steps} pretraining steps; finish it first")
    return encoder


def encoder_record(encoder: Path) -> dict[str, object]:
    """What a result says about the encoder it started from: the file's name and its steps."""
    return {"file": encoder.name, "steps_done": read_card(encoder).training.get("steps_done")}
