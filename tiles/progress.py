"""One small interface for progress and cancellation.

The engine reports ``(done, total)`` tiles and asks ``cancelled()`` between tiles. The CLI turns it
into a progress bar, the QGIS worker into progress lines on stdout, a notebook into nothing at all.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

__all__ = ["CallbackProgress", "Progress"]


class Progress:
    """Base progress sink: ignores updates, never cancels. Subclass what you need.

    ``update`` is called from the thread that consumes results, with ``done`` increasing.
    """

    def start(self, total: int) -> None:
        """A run of ``total`` work units begins."""

    def update(self, done: int, total: int) -> None:
        """``done`` of ``total`` units are finished."""

    def cancelled(self) -> bool:
        """Return True to stop the run; it then raises :class:`~tiles.errors.Cancelled`."""
        return False

    def finish(self) -> None:
        """The run ended (successfully or not)."""


class CallbackProgress(Progress):
    """Progress from a plain callable ``fn(done, total)``, cancellable through :meth:`cancel`."""

    def __init__(self, fn: Callable[[int, int], None] | None = None) -> None:
        self._fn = fn
        self._cancel = threading.Event()

    def update(self, done: int, total: int) -> None:
        if self._fn is not None:
            self._fn(done, total)

    def cancel(self) -> None:
        """Ask the run to stop at the next tile boundary."""
        self._cancel.set()

    def cancelled(self) -> bool:
        return self._cancel.is_set()
