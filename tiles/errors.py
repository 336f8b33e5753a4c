"""The geobert error hierarchy.

Every error the project raises on purpose derives from :class:`GeobertError` and also from the
builtin it refines (``BandMismatchError`` is a ``ValueError``), so callers can catch either.
Messages say what came in, what was expected and what to do about it; the CLI prints them as one
line.

The root lives in ``tiles`` because imports go one way (``geobert`` → ``tiles``); ``geobert.errors``
re-exports it.
"""

from __future__ import annotations

from collections.abc import Iterator

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


class GeobertError(Exception):
    """Root of every error geobert raises on purpose."""


class SceneNotFoundError(GeobertError, FileNotFoundError):
    """A scene path does not exist or holds no raster bands geobert recognises."""


class RasterReadError(GeobertError, OSError):
    """A raster could not be opened or read (corrupt, truncated, not a raster)."""


class MissingCRSError(GeobertError, ValueError):
    """A raster has no coordinate reference system or no geotransform."""


class BandMismatchError(GeobertError, ValueError):
    """Two scenes (or a scene and a model) do not carry the same bands."""


class NoOverlapError(GeobertError, ValueError):
    """Two scenes do not share any ground area."""


class InvalidGridError(GeobertError, ValueError):
    """Tile size, overlap or raster dimensions that cannot form a tile grid."""


class OutputExistsError(GeobertError, FileExistsError):
    """The output path exists and overwriting was not requested."""


class OutputNotWritableError(GeobertError, PermissionError):
    """The output directory is missing, read-only or out of space."""


class TileFailedError(GeobertError, RuntimeError):
    """A per-tile function raised; carries the tile window that failed."""


class Cancelled(GeobertError):  # noqa: N818 - reads as ``except Cancelled``, like asyncio's
    """The run was cancelled through the progress callback."""


def exception_chain(exc: BaseException) -> Iterator[BaseException]:
    """``exc``, then what it was raised from or while handling (``__cause__``, else
    ``__context__``), and so on, each once: where a wrapper hides the failure that explains it.

    >>> try:
    ...     raise RuntimeError("outer") from KeyError("inner")
    ... except RuntimeError as e:
    ...     " <- ".join(type(x).__name__ for x in exception_chain(e))
    'RuntimeError <- KeyError'
    """
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        yield cur
        seen.add(id(cur))
        cur = cur.__cause__ or cur.__context__
