"""A simulated segmenter: ground-truth masks degraded the way real segmenters err.

Used to test and benchmark the tracker on real trajectories (MOTS ground truth)
without running a network: it misses objects (more often small ones, and in
bursts of several frames as occlusions do, more often where objects overlap),
scores partly hidden objects low, shifts and erodes/dilates masks, merges
touching objects into one detection for a few frames, and hallucinates blobs and
object-shaped false positives that persist for a few frames. With every rate at
zero it returns the ground truth unchanged, score 1.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import cv2
import numpy as np

from segmenter.detections import Detections
from segmenter.masks import CropMask

LEVELS = ("clean", "noisy")  # the named levels of the benchmarks, see NoiseModel.level


@dataclass(frozen=True)
class NoiseModel:
    miss_rate: float = 0.0  # chance to drop a detection (doubled for objects under small_area)
    low_score_rate: float = 0.0  # chance a kept detection scores in [0.15, 0.5) (only ByteTrack-style stages keep it)
    shift_px: float = 0.0  # std of the mask translation, pixels
    morph_px: int = 0  # masks eroded or dilated by up to this many pixels
    false_positives: float = 0.0  # mean number of hallucinated blobs per frame
    small_area: int = 800
    seed: int = 0
    occlusion_rate: float = 0.0  # per frame, chance a visible object starts an unseen run (needs object ids)
    occlusion_frames: float = 5.0  # mean length of an unseen run, frames (geometric)
    overlap_factor: float = 4.0  # occlusion_rate is this many times higher for an object whose box overlaps another's
    merge_rate: float = 0.0  # per frame, chance two touching objects start being detected as one (needs ids)
    merge_frames: float = 4.0  # mean length of a merged run, frames
    touch_px: int = 2  # masks this close (pixels) touch
    shaped_false_positives: float = 0.0  # mean new object-shaped false positives per frame
    shaped_fp_frames: float = 4.0  # mean frames one persists
    shaped_fp_speed: float = 2.0  # std of its drift, pixels per frame

    @classmethod
    def realistic(cls, seed: int = 0) -> NoiseModel:
        """Independent per-frame errors only: a decent but imperfect segmenter (the older tests' level)."""
        return cls(miss_rate=0.08, low_score_rate=0.15, shift_px=1.5, morph_px=2, false_positives=0.5, seed=seed)

    @classmethod
    def level(cls, name: str, seed: int = 0) -> NoiseModel:
        """A named level: ``clean`` (the ground truth, score 1) or ``noisy`` (errors that persist, as real ones do)."""
        if name == "clean":
            return cls(seed=seed)
        if name == "noisy":
            return cls(miss_rate=0.04, low_score_rate=0.15, shift_px=1.5, morph_px=2, false_positives=0.2, seed=seed,
                       occlusion_rate=0.015, occlusion_frames=5.0, overlap_factor=4.0, merge_rate=0.05,
                       merge_frames=4.0, shaped_false_positives=0.1, shaped_fp_frames=5.0)
        raise ValueError(f"unknown noise level {name!r}: expected one of {', '.join(LEVELS)}")

    @property
    def needs_ids(self) -> bool:
        """Errors that persist over frames follow objects, so they need the ground truth's object ids."""
        return bool(self.occlusion_rate or self.merge_rate)

    def apply(self, frames: Sequence[Detections], ids: Sequence[np.ndarray] | None = None) -> list[Detections]:
        """Degrade a sequence of ground-truth frames (deterministic for a seed); ``ids``: object ids per frame."""
        if ids is None and self.needs_ids:
            raise ValueError("occlusion and merge noise follow objects: pass the ground truth's ids per frame")
        rng = np.random.default_rng(self.seed)
        state = _State()
        return [self._frame(rng, det, None if ids is None else np.asarray(ids[t]), t, frames, state)
                for t, det in enumerate(frames)]

    def _frame(self, rng: np.random.Generator, det: Detections, ids: np.ndarray | None, t: int,
               frames: Sequence[Detections], state: _State) -> Detections:
        height, width = det.image_size
        objects = [(mask, int(cls), str(name)) for mask, cls, name in zip(det.masks, det.class_ids, det.class_names)]
        if ids is not None and self.occlusion_rate:
            objects, ids = self._occlude(rng, det, ids, t, state)
        if ids is not None and self.merge_rate:
            objects = self._merge(rng, objects, ids, t, state)
        masks, classes, scores, names = [], [], [], []
        for mask, cls, name in objects:
            miss = self.miss_rate * (2 if mask.area < self.small_area else 1)
            if rng.random() < miss:
                continue
            noisy = self._degrade(rng, mask).clipped(height, width)
            if noisy.area == 0:
                continue
            low = rng.random() < self.low_score_rate
            score = rng.uniform(0.15, 0.5) if low else (rng.uniform(0.6, 1.0) if self._noisy else 1.0)
            masks.append(noisy), classes.append(cls), scores.append(score), names.append(name)
        class_pool = sorted(set(det.class_ids.tolist())) or [0]
        name_of = dict(zip(det.class_ids.tolist(), det.class_names.tolist()))
        for _ in range(rng.poisson(self.false_positives) if self.false_positives else 0):
            blob = _random_blob(rng, height, width)
            cls = int(rng.choice(class_pool))
            masks.append(blob), classes.append(cls), scores.append(rng.uniform(0.1, 0.7)), names.append(str(name_of.get(cls, cls)))
        if self.shaped_false_positives:
            for mask, cls, name, score in self._shaped(rng, frames, t, state, height, width):
                masks.append(mask), classes.append(cls), scores.append(score), names.append(name)
        return Detections.from_masks(masks, classes, scores, names, det.image_size)

    def _occlude(self, rng: np.random.Generator, det: Detections, ids: np.ndarray, t: int,
                 state: _State) -> tuple[list[tuple[CropMask, int, str]], np.ndarray]:
        """Objects still seen this frame: an unseen run, once started, lasts its drawn length."""
        overlaps = _box_overlaps(det.boxes)
        keep = []
        for i, obj in enumerate(ids.tolist()):
            if state.unseen_until.get(obj, -1) > t:
                continue
            rate = self.occlusion_rate * (self.overlap_factor if overlaps[i] else 1.0)
            if rng.random() < rate:
                state.unseen_until[obj] = t + int(rng.geometric(1.0 / self.occlusion_frames))
                continue
            keep.append(i)
        objects = [(det.masks[i], int(det.class_ids[i]), str(det.class_names[i])) for i in keep]
        return objects, ids[keep]

    def _merge(self, rng: np.random.Generator, objects: list[tuple[CropMask, int, str]], ids: np.ndarray, t: int,
               state: _State) -> list[tuple[CropMask, int, str]]:
        """Touching objects seen as one (union mask, one of their classes) for a run of frames."""
        taken: set[int] = set()
        merged = []
        for i in range(len(objects)):
            for j in range(i + 1, len(objects)):
                if i in taken or j in taken or not _touching(objects[i][0], objects[j][0], self.touch_px):
                    continue
                pair = (min(ids[i], ids[j]), max(ids[i], ids[j]))
                if state.merged_until.get(pair, -1) <= t:
                    if rng.random() >= self.merge_rate:
                        continue
                    state.merged_until[pair] = t + int(rng.geometric(1.0 / self.merge_frames))
                taken |= {i, j}
                _, cls, name = objects[i if rng.random() < 0.5 else j]
                merged.append((_union(objects[i][0], objects[j][0]), cls, name))
        return [obj for k, obj in enumerate(objects) if k not in taken] + merged

    def _shaped(self, rng: np.random.Generator, frames: Sequence[Detections], t: int, state: _State,
                height: int, width: int) -> list[tuple[CropMask, int, str, float]]:
        """Object-shaped false positives: a real mask of the sequence placed elsewhere, drifting for a few frames."""
        for _ in range(rng.poisson(self.shaped_false_positives)):
            source = frames[int(rng.integers(len(frames)))]
            if not len(source):
                continue
            k = int(rng.integers(len(source)))
            shape = source.masks[k]
            h, w = shape.crop.shape
            if h >= height or w >= width:
                continue
            x, y = float(rng.integers(0, width - w)), float(rng.integers(0, height - h))
            vx, vy = rng.normal(0, self.shaped_fp_speed, 2)
            state.phantoms.append(_Phantom(shape.crop, int(source.class_ids[k]), str(source.class_names[k]),
                                           float(rng.uniform(0.3, 0.9)), x, y, float(vx), float(vy),
                                           t + int(rng.geometric(1.0 / self.shaped_fp_frames))))
        state.phantoms = [p for p in state.phantoms if p.until > t]
        out = []
        for p in state.phantoms:
            mask = CropMask(p.crop, int(round(p.x)), int(round(p.y))).clipped(height, width)
            p.x, p.y = p.x + p.vx, p.y + p.vy
            if mask.area:
                out.append((mask, p.class_id, p.class_name, p.score))
        return out

    @property
    def _noisy(self) -> bool:
        return any((self.miss_rate, self.low_score_rate, self.shift_px, self.morph_px, self.false_positives,
                    self.occlusion_rate, self.merge_rate, self.shaped_false_positives))

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


@dataclass
class _Phantom:
    crop: np.ndarray
    class_id: int
    class_name: str
    score: float
    x: float
    y: float
    vx: float
    vy: float
    until: int  # first frame it is gone


@dataclass
class _State:
    """What persists between frames: unseen runs per object, merged runs per pair, living phantoms."""

    unseen_until: dict[int, int] = field(default_factory=dict)
    merged_until: dict[tuple[int, int], int] = field(default_factory=dict)
    phantoms: list[_Phantom] = field(default_factory=list)


def _box_overlaps(boxes: np.ndarray) -> np.ndarray:
    """Per box: does it intersect any other box?"""
    if len(boxes) < 2:
        return np.zeros(len(boxes), bool)
    w = np.minimum(boxes[:, None, 2], boxes[None, :, 2]) - np.maximum(boxes[:, None, 0], boxes[None, :, 0])
    h = np.minimum(boxes[:, None, 3], boxes[None, :, 3]) - np.maximum(boxes[:, None, 1], boxes[None, :, 1])
    hit = (w > 0) & (h > 0)
    np.fill_diagonal(hit, False)
    return hit.any(axis=1)


def _touching(a: CropMask, b: CropMask, gap: int) -> bool:
    """Are the masks within ``gap`` pixels of each other?"""
    if a.x0 - gap >= b.x1 or b.x0 - gap >= a.x1 or a.y0 - gap >= b.y1 or b.y0 - gap >= a.y1 or not a.area or not b.area:
        return False
    kernel = cv2.getStructuringElement(cv2.MORPH_RECT, (2 * gap + 1, 2 * gap + 1))
    grown = cv2.dilate(np.pad(a.crop, gap).view(np.uint8), kernel).astype(bool)
    gx0, gy0 = a.x0 - gap, a.y0 - gap
    x0, y0 = max(gx0, b.x0), max(gy0, b.y0)
    x1, y1 = min(gx0 + grown.shape[1], b.x1), min(gy0 + grown.shape[0], b.y1)
    return bool((grown[y0 - gy0:y1 - gy0, x0 - gx0:x1 - gx0] & b.crop[y0 - b.y0:y1 - b.y0, x0 - b.x0:x1 - b.x0]).any())


def _union(a: CropMask, b: CropMask) -> CropMask:
    x0, y0, x1, y1 = min(a.x0, b.x0), min(a.y0, b.y0), max(a.x1, b.x1), max(a.y1, b.y1)
    crop = np.zeros((y1 - y0, x1 - x0), bool)
    crop[a.y0 - y0:a.y1 - y0, a.x0 - x0:a.x1 - x0] |= a.crop
    crop[b.y0 - y0:b.y1 - y0, b.x0 - x0:b.x1 - x0] |= b.crop
    return CropMask(crop, x0, y0)


def _random_blob(rng: np.random.Generator, height: int, width: int) -> CropMask:
    """An ellipse of plausible object size somewhere in the frame."""
    a, b = int(rng.integers(4, 25)), int(rng.integers(8, 50))
    crop = np.zeros((2 * b + 1, 2 * a + 1), np.uint8)
    cv2.ellipse(crop, (a, b), (a, b), 0, 0, 360, 1, -1)
    x0, y0 = int(rng.integers(0, max(width - 2 * a - 1, 1))), int(rng.integers(0, max(height - 2 * b - 1, 1)))
    return CropMask(crop.astype(bool), x0, y0)
