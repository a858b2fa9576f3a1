"""Sizes of a mask in real units, and which masks give a trustworthy size.

Lengths come from the convex hull of the mask's boundary pixels grown by half
a pixel (each pixel's four edge midpoints), not of pixel centres, so a
100×50 px rectangle measures 100×50, not 99×49; a slanted edge still
carries up to one pixel of raster error, so objects under ~100 px across
measure within a few percent, larger ones within 1%. Area is the sum of each pixel's ground-plane area. With a
homography, both are computed after mapping onto the ground plane.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from analytics.calibration import Calibration
from analytics.records import Measurement
from segmenter.masks import CropMask

_EDGE_MIDPOINTS = np.array([[-0.5, 0.0], [0.5, 0.0], [0.0, -0.5], [0.0, 0.5]])
_KERNEL = np.ones((3, 3), np.uint8)


def measure(mask: CropMask, calibration: Calibration, clean: bool = True) -> Measurement | None:
    """Area, perimeter, min-area-rectangle length/width/angle and equivalent diameter.

    ``clean`` is passed through: the caller knows whether the mask touches the
    border or another mask. Returns None for an empty mask.
    """
    if mask.area == 0:
        return None
    contours, _ = cv2.findContours(mask.crop.view(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    hull = cv2.convexHull(np.concatenate(contours)).reshape(-1, 1, 2)
    outline = (hull + _EDGE_MIDPOINTS[None]).reshape(-1, 2).astype(np.float32)  # crop coordinates
    if calibration.matrix is None:  # a scale: measure in pixels, then scale
        s = calibration.scale
        area = mask.area * s * s
        perimeter = sum(cv2.arcLength(c, True) for c in contours) * s
        rect = cv2.minAreaRect(outline)
        (w, h), box = (rect[1][0] * s, rect[1][1] * s), cv2.boxPoints(rect)
    else:  # a homography: map the outline and each pixel onto the ground plane first
        offset = np.array([mask.x0, mask.y0], dtype=np.float64)
        ys, xs = np.nonzero(mask.crop)
        area = float(np.sum(calibration.pixel_areas(xs + offset[0], ys + offset[1])))
        perimeter = sum(cv2.arcLength(calibration.to_world(c.reshape(-1, 2) + offset).astype(np.float32), True) for c in contours)
        rect = cv2.minAreaRect(calibration.to_world(outline + offset).astype(np.float32))
        (w, h), box = rect[1], cv2.boxPoints(rect)
    long_side = max((box[1] - box[0], box[2] - box[1]), key=lambda v: math.hypot(float(v[0]), float(v[1])))
    angle = math.degrees(math.atan2(float(long_side[1]), float(long_side[0]))) % 180.0
    return Measurement(
        area=float(area),
        perimeter=float(perimeter),
        length=float(max(w, h)),
        width=float(min(w, h)),
        angle=round(angle, 2),
        diameter=math.sqrt(4.0 * area / math.pi),
        unit=calibration.unit,
        clean=clean,
    )


def touches_border(mask: CropMask, image_size: tuple[int, int]) -> bool:
    """The mask reaches the first or last row/column: part of the object may be cut off."""
    height, width = image_size
    crop = mask.crop
    return bool(
        (mask.x0 <= 0 and crop[:, 0].any())
        or (mask.y0 <= 0 and crop[0].any())
        or (mask.x1 >= width and crop[:, -1].any())
        or (mask.y1 >= height and crop[-1].any())
    )


def touching(masks: list[CropMask]) -> np.ndarray:
    """Boolean per mask: does it touch (8-connected) or overlap another mask of the frame?

    A mask pressed against another is often cut along the contact line by the
    segmenter, so its size is not trusted for track summaries.
    """
    flags = np.zeros(len(masks), dtype=bool)
    if len(masks) < 2:
        return flags
    windows = np.array([m.window for m in masks], dtype=np.int64)
    grown = windows + np.array([-1, -1, 1, 1])
    overlap = (np.minimum(grown[:, None, 2], windows[None, :, 2]) > np.maximum(grown[:, None, 0], windows[None, :, 0])) & (
        np.minimum(grown[:, None, 3], windows[None, :, 3]) > np.maximum(grown[:, None, 1], windows[None, :, 1])
    )
    np.fill_diagonal(overlap, False)
    for i, j in zip(*np.nonzero(np.triu(overlap | overlap.T))):
        if flags[i] and flags[j]:
            continue
        if _touch(masks[i], masks[j]):
            flags[i] = flags[j] = True
    return flags


def _touch(a: CropMask, b: CropMask) -> bool:
    """Does ``a`` grown by one pixel (8-connected) meet ``b``? Only the pixels near their contact are read."""
    ix0, iy0 = max(a.x0 - 1, b.x0), max(a.y0 - 1, b.y0)  # where a's one-pixel growth can reach b
    ix1, iy1 = min(a.x1 + 1, b.x1), min(a.y1 + 1, b.y1)
    if ix1 <= ix0 or iy1 <= iy0:
        return False
    near = np.zeros((iy1 - iy0 + 2, ix1 - ix0 + 2), np.uint8)  # a's pixels in that window and its 1-px rim
    sx0, sy0 = max(ix0 - 1, a.x0), max(iy0 - 1, a.y0)
    sx1, sy1 = min(ix1 + 1, a.x1), min(iy1 + 1, a.y1)
    if sx1 > sx0 and sy1 > sy0:
        near[sy0 - iy0 + 1 : sy1 - iy0 + 1, sx0 - ix0 + 1 : sx1 - ix0 + 1] = a.crop[sy0 - a.y0 : sy1 - a.y0, sx0 - a.x0 : sx1 - a.x0]
    grown = cv2.dilate(near, _KERNEL)[1:-1, 1:-1].view(bool)
    return bool(np.any(grown & b.crop[iy0 - b.y0 : iy1 - b.y0, ix0 - b.x0 : ix1 - b.x0]))
