"""Weights shipped with geobert (trained by the project itself; nothing is downloaded).

* ``geobert_s_mim``: the ``geobert_s`` encoder (5.1 M parameters) pretrained with SimMIM on
  Sentinel-2 L1C scenes (``scripts/pretrain_geobert_s.sh``);
* ``changenet_s_oscd``: the change network fine-tuned on all ten labelled OSCD cities
  (``scripts/change_loco.py --final``), its card holding the calibration of its probability
  (``scripts/change_calibration.py --ship``);
* ``landcover_s_bb``: the land-cover network (band-dropout pixel-path recipe from the encoder
  adapted to the scene by 1 000 SimMIM steps, weights at step 200 of 800; runs on L1C's 13
  bands, L2A's 12 and the four 10 m bands) trained on the Brandenburg scene and its
  OpenStreetMap polygons less a blocked hold-out (``scripts/landcover_scene_mim.sh``, then
  ``scripts/landcover_strips.py --final``).

Each file's model card (bands, normalisation, classes, training data and recipe) is inside it:
``geobert.models.checkpoint.read_card(pretrained_encoder_path(name))``.
"""

from __future__ import annotations

from pathlib import Path

from geobert.errors import GeobertError

__all__ = ["SHIPPED_MODELS", "pretrained_encoder_path", "shipped_or_path"]

_HERE = Path(__file__).resolve().parent


def pretrained_encoder_path(name: str = "geobert_s_mim") -> Path:
    """Path of a shipped checkpoint (default: the pretrained encoder)."""
    path = _HERE / f"{name}.safetensors"
    if not path.is_file():
        shipped = sorted(p.stem for p in _HERE.glob("*.safetensors"))
        raise GeobertError(f"no shipped checkpoint {name!r}; shipped: {shipped}")
    return path


SHIPPED_MODELS = {
    "change": "changenet_s_oscd",
    "landcover": "landcover_s_bb",
    "encoder": "geobert_s_mim",
}
"""Names the commands (``-m``, ``--models``, a batch manifest's ``model`` column) accept for the
shipped models."""


def shipped_or_path(text: str, base: Path | None = None) -> str:
    """``text`` as given, or the shipped checkpoint it names (``change``, ``landcover``,
    ``encoder``) where no file of that name exists — in ``base`` (a manifest's folder) or, without
    one, the working folder (a folder of that name is no model and does not count).

    >>> shipped_or_path("change").endswith("changenet_s_oscd.safetensors")
    True
    >>> shipped_or_path("runs/my_model.safetensors")
    'runs/my_model.safetensors'
    """
    if text in SHIPPED_MODELS and not (Path(text) if base is None else base / text).is_file():
        return str(pretrained_encoder_path(SHIPPED_MODELS[text]))
    return text
