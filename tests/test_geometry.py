"""Sizes and calibration against hand-computed cases."""

import math

import cv2
import numpy as np
import pytest

from analytics.calibration import Calibration, CalibrationConfig, convert
from analytics.measure import measure, touches_border, touching
from segmenter.masks import CropMask

# a ground plane seen at an angle: a 4 m x 6 m rectangle of floor appears as a trapezoid
IMAGE = [(100, 400), (500, 400), (400, 100), (200, 100)]
WORLD = [(0, 0), (4, 0), (4, 6), (0, 6)]


def rect(x0, y0, w, h):
    return CropMask(np.ones((h, w), bool), x0, y0)


def homography() -> Calibration:
    return Calibration(CalibrationConfig(homography={"image_points": IMAGE, "world_points": WORLD, "unit": "m"}))


def world_rectangle(cal: Calibration, x0, x1, y0, y1, size=(480, 640)) -> CropMask:
    """Pixels whose centre maps inside the world rectangle: what a perfect segmenter would return."""
    ys, xs = np.mgrid[0 : size[0], 0 : size[1]]
    w = cal.to_world(np.stack([xs.ravel(), ys.ravel()], 1)).reshape(*size, 2)
    return CropMask.from_full((w[..., 0] >= x0) & (w[..., 0] <= x1) & (w[..., 1] >= y0) & (w[..., 1] <= y1))


def test_rectangle_in_pixels_and_millimetres():
    m = measure(rect(10, 20, 100, 50), Calibration())
    assert (m.area, m.length, m.width, m.angle, m.unit) == (5000, 100, 50, 0, "px")
    assert m.perimeter == 296  # boundary through the boundary pixels' centres: 2 * (99 + 49)
    assert m.diameter == pytest.approx(math.sqrt(4 * 5000 / math.pi))
    mm = measure(rect(10, 20, 100, 50), Calibration(CalibrationConfig(px_per_mm=2)))
    assert (mm.area, mm.length, mm.width, mm.unit) == (1250, 50, 25, "mm")
    metres = measure(rect(0, 0, 100, 50), Calibration(CalibrationConfig(px_per_m=100)))
    assert (metres.area, metres.length, metres.unit) == (pytest.approx(0.5), pytest.approx(1.0), "m")


def test_rotated_rectangle_angle_and_sides():
    ys, xs = np.mgrid[0:400, 0:400] - 200.0
    a = math.radians(30)  # a 200 x 80 rectangle turned 30 degrees (clockwise on screen, y down), centred at (200, 200)
    along, across = xs * math.cos(a) + ys * math.sin(a), -xs * math.sin(a) + ys * math.cos(a)
    m = measure(CropMask.from_full((abs(along) <= 100) & (abs(across) <= 40)), Calibration())
    assert m.angle == pytest.approx(30, abs=0.5)
    assert m.length == pytest.approx(200, rel=0.01) and m.width == pytest.approx(80, rel=0.015)
    assert m.area == pytest.approx(200 * 80, rel=0.01)


def test_homography_round_trip_sizes_within_one_percent():
    cal = homography()
    assert np.allclose(cal.to_world(IMAGE), WORLD, atol=1e-6)
    assert np.allclose(cal.to_image(cal.to_world([(300, 250), (123, 321)])), [(300, 250), (123, 321)])
    for x0, x1, y0, y1 in [(1, 3, 1, 4), (0.5, 3.5, 0.5, 2.0)]:
        m = measure(world_rectangle(cal, x0, x1, y0, y1), cal)
        sides = sorted([x1 - x0, y1 - y0])
        assert m.unit == "m"
        assert m.area == pytest.approx((x1 - x0) * (y1 - y0), rel=0.01)
        assert m.length == pytest.approx(sides[1], rel=0.01) and m.width == pytest.approx(sides[0], rel=0.01)


def test_far_objects_are_not_smaller_with_a_homography():
    cal = homography()
    near, far = world_rectangle(cal, 0.5, 3.5, 0.3, 2.1), world_rectangle(cal, 0.5, 3.5, 4.0, 5.8)
    assert far.area < 0.3 * near.area  # far fewer pixels far away...
    for m in (measure(near, cal), measure(far, cal)):  # ...but the same 3 m x 1.8 m on the ground
        assert (m.area, m.length, m.width) == (pytest.approx(5.4, rel=0.01), pytest.approx(3, rel=0.01), pytest.approx(1.8, rel=0.01))


def test_calibration_errors_and_conversion():
    with pytest.raises(ValueError, match="degenerate"):
        Calibration(CalibrationConfig(homography={"image_points": [(0, 0), (1, 1), (2, 2), (3, 3)], "world_points": WORLD}))
    with pytest.raises(ValueError, match="only one"):
        CalibrationConfig(px_per_mm=1, px_per_m=1000)
    assert convert(2.5, "m", "mm") == 2500 and convert(30, "mm", "cm") == 3
    with pytest.raises(ValueError, match="needs a calibration"):
        Calibration().length_to_pixels(1.0, (0, 0), "m")
    assert Calibration(CalibrationConfig(px_per_m=50)).length_to_pixels(2.0, (10, 10), "m") == pytest.approx(100)


def test_border_and_contact_flags():
    assert touches_border(rect(0, 10, 5, 5), (100, 100)) and touches_border(rect(95, 95, 5, 5), (100, 100))
    assert not touches_border(rect(1, 1, 98, 98), (100, 100))
    a, b, c, d = rect(10, 10, 10, 10), rect(20, 10, 10, 10), rect(50, 50, 5, 5), rect(55, 55, 5, 5)
    # a and b share an edge; c and d meet only at a corner: (54, 54) and (55, 55) are 8-neighbours
    assert touching([a, b, c, d]).tolist() == [True, True, True, True]
    assert touching([a, rect(21, 10, 5, 5), rect(50, 50, 5, 5)]).tolist() == [False, False, False]


def test_contact_matches_a_full_frame_dilation():
    rng = np.random.default_rng(0)
    kernel = np.ones((3, 3), np.uint8)
    for _ in range(500):
        masks = [CropMask(rng.random(tuple(rng.integers(1, 12, 2))) > 0.5, *map(int, rng.integers(20, 40, 2))) for _ in range(3)]
        full = [m.to_full(64, 64) for m in masks]
        grown = [cv2.dilate(f.astype(np.uint8), kernel).astype(bool) for f in full]
        expected = [any((grown[i] & full[j]).any() for j in range(3) if j != i) for i in range(3)]
        assert touching(masks).tolist() == expected
