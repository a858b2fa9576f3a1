"""Counting quality of a tracking result: unique objects and line crossings against the ground truth.

Counts are what a site reads off the product, so crossings go through the
product's own :class:`~analytics.lines.LineCounter` (one code path). As in
TrackEval, metrics are kept apart from datasets: this module takes MOTS records,
whatever benchmark they come from. Errors are kept as absolute differences and
ground-truth totals, so sequences and classes add up before dividing.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np

from analytics.lines import LineConfig, LineCounter
from segmenter.masks import rle_runs_batch
from segmenter.motsio import MotsRecord

CLASS_NAMES = {1: "car", 2: "pedestrian"}  # MOTS numbering; other ids (10: ignore regions) are not objects
MIN_FRAMES = 3  # an object counts once seen in this many frames: a flicker is not an object


@dataclass
class Counts:
    """What a counting product reports for one sequence."""

    unique: dict[str, int]  # class → objects seen in at least MIN_FRAMES frames
    crossings: dict[tuple[str, str, str], int]  # (line, class, direction) → crossings


@dataclass
class CountDiff:
    """Absolute count errors beside the true totals, per class; adds up over sequences."""

    unique_diff: Counter = field(default_factory=Counter)
    unique_gt: Counter = field(default_factory=Counter)
    lines_diff: Counter = field(default_factory=Counter)
    lines_gt: Counter = field(default_factory=Counter)

    def __add__(self, other: CountDiff) -> CountDiff:
        return CountDiff(self.unique_diff + other.unique_diff, self.unique_gt + other.unique_gt,
                         self.lines_diff + other.lines_diff, self.lines_gt + other.lines_gt)

    def unique_error(self, classes: Iterable[str]) -> float | None:
        """Sum of |predicted - true| unique objects over ``classes`` and sequences, % of the true total."""
        return _percent(self.unique_diff, self.unique_gt, classes)

    def line_error(self, classes: Iterable[str]) -> float | None:
        """Sum over (line, class, direction) of |predicted - true| crossings, % of the true crossings."""
        return _percent(self.lines_diff, self.lines_gt, classes)


def _percent(diff: Counter, gt: Counter, classes: Iterable[str]) -> float | None:
    classes = list(classes)
    total = sum(gt[c] for c in classes)
    return 100.0 * sum(diff[c] for c in classes) / total if total else None


def default_lines(width: int, height: int) -> list[LineConfig]:
    """Vertical lines at a third and two thirds of the width, a horizontal one at mid height."""
    return [
        LineConfig(name="v1", points=((width / 3, 0), (width / 3, height))),
        LineConfig(name="v2", points=((2 * width / 3, 0), (2 * width / 3, height))),
        LineConfig(name="h", points=((0, height / 2), (width, height / 2))),
    ]


def count_tracks(records: Iterable[MotsRecord], lines: list[LineConfig], fps: float,
                 class_names: dict[int, str] = CLASS_NAMES, min_frames: int = MIN_FRAMES) -> Counts:
    """Unique objects and crossings of the tracks in ``records``, replayed frame by frame as the product sees them.

    A track's class for the unique count is its most frequent one; a crossing takes the class of its frame.
    """
    rows = sorted((r for r in records if r.class_id in class_names), key=lambda r: (r.frame, r.obj_id))
    counter = LineCounter(lines)
    frames: dict[int, set[int]] = {}
    classes: dict[int, Counter] = {}
    for r, (x, y) in zip(rows, centroids(rows)):
        name = class_names[r.class_id]
        frames.setdefault(r.obj_id, set()).add(r.frame)
        classes.setdefault(r.obj_id, Counter())[name] += 1
        counter.update(r.frame, r.frame / fps, r.obj_id, name, (float(x), float(y)))
    unique = Counter(classes[obj].most_common(1)[0][0] for obj, seen in frames.items() if len(seen) >= min_frames)
    return Counts(dict(unique), dict(counter.totals))


def centroids(records: list[MotsRecord]) -> np.ndarray:
    """(n, 2) mean pixel positions (x, y), as :meth:`CropMask.centroid`, straight from the RLE runs: no mask is decoded.

    In column-major order pixel ``p`` sits at ``(p // h, p % h)``; the coordinate sums over a run ``[b, e)``
    are differences of closed-form prefix sums, which also hold for runs that wrap into the next column.
    """
    out = np.full((len(records), 2), np.nan)
    if not records:
        return out
    runs, offsets = rle_runs_batch([r.rle for r in records])
    h = np.repeat(np.array([r.height for r in records], dtype=np.int64), np.diff(offsets))
    owner = np.repeat(np.arange(len(records)), np.diff(offsets))
    index = np.arange(runs.size) - offsets[owner]  # of each run within its string; odd runs are the ones
    ends = np.cumsum(runs) - np.repeat(np.cumsum(runs)[offsets[:-1] - 1] * (offsets[:-1] > 0), np.diff(offsets))
    ones = index % 2 == 1
    begin, end, hh = ends[ones] - runs[ones], ends[ones], h[ones]

    def prefix(n: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        q, r = np.divmod(n, hh)
        return hh * q * (q - 1) / 2 + r * q, q * hh * (hh - 1) / 2 + r * (r - 1) / 2

    (xe, ye), (xb, yb) = prefix(end), prefix(begin)
    area = np.bincount(owner[ones], runs[ones], len(records))
    sx = np.bincount(owner[ones], xe - xb, len(records))
    sy = np.bincount(owner[ones], ye - yb, len(records))
    seen = area > 0
    out[seen, 0], out[seen, 1] = sx[seen] / area[seen], sy[seen] / area[seen]
    return out


def compare(pred: Counts, gt: Counts) -> CountDiff:
    """Absolute differences per class of unique objects and of crossings (each line and direction on its own)."""
    out = CountDiff()
    for name in set(pred.unique) | set(gt.unique):
        out.unique_diff[name] += abs(pred.unique.get(name, 0) - gt.unique.get(name, 0))
        out.unique_gt[name] += gt.unique.get(name, 0)
    for key in set(pred.crossings) | set(gt.crossings):
        out.lines_diff[key[1]] += abs(pred.crossings.get(key, 0) - gt.crossings.get(key, 0))
        out.lines_gt[key[1]] += gt.crossings.get(key, 0)
    return out
