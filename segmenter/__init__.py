"""Frames in, instance masks out: the ``Detections`` contract and its backends."""

from segmenter.detections import Detections, Segmenter
from segmenter.errors import InputError
from segmenter.masks import CropMask, mask_iou, mask_iou_matrix

__all__ = ["CropMask", "Detections", "InputError", "Segmenter", "mask_iou", "mask_iou_matrix"]
