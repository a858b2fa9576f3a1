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


def one_disc_line(frame, obj=1, cls=2, size=(H, W), x=0):
    return format_mots_line(frame, obj, cls, CropMask(np.ones((5, 5), bool), x, 0).to_rle(*size))


BAD_INPUTS = {
    "kitti gt from 0, tracks from 1": ("kitti", lambda gt, p: synthetic_gt(p, first=1), "frames 1..20 do not fit"),
    "mots20 tracks from 0": ("mots20", lambda gt, p: synthetic_gt(p, first=0), "frames 0..19 do not fit"),
    "missing tracks file": ("mots20", lambda gt, p: p.parent / "absent.txt", "file not found"),
    "malformed line": ("mots20", lambda gt, p: p.write_text("1 1 2 60 80\n") and p, "expected 6 fields"),
    "wrong format": ("mot17", lambda gt, p: gt, "unknown format 'mot17'"),
    "other image size": ("mots20", lambda gt, p: p.write_text(one_disc_line(1, size=(30, 40)) + "\n") and p, "30x40"),
    "no scored class": ("mots20", lambda gt, p: p.write_text(one_disc_line(1, cls=1) + "\n") and p, "no line has a class"),
    "id twice in a frame": (
        "mots20", lambda gt, p: p.write_text(one_disc_line(1) + "\n" + one_disc_line(1, x=20) + "\n") and p, "same ID"
    ),
}


@pytest.mark.parametrize("case", BAD_INPUTS)
def test_bad_input_is_one_input_error_line_and_no_traceback(tmp_path, capfd, case):
    fmt, make_pred, message = BAD_INPUTS[case]
    gt = synthetic_gt(tmp_path / "gt.txt", first=0 if fmt == "kitti" else 1)
    pred = make_pred(gt, tmp_path / "p.txt")
    with pytest.raises(InputError, match=message) as info:
        evaluate_mots(gt, pred, fmt)
    assert "\n" not in str(info.value)
    out, err = capfd.readouterr()
    assert out == "" and err == ""


def test_ground_truth_numbered_from_zero_is_not_mots20(tmp_path):
    gt = synthetic_gt(tmp_path / "gt.txt", first=0)
    with pytest.raises(InputError, match="mots20 numbers frames from 1"):
        evaluate_mots(gt, gt, "mots20")
