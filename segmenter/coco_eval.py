"""Mask AP (COCO ``segm``) of predictions against ground truth, computed in memory.

pycocotools' COCOeval is the reference every operator compares against, so the
numbers come from it rather than from a re-implementation; only the plumbing
(building the two COCO objects from lists, no JSON files) and the per-class
reading of its precision table are done here. Classes without ground truth have
no AP (``None``, not NaN, so the result serialises to JSON) and, as in COCO, do
not count in the mean.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval


@dataclass(frozen=True, slots=True)
class Truth:
    """One ground-truth instance; ``crowd`` marks an ignore region (detections on it are not false positives)."""

    class_name: str
    rle: dict  # COCO RLE: {"size": [h, w], "counts": str | bytes}
    crowd: bool = False


@dataclass(frozen=True, slots=True)
class Prediction:
    """One predicted instance with its confidence."""

    class_name: str
    rle: dict
    score: float


def mask_ap(
    ground_truth: Sequence[Sequence[Truth]],
    predictions: Sequence[Sequence[Prediction]],
    class_names: Sequence[str],
) -> dict:
    """``{"AP", "AP50", "AP75", "per_class": {name: AP}}`` over images given as parallel lists.

    ``ground_truth[i]`` and ``predictions[i]`` belong to image ``i``. AP is COCO's:
    mean over IoU thresholds 0.50:0.05:0.95 of the 101-point interpolated
    precision, all areas, at most 100 detections per image. A value is ``None``
    where there is nothing to measure (no ground truth for that class, or at all).
    """
    if len(ground_truth) != len(predictions):
        raise ValueError(f"{len(ground_truth)} images of ground truth but {len(predictions)} of predictions")
    category = {name: label for label, name in enumerate(class_names, start=1)}
    images, annotations = [], []
    for image_id, (instances, preds) in enumerate(zip(ground_truth, predictions), start=1):
        sizes = [item.rle["size"] for item in (*instances, *preds)]
        height, width = sizes[0] if sizes else (0, 0)  # pycocotools wants a size even where it never decodes
        images.append({"id": image_id, "height": int(height), "width": int(width)})
        for truth in instances:
            rle = _bytes_rle(truth.rle)
            annotations.append({
                "id": len(annotations) + 1,  # COCOeval treats id 0 as "unmatched"
                "image_id": image_id,
                "category_id": _category(category, truth.class_name),
                "segmentation": rle,
                "area": float(mask_utils.area(rle)),
                "bbox": mask_utils.toBbox(rle).tolist(),
                "iscrowd": int(truth.crowd),
            })
    results = [
        {"image_id": image_id, "category_id": _category(category, p.class_name), "segmentation": _bytes_rle(p.rle),
         "score": float(p.score)}
        for image_id, preds in enumerate(predictions, start=1)
        for p in preds
    ]
    gt = COCO()
    gt.dataset = {"images": images, "annotations": annotations, "categories": [{"id": i} for i in category.values()]}
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress; the caller reports
        gt.createIndex()
        if not results:  # loadRes cannot take an empty list: every class with ground truth scores 0
            return _empty_result(annotations, class_names)
        evaluator = COCOeval(gt, gt.loadRes(results), iouType="segm")
        evaluator.evaluate()
        evaluator.accumulate()
    # precision: (IoU thresholds, recall points, classes, area ranges, max detections); -1 where undefined
    precision = evaluator.eval["precision"][:, :, :, 0, -1]
    return {
        "AP": _mean(precision),
        "AP50": _mean(precision[0]),
        "AP75": _mean(precision[5]),
        "per_class": {name: _mean(precision[:, :, k]) for k, name in enumerate(class_names)},
    }


def _category(category: dict[str, int], name: str) -> int:
    if name not in category:
        raise ValueError(f"class {name!r} is not one of {', '.join(category)}")
    return category[name]


def _bytes_rle(rle: dict) -> dict:
    counts = rle["counts"]
    if isinstance(counts, list):  # uncompressed RLE
        return mask_utils.frPyObjects(rle, *rle["size"])
    return {"size": list(rle["size"]), "counts": counts.encode("ascii") if isinstance(counts, str) else counts}


def _mean(values: np.ndarray) -> float | None:
    defined = values[values > -1]
    return float(defined.mean()) if defined.size else None


def _empty_result(annotations: list[dict], class_names: Sequence[str]) -> dict:
    with_truth = {a["category_id"] for a in annotations if not a["iscrowd"]}
    per_class = {name: 0.0 if label in with_truth else None for label, name in enumerate(class_names, start=1)}
    value = 0.0 if with_truth else None
    return {"AP": value, "AP50": value, "AP75": value, "per_class": per_class}
