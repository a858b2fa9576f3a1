"""A simulated segmenter: ground-truth masks degraded the way real segmenters err.

Used to test and benchmark the tracker on real trajectories (MOTS ground truth)
without running a network: it misses objects (more often small ones), scores
partly hidden objects low, shifts and erodes/dilates masks, and hallucinates
blobs. With every rate at zero it returns the ground truth unchanged, score 1.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from segmenter.detections import Detections
from segmenter.masks import CropMask


@dataclass(frozen=True)
class NoiseModel:
    miss_rate: float = 0.0  # chance to drop a detection (doubled for objects under small_area)
    low_score_rate: float = 0.0  # chance a kept detection scores in [0.15, 0.5) (only ByteTrack-style stages keep it)
    shift_px: float = 0.0  # std of the mask translation, pixels
    morph_px: int = 0  # masks eroded or dilated by up to this many pixels
    false_positives: float = 0.0  # mean number of hallucinated blobs per frame
    small_area: int = 800
    seed: int = 0

    @classmethod
    def realistic(cls, seed: int = 0) -> NoiseModel:
        """The level used in the tests and benchmarks: a decent but imperfect segmenter."""
        return cls(miss_rate=0.08, low_score_rate=0.15, shift_px=1.5, morph_px=2, false_positives=0.5, seed=seed)

    def apply(self, frames: Sequence[Detections]) -> list[Detections]:
        """Degrade a sequence of ground-truth frames (deterministic for a seed)."""
        rng = np.random.default_rng(self.seed)
        return [self._frame(rng, det) for det in frames]

    def _frame(self, rng: np.random.Generator, det: Detections) -> Detections:
        height, width = det.image_size
        masks, classes, scores, names = [], [], [], []
        for mask, cls, name in zip(det.masks, det.class_ids, det.class_names):
            miss = self.miss_rate * (2 if mask.area < self.small_area else 1)
            if rng.random() < miss:
                continue
            noisy = self._degrade(rng, mask).clipped(height, width)
            if noisy.area == 0:
                continue
            low = rng.random() < self.low_score_rate
            score = rng.uniform(0.15, 0.5) if low else (rng.uniform(0.6, 1.0) if self._noisy else 1.0)
            masks.append(noisy), classes.append(int(cls)), scores.append(score), names.append(str(name))
        class_pool = sorted(set(det.class_ids.tolist())) or [0]
        name_of = dict(zip(det.class_ids.tolist(), det.class_names.tolist()))
        for _ in range(rng.poisson(self.false_positives) if self.false_positives else 0):
            blob = _random_blob(rng, height, width)
            cls = int(rng.choice(class_pool))
            masks.append(blob), classes.append(cls), scores.append(rng.uniform(0.1, 0.7)), names.append(str(name_of.get(cls, cls)))
        return Detections.from_masks(masks, classes, scores, names, det.image_size)

    @property
    def _noisy(self) -> bool:
        return any((self.miss_rate, self.low_score_rate, self.shift_px, self.morph_px, self.false_positives))

    def _degrade(self, rng: np.random.Generator, mask: CropMask) -> CropMask:
        if not self.shift_px and not self.morph_px:
            return mask
        pad = self.morph_px + 1
        crop = np.pad(mask.crop, pad).view(np.uint8)
        k = int(rng.integers(-self.morph_px, self.morph_px + 1)) if self.morph_px else 0
        if k:
            kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * abs(k) + 1, 2 * abs(k) + 1))
            crop = (cv2.dilate if k > 0 else cv2.erode)(crop, kernel)
        dx, dy = np.round(rng.normal(0, self.shift_px, 2)).astype(int) if self.shift_px else (0, 0)
        tight = CropMask.from_full(crop.astype(bool))
        return CropMask(tight.crop, tight.x0 + mask.x0 - pad + int(dx), tight.y0 + mask.y0 - pad + int(dy))


def _random_blob(rng: np.random.Generator, height: int, width: int) -> CropMask:
    """An ellipse of plausible object size somewhere in the frame."""
    a, b = int(rng.integers(4, 25)), int(rng.integers(8, 50))
    crop = np.zeros((2 * b + 1, 2 * a + 1), np.uint8)
    cv2.ellipse(crop, (a, b), (a, b), 0, 0, 360, 1, -1)
    x0, y0 = int(rng.integers(0, max(width - 2 * a - 1, 1))), int(rng.integers(0, max(height - 2 * b - 1, 1)))
    return CropMask(crop.astype(bool), x0, y0)
