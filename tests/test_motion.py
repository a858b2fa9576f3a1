"""Motion segmenter: touching discs split by the watershed, filters, class rules, shadows, real footage."""

import cv2
import numpy as np
import pytest
from pydantic import ValidationError

from common import InputError
from segmenter import CropMask, mask_iou
from segmenter.motion import MotionClassRule, MotionConfig, MotionSegmenter, components

H, W = 240, 320
BACKGROUND_FRAMES = 20


def background(seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return cv2.GaussianBlur(rng.integers(60, 140, (H, W, 3), dtype=np.uint8), (5, 5), 0)


def disc(cx: int, cy: int, r: int) -> np.ndarray:
    mask = np.zeros((H, W), np.uint8)
    cv2.circle(mask, (cx, cy), r, 1, -1)
    return mask.astype(bool)


def last_detections(paint, config: MotionConfig | None = None, objects_frames: int = 3):
    """Detections of the last frame: a still textured background, then ``paint`` applied to a few frames."""
    rng = np.random.default_rng(1)
    base = background()
    frames = []
    for index in range(BACKGROUND_FRAMES + objects_frames):
        frame = base.copy()
        if index >= BACKGROUND_FRAMES:
            paint(frame)
        frames.append(cv2.add(frame, rng.integers(-3, 4, frame.shape, dtype=np.int8), dtype=cv2.CV_8U))
    return MotionSegmenter(config or MotionConfig()).segment(frames)[-1]


def painter(*shapes: tuple[np.ndarray, tuple[int, int, int]]):
    def paint(frame: np.ndarray) -> None:
        for mask, colour in shapes:
            frame[mask] = colour

    return paint


GREY, RED, CYAN = (200, 200, 200), (40, 40, 220), (220, 200, 40)


@pytest.mark.parametrize("second_colour", [GREY, CYAN], ids=["same-colour", "two-colours"])
def test_touching_discs_split_into_two_instances_of_the_right_size(second_colour):
    left, right = disc(120, 120, 20), disc(160, 120, 20)  # centres one diameter apart: touching
    truth = [CropMask.from_full(left & ~right), CropMask.from_full(right)]
    dets = last_detections(painter((left, GREY), (right, second_colour)))
    assert len(dets) == 2
    for true_mask in truth:
        best = max(dets.masks, key=lambda m: mask_iou(m, true_mask))
        assert mask_iou(best, true_mask) > 0.85
        assert best.area == pytest.approx(true_mask.area, rel=0.15)


def test_touching_discs_split_in_any_direction():
    top, bottom = disc(150, 90, 18), disc(150, 126, 18)
    dets = last_detections(painter((top, RED), (bottom, RED)))
    assert len(dets) == 2
    assert sorted(round((m.y0 + m.y1) / 2) for m in dets.masks) == pytest.approx([90, 126], abs=3)


def test_single_disc_and_single_ellipse_stay_one_instance():
    ellipse = np.zeros((H, W), np.uint8)
    cv2.ellipse(ellipse, (220, 120), (16, 45), 0, 0, 360, 1, -1)  # elongated: a long distance ridge
    dets = last_detections(painter((disc(90, 120, 25), GREY), (ellipse.astype(bool), RED)))
    assert len(dets) == 2
    assert sorted(dets.areas) == pytest.approx(sorted([disc(90, 120, 25).sum(), ellipse.sum()]), rel=0.15)


def test_walker_is_not_cut_at_the_waist():
    """Torso and legs give two distance peaks; the wide waist between them keeps them one instance."""
    walker = np.zeros((H, W), np.uint8)
    cv2.ellipse(walker, (160, 95), (11, 30), 0, 0, 360, 1, -1)  # torso
    cv2.ellipse(walker, (160, 145), (8, 28), 0, 0, 360, 1, -1)  # legs together
    paint = painter((walker.astype(bool), GREY))
    assert len(last_detections(paint, MotionConfig(max_neck_ratio=1.0))) == 2  # peaks alone over-split
    dets = last_detections(paint)
    assert len(dets) == 1 and dets.areas[0] == pytest.approx(walker.sum(), rel=0.15)


def test_detections_are_tight_crops_with_scores_in_unit_range():
    dets = last_detections(painter((disc(120, 120, 20), GREY), (disc(160, 120, 20), RED)))
    assert dets.image_size == (H, W)
    for mask, box, score in zip(dets.masks, dets.boxes, dets.scores):
        assert mask.crop.shape[0] < H // 2 and mask.crop.shape[1] < W // 2  # a crop, not a frame
        assert mask.crop[0].any() and mask.crop[-1].any() and mask.crop[:, 0].any() and mask.crop[:, -1].any()
        np.testing.assert_array_equal(box, mask.box())
        assert 0.8 < score <= 1.0  # discs are solid
    assert dets.class_names.tolist() == ["object", "object"]


def test_area_filters_drop_small_and_large_instances():
    small, large = disc(80, 120, 10), disc(200, 120, 30)  # ~310 and ~2800 pixels
    paint = painter((small, GREY), (large, GREY))
    assert len(last_detections(paint)) == 2
    only_large = last_detections(paint, MotionConfig(min_area=1000))
    assert len(only_large) == 1 and only_large.areas[0] > 2000
    only_small = last_detections(paint, MotionConfig(min_area=100, max_area=1000))
    assert len(only_small) == 1 and only_small.areas[0] < 500


def test_class_rules_name_instances_first_match_wins_and_unmatched_are_dropped():
    tall = np.zeros((H, W), np.uint8)
    cv2.ellipse(tall, (160, 120), (14, 50), 0, 0, 360, 1, -1)  # aspect ~3.5, ~2200 px
    paint = painter((disc(60, 120, 14), RED), (tall.astype(bool), GREY), (disc(260, 120, 35), CYAN))  # ~3800 px disc
    rules = [
        MotionClassRule(name="person", class_id=2, min_area=1000, min_aspect=2.0),
        MotionClassRule(name="bottle", class_id=1, max_area=1000),
        MotionClassRule(name="anything", class_id=3, max_area=1000),  # never reached: "bottle" matches first
    ]
    dets = last_detections(paint, MotionConfig(classes=rules))
    by_x = sorted(zip((m.x0 for m in dets.masks), dets.class_names, dets.class_ids))
    assert [(name, int(cid)) for _, name, cid in by_x] == [("bottle", 1), ("person", 2)]  # the big disc matched none


def test_shadows_are_not_objects():
    shadow = disc(160, 120, 30)

    def paint(frame: np.ndarray) -> None:
        frame[shadow] = (frame[shadow] * 0.65).astype(np.uint8)  # darker, same chroma

    assert len(last_detections(paint)) == 0
    assert len(last_detections(paint, MotionConfig(detect_shadows=False))) == 1


def test_warmup_frames_give_empty_detections():
    frames = [background()] * 6
    dets = MotionSegmenter(MotionConfig(warmup_frames=4)).segment(frames)
    assert [len(d) for d in dets] == [0] * 6
    assert all(d.image_size == (H, W) for d in dets)


def test_frames_must_come_from_one_camera():
    segmenter = MotionSegmenter()
    segmenter.segment([background()])
    with pytest.raises(InputError, match="one fixed camera"):
        segmenter.segment([np.zeros((H // 2, W, 3), np.uint8)])
    with pytest.raises(InputError, match="BGR uint8"):
        MotionSegmenter().segment([np.zeros((H, W), np.uint8)])


@pytest.mark.parametrize(
    "bad",
    [
        {"min_area": 500, "max_area": 100},
        {"learning_rate": 2.0},
        {"learning_rate": -0.5},
        {"split_ratio": 1.5},
        {"open_kernel": 0},
        {"classes": []},
        {"classes": [{"name": "a", "class_id": 1}, {"name": "b", "class_id": 1}]},
        {"classes": [{"name": "a", "class_id": 1, "min_aspect": 2, "max_aspect": 1}]},
        {"classes": [{"name": "a", "class_id": 1, "colour": "red"}]},
        {"history_frames": 10},
    ],
)
def test_config_rejects_bad_values(bad):
    with pytest.raises(ValidationError):
        MotionConfig.model_validate(bad)


def test_components_match_opencv_connected_components_with_stats():
    rng = np.random.default_rng(2)
    for _ in range(50):
        fg = (rng.random((60, 80)) > rng.uniform(0.3, 0.8)).astype(np.uint8)  # holes, nesting, diagonal contacts
        _, labels, stats, _ = cv2.connectedComponentsWithStats(fg, connectivity=8)
        expected = sorted(
            (int(x), int(y), (labels[y : y + h, x : x + w] == i).tobytes())
            for i, (x, y, w, h, _) in enumerate(stats)
            if i
        )
        assert sorted((x, y, crop.tobytes()) for x, y, crop in components(fg)) == expected


def test_vtest_gives_plausible_people(shared_data):
    capture = cv2.VideoCapture(str(shared_data / "vtest.avi"))
    frames = []
    while len(frames) < 120:
        ok, frame = capture.read()
        assert ok, "vtest.avi has fewer than 120 frames"
        frames.append(frame)
    capture.release()
    config = MotionConfig()
    detections = MotionSegmenter(config).segment(frames)[config.warmup_frames :]
    counts = np.array([len(d) for d in detections])
    assert (counts >= 1).mean() > 0.9 and counts.max() < 25  # a handful of walkers, not noise
    areas = np.concatenate([d.areas for d in detections])
    frame_area = frames[0].shape[0] * frames[0].shape[1]
    assert areas.min() >= config.min_area and areas.max() < 0.05 * frame_area  # no instance covers the frame
    boxes = np.concatenate([d.boxes for d in detections])
    aspect = (boxes[:, 3] - boxes[:, 1]) / (boxes[:, 2] - boxes[:, 0])
    assert np.median(aspect) > 1.3  # upright people
    scores = np.concatenate([d.scores for d in detections])
    assert ((scores > 0) & (scores <= 1)).all() and np.median(scores) > 0.6
