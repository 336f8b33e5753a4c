"""Progress sinks for front ends: a tqdm bar for people, progress lines for programs."""

from __future__ import annotations

import threading
from typing import Any

from tqdm import tqdm

from tiles.progress import Progress

__all__ = ["LineProgress", "TqdmProgress"]


class TqdmProgress(Progress):
    """A tqdm progress bar on stderr, counting tiles."""

    def __init__(self, desc: str = "tiles", disable: bool = False) -> None:
        self._desc = desc
        self._disable = disable
        self._bar: Any = None
        self._done = 0

    def start(self, total: int) -> None:
        self._bar = tqdm(total=total, desc=self._desc, unit="tile", disable=self._disable)
        self._done = 0

    def update(self, done: int, total: int) -> None:
        if self._bar is not None and done > self._done:
            self._bar.update(done - self._done)
            self._done = done

    def finish(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


class LineProgress(Progress):
    """``progress: P`` lines on stdout (P in percent, one decimal) for front ends such as the
    QGIS plugin's worker. The first engine run of a command (the model) maps to 0–90 %, later
    runs (post-processing) to 90–99 %; the command prints ``progress: 100.0`` when it succeeds,
    so values only ever increase."""

    def __init__(self, stream: Any = None) -> None:
        import sys

        self._stream = stream or sys.stdout
        self._run = 0
        self._last = -1.0
        self._lock = threading.Lock()  # updates come from several engine threads

    def start(self, total: int) -> None:
        self._run += 1

    def update(self, done: int, total: int) -> None:
        frac = done / total if total else 1.0
        pct = 90.0 * frac if self._run <= 1 else 90.0 + 9.0 * frac
        self.emit(pct)

    def emit(self, pct: float) -> None:
        pct = round(pct, 1)
        with self._lock:
            if pct > self._last:
                self._last = pct
                self._stream.write(f"progress: {pct:.1f}\n")  # one write: lines never interleave
                self._stream.flush()
