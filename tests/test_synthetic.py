"""The synthetic demo scene: deterministic, readable, exact MOTS truth, and solvable by the motion segmenter."""

from pathlib import Path

import cv2
import numpy as np
import pytest
from pycocotools import mask as mask_utils

from maskwatch.config import parse_config
from maskwatch.synthetic import CLASS_IDS, FRAMES, HEIGHT, WIDTH, SceneTruth, demo_config, demo_zone, render_scene
from segmenter.masks import mask_iou_matrix
from segmenter.motion import MotionSegmenter
from segmenter.motsio import read_mots

BORDER_MARGIN = 4  # MOG2's foreground reaches a pixel or two past an object, so this close it touches the border


@pytest.fixture(scope="module")
def scene(tmp_path_factory) -> tuple[Path, SceneTruth]:
    path = tmp_path_factory.mktemp("scene") / "scene.mp4"
    return path, render_scene(path, seed=0)


def read_frames(path: Path) -> list[np.ndarray]:
    capture = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(frame)
    capture.release()
    return frames


def full(inst) -> np.ndarray:
    return inst.mask.to_full(HEIGHT, WIDTH)


def touching(a, b) -> bool:
    """Masks 8-adjacent or sharing pixels (ground truth masks never share: the front one owns them)."""
    grown = cv2.dilate(full(a).view(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
    return bool((grown & full(b)).any())


def test_video_is_readable_with_the_right_frame_count_and_size(scene):
    path, truth = scene
    frames = read_frames(path)
    assert len(frames) == FRAMES == len(truth.frames)
    assert frames[0].shape == (HEIGHT, WIDTH, 3)
    assert cv2.VideoCapture(str(path)).get(cv2.CAP_PROP_FPS) == pytest.approx(truth.fps)
    assert truth.frames[0] == [] and (truth.width, truth.height) == (WIDTH, HEIGHT)  # empty belt first


def test_render_is_deterministic_for_a_seed(tmp_path):
    def key(truth: SceneTruth) -> list:
        return [[(i.obj_id, i.mask.x0, i.mask.y0, i.mask.crop.tobytes()) for i in f] for f in truth.frames]

    first = render_scene(tmp_path / "a.mp4", seed=3, frames=40)
    again = render_scene(tmp_path / "b.mp4", seed=3, frames=40)
    render_scene(tmp_path / "c.mp4", seed=4, frames=40)
    assert key(first) == key(again)
    frames_a, frames_b, frames_c = (read_frames(tmp_path / f"{name}.mp4") for name in "abc")
    assert all(np.array_equal(a, b) for a, b in zip(frames_a, frames_b, strict=True))
    assert not np.array_equal(frames_a[-1], frames_c[-1])  # another seed: other colours, texture, noise


def test_truth_has_the_objects_touching_pairs_and_an_overlap(scene):
    _, truth = scene
    assert truth.counts_per_class() == {"bottle": 8, "person": 1}
    touching_pairs, person_hides_bottle = set(), False
    for instances in truth.frames:
        union = np.zeros((HEIGHT, WIDTH), np.int32)
        for inst in instances:
            union += full(inst)
            assert inst.mask.area == np.count_nonzero(full(inst))  # inside the frame
        assert union.max() <= 1  # visible masks are disjoint
        whole = [i for i in instances if not i.truncated and i.visibility > 0.9]
        touching_pairs |= {(a.obj_id, b.obj_id) for a in whole for b in whole if a.obj_id < b.obj_id and touching(a, b)}
        person_hides_bottle |= any(i.class_name == "bottle" and i.visibility < 0.5 for i in instances)
    assert len(touching_pairs) >= 3  # along the belt, across it, pills tip to tip
    assert person_hides_bottle


def test_mots_ground_truth_decodes_with_pycocotools(scene, tmp_path):
    _, truth = scene
    path = tmp_path / "gt.txt"
    truth.write_mots(path)
    lines = path.read_text().splitlines()
    assert len(lines) == sum(len(f) for f in truth.frames)
    by_key = {(index + 1, inst.obj_id): inst for index, instances in enumerate(truth.frames) for inst in instances}
    for line in lines:
        frame, obj_id, class_id, height, width, counts = line.split(" ")
        inst = by_key[int(frame), int(obj_id)]
        decoded = mask_utils.decode({"size": [int(height), int(width)], "counts": counts.encode("ascii")})
        assert (int(height), int(width)) == (HEIGHT, WIDTH) and int(class_id) == CLASS_IDS[inst.class_name]
        np.testing.assert_array_equal(decoded.astype(bool), full(inst))
    assert len(read_mots(path)) == len(lines)  # the project's strict reader accepts it too
    assert min(int(line.split()[0]) for line in lines) >= 1


def test_motion_segmenter_recovers_each_unoverlapped_object(scene):
    """Per frame, each object that no other object overlaps and that lies inside the frame is found (IoU >= 0.5)."""
    path, truth = scene
    config = parse_config(demo_config()).segmenter.motion
    detections = MotionSegmenter(config).segment(read_frames(path))
    found = eligible = right_class = 0
    pair_found = pair_eligible = 0
    for index in range(config.warmup_frames, len(truth.frames)):
        instances, dets = truth.frames[index], detections[index]
        for inst in instances:
            x0, y0, x1, y1 = inst.mask.window
            inside = (
                x0 >= BORDER_MARGIN
                and y0 >= BORDER_MARGIN
                and x1 <= WIDTH - BORDER_MARGIN
                and y1 <= HEIGHT - BORDER_MARGIN
            )
            if inst.truncated or inst.overlap > 0.1 or not inside:  # touching pairs share ~5% and stay in
                continue
            in_pair = any(o is not inst and o.class_name == "bottle" and touching(inst, o) for o in instances)
            ious = mask_iou_matrix([inst.mask], dets.masks)[0]
            hit = ious.size > 0 and ious.max() >= 0.5
            eligible += 1
            pair_eligible += in_pair
            if hit:
                found += 1
                pair_found += in_pair
                right_class += dets.class_names[int(ious.argmax())] == inst.class_name
    assert eligible > 600 and pair_eligible > 150
    assert found / eligible >= 0.9
    assert pair_found / pair_eligible >= 0.9  # touching pairs are split, not merged
    assert right_class == found


def test_demo_config_is_a_valid_site_config_with_a_zone_on_the_belt():
    config = parse_config(demo_config(), "demo config")
    assert config.segmenter.name == "motion"
    assert [rule.name for rule in config.segmenter.motion.classes] == ["bottle", "person"]
    zone = demo_zone()
    assert [z.name for z in config.camera.zones] == [zone["name"]]
    polygon = np.array(zone["polygon"])
    assert polygon[:, 0].min() < 420 < polygon[:, 0].max()  # the person walks down x = 420
    assert (polygon >= 0).all() and (polygon[:, 0] <= WIDTH).all() and (polygon[:, 1] <= HEIGHT).all()
