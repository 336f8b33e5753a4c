from __future__ import annotations

import doctest
import errno
import os
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine
from rasterio.crs import CRS
from rasterio.windows import Window

import tiles.writer
from tiles.errors import OutputExistsError, OutputNotWritableError
from tiles.scene import GridSpec
from tiles.writer import RasterWriter, check_output_path, output_error

GRID = GridSpec(CRS.from_epsg(32633), Affine(10, 0, 300000, 0, -10, 5800000), 1200, 1100)


def test_doctests() -> None:
    assert doctest.testmod(tiles.writer).failed == 0


def test_cog_with_overviews_georeferencing_and_metadata(tmp_path: Path) -> None:
    out = tmp_path / "classes.tif"
    rng = np.random.default_rng(0)
    data = rng.integers(0, 3, (1, GRID.height, GRID.width), dtype=np.uint8)
    colormap = {0: (0, 0, 0, 0), 1: (255, 0, 0, 255), 2: (0, 128, 0, 255)}
    with RasterWriter(
        out,
        GRID,
        count=1,
        dtype="uint8",
        nodata=255,
        band_names=("change",),
        overview_resampling="nearest",
        colormap=colormap,
        tags={"classes": "none,change,other"},
    ) as w:
        # windows in scrambled order, not aligned with the 512 px internal blocks
        for r0, c0 in [(600, 700), (0, 0), (0, 700), (600, 0)]:
            win = Window(c0, r0, min(700, GRID.width - c0), min(600, GRID.height - r0))
            w.write(win, data[(slice(None), *win.toslices())])
        assert not out.exists()  # nothing at the final path until the writer closes
    with rasterio.open(out) as ds:
        assert ds.tags(ns="IMAGE_STRUCTURE")["LAYOUT"] == "COG"
        assert ds.profile["compress"] == "deflate" and ds.profile["blockxsize"] == 512
        assert ds.overviews(1) == [2, 4]
        assert ds.crs == GRID.crs and ds.transform == GRID.transform
        assert ds.nodata == 255 and ds.descriptions == ("change",)
        assert ds.colormap(1)[1] == (255, 0, 0, 255)
        assert ds.tags()["classes"] == "none,change,other"
        np.testing.assert_array_equal(ds.read(), data)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["classes.tif"]


def test_error_inside_writer_leaves_no_file(tmp_path: Path) -> None:
    out = tmp_path / "o.tif"

    def fail_halfway() -> None:
        with RasterWriter(out, GRID, count=1, dtype="float32", nodata=None) as w:
            w.write(Window(0, 0, 10, 10), np.ones((1, 10, 10), np.float32))
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        fail_halfway()
    assert list(tmp_path.iterdir()) == []


def test_wrong_shape_write_is_rejected(tmp_path: Path) -> None:
    with (
        pytest.raises(ValueError, match="does not fit window"),
        RasterWriter(tmp_path / "o.tif", GRID, count=2, dtype="float32", nodata=None) as w,
    ):
        w.write(Window(0, 0, 10, 10), np.ones((1, 10, 10), np.float32))
    assert list(tmp_path.iterdir()) == []


def test_existing_output_and_overwrite(tmp_path: Path) -> None:
    out = tmp_path / "o.tif"
    out.write_text("keep me")
    with pytest.raises(OutputExistsError, match="pass --overwrite"):
        check_output_path(out, overwrite=False)
    assert check_output_path(out, overwrite=True) == out
    with pytest.raises(OutputExistsError, match="is a directory"):
        check_output_path(tmp_path, overwrite=True)


def test_missing_and_read_only_output_folders(tmp_path: Path) -> None:
    with pytest.raises(OutputNotWritableError, match="does not exist; create it first"):
        check_output_path(tmp_path / "no" / "o.tif", overwrite=False)
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        if not os.access(ro, os.W_OK):
            with pytest.raises(OutputNotWritableError, match="is not writable"):
                check_output_path(ro / "o.tif", overwrite=False)
            return
    finally:
        ro.chmod(0o755)
    # root writes through permission bits (CI runs as root): a read-only mount stops everyone
    _check_on_read_only_mount(ro)


def _check_on_read_only_mount(folder: Path) -> None:
    """``check_output_path`` inside a private mount namespace where ``folder`` is a tmpfs
    remounted read-only (as the disk-fault tests make their disks)."""
    import shlex
    import subprocess
    import sys

    from tests.test_disk_faults import _unshare

    q = shlex.quote(str(folder))
    code = (
        "from tiles.writer import check_output_path\n"
        "from tiles.errors import OutputNotWritableError\n"
        "try:\n"
        f"    check_output_path({str(folder / 'o.tif')!r}, overwrite=False)\n"
        "except OutputNotWritableError as e:\n"
        "    print('refused:', e)\n"
    )
    script = (
        f"mount -t tmpfs -o size=64k tmpfs {q} && mount -o remount,ro {q} || exit 99\n"
        f"{shlex.quote(sys.executable)} -c {shlex.quote(code)}\n"
    )
    proc = subprocess.run(
        [*_unshare(), "sh", "-c", script], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    assert "refused:" in proc.stdout and "is not writable" in proc.stdout, proc.stdout


def test_unwritable_file_system_is_a_clear_error() -> None:
    # /proc refuses new files even for root, for whom permission bits do not apply
    with (
        pytest.raises(OutputNotWritableError, match=r"writing /proc/geobert.tif failed"),
        RasterWriter("/proc/geobert.tif", GRID, count=1, dtype="uint8", nodata=0),
    ):
        pass


def test_full_disk_is_reported_as_such() -> None:
    err = output_error(Path("/data/out.tif"), OSError(errno.ENOSPC, "No space left on device"))
    assert isinstance(err, OutputNotWritableError)
    assert "disk holding /data is full" in str(err)
