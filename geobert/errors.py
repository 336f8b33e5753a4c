"""geobert's error hierarchy (defined in :mod:`tiles.errors`, re-exported here)."""

from __future__ import annotations

from tiles.errors import (
    BandMismatchError,
    Cancelled,
    GeobertError,
    InvalidGridError,
    MissingCRSError,
    NoOverlapError,
    OutputExistsError,
    OutputNotWritableError,
    RasterReadError,
    SceneNotFoundError,
    TileFailedError,
)

__all__ = [
    "BandMismatchError",
    "Cancelled",
    "GeobertError",
    "InvalidGridError",
    "MissingCRSError",
    "NoOverlapError",
    "OutputExistsError",
    "OutputNotWritableError",
    "RasterReadError",
    "SceneNotFoundError",
    "TileFailedError",
]
