"""Counting errors from hand-made tracks whose true counts are known."""

from __future__ import annotations

import numpy as np

from analytics.count_eval import CountDiff, Counts, centroids, compare, count_tracks, default_lines
from segmenter.masks import CropMask
from segmenter.motsio import MotsRecord

W, H, FPS = 300, 200, 10.0
LINES = default_lines(W, H)  # v1 at x=100, v2 at x=200, h at y=100


def box(obj: int, cls: int, frame: int, cx: int, cy: int) -> MotsRecord:
    rle = CropMask(np.ones((10, 10), bool), cx - 5, cy - 5).to_rle(H, W)
    return MotsRecord(frame, obj, cls, H, W, rle["counts"])


def walk(obj: int, cls: int, points: list[tuple[int, int]], start: int = 0) -> list[MotsRecord]:
    return [box(obj, cls, start + i, x, y) for i, (x, y) in enumerate(points)]


# a pedestrian walking left to right across both vertical lines, a car driving down across the horizontal one,
# a pedestrian seen in 2 frames only, and an ignore region (class 10) that must never count
ACROSS = [(50, 50), (90, 50), (130, 50), (170, 50), (210, 50), (250, 50)]
DOWN = [(250, 60), (250, 90), (250, 110), (250, 140)]
TRUTH = walk(1, 2, ACROSS) + walk(2, 1, DOWN) + walk(3, 2, [(60, 150), (70, 150)]) + walk(10000, 10, ACROSS)


def test_ground_truth_counts():
    counts = count_tracks(TRUTH, LINES, FPS)
    assert counts.unique == {"pedestrian": 1, "car": 1}  # the 2-frame pedestrian is not an object yet
    assert counts.crossings == {("v1", "pedestrian", "in"): 1, ("v2", "pedestrian", "in"): 1, ("h", "car", "out"): 1}


def test_perfect_tracks_have_no_error():
    diff = compare(count_tracks(TRUTH, LINES, FPS), count_tracks(TRUTH, LINES, FPS))
    assert diff.unique_error(["car", "pedestrian"]) == 0 and diff.line_error(["car", "pedestrian"]) == 0


def test_a_split_track_counts_twice_but_crosses_once():
    """The pedestrian's track breaks between the lines: two objects, yet each line is crossed once."""
    pred = walk(1, 2, ACROSS[:3]) + walk(7, 2, ACROSS[3:], start=3) + walk(2, 1, DOWN)
    diff = compare(count_tracks(pred, LINES, FPS), count_tracks(TRUTH, LINES, FPS))
    assert diff.unique_error(["pedestrian"]) == 100.0 and diff.unique_error(["car"]) == 0
    assert diff.line_error(["pedestrian"]) == 0 and diff.line_error(["car", "pedestrian"]) == 0


def test_a_split_at_a_line_loses_the_crossing():
    """Broken right at the line, neither part crosses it: one of three crossings missed."""
    pred = walk(1, 2, ACROSS[:2]) + walk(7, 2, ACROSS[2:], start=2) + walk(2, 1, DOWN)
    diff = compare(count_tracks(pred, LINES, FPS), count_tracks(TRUTH, LINES, FPS))
    assert diff.lines_diff["pedestrian"] == 1 and diff.lines_gt["pedestrian"] == 2
    assert diff.line_error(["car", "pedestrian"]) == 100.0 / 3


def test_wrong_class_and_direction_count_as_errors_and_sequences_add_up():
    """A car labelled pedestrian: one car missing, one pedestrian too many, one wrong crossing each way."""
    pred = walk(1, 2, ACROSS) + walk(2, 2, DOWN)
    diff = compare(count_tracks(pred, LINES, FPS), count_tracks(TRUTH, LINES, FPS))
    assert diff.unique_error(["car"]) == 100.0 and diff.unique_error(["pedestrian"]) == 100.0
    assert diff.lines_diff == {"car": 1, "pedestrian": 1}
    both = diff + compare(Counts({"car": 3}, {("h", "car", "in"): 2}), Counts({"car": 4}, {("h", "car", "in"): 2}))
    assert both.unique_gt["car"] == 5 and both.unique_diff["car"] == 2 and both.unique_error(["car"]) == 40.0
    assert CountDiff().unique_error(["car"]) is None  # nothing to count: no rate


def test_centroids_from_runs_are_the_masks_centroids():
    """Including runs that wrap into the next column (a mask as tall as the frame) and an empty mask."""
    rng = np.random.default_rng(0)
    masks = [CropMask(rng.random((h, w)) < 0.9, x, y) for h, w, x, y in ((10, 7, 3, 5), (H, 4, 20, 0), (1, 1, 299, 199))]
    records = [MotsRecord(0, i, 1, H, W, m.to_rle(H, W)["counts"]) for i, m in enumerate(masks)]
    records.append(MotsRecord(0, 9, 1, H, W, CropMask(np.zeros((0, 0), bool), 0, 0).to_rle(H, W)["counts"]))
    got = centroids(records)
    assert np.allclose(got[:3], [m.centroid() for m in masks]) and np.isnan(got[3]).all()
