"""geobert: masked-image-model pretrained encoders for multispectral remote sensing.

The tiling engine lives in the sibling package :mod:`tiles`; this package holds the pipelines that
run on it and the command-line interface.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("geobert")
except PackageNotFoundError:  # pragma: no cover - running from a source tree without install
    __version__ = "0+unknown"

from geobert.errors import GeobertError
from geobert.indices import normalized_difference

__all__ = ["GeobertError", "__version__", "normalized_difference"]
