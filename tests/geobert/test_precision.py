"""``--precision auto``: bf16 only where the CPU multiplies bf16 natively and the model says bf16
was validated; an explicit bf16 on a CPU without bf16 units is a warning, not a silent slowdown."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from geobert.errors import GeobertError
from geobert.models import precision as prec
from geobert.models.checkpoint import read_card
from geobert.weights import pretrained_encoder_path


@pytest.mark.parametrize("native", [True, False])
def test_auto_needs_both_bf16_units_and_a_validated_model(
    monkeypatch: pytest.MonkeyPatch, native: bool
) -> None:
    monkeypatch.setattr(prec, "native_bf16", lambda: native)
    assert prec.resolve_precision("auto", validated_bf16=True) == ("bf16" if native else "fp32")
    assert prec.resolve_precision("auto", validated_bf16=False) == "fp32"
    for explicit in prec.PRECISIONS:  # an explicit choice is obeyed either way
        assert prec.resolve_precision(explicit, validated_bf16=False) == explicit
    with pytest.raises(GeobertError, match="unknown precision 'fp16'; use one of fp32, bf16, auto"):
        prec.resolve_precision("fp16")


def test_emulated_bf16_is_a_warning(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(prec, "native_bf16", lambda: False)
    (note,) = prec.precision_note("bf16")
    assert "without bf16 units" in note and "--precision auto" in note
    assert prec.precision_note("fp32") == []
    monkeypatch.setattr(prec, "native_bf16", lambda: True)
    assert prec.precision_note("bf16") == []


def test_native_bf16_agrees_with_the_cpu_flags() -> None:
    """The probe must say what /proc/cpuinfo says (Linux), or auto would pick emulated bf16."""
    try:
        text = Path("/proc/cpuinfo").read_text()
        flags = next(
            ln.split(":", 1)[1].split() for ln in text.splitlines() if ln.startswith("flags")
        )
    except (OSError, StopIteration):
        pytest.skip("no /proc/cpuinfo flags on this system")
    prec.native_bf16.cache_clear()
    assert prec.native_bf16() == bool({"avx512_bf16", "amx_bf16"} & set(flags))


def test_card_validation_record_decides() -> None:
    card = read_card(pretrained_encoder_path("changenet_s_oscd"))
    training = {k: v for k, v in card.training.items() if k != "bf16_validation"}

    def with_delta(delta: float | None) -> bool:
        record = {} if delta is None else {"bf16_validation": {"f1_delta": delta}}
        return dataclasses.replace(card, training={**training, **record}).bf16_validated

    assert with_delta(-0.004) and with_delta(0.0)
    assert not with_delta(0.006) and not with_delta(-0.02) and not with_delta(None)
