"""TrackEval scoring: perfect results, ID swaps, missed objects, overlaps, both layouts."""

from __future__ import annotations

import numpy as np
import pytest

from common import InputError
from segmenter.masks import CropMask
from segmenter.motsio import format_mots_line, read_mots
from tracker.evaluate import evaluate_mots

H, W = 60, 80


def synthetic_gt(path, frames=20, first=1):
    """Two pedestrians (class 2) walking towards each other, masks disjoint."""
    lines = []
    for i in range(frames):
        for obj, x in ((1, 5 + 2 * i), (2, 70 - 2 * i)):
            if abs((5 + 2 * i) - (70 - 2 * i)) > 8 or obj == 1:
                lines.append(format_mots_line(first + i, obj, 2, CropMask(np.ones((20, 8), bool), x, 20).to_rle(H, W)))
    path.write_text("\n".join(lines) + "\n")
    return path


def rewrite(src, dst, change):
    lines = []
    for r in read_mots(src):
        new = change(r)
        if new is not None:
            lines.append(f"{r.frame} {new} {r.class_id} {r.height} {r.width} {r.rle}")
    dst.write_text("\n".join(lines) + "\n")
    return dst


def test_perfect_result_scores_100(tmp_path):
    gt = synthetic_gt(tmp_path / "gt.txt")
    m = evaluate_mots(gt, gt)
    assert m["HOTA"] == pytest.approx(100) and m["MOTSA"] == pytest.approx(100) and m["IDSW"] == 0


def test_id_swap_lowers_association_not_detection(tmp_path):
    gt = synthetic_gt(tmp_path / "gt.txt")
    swapped = rewrite(gt, tmp_path / "p.txt", lambda r: (3 - r.obj_id) if r.frame > 10 and r.obj_id in (1, 2) else r.obj_id)
    m = evaluate_mots(gt, swapped)
    assert m["DetA"] == pytest.approx(100) and m["AssA"] < 80 and m["IDSW"] >= 1


def test_missing_objects_lower_detection(tmp_path):
    gt = synthetic_gt(tmp_path / "gt.txt")
    half = rewrite(gt, tmp_path / "p.txt", lambda r: r.obj_id if r.obj_id == 1 else None)
    m = evaluate_mots(gt, half)
    assert 40 < m["DetA"] < 70 and m["AssA"] == pytest.approx(100)


def test_overlapping_result_masks_are_rejected_in_one_line(tmp_path):
    gt = synthetic_gt(tmp_path / "gt.txt")
    rle = CropMask(np.ones((10, 10), bool), 0, 0).to_rle(H, W)
    bad = tmp_path / "p.txt"
    bad.write_text(f"{format_mots_line(1, 1, 2, rle)}\n{format_mots_line(1, 2, 2, rle)}\n")
    with pytest.raises(InputError, match="overlapping"):
        evaluate_mots(gt, bad)


def test_kitti_layout_frames_from_zero(tmp_path):
    gt = synthetic_gt(tmp_path / "gt.txt", first=0)
    m = evaluate_mots(gt, gt, "kitti")
    assert m["pedestrian/HOTA"] == pytest.approx(100) and m["HOTA"] == pytest.approx(100)


def test_shared_ground_truth_scores_itself_perfectly(shared_data):
    mots = evaluate_mots(shared_data / "mots20_05" / "gt.txt", shared_data / "mots20_05" / "gt.txt")
    assert mots["HOTA"] == pytest.approx(100) and mots["IDSW"] == 0
    kitti = shared_data / "kitti_mots_train" / "0012.txt"  # cars and pedestrians, short
    m = evaluate_mots(kitti, kitti, "kitti")
    assert m["car/HOTA"] == pytest.approx(100) and m["pedestrian/IDF1"] == pytest.approx(100)
