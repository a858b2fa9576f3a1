"""Frames in, instance masks out: the ``Detections`` contract and its backends."""

from segmenter.detections import Detections, Segmenter
from segmenter.masks import CropMask, mask_iou, mask_iou_matrix

__all__ = ["CropMask", "Detections", "Segmenter", "mask_iou", "mask_iou_matrix"]
