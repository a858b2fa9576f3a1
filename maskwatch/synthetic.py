"""A synthetic fixed-camera scene with exact ground truth, for the demo and the tests.

Bottles ride a conveyor belt left to right, some in touching pairs; a person
walks across the belt, passing over a bottle. Every frame is rendered from a
per-pixel object-id map, so the ground truth is each object's *visible*
pixels (the front object owns shared pixels, as in MOTS), and everything is
deterministic for a seed.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from segmenter.masks import CropMask
from segmenter.motsio import format_mots_line

WIDTH, HEIGHT, FPS, FRAMES = 640, 360, 10.0, 170
BELT = (150, 250)  # belt rows
CLASS_IDS = {"bottle": 1, "person": 2}


@dataclass
class _Object:
    obj_id: int
    class_name: str
    color: tuple[int, int, int]
    start: int  # first frame it moves
    x: float
    y: float
    vx: float
    vy: float

    def position(self, frame: int) -> tuple[float, float]:
        t = max(frame - self.start, 0)
        return self.x + self.vx * t, self.y + self.vy * t


@dataclass
class SceneTruth:
    """Visible ground-truth masks per frame: ``frames[i]`` lists ``(obj_id, class_name, mask)``."""

    width: int
    height: int
    fps: float
    frames: list[list[tuple[int, str, CropMask]]] = field(default_factory=list)

    def counts_per_class(self, min_frames: int = 5) -> dict[str, int]:
        """Objects per class visible (at least 50 px) in at least ``min_frames`` frames."""
        seen: dict[int, int] = defaultdict(int)
        names: dict[int, str] = {}
        for objects in self.frames:
            for obj_id, name, mask in objects:
                if mask.area >= 50:
                    seen[obj_id] += 1
                    names[obj_id] = name
        counts: dict[str, int] = defaultdict(int)
        for obj_id, n in seen.items():
            if n >= min_frames:
                counts[names[obj_id]] += 1
        return dict(sorted(counts.items()))

    def write_mots(self, path: Path) -> None:
        """MOTS ground truth (``frame obj_id class_id img_h img_w rle``), frames from 1."""
        with Path(path).open("w") as handle:
            for index, objects in enumerate(self.frames):
                for obj_id, name, mask in sorted(objects, key=lambda o: o[0]):
                    rle = mask.to_rle(self.height, self.width)
                    handle.write(format_mots_line(index + 1, obj_id, CLASS_IDS[name], rle) + "\n")


def _objects(rng: np.random.Generator) -> list[_Object]:
    """Six bottles (two touching pairs, two singles) and a person who walks over the first pair."""
    speed = 4.0
    layout = [  # (start frame, x offset behind the leader, lane y): pairs 26 px apart touch (radius 14)
        (20, 0, 200), (20, 26, 200), (50, 0, 176), (75, 0, 224), (75, 26, 224), (100, 0, 200),
    ]
    objects = [
        _Object(i + 1, "bottle", tuple(int(c) for c in rng.integers(150, 256, 3)), start, -20 - dx, lane, speed, 0.0)
        for i, (start, dx, lane) in enumerate(layout)
    ]
    objects.append(_Object(7, "person", (40, 60, 200), 50, 400, -70, 0.0, 4.0))
    return objects


def _draw(obj: _Object, frame: int, ids: np.ndarray, image: np.ndarray) -> None:
    x, y = obj.position(frame)
    if obj.class_name == "bottle":
        shapes = [("circle", (round(x), round(y)), 14)]
    else:  # head and torso of a walking figure
        shapes = [("circle", (round(x), round(y - 58)), 13), ("ellipse", (round(x), round(y)), (24, 52))]
    for kind, centre, size in shapes:
        layer = np.zeros(ids.shape, np.uint8)
        if kind == "circle":
            cv2.circle(layer, centre, size, 1, -1)
        else:
            cv2.ellipse(layer, centre, size, 0, 0, 360, 1, -1)
        inside = layer.astype(bool)
        ids[inside] = obj.obj_id
        image[inside] = obj.color


def _background(rng: np.random.Generator) -> np.ndarray:
    floor = np.full((HEIGHT, WIDTH, 3), 95, np.uint8)
    floor[BELT[0] : BELT[1]] = 55
    floor[BELT[0] : BELT[1], ::40] = 70  # belt slats
    return cv2.GaussianBlur(floor + rng.integers(0, 12, floor.shape, dtype=np.uint8), (3, 3), 0)


def render_scene(path: Path | str, seed: int = 0, frames: int = FRAMES) -> SceneTruth:
    """Write the scene as an MP4 at ``path`` and return its ground truth."""
    rng = np.random.default_rng(seed)
    background = _background(rng)
    objects = _objects(rng)
    truth = SceneTruth(WIDTH, HEIGHT, FPS)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), FPS, (WIDTH, HEIGHT))
    if not writer.isOpened():
        raise OSError(f"cannot write video {path}")
    try:
        for index in range(frames):
            image = background.copy()
            ids = np.zeros((HEIGHT, WIDTH), np.int32)
            for obj in objects:  # later objects are drawn on top (the person passes over bottles)
                _draw(obj, index, ids, image)
            noise = rng.normal(0, 2.0, image.shape)
            writer.write(np.clip(image + noise, 0, 255).astype(np.uint8))
            visible = []
            for obj in objects:
                mask = CropMask.from_full(ids == obj.obj_id)
                if mask.area:
                    visible.append((obj.obj_id, obj.class_name, mask))
            truth.frames.append(visible)
    finally:
        writer.release()
    return truth


def demo_config() -> dict:
    """Site config for the scene: motion segmenter with bottle/person size rules, and the zone."""
    return {
        "segmenter": {
            "name": "motion",
            "motion": {
                "warmup_frames": 15,
                "drop_border_instances": True,
                "split_ratio": 0.8,
                "close_kernel": 5,
                "min_area": 150,
                "classes": [
                    {"name": "bottle", "class_id": CLASS_IDS["bottle"], "max_area": 1500},
                    {"name": "person", "class_id": CLASS_IDS["person"], "min_area": 1500, "min_aspect": 1.2},
                ],
            },
        },
        "tracker": {"lost_seconds": 3.0},  # the person hides a pair of bottles for about 2.5 s
        "zones": [demo_zone()],
    }


def demo_zone() -> dict:
    """The stretch of belt the person crosses."""
    return {"name": "crossing", "polygon": [[370, BELT[0]], [470, BELT[0]], [470, BELT[1]], [370, BELT[1]]]}
