"""Global camera motion between consecutive frames, estimated on background pixels.

A moving camera shifts every object in the image at once; a tracker that only
knows each object's own motion mistakes that shift for object motion and loses
masks that no longer overlap their prediction. This module estimates the shift
as a similarity transform (translation, rotation, uniform scale), kept apart
from the tracker so that it can be switched off, tested and measured alone:

- corners (FAST, the strongest per grid cell) are chosen on a downscaled grayscale
  frame, outside the foreground masks (dilated), since moving objects do not follow the camera;
- they are followed into the next frame by pyramidal Lucas-Kanade and dropped when
  they land on that frame's foreground;
- ``cv2.estimateAffinePartial2D`` with RANSAC fits the similarity, which is then
  expressed in full-resolution pixel coordinates.

Anything that makes the estimate unreliable (first frame, size change, too few
points, a fit with an implausible scale) gives the identity, i.e. no compensation.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from segmenter.masks import CropMask

IDENTITY = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
# 4 pyramid levels of a 15 px window follow up to about 60 downscaled pixels per frame; a backward pass
# (forward-backward check) doubled the flow's cost and changed neither the MOTS20-05 nor the vtest figures
LK_PARAMS = {"winSize": (15, 15), "maxLevel": 3, "criteria": (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 20, 0.03)}


def identity() -> np.ndarray:
    """A fresh 2x3 float64 identity (callers may modify what they get)."""
    return IDENTITY.copy()


def apply_to_points(affine: np.ndarray, xy: np.ndarray) -> np.ndarray:
    """``(N, 2)`` points moved by a 2x3 affine."""
    xy = np.asarray(xy, dtype=np.float64).reshape(-1, 2)
    return xy @ affine[:, :2].T + affine[:, 2]


def affine_scale(affine: np.ndarray) -> float:
    """Uniform scale factor of an affine (square root of its area change): box sizes are multiplied by it."""
    return float(np.sqrt(abs(np.linalg.det(affine[:, :2]))))


def is_identity(affine: np.ndarray, tol: float = 1e-6) -> bool:
    """Every entry within ``tol`` of the identity's (so ``tol`` is both pixels of shift and units of scale)."""
    return bool(np.all(np.abs(affine - IDENTITY) <= tol))


def warp_mask(mask: CropMask, affine: np.ndarray) -> CropMask:
    """A crop mask moved by a 2x3 affine, into a crop around its new pixels.

    A pure translation shifts the crop by the rounded offset (no resampling, so
    the shape is kept exactly); otherwise the crop is resampled by nearest neighbour.
    """
    if mask.area == 0:
        return mask
    if np.all(np.abs(affine[:, :2] - IDENTITY[:, :2]) < 1e-4):
        return CropMask(mask.crop, mask.x0 + round(float(affine[0, 2])), mask.y0 + round(float(affine[1, 2])))
    # as in OpenCV, a pixel's index is the coordinate of its centre: crop pixel (u, v) is at frame
    # (u + mask.x0, v + mask.y0), output pixel (p, q) at (p + x0, q + y0); the box below is a superset
    h, w = mask.crop.shape
    corners = np.array([[0, 0], [w, 0], [0, h], [w, h]], dtype=np.float64) + (mask.x0 - 0.5, mask.y0 - 0.5)
    moved = apply_to_points(affine, corners)
    x0, y0 = np.floor(moved.min(axis=0)).astype(int)
    x1, y1 = np.ceil(moved.max(axis=0)).astype(int) + 1
    local = affine.copy()
    local[:, 2] = apply_to_points(affine, [[mask.x0, mask.y0]])[0] - (x0, y0)
    out = cv2.warpAffine(mask.crop.view(np.uint8), local, (int(x1 - x0), int(y1 - y0)), flags=cv2.INTER_NEAREST)
    return _placed(out.view(bool), int(x0), int(y0))


def _placed(full: np.ndarray, x0: int, y0: int) -> CropMask:
    """Crop of a boolean array that sits at ``(x0, y0)``, re-tightened around its pixels."""
    tight = CropMask.from_full(full)
    if tight.area == 0:
        return tight
    return CropMask(tight.crop, tight.x0 + x0, tight.y0 + y0)


class CameraMotion:
    """Estimates each frame's global motion relative to the previous frame.

    Call ``update`` once per frame, in order, with that frame's foreground masks.
    """

    def __init__(
        self,
        width: int = 320,
        max_corners: int = 300,
        margin: int = 8,
        min_points: int = 15,
        ransac_threshold: float = 1.0,
        fast_threshold: int = 12,
    ) -> None:
        """
        width: frames are downscaled to at most this many pixels wide for the estimate.
        max_corners: corners tracked per frame (fewer is cheaper, more resists foreground the masks missed).
        margin: full-resolution pixels by which the foreground masks are grown before corners are excluded.
        min_points: RANSAC inliers needed to trust a fit.
        ransac_threshold: RANSAC reprojection threshold, in downscaled pixels.
        fast_threshold: FAST intensity threshold: lower finds corners in flatter images, higher is cheaper.
        """
        self.width = width
        self.max_corners = max_corners
        self.margin = margin
        self.min_points = min_points
        self.ransac_threshold = ransac_threshold
        self._size: tuple[int, int] | None = None  # full-resolution (height, width) of the previous frame
        self._gray: np.ndarray | None = None  # previous frame, downscaled grayscale
        self._points: np.ndarray | None = None  # corners of the previous frame, (N, 1, 2) float32
        self._fast = cv2.FastFeatureDetector_create(threshold=fast_threshold)
        self._to_small: np.ndarray = np.eye(3)  # full-resolution -> downscaled pixel coordinates
        self._small_size: tuple[int, int] = (0, 0)  # downscaled (width, height), as cv2.resize takes it

    def reset(self) -> None:
        """Forget the previous frame (after a cut or a seek): the next update gives the identity."""
        self._size = self._gray = self._points = None

    def update(self, image: np.ndarray, foreground: Sequence[CropMask]) -> np.ndarray:
        """2x3 float64 affine mapping the previous frame's pixel coordinates to this frame's (full resolution).

        Identity for the first frame, after a size change, or when estimation fails
        (too few points, degenerate fit).
        """
        size = image.shape[:2]
        if size != self._size:
            self._start(size)
        gray = self._downscale(image)
        excluded = self._foreground(foreground, gray.shape)
        affine = identity()
        if self._gray is not None and self._points is not None and len(self._points) >= self.min_points:
            affine = self._estimate(self._gray, gray, self._points, excluded)
        self._gray = gray
        self._points = self._corners(gray, excluded)
        return affine

    def _corners(self, gray: np.ndarray, excluded: np.ndarray) -> np.ndarray:
        """The strongest FAST corner of each cell of a grid of about ``max_corners`` cells, outside the foreground.

        FAST plus a grid costs a fraction of goodFeaturesToTrack (whose eigenvalue
        image dominated the whole estimate) and still spreads the points over the frame,
        which rotation and scale need.
        """
        keypoints = self._fast.detect(gray, 255 - excluded)
        if not keypoints:
            return np.zeros((0, 1, 2), dtype=np.float32)
        xy = cv2.KeyPoint_convert(keypoints)
        response = np.fromiter((k.response for k in keypoints), dtype=np.float32, count=len(keypoints))
        h, w = gray.shape
        cell = max(np.sqrt(h * w / self.max_corners), 1.0)
        cells = (xy[:, 1] // cell).astype(np.int64) * (int(w // cell) + 1) + (xy[:, 0] // cell).astype(np.int64)
        order = np.argsort(-response, kind="stable")
        _, first = np.unique(cells[order], return_index=True)  # the strongest corner of each occupied cell
        return np.ascontiguousarray(xy[order[first]].reshape(-1, 1, 2))

    def _start(self, size: tuple[int, int]) -> None:
        self.reset()
        self._size = size
        height, width = size
        s_x = min(1.0, self.width / width)
        small_w, small_h = max(round(width * s_x), 1), max(round(height * s_x), 1)
        sx, sy = small_w / width, small_h / height
        # cv2.resize maps pixel centres: x_small = (x + 0.5) * s - 0.5
        self._to_small = np.array([[sx, 0.0, 0.5 * sx - 0.5], [0.0, sy, 0.5 * sy - 0.5], [0.0, 0.0, 1.0]])
        self._small_size = (small_w, small_h)

    def _downscale(self, image: np.ndarray) -> np.ndarray:
        gray = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY) if image.ndim == 3 else image
        if self._small_size != (gray.shape[1], gray.shape[0]):
            gray = cv2.resize(gray, self._small_size, interpolation=cv2.INTER_AREA)
        return gray

    def _foreground(self, masks: Sequence[CropMask], shape: tuple[int, int]) -> np.ndarray:
        """uint8 image at the downscaled size, 255 on the grown foreground."""
        out = np.zeros(shape, dtype=np.uint8)
        sx, sy = self._to_small[0, 0], self._to_small[1, 1]
        for mask in masks:
            if mask.area == 0:
                continue
            x0, y0 = int(np.floor(mask.x0 * sx)), int(np.floor(mask.y0 * sy))
            x1, y1 = int(np.ceil(mask.x1 * sx)), int(np.ceil(mask.y1 * sy))
            cx0, cy0, cx1, cy1 = max(x0, 0), max(y0, 0), min(x1, shape[1]), min(y1, shape[0])
            if cx1 <= cx0 or cy1 <= cy0:
                continue
            crop = cv2.resize(mask.crop.view(np.uint8), (x1 - x0, y1 - y0), interpolation=cv2.INTER_NEAREST)
            out[cy0:cy1, cx0:cx1] |= crop[cy0 - y0 : cy1 - y0, cx0 - x0 : cx1 - x0] * np.uint8(255)
        radius = max(round(self.margin * sx), 1)
        return cv2.dilate(out, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1)))

    def _estimate(self, prev: np.ndarray, gray: np.ndarray, points: np.ndarray, excluded: np.ndarray) -> np.ndarray:
        ahead, ok, _ = cv2.calcOpticalFlowPyrLK(prev, gray, points, None, **LK_PARAMS)
        good = ok[:, 0] == 1
        src, dst = points[good, 0], ahead[good, 0]
        h, w = excluded.shape
        xi, yi = np.round(dst[:, 0]).astype(int), np.round(dst[:, 1]).astype(int)
        inside = (xi >= 0) & (xi < w) & (yi >= 0) & (yi < h)
        src, dst, xi, yi = src[inside], dst[inside], xi[inside], yi[inside]
        background = excluded[yi, xi] == 0
        src, dst = src[background], dst[background]
        if len(src) < self.min_points:
            return identity()
        small, inliers = cv2.estimateAffinePartial2D(
            src, dst, method=cv2.RANSAC, ransacReprojThreshold=self.ransac_threshold, maxIters=500, confidence=0.995
        )
        if small is None or int(inliers.sum()) < self.min_points or not 0.5 < affine_scale(small) < 2.0:
            return identity()
        full = np.linalg.inv(self._to_small) @ np.vstack([small, [0.0, 0.0, 1.0]]) @ self._to_small
        return full[:2].copy()
