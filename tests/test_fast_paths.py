"""Fast paths of the tracker's hot loops against the plain computations they replace."""

import pickle

import cv2
import lap
import numpy as np
import pytest

from segmenter.masks import (
    CropMask,
    canonical_rles,
    encode_rles,
    encode_runs_batch,
    mask_iou_matrix,
    rle_runs_batch,
)
from segmenter.replay import ReplayConfig, ReplaySegmenter
from tracker.association import assign
from tracker.tracker import _carried, _touch


def random_crops(rng, n, h=70, w=90):
    """Ragged rectangles, some empty, some with empty rows or columns inside their window."""
    out = []
    for _ in range(n):
        crop = rng.random((rng.integers(1, 25), rng.integers(1, 30))) > rng.uniform(0.1, 0.9)
        out.append(CropMask(crop, int(rng.integers(-5, w - 5)), int(rng.integers(-5, h - 5))))
    out.append(CropMask(np.zeros((0, 0), bool), 10, 10))
    out.append(CropMask(np.zeros((4, 4), bool), 12, 12))
    return out


def full(mask, h=150, w=150):
    """The mask in a frame padded so that nothing is clipped."""
    return CropMask(mask.crop, mask.x0 + 10, mask.y0 + 10).to_full(h, w)


def test_iou_matrix_equals_the_full_frame_iou_of_every_pair():
    rng = np.random.default_rng(5)
    crops = random_crops(rng, 60)
    fulls = [full(m) for m in crops]
    matrix = mask_iou_matrix(crops[:30], crops[30:])
    for i, a in enumerate(fulls[:30]):
        for j, b in enumerate(fulls[30:]):
            union = np.count_nonzero(a | b)
            assert matrix[i, j] == (np.count_nonzero(a & b) / union if union else 0.0)  # bit for bit
    assert np.count_nonzero(matrix) > 20


def test_placed_keeps_the_crop_and_area_and_forgets_the_centroid():
    mask = CropMask(np.eye(5, dtype=bool), 3, 4)
    mask.centroid()
    moved = mask.placed(10, 20)
    assert moved.crop is mask.crop and (moved.x0, moved.y0, moved.area) == (10, 20, 5)
    assert moved.centroid() == pytest.approx((12.0, 22.0))
    assert moved.window == CropMask(mask.crop, 10, 20).window


def lapjv_assign(similarity, min_similarity):
    """``assign`` as it was: the solver on every matrix."""
    _, row_to_col, _ = lap.lapjv(1.0 - similarity, extend_cost=True, cost_limit=1.0 - min_similarity + 1e-9)
    rows = np.flatnonzero(row_to_col >= 0)
    keep = similarity[rows, row_to_col[rows]] >= min_similarity
    return np.stack([rows[keep], row_to_col[rows][keep]], axis=1)


@pytest.mark.parametrize("density", [0.02, 0.1, 0.4])
def test_assign_without_the_solver_when_no_pair_competes_equals_the_solver(density):
    rng = np.random.default_rng(int(density * 100))
    for _ in range(200):
        shape = tuple(rng.integers(1, 12, 2))
        sim = np.where(rng.random(shape) < density, rng.random(shape), 0.0)
        matches, free_rows, free_cols = assign(sim, 0.3)
        assert np.array_equal(matches, lapjv_assign(sim, 0.3))
        assert sorted(free_rows.tolist() + matches[:, 0].tolist()) == list(range(shape[0]))
        assert sorted(free_cols.tolist() + matches[:, 1].tolist()) == list(range(shape[1]))


def test_touch_equals_a_full_frame_dilation():
    rng = np.random.default_rng(8)
    crops = random_crops(rng, 120, h=40, w=50)
    fulls = [full(m).view(np.uint8) for m in crops]
    touching = 0
    for i in range(0, len(crops) - 1, 2):
        a, b = crops[i], crops[i + 1]
        expected = bool((cv2.dilate(fulls[i], np.ones((3, 3), np.uint8)) & fulls[i + 1]).any())
        assert _touch(a, b) == expected == _touch(b, a)
        touching += expected
    assert 5 < touching < 55


def carried_one(mask, box):
    """``_carried`` as it was, one mask at a time in Python."""
    x0, y0, x1, y1 = box
    height, width = mask.crop.shape
    if abs(x1 - x0 - width) <= max(1.0, 0.03 * width) and abs(y1 - y0 - height) <= max(1.0, 0.03 * height):
        return CropMask(mask.crop, round((x0 + x1 - width) / 2), round((y0 + y1 - height) / 2))
    return mask.moved(round(x0), round(y0), round(x1 - x0), round(y1 - y0))


def test_carried_on_all_tracks_at_once_equals_one_at_a_time():
    rng = np.random.default_rng(3)
    masks = [m for m in random_crops(rng, 200) if m.crop.size]
    sizes = np.array([m.crop.shape[::-1] for m in masks], float)
    centres = rng.uniform(-20, 200, (len(masks), 2)).round(1) + rng.choice([0.0, 0.5], (len(masks), 2))  # ties too
    scales = rng.choice([1.0, 1.02, 0.9, 1.5], (len(masks), 1)) + rng.choice([0.0, 0.5], (len(masks), 2)) / sizes
    boxes = np.hstack([centres - sizes * scales / 2, centres + sizes * scales / 2])
    got = _carried(masks, boxes)
    for mask, box, carried in zip(masks, boxes, got):
        expected = carried_one(mask, box.tolist())
        assert (carried.x0, carried.y0, carried.area) == (expected.x0, expected.y0, expected.area)
        assert np.array_equal(carried.crop, expected.crop)
    assert _carried([], np.zeros((0, 4))) == []


def longer_first_number(counts):
    """The same runs, the first number (one character, below 16) spelt with a needless second chunk."""
    assert ord(counts[0]) - 48 < 16
    return chr(48 + ((ord(counts[0]) - 48) | 0x20)) + "0" + counts[1:]


def test_canonical_rles_are_the_strings_a_fresh_encode_writes():
    from pycocotools import mask as mask_utils

    rng = np.random.default_rng(9)
    height, width = 40, 50
    fulls = [rng.random((height, width)) > p for p in (0.3, 0.9, 1.0, 0.0)] + [np.eye(height, width, dtype=bool)]
    strings = [mask_utils.encode(np.asfortranarray(f.astype(np.uint8)))["counts"].decode() for f in fulls]
    padded = longer_first_number(strings[0])
    rest = height * width - 5
    empty_run = encode_runs_batch(np.array([3, 0, 2, rest]), np.array([0, 4]))[0]  # 5 zeros written as 3 + 0 + 2
    counts = [*strings, padded, empty_run]
    runs, offsets = rle_runs_batch(counts)
    assert canonical_rles(counts, runs, offsets).tolist() == [True] * len(strings) + [False, False]
    fresh = encode_rles(CropMask.from_rles(counts, height, width)[-2:], height, width)
    assert fresh == [strings[0], encode_runs_batch(np.array([5, rest]), np.array([0, 2]))[0]]


def test_a_remembered_rle_is_re_emitted_only_for_its_frame_size():
    rng = np.random.default_rng(10)
    mask = CropMask.from_full(rng.random((30, 40)) > 0.5)
    fresh = encode_rles([mask], 30, 40)[0]
    twin = CropMask(mask.crop, mask.x0, mask.y0)
    twin.remember_rle("not-an-rle", 30, 40)  # a string it remembers is what it gives
    assert encode_rles([mask, twin], 30, 40) == [fresh, "not-an-rle"]
    assert twin.to_rle(30, 40)["counts"] == "not-an-rle"
    assert encode_rles([twin], 31, 40) == encode_rles([mask], 31, 40)  # another frame: encoded
    assert twin.placed(1, 1)._rle is None and pickle.loads(pickle.dumps(twin))._rle is None
    assert twin == mask  # the string is no part of equality


def test_replayed_masks_reach_the_writer_with_their_strings_only_when_canonical(tmp_path):
    rng = np.random.default_rng(11)
    height, width = 30, 40
    masks = [CropMask.from_full(rng.random((height, width)) > 0.6) for _ in range(3)]
    strings = encode_rles(masks, height, width)
    padded = longer_first_number(strings[2])
    path = tmp_path / "det.txt"
    path.write_text("".join(f"1 2 0.9 {height} {width} {s}\n" for s in [strings[0], strings[1], padded]))
    (served,) = ReplaySegmenter(ReplayConfig(path=str(path))).segment([None])
    assert [m._rle for m in served.masks] == [(height, width, strings[0]), (height, width, strings[1]), None]
    assert encode_rles(served.masks, height, width) == strings  # the padded one is written afresh, canonical
