"""Crop masks: IoU against a brute-force full-frame reference, round trips, RLE against pycocotools, buffered IoU."""

import pickle

import numpy as np
import pytest

import segmenter.masks
from segmenter.masks import (
    CropMask,
    buffered_box_iou,
    encode_rles,
    encode_runs_batch,
    mask_iou,
    mask_iou_matrix,
    rle_runs_batch,
)


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


def shaped_masks(rng, count):
    """Full frames of every awkward kind: empty, full, single pixels, lines, border-touching boxes, holes, noise."""
    for index in range(count):
        height, width = (int(v) for v in rng.integers(1, 40, 2))
        full = np.zeros((height, width), bool)
        kind = index % 9
        if kind == 1:
            full[:] = True
        elif kind == 2:
            full[rng.integers(0, height), rng.integers(0, width)] = True
        elif kind == 3:
            full[rng.integers(0, height), rng.integers(0, width) :] = True  # 1xN, to the right border
        elif kind == 4:
            full[: rng.integers(1, height + 1), rng.integers(0, width)] = True  # Nx1 from the top border
        elif kind in (5, 6):  # boxes, often touching a border or spanning whole columns, with or without holes
            y, x = rng.integers(0, height), rng.integers(0, width)
            full[y : y + rng.integers(1, height + 1), x : x + rng.integers(1, width + 1)] = True
            if kind == 6:
                full &= rng.random((height, width)) > 0.15
        elif kind == 7:
            full = rng.random((height, width)) > rng.random()  # noise: many runs per column
        elif kind == 8:
            full[:, rng.integers(0, width) :] = True  # whole columns: runs crossing from one column into the next
            full[rng.integers(0, height), :] = False
        yield full


def reference_crop(rle: dict) -> CropMask:
    from pycocotools import mask as mask_utils

    return CropMask.from_full(mask_utils.decode(rle).astype(bool))


def assert_same_crop(got: CropMask, expected: CropMask) -> None:
    assert got.crop.dtype == bool and got.crop.flags.c_contiguous
    assert (got.x0, got.y0, got.crop.shape, got.area) == (expected.x0, expected.y0, expected.crop.shape, expected.area)
    assert np.array_equal(got.crop, expected.crop)


def test_from_rle_decodes_only_the_crop_byte_identical_to_pycocotools():
    from pycocotools import mask as mask_utils

    rng = np.random.default_rng(7)
    for full in shaped_masks(rng, 3000):
        rle = mask_utils.encode(np.asfortranarray(full.astype(np.uint8)))
        expected = reference_crop(rle)
        for counts in (rle["counts"], rle["counts"].decode("ascii")):
            got = CropMask.from_rle({"size": rle["size"], "counts": counts})
            assert_same_crop(got, expected)
            assert got.to_rle(*full.shape)["counts"] == rle["counts"].decode("ascii")


def test_from_rles_decodes_a_frame_of_masks_at_once():
    from pycocotools import mask as mask_utils

    rng = np.random.default_rng(8)
    height, width = 23, 31
    fulls = [rng.random((height, width)) > rng.random() for _ in range(50)] + [np.zeros((height, width), bool)]
    rles = [mask_utils.encode(np.asfortranarray(m.astype(np.uint8))) for m in fulls]
    masks = CropMask.from_rles([r["counts"].decode("ascii") for r in rles], height, width)
    for mask, rle in zip(masks, rles):
        assert_same_crop(mask, reference_crop(rle))


def test_columns_with_many_runs_and_long_crossing_runs():
    from pycocotools import mask as mask_utils

    stripes = np.zeros((80, 6), bool)
    stripes[::2, 2] = True  # 40 runs in one column: more than the row-copy path takes
    stripes[:, 4] = True
    stripes[3, 5] = True
    comb = np.ones((80, 30), bool)
    comb[1::2, 10] = False  # one column of 40 runs among whole ones: few runs per column on average
    tall = np.ones((1000, 3), bool)
    tall[500, 1] = False
    for full in (stripes, comb, tall, np.ones((1, 200), bool), np.ones((300, 1), bool)):
        rle = mask_utils.encode(np.asfortranarray(full.astype(np.uint8)))
        assert_same_crop(CropMask.from_rle(rle), reference_crop(rle))


def test_uncompressed_counts_and_wrong_totals():
    full = np.zeros((4, 5), bool)
    full[1:3, 2] = True
    mask = CropMask.from_rle({"size": [4, 5], "counts": [9, 2, 9]})
    assert_same_crop(mask, CropMask.from_full(full))
    assert CropMask.from_rle({"size": [4, 5], "counts": [20]}).area == 0
    with pytest.raises(ValueError, match="RLE covers 21 pixels, expected img_h\\*img_w = 20"):
        CropMask.from_rle({"size": [4, 5], "counts": [9, 2, 10]})
    with pytest.raises(ValueError, match="negative run length"):
        CropMask.from_rle({"size": [4, 5], "counts": [9, -2, 13]})
    with pytest.raises(ValueError, match="RLE covers 17 pixels"):
        CropMask.from_rle({"size": [4, 5], "counts": "917"})  # runs 9, 1, 7


def test_mots20_masks_decode_like_pycocotools(shared_data):
    from segmenter.motsio import read_mots

    for record in read_mots(shared_data / "mots20_05" / "gt.txt")[::7]:
        rle = {"size": [record.height, record.width], "counts": record.rle.encode("ascii")}
        mask = record.mask()
        assert_same_crop(mask, reference_crop(rle))
        assert mask.to_rle(record.height, record.width)["counts"] == record.rle


def test_frame_of_masks_encodes_at_once_like_pycocotools():
    from pycocotools import mask as mask_utils

    rng = np.random.default_rng(11)
    height, width = 37, 29
    masks = [CropMask.from_full(full) for full in shaped_masks(rng, 400)]  # from frames of other sizes: clipped
    for _ in range(300):  # crops anywhere, partly or wholly outside, all-false crops
        crop = rng.random(tuple(int(v) for v in rng.integers(1, 40, 2))) > rng.random()
        masks.append(CropMask(crop, int(rng.integers(-45, width + 5)), int(rng.integers(-45, height + 5))))
    masks += [CropMask(np.ones((height, width), bool), 0, 0), CropMask(np.zeros((0, 0), bool), 0, 0)]
    masks += [CropMask(np.ones((1, 1), bool), x, y) for x, y in ((0, 0), (width - 1, height - 1), (0, height - 1))]
    masks += [CropMask(np.ones((height, 3), bool), width - 3, 0), CropMask(np.ones((height, 2), bool), 5, 0)]
    order = rng.permutation(len(masks))
    masks = [masks[i] for i in order]
    expected = [
        mask_utils.encode(np.asfortranarray(m.to_full(height, width).astype(np.uint8)))["counts"].decode("ascii")
        for m in masks
    ]
    assert encode_rles(masks, height, width) == expected
    assert encode_rles([], height, width) == []


def test_encoded_runs_equal_pycocotools_for_large_frames():
    from pycocotools import mask as mask_utils

    rng = np.random.default_rng(12)
    height, width = 2160, 3840  # runs and their differences far beyond one character
    for _ in range(200):
        cuts = np.sort(rng.choice(height * width, size=int(rng.integers(1, 60)), replace=False))
        counts = np.diff(cuts, prepend=0, append=height * width)
        expected = mask_utils.frPyObjects({"size": [height, width], "counts": counts.tolist()}, height, width)
        got = encode_runs_batch(counts.astype(np.int64), np.array([0, counts.size]))
        assert got == [expected["counts"].decode("ascii")]
        runs, offsets = rle_runs_batch(got)
        assert np.array_equal(runs, counts) and offsets.tolist() == [0, counts.size]


def test_from_rles_with_empty_masks_first_and_between():
    from pycocotools import mask as mask_utils

    rng = np.random.default_rng(13)
    height, width = 19, 17
    empty = np.zeros((height, width), bool)
    fulls = [empty, empty] + [rng.random((height, width)) > 0.7 for _ in range(3)] + [empty, np.ones_like(empty), empty]
    rles = [mask_utils.encode(np.asfortranarray(m.astype(np.uint8))) for m in fulls]
    masks = CropMask.from_rles([r["counts"] for r in rles], height, width)
    for mask, rle in zip(masks, rles):
        assert_same_crop(mask, reference_crop(rle))
    assert all(m.area == 0 for m in CropMask.from_rles([rles[0]["counts"]] * 3, height, width))
    with pytest.raises(ValueError, match="RLE covers"):
        CropMask.from_rles([rles[2]["counts"], b"0"], height, width)


def test_min_iou_leaves_only_pairs_that_cannot_reach_it_at_zero(monkeypatch):
    rng = np.random.default_rng(14)
    fulls = random_masks(rng, 80)
    crops = [CropMask.from_full(m) for m in fulls]
    crops.append(CropMask(np.zeros((0, 0), bool), 3, 3))
    exact = mask_iou_matrix(crops[:41], crops[41:])
    computed = []
    monkeypatch.setattr(segmenter.masks, "mask_iou", lambda a, b: computed.append(1) or mask_iou(a, b))
    for min_iou in (0.0, 0.05, 0.2, 0.5, 0.9):
        computed.clear()
        got = mask_iou_matrix(crops[:41], crops[41:], min_iou=min_iou)
        reach = exact >= min_iou
        assert np.array_equal(got[reach], exact[reach])  # exact, not approximately
        assert np.all((got[~reach] == 0) | (got[~reach] == exact[~reach]))
        if min_iou >= 0.5:
            assert len(computed) < np.count_nonzero(exact)
    # an IoU of exactly the threshold (3 of 10 pixels) is computed
    a, b = CropMask(np.ones((1, 10), bool), 0, 0), CropMask(np.ones((1, 3), bool), 2, 0)
    assert mask_iou_matrix([a], [b], min_iou=0.3)[0, 0] == 0.3
    assert mask_iou_matrix([a], [b], min_iou=0.31)[0, 0] == 0
