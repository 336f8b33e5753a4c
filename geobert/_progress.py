"""Progress sinks for front ends (a tqdm bar for the CLI)."""

from __future__ import annotations

from typing import Any

from tqdm import tqdm

from tiles.progress import Progress

__all__ = ["TqdmProgress"]


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
