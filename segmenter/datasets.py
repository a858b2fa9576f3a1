"""Labelled data for ``maskwatch train``: read, validated as a whole, then served to Mask R-CNN.

Two layouts become one in-memory index of samples (image path, size, instances
with a mask, class name and id):

- COCO instance segmentation: a JSON file (polygons or RLE; ``iscrowd``
  annotations become ignore regions) and its images folder;
- a MOTS sequence: ``img1/`` frames plus ``gt/gt.txt`` or ``gt.txt``
  (``frame obj_id class_id img_h img_w rle``) or ``instances/*.png`` id maps
  (KITTI MOTS: pixel = class_id * 1000 + instance; 10000 = ignore region).

Everything is checked before the first training step, because a bad polygon
found in epoch 7 wastes hours of GPU time: all problems are collected and
reported as one :class:`InputError` line naming the first few (file:line,
annotation id or image name). Masks stay compressed (RLE) until a sample is
loaded, so a large index costs little memory.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from PIL import Image as PILImage
from pycocotools import mask as mask_utils
from torchvision import tv_tensors
from torchvision.ops import masks_to_boxes
from torchvision.transforms import v2

from common import InputError
from segmenter.masks import CropMask
from segmenter.motsio import check_rle, read_mots

logger = logging.getLogger(__name__)

MOTS_CLASSES = {1: "car", 2: "pedestrian"}  # MOTS / KITTI MOTS class ids
IGNORE_ID = 10000  # MOTS obj_id (and KITTI MOTS pixel value) of an ignore region, class id 10
IGNORE_CLASS = 10
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp"}
POLYGON_SLACK = 1.0  # px a polygon vertex may lie outside the image (annotation tools round outwards)
SPLIT_BLOCKS = 10  # a sequence is cut into this many contiguous blocks for the train/val split
LISTED = 5  # problems named in the error line


@dataclass(frozen=True, slots=True)
class Instance:
    """One labelled object; ``class_name`` None only for an ignore region that covers every class."""

    mask: CropMask | dict  # a crop mask, or a COCO RLE {"size": [h, w], "counts"} kept compressed
    class_name: str | None
    instance_id: int

    def full(self, height: int, width: int) -> np.ndarray:
        """The (height, width) boolean mask."""
        if isinstance(self.mask, CropMask):
            return self.mask.to_full(height, width)
        return mask_utils.decode(self.mask).astype(bool)

    def rle(self, height: int, width: int) -> dict:
        return self.mask.to_rle(height, width) if isinstance(self.mask, CropMask) else self.mask


@dataclass(frozen=True, slots=True)
class Sample:
    """One training image with its objects and its ignore regions (crowds, MOTS id 10000)."""

    image: Path
    height: int
    width: int
    instances: tuple[Instance, ...]
    ignore: tuple[Instance, ...] = ()
    frame: int | None = None  # frame number within a sequence; None for independent images


@dataclass(frozen=True)
class DatasetIndex:
    """A validated data set: ``class_names[i]`` is model label ``i + 1`` (0 is the background)."""

    source: Path
    layout: str  # coco, mots-txt or mots-png
    class_names: list[str]
    samples: list[Sample]

    def instance_counts(self) -> dict[str, int]:
        counts = Counter(inst.class_name for s in self.samples for inst in s.instances)
        return {name: counts[name] for name in self.class_names}


class Problems:
    """Validation problems, collected so the operator sees them together rather than one per run."""

    def __init__(self, source: Path) -> None:
        self.source = source
        self.items: list[str] = []

    def add(self, message: str) -> None:
        self.items.append(message)

    def check(self) -> None:
        """Raise one InputError naming the first few problems, if there are any."""
        if not self.items:
            return
        listed = "; ".join(self.items[:LISTED])
        more = f" (and {len(self.items) - LISTED} more)" if len(self.items) > LISTED else ""
        count = f"{len(self.items)} problem{'s' if len(self.items) > 1 else ''}"
        raise InputError(f"{self.source}: {count} in the training data: {listed}{more}")


def load_dataset(path: Path, classes: dict[int, str] | None = None) -> DatasetIndex:
    """Whichever layout ``path`` holds: a COCO JSON file, a folder with ``annotations.json``, or a MOTS sequence.

    ``classes`` maps MOTS class ids to names (default 1 car, 2 pedestrian, keeping
    the classes that occur); COCO files name their own categories.
    """
    path = Path(path)
    if path.is_file() and path.suffix.lower() == ".json":
        return load_coco(path)
    if not path.is_dir():
        raise InputError(f"training data not found: {path} (give a COCO .json file or a dataset folder)")
    if (path / "annotations.json").is_file():
        return load_coco(path / "annotations.json")
    images = next((path / name for name in ("img1", "images") if (path / name).is_dir()), None)
    gt = next((p for p in (path / "gt" / "gt.txt", path / "gt.txt") if p.is_file()), None)
    if images is not None and gt is not None:
        return load_mots_txt(gt, images, classes)
    if images is not None and (path / "instances").is_dir():
        return load_mots_png(path / "instances", images, classes)
    raise InputError(
        f"{path}: no training data layout found: expected annotations.json (+ images/), "
        "or a MOTS sequence: img1/ with gt/gt.txt, gt.txt or instances/*.png"
    )


def load_coco(path: Path, images_dir: Path | None = None) -> DatasetIndex:
    """A COCO instance-segmentation file; images are looked up in ``images/`` beside it, else beside it.

    A file in an ``annotations/`` folder (as CVAT exports COCO 1.0: ``annotations/instances_default.json``
    with ``images/`` at the top) finds the ``images/`` beside that folder too.
    """
    if images_dir is None:
        near = [path.parent / "images"] + ([path.parent.parent / "images"] if path.parent.name == "annotations" else [])
        images_dir = next((folder for folder in near if folder.is_dir()), path.parent)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"{path}: cannot read COCO JSON ({exc})") from None
    for key in ("images", "annotations", "categories"):
        if not isinstance(data, dict) or not isinstance(data.get(key), list):
            raise InputError(f"{path}: not a COCO instance-segmentation file (no {key!r} list)")
    problems = Problems(path)
    categories = _coco_categories(data["categories"], problems)
    images, usable = _coco_images(data["images"], images_dir, problems)
    instances: dict[int, list[Instance]] = {image_id: [] for image_id in images}
    ignore: dict[int, list[Instance]] = {image_id: [] for image_id in images}
    seen: set = set()
    empty = 0
    for number, ann in enumerate(data["annotations"]):
        if not isinstance(ann, dict):
            problems.add(f"annotation #{number} is not an object")
            continue
        ann_id = ann.get("id")
        where = f"annotation {ann_id}"
        if not isinstance(ann_id, int):
            problems.add(f"annotation #{number} has no integer id")
            continue
        if ann_id in seen:
            problems.add(f"{where}: duplicate instance id (annotation ids must be unique)")
            continue
        seen.add(ann_id)
        if ann.get("image_id") not in images:
            problems.add(f"{where}: unknown image_id {ann.get('image_id')!r}")
            continue
        image_id = ann["image_id"]
        file, height, width = images[image_id]
        where = f"{where} (image {file.name})"
        name = categories.get(ann.get("category_id"))
        if name is None:
            problems.add(f"{where}: unknown category_id {ann.get('category_id')!r}")
            continue
        try:
            rle = coco_rle(ann.get("segmentation"), height, width)
        except ValueError as exc:
            problems.add(f"{where}: {exc}")
            continue
        if ann.get("iscrowd"):
            ignore[image_id].append(Instance(rle, name, ann_id))
        elif mask_utils.area(rle) == 0:
            empty += 1
        else:
            instances[image_id].append(Instance(rle, name, ann_id))
    if empty:
        logger.warning("%s: %d annotations with an empty mask skipped", path, empty)
    samples = [
        Sample(file, height, width, tuple(instances[image_id]), tuple(ignore[image_id]))
        for image_id, (file, height, width) in images.items()
        if image_id in usable
    ]
    names = list(dict.fromkeys(categories.values()))
    counts = Counter(inst.class_name for found in instances.values() for inst in found)  # missing images too
    _check_classes(names, counts, problems, lambda name: f"class {name!r} (category {_ids_of(categories, name)})")
    problems.check()
    return DatasetIndex(path, "coco", names, samples)


def coco_rle(segmentation: object, height: int, width: int) -> dict:
    """A COCO segmentation (polygons, RLE or compressed RLE) as one RLE; ValueError says what is wrong."""
    if isinstance(segmentation, list) and segmentation:
        for polygon in segmentation:
            if (
                not isinstance(polygon, list)
                or len(polygon) < 6
                or len(polygon) % 2
                or not all(isinstance(v, int | float) for v in polygon)
            ):
                raise ValueError("each polygon must be a flat list of at least 3 x, y pairs")
            xs, ys = polygon[0::2], polygon[1::2]
            if min(xs) < -POLYGON_SLACK or min(ys) < -POLYGON_SLACK or max(xs) > width + POLYGON_SLACK or max(
                ys
            ) > height + POLYGON_SLACK:
                raise ValueError(
                    f"polygon out of image bounds (x {min(xs):g}..{max(xs):g}, y {min(ys):g}..{max(ys):g} "
                    f"in a {width}x{height} image)"
                )
        return mask_utils.merge(mask_utils.frPyObjects(segmentation, height, width))
    if isinstance(segmentation, dict) and "counts" in segmentation:
        size = segmentation.get("size")
        if not (isinstance(size, list) and len(size) == 2):
            raise ValueError("RLE needs a size [height, width]")
        if list(size) != [height, width]:
            raise ValueError(f"mask size {size[1]}x{size[0]} does not match the image ({width}x{height})")
        counts = segmentation["counts"]
        if isinstance(counts, list):  # uncompressed RLE, as COCO writes crowd regions
            if sum(counts) != height * width:
                raise ValueError(f"RLE covers {sum(counts)} pixels, expected {height * width}")
            return mask_utils.frPyObjects(segmentation, height, width)
        if not isinstance(counts, str):
            raise ValueError("RLE counts must be a list or a string")
        check_rle(height, width, counts)
        return {"size": [height, width], "counts": counts}
    raise ValueError("no segmentation (instance segmentation needs polygons or an RLE mask)")


def _coco_categories(entries: list, problems: Problems) -> dict[int, str]:
    categories: dict[int, str] = {}
    for entry in entries:
        cat_id, name = (entry.get("id"), entry.get("name")) if isinstance(entry, dict) else (None, None)
        if not isinstance(cat_id, int) or not isinstance(name, str) or not name:
            problems.add(f"category {entry!r} needs an integer id and a name")
        elif cat_id in categories:
            problems.add(f"category id {cat_id} is used twice")
        else:
            categories[cat_id] = name
    if not entries:
        problems.add("no categories")
    return categories


def _coco_images(
    entries: list, images_dir: Path, problems: Problems
) -> tuple[dict[int, tuple[Path, int, int]], set[int]]:
    """``({image id: (file, height, width)}, ids of the usable ones)``.

    An image that is missing or of another size than stated is reported here and
    its annotations are still checked (against the stated size), so a missing file
    is not also reported as unknown image ids and empty classes.
    """
    images: dict[int, tuple[Path, int, int]] = {}
    usable: set[int] = set()
    for number, entry in enumerate(entries):
        entry = entry if isinstance(entry, dict) else {}
        image_id, file_name, width, height = (entry.get(key) for key in ("id", "file_name", "width", "height"))
        if not isinstance(file_name, str) or not all(isinstance(v, int) for v in (image_id, width, height)):
            problems.add(f"image #{number} needs an integer id, a file_name, width and height")
            continue
        if image_id in images:
            problems.add(f"image id {image_id} is used twice")
            continue
        file = images_dir / file_name
        images[image_id] = (file, height, width)
        size = _image_size(file, problems)
        if size is not None and size != (height, width):
            problems.add(f"image {file_name} is {size[1]}x{size[0]} but the JSON says {width}x{height}")
        elif size is not None:
            usable.add(image_id)
    if not entries:
        problems.add("no images")
    return images, usable


def load_mots_txt(gt: Path, images_dir: Path, classes: dict[int, str] | None = None) -> DatasetIndex:
    """A MOTS sequence labelled by a txt file; frame numbers match image names (``000001.jpg`` is frame 1)."""
    problems = Problems(gt.parent if gt.parent.name != "gt" else gt.parent.parent)
    frames = _frames(images_dir, problems)
    mapping = classes or MOTS_CLASSES
    objects: dict[int, list[tuple[int, Instance]]] = {frame: [] for frame in frames}  # (line, instance)
    seen: dict[tuple[int, int], int] = {}
    for line, record in zip(_line_numbers(gt), read_mots(gt)):
        where = f"{gt.name}:{line}"
        if record.frame not in frames:
            problems.add(f"{where}: missing image for frame {record.frame} in {images_dir}")
            continue
        image, height, width = frames[record.frame]
        if (record.height, record.width) != (height, width):
            problems.add(f"{where}: mask is {record.width}x{record.height} but {image.name} is {width}x{height}")
            continue
        key = (record.frame, record.obj_id)
        if key in seen:
            problems.add(f"{where}: duplicate instance id {record.obj_id} in frame {record.frame} (also line {seen[key]})")
            continue
        seen[key] = line
        is_ignore = record.obj_id == IGNORE_ID or record.class_id == IGNORE_CLASS
        if not is_ignore and record.class_id not in mapping:
            problems.add(f"{where}: class id {record.class_id} is not in the class mapping {_mapping_text(mapping)}")
            continue
        name = None if is_ignore else mapping[record.class_id]
        rle = {"size": [height, width], "counts": record.rle}
        objects[record.frame].append((line, Instance(rle, name, record.obj_id)))
    for frame, found in objects.items():
        _check_overlaps(frame, found, gt.name, problems)
    samples = [
        Sample(image, height, width, tuple(i for _, i in objects[frame] if i.class_name is not None),
               tuple(i for _, i in objects[frame] if i.class_name is None), frame)
        for frame, (image, height, width) in sorted(frames.items())
    ]
    return _sequence_index(problems, "mots-txt", samples, mapping, classes is not None)


def load_mots_png(instances_dir: Path, images_dir: Path, classes: dict[int, str] | None = None) -> DatasetIndex:
    """A sequence labelled by id maps (``instances/<image stem>.png``, 16-bit, class = value // 1000)."""
    problems = Problems(instances_dir.parent)
    frames = _frames(images_dir, problems)
    mapping = classes or MOTS_CLASSES
    stems = {image.stem for image, _, _ in frames.values()}
    for png in sorted(instances_dir.glob("*.png")):
        if png.stem not in stems:
            problems.add(f"{instances_dir.name}/{png.name}: missing image {png.stem}.* in {images_dir}")
    samples = []
    for frame, (image, height, width) in sorted(frames.items()):
        png = instances_dir / f"{image.stem}.png"
        ids = cv2.imread(str(png), cv2.IMREAD_UNCHANGED) if png.is_file() else None
        where = f"{instances_dir.name}/{png.name}"
        if ids is None or ids.ndim != 2:
            problems.add(f"{where}: {'not a single-channel id map' if ids is not None else 'missing or unreadable'}")
            continue
        if ids.shape != (height, width):
            problems.add(f"{where}: mask is {ids.shape[1]}x{ids.shape[0]} but {image.name} is {width}x{height}")
            continue
        objects, ignore = [], []
        for value in np.unique(ids[ids > 0]).tolist():
            mask = CropMask.from_full(ids == value)
            if value == IGNORE_ID:
                ignore.append(Instance(mask, None, value))
            elif value // 1000 in mapping:
                objects.append(Instance(mask, mapping[value // 1000], value))
            else:
                problems.add(f"{where}: instance {value} has class id {value // 1000}, not in the class mapping "
                             f"{_mapping_text(mapping)}")
        samples.append(Sample(image, height, width, tuple(objects), tuple(ignore), frame))
    return _sequence_index(problems, "mots-png", samples, mapping, classes is not None)


def _sequence_index(
    problems: Problems, layout: str, samples: list[Sample], mapping: dict[int, str], explicit: bool
) -> DatasetIndex:
    """Classes of a sequence: every name of an explicit mapping (each must occur), else those that occur."""
    counts = Counter(inst.class_name for s in samples for inst in s.instances)
    names = [n for n in dict.fromkeys(mapping[k] for k in sorted(mapping)) if explicit or counts[n]]
    if not names and samples:
        problems.add(f"no labelled instances of any class in the mapping {_mapping_text(mapping)}")
    _check_classes(names, counts, problems, lambda name: f"class {name!r} (id {_ids_of(mapping, name)})")
    problems.check()
    return DatasetIndex(problems.source, layout, names, samples)


def _frames(images_dir: Path, problems: Problems) -> dict[int, tuple[Path, int, int]]:
    """``{frame number: (image, height, width)}`` from names like ``000001.jpg``."""
    frames: dict[int, tuple[Path, int, int]] = {}
    files = sorted(p for p in images_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        problems.add(f"no images in {images_dir} ({', '.join(sorted(IMAGE_SUFFIXES))})")
    for file in files:
        if not file.stem.isdigit():
            problems.add(f"image {file.name}: the name must be the frame number (e.g. 000001.jpg)")
            continue
        if int(file.stem) in frames:
            problems.add(f"image {file.name}: frame {int(file.stem)} has two images")
            continue
        size = _image_size(file, problems)
        if size is not None:
            frames[int(file.stem)] = (file, *size)
    return frames


def _check_overlaps(frame: int, found: list[tuple[int, Instance]], source: str, problems: Problems) -> None:
    """MOTS assigns each pixel to at most one object (ignore regions included): overlapping masks are label errors."""
    if len(found) < 2:
        return
    rles = [inst.mask for _, inst in found]
    overlap = np.asarray(mask_utils.iou(rles, rles, [0] * len(rles))) > 0
    for i, j in zip(*np.nonzero(np.triu(overlap, k=1))):
        (line_a, a), (line_b, b) = found[i], found[j]
        problems.add(
            f"{source}:{line_b}: object {b.instance_id} overlaps object {a.instance_id} (line {line_a}) in frame {frame} "
            "(MOTS masks must not overlap)"
        )


def _check_classes(names: list[str], counts: Counter, problems: Problems, describe: Callable[[str], str]) -> None:
    """A declared class without instances cannot be learnt and would only dilute AP: an input error."""
    for name in names:
        if counts[name] == 0:
            problems.add(f"{describe(name)} has no instances")


def _image_size(file: Path, problems: Problems) -> tuple[int, int] | None:
    """``(height, width)`` from the image header (no decoding), or None after noting why not."""
    if not file.is_file():
        problems.add(f"missing image {file}")
        return None
    try:
        with PILImage.open(file) as image:
            width, height = image.size
    except (OSError, ValueError) as exc:
        problems.add(f"image {file.name} cannot be read ({exc})")
        return None
    return height, width


def _line_numbers(path: Path) -> list[int]:
    """Numbers of the non-blank lines: the lines :func:`read_mots` returns records for, in order."""
    with path.open("r", encoding="ascii", errors="replace", newline="\n") as handle:
        return [number for number, line in enumerate(handle, start=1) if line.strip()]


def _ids_of(mapping: dict[int, str], name: str) -> str:
    return ", ".join(str(k) for k, v in sorted(mapping.items()) if v == name)


def _mapping_text(mapping: dict[int, str]) -> str:
    return f"({', '.join(f'{k}={v}' for k, v in sorted(mapping.items()))}; set classes, e.g. --classes 1=car,2=pedestrian)"


def parse_classes(text: str) -> dict[int, str]:
    """``"1=car,2=pedestrian"`` → ``{1: "car", 2: "pedestrian"}`` (the ``--classes`` option)."""
    mapping: dict[int, str] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        key, _, name = item.partition("=")
        if not key.strip().isdigit() or not name.strip():
            raise InputError(f"classes: expected id=name pairs like 1=car,2=pedestrian, got {item!r}")
        mapping[int(key)] = name.strip()
    if not mapping:
        raise InputError("classes: no id=name pairs given")
    return mapping


def split_samples(index: DatasetIndex, val_fraction: float, seed: int) -> tuple[list[Sample], list[Sample]]:
    """``(train, val)``, the same for the same seed.

    Independent images are drawn one by one. A sequence is cut into
    ``SPLIT_BLOCKS`` contiguous blocks of frames and whole blocks go to val:
    neighbouring video frames are near-duplicates, so a frame-by-frame split
    would score the model on copies of its training images.
    """
    samples = index.samples
    if val_fraction <= 0:
        return list(samples), []
    if index.layout == "coco":
        blocks = [[i] for i in range(len(samples))]
    else:
        blocks = [b.tolist() for b in np.array_split(np.arange(len(samples)), min(SPLIT_BLOCKS, len(samples)))]
    n_val = max(1, round(val_fraction * len(blocks)))
    if n_val >= len(blocks):
        raise InputError(
            f"{index.source}: {len(samples)} images are too few to hold out val_fraction {val_fraction} "
            "(label more images or set the validation fraction to 0)"
        )
    chosen = set(np.random.default_rng(seed).choice(len(blocks), n_val, replace=False).tolist())
    val = {i for b, block in enumerate(blocks) if b in chosen for i in block}
    return [s for i, s in enumerate(samples) if i not in val], [s for i, s in enumerate(samples) if i in val]


def build_augmentation(flip: bool, scale_jitter: float, color_jitter: float, rotation: float) -> v2.Transform | None:
    """The training augmentations, or None when all are off.

    Scale jitter is a zoom of the image content (the model resizes every input to
    ``min_size`` anyway, so resizing the whole image would be undone); zoom,
    rotation and flip move image and masks together, masks with nearest
    neighbour. Colour jitter (brightness, contrast, saturation) touches the image
    only; hue is left alone, as it costs more than the rest together on a CPU
    worker and fixed cameras do not shift hue. Images are float [0, 1] by then.
    """
    steps: list[v2.Transform] = []
    if flip:
        steps.append(v2.RandomHorizontalFlip(0.5))
    if scale_jitter > 0 or rotation > 0:
        steps.append(
            v2.RandomAffine(
                degrees=rotation,
                scale=(1 - scale_jitter, 1 + scale_jitter) if scale_jitter > 0 else None,
                interpolation=v2.InterpolationMode.BILINEAR,
                fill={tv_tensors.Image: 0.45, tv_tensors.Mask: 0},  # grey borders where the zoom-out uncovers
            )
        )
    if color_jitter > 0:
        steps.append(v2.ColorJitter(brightness=color_jitter, contrast=color_jitter, saturation=color_jitter))
    return v2.Compose(steps) if steps else None


class InstanceDataset(torch.utils.data.Dataset):
    """Samples as ``(image, target)`` for torchvision's Mask R-CNN.

    ``image`` is RGB float (3, H, W) in [0, 1]; ``target`` has ``boxes`` (N, 4)
    xyxy float, ``labels`` (N,) int64 and ``masks`` (N, H, W) uint8. Boxes are
    derived from the masks after augmentation (tight even after a rotation,
    which would inflate a rotated box), and objects pushed out of the image are
    dropped.
    """

    def __init__(self, samples: list[Sample], class_names: list[str], transform: v2.Transform | None = None) -> None:
        self.samples = samples
        self.labels = {name: label for label, name in enumerate(class_names, start=1)}
        self.transform = transform

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        sample = self.samples[index]
        image = tv_tensors.Image(load_image(sample).float().div_(255))  # float: colour jitter runs 2x faster
        full = [inst.full(sample.height, sample.width) for inst in sample.instances]
        stack = np.stack(full) if full else np.zeros((0, sample.height, sample.width), dtype=bool)
        masks = tv_tensors.Mask(torch.from_numpy(stack.view(np.uint8)))
        labels = torch.tensor([self.labels[inst.class_name] for inst in sample.instances], dtype=torch.int64)
        if self.transform is not None:
            image, masks = self.transform(image, masks)
        keep = masks.flatten(1).bool().any(1)
        masks, labels = masks[keep].as_subclass(torch.Tensor), labels[keep]
        boxes = masks_to_boxes(masks) if len(masks) else torch.zeros((0, 4))
        boxes[:, 2:] += 1  # masks_to_boxes gives the last pixel; boxes end one past it
        target = {"boxes": boxes, "labels": labels, "masks": masks, "image_id": torch.tensor(index)}
        return image.as_subclass(torch.Tensor), target


def load_image(sample: Sample) -> torch.Tensor:
    """RGB uint8 (3, H, W) as stored (EXIF orientation ignored, like the header size validated against)."""
    image = cv2.imread(str(sample.image), cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)
    if image is None:  # an image changed since validation: an input error, not a crash in a worker
        raise InputError(f"cannot read image {sample.image}")
    if image.shape[:2] != (sample.height, sample.width):
        raise InputError(f"image {sample.image} changed size since it was validated")
    return torch.from_numpy(np.ascontiguousarray(image[..., ::-1])).permute(2, 0, 1)


def collate(batch: Iterable[tuple[torch.Tensor, dict]]) -> tuple[list[torch.Tensor], list[dict]]:
    """Images of different sizes stay a list: Mask R-CNN batches them itself."""
    images, targets = zip(*batch)
    return list(images), list(targets)
