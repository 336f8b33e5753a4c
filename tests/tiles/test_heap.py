"""glibc heap settings: tuned, a run's repeated batches reuse mapped pages instead of faulting."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc only")

# One "batch": three buffers of the sizes a batch of tiles allocates (activations, tiles), each
# written in full, then freed; the page faults of ten batches after a warm-up one are counted.
PROBE = textwrap.dedent(
    """
    import json, resource, sys
    import numpy as np
    from tiles.heap import tune_heap
    applied = tune_heap() if sys.argv[1] == "tune" else {}
    def batch():
        bufs = [np.ones(n, np.uint8) for n in (12 << 20, 6 << 20, 12 << 20)]
        del bufs
    batch()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(10):
        batch()
    faults = (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 10
    print(json.dumps({"applied": applied, "faults": faults}))
    """
)
PAGES_PER_BATCH = (30 << 20) // 4096


def probe(mode: str, **env: str) -> dict:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    clean.pop("GLIBC_TUNABLES", None)
    out = subprocess.run(
        [sys.executable, "-c", PROBE, mode],
        env={**clean, **env},
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout)


def test_tuned_heap_reuses_pages_between_batches() -> None:
    default, tuned = probe("default"), probe("tune")
    assert tuned["applied"] == {"arenas": 2, "mmap_threshold": 16 << 20, "trim_threshold": 64 << 20}
    # glibc's defaults hand the freed buffers back and fault them in again every batch
    assert default["faults"] > PAGES_PER_BATCH / 10
    assert tuned["faults"] < PAGES_PER_BATCH / 100


def test_user_settings_win() -> None:
    res = probe("tune", MALLOC_TRIM_THRESHOLD_="0", MALLOC_ARENA_MAX="4")
    assert res["applied"] == {"mmap_threshold": 16 << 20}
    # with the user's trim threshold of 0 every freed top of the heap goes back: faults again
    assert res["faults"] > PAGES_PER_BATCH / 10
    res = probe("tune", GLIBC_TUNABLES="glibc.malloc.mmap_threshold=1048576")
    assert set(res["applied"]) == {"arenas", "trim_threshold"}


def test_worker_heap_overrides_only_dasks_own_trim_threshold() -> None:
    code = "import json; from tiles.heap import tune_worker_heap as t; print(json.dumps(t()))"

    def applied(value: str) -> set[str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
        env["MALLOC_TRIM_THRESHOLD_"] = value
        out = subprocess.run(
            [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
        )
        return set(json.loads(out.stdout.strip().splitlines()[-1]))

    assert "trim_threshold" in applied("65536")  # what Dask's nanny sets: overridden
    assert "trim_threshold" not in applied("1000000")  # someone's own choice: kept
