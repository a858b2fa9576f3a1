"""The simulated segmenter: identity when clean, deterministic per seed, and errors shaped like real ones."""

from __future__ import annotations

import numpy as np
import pytest

from segmenter.detections import Detections
from segmenter.masks import CropMask
from segmenter.noise import NoiseModel

SIZE = (120, 200)


def rect(x0: int, y0: int, w: int, h: int) -> CropMask:
    return CropMask(np.ones((h, w), bool), x0, y0)


def sequence(objects: list[tuple[int, CropMask]], frames: int) -> tuple[list[Detections], list[np.ndarray]]:
    """The same objects (id, mask) in every frame, class 2."""
    det = Detections.from_masks([m for _, m in objects], [2] * len(objects), [1.0] * len(objects),
                                ["2"] * len(objects), SIZE)
    return [det] * frames, [np.array([i for i, _ in objects])] * frames


def same(a: list[Detections], b: list[Detections]) -> bool:
    return all(len(x) == len(y) and all(np.array_equal(m.crop, n.crop) and (m.x0, m.y0) == (n.x0, n.y0)
                                        for m, n in zip(x.masks, y.masks)) and np.array_equal(x.scores, y.scores)
               for x, y in zip(a, b))


def runs(seen: list[bool]) -> list[int]:
    """Lengths of the runs of unseen frames."""
    out, n = [], 0
    for s in [*seen, True]:
        if not s:
            n += 1
        elif n:
            out.append(n)
            n = 0
    return out


def test_clean_level_is_the_ground_truth():
    frames, ids = sequence([(1, rect(10, 10, 20, 40)), (2, rect(100, 20, 30, 30))], 5)
    out = NoiseModel.level("clean").apply(frames, ids)
    assert same(out, frames)
    assert all((d.scores == 1.0).all() for d in out)


def test_levels_are_deterministic_per_seed():
    frames, ids = sequence([(1, rect(10, 10, 20, 40)), (2, rect(31, 10, 20, 40)), (3, rect(120, 30, 30, 50))], 60)
    a = NoiseModel.level("noisy", seed=1).apply(frames, ids)
    assert same(a, NoiseModel.level("noisy", seed=1).apply(frames, ids))
    assert not same(a, NoiseModel.level("noisy", seed=2).apply(frames, ids))
    with pytest.raises(ValueError, match="unknown noise level"):
        NoiseModel.level("heavy")


def test_independent_noise_needs_no_ids_and_ignores_them():
    """The older per-frame model draws the same with or without ids: its existing uses are unchanged."""
    frames, ids = sequence([(1, rect(10, 10, 20, 40)), (2, rect(100, 20, 30, 30))], 30)
    model = NoiseModel.realistic(seed=3)
    assert same(model.apply(frames), model.apply(frames, ids))
    with pytest.raises(ValueError, match="ids"):
        NoiseModel.level("noisy").apply(frames)


def test_misses_come_in_bursts_and_more_where_objects_overlap():
    alone, overlapping = rect(10, 10, 20, 40), [rect(120, 10, 30, 60), rect(140, 20, 30, 60)]
    frames, ids = sequence([(1, alone), (2, overlapping[0]), (3, overlapping[1])], 3000)
    out = NoiseModel(occlusion_rate=0.02, occlusion_frames=6.0, overlap_factor=4.0, seed=5).apply(frames, ids)
    seen = {k: [any(m.x0 == x for m in d.masks) for d in out] for k, x in ((1, 10), (2, 120), (3, 140))}
    lengths = runs(seen[1]) + runs(seen[2]) + runs(seen[3])
    assert 4.5 < np.mean(lengths) < 7.5  # geometric runs of mean 6 frames, not single-frame drops
    missed_alone = 1 - np.mean(seen[1])
    missed_overlapping = 1 - np.mean(seen[2] + seen[3])
    assert missed_overlapping > 2 * missed_alone > 0


def test_touching_objects_merge_into_one_detection_for_a_run():
    left, right, far = rect(10, 10, 20, 40), rect(31, 12, 20, 40), rect(150, 10, 20, 40)  # left and right 1 px apart
    frames, ids = sequence([(1, left), (2, right), (3, far)], 200)
    out = NoiseModel(merge_rate=0.1, merge_frames=5.0, seed=0).apply(frames, ids)
    merged = [len(d) == 2 for d in out]
    assert 0 < sum(merged) < len(out)
    assert np.mean(runs([not m for m in merged])) > 2  # a merge lasts several frames
    d = out[merged.index(True)]
    union = next(m for m in d.masks if m.x0 == 10)
    assert union.area == left.area + right.area and union.box().tolist() == [10, 10, 51, 52]
    assert any(m.x0 == 150 and m.area == far.area for m in d.masks)  # far from the others: never merged


def test_false_positives_are_object_shaped_and_persist():
    person = rect(10, 10, 17, 43)
    frames, ids = sequence([(1, person)], 400)
    out = NoiseModel(shaped_false_positives=0.1, shaped_fp_frames=5.0, shaped_fp_speed=0.0, seed=2).apply(frames, ids)
    phantoms = [[m for m in d.masks if (m.x0, m.y0) != (10, 10)] for d in out]
    shapes = {m.crop.shape for p in phantoms for m in p if m.x1 < SIZE[1] and m.y1 < SIZE[0] and m.x0 > 0 and m.y0 > 0}
    assert shapes == {(43, 17)}  # the sequence's own object shape, not a blob
    present = [bool(p) for p in phantoms]
    assert 0 < sum(present) < len(out)
    assert np.mean(runs([not p for p in present])) > 2  # each stays for a few frames
