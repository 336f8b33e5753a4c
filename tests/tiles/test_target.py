"""The output grid a user asks for (tiles.target): pure grid math, and its checks."""

from __future__ import annotations

import math

import pytest
from affine import Affine
from rasterio.crs import CRS
from rasterio.warp import transform_bounds

from tiles.errors import InvalidGridError, NoOverlapError
from tiles.pair import place_on_grid
from tiles.scene import GridSpec
from tiles.target import GridRequest, parse_crs, pixel_size_m, resolve_grid

UTM33 = CRS.from_epsg(32633)
# 10 m pixels, 1000 × 500 px, in Brandenburg
REF = GridSpec(UTM33, Affine(10, 0, 400000, 0, -10, 5800000), 1000, 500)


def test_default_request_is_the_input_grid() -> None:
    assert GridRequest().is_default
    assert resolve_grid(REF, GridRequest()) == REF


def test_resolution_keeps_the_corner_and_covers_the_extent() -> None:
    g = resolve_grid(REF, GridRequest(resolution=30))
    assert (g.transform.c, g.transform.f) == (400000, 5800000)
    assert g.res == (30, 30)
    assert (g.width, g.height) == (334, 167)  # ceil(10000 / 30), ceil(5000 / 30)
    assert g.bounds[2] >= REF.bounds[2] and g.bounds[1] <= REF.bounds[1]


def test_bounds_snap_outward_to_the_input_lattice() -> None:
    g = resolve_grid(REF, GridRequest(bounds=(401003, 5797001, 402000, 5799999)))
    assert g.bounds == (401000, 5797000, 402000, 5800000)
    assert g.res == (10, 10)
    # outside the input is allowed (nodata there): the lattice continues
    g = resolve_grid(REF, GridRequest(bounds=(399000, 5799000, 400500, 5801000)))
    assert g.bounds == (399000, 5799000, 400500, 5801000) and g.transform.c == 399000


def test_reprojection_to_another_crs() -> None:
    g = resolve_grid(REF, GridRequest(crs=CRS.from_epsg(3857)))
    assert g.crs == CRS.from_epsg(3857)
    # Web Mercator at 52° N stretches by 1 / cos(52°) ≈ 1.62
    assert g.res[0] == pytest.approx(10 / math.cos(math.radians(52.3)), rel=0.03)
    assert pixel_size_m(g) == pytest.approx(10, rel=0.03)
    # covers the input's footprint
    west, _, east, _ = transform_bounds(UTM33, g.crs, *REF.bounds)
    assert g.bounds[0] <= west + 1e-6 and g.bounds[2] >= east - g.res[0]
    g = resolve_grid(REF, GridRequest(crs=CRS.from_epsg(3857), resolution=20))
    assert g.res == (20, 20)
    # target-aligned pixels: edges on multiples of 20 m, still covering the footprint
    assert g.transform.c % 20 == 0 and g.transform.f % 20 == 0
    west, south, east, north = transform_bounds(UTM33, g.crs, *REF.bounds)
    left, bottom, right, top = g.bounds
    assert left <= west and bottom <= south and right >= east and top >= north
    assert right - east < 20 + 1e-6 and west - left < 20 + 1e-6


def test_like_is_taken_exactly() -> None:
    other = GridSpec(CRS.from_epsg(3035), Affine(20, 0, 4500000, 0, -20, 3300000), 50, 40)
    assert resolve_grid(REF, GridRequest(like=other)) == other
    assert GridRequest(like=other).exact and GridRequest(bounds=(0, 0, 1, 1)).exact
    assert not GridRequest(resolution=20).exact


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"resolution": 0.0}, "positive pixel size"),
        ({"resolution": float("nan")}, "positive pixel size"),
        ({"bounds": (10, 0, 5, 1)}, "left < right"),
        ({"bounds": (0, 0, 1, 1), "like": REF}, "cannot be combined"),
    ],
)
def test_bad_requests_say_what_to_fix(kwargs: dict, message: str) -> None:  # type: ignore[type-arg]
    with pytest.raises(InvalidGridError, match=message):
        GridRequest(**kwargs)


def test_a_grid_too_large_is_refused() -> None:
    with pytest.raises(InvalidGridError, match=r"beyond geobert's limit.*coarser resolution"):
        resolve_grid(REF, GridRequest(resolution=0.001))  # 10⁷ × 5·10⁶ px
    # degrees typed for a CRS in metres: the message names the unit and what to give
    with pytest.raises(InvalidGridError, match=r"0.0001 metres per pixel here \(for 10 m pixels"):
        resolve_grid(REF, GridRequest(resolution=0.0001))
    with pytest.raises(InvalidGridError, match="choose smaller bounds"):
        resolve_grid(REF, GridRequest(bounds=(0, 0, 2e7, 1e7)))


def test_parse_crs() -> None:
    assert parse_crs("EPSG:3035") == CRS.from_epsg(3035)
    assert parse_crs("3035") == CRS.from_epsg(3035)
    assert parse_crs("+proj=utm +zone=33 +datum=WGS84 +units=m +no_defs").to_epsg() == 32633
    with pytest.raises(InvalidGridError, match="unknown CRS 'EPSG:99999'"):
        parse_crs("EPSG:99999")
    # a compound CRS (Amersfoort / RD New + NAP height): the map is its horizontal part
    assert parse_crs("EPSG:7415") == CRS.from_epsg(28992)
    with pytest.raises(InvalidGridError, match="is a vertical"):
        parse_crs("EPSG:5773")
    engineering = 'ENGCRS["site",EDATUM["s"],CS[Cartesian,2],AXIS["x",east],AXIS["y",north],'
    engineering += 'LENGTHUNIT["metre",1]]'
    with pytest.raises(InvalidGridError, match="not a map CRS"):
        parse_crs(engineering)


def test_place_on_grid_crops_or_keeps_and_refuses_a_grid_off_the_inputs() -> None:
    # a second input covering the right half of the first
    half = GridSpec(UTM33, Affine(10, 0, 405000, 0, -10, 5800000), 500, 500)
    box = resolve_grid(REF, GridRequest(bounds=(399000, 5795000, 406000, 5800000)))
    kept = place_on_grid(box, [REF, half], ["first", "second"], crop=False)
    assert kept == box
    cropped = place_on_grid(box, [REF, half], ["first", "second"], crop=True)
    assert cropped.bounds == (405000, 5795000, 406000, 5800000)
    far = resolve_grid(REF, GridRequest(bounds=(500000, 5000000, 501000, 5001000)))
    with pytest.raises(NoOverlapError, match="does not cover first"):
        place_on_grid(far, [REF, half], ["first", "second"], crop=False)
