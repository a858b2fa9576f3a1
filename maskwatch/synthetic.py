"""A synthetic fixed-camera scene with exact ground truth, for the demo and the tests.

Bottles and pills ride a conveyor belt left to right, three pairs of them
touching (one behind the other, side by side across the belt, pills tip to
tip), and a person walks down across the belt, passing over a touching pair.
Each frame is rendered from a per-pixel object-id map, so the ground truth is
each object's *visible* pixels (the front object owns shared pixels, as in
MOTS), and everything, colours, texture and noise included, is deterministic
for a seed. The first frames are empty belt, for the background model.

The ``pills`` scene (``render_scene(..., scene="pills")``) is the dense case:
a wider belt carrying well over a hundred small pills (tablets, capsules and
softgels, 13-27 px, each kind its own colours and its own class) in clusters
where they touch or overlap by a pixel or two, all riding at the belt's speed.
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
BELT = (150, 250)  # first and last belt row
BELT_SPEED = 4.0  # pixels per frame
CLASS_IDS = {"bottle": 1, "person": 2, "tablet": 3, "capsule": 4, "softgel": 5}  # MOTS numbering: 2 is pedestrian
PX_PER_MM = 0.4  # a bottle (29 px across) is 72 mm, a pill (37 px long) 92 mm
COUNT_LINE_X = 150  # the counting line across the belt: every bottle crosses it

# Shapes are ellipses (dx, dy, half-width, half-height) around the object's centre.
Ellipse = tuple[int, int, int, int]
BOTTLE: tuple[Ellipse, ...] = ((0, 0, 14, 14),)  # seen from above: a disc
PILL: tuple[Ellipse, ...] = ((0, 0, 18, 11),)
PERSON: tuple[Ellipse, ...] = ((0, -58, 13, 13), (0, 0, 24, 52))  # head over torso, ~48x123 px


@dataclass(frozen=True)
class _Object:
    """An item moving at constant velocity from ``start``; its shapes are painted in order, later ones on top."""

    obj_id: int
    class_name: str
    shapes: tuple[Ellipse, ...]
    colours: tuple[tuple[int, int, int], ...]  # BGR, one per shape
    start: int  # first frame it moves; it stands off-screen before
    x: float
    y: float
    vx: float
    vy: float

    def centre(self, frame: int) -> tuple[int, int]:
        t = max(frame - self.start, 0)
        return round(self.x + self.vx * t), round(self.y + self.vy * t)

    def window(self, frame: int) -> tuple[int, int, int, int]:
        """Unclipped ``(x0, y0, x1, y1)`` around all its shapes, exclusive ends."""
        cx, cy = self.centre(frame)
        x0 = min(cx + dx - ax for dx, _, ax, _ in self.shapes)
        x1 = max(cx + dx + ax for dx, _, ax, _ in self.shapes) + 1
        y0 = min(cy + dy - ay for _, dy, _, ay in self.shapes)
        y1 = max(cy + dy + ay for _, dy, _, ay in self.shapes) + 1
        return x0, y0, x1, y1


@dataclass(frozen=True)
class TruthInstance:
    """One object in one frame: its visible pixels and how much of it that is."""

    obj_id: int
    class_name: str
    mask: CropMask  # visible pixels only
    visibility: float  # visible pixels / pixels it covers in the frame when nothing is in front
    overlap: float  # share of those pixels that another object covers too, in front or behind
    truncated: bool  # part of it lies outside the frame


@dataclass
class SceneTruth:
    """Ground truth of a rendered scene: ``frames[i]`` lists the objects visible in frame ``i``."""

    width: int
    height: int
    fps: float
    frames: list[list[TruthInstance]] = field(default_factory=list)

    def counts_per_class(self, min_frames: int = 5, min_area: int = 50, whole: bool = False) -> dict[str, int]:
        """Objects per class visible (at least ``min_area`` pixels) in at least ``min_frames`` frames.

        What a perfect tracker would report; objects that only peek in at the
        end of the video are not counted. ``whole``: only frames where the object
        lies wholly inside the frame count (a pill cut by the border is no pill
        for size rules, and the clip may end while pills still enter).
        """
        seen: dict[int, int] = defaultdict(int)
        names: dict[int, str] = {}
        for instances in self.frames:
            for inst in instances:
                if inst.mask.area >= min_area and not (whole and inst.truncated):
                    seen[inst.obj_id] += 1
                    names[inst.obj_id] = inst.class_name
        counts: dict[str, int] = defaultdict(int)
        for obj_id, n in seen.items():
            if n >= min_frames:
                counts[names[obj_id]] += 1
        return dict(sorted(counts.items()))

    def write_mots(self, path: Path | str) -> None:
        """MOTS ground truth (``frame obj_id class_id img_h img_w rle``), frames from 1, masks disjoint."""
        with Path(path).open("w") as handle:
            for index, instances in enumerate(self.frames):
                for inst in sorted(instances, key=lambda i: i.obj_id):
                    rle = inst.mask.to_rle(self.height, self.width)
                    handle.write(format_mots_line(index + 1, inst.obj_id, CLASS_IDS[inst.class_name], rle) + "\n")


def _colour(rng: np.random.Generator) -> tuple[int, int, int]:
    """A saturated, bright colour: far from the grey floor and the dark belt."""
    hsv = np.array([[[rng.integers(0, 180), rng.integers(170, 256), rng.integers(190, 256)]]], np.uint8)
    return tuple(int(c) for c in cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)[0, 0])


def _objects(rng: np.random.Generator) -> list[_Object]:
    """Bottles and pills on the belt (three touching pairs, two singles), then the person.

    All items ride at the belt's speed, so a pair stays touching (centres exactly
    one object-width apart) from entry to exit. The person walks down at x=420
    and reaches the first pair's lane as the pair passes under them (~frame 128).
    """
    layout = [  # (shape, start frame, lane y, distance behind the leader); all start just off-screen
        # touching one behind the other; the person walks over this pair
        (BOTTLE, 20, 200, 0),
        (BOTTLE, 20, 200, 28),
        (PILL, 42, 172, 0),
        # touching side by side across the belt
        (BOTTLE, 68, 186, 0),
        (BOTTLE, 68, 214, 0),
        # pills touching tip to tip
        (PILL, 95, 228, 0),
        (PILL, 95, 228, 36),
        (BOTTLE, 118, 190, 0),
    ]
    objects = [
        _Object(i + 1, "bottle", shape, (_colour(rng),), start, -shape[0][2] - 1 - behind, lane, BELT_SPEED, 0.0)
        for i, (shape, start, lane, behind) in enumerate(layout)
    ]
    skin = (int(rng.integers(90, 140)), int(rng.integers(140, 180)), int(rng.integers(190, 230)))
    objects.append(_Object(len(objects) + 1, "person", PERSON, (skin, _colour(rng)), 58, 420, -80, 0.0, 4.0))
    return objects


# The pills scene: a wider belt, a strip of pills PILLS_STRIP px long entering after PILLS_START empty frames.
PILLS_BELT = (110, 270)
PILLS_START = 15
PILLS_STRIP = 700
PILLS_FRAMES = PILLS_START + int((PILLS_STRIP + WIDTH) / BELT_SPEED) + 5  # until the last pill has left
PILLS_PX_PER_MM = 1.8  # a tablet (15 px) is 8 mm across
PILL_KINDS: dict[str, tuple[tuple[Ellipse, ...], ...]] = {  # class → its shapes (a capsule lies along or across)
    "tablet": (((0, 0, 7, 7),),),  # round, 15 px, white
    "capsule": (((0, 0, 13, 6),), ((0, 0, 6, 13),)),  # 27 x 13 px, saturated colours
    "softgel": (((0, 0, 10, 10),),),  # round, 21 px, amber
}
PILL_MIX = {"tablet": 0.45, "capsule": 0.35, "softgel": 0.2}


def _pill_colour(kind: str, rng: np.random.Generator) -> tuple[int, int, int]:
    """Each kind its own colours: off-white tablets, capsules in a few saturated hues, amber softgels."""
    if kind == "tablet":
        grey = int(rng.integers(215, 245))
        return grey - int(rng.integers(0, 20)), grey - int(rng.integers(0, 8)), grey
    if kind == "capsule":
        hue = int(rng.choice([0, 60, 110, 150])) + int(rng.integers(-6, 7))
        hsv = np.array([[[hue % 180, rng.integers(190, 256), rng.integers(170, 240)]]], np.uint8)
    else:
        hsv = np.array([[[rng.integers(15, 28), rng.integers(200, 256), rng.integers(200, 250)]]], np.uint8)
    return tuple(int(c) for c in cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)[0, 0])


def _ellipse_mask(shape: Ellipse) -> np.ndarray:
    """The painted pixels of one ellipse, centred in a ``(2*ay + 1, 2*ax + 1)`` bool array."""
    _, _, ax, ay = shape
    out = np.zeros((2 * ay + 1, 2 * ax + 1), np.uint8)
    cv2.ellipse(out, (ax, ay), (ax, ay), 0, 0, 360, 1, -1)
    return out.astype(bool)


def _pill_layout(rng: np.random.Generator) -> list[tuple[str, Ellipse, int, int]]:
    """Pills as ``(kind, shape, u, v)``: centres on the strip (u along the belt from its head, v across from the top).

    Clusters of 3-16 pills, each grown from a first pill: every further pill
    starts on a member's centre and walks away in a random direction, one pixel
    at a time, until it overlaps the pills already placed by at most 0-6 pixels
    (0: just touching, more: lying a pixel or two over its neighbour).
    """
    top, bottom = PILLS_BELT
    height = bottom - top - 8  # pills keep 4 px off the rails
    canvas = np.zeros((height, PILLS_STRIP + 60), bool)
    kinds, weights = list(PILL_MIX), np.array(list(PILL_MIX.values()))
    placed: list[tuple[str, Ellipse, int, int]] = []

    def fits(shape: Ellipse, u: int, v: int, allowed: int) -> bool:
        _, _, ax, ay = shape
        if v - ay < 0 or v + ay >= height or u - ax < 0 or u + ax >= canvas.shape[1]:
            return False
        return np.count_nonzero(canvas[v - ay : v + ay + 1, u - ax : u + ax + 1] & _ellipse_mask(shape)) <= allowed

    def put(kind: str, shape: Ellipse, u: int, v: int) -> None:
        _, _, ax, ay = shape
        canvas[v - ay : v + ay + 1, u - ax : u + ax + 1] |= _ellipse_mask(shape)
        placed.append((kind, shape, u, v + 4))

    def pick() -> tuple[str, Ellipse]:
        kind = str(rng.choice(kinds, p=weights))
        options = PILL_KINDS[kind]
        return kind, options[int(rng.integers(len(options)))][0]

    head = 16
    while head < PILLS_STRIP:
        kind, shape = pick()
        u, v = head + shape[2], int(rng.integers(shape[3], height - shape[3]))
        if not fits(shape, u, v, 0):
            head += 4
            continue
        put(kind, shape, u, v)
        members = [(u, v)]
        for _ in range(int(rng.integers(2, 16))):
            kind, shape = pick()
            cu, cv = members[int(rng.integers(len(members)))]
            angle, allowed = rng.uniform(0, 2 * np.pi), int(rng.integers(0, 7))
            for step in range(1, 40):
                pu, pv = cu + round(step * np.cos(angle)), cv + round(step * np.sin(angle))
                if fits(shape, pu, pv, allowed):
                    put(kind, shape, pu, pv)
                    members.append((pu, pv))
                    break
        head = max(pu for _, _, pu, _ in placed[-len(members) :]) + int(rng.integers(-10, 20))
    return placed


def _pill_objects(rng: np.random.Generator) -> list[_Object]:
    """The strip's pills as objects riding at the belt's speed, the strip's head entering at frame ``PILLS_START``."""
    return [  # mirrored: the head of the strip (u = 0) is just off-screen left, the rest further left
        _Object(i + 1, kind, (shape,), (_pill_colour(kind, rng),), PILLS_START, float(-u - 1),
                float(PILLS_BELT[0] + v), BELT_SPEED, 0.0)
        for i, (kind, shape, u, v) in enumerate(_pill_layout(rng))
    ]


def _background(rng: np.random.Generator, belt: tuple[int, int] = BELT) -> np.ndarray:
    """Floor with low-frequency mottling, a dark belt with slats and light rails."""
    mottle = cv2.resize(rng.normal(0, 8, (HEIGHT // 20, WIDTH // 20, 1)).astype(np.float32), (WIDTH, HEIGHT))
    grain = cv2.GaussianBlur(rng.normal(0, 6, (HEIGHT, WIDTH, 3)).astype(np.float32), (3, 3), 0)
    floor = np.array([100, 104, 108], np.float32) + mottle[..., None] + grain
    top, bottom = belt
    floor[top:bottom] = np.array([52, 54, 56], np.float32) + grain[top:bottom] / 2
    floor[top:bottom, ::32] += 14  # slats
    floor[top - 3 : top] = floor[bottom : bottom + 3] = 170  # rails
    return np.clip(floor, 0, 255).astype(np.uint8)


def _draw(obj: _Object, frame: int, image: np.ndarray, ids: np.ndarray, cover: np.ndarray) -> np.ndarray | None:
    """Paint ``obj`` over ``image`` and ``ids``, count it in ``cover``; returns its in-frame layer (None: off-screen)."""
    x0, y0, x1, y1 = _clip(obj.window(frame), ids.shape)
    if x1 <= x0 or y1 <= y0:
        return None
    cx, cy = obj.centre(frame)
    layer = np.zeros((y1 - y0, x1 - x0), np.uint8)
    for index, (dx, dy, ax, ay) in enumerate(obj.shapes, start=1):
        cv2.ellipse(layer, (cx + dx - x0, cy + dy - y0), (ax, ay), 0, 0, 360, index, -1)
    for index, colour in enumerate(obj.colours, start=1):
        image[y0:y1, x0:x1][layer == index] = colour
    inside = layer > 0
    ids[y0:y1, x0:x1][inside] = obj.obj_id
    cover[y0:y1, x0:x1] += inside
    return inside


def _clip(window: tuple[int, int, int, int], shape: tuple[int, ...] = (HEIGHT, WIDTH)) -> tuple[int, int, int, int]:
    x0, y0, x1, y1 = window
    return max(x0, 0), max(y0, 0), min(x1, shape[1]), min(y1, shape[0])


def _render_frame(
    objects: list[_Object], index: int, background: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, list[TruthInstance]]:
    image = background.copy()
    ids = np.zeros(background.shape[:2], np.int32)
    cover = np.zeros(background.shape[:2], np.uint8)  # how many objects cover each pixel
    layers = [(obj, _draw(obj, index, image, ids, cover)) for obj in objects]  # later objects in front
    truths = (_truth(obj, index, layer, ids, cover) for obj, layer in layers if layer is not None)
    noise = rng.integers(-3, 4, image.shape, dtype=np.int8)  # sensor noise (sd 2): the background never stands still
    return cv2.add(image, noise, dtype=cv2.CV_8U), [t for t in truths if t is not None]  # saturating add


def _truth(obj: _Object, frame: int, layer: np.ndarray, ids: np.ndarray, cover: np.ndarray) -> TruthInstance | None:
    """Ground truth of a painted object (``layer`` from :func:`_draw`); None when nothing of it shows."""
    window = obj.window(frame)
    x0, y0, x1, y1 = _clip(window, ids.shape)
    visible = CropMask.from_full(ids[y0:y1, x0:x1] == obj.obj_id)
    if not visible.area:
        return None
    alone = np.count_nonzero(layer)
    shared = np.count_nonzero(layer & (cover[y0:y1, x0:x1] > 1))
    mask = CropMask(visible.crop, visible.x0 + x0, visible.y0 + y0)
    truncated = (x0, y0, x1, y1) != window
    return TruthInstance(obj.obj_id, obj.class_name, mask, mask.area / alone, shared / alone, truncated)


SCENES = ("belt", "pills")


def render_scene(path: Path | str, seed: int = 0, frames: int | None = None, scene: str = "belt") -> SceneTruth:
    """Write a scene (``belt`` or ``pills``) as an MP4 (mp4v, 640x360, 10 fps) at ``path``; returns its ground truth.

    ``frames`` defaults to the whole scene (FRAMES, PILLS_FRAMES); fewer gives its start.
    Raises OSError when the video cannot be written or read back (an OpenCV
    build without an mp4v codec), so the demo fails here and not downstream.
    """
    if scene not in SCENES:
        raise ValueError(f"unknown scene {scene!r} (known: {', '.join(SCENES)})")
    rng = np.random.default_rng(seed)
    if scene == "pills":
        background, objects = _background(rng, PILLS_BELT), _pill_objects(rng)
    else:
        background, objects = _background(rng), _objects(rng)
    frames = (PILLS_FRAMES if scene == "pills" else FRAMES) if frames is None else frames
    truth = SceneTruth(WIDTH, HEIGHT, FPS)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), FPS, (WIDTH, HEIGHT))
    if not writer.isOpened():
        raise OSError(f"cannot write video {path} (mp4v)")
    try:
        for index in range(frames):
            image, instances = _render_frame(objects, index, background, rng)
            writer.write(image)
            truth.frames.append(instances)
    finally:
        writer.release()
    capture = cv2.VideoCapture(str(path))
    readable = capture.isOpened() and capture.read()[0]
    capture.release()
    if not readable:
        raise OSError(f"video {path} was written but cannot be read back")
    return truth


def demo_config(scene: str = "belt") -> dict:
    """Site config for a scene (``maskwatch run`` YAML as a dict): motion segmenter, tracker, zone.

    ``pills``: see :func:`pills_config`. For the belt scene:

    Class rules: a bottle or pill is ~600-700 px of foreground, the person
    ~4400 px and 2.5 times taller than wide; two bottles left unsplit (~1300 px)
    match neither rule and are dropped rather than counted as one bottle.
    Instances touching the border are dropped: a half-visible person is
    bottle-sized.
    """
    if scene == "pills":
        return pills_config()
    if scene != "belt":
        raise ValueError(f"unknown scene {scene!r} (known: {', '.join(SCENES)})")
    return {
        "segmenter": {
            "name": "motion",
            "motion": {
                "warmup_frames": 15,
                # Fixed and slow: with the automatic rate (1/(2*frames) early on) the person's flat-coloured
                # torso, covering a pixel for ~26 frames, would sink into the background and cut off the head.
                "learning_rate": 0.002,
                "drop_border_instances": True,
                "var_threshold": 30,  # trims the video-compression fringe, which fattens the neck between bottles
                "close_kernel": 3,  # a wider closing fills the notch between two touching bottles
                "split_ratio": 0.55,  # a bottle (14 px deep) touching the person (24 px) still seeds: 14/24 > 0.55
                "max_neck_ratio": 0.75,  # touching bottles measure 0.5-0.7 after MOG2 and the closing
                "min_area": 200,
                "classes": [
                    {"name": "bottle", "class_id": CLASS_IDS["bottle"], "max_area": 1000, "max_aspect": 2.0},
                    {"name": "person", "class_id": CLASS_IDS["person"], "min_area": 2500, "min_aspect": 1.5},
                ],
            },
        },
        "tracker": {"lost_seconds": 3.0},  # the person covers the first pair for 2-3 s
        "camera": {
            "name": "demo-belt",
            "calibration": {"px_per_mm": PX_PER_MM},
            "zones": [demo_zone()],
            "lines": [{"name": "belt-end", "points": [[COUNT_LINE_X, BELT[0]], [COUNT_LINE_X, BELT[1]]], "classes": ["bottle"]}],
        },
        "sampling": {"measure_every": 1},  # a 10 fps scene with few objects: measure every frame
        "rules": {"sizes": [{"name": "oversize", "measure": "length", "classes": ["bottle"], "max": 80}]},
        "alarms": [{"name": "person-on-belt", "kinds": ["zone_enter"], "zones": ["crossing"], "classes": ["person"],
                    "severity": "critical"}],
    }


def demo_zone() -> dict:
    """The stretch of belt the person crosses (between the rails, around x=420)."""
    top, bottom = BELT
    return {"name": "crossing", "polygon": [[370, top], [470, top], [470, bottom], [370, bottom]]}


def pills_config() -> dict:
    """Site config for the pills scene: the motion segmenter tuned for dense, touching pills of three kinds.

    Pills touch in clusters, so the split does the work: no closing (a closing
    fills the gaps between three touching pills into one broad blob), a higher
    MOG2 threshold (trims the compression fringe that widens every contact),
    prominence seeds (a 15 px tablet beside a 21 px softgel still seeds) and
    colour-edge cuts (two capsules of other colours lying side by side meet at
    a wide contact). Classes by size and shape: a capsule is over twice as long
    as wide (along or across the belt), a tablet ~170 px, a softgel ~330 px.
    """
    top, bottom = PILLS_BELT
    capsule = CLASS_IDS["capsule"]
    return {
        "segmenter": {
            "name": "motion",
            "motion": {
                "warmup_frames": PILLS_START,
                "learning_rate": 0.002,
                "drop_border_instances": True,
                "var_threshold": 60,
                "close_kernel": 1,
                "seeds": "prominence",
                "edge_threshold": 100,
                "split_ratio": 0.55,  # a seed's core: the pixels at least this share of its peak deep
                "min_peak_distance": 3,
                "max_neck_ratio": 0.75,
                "min_area": 60,
                "classes": [
                    {"name": "capsule", "class_id": capsule, "min_area": 120, "max_area": 450, "max_aspect": 0.7},
                    {"name": "capsule", "class_id": capsule, "min_area": 120, "max_area": 450, "min_aspect": 1.45},
                    {"name": "tablet", "class_id": CLASS_IDS["tablet"], "max_area": 250},
                    {"name": "softgel", "class_id": CLASS_IDS["softgel"], "min_area": 250, "max_area": 550},
                ],
            },
        },
        "tracker": {"lost_seconds": 1.0},
        "camera": {
            "name": "demo-pills",
            "calibration": {"px_per_mm": PILLS_PX_PER_MM},
            "lines": [{"name": "belt-middle", "points": [[WIDTH // 2, top], [WIDTH // 2, bottom]]}],
        },
        "sampling": {"measure_every": 5},
    }


def truth_counts(truth: SceneTruth, scene: str = "belt") -> dict[str, int]:
    """What a perfect counter reports for a scene: pills are counted only while wholly in the frame."""
    return truth.counts_per_class(whole=scene == "pills")
