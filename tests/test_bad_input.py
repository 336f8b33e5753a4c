"""The bad-input matrix: every case exits non-zero with one clear line on stderr, writes nothing
at the final output paths and leaves its inputs byte-for-byte unchanged."""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyogrio.raw
import pytest
import rasterio
import shapely
from rasterio.transform import from_origin

from tests.conftest import read_example_pair, tree_checksums

ROOT = Path(__file__).resolve().parents[1]
GEOBERT = [sys.executable, "-m", "geobert.cli"]
BB = ROOT / "tests" / "data" / "brandenburg"


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Good and broken inputs, all made from the shipped example pair."""
    from safetensors.torch import load_file, save_file

    from geobert.weights import pretrained_encoder_path

    d = tmp_path_factory.mktemp("bad")
    pair, before, after = read_example_pair()
    n, h, w = before.shape
    profile = {"driver": "GTiff", "width": w, "height": h, "count": n, "dtype": "uint16",
               "crs": pair.grid.crs, "transform": pair.grid.transform}  # fmt: skip

    def write(name: str, arr: np.ndarray, **changes: object) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
            prof = profile | {"count": arr.shape[0]} | changes
            with rasterio.open(d / name, "w", **prof) as dst:
                dst.write(arr)
                dst.descriptions = pair.before.band_names[: arr.shape[0]]

    write("before.tif", before)
    write("after.tif", after)
    write("nocrs.tif", before, crs=None, transform=rasterio.Affine.identity())
    write("far.tif", after, transform=from_origin(0.0, 0.0, 1e-4, 1e-4))
    write("rgb.tif", before[[3, 2, 1]])
    write("blank.tif", np.zeros_like(before), nodata=0)
    write("one.tif", before[:, :1, :1], width=1, height=1)
    # the classic CRS slip: the same coordinates labelled with another UTM zone
    write("wrongzone.tif", after, crs="EPSG:32633")
    nonfinite = np.full(before.shape, np.nan, np.float32)
    nonfinite[:, :, ::2] = np.inf
    write("nonfinite.tif", nonfinite, dtype="float32")
    write("huge.tif", before[:, :64, :64], width=64, height=64)
    _stack_in_glob_order(BB, d / "glob_order.tif")
    _claim_dimensions(d / "huge.tif", 2_000_000_000, 2_000_000_000)
    raw = (d / "before.tif").read_bytes()
    (d / "truncated.tif").write_bytes(raw[: len(raw) // 3])
    (d / "text.tif").write_text("this is not a raster\n")
    (d / "empty.tif").write_bytes(b"")
    (d / "corrupt.safetensors").write_bytes(b"\x00garbage" * 64)
    # a checkpoint from a future geobert: same weights, newer card format
    src = pretrained_encoder_path("changenet_s_oscd")
    with open(src, "rb") as f:
        header = json.loads(f.read(int.from_bytes(f.read(8), "little")))
    meta = dict(header["__metadata__"])
    key = next(k for k, v in meta.items() if '"card_format"' in v)
    card = json.loads(meta[key])
    card["card_format"] = 99
    meta[key] = json.dumps(card)
    save_file(load_file(src), str(d / "future.safetensors"), metadata=meta)
    # the same card with a tensor dropped and one of another shape
    weights = load_file(src)
    meta = dict(header["__metadata__"])
    dropped = sorted(weights)[0]
    del weights[dropped]
    name, t = next((k, v) for k, v in sorted(weights.items()) if v.ndim == 2)
    weights[name] = t[:, :1].contiguous()
    save_file(weights, str(d / "damaged.safetensors"), metadata=meta)
    (d / "exists").mkdir()
    (d / "exists" / "change.tif").write_text("keep me")
    (d / "manifest.json").write_text("{not json")
    from rasterio.control import GroundControlPoint

    corners = [(0, 0, 54.5, 24.4), (0, w, 54.6, 24.4), (h, 0, 54.5, 24.3), (h, w, 54.6, 24.3)]
    gcps = [GroundControlPoint(r, c, x, y) for r, c, x, y in corners]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
        with rasterio.open(
            d / "gcps.tif", "w", **(profile | {"crs": None, "transform": None})
        ) as dst:
            dst.write(before)
            dst.descriptions = pair.before.band_names
            dst.gcps = (gcps, rasterio.crs.CRS.from_epsg(4326))
    os.mkfifo(d / "pipe.tif")  # reading it would block forever
    (d / "dots.csv").write_text("id,command,scene\n..,classify,before.tif\n")
    (d / "noid.csv").write_text("name;command;scene\nx;classify;before.tif\n")
    bands = d / "bands"  # a band folder, as users pass Sentinel-2's IMG_DATA
    bands.mkdir()
    for i, name in enumerate(pair.before.band_names):
        prof = profile | {"count": 1}
        with rasterio.open(bands / f"T40RBN_20180101T000000_{name}.tif", "w", **prof) as dst:
            dst.write(before[i : i + 1])
    far_polys = d / "far.gpkg"
    pyogrio.raw.write(
        str(far_polys),
        geometry=shapely.to_wkb(np.array([shapely.box(0, 0, 100, 100)], dtype=object)),
        field_data=[np.array(["forest"], dtype=object)],
        fields=["fclass"], geometry_type="Polygon", crs="EPSG:32633", driver="GPKG",
    )  # fmt: skip
    # the training polygons plus one bow-tie (a self-intersecting ring) inside the scene
    _, _, wkb, fields = pyogrio.raw.read(BB / "landuse.gpkg", columns=["fclass"])
    x0, y0 = shapely.from_wkb(wkb[0]).centroid.coords[0]
    bowtie = shapely.Polygon([(x0, y0), (x0 + 50, y0 + 50), (x0 + 50, y0), (x0, y0 + 50)])
    assert not shapely.is_valid(bowtie)
    pyogrio.raw.write(
        str(d / "bowtie.gpkg"),
        geometry=np.append(wkb, shapely.to_wkb(shapely.MultiPolygon([bowtie]))).astype(object),
        field_data=[np.append(fields[0], "farmland").astype(object)],
        fields=["fclass"], geometry_type="MultiPolygon",
        crs=pyogrio.read_info(BB / "landuse.gpkg")["crs"], driver="GPKG",
    )  # fmt: skip
    return d


def _claim_dimensions(path: Path, width: int, height: int) -> None:
    """Rewrite ImageWidth/ImageLength in a little-endian TIFF's first IFD (a corrupt header)."""
    raw = bytearray(path.read_bytes())
    assert raw[:4] == b"II*\x00"
    ifd = struct.unpack_from("<I", raw, 4)[0]
    for i in range(struct.unpack_from("<H", raw, ifd)[0]):
        entry = ifd + 2 + 12 * i
        tag = struct.unpack_from("<H", raw, entry)[0]
        if tag in (256, 257):  # LONG, one value
            struct.pack_into("<HHII", raw, entry, tag, 4, 1, width if tag == 256 else height)
    path.write_bytes(bytes(raw))


Case = Callable[[Path, Path], list[str]]
CASES: dict[str, tuple[Case, str]] = {
    "truncated tiff": (lambda d, o: ["change", d / "truncated.tif", d / "after.tif", "-o", o],
                       "cannot open"),
    "text file named .tif": (lambda d, o: ["change", d / "text.tif", d / "after.tif", "-o", o],
                             "cannot open"),
    "zero-size file": (lambda d, o: ["change", d / "empty.tif", d / "after.tif", "-o", o],
                       "cannot open"),
    "missing crs": (lambda d, o: ["change", d / "nocrs.tif", d / "after.tif", "-o", o],
                    "no coordinate reference system"),
    "non-overlapping dates": (lambda d, o: ["change", d / "before.tif", d / "far.tif", "-o", o],
                              "do not overlap"),
    "bands do not match the model": (
        lambda d, o: ["change", d / "rgb.tif", d / "rgb.tif", "-o", o], "B01"),
    "all-nodata scene": (lambda d, o: ["change", d / "blank.tif", d / "after.tif", "-o", o],
                         "no pixel is valid"),
    "corrupt model file": (
        lambda d, o: ["change", d / "before.tif", d / "after.tif", "-o", o, "-m",
                      d / "corrupt.safetensors"], "not a geobert model file"),
    "a land-cover model for change": (
        lambda d, o: ["change", d / "before.tif", d / "after.tif", "-o", o, "-m", "landcover"],
        "not a change model; pass -m change"),
    "a change model for land cover": (
        lambda d, o: ["classify", BB, "-o", o, "-m", "change"],
        "not a land-cover model; pass -m landcover"),
    "a misspelt shipped model": (
        lambda d, o: ["classify", BB, "-o", o, "-m", "landcvoer"],
        "a shipped model's name (change, landcover, encoder)"),
    "model from a newer geobert": (
        lambda d, o: ["change", d / "before.tif", d / "after.tif", "-o", o, "-m",
                      d / "future.safetensors"], "upgrade"),
    "output exists without --overwrite": (
        lambda d, o: ["change", d / "before.tif", d / "after.tif", "-o", d / "exists"],
        "pass --overwrite"),
    "unwritable output directory": (
        lambda d, o: ["change", d / "before.tif", d / "after.tif", "-o", "/proc/geobert-out"],
        "cannot create output folder"),
    "output folder is a file": (
        lambda d, o: ["change", d / "before.tif", d / "after.tif", "-o", d / "corrupt.safetensors"],
        "is a file, not a folder"),
    "1-pixel raster": (lambda d, o: ["change", d / "one.tif", d / "after.tif", "-o", o],
                       "need at least 32×32 px"),
    "absurd dimensions in the header": (
        lambda d, o: ["change", d / "huge.tif", d / "after.tif", "-o", o],
        "claims 2000000000×2000000000 pixels"),
    "NaN/inf float raster": (lambda d, o: ["change", d / "nonfinite.tif", d / "after.tif", "-o", o],
                             "no pixel is valid"),
    "CRS mismatch between dates": (
        lambda d, o: ["change", d / "before.tif", d / "wrongzone.tif", "-o", o],
        "one of them carries the wrong CRS"),
    "classify: wrong bands": (lambda d, o: ["classify", d / "rgb.tif", "-o", o], "B01"),
    "classify: bands in glob order, named as L1C's": (  # the L1C cloud mask sees no land
        lambda d, o: ["classify", d / "glob_order.tif", "--bands", "s2-l1c", "-o", o],
        "check that --bands names its bands in the file's order"),
    "classify: an unnamed RGB image": (  # naming its bands cannot help: it has too few
        lambda d, o: ["classify", ROOT / "tests" / "data" / "rgb_byte_edge.tif", "-o", o],
        "the scene has 3 band(s) (band1, band2, band3), fewer than the 4 the model needs"),
    "change: two places in two UTM zones": (  # each footprint in lon/lat, from its own CRS
        lambda d, o: ["change", BB, ROOT / "tests" / "data" / "s2_jp2", "-o", o],
        "first date covers (12.5946, 52.4809, 12.6238, 52.4987) (EPSG:32633), the second "
        "(-75.6268, 37.6689, -75.6131, 37.6797) (EPSG:32618) in longitude/latitude"),
    "classify: not a raster": (lambda d, o: ["classify", d / "text.tif", "-o", o], "cannot open"),
    "train: missing class field": (
        lambda d, o: ["train-landcover", "--image", BB, "--labels", BB / "landuse.gpkg",
                      "--class-field", "landuse", "-o", o / "m.safetensors"],
        "its fields are: osm_id, fclass, name"),
    "train: polygons outside the scene": (
        lambda d, o: ["train-landcover", "--image", BB, "--labels", d / "far.gpkg",
                      "--class-field", "fclass", "-o", o / "m.safetensors"], "1 of 1 lie"),
    "train: invalid polygon geometry": (
        lambda d, o: ["train-landcover", "--image", BB, "--labels", d / "bowtie.gpkg",
                      "--class-field", "fclass", "-o", o / "m.safetensors"],
        "1 of 57 polygons"),
    "train: a frozen random encoder": (
        lambda d, o: ["train-landcover", "--image", BB, "--labels", BB / "landuse.gpkg",
                      "--class-field", "fclass", "-o", o / "m.safetensors", "--init", "scratch",
                      "--freeze-encoder"], "use --no-freeze-encoder or --init mim"),
    "train: a self-training share above 1": (
        lambda d, o: ["train-landcover", "--image", BB, "--labels", BB / "landuse.gpkg",
                      "--class-field", "fclass", "-o", o / "m.safetensors",
                      "--self-train-steps", "100", "--self-train-share", "1.5"],
        "self-training share 1.5: must be a share of each class's pixels in (0, 1]"),
    "info: neither a scene nor a model": (
        lambda d, o: ["info", d / "changenet"], "a shipped model's name (change, landcover"),
    "batch: broken manifest": (lambda d, o: ["batch", d / "manifest.json", "-o", o],
                               "is not valid JSON"),
    "classify: a FIFO as input": (
        lambda d, o: ["classify", d / "pipe.tif", "-o", o], "not a regular file or folder"),
    "change: a FIFO as the model": (
        lambda d, o: ["change", d / "before.tif", d / "after.tif", "-o", o, "-m", d / "pipe.tif"],
        "is not a regular file"),
    "change: a FIFO as the zones": (
        lambda d, o: ["change", d / "before.tif", d / "after.tif", "-o", o, "--zones",
                      d / "pipe.tif"], "is not a regular file"),
    "batch: a FIFO as the manifest": (
        lambda d, o: ["batch", d / "pipe.tif", "-o", o], "is not a regular file"),
    "change: georeferenced by GCPs": (
        lambda d, o: ["change", d / "gcps.tif", d / "after.tif", "-o", o], "gdalwarp -r bilinear"),
    "change: a model missing tensors": (
        lambda d, o: ["change", d / "before.tif", d / "after.tif", "-o", o, "-m",
                      d / "damaged.safetensors"],
        "does not match its own model card (changenet): 1 missing tensors"),
    # ids name folders inside OUTDIR: '..' would write into its parent
    "batch: id '..'": (lambda d, o: ["batch", d / "dots.csv", "-o", o], "not start with '.'"),
    "batch: no id column": (lambda d, o: ["batch", d / "noid.csv", "-o", o], "no 'id' column"),
    "ndvi: output is its input": (
        lambda d, o: ["ndvi", d / "before.tif", "-o", d / "before.tif", "--overwrite"],
        "is the input"),
    "ndvi: output is the second date": (
        lambda d, o: ["ndvi", d / "before.tif", d / "after.tif", "-o", d / "after.tif",
                      "--overwrite"],
        "is the input"),
    "change: output inside an input band folder": (
        lambda d, o: ["change", d / "bands", d / "after.tif", "-o", d / "bands" / "out"],
        "inside the input folder"),
    "classify: output folder is the input folder": (
        lambda d, o: ["classify", d / "bands", "-o", d / "bands", "--overwrite"],
        "inside the input folder"),
    "change: geocentric CRS": (
        lambda d, o: ["change", d / "before.tif", d / "after.tif", "-o", o, "--crs", "EPSG:4978"],
        "is geocentric"),
    "change: vertical CRS": (
        lambda d, o: ["change", d / "before.tif", d / "after.tif", "-o", o, "--crs", "EPSG:5773"],
        "is a vertical (height) CRS"),
    "change: output path too long": (
        lambda d, o: ["change", d / "before.tif", d / "after.tif", "-o", o / ("x" * 300)],
        "longer than the file system allows"),
}  # fmt: skip


def _stack_in_glob_order(folder: Path, dst: Path) -> None:
    """The Brandenburg crop's 13 bands stacked on the 10 m grid in the order a shell glob (and
    ``gdalbuildvrt -separate *_B*.tif``) lists them: B8A after B12, not after B08."""
    files = sorted(folder.glob("*_B*.tif"))
    with rasterio.open(next(f for f in files if f.stem.endswith("B02"))) as ref:
        profile = ref.profile | {"count": len(files), "driver": "GTiff"}
        shape = ref.shape
    with rasterio.open(dst, "w", **profile) as out:
        for i, f in enumerate(files, 1):
            with rasterio.open(f) as src:
                out.write(src.read(1, out_shape=shape), i)


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input(case: str, inputs: Path, tmp_path: Path) -> None:
    args, message = CASES[case]
    out = tmp_path / "out"
    out.mkdir()
    watched = [inputs, BB]
    before = [tree_checksums(p) for p in watched]
    argv = [str(a) for a in args(inputs, out)]
    if argv[0] not in ("batch", "info"):  # the commands with a progress bar
        argv.append("-q")  # no progress bar: stderr holds only what went wrong
    proc = subprocess.run([*GEOBERT, *argv], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("geobert: error: "), proc.stderr
    assert message in lines[0], lines[0]
    assert list(out.iterdir()) == []  # nothing at the final paths, no staging left
    assert [tree_checksums(p) for p in watched] == before
    assert (inputs / "exists" / "change.tif").read_text() == "keep me"
