"""What a downloaded product and a STAC item have in common: one file per band.

:class:`BandFiles` is the narrow interface the engine reads scenes through (stackstac's item →
array): the GDAL path of each band, what to add to its digital numbers, the no-data value, the
scene classification layer (Sentinel-2 L2A) and the acquisition date. :mod:`tiles.products`
(``.SAFE`` / ``.zip``) and :mod:`tiles.stac` (STAC Item JSON) each fill one in; nothing downstream
knows which.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date

__all__ = ["BandFiles", "offsets_text"]


@dataclass(frozen=True, kw_only=True)
class BandFiles:
    """The file of each band (GDAL paths, in band order), the offsets to add to its digital
    numbers (reflectance = (DN + offset) / 10000), the scene classification layer and the date."""

    source: str
    bands: dict[str, str]
    offsets: dict[str, float] = field(default_factory=dict)
    scl: str | None = None
    sensing_date: date | None = None
    #: the no-data value of the bands (None: the files say, or there is none)
    nodata: float | None = None

    def title(self) -> str:
        """What this is, for the start of :meth:`describe` (overridden by each kind)."""
        return "band files"

    def describe(self) -> str:
        """One line for ``geobert info`` and the log."""
        return (
            f"{self.title()}, {len(self.bands)} bands ({', '.join(self.bands)}), DN offset "
            f"{offsets_text(self.offsets)}"
            + (", scene classification (SCL)" if self.scl else "")
            + (f", acquired {self.sensing_date}" if self.sensing_date else "")
        )


def offsets_text(offsets: dict[str, float]) -> str:
    """The distinct DN offsets of the bands, for the one-line description.

    >>> offsets_text({"B02": -1000.0, "B03": -1000.0}), offsets_text({})
    ('-1000', 'none')
    """
    distinct = sorted(set(offsets.values()))
    return ", ".join(f"{o:g}" for o in distinct) if distinct else "none"
