"""``maskwatch train`` on the CPU: mask AP on hand-checked cases, data validation, and short real training runs.

Training starts from random weights (no network here) on 128x96 images with 32
sampled RoIs per image and 50 proposals in the evaluation, so one iteration of
batch 2 takes about two seconds on two cores; each run is 9 iterations (3 epochs).
"""

from __future__ import annotations

import io
import json
import logging
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from rich.console import Console
from torchvision.models.detection import MaskRCNN_ResNet50_FPN_V2_Weights

from common import InputError
from segmenter.coco_eval import Prediction, Truth, mask_ap
from segmenter.datasets import InstanceDataset, build_augmentation, load_dataset, split_samples
from segmenter.maskrcnn import MaskRCNNConfig, MaskRCNNSegmenter
from segmenter.masks import CropMask
from segmenter.motsio import format_mots_line, read_mots
from segmenter.training import TrainConfig, build_training_model, lr_factor, train, train_command

SMALL = {
    "weights": "none", "device": "cpu", "min_size": 96, "max_size": 128, "batch_size": 2, "lr": 0.005, "warmup_iters": 0, "clip_grad": 100.0,
    "rois_per_image": 32, "val_proposals": 50, "workers": 0, "log_every": 1, "scale_jitter": 0.0, "color_jitter": 0.0,
}


def square(x: int, y: int, size: int = 20, height: int = 100, width: int = 100) -> dict:
    mask = np.zeros((height, width), bool)
    mask[y : y + size, x : x + size] = True
    return CropMask.from_full(mask).to_rle(height, width)


# ---------------------------------------------------------------- mask AP


def test_mask_ap_of_hand_checked_cases():
    names = ["box", "disc"]
    truth = [[Truth("box", square(10, 10))]]  # one 20x20 square; no "disc" ground truth at all

    exact = mask_ap(truth, [[Prediction("box", square(10, 10), 0.9)]], names)
    assert exact["AP"] == pytest.approx(1.0) and exact["AP50"] == pytest.approx(1.0)
    assert exact["AP75"] == pytest.approx(1.0)
    assert exact["per_class"] == {"box": pytest.approx(1.0), "disc": None}  # no ground truth: no AP, not 0

    # Shifted 4 px: intersection 16x20 = 320, union 400 + 400 - 320 = 480, IoU 2/3. It matches at the IoU
    # thresholds 0.50, 0.55, 0.60, 0.65 (precision 1 at every recall) and misses at 0.70 ... 0.95 (recall 0):
    # AP = 4/10 = 0.4, AP50 = 1, AP75 = 0.
    shifted = mask_ap(truth, [[Prediction("box", square(14, 10), 0.9)]], names)
    assert shifted["AP"] == pytest.approx(0.4) and shifted["AP50"] == pytest.approx(1.0)
    assert shifted["AP75"] == pytest.approx(0.0)

    # A false positive scoring above the match: ranked FP (precision 0/1) then TP (1/2, recall 1). The
    # interpolated precision is max precision at recall >= r, i.e. 0.5 at all 101 recall points, at every
    # IoU threshold: AP = AP50 = AP75 = 0.5. Scored below the match it comes after recall 1: AP 1.
    fp_first = [[Prediction("box", square(10, 10), 0.5), Prediction("box", square(60, 60), 0.9)]]
    assert mask_ap(truth, fp_first, names)["AP"] == pytest.approx(0.5)
    assert mask_ap(truth, fp_first, names)["AP75"] == pytest.approx(0.5)
    fp_last = [[Prediction("box", square(10, 10), 0.9), Prediction("box", square(60, 60), 0.5)]]
    assert mask_ap(truth, fp_last, names)["AP"] == pytest.approx(1.0)

    # The same false positive on a crowd (ignore) region is not counted: AP 1 again.
    crowd = [[Truth("box", square(10, 10)), Truth("box", square(55, 55, size=40), crowd=True)]]
    assert mask_ap(crowd, fp_first, names)["AP"] == pytest.approx(1.0)

    # Nothing predicted: 0 where there is ground truth, None where there is none.
    assert mask_ap(truth, [[]], names) == {"AP": 0.0, "AP50": 0.0, "AP75": 0.0, "per_class": {"box": 0.0, "disc": None}}
    with pytest.raises(ValueError, match="'cat' is not one of box, disc"):
        mask_ap([[Truth("cat", square(10, 10))]], [[]], names)


# ---------------------------------------------------------------- data sets written by the tests


def draw_shapes(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, list[list[float]]]:
    """A 96x128 BGR image with a filled rectangle and a filled ellipse; the rectangle's mask and the ellipse polygon."""
    image = rng.integers(0, 50, (96, 128, 3), dtype=np.uint8)
    x, y = int(rng.integers(4, 60)), int(rng.integers(4, 50))
    w, h = int(rng.integers(20, 40)), int(rng.integers(20, 36))
    image[y : y + h, x : x + w] = (40, 200, 60)
    rect = np.zeros((96, 128), bool)
    rect[y : y + h, x : x + w] = True
    centre = (int(rng.integers(80, 110)), int(rng.integers(25, 70)))
    axes = (int(rng.integers(10, 16)), int(rng.integers(12, 22)))
    polygon = cv2.ellipse2Poly(centre, axes, 0, 0, 360, 15)
    cv2.fillPoly(image, [polygon], (30, 40, 220))
    rect &= ~cv2.fillPoly(np.zeros((96, 128), np.uint8), [polygon], 1).astype(bool)  # the ellipse is on top
    return image, rect, [polygon.astype(float).ravel().tolist()]


def write_coco(folder: Path, n_images: int = 8, seed: int = 0) -> Path:
    """``folder/annotations.json`` + ``folder/images/*.png``: class "box" as RLE, class "disc" as polygons."""
    rng = np.random.default_rng(seed)
    (folder / "images").mkdir(parents=True)
    data = {"images": [], "annotations": [], "categories": [{"id": 1, "name": "box"}, {"id": 2, "name": "disc"}]}
    for i in range(n_images):
        image, rect, polygon = draw_shapes(rng)
        cv2.imwrite(str(folder / "images" / f"{i:03d}.png"), image)
        data["images"].append({"id": i + 1, "file_name": f"{i:03d}.png", "width": 128, "height": 96})
        data["annotations"] += [
            {"id": 2 * i + 1, "image_id": i + 1, "category_id": 1, "iscrowd": 0,
             "segmentation": CropMask.from_full(rect).to_rle(96, 128)},
            {"id": 2 * i + 2, "image_id": i + 1, "category_id": 2, "iscrowd": 0, "segmentation": polygon},
        ]
    path = folder / "annotations.json"
    path.write_text(json.dumps(data))
    return path


def write_mots_from(source: Path, folder: Path, frames: int, factor: int = 5) -> Path:
    """The first ``frames`` frames of a MOTS sequence, downscaled by ``factor`` (images and masks)."""
    (folder / "img1").mkdir(parents=True)
    records = [r for r in read_mots(source / "gt.txt") if r.frame <= frames]
    lines = []
    for frame in range(1, frames + 1):
        image = cv2.imread(str(source / "img1" / f"{frame:06d}.jpg"))
        height, width = image.shape[0] // factor, image.shape[1] // factor
        cv2.imwrite(str(folder / "img1" / f"{frame:06d}.jpg"), cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA))
        for record in (r for r in records if r.frame == frame):
            full = record.mask().to_full(record.height, record.width).view(np.uint8)
            small = CropMask.from_full(cv2.resize(full, (width, height), interpolation=cv2.INTER_NEAREST).astype(bool))
            if small.area:
                lines.append(format_mots_line(frame, record.obj_id, record.class_id, small.to_rle(height, width)))
    (folder / "gt.txt").write_text("\n".join(lines) + "\n")
    return folder


# ---------------------------------------------------------------- validation


def coco_problem(tmp_path: Path, change) -> str:
    """The one-line error for a valid 3-image COCO set after ``change(data)``."""
    path = write_coco(tmp_path / "coco", n_images=3)
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))
    with pytest.raises(InputError) as info:
        load_dataset(tmp_path / "coco")
    message = str(info.value)
    assert "\n" not in message and message.startswith(f"{path}: ")
    return message


def test_coco_layout_loads_polygons_rle_and_crowds(tmp_path):
    path = write_coco(tmp_path / "coco", n_images=3)
    data = json.loads(path.read_text())
    crowd = {"size": [96, 128], "counts": [96 * 2, 96 * 3, 96 * 123]}  # uncompressed RLE: columns 2..4
    data["annotations"].append({"id": 99, "image_id": 1, "category_id": 2, "iscrowd": 1, "segmentation": crowd})
    path.write_text(json.dumps(data))
    for given in (tmp_path / "coco", path):
        index = load_dataset(given)
        assert index.layout == "coco" and index.class_names == ["box", "disc"]
        assert index.instance_counts() == {"box": 3, "disc": 3}
    first = index.samples[0]
    assert first.image == tmp_path / "coco" / "images" / "000.png" and (first.height, first.width) == (96, 128)
    assert [i.class_name for i in first.instances] == ["box", "disc"]
    assert len(first.ignore) == 1 and first.ignore[0].full(96, 128)[:, 2:5].all()
    disc = first.instances[1].full(96, 128)
    assert disc.sum() > 300  # the ellipse polygon filled


def test_coco_validation_names_each_problem(tmp_path):
    def missing(data):
        data["images"][1]["file_name"] = "ghost.png"

    def out_of_bounds(data):
        data["annotations"][1]["segmentation"] = [[10, 10, 200, 10, 200, 50]]

    def empty_class(data):
        data["categories"].append({"id": 3, "name": "cat"})

    def duplicate(data):
        data["annotations"][3]["id"] = data["annotations"][0]["id"]

    def no_images(data):
        data["images"], data["annotations"] = [], []

    def wrong_size(data):
        data["annotations"][0]["segmentation"] = square(0, 0, height=48, width=64)

    assert f"missing image {tmp_path / 'a' / 'coco' / 'images' / 'ghost.png'}" in coco_problem(tmp_path / "a", missing)
    assert "annotation 2 (image 000.png): polygon out of image bounds (x 10..200, y 10..50 in a 128x96 image)" in (
        coco_problem(tmp_path / "c", out_of_bounds)
    )
    assert "class 'cat' (category 3) has no instances" in coco_problem(tmp_path / "d", empty_class)
    assert "annotation 1: duplicate instance id" in coco_problem(tmp_path / "e", duplicate)
    message = coco_problem(tmp_path / "f", no_images)
    assert "no images" in message and "class 'box' (category 1) has no instances" in message
    assert "mask size 64x48 does not match the image (128x96)" in coco_problem(tmp_path / "g", wrong_size)


def test_problems_are_reported_together_and_the_list_is_capped(tmp_path):
    def many(data):
        for image in data["images"]:
            image["file_name"] = "x" + image["file_name"]
        data["categories"] += [{"id": 3 + i, "name": f"c{i}"} for i in range(5)]

    message = coco_problem(tmp_path, many)
    assert message.count("missing image") == 3 and "8 problems in the training data" in message
    assert message.endswith("(and 3 more)")


def mots_folder(tmp_path: Path, lines: list[str], frames: int = 2) -> Path:
    folder = tmp_path / "seq"
    (folder / "img1").mkdir(parents=True)
    for frame in range(1, frames + 1):
        cv2.imwrite(str(folder / "img1" / f"{frame:06d}.jpg"), np.zeros((100, 100, 3), np.uint8))
    (folder / "gt.txt").write_text("\n".join(lines) + "\n")
    return folder


def test_mots_sequence_validation(tmp_path):
    def line(frame, obj_id, class_id, x, y, size=20, height=100, width=100):
        return format_mots_line(frame, obj_id, class_id, square(x, y, size, height, width))

    ok = mots_folder(tmp_path / "ok", [line(1, 2001, 2, 0, 0), line(1, 10000, 10, 50, 50), line(2, 1001, 1, 30, 30)])
    index = load_dataset(ok)
    assert index.layout == "mots-txt" and index.class_names == ["car", "pedestrian"]
    assert [s.frame for s in index.samples] == [1, 2] and len(index.samples[0].ignore) == 1
    renamed = load_dataset(ok, {1: "truck", 2: "person"})
    assert renamed.class_names == ["truck", "person"]

    cases = {
        "gt.txt:2: duplicate instance id 2001 in frame 1 (also line 1)": [line(1, 2001, 2, 0, 0), line(1, 2001, 2, 50, 50)],
        "gt.txt:2: object 2002 overlaps object 2001 (line 1) in frame 1 (MOTS masks must not overlap)": [
            line(1, 2001, 2, 0, 0), line(1, 2002, 2, 10, 10)],
        "gt.txt:1: mask is 50x40 but 000001.jpg is 100x100": [line(1, 2001, 2, 0, 0, 10, 40, 50)],
        "gt.txt:1: missing image for frame 3": [line(3, 2001, 2, 0, 0)],
        "gt.txt:1: class id 7 is not in the class mapping (1=car, 2=pedestrian;": [line(1, 7001, 7, 0, 0)],
    }
    for number, (expected, lines) in enumerate(cases.items()):
        with pytest.raises(InputError) as info:
            load_dataset(mots_folder(tmp_path / str(number), lines))
        assert expected in str(info.value)
    with pytest.raises(InputError, match=r"class 'bus' \(id 3\) has no instances"):
        load_dataset(ok, {1: "car", 2: "pedestrian", 3: "bus"})
    with pytest.raises(InputError, match="no images in"):
        load_dataset(mots_folder(tmp_path / "empty", [line(1, 2001, 2, 0, 0)], frames=0))
    with pytest.raises(InputError, match="no training data layout found"):
        load_dataset(ok / "img1")


def test_mots_png_id_maps(tmp_path):
    folder = tmp_path / "kitti"
    (folder / "img1").mkdir(parents=True)
    (folder / "instances").mkdir()
    ids = np.zeros((60, 80), np.uint16)
    ids[5:25, 5:30] = 1003  # car, instance 3
    ids[30:55, 40:60] = 2001  # pedestrian 1
    ids[0:5, 70:80] = 10000  # ignore region
    for frame in range(3):
        cv2.imwrite(str(folder / "img1" / f"{frame:06d}.png"), np.zeros((60, 80, 3), np.uint8))
        cv2.imwrite(str(folder / "instances" / f"{frame:06d}.png"), ids)
    index = load_dataset(folder)
    assert index.layout == "mots-png" and index.class_names == ["car", "pedestrian"]
    sample = index.samples[0]
    assert [(i.class_name, i.instance_id, i.mask.area) for i in sample.instances] == [("car", 1003, 500), ("pedestrian", 2001, 500)]
    assert len(sample.ignore) == 1
    cv2.imwrite(str(folder / "instances" / "000001.png"), np.zeros((30, 80), np.uint16))
    with pytest.raises(InputError, match=r"instances/000001.png: mask is 80x30 but 000001.png is 80x60"):
        load_dataset(folder)


def test_split_is_deterministic_and_keeps_sequence_blocks_whole(tmp_path):
    lines = [format_mots_line(f, 2001, 2, square(10, 10)) for f in range(1, 41)]
    index = load_dataset(mots_folder(tmp_path, lines, frames=40))
    train_part, val = split_samples(index, 0.2, seed=3)
    assert (len(train_part), len(val)) == (32, 8)
    frames = [s.frame for s in val]
    assert frames == sorted(frames) and len(frames) == 8
    runs = np.split(frames, np.flatnonzero(np.diff(frames) != 1) + 1)
    assert all(len(run) % 4 == 0 for run in runs)  # whole blocks of 40 / 10 frames
    assert [s.frame for s in split_samples(index, 0.2, seed=3)[1]] == frames
    assert split_samples(index, 0.0, seed=3) == (index.samples, [])
    with pytest.raises(InputError, match="too few to hold out"):
        split_samples(load_dataset(mots_folder(tmp_path / "one", lines[:1], frames=1)), 0.2, seed=0)


def test_dataset_items_and_augmentations(tmp_path):
    index = load_dataset(write_coco(tmp_path / "coco", n_images=2))
    plain = InstanceDataset(index.samples, index.class_names)
    image, target = plain[0]
    assert image.shape == (3, 96, 128) and image.dtype == torch.float32 and 0 <= image.min() and image.max() <= 1
    assert target["labels"].tolist() == [1, 2] and target["masks"].shape == (2, 96, 128)
    rect = CropMask.from_full(target["masks"][0].numpy().astype(bool))
    assert target["boxes"][0].tolist() == rect.box().tolist()  # tight, exclusive right/bottom

    torch.manual_seed(0)
    augmented = InstanceDataset(index.samples, index.class_names, build_augmentation(True, 0.2, 0.3, 10))
    for _ in range(5):
        image, target = augmented[0]
        assert image.shape == (3, 96, 128) and target["masks"].shape[1:] == (96, 128)
        for mask, box in zip(target["masks"], target["boxes"]):
            assert CropMask.from_full(mask.numpy().astype(bool)).box().tolist() == box.tolist()
        assert set(target["masks"].unique().tolist()) <= {0, 1}  # nearest-neighbour masks stay binary


def test_learning_rate_schedule():
    assert lr_factor(0, 100, 10, "cosine") == pytest.approx(0.001)
    assert lr_factor(5, 100, 10, "cosine") == pytest.approx((0.001 + 0.999 * 0.5) * 0.5 * (1 + np.cos(np.pi * 0.05)))
    assert lr_factor(50, 100, 10, "cosine") == pytest.approx(0.5)
    assert [lr_factor(i, 100, 0, "step") for i in (0, 69, 70, 90)] == pytest.approx([1, 1, 0.1, 0.01])


# ---------------------------------------------------------------- training


def losses_of(out: Path) -> list[float]:
    return [r["loss"] for r in map(json.loads, (out / "metrics.jsonl").read_text().splitlines()) if r["type"] == "train"]


def assert_loss_fell(out: Path) -> None:
    """The mean loss of the last 3 iterations is at least 5% below that of the first 3.

    Seed 0 (the tests') gives 20-30% on both data sets; seeds 1-3, tried while
    writing this, at least 7%: the margin is not one lucky draw. The total still
    moves slowly because RPN objectness starts at ln 2 and barely falls in 9 steps.
    """
    losses = losses_of(out)
    first, last = np.mean(losses[:3]), np.mean(losses[-3:])
    assert last < 0.95 * first, losses


def assert_model_segments(out: Path, class_names: list[str], image: np.ndarray) -> None:
    """model.pth loads in the segmenter that ``maskwatch run --weights`` uses, names and all, and predicts."""
    seg = MaskRCNNSegmenter(MaskRCNNConfig(weights=str(out / "model.pth"), min_size=96, max_size=128,
                                           score_threshold=0.0, max_detections=10))
    assert seg.class_names == ["__background__", *class_names]
    (det,) = seg.segment([image])
    assert det.image_size == image.shape[:2] and len(det) > 0
    assert set(det.class_names) <= set(class_names)


@pytest.fixture(scope="module")
def shapes_run(tmp_path_factory):
    """Three epochs on 8 generated images (6 train, 2 val): 9 iterations."""
    root = tmp_path_factory.mktemp("shapes")
    write_coco(root / "data", n_images=8)
    config = TrainConfig(**SMALL, epochs=3, val_fraction=0.25)
    return root / "data", root / "out", config, train(root / "data", root / "out", config)


def test_training_on_generated_coco_reduces_loss_and_writes_a_loadable_model(shapes_run):
    data, out, _, result = shapes_run
    assert (result.epochs, result.iterations, result.train_images, result.val_images) == (3, 9, 6, 2)
    assert result.pretrained is False and result.class_names == ["box", "disc"]
    assert_loss_fell(out)
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    epochs = [r for r in records if r["type"] == "epoch"]
    assert [r["epoch"] for r in epochs] == [1, 2, 3] and epochs[-1]["iteration"] == 9
    assert set(epochs[-1]["per_class_AP"]) == {"box", "disc"} and 0 <= epochs[-1]["AP"] <= 1
    first = records[0]
    assert first["type"] == "train" and first["lr"] == pytest.approx(0.005)
    assert {"loss_classifier", "loss_box_reg", "loss_mask", "loss_objectness", "loss_rpn_box_reg"} <= first.keys()
    saved = torch.load(out / "model.pth", weights_only=True)
    assert set(saved) == {"model", "class_names", "version"} and saved["class_names"] == ["box", "disc"]
    assert_model_segments(out, ["box", "disc"], cv2.imread(str(data / "images" / "000.png")))


def test_a_checkpoint_can_start_training_for_the_same_or_other_classes(shapes_run):
    _, out, config, _ = shapes_run
    saved = torch.load(out / "model.pth", weights_only=True)["model"]
    start = config.model_copy(update={"weights": str(out / "model.pth")})
    same, version, pretrained = build_training_model(start, ["box", "disc"])
    assert (version, pretrained) == ("v2", True)
    assert all(torch.equal(value, saved[key]) for key, value in same.state_dict().items())  # heads kept
    other, _, _ = build_training_model(start, ["pedestrian"])
    state = other.state_dict()
    assert state["roi_heads.box_predictor.cls_score.weight"].shape[0] == 2  # background + pedestrian
    assert state["roi_heads.mask_predictor.mask_fcn_logits.weight"].shape[0] == 2
    assert torch.equal(state["backbone.body.layer3.0.conv1.weight"], saved["backbone.body.layer3.0.conv1.weight"])


FEATURES = ("backbone.body.layer3.0.conv1.weight", "backbone.fpn.layer_blocks.0.0.weight", "rpn.head.conv.0.0.weight",
            "roi_heads.box_head.0.0.weight", "roi_heads.mask_head.0.0.weight")


def test_default_weights_start_from_torchvisions_cached_coco_file(coco_cached):
    """weights: DEFAULT goes through torchvision's weights API; everything but the class-specific predictors is kept."""
    model, version, pretrained = build_training_model(TrainConfig(**{**SMALL, "weights": "DEFAULT"}), ["box", "disc"])
    assert (version, pretrained) == ("v2", True)
    state = model.state_dict()
    assert all(torch.equal(state[key], coco_cached[key]) for key in FEATURES)
    assert coco_cached["roi_heads.box_predictor.cls_score.weight"].shape[0] == 91
    assert state["roi_heads.box_predictor.cls_score.weight"].shape[0] == 3  # background, box, disc
    assert state["roi_heads.box_predictor.bbox_pred.weight"].shape[0] == 12
    assert state["roi_heads.mask_predictor.mask_fcn_logits.weight"].shape[0] == 3


def test_default_weights_fall_back_to_scratch_with_a_warning_when_they_cannot_be_fetched(monkeypatch, caplog):
    def offline(*args, **kwargs):
        raise OSError("<urlopen error [Errno -3] Temporary failure in name resolution>")

    monkeypatch.setattr(MaskRCNN_ResNet50_FPN_V2_Weights, "get_state_dict", offline)
    with caplog.at_level(logging.WARNING, logger="segmenter.training"):
        model, version, pretrained = build_training_model(TrainConfig(**{**SMALL, "weights": "DEFAULT"}), ["box"])
    assert (version, pretrained) == ("v2", False)
    assert model.state_dict()["roi_heads.box_predictor.cls_score.weight"].shape[0] == 2
    (record,) = caplog.records
    assert "Temporary failure in name resolution" in record.message and "from scratch" in record.message
    assert "weights=path/to/maskrcnn_resnet50_fpn_v2_coco.pth" in record.message


def test_resume_continues_from_the_saved_epoch(shapes_run):
    data, out, config, _ = shapes_run
    before = (out / "metrics.jsonl").read_text()
    with pytest.raises(InputError, match="already holds a training run"):
        train(data, out, config)
    console = Console(file=io.StringIO(), width=200)
    summary = train_command(data, out, config.model_copy(update={"epochs": 4, "resume": out}), console)
    assert (summary["epochs"], summary["iterations"], summary["class_names"]) == (4, 12, ["box", "disc"])
    assert summary["model"] == str(out / "model.pth") and set(summary["per_class"]) == {"box", "disc"}
    assert json.loads(json.dumps(summary)) == summary  # JSON-able, for --json output
    printed = console.file.getvalue()
    assert "resuming after epoch 3" in printed and "epoch 4/4: train loss" in printed and "val mask AP" in printed
    after = (out / "metrics.jsonl").read_text()
    assert after.startswith(before)  # appended to, not restarted
    new = [json.loads(line) for line in after[len(before):].splitlines()]
    assert [r["iteration"] for r in new if r["type"] == "train"] == [10, 11, 12]
    assert [r["epoch"] for r in new if r["type"] == "epoch"] == [4]
    last = torch.load(out / "last.pth", weights_only=True)
    assert (last["epoch"], last["iteration"], last["scheduler"]["last_epoch"]) == (4, 12, 12)
    with pytest.raises(InputError, match="was trained for classes"):
        other = write_coco(out.parent / "renamed", n_images=8)
        data_changed = json.loads(other.read_text())
        data_changed["categories"][1]["name"] = "ball"
        other.write_text(json.dumps(data_changed))
        train(other, out, config.model_copy(update={"epochs": 5, "resume": out / "last.pth"}))


def test_training_on_a_downscaled_mots_sequence(shared_data, tmp_path):
    """Eight frames of MOTS20-05 at 128x96: pedestrians, with the ignore regions as crowds in the evaluation."""
    data = write_mots_from(shared_data / "mots20_05", tmp_path / "seq", frames=8)
    out = tmp_path / "out"
    result = train(data, out, TrainConfig(**SMALL, epochs=3, val_fraction=0.25))  # 2 of 8 one-frame blocks held out
    assert result.class_names == ["pedestrian"] and (result.train_images, result.val_images) == (6, 2)
    assert result.iterations == 9 and result.metrics is not None and set(result.metrics["per_class"]) == {"pedestrian"}
    assert_loss_fell(out)
    assert_model_segments(out, ["pedestrian"], cv2.imread(str(data / "img1" / "000001.jpg")))
