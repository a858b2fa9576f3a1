"""Appearance of an object from the pixels under its mask, to tell apart objects whose masks overlap.

Mask IoU cannot separate two pedestrians that cross; their clothes can. Each mask
becomes a colour histogram of its pixels (HSV hue x saturation for chromatic
pixels, value alone for greyish ones, whose hue is noise), computed separately
for the upper and lower half of the mask (shirt and trousers), square-rooted so
that the dot product of two vectors is the mean Bhattacharyya coefficient of
their halves. ``bench/appearance.py`` measured the alternatives that led here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property

import cv2
import numpy as np

from segmenter.masks import CropMask


@dataclass(frozen=True)
class HistogramDesign:
    """How pixels are binned; the default is the design ``bench/appearance.py`` ranked best.

    Pixels with saturation below ``grey_saturation`` (0-255) go to ``value_bins``
    brightness bins, the rest to ``hue_bins`` x ``sat_bins`` hue-saturation bins
    (0: no grey bins). Each of ``parts`` horizontal bands of the mask's box gets
    its own histogram. ``max_pixels`` bounds the work per mask: larger masks are
    sampled on a regular grid.
    """

    hue_bins: int = 16
    sat_bins: int = 4
    value_bins: int = 8
    grey_saturation: int = 40
    parts: int = 2
    max_pixels: int = 1024

    @property
    def part_dim(self) -> int:
        return self.hue_bins * self.sat_bins + self.value_bins

    @property
    def dim(self) -> int:
        return self.parts * self.part_dim

    @cached_property
    def table(self) -> np.ndarray:
        """cv2.LUT table over OpenCV's 8-bit HSV: hue to its bin's offset, saturation to its bin or GREY, value to its bin."""
        levels = np.arange(256)
        hue = np.minimum(levels, 179) * self.hue_bins // 180 * self.sat_bins
        sat = np.where(levels < self.grey_saturation, GREY, levels * self.sat_bins // 256)
        value = self.hue_bins * self.sat_bins + levels * self.value_bins // 256
        return np.stack([hue, sat, value], axis=-1).astype(np.uint8)[None]


GREY = 255  # saturation code of pixels binned by brightness alone
DEFAULT_DESIGN = HistogramDesign()


def mask_histograms(
    image: np.ndarray, masks: Sequence[CropMask], design: HistogramDesign = DEFAULT_DESIGN
) -> np.ndarray:
    """(N, D) float32 appearance vectors of the BGR pixels under each mask, L2-normalised (rows of zeros for empty masks).

    Only each mask's box is converted, sampled down to about ``max_pixels``, and
    OpenCV counts the bins under the mask, so the cost per mask stays bounded
    whatever the object's size.
    """
    height, width = image.shape[:2]
    out = np.zeros((len(masks), design.parts, design.part_dim), dtype=np.float32)
    for index, mask in enumerate(masks):
        m = mask.clipped(height, width)
        if m.area == 0:
            continue
        window, crop = image[m.y0 : m.y1, m.x0 : m.x1], np.ascontiguousarray(m.crop).view(np.uint8)
        step = np.sqrt(m.area / design.max_pixels)
        if step > 1:
            size = (max(round(crop.shape[1] / step), 1), max(round(crop.shape[0] / step), 1))
            sampled = cv2.resize(crop, size, interpolation=cv2.INTER_NEAREST)
            if sampled.any():  # else a thin mask fell between the samples: keep every pixel
                window, crop = cv2.resize(window, size, interpolation=cv2.INTER_NEAREST), sampled
        hue, sat, value = cv2.split(cv2.LUT(cv2.cvtColor(window, cv2.COLOR_BGR2HSV), design.table))
        bins = np.where(sat == GREY, value, hue + sat)
        rows = crop.shape[0]
        for part in range(design.parts):
            r0, r1 = part * rows // design.parts, (part + 1) * rows // design.parts
            if r1 > r0:
                hist = cv2.calcHist([bins[r0:r1]], [0], crop[r0:r1], [design.part_dim], [0, design.part_dim])
                out[index, part] = hist.reshape(-1)
    out = np.sqrt(out / np.maximum(out.sum(axis=2, keepdims=True), 1.0))
    return _normalised(out.reshape(len(masks), design.dim))


def appearance_similarity(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(len(a), len(b)) similarity in [0, 1] (1 = same appearance); 0 against a row of zeros (nothing seen)."""
    a, b = np.asarray(a, dtype=np.float32), np.asarray(b, dtype=np.float32)
    return np.clip(a.reshape(len(a), -1) @ b.reshape(len(b), -1).T, 0.0, 1.0)


def blend(track_feature: np.ndarray | None, new: np.ndarray, momentum: float) -> np.ndarray:
    """The track's running appearance (exponential average, renormalised).

    ``momentum`` is the weight of the old appearance. A new row of zeros (an empty
    mask) leaves the track's appearance as it was; works row-wise on (N, D) too.
    """
    new = np.asarray(new, dtype=np.float32)
    if track_feature is None:
        return new.copy()
    old = np.asarray(track_feature, dtype=np.float32)
    mixed = _normalised(momentum * old + (1.0 - momentum) * new)
    seen = np.any(new != 0, axis=-1, keepdims=True)
    return np.where(seen, mixed, old).astype(np.float32)


def _normalised(vectors: np.ndarray) -> np.ndarray:
    norm = np.linalg.norm(vectors, axis=-1, keepdims=True)
    return vectors / np.where(norm > 0, norm, 1.0)
