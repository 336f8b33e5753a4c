"""geobert models: the pyramid Swin encoder, the change and land-cover networks built on it, the
FC-Siam-diff baseline, their registry and checkpoints.

Model modules never import rasterio: arrays arrive as ``(B, C, H, W)`` tensors.
"""

from __future__ import annotations

from geobert.models import changenet, encoder, fcsiamdiff, landcovernet  # noqa: F401 - register
from geobert.models.card import ModelCard
from geobert.models.checkpoint import load_checkpoint, save_checkpoint
from geobert.models.encoder import GeobertEncoder
from geobert.models.registry import create_model, list_models

__all__ = [
    "GeobertEncoder",
    "ModelCard",
    "create_model",
    "list_models",
    "load_checkpoint",
    "save_checkpoint",
]
