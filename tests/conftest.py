"""Shared fixtures: paths to the real data crops in tests/data (see tests/data/README.md)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from hypothesis import settings

from tiles.pair import ScenePair

# CI machines are shared and noisy: judge properties, not per-example timings.
settings.register_profile("geobert", deadline=None, max_examples=100)
settings.load_profile("geobert")


def pytest_configure(config: pytest.Config) -> None:
    """Tests that press Ctrl-C send SIGINT to a command they start, as a terminal does to its
    foreground job. Run as a background job (``cmd &`` in a script, as CI may run us), the suite
    inherits SIGINT *ignored*, every command it starts would inherit that too and run on to the
    end. Python's own handler here is reset to the default in children when they exec, so they
    see Ctrl-C as a user's command does."""
    import signal

    if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


DATA = Path(__file__).parent / "data"


@pytest.fixture(scope="session")
def oscd_before() -> Path:
    return DATA / "oscd_beirut" / "imgs_1"


@pytest.fixture(scope="session")
def oscd_after() -> Path:
    return DATA / "oscd_beirut" / "imgs_2"


@pytest.fixture(scope="session")
def s2_jp2() -> Path:
    return DATA / "s2_jp2"


@pytest.fixture(scope="session")
def rgb_edge() -> Path:
    return DATA / "rgb_byte_edge.tif"


def read_example_pair() -> tuple[ScenePair, np.ndarray, np.ndarray]:
    """The shipped Abu Dhabi example pair on one grid: ``(pair, before, after)`` as uint16
    ``(bands, rows, cols)`` arrays."""
    from rasterio.windows import Window

    from tiles import align_pair, open_scene

    ex = DATA.parent.parent / "examples" / "abudhabi"
    pair = align_pair(open_scene(ex / "imgs_1"), open_scene(ex / "imgs_2"))
    h, w = pair.grid.shape
    data, _ = pair.read(Window(0, 0, w, h))
    n = len(pair.before.band_names)
    return pair, data[:n].astype(np.uint16), data[n:].astype(np.uint16)


def tree_checksums(root: Path) -> dict[str, str]:
    """sha256 of every file under ``root`` (to prove inputs are left unchanged)."""
    files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
    return {str(p): hashlib.sha256(p.read_bytes()).hexdigest() for p in files}


@dataclass(frozen=True)
class Identity:
    """Tile-function factory returning the input unchanged."""

    def __call__(self):  # type: ignore[no-untyped-def]
        return identity


def identity(x: np.ndarray, valid: np.ndarray) -> np.ndarray:
    return x
