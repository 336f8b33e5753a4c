"""A full or read-only output disk: a clear one-line error and nothing left on the disk.

Each run gets a real small file system: a tmpfs mounted in a private mount namespace
(`unshare -m` as root, `unshare -rm` for users where unprivileged namespaces are allowed), so the
kernel itself answers ENOSPC / EROFS, exactly as a full USB disk or a read-only share would.
"""

from __future__ import annotations

import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
GEOBERT = [sys.executable, "-m", "geobert.cli"]
EX = ROOT / "examples"
JOBS = {
    "change": ["change", EX / "abudhabi" / "imgs_1", EX / "abudhabi" / "imgs_2"],
    "classify": ["classify", EX / "brandenburg"],
}

pytestmark = pytest.mark.slow


def _unshare() -> list[str]:
    """The unshare prefix that may mount a tmpfs here."""
    for prefix in (["unshare", "-m"], ["unshare", "-rm"]):
        try:
            ok = subprocess.run(
                [*prefix, "sh", "-c", "mount -t tmpfs -o size=64k tmpfs /tmp"],
                capture_output=True,
                timeout=30,
            )
        except (OSError, subprocess.TimeoutExpired):
            continue
        if ok.returncode == 0:
            return prefix
    pytest.skip("cannot mount a tmpfs in a private namespace (needs root or user namespaces)")


def run_on_disk(
    tmp: Path, args: list[object], *, size_kb: int, read_only: bool = False, premade: bool = False
) -> tuple[subprocess.CompletedProcess[str], list[str]]:
    """Run geobert with ``-o DISK/out`` on a fresh tmpfs of ``size_kb``; return the process and
    what was left on that disk afterwards (listed inside the namespace, before it vanishes)."""
    disk, listing = tmp / "disk", tmp / "listing.txt"
    disk.mkdir(exist_ok=True)
    cmd = [*GEOBERT, *map(str, args), "-o", str(disk / "out"), "-q"]
    script = f"mount -t tmpfs -o size={size_kb}k tmpfs {shlex.quote(str(disk))} || exit 99\n"
    if premade:
        script += f"mkdir {shlex.quote(str(disk / 'out'))}\n"
    if read_only:
        script += f"mount -o remount,ro {shlex.quote(str(disk))} || exit 99\n"
    script += (
        f"{shlex.join(cmd)}\nrc=$?\n"
        f"(cd {shlex.quote(str(disk))} && find . -mindepth 1) > {shlex.quote(str(listing))}\n"
        "exit $rc\n"
    )
    proc = subprocess.run(
        [*_unshare(), "sh", "-c", script], capture_output=True, text=True, timeout=600
    )
    assert proc.returncode != 99, proc.stderr
    return proc, sorted(listing.read_text().split())


@pytest.fixture(scope="module")
def output_kb(tmp_path_factory: pytest.TempPathFactory) -> dict[str, int]:
    """Size of each job's complete outputs, measured on a normal disk."""
    sizes = {}
    for job, args in JOBS.items():
        out = tmp_path_factory.mktemp(job) / "out"
        subprocess.run([*GEOBERT, *map(str, args), "-o", str(out), "-q"], check=True)
        sizes[job] = sum(p.stat().st_size for p in out.iterdir()) // 1024
    return sizes


def _one_error_line(proc: subprocess.CompletedProcess[str]) -> str:
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("geobert: error: "), proc.stderr
    return lines[0]


@pytest.mark.parametrize("job", list(JOBS))
@pytest.mark.parametrize("fraction", [0.3, 0.9])
def test_full_disk(job: str, fraction: float, output_kb: dict[str, int], tmp_path: Path) -> None:
    # 30 %: the first raster does not fit; 90 %: it fails in the last steps (the COG copy, the
    # GeoPackage or the quick-look), where GDAL's COG driver may cut a file short without saying so
    proc, left = run_on_disk(tmp_path, JOBS[job], size_kb=int(output_kb[job] * fraction))
    line = _one_error_line(proc)
    assert "is full" in line or "No space left on device" in line, line
    assert left == []  # no output, no staging folder, not even the output folder it created


def test_full_disk_with_room_to_spare_succeeds(output_kb: dict[str, int], tmp_path: Path) -> None:
    proc, left = run_on_disk(tmp_path, JOBS["change"], size_kb=2 * output_kb["change"] + 256)
    assert proc.returncode == 0, proc.stderr
    names = ["change.gpkg", "change.qml", "change.tif", "change_probability.qml",
             "change_probability.tif", "quicklook.png", "summary.json"]  # fmt: skip
    assert left == ["./out", *(f"./out/{n}" for n in names)]


@pytest.mark.parametrize("premade", [False, True], ids=["new folder", "existing folder"])
def test_read_only_disk(premade: bool, tmp_path: Path) -> None:
    proc, left = run_on_disk(
        tmp_path, JOBS["change"], size_kb=4096, read_only=True, premade=premade
    )
    line = _one_error_line(proc)
    assert "Read-only file system" in line and "choose a writable folder" in line, line
    assert left == (["./out"] if premade else [])
