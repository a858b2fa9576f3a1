"""Compact instance masks: a boolean crop plus where it sits in the frame.

Full-frame boolean arrays cost H*W bytes per object (2 MB per object at 1080p),
so every mask in maskwatch is stored as the tight crop around its pixels and the
crop's top-left corner. IoU between two such masks only touches the pixels of
the overlap window, and RLE (pycocotools) is produced only at the file boundary.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np
from pycocotools import mask as mask_utils


@dataclass(frozen=True, slots=True)
class CropMask:
    """A boolean mask stored as ``crop`` placed at ``(x0, y0)`` in a frame."""

    crop: np.ndarray  # (h, w) bool
    x0: int
    y0: int
    area: int = field(init=False, compare=False)  # pixel count, computed once: IoU needs it per pair
    _centroid: tuple[float, float] | None = field(init=False, compare=False, default=None, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "area", int(np.count_nonzero(self.crop)))

    def __reduce__(self) -> tuple:
        """Pickle the crop as packed bits, an eighth of its bytes.

        Masks cross process boundaries in bulk: the shared segmenter of ``serve``
        answers every camera over a socket, 50 masks of a 720p frame are about
        2.4 MB as bool bytes, and sending them took longer than unpacking costs.
        """
        return _unpickle, (np.packbits(self.crop), self.crop.shape, self.x0, self.y0)

    @property
    def x1(self) -> int:
        return self.x0 + self.crop.shape[1]

    @property
    def y1(self) -> int:
        return self.y0 + self.crop.shape[0]

    @property
    def window(self) -> tuple[int, int, int, int]:
        """Integer ``(x0, y0, x1, y1)`` with exclusive ends."""
        return self.x0, self.y0, self.x1, self.y1

    @classmethod
    def from_full(cls, mask: np.ndarray) -> CropMask:
        """Crop a full-frame mask to the bounding box of its pixels."""
        mask = np.asarray(mask, dtype=bool)
        rows = np.flatnonzero(mask.any(axis=1))
        if rows.size == 0:
            return cls(np.zeros((0, 0), dtype=bool), 0, 0)
        cols = np.flatnonzero(mask.any(axis=0))
        y0, y1, x0, x1 = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
        return cls(np.ascontiguousarray(mask[y0:y1, x0:x1]), int(x0), int(y0))

    @classmethod
    def from_rle(cls, rle: dict) -> CropMask:
        """Decode a COCO RLE (``{'size': [h, w], 'counts': ...}``)."""
        return cls.from_full(mask_utils.decode(rle).astype(bool))

    def to_full(self, height: int, width: int) -> np.ndarray:
        """Paste into an ``(height, width)`` frame, clipping what falls outside."""
        out = np.zeros((height, width), dtype=bool)
        cx0, cy0 = max(self.x0, 0), max(self.y0, 0)
        cx1, cy1 = min(self.x1, width), min(self.y1, height)
        if cx1 > cx0 and cy1 > cy0:
            out[cy0:cy1, cx0:cx1] = self.crop[cy0 - self.y0 : cy1 - self.y0, cx0 - self.x0 : cx1 - self.x0]
        return out

    def to_rle(self, height: int, width: int) -> dict:
        """COCO RLE of the mask in an ``(height, width)`` frame; counts as str.

        Runs are computed over the crop's columns only (RLE is column-major, so the
        columns left and right of the crop are one run each): no full-frame array.
        """
        m = self.clipped(height, width)
        if m.area == 0:
            counts = [height * width]
        else:
            columns = np.zeros((m.x1 - m.x0, height), dtype=bool)  # one row per frame column in the crop's span
            columns[:, m.y0 : m.y1] = m.crop.T
            flat = columns.ravel()
            edges = np.flatnonzero(flat[1:] != flat[:-1]) + 1
            counts = np.diff(np.concatenate(([0], edges, [flat.size]))).tolist()
            if flat[0]:
                counts.insert(0, 0)  # RLE starts with a (here empty) run of zeros
            if flat[-1]:
                counts.append(0)
            counts[0] += m.x0 * height
            counts[-1] += (width - m.x1) * height
            if counts[-1] == 0:
                counts.pop()  # as pycocotools writes it: no empty run at the end
        rle = mask_utils.frPyObjects({"size": [height, width], "counts": counts}, height, width)
        rle["counts"] = rle["counts"].decode("ascii")
        return rle

    def clipped(self, height: int, width: int) -> CropMask:
        """The part inside an ``(height, width)`` frame (itself when already inside)."""
        if self.x0 >= 0 and self.y0 >= 0 and self.x1 <= width and self.y1 <= height:
            return self
        x0, y0, x1, y1 = max(self.x0, 0), max(self.y0, 0), min(self.x1, width), min(self.y1, height)
        if x1 <= x0 or y1 <= y0:
            return CropMask(np.zeros((0, 0), dtype=bool), 0, 0)
        return CropMask(self.crop[y0 - self.y0 : y1 - self.y0, x0 - self.x0 : x1 - self.x0], x0, y0)

    def box(self) -> np.ndarray:
        """Tight xyxy box of the mask pixels (float32, exclusive right/bottom)."""
        return np.array([self.x0, self.y0, self.x1, self.y1], dtype=np.float32)

    def centroid(self) -> tuple[float, float]:
        """Mean pixel position, computed once (zones, lines, speeds and writers all ask for it)."""
        if self._centroid is None:
            if self.area == 0:
                value = (float("nan"), float("nan"))
            else:  # image moments of the 0/1 crop: several times faster than averaging np.nonzero
                m = cv2.moments(self.crop.view(np.uint8))
                value = (m["m10"] / m["m00"] + self.x0, m["m01"] / m["m00"] + self.y0)
            object.__setattr__(self, "_centroid", value)
        return self._centroid

    def moved(self, x0: int, y0: int, width: int, height: int) -> CropMask:
        """The same shape placed at ``(x0, y0)`` and resized to ``width``×``height``.

        Used to predict where a track's mask will be: the last mask is carried by
        the Kalman box motion (translation and scale) rather than re-segmented.
        """
        width, height = max(int(width), 1), max(int(height), 1)
        crop = self.crop
        if crop.size and (crop.shape[1] != width or crop.shape[0] != height):
            crop = cv2.resize(crop.view(np.uint8), (width, height), interpolation=cv2.INTER_NEAREST).astype(bool)
        return CropMask(crop, int(x0), int(y0))


def _unpickle(bits: np.ndarray, shape: tuple[int, int], x0: int, y0: int) -> CropMask:
    return CropMask(np.unpackbits(bits, count=shape[0] * shape[1]).reshape(shape).view(bool), x0, y0)


def mask_iou(a: CropMask, b: CropMask) -> float:
    """IoU of two crop masks, touching only their overlap window (a hot path: plain ints, one numpy call)."""
    ax0, ay0, bx0, by0 = a.x0, a.y0, b.x0, b.y0
    (ah, aw), (bh, bw) = a.crop.shape, b.crop.shape
    ix0, iy0 = max(ax0, bx0), max(ay0, by0)
    ix1, iy1 = min(ax0 + aw, bx0 + bw), min(ay0 + ah, by0 + bh)
    if ix1 <= ix0 or iy1 <= iy0:
        return 0.0
    inter = int(
        np.count_nonzero(a.crop[iy0 - ay0 : iy1 - ay0, ix0 - ax0 : ix1 - ax0] & b.crop[iy0 - by0 : iy1 - by0, ix0 - bx0 : ix1 - bx0])
    )
    union = a.area + b.area - inter
    return inter / union if union else 0.0


def box_overlap_pairs(boxes_a: np.ndarray, boxes_b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Index pairs ``(i, j)`` whose xyxy boxes intersect with positive area."""
    if len(boxes_a) == 0 or len(boxes_b) == 0:
        return np.zeros(0, dtype=np.intp), np.zeros(0, dtype=np.intp)
    a, b = boxes_a[:, None, :], boxes_b[None, :, :]
    overlap = (np.minimum(a[..., 2], b[..., 2]) > np.maximum(a[..., 0], b[..., 0])) & (
        np.minimum(a[..., 3], b[..., 3]) > np.maximum(a[..., 1], b[..., 1])
    )
    return np.nonzero(overlap)


def mask_iou_matrix(masks_a: list[CropMask], masks_b: list[CropMask]) -> np.ndarray:
    """Pairwise mask IoU, computed only for pairs whose crop windows overlap."""
    out = np.zeros((len(masks_a), len(masks_b)), dtype=np.float64)
    if not masks_a or not masks_b:
        return out
    wa = np.array([m.window for m in masks_a], dtype=np.float64)
    wb = np.array([m.window for m in masks_b], dtype=np.float64)
    for i, j in zip(*box_overlap_pairs(wa, wb)):
        out[i, j] = mask_iou(masks_a[i], masks_b[j])
    return out


def buffered_box_iou(boxes_a: np.ndarray, boxes_b: np.ndarray, buffer: float) -> np.ndarray:
    """IoU of xyxy boxes each grown by ``buffer`` × its width/height on every side.

    Buffered IoU (C-BIoU) still overlaps when a small object moved more than its
    own size between frames, where plain IoU (mask or box) is already zero.
    """
    def grow(b: np.ndarray) -> np.ndarray:
        w, h = b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]
        return np.stack([b[:, 0] - buffer * w, b[:, 1] - buffer * h, b[:, 2] + buffer * w, b[:, 3] + buffer * h], 1)

    a, b = grow(np.asarray(boxes_a, np.float64).reshape(-1, 4)), grow(np.asarray(boxes_b, np.float64).reshape(-1, 4))
    iw = np.clip(np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0]), 0, None)
    ih = np.clip(np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1]), 0, None)
    inter = iw * ih
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = area_a[:, None] + area_b[None, :] - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)
