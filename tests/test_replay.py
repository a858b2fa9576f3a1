"""Replay segmenter: MOTS detection txt and COCO results JSON served frame by frame."""

from __future__ import annotations

import json

import numpy as np
import pytest

from common import InputError
from segmenter.masks import CropMask
from segmenter.motsio import format_detection_line
from segmenter.replay import ReplayConfig, ReplaySegmenter

H, W = 30, 40


def square(x, y, s=6):
    return CropMask(np.ones((s, s), bool), x, y)


def test_mots_detections_served_per_frame_across_batches(tmp_path):
    path = tmp_path / "det.txt"
    path.write_text("".join(
        format_detection_line(f, c, s, square(x, 5).to_rle(H, W)) + "\n"
        for f, c, s, x in [(1, 2, 0.9, 1), (1, 1, 0.4, 20), (3, 2, 0.8, 5)]
    ))
    replay = ReplaySegmenter(ReplayConfig(path=str(path), score_threshold=0.5))
    assert replay.frame_count() == 3 and replay.image_size == (H, W)
    first, second = replay.segment([np.zeros((H, W, 3), np.uint8)] * 2)
    (third,) = replay.segment([None])
    assert len(first) == 1 and first.class_names.tolist() == ["pedestrian"]  # 0.4 is under the threshold
    assert first.masks[0].window == (1, 5, 7, 11) and first.boxes[0].tolist() == [1, 5, 7, 11]
    assert len(second) == 0 and second.image_size == (H, W)
    assert len(third) == 1 and third.scores[0] == pytest.approx(0.8)


def test_coco_results_json(tmp_path):
    rle = square(10, 10).to_rle(H, W)
    path = tmp_path / "results.json"
    path.write_text(json.dumps([
        {"image_id": 0, "category_id": 7, "segmentation": rle, "score": 0.75},
        {"image_id": 1, "category_id": 7, "segmentation": rle, "score": 0.5},
    ]))
    replay = ReplaySegmenter(ReplayConfig(path=str(path), first_frame=0, class_names={7: "pill"}))
    a, b = replay.segment([None, None])
    assert a.class_names.tolist() == ["pill"] and a.masks[0].area == 36 and b.scores[0] == pytest.approx(0.5)


def test_frame_size_mismatch_is_reported(tmp_path):
    path = tmp_path / "det.txt"
    path.write_text(format_detection_line(1, 2, 0.9, square(1, 1).to_rle(H, W)) + "\n")
    with pytest.raises(InputError, match="40x30"):
        ReplaySegmenter(ReplayConfig(path=str(path))).segment([np.zeros((10, 10, 3), np.uint8)])


@pytest.mark.parametrize(
    "content, message",
    [
        ("{not json", "not valid JSON"),
        ('{"a": 1}', "JSON list"),
        ('[{"image_id": 1, "category_id": 1}]', r"\[0\]: missing field 'segmentation'"),
        ('[{"image_id": 1, "category_id": 1, "segmentation": {"size": [4, 4], "counts": "`1"}}]', r"\[0\]: RLE covers"),
        ('[{"image_id": 1, "category_id": 1, "segmentation": {"size": [4, 4], "counts": [16]}}]', "compressed RLE"),
    ],
)
def test_bad_coco_json(tmp_path, content, message):
    path = tmp_path / "r.json"
    path.write_text(content)
    with pytest.raises(InputError, match=message):
        ReplaySegmenter(ReplayConfig(path=str(path)))


def test_served_masks_equal_a_full_frame_pycocotools_decode(tmp_path):
    from pycocotools import mask as mask_utils

    rng = np.random.default_rng(5)
    fulls: dict[int, list[np.ndarray]] = {}
    lines = []
    for frame in range(1, 9):
        for _ in range(int(rng.integers(0, 6))):
            full = np.zeros((H, W), bool)
            y, x = rng.integers(0, H), rng.integers(0, W)
            full[y : y + rng.integers(1, H), x : x + rng.integers(1, W)] = True  # often touching a border
            full &= rng.random((H, W)) > rng.choice([0.0, 0.2, 0.7])  # solid, with holes, or noise
            if full.any():
                fulls.setdefault(frame, []).append(full)
                lines.append(format_detection_line(frame, 2, 0.9, CropMask.from_full(full).to_rle(H, W)))
    path = tmp_path / "det.txt"
    path.write_text("\n".join(lines) + "\n")
    replay = ReplaySegmenter(ReplayConfig(path=str(path)))
    for frame, det in enumerate(replay.segment([None] * replay.frame_count()), start=1):
        expected = [
            CropMask.from_full(mask_utils.decode(mask_utils.encode(np.asfortranarray(f.astype(np.uint8)))).astype(bool))
            for f in fulls.get(frame, [])
        ]
        assert len(det) == len(expected)
        for got, want, box in zip(det.masks, expected, det.boxes):
            assert (got.x0, got.y0, got.crop.shape) == (want.x0, want.y0, want.crop.shape)
            assert np.array_equal(got.crop, want.crop) and box.tolist() == list(want.window)


def test_frames_whose_lines_are_not_adjacent_in_the_file(tmp_path):
    rng = np.random.default_rng(6)
    masks = {(f, k): CropMask(rng.random((5, 7)) > 0.3, int(rng.integers(0, 30)), int(rng.integers(0, 20)))
             for f in (1, 2) for k in range(3)}
    order = [(1, 0), (2, 0), (1, 1), (2, 1), (2, 2), (1, 2)]  # frames interleaved
    path = tmp_path / "det.txt"
    path.write_text("".join(format_detection_line(f, 2, 0.9, masks[f, k].to_rle(H, W)) + "\n" for f, k in order))
    for fmt_path in (path, tmp_path / "det.json"):
        if fmt_path.suffix == ".json":
            fmt_path.write_text(json.dumps([
                {"image_id": f, "category_id": 2, "score": 0.9, "segmentation": masks[f, k].to_rle(H, W)} for f, k in order
            ]))
        first, second = ReplaySegmenter(ReplayConfig(path=str(fmt_path))).segment([None, None])
        for det, frame in ((first, 1), (second, 2)):
            assert len(det) == 3
            for got, k in zip(det.masks, range(3)):
                want = CropMask.from_full(masks[frame, k].to_full(H, W))
                assert got.window == want.window and np.array_equal(got.crop, want.crop)
