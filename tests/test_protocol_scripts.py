"""The protocol scripts in scripts/ refuse what the protocols rule out, in one line each."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from geobert.models.checkpoint import read_card

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ROOT / "geobert" / "weights" / "geobert_s_mim.safetensors"
UNFINISHED = f"has {read_card(SHIPPED).training['steps_done']} of 12000 pretraining steps"
LONG_CHANGE = "geobert (MIM 12k, band dropout)"
LONG_LANDCOVER = "geobert (MIM 12k, pixel path, band dropout)"
BITEMPORAL = "geobert (bi-temporal MIM, band dropout)"


def _run(script: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(ROOT / "scripts" / script), "--data", "/nowhere",
                           *args], capture_output=True, text=True, timeout=300)  # fmt: skip


@pytest.mark.parametrize(
    ("script", "args", "says"),
    [
        ("change_loco.py", ["--methods", LONG_CHANGE], "need --encoder"),
        ("change_loco.py", ["--methods", LONG_CHANGE, "--encoder", str(SHIPPED)],
         UNFINISHED),
        ("change_loco.py", ["--methods", "geobert (MIM)", "--encoder", str(SHIPPED)],
         "--encoder is for"),
        ("landcover_strips.py", ["--recipes", LONG_LANDCOVER, "geobert (MIM)"],
         "on their own, with --encoder"),
        ("landcover_strips.py", ["--recipes", LONG_LANDCOVER, "--encoder", str(SHIPPED)],
         UNFINISHED),
        ("landcover_strips.py", ["--final", LONG_LANDCOVER], "need --encoder"),
        ("change_loco.py", ["--methods", LONG_CHANGE, "--encoder", "/nowhere.safetensors"],
         "--encoder /nowhere.safetensors:"),
        ("change_loco.py", ["--methods", BITEMPORAL, "--encoder", str(SHIPPED)],
         "was pretrained with simmim, not bitemporal"),
        ("change_loco.py", ["--methods", BITEMPORAL, LONG_CHANGE], "on their own, with --encoder"),
    ],
)  # fmt: skip
def test_a_method_of_the_long_pretraining_needs_its_finished_encoder(
    script: str, args: list[str], says: str
) -> None:
    """An unfinished encoder is never scored (the protocol reads a cosine schedule at its end),
    and the shipped encoder's methods never run from another one by mistake."""
    proc = _run(script, *args)
    assert proc.returncode == 1 and says in proc.stderr, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
