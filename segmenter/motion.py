"""Motion segmenter for fixed cameras: no weights, instances from background subtraction.

MOG2 background subtraction (shadows, value 127, are dropped), an opening and
closing to clean the foreground, connected components, then per component a
distance-transform watershed: objects that touch (two bottles side by side,
two people walking together) form one blob with two distance peaks, and the
watershed cuts the blob between them. Classes come from size/shape rules,
since motion alone cannot say what an object is.
"""

from __future__ import annotations

from typing import Sequence

import cv2
import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from segmenter.detections import Detections
from segmenter.masks import CropMask


class MotionClassRule(BaseModel):
    """A class assigned by size and shape: first matching rule wins."""

    model_config = ConfigDict(extra="forbid")

    name: str
    class_id: int = Field(..., ge=0)
    min_area: int = Field(0, ge=0, description="Pixels.")
    max_area: int | None = Field(None, ge=1, description="Pixels; None: no limit.")
    min_aspect: float = Field(0.0, ge=0, description="Box height / width.")
    max_aspect: float | None = Field(None, gt=0)

    def matches(self, area: int, aspect: float) -> bool:
        return (
            area >= self.min_area
            and (self.max_area is None or area <= self.max_area)
            and aspect >= self.min_aspect
            and (self.max_aspect is None or aspect <= self.max_aspect)
        )


class MotionConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    history: int = Field(300, ge=1, description="MOG2 history (frames).")
    var_threshold: float = Field(25.0, gt=0, description="MOG2 variance threshold: higher is less sensitive.")
    detect_shadows: bool = Field(True, description="Mark shadows (and drop them) instead of calling them foreground.")
    learning_rate: float = Field(-1.0, le=1, description="-1: automatic from history.")
    warmup_frames: int = Field(10, ge=0, description="Frames used only to learn the background (no detections).")
    open_kernel: int = Field(3, ge=1, description="Opening kernel size: removes speckle.")
    close_kernel: int = Field(7, ge=1, description="Closing kernel size: fills holes inside objects.")
    min_area: int = Field(150, ge=1, description="Instances smaller than this (pixels) are dropped.")
    max_area: int | None = Field(None, ge=1, description="Instances larger than this are dropped (e.g. lighting changes).")
    split_ratio: float = Field(0.6, gt=0, lt=1, description="Distance peaks above this fraction of the blob's maximum seed the watershed.")
    min_peak_distance: int = Field(5, ge=1, description="Minimum distance (pixels) of a seed from the background: thinner parts never seed.")
    drop_border_instances: bool = Field(
        False, description="Drop instances touching the image border: partly visible objects defeat size/shape class rules."
    )
    classes: list[MotionClassRule] = Field(
        default_factory=lambda: [MotionClassRule(name="object", class_id=0)],
        description="Size/shape rules naming instances; an instance matching none is dropped.",
    )

    @model_validator(mode="after")
    def _areas(self) -> "MotionConfig":
        if self.max_area is not None and self.max_area < self.min_area:
            raise ValueError(f"max_area ({self.max_area}) is below min_area ({self.min_area})")
        return self


class MotionSegmenter:
    """Instances of moving objects in frames from one fixed camera (keeps background state)."""

    def __init__(self, config: MotionConfig | None = None) -> None:
        self.config = config or MotionConfig()
        self._bg = cv2.createBackgroundSubtractorMOG2(
            history=self.config.history, varThreshold=self.config.var_threshold, detectShadows=self.config.detect_shadows
        )
        self._open = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (self.config.open_kernel,) * 2)
        self._close = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (self.config.close_kernel,) * 2)
        self.frames_seen = 0

    def segment(self, frames: Sequence[np.ndarray]) -> list[Detections]:
        return [self._one(frame) for frame in frames]

    def foreground(self, frame: np.ndarray) -> np.ndarray:
        """Cleaned binary foreground (uint8 0/1) of one frame; updates the background model."""
        raw = self._bg.apply(frame, learningRate=self.config.learning_rate)
        fg = (raw == 255).astype(np.uint8)  # 127 = shadow
        fg = cv2.morphologyEx(fg, cv2.MORPH_OPEN, self._open)
        return cv2.morphologyEx(fg, cv2.MORPH_CLOSE, self._close)

    def _one(self, frame: np.ndarray) -> Detections:
        self._size = frame.shape[:2]
        fg = self.foreground(frame)
        self.frames_seen += 1
        if self.frames_seen <= self.config.warmup_frames:
            return Detections.empty(frame.shape[:2])
        count, labels, stats, _ = cv2.connectedComponentsWithStats(fg, connectivity=8)
        masks, classes, names, scores = [], [], [], []
        for label in range(1, count):
            x, y, w, h, area = stats[label]
            if area < self.config.min_area:
                continue
            blob = labels[y : y + h, x : x + w] == label
            for part in split_touching(blob, self.config.split_ratio, self.config.min_peak_distance):
                mask = CropMask.from_full(part)
                mask = CropMask(mask.crop, mask.x0 + int(x), mask.y0 + int(y))
                rule = self._classify(mask)
                if rule is None:
                    continue
                masks.append(mask)
                classes.append(rule.class_id)
                names.append(rule.name)
                scores.append(solidity(mask.crop))
        return Detections.from_masks(masks, classes, scores, names, frame.shape[:2])

    def _classify(self, mask: CropMask) -> MotionClassRule | None:
        if mask.area < self.config.min_area or (self.config.max_area is not None and mask.area > self.config.max_area):
            return None
        if self.config.drop_border_instances and (
            mask.x0 <= 0 or mask.y0 <= 0 or mask.x1 >= self._size[1] or mask.y1 >= self._size[0]
        ):
            return None
        h, w = mask.crop.shape
        aspect = h / max(w, 1)
        return next((rule for rule in self.config.classes if rule.matches(mask.area, aspect)), None)


def solidity(crop: np.ndarray) -> float:
    """Area over convex-hull area, in [0, 1]: the score of a motion instance.

    Compact, filled blobs (a real object) score near 1; ragged foreground
    (noise, reflections, merged fragments) scores lower, which the tracker's
    low-score stage then treats with suspicion.
    """
    contours, _ = cv2.findContours(crop.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    hull_area = cv2.contourArea(cv2.convexHull(np.concatenate(contours))) if contours else 0.0
    return float(min(1.0, np.count_nonzero(crop) / hull_area)) if hull_area > 0 else 0.0


def split_touching(blob: np.ndarray, split_ratio: float, min_peak_distance: int) -> list[np.ndarray]:
    """Split one connected blob into instances with a distance-transform watershed.

    Seeds are the connected regions where the distance to the background exceeds
    ``split_ratio`` × the blob's maximum: two touching discs give two seeds (the
    neck between them is thinner), one disc gives one. The blob is then flooded
    from the seeds in order of distance to them (a watershed on the distance
    map of the seeds), which cuts at the neck.
    """
    padded = np.pad(blob.astype(np.uint8), 1)
    dist = cv2.distanceTransform(padded, cv2.DIST_L2, 5)
    peak = float(dist.max())
    seeds = (dist >= max(split_ratio * peak, min(min_peak_distance, peak))).astype(np.uint8)
    n_seeds, markers = cv2.connectedComponents(seeds)
    if n_seeds <= 2:  # background + one seed: nothing to split
        return [blob]
    # Flood from the seeds by distance to them: each pixel joins its nearest seed, so the cut
    # falls on the neck between touching objects and no pixel is lost or claimed twice.
    _, nearest = cv2.distanceTransformWithLabels((seeds == 0).astype(np.uint8), cv2.DIST_L2, 5, labelType=cv2.DIST_LABEL_PIXEL)
    owner = np.zeros(int(nearest.max()) + 1, dtype=np.int32)
    owner[nearest[seeds > 0]] = markers[seeds > 0]
    markers = owner[nearest][1:-1, 1:-1]
    parts = [(markers == seed) & blob for seed in range(1, n_seeds)]
    return [p for p in parts if p.any()] or [blob]
