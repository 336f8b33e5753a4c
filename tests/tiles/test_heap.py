"""glibc heap settings: tuned, a run's repeated batches reuse mapped pages instead of faulting."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

from tiles.testing import BATCH_PAGES

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc only")

# the page faults of a probe batch (tiles.testing) with or without the tuned heap
PROBE = textwrap.dedent(
    """
    import json, sys
    from tiles.heap import tune_heap
    from tiles.testing import page_faults_per_batch
    applied = tune_heap() if sys.argv[1] == "tune" else {}
    print(json.dumps({"applied": applied, "faults": page_faults_per_batch(10)}))
    """
)


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
    assert default["faults"] > BATCH_PAGES / 10
    assert tuned["faults"] < BATCH_PAGES / 100


def test_user_settings_win() -> None:
    res = probe("tune", MALLOC_TRIM_THRESHOLD_="0", MALLOC_ARENA_MAX="4")
    assert res["applied"] == {"mmap_threshold": 16 << 20}
    # with the user's trim threshold of 0 every freed top of the heap goes back: faults again
    assert res["faults"] > BATCH_PAGES / 10
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
