"""Small dense objects: the pills scene, the motion segmenter's split of touching pills, and tiled Mask R-CNN.

The scene's tests run on its first PILLS_CLIP frames (about sixty pills, all of
them touching others) to stay well under a minute on a busy two-core machine;
the whole scene is ``maskwatch demo --scene pills``.
"""

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from scipy.optimize import linear_sum_assignment

from maskwatch.config import parse_config
from maskwatch.demo import run_demo
from maskwatch.synthetic import (
    CLASS_IDS,
    HEIGHT,
    PILL_KINDS,
    WIDTH,
    SceneTruth,
    _pill_objects,
    demo_config,
    render_scene,
    truth_counts,
)
from segmenter import maskrcnn
from segmenter.detections import Detections
from segmenter.maskrcnn import MaskRCNNConfig, MaskRCNNSegmenter
from segmenter.masks import CropMask, mask_iou, mask_iou_matrix
from segmenter.motion import MotionSegmenter, split_touching
from segmenter.tiles import merge_tiled, tile_windows

PILLS_CLIP = 110  # frames: the strip's first ~380 px have entered
MARGIN = 4  # MOG2's foreground reaches a pixel or two past an object: so close to the border it is dropped


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> tuple[Path, SceneTruth]:
    path = tmp_path_factory.mktemp("pills") / "pills.mp4"
    return path, render_scene(path, seed=0, frames=PILLS_CLIP, scene="pills")


def read_frames(path: Path) -> list[np.ndarray]:
    capture = cv2.VideoCapture(str(path))
    frames = []
    while (frame := capture.read())[0]:
        frames.append(frame[1])
    capture.release()
    return frames


def full(mask: CropMask) -> np.ndarray:
    return mask.to_full(HEIGHT, WIDTH)


def touching(a: CropMask, b: CropMask) -> bool:
    grown = cv2.dilate(full(a).view(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
    return bool((grown & full(b)).any())


def test_pills_scene_is_over_a_hundred_small_pills_of_three_kinds_deterministic_by_seed(tmp_path):
    objects = _pill_objects(np.random.default_rng(0))
    assert len(objects) >= 100
    assert {o.class_name for o in objects} == set(PILL_KINDS) == {"tablet", "capsule", "softgel"}
    for obj in objects:
        x0, y0, x1, y1 = obj.window(0)
        assert 10 <= max(x1 - x0, y1 - y0) <= 30  # 10-30 px
    colours = {kind: np.array([o.colours[0] for o in objects if o.class_name == kind]) for kind in PILL_KINDS}
    assert colours["tablet"].min() > 180  # off-white
    assert (colours["softgel"][:, 0] < 100).all()  # amber: little blue
    first, again = (render_scene(tmp_path / f"{n}.mp4", seed=5, frames=40, scene="pills") for n in "ab")
    assert [[(i.obj_id, i.mask.window) for i in f] for f in first.frames] == [
        [(i.obj_id, i.mask.window) for i in f] for f in again.frames
    ]
    assert all(np.array_equal(a, b) for a, b in zip(read_frames(tmp_path / "a.mp4"), read_frames(tmp_path / "b.mp4")))


def test_pills_touch_and_overlap_and_the_truth_is_disjoint_mots(clip, tmp_path):
    _, truth = clip
    frame = truth.frames[-1]
    union = np.zeros((HEIGHT, WIDTH), np.int32)
    for inst in frame:
        union += full(inst.mask)
    assert union.max() <= 1  # visible masks are disjoint, the front pill owns shared pixels
    whole = [i for i in frame if not i.truncated]
    in_contact = {i.obj_id for i in whole for j in whole if i is not j and touching(i.mask, j.mask)}
    assert len(whole) >= 40 and len(in_contact) >= 0.6 * len(whole)
    assert any(i.overlap > 0 for i in whole)  # some lie a pixel or two over a neighbour
    truth.write_mots(tmp_path / "gt.txt")
    lines = (tmp_path / "gt.txt").read_text().splitlines()
    assert len(lines) == sum(len(f) for f in truth.frames)
    assert {int(line.split()[2]) for line in lines} == {CLASS_IDS[k] for k in PILL_KINDS}


def test_pills_demo_counts_every_pill_within_three_percent(tmp_path):
    summary, truth = run_demo(tmp_path, render=False, scene="pills", frames=PILLS_CLIP)
    counted, expected = sum(summary["counts_per_class"].values()), sum(truth.values())
    assert expected >= 50
    assert abs(counted - expected) <= 0.03 * expected, (summary["counts_per_class"], truth)
    for kind, n in truth.items():  # and each kind by itself
        assert abs(summary["counts_per_class"].get(kind, 0) - n) <= max(1, 0.03 * n), (summary["counts_per_class"], truth)
    assert (tmp_path / "scene.gt.mots.txt").is_file() and "demo-pills" in (tmp_path / "site.yaml").read_text()


def test_motion_segmenter_finds_each_pill_per_frame(clip):
    """Per frame, pills wholly inside the frame against detections: counts within 3%, 97% matched (IoU >= 0.5)."""
    path, truth = clip
    config = parse_config(demo_config("pills")).segmenter.motion
    detections = MotionSegmenter(config).segment(read_frames(path))
    count_error = total = matched = right_class = 0
    for index in range(config.warmup_frames, len(truth.frames)):
        pills = [
            i.mask for i in truth.frames[index]
            if not i.truncated and i.mask.x0 >= MARGIN and i.mask.x1 <= WIDTH - MARGIN
        ]
        names = [i.class_name for i in truth.frames[index] if not i.truncated and i.mask.x0 >= MARGIN
                 and i.mask.x1 <= WIDTH - MARGIN]
        dets = detections[index]
        count_error += abs(len(dets) - len(pills))
        total += len(pills)
        if pills and len(dets):
            ious = mask_iou_matrix(pills, dets.masks)
            rows, cols = linear_sum_assignment(-ious)
            hit = ious[rows, cols] >= 0.5
            matched += int(hit.sum())
            right_class += sum(dets.class_names[c] == names[r] for r, c in zip(rows[hit], cols[hit]))
    assert total > 2500  # pill-frames
    assert count_error / total <= 0.03
    assert matched / total >= 0.97
    assert right_class / matched >= 0.98


def pill_image(shapes) -> tuple[np.ndarray, np.ndarray]:
    """A dark belt crop with ``(centre, axes, BGR)`` ellipses painted: (image, blob) as split_touching gets them."""
    image = np.full((60, 80, 3), 54, np.uint8)
    blob = np.zeros((60, 80), np.uint8)
    for centre, axes, colour in shapes:
        cv2.ellipse(image, centre, axes, 0, 0, 360, colour, -1)
        cv2.ellipse(blob, centre, axes, 0, 0, 360, 1, -1)
    return image, blob.astype(bool)


WHITE, AMBER, GREEN, BLUE = (230, 235, 240), (30, 170, 230), (40, 200, 40), (200, 80, 30)
CASES = {
    # a 15 px tablet against a 21 px softgel, overlapping by a pixel: the softgel's depth used to outvote the tablet
    "tablet-beside-softgel": [((25, 30), (7, 7), WHITE), ((41, 30), (10, 10), AMBER)],
    # three white tablets in a triangle and a fourth: one colour, apart only by shape
    "white-tablet-cluster": [((20, 20), (7, 7), WHITE), ((34, 20), (7, 7), WHITE), ((27, 32), (7, 7), WHITE),
                             ((41, 32), (7, 7), WHITE)],
    # two capsules side by side along their length: a wide contact, two colours
    "capsules-side-by-side": [((30, 30), (6, 13), GREEN), ((42, 30), (6, 13), BLUE)],
    "two-softgels": [((25, 30), (10, 10), AMBER), ((44, 30), (10, 10), AMBER)],
}


@pytest.mark.parametrize("case", list(CASES))
def test_watershed_splits_touching_pills(case):
    motion = parse_config(demo_config("pills")).segmenter.motion
    image, blob = pill_image(CASES[case])
    parts = split_touching(
        blob, image, motion.split_ratio, motion.min_peak_distance, motion.max_neck_ratio,
        seeds=motion.seeds, edge_threshold=motion.edge_threshold,
    )
    truth = []
    painted = np.zeros(blob.shape, np.int32)
    for index, (centre, axes, _) in enumerate(CASES[case], start=1):
        cv2.ellipse(painted, centre, axes, 0, 0, 360, index, -1)  # later ones in front, as the scene paints
    truth = [CropMask.from_full(painted == k) for k in range(1, len(CASES[case]) + 1)]
    assert len(parts) == len(truth)
    assert sorted(max(mask_iou(p, t) for p in parts) for t in truth)[0] >= 0.8


def test_a_single_capsule_or_softgel_stays_one_piece():
    motion = parse_config(demo_config("pills")).segmenter.motion
    for shape in ([((40, 30), (13, 6), BLUE)], [((40, 30), (10, 10), AMBER)], [((40, 30), (6, 13), GREEN)]):
        image, blob = pill_image(shape)
        parts = split_touching(blob, image, motion.split_ratio, motion.min_peak_distance, motion.max_neck_ratio,
                               seeds=motion.seeds, edge_threshold=motion.edge_threshold)
        assert len(parts) == 1


# ---- tiles ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("height", "width", "size", "overlap"),
    [(360, 640, 128, 32), (360, 640, 256, 0), (100, 100, 128, 32), (129, 257, 64, 63), (360, 640, 200, 50)],
)
def test_tiles_cover_the_frame_and_neighbours_overlap(height, width, size, overlap):
    windows = tile_windows(height, width, size, overlap)
    covered = np.zeros((height, width), np.int32)
    for x0, y0, x1, y1 in windows:
        assert 0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height
        assert x1 - x0 == min(size, width) and y1 - y0 == min(size, height)  # no slivers
        covered[y0:y1, x0:x1] += 1
    assert covered.min() >= 1
    xs = sorted({w[0] for w in windows})
    ends = sorted({w[2] for w in windows})
    assert all(end - start >= overlap for start, end in zip(xs[1:], ends[:-1]))  # neighbours share overlap px
    assert len(tile_windows(height, width, size, overlap)) == len(windows)


def test_tile_windows_reject_bad_sizes():
    for size, overlap in ((64, 64), (64, -1), (0, 0)):
        with pytest.raises(ValueError):
            tile_windows(100, 100, size, overlap)


def disc_mask(cx: int, cy: int, r: int, shape=(200, 300)) -> np.ndarray:
    out = np.zeros(shape, np.uint8)
    cv2.circle(out, (cx, cy), r, 1, -1)
    return out.astype(bool)


def perfect_tiles(objects: list[tuple[np.ndarray, int]], windows) -> list[Detections]:
    """Each tile's detections: every object's pixels inside the tile, in tile coordinates."""
    out = []
    for x0, y0, x1, y1 in windows:
        masks, classes = [], []
        for full_mask, class_id in objects:
            crop = CropMask.from_full(full_mask[y0:y1, x0:x1])
            if crop.area:
                masks.append(crop)
                classes.append(class_id)
        out.append(Detections.from_masks(masks, classes, [0.9] * len(masks), [f"c{c}" for c in classes], (y1 - y0, x1 - x0)))
    return out


def assert_merged_equal(merged: Detections, objects: list[tuple[np.ndarray, int]]) -> None:
    assert len(merged) == len(objects)
    for full_mask, class_id in objects:
        ious = [mask_iou(m, CropMask.from_full(full_mask)) for m in merged.masks]
        best = int(np.argmax(ious))
        assert ious[best] == 1.0 and merged.class_ids[best] == class_id


@pytest.mark.parametrize("overlap", [0, 16, 40])
def test_an_object_cut_by_seams_is_merged_once(overlap):
    """Discs on a vertical seam, a horizontal one, a four-tile corner, and one wholly inside an overlap."""
    windows = tile_windows(200, 300, 120, overlap)
    xs, ys = sorted({w[0] for w in windows}), sorted({w[1] for w in windows})
    seam_x = (xs[1] + windows[0][2]) // 2  # middle of the first vertical overlap (the seam itself with overlap 0)
    seam_y = (ys[1] + windows[0][3]) // 2
    objects = [
        (disc_mask(seam_x, 40, 12), 1),
        (disc_mask(40, seam_y, 9), 2),
        (disc_mask(seam_x, seam_y, 14), 1),
        (disc_mask(seam_x + 1, 170, 5), 3),
    ]
    merged = merge_tiled(perfect_tiles(objects, windows), windows, (200, 300))
    assert merged.image_size == (200, 300)
    assert_merged_equal(merged, objects)
    assert np.allclose(merged.boxes, [m.box() for m in merged.masks])


@pytest.mark.parametrize("overlap", [0, 24])
def test_touching_objects_across_a_seam_stay_apart(overlap):
    """Two discs touching across the seam, one tablet-sized pill of another class on top of the seam: three objects."""
    windows = tile_windows(200, 300, 160, overlap)
    seam = windows[0][2] - overlap // 2
    left, right = disc_mask(seam - 8, 60, 8), disc_mask(seam + 8, 60, 8)
    right &= ~left
    other = disc_mask(seam, 140, 10)
    objects = [(left, 1), (right, 1), (other, 2)]
    assert_merged_equal(merge_tiled(perfect_tiles(objects, windows), windows, (200, 300)), objects)


def test_duplicates_in_the_overlap_are_dropped_and_partial_copies_join_them():
    windows = [(0, 0, 100, 100), (60, 0, 160, 100)]
    whole = disc_mask(80, 50, 10, (100, 160))
    crop = CropMask.from_full(whole)
    tile_a = Detections.from_masks([CropMask(crop.crop, crop.x0, crop.y0)], [1], [0.7], ["c1"], (100, 100))
    # tile b: the same object twice (NMS missed one), once a little smaller
    shrunk = CropMask.from_full(cv2.erode(whole.view(np.uint8), np.ones((3, 3), np.uint8)).astype(bool))
    tile_b = Detections.from_masks(
        [CropMask(crop.crop, crop.x0 - 60, crop.y0), CropMask(shrunk.crop, shrunk.x0 - 60, shrunk.y0)],
        [1, 1], [0.9, 0.6], ["c1", "c1"], (100, 100),
    )
    merged = merge_tiled([tile_a, tile_b], windows, (100, 160))
    assert len(merged) == 2  # a tile's own masks are never joined: the model's NMS decided there
    assert mask_iou(merged.masks[0], crop) == 1.0 and merged.scores[0] == pytest.approx(0.9)
    assert len(merge_tiled([Detections.empty((100, 100))] * 2, windows, (100, 160))) == 0


# ---- Mask R-CNN on tiles, with a perfect stand-in model ------------------------------------------------------------

NAMES = ["__background__", *sorted(CLASS_IDS, key=CLASS_IDS.get)]
TILES = {"size": 128, "overlap": 32}


class PerfectTileModel(torch.nn.Module):
    """torchvision's detection interface (eval mode): per tile image, the truth's masks cropped to the tile.

    It is told the frames' truth and tile windows in the order the segmenter will send the tiles.
    """

    def __init__(self) -> None:
        super().__init__()
        self.expected: list[tuple[list, tuple[int, int, int, int]]] = []
        self.calls = 0

    def forward(self, images: list[torch.Tensor]) -> list[dict[str, torch.Tensor]]:
        self.calls += 1
        outputs = []
        for image in images:
            instances, (x0, y0, x1, y1) = self.expected.pop(0)
            assert tuple(image.shape) == (3, y1 - y0, x1 - x0) and image.dtype == torch.float32
            masks, labels = [], []
            for inst in instances:
                m = inst.mask
                if m.x0 < x1 and x0 < m.x1 and m.y0 < y1 and y0 < m.y1:
                    tile_mask = CropMask(m.crop, m.x0 - x0, m.y0 - y0).to_full(y1 - y0, x1 - x0)
                    if tile_mask.any():
                        masks.append(tile_mask)
                        labels.append(CLASS_IDS[inst.class_name])
            stacked = torch.from_numpy(np.array(masks, np.float32).reshape(-1, 1, y1 - y0, x1 - x0))
            boxes = [CropMask.from_full(m).box() for m in masks]
            outputs.append({
                "boxes": torch.from_numpy(np.array(boxes, np.float32).reshape(-1, 4)),
                "labels": torch.tensor(labels, dtype=torch.int64),
                "scores": torch.ones(len(masks)),
                "masks": stacked,
            })
        return outputs


@pytest.fixture()
def tiled_segmenter(monkeypatch) -> tuple[MaskRCNNSegmenter, PerfectTileModel]:
    model = PerfectTileModel()
    monkeypatch.setattr(maskrcnn, "build_model", lambda config: (model, list(NAMES)))
    config = MaskRCNNConfig(weights="none", num_classes=len(NAMES), device="cpu", batch_size=6, tiles=TILES)
    return MaskRCNNSegmenter(config), model


def test_maskrcnn_on_tiles_finds_each_pill_once_in_full_frame_coordinates(clip, tiled_segmenter):
    """Every 6th frame of the clip: merged masks one-to-one with the truth (IoU >= 0.5), none twice, none lost."""
    seg, model = tiled_segmenter
    path, truth = clip
    frames = read_frames(path)
    picked = list(range(20, len(frames), 6))
    windows = tile_windows(HEIGHT, WIDTH, TILES["size"], TILES["overlap"])
    model.expected = [(truth.frames[i], w) for i in picked for w in windows]
    detections = seg.segment([frames[i] for i in picked])
    assert not model.expected and model.calls == -(-len(picked) * len(windows) // 6)  # batches of 6 tiles
    seam_objects = 0
    for index, dets in zip(picked, detections):
        instances = truth.frames[index]
        assert dets.image_size == (HEIGHT, WIDTH) and len(dets) == len(instances)
        ious = mask_iou_matrix([i.mask for i in instances], dets.masks)
        rows, cols = linear_sum_assignment(-ious)
        assert len(rows) == len(instances) and (ious[rows, cols] >= 0.5).all()
        assert all(dets.class_names[c] == instances[r].class_name for r, c in zip(rows, cols))
        for inst in instances:
            x0, y0, x1, y1 = inst.mask.window
            seam_objects += sum(1 for w in windows if x0 < w[2] < x1 or y0 < w[3] < y1)
    assert seam_objects > 100  # many pills lay across a tile edge


def test_maskrcnn_on_tiles_end_to_end_with_an_untrained_model():
    """The real network path (no stand-in): tiles batched through torchvision's Mask R-CNN, merged in frame space."""
    torch.manual_seed(0)
    config = MaskRCNNConfig(weights="none", version="v1", min_size=96, max_size=128, score_threshold=0.0, max_detections=3,
                            batch_size=4, device="cpu", tiles={"size": 96, "overlap": 24})
    image = np.random.default_rng(0).integers(0, 60, (120, 160, 3), dtype=np.uint8)
    image[20:70, 15:60] = (40, 200, 40)
    det = MaskRCNNSegmenter(config).segment([image])[0]
    assert det.image_size == (120, 160) and len(det) > 0
    for mask in det.masks:
        assert 0 <= mask.x0 < mask.x1 <= 160 and 0 <= mask.y0 < mask.y1 <= 120 and mask.area > 0


def test_tiles_config_is_checked():
    with pytest.raises(ValueError, match="overlap"):
        MaskRCNNConfig(weights="none", tiles={"size": 64, "overlap": 64})
    assert MaskRCNNConfig(weights="none").tiles is None
    assert parse_config({"segmenter": {"name": "maskrcnn", "maskrcnn": {"weights": "none", "tiles": TILES}}}
                        ).segmenter.maskrcnn.tiles.size == 128


def test_truth_counts_pills_only_while_wholly_in_frame(clip):
    _, truth = clip
    assert sum(truth_counts(truth, "pills").values()) <= sum(truth.counts_per_class().values())


def test_demo_command_takes_a_scene(monkeypatch):
    from typer.testing import CliRunner

    import maskwatch.demo
    from maskwatch.cli import app

    asked = []

    def fake_demo(out, render, console, scene):
        asked.append(scene)
        summary = {"frames": 1, "source": "scene.mp4", "processing_fps": 1.0, "objects_tracked": 61,
                   "counts_per_class": {"tablet": 61}, "events": {}, "files": {}}
        return summary, {"tablet": 62}

    monkeypatch.setattr(maskwatch.demo, "run_demo", fake_demo)
    runner = CliRunner()
    result = runner.invoke(app, ["demo", "--scene", "pills", "--no-render"])
    assert result.exit_code == 0, result.output
    assert "counted 61 of 62 objects (error 1.6%)" in result.output
    assert runner.invoke(app, ["demo", "--no-render"]).exit_code == 0
    assert asked == ["pills", "belt"]
    assert runner.invoke(app, ["demo", "--scene", "nope"]).exit_code == 2
