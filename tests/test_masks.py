"""Crop masks: IoU against a brute-force full-frame reference, round trips, buffered IoU."""

import pickle

import numpy as np
import pytest

from segmenter.masks import CropMask, buffered_box_iou, mask_iou, mask_iou_matrix


def random_masks(rng, n, h=60, w=80):
    out = []
    for _ in range(n):
        full = np.zeros((h, w), bool)
        x, y = rng.integers(0, w - 10), rng.integers(0, h - 10)
        full[y : y + rng.integers(3, 25), x : x + rng.integers(3, 30)] = True
        full &= rng.random((h, w)) > 0.2  # ragged, not boxes
        out.append(full)
    return out


def brute_iou(a, b):
    union = np.logical_or(a, b).sum()
    return np.logical_and(a, b).sum() / union if union else 0.0


def test_mask_iou_matches_brute_force_full_frame():
    rng = np.random.default_rng(0)
    fulls = random_masks(rng, 30)
    crops = [CropMask.from_full(m) for m in fulls]
    matrix = mask_iou_matrix(crops[:15], crops[15:])
    for i in range(15):
        for j in range(15):
            expected = brute_iou(fulls[i], fulls[15 + j])
            assert mask_iou(crops[i], crops[15 + j]) == pytest.approx(expected)
            assert matrix[i, j] == pytest.approx(expected)
    assert (matrix > 0).any() and (matrix == 0).any()


def test_crop_round_trips_full_and_rle():
    rng = np.random.default_rng(1)
    full = random_masks(rng, 1)[0]
    crop = CropMask.from_full(full)
    assert crop.crop.shape[0] < full.shape[0] or crop.crop.shape[1] < full.shape[1]
    assert np.array_equal(crop.to_full(*full.shape), full)
    rle = crop.to_rle(*full.shape)
    assert isinstance(rle["counts"], str)
    back = CropMask.from_rle({"size": rle["size"], "counts": rle["counts"].encode()})
    assert np.array_equal(back.to_full(*full.shape), full)
    assert crop.area == full.sum()


def test_moved_mask_translates_and_scales():
    full = np.zeros((50, 50), bool)
    full[10:20, 10:30] = True
    m = CropMask.from_full(full).moved(5, 7, 40, 20)
    assert m.window == (5, 7, 45, 27) and m.area == 800


def test_to_full_clips_masks_partly_outside():
    m = CropMask(np.ones((4, 4), bool), -2, -2)
    assert m.to_full(10, 10).sum() == 4


def test_buffered_iou_overlaps_where_plain_iou_is_zero():
    a = np.array([[0, 0, 10, 10]], float)
    b = np.array([[12, 0, 22, 10]], float)
    assert buffered_box_iou(a, b, 0.0)[0, 0] == 0
    # grown by 3 px each side: [-3,13] and [9,25] overlap by 4 of 16+16-4 wide
    assert buffered_box_iou(a, b, 0.3)[0, 0] == pytest.approx(4 / 28)


def test_rle_from_the_crop_equals_pycocotools_on_the_full_frame():
    from pycocotools import mask as mask_utils

    rng = np.random.default_rng(1)
    for _ in range(2000):
        height, width = (int(v) for v in rng.integers(1, 30, 2))
        crop = rng.random(tuple(int(v) for v in rng.integers(1, 12, 2))) > rng.random()
        mask = CropMask(crop, int(rng.integers(-8, width)), int(rng.integers(-8, height)))  # partly outside at times
        expected = mask_utils.encode(np.asfortranarray(mask.to_full(height, width).astype(np.uint8)))
        assert mask.to_rle(height, width) == {"size": [height, width], "counts": expected["counts"].decode("ascii")}


def test_pickled_masks_carry_their_pixels_as_packed_bits():
    rng = np.random.default_rng(3)
    masks = [CropMask.from_full(m) for m in random_masks(rng, 5, h=90, w=120)]
    masks += [CropMask(np.zeros((0, 0), bool), 4, 7), CropMask(rng.random((13, 7)) > 0.5, 100, 3)]
    for mask in masks:
        data = pickle.dumps(mask, protocol=pickle.HIGHEST_PROTOCOL)
        back = pickle.loads(data)
        assert back.crop.dtype == bool and back.crop.shape == mask.crop.shape
        assert np.array_equal(back.crop, mask.crop)
        assert (back.x0, back.y0, back.area) == (mask.x0, mask.y0, mask.area)
    big = CropMask(rng.random((400, 600)) > 0.5, 0, 0)
    assert len(pickle.dumps(big, protocol=pickle.HIGHEST_PROTOCOL)) < big.crop.nbytes / 7
