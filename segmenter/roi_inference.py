"""Mask R-CNN's second stage at inference, with a bounded candidate set before NMS.

torchvision's ``RoIHeads.postprocess_detections`` hands every (proposal, class)
pair above the score threshold to ``batched_nms``; past 20,000 coordinates it
falls back to one NMS call per class. With a low threshold (0 in the GPU
benchmark, 0.05 in evaluation) that is 90,000 boxes and 90 NMS launches per
image, slower than the backbone. Keeping the ``pre_nms_top_k``
best-scoring candidates first bounds it to one NMS over a few thousand boxes.
Results are torchvision's whenever no more than ``pre_nms_top_k`` candidates
pass the score threshold (the usual case at 0.5 with trained weights).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torchvision.models.detection.roi_heads import RoIHeads, maskrcnn_inference
from torchvision.ops import boxes as box_ops


def detect(
    heads: RoIHeads,
    features: dict[str, torch.Tensor],
    proposals: list[torch.Tensor],
    image_sizes: list[tuple[int, int]],
    pre_nms_top_k: int,
) -> list[dict[str, torch.Tensor]]:
    """Boxes, scores, labels and (N, 1, M, M) mask probabilities per image, in the resized frame."""
    box_features = heads.box_head(heads.box_roi_pool(features, proposals, image_sizes))
    class_logits, box_regression = heads.box_predictor(box_features)
    boxes, scores, labels = _postprocess(heads, class_logits, box_regression, proposals, image_sizes, pre_nms_top_k)
    mask_features = heads.mask_head(heads.mask_roi_pool(features, boxes, image_sizes))
    masks = maskrcnn_inference(heads.mask_predictor(mask_features), labels)
    return [{"boxes": b, "scores": s, "labels": lab, "masks": m} for b, s, lab, m in zip(boxes, scores, labels, masks)]


def _postprocess(
    heads: RoIHeads,
    class_logits: torch.Tensor,
    box_regression: torch.Tensor,
    proposals: list[torch.Tensor],
    image_sizes: list[tuple[int, int]],
    pre_nms_top_k: int,
) -> tuple[list[torch.Tensor], list[torch.Tensor], list[torch.Tensor]]:
    num_classes = class_logits.shape[-1]
    per_image = [len(p) for p in proposals]
    pred_boxes = heads.box_coder.decode(box_regression, proposals).split(per_image, 0)
    pred_scores = F.softmax(class_logits, -1).split(per_image, 0)
    out_boxes, out_scores, out_labels = [], [], []
    for boxes, scores, size in zip(pred_boxes, pred_scores, image_sizes):
        boxes = box_ops.clip_boxes_to_image(boxes, size)[:, 1:].reshape(-1, 4)  # drop the background class
        labels = torch.arange(1, num_classes, device=scores.device).expand(len(scores), -1).reshape(-1)
        scores = scores[:, 1:].reshape(-1)
        keep = torch.where(scores > heads.score_thresh)[0]
        if len(keep) > pre_nms_top_k:
            keep = keep[scores[keep].topk(pre_nms_top_k).indices]
        boxes, scores, labels = boxes[keep], scores[keep], labels[keep]
        keep = box_ops.remove_small_boxes(boxes, min_size=1e-2)
        boxes, scores, labels = boxes[keep], scores[keep], labels[keep]
        keep = box_ops.batched_nms(boxes, scores, labels, heads.nms_thresh)[: heads.detections_per_img]
        out_boxes.append(boxes[keep])
        out_scores.append(scores[keep])
        out_labels.append(labels[keep])
    return out_boxes, out_scores, out_labels
