"""Camera-motion estimate: known synthetic motions recovered, foreground ignored, identity when unsure; real sequences."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from segmenter.masks import CropMask, mask_iou
from segmenter.motsio import read_mots
from tracker.camera_motion import CameraMotion, affine_scale, apply_to_points, identity, is_identity, warp_mask

W, H = 640, 480
CORNERS = np.array([[0, 0], [W, 0], [0, H], [W, H]], dtype=np.float64)


def texture(seed: int, width: int, height: int) -> np.ndarray:
    """Blurred noise, BGR: corners everywhere, no repeated pattern that could alias the flow."""
    noise = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    return cv2.normalize(cv2.GaussianBlur(noise, (0, 0), 2.0), None, 0, 255, cv2.NORM_MINMAX)


def similarity(angle_deg: float, scale: float, tx: float, ty: float, centre: tuple[float, float]) -> np.ndarray:
    affine = cv2.getRotationMatrix2D(centre, angle_deg, scale)
    affine[:, 2] += (tx, ty)
    return affine


def compose(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``a`` after ``b``, both 2x3."""
    return (np.vstack([a, [0, 0, 1]]) @ np.vstack([b, [0, 0, 1]]))[:2]


def corner_error(estimate: np.ndarray, truth: np.ndarray) -> float:
    """Largest disagreement, in pixels, over the frame's corners (the worst place for a rotation or scale error)."""
    return float(np.abs(apply_to_points(estimate, CORNERS) - apply_to_points(truth, CORNERS)).max())


BACKGROUND = texture(0, 1000, 800)
OBJECT = texture(1, 440, 400)
# frame k shows the background through this view (background -> frame coordinates)
VIEW = similarity(0, 1, -180, -160, (0, 0))


def frame(camera: np.ndarray, objects: list[tuple[int, int]]) -> tuple[np.ndarray, list[CropMask]]:
    """The background seen through ``camera`` after VIEW, with the textured object pasted at each (x, y)."""
    image = cv2.warpAffine(BACKGROUND, compose(camera, VIEW), (W, H), flags=cv2.INTER_LINEAR)
    masks = []
    for x, y in objects:
        h, w = OBJECT.shape[:2]
        image[y : y + h, x : x + w] = OBJECT
        full = np.zeros((H, W), dtype=bool)
        full[y : y + h, x : x + w] = True
        masks.append(CropMask.from_full(full))
    return image, masks


@pytest.mark.parametrize(
    "motion",
    [
        similarity(0, 1, 7.0, -3.0, (W / 2, H / 2)),
        similarity(0, 1, 0.4, 0.3, (W / 2, H / 2)),
        similarity(1.5, 1, -4.0, 2.0, (W / 2, H / 2)),
        similarity(0, 1.03, 0, 0, (W / 2, H / 2)),
        similarity(-0.8, 0.98, 5.0, 6.0, (100, 400)),
    ],
    ids=["shift", "subpixel", "rotate", "zoom", "all"],
)
def test_known_motion_is_recovered(motion: np.ndarray) -> None:
    estimator = CameraMotion()
    first, masks = frame(identity(), [])
    assert is_identity(estimator.update(first, masks))
    second, masks = frame(motion, [])
    estimate = estimator.update(second, masks)
    assert corner_error(estimate, motion) < 0.25
    assert affine_scale(estimate) == pytest.approx(affine_scale(motion), abs=1e-3)


def test_a_large_foreground_object_moving_its_own_way_is_ignored() -> None:
    """An object over half the frame moves 30 px right while the camera pans 5 px left and 2 down.

    Given its masks, the estimate follows the background; without them it is
    dragged towards the object, which shows the masks are what keeps it out.
    """
    camera = similarity(0, 1, -5.0, 2.0, (W / 2, H / 2))
    first, first_masks = frame(identity(), [(60, 40)])
    second, second_masks = frame(camera, [(90, 40)])
    assert first_masks[0].area > W * H // 2

    with_masks = CameraMotion()
    with_masks.update(first, first_masks)
    assert corner_error(with_masks.update(second, second_masks), camera) < 0.25

    without = CameraMotion()
    without.update(first, [])
    assert corner_error(without.update(second, []), camera) > 5


def test_identity_on_a_flat_image_and_after_a_size_change() -> None:
    estimator = CameraMotion()
    flat = np.full((H, W, 3), 128, dtype=np.uint8)
    assert is_identity(estimator.update(flat, []))
    assert is_identity(estimator.update(flat, []))

    shifted = similarity(0, 1, 6.0, 0, (0, 0))
    textured = CameraMotion()
    textured.update(frame(identity(), [])[0], [])
    assert not is_identity(textured.update(frame(shifted, [])[0], []), 0.5)
    bigger = cv2.resize(frame(compose(shifted, shifted), [])[0], (W * 2, H * 2))
    assert is_identity(textured.update(bigger, []))  # a new size starts over
    moved = cv2.resize(frame(compose(shifted, compose(shifted, shifted)), [])[0], (W * 2, H * 2))
    assert corner_error(textured.update(moved, []), similarity(0, 1, 12.0, 0, (0, 0))) < 0.5  # and estimates again


def test_grayscale_frames_and_reset() -> None:
    motion = similarity(0, 1, 3.0, 4.0, (0, 0))
    estimator = CameraMotion()
    estimator.update(cv2.cvtColor(frame(identity(), [])[0], cv2.COLOR_BGR2GRAY), [])
    gray = cv2.cvtColor(frame(motion, [])[0], cv2.COLOR_BGR2GRAY)
    assert corner_error(estimator.update(gray, []), motion) < 0.25
    estimator.reset()
    assert is_identity(estimator.update(gray, []))


def test_helpers() -> None:
    affine = similarity(90, 2.0, 0, 0, (0, 0))
    np.testing.assert_allclose(apply_to_points(affine, [[1.0, 0.0]]), [[0.0, -2.0]], atol=1e-12)
    assert affine_scale(affine) == pytest.approx(2.0)
    assert is_identity(identity()) and not is_identity(similarity(0, 1, 0.01, 0, (0, 0)))
    assert is_identity(similarity(0, 1, 0.01, 0, (0, 0)), tol=0.05)

    square = CropMask(np.ones((10, 20), dtype=bool), 100, 50)
    shifted = warp_mask(square, similarity(0, 1, 5.4, -3.6, (0, 0)))
    assert (shifted.x0, shifted.y0, shifted.crop.shape) == (105, 46, (10, 20))
    turned = warp_mask(square, similarity(90, 1, 0, 0, (109.5, 54.5)))  # about the square's centre (pixel centres)
    assert turned.crop.shape == (20, 10) and turned.area == 200
    assert turned.centroid() == pytest.approx(square.centroid())


def test_static_camera_stays_near_identity(shared_data: Path) -> None:
    """vtest.avi: fixed camera, people walking; no masks given, so they must be outvoted by the background."""
    capture = cv2.VideoCapture(str(shared_data / "vtest.avi"))
    estimator = CameraMotion()
    height = width = 0
    errors = []
    for _ in range(120):
        ok, image = capture.read()
        if not ok:
            break
        height, width = image.shape[:2]
        affine = estimator.update(image, [])
        corners = np.array([[0, 0], [width, 0], [0, height], [width, height]], dtype=np.float64)
        errors.append(np.abs(apply_to_points(affine, corners) - corners).max())
    capture.release()
    assert len(errors) == 120
    assert max(errors) < 0.5  # pixels, at the frame's corners


def test_moving_camera_is_seen_on_mots20_05(shared_data: Path) -> None:
    """MOTS20-05 is filmed walking: the camera moves by pixels per frame, and compensating helps masks overlap."""
    root = shared_data / "mots20_05"
    by_frame: dict[int, dict[int, CropMask]] = {}
    for record in read_mots(root / "gt.txt"):
        if record.frame <= 60:
            by_frame.setdefault(record.frame, {})[record.obj_id] = record.mask()
    estimator = CameraMotion()
    shifts, gains = [], []
    for index in range(1, 61):
        masks = by_frame.get(index, {})
        affine = estimator.update(cv2.imread(str(root / "img1" / f"{index:06d}.jpg")), list(masks.values()))
        shifts.append(float(np.hypot(*(apply_to_points(affine, [[320, 240]])[0] - (320, 240)))))
        for obj_id, previous in by_frame.get(index - 1, {}).items():
            if obj_id in masks and obj_id < 10000:  # ids of 10000 and up are ignore regions
                gains.append(mask_iou(warp_mask(previous, affine), masks[obj_id]) - mask_iou(previous, masks[obj_id]))
    assert sum(s > 2.0 for s in shifts) >= 20  # 44 of these 60 frames when written
    assert np.mean(gains) > 0.1  # mean IoU 0.51 -> 0.74 when written
