"""The documentation site builds without a warning, and its API pages come from the code."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_the_site_builds_strictly_with_the_api_from_the_docstrings(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(ROOT / "mkdocs.yml"),
         "-d", str(tmp_path / "site")],
        capture_output=True, text=True, timeout=300, cwd=ROOT,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    api = (tmp_path / "site" / "api" / "index.html").read_text(encoding="utf-8")
    # a docstring's own words, so a page that only lists names would fail
    assert "Run change detection on two dates" in api
    assert "band_dropout" in api and "ModelCard" in api
    for page in ("cli", "qgis", "cluster", "change", "landcover", "install"):
        assert (tmp_path / "site" / page / "index.html").is_file(), page
