"""``maskwatch label``: frames chosen for labelling, their COCO pre-labels, and the way back into ``maskwatch train``.

The videos are short clips of the demo scene (maskwatch.synthetic) run through the motion
segmenter; the ranking is checked on a scripted segmenter whose detections are constructed
(a track that breaks and flips class, a detection scoring at the threshold, quiet frames).
The round trip trains Mask R-CNN from scratch for one epoch of 72x128 images on the CPU.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO

from maskwatch.config import parse_config
from maskwatch.label import Weights, mask_polygons, pick_frames, scan, select, write_set
from maskwatch.sources import Frame
from maskwatch.synthetic import demo_config, render_scene
from segmenter.datasets import load_dataset
from segmenter.detections import Detections
from segmenter.masks import CropMask
from tests.test_training import SMALL

CLIP = 120  # frames of the demo scene: bottles from frame 20, the person fully in view from ~96


def maskwatch(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "maskwatch", *args], capture_output=True, text=True, timeout=600)


def assert_one_line_error(result: subprocess.CompletedProcess, *fragments: str) -> None:
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> list[Path]:
    """Two clips of the scene with the same file name in two folders (seeds 0 and 1)."""
    root = tmp_path_factory.mktemp("videos")
    paths = []
    for seed, folder in enumerate(("a", "b")):
        (root / folder).mkdir()
        render_scene(root / folder / "scene.mp4", seed=seed, frames=CLIP)
        paths.append(root / folder / "scene.mp4")
    return paths


@pytest.fixture(scope="module")
def picked(videos):
    return pick_frames(videos, 8, parse_config(demo_config(), "demo"))


def test_budget_is_respected_and_frames_are_distinct_and_spread(picked, videos):
    choices = picked.choices
    assert len(choices) == 8 and picked.frames_scanned == 2 * CLIP
    keys = [(c.info.video, c.info.frame) for c in choices]
    assert len(set(keys)) == 8
    assert {video for video, _ in keys} == {0, 1}  # across the videos
    for video in (0, 1):
        frames = sorted(frame for v, frame in keys if v == video)
        assert min(np.diff(frames), default=99) >= 5, frames  # no neighbours of the same video
        assert frames[-1] - frames[0] >= CLIP // 2, frames  # spread over the clip
    assert [c.rank for c in choices] == list(range(8))
    # a budget above the frames there are: each frame once
    few = select([c.info for c in choices[:3]], 10)
    assert len(few) == 3 and len({id(c.info) for c in few}) == 3


def test_stride_processes_every_nth_frame(videos):
    half = pick_frames(videos[:1], 3, parse_config(demo_config(), "demo"), stride=2)
    assert half.frames_scanned == CLIP // 2
    assert all(c.info.frame % 2 == 0 for c in half.choices)


# ---------------------------------------------------------------- ranking on constructed detections

H, W = 120, 200


def disc(x: int, y: int, r: int = 8) -> CropMask:
    full = np.zeros((H, W), np.uint8)
    cv2.circle(full, (x, y), r, 1, -1)
    return CropMask.from_full(full.astype(bool))


class Scripted:
    """A segmenter that returns prepared detections, one per frame, in order."""

    def __init__(self, script: list[Detections]) -> None:
        self.script = iter(script)

    def segment(self, frames):
        return [next(self.script) for _ in frames]


def constructed_scene() -> tuple[list[Frame], list[Detections]]:
    """40 frames at 10 fps: a bottle moving right that vanishes after frame 13 and is a "person" from frame 16
    (a break with a class flip), and a steady bottle that scores 0.52, at the threshold, in frame 30."""
    frames, script = [], []
    for t in range(40):
        image = np.full((H, W, 3), 90, np.uint8)
        masks, names, scores = [], [], []
        if t < 14 or t >= 16:
            masks.append(disc(20 + 3 * t, 40))
            names.append("bottle" if t < 14 else "person")
            scores.append(0.95)
        masks.append(disc(100, 90))
        names.append("bottle")
        scores.append(0.52 if t == 30 else 0.95)
        for mask, colour in zip(masks, ((40, 200, 60), (200, 40, 60))):
            image[mask.to_full(H, W)] = colour
        frames.append(Frame(t, t / 10, 1000 + t / 10, image))
        ids = [1 if n == "bottle" else 2 for n in names]
        script.append(Detections.from_masks(masks, ids, scores, names, (H, W)))
    return frames, script


def test_frames_with_uncertain_or_broken_tracks_rank_above_quiet_ones():
    frames, script = constructed_scene()
    scanned = scan(frames, Scripted(script), parse_config({}, "t").tracker, threshold=0.5, margin=0.15)
    by_frame = {f.frame: f for f in scanned}
    weights = Weights()
    quiet = by_frame[8]
    assert quiet.informativeness(weights) == 0
    assert by_frame[30].evidence["uncertain"] == pytest.approx(1 - 0.02 / 0.15, abs=1e-3)
    for t in (13, 16):  # the old track's last sighting and the new one's first
        assert by_frame[t].evidence["break"] == 1 and by_frame[t].evidence["class_flip"] == 1, by_frame[t].notes
        assert by_frame[t].informativeness(weights) > by_frame[30].informativeness(weights) > 0
    assert any("ended" in note for note in by_frame[13].notes)
    ranking = {c.info.frame: c.rank for c in select(scanned, len(scanned), weights)}
    first = min(ranking, key=ranking.get)
    assert first in range(13, 17), first  # the most informative frame is picked first
    assert ranking[30] < ranking[8]
    # without diversity the informative frames come first, the quiet ones after
    plain = [c.info.frame for c in select(scanned, 5, Weights(diversity=0.0, neighbour=0.0))]
    assert set(plain) == {13, 14, 15, 16, 30}


# ---------------------------------------------------------------- COCO export


def matched(coco: COCO, picked) -> list[tuple[dict, CropMask, float, str]]:
    """(annotation, the segmenter's mask, its score, its class) for every annotation, checking the image entries."""
    ordered = sorted(picked.choices, key=lambda c: (c.info.video, c.info.frame))
    out = []
    for image_id, choice in enumerate(ordered, start=1):
        detections = choice.info.detections
        entry = coco.imgs[image_id]
        assert (entry["height"], entry["width"]) == detections.image_size
        keep = [i for i, m in enumerate(detections.masks) if m.area]
        anns = sorted(coco.loadAnns(coco.getAnnIds(imgIds=[image_id])), key=lambda a: a["id"])
        assert len(anns) == len(keep)
        out += [(a, detections.masks[i], float(detections.scores[i]), detections.class_names[i]) for a, i in zip(anns, keep)]
    return out


def test_rle_export_loads_in_pycocotools_exactly(picked, tmp_path):
    summary = write_set(tmp_path / "set", picked, rle=True)
    coco = COCO(str(tmp_path / "set" / "annotations.json"))
    assert summary["annotations"] == len(coco.anns) > 10
    names = {c["id"]: c["name"] for c in coco.dataset["categories"]}
    assert list(names.values()) == ["bottle", "person"]  # the motion rules' classes, in order
    for ann, mask, score, name in matched(coco, picked):
        height, width = coco.imgs[ann["image_id"]]["height"], coco.imgs[ann["image_id"]]["width"]
        assert np.array_equal(coco.annToMask(ann).astype(bool), mask.to_full(height, width))
        assert isinstance(ann["segmentation"]["counts"], str) and ann["iscrowd"] == 0
        assert ann["area"] == mask.area and ann["score"] == pytest.approx(score, abs=1e-4) and names[ann["category_id"]] == name
        x0, y0, x1, y1 = mask.box()
        assert ann["bbox"] == pytest.approx([x0, y0, x1 - x0, y1 - y0])
    for entry in coco.dataset["images"]:
        image = cv2.imread(str(tmp_path / "set" / "images" / entry["file_name"]))
        assert image.shape[:2] == (entry["height"], entry["width"])
    files = sorted(e["file_name"] for e in coco.dataset["images"])
    assert files[0].startswith("00-scene_") and files[-1].startswith("01-scene_")  # same stem, two folders
    manifest = json.loads((tmp_path / "set" / "manifest.json").read_text())
    assert len(manifest["frames"]) == 8 and manifest["format"] == "rle"
    for row in manifest["frames"]:
        assert {"video", "frame", "pts", "why", "evidence", "rank", "file_name"} <= set(row)
        assert row["video"].endswith("scene.mp4") and row["pts"] == pytest.approx(row["frame"] / 10, abs=0.02)
    index = load_dataset(tmp_path / "set")  # exactly the layout maskwatch train reads
    assert index.layout == "coco" and len(index.samples) == 8
    assert sum(index.instance_counts().values()) == len(coco.anns)


def test_polygon_export_round_trips(picked, tmp_path):
    write_set(tmp_path / "set", picked)
    coco = COCO(str(tmp_path / "set" / "annotations.json"))
    ious = []
    for ann, mask, _, _ in matched(coco, picked):
        assert isinstance(ann["segmentation"], list) and all(len(p) >= 6 for p in ann["segmentation"])
        entry = coco.imgs[ann["image_id"]]
        back = coco.annToMask(ann).astype(bool)
        truth = mask.to_full(entry["height"], entry["width"])
        ious.append((back & truth).sum() / (back | truth).sum())
    assert min(ious) > 0.9 and np.mean(ious) > 0.98, (min(ious), np.mean(ious))
    assert len(load_dataset(tmp_path / "set").samples) == 8
    # corrected in CVAT and exported as COCO 1.0: annotations/instances_default.json beside images/
    (tmp_path / "set" / "annotations").mkdir()
    (tmp_path / "set" / "annotations.json").rename(tmp_path / "set" / "annotations" / "instances_default.json")
    assert len(load_dataset(tmp_path / "set" / "annotations" / "instances_default.json").samples) == 8


def test_polygons_follow_pixel_edges_exactly():
    rng = np.random.default_rng(3)
    for _ in range(20):
        blob = cv2.GaussianBlur(rng.random((60, 80)), (0, 0), 3) > 0.5
        contours, _ = cv2.findContours(blob.view(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        filled = cv2.drawContours(np.zeros((60, 80), np.uint8), contours, -1, 1, -1).astype(bool)  # holes filled
        mask = CropMask.from_full(blob)
        back = mask_utils.decode(mask_utils.merge(mask_utils.frPyObjects(mask_polygons(mask), 60, 80))).astype(bool)
        assert np.array_equal(back, filled)


# ---------------------------------------------------------------- command line


def test_bad_input_is_one_line(videos, tmp_path):
    video = str(videos[0])
    assert_one_line_error(maskwatch("label", str(tmp_path / "nope.mp4"), "--budget", "3", "--out", str(tmp_path / "o")),
                          "nope.mp4", "not found")
    for budget in ("0", "-2"):
        assert_one_line_error(maskwatch("label", video, "--budget", budget, "--out", str(tmp_path / "o")), "--budget")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "notes.txt").write_text("mine")
    assert_one_line_error(maskwatch("label", video, "--budget", "3", "--out", str(tmp_path / "full")),
                          "not empty", "--force")
    assert not (tmp_path / "o").exists()


def test_label_then_train_then_run(videos, tmp_path):
    """label → (corrections would go here) → train on the CPU → the checkpoint runs in `maskwatch run`."""
    site = tmp_path / "site.yaml"
    site.write_text(yaml.safe_dump(demo_config()))
    data = tmp_path / "to-label"
    first = maskwatch("label", str(videos[0]), "--budget", "2", "--out", str(data), "--config", str(site), "--stride", "3")
    assert first.returncode == 0, first.stderr
    result = maskwatch("label", str(videos[0]), "--budget", "6", "--out", str(data), "--config", str(site), "--force")
    assert result.returncode == 0, result.stderr
    assert "6 frames" in result.stdout and "without pre-labels" not in result.stdout, result.stdout
    assert len(list((data / "images").glob("*.jpg"))) == 6  # the first set replaced, not mixed in

    train_yaml = tmp_path / "train.yaml"
    train_yaml.write_text(yaml.safe_dump({**SMALL, "epochs": 1, "val_fraction": 0.0}))
    trained = tmp_path / "trained"
    result = maskwatch("train", "--data", str(data), "--out", str(trained), "--config", str(train_yaml))
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["class_names"] == ["bottle", "person"] and summary["train_images"] == 6
    assert (trained / "model.pth").is_file()

    run_yaml = tmp_path / "run.yaml"
    run_yaml.write_text(yaml.safe_dump({"segmenter": {"name": "maskrcnn", "maskrcnn": {"device": "cpu", "min_size": 96, "max_size": 128}}}))
    result = maskwatch("run", str(videos[0]), "--config", str(run_yaml), "--segmenter", "maskrcnn",
                       "--weights", str(trained / "model.pth"), "--max-frames", "2", "--out", str(tmp_path / "run"))
    assert result.returncode == 0, result.stderr
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["frames"] == 2

    # the next round of the loop: the trained model picks and pre-labels the frames, in its own classes
    again = tmp_path / "round-2"
    result = maskwatch("label", str(videos[0]), "--budget", "2", "--out", str(again), "--config", str(run_yaml),
                       "--weights", str(trained / "model.pth"), "--stride", "40")
    assert result.returncode == 0, result.stderr
    exported = json.loads((again / "annotations.json").read_text())
    assert [c["name"] for c in exported["categories"]] == ["bottle", "person"] and len(exported["images"]) == 2
    assert json.loads((again / "manifest.json").read_text())["segmenter"] == "maskrcnn"
