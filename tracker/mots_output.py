"""MOTS result lines for tracks, with masks made disjoint (each pixel to one track) as MOTS evaluation requires."""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from segmenter.masks import CropMask, encode_rles
from segmenter.motsio import format_mots_line
from tracker.tracker import TrackObservation


def resolve_overlaps(masks: Sequence[CropMask], priority: Sequence[float]) -> list[CropMask]:
    """Give every contested pixel to the mask of highest ``priority`` (ties: earlier index).

    Works on crops: each mask only looks at the windows of higher-priority masks
    that overlap its own, so no full-frame array is ever built; a mask that loses
    no pixel is returned as it is (no copy).
    """
    order = sorted(range(len(masks)), key=lambda i: (-priority[i], i))
    result: list[CropMask] = list(masks)
    placed: list[tuple[CropMask, int, int, int, int]] = []  # resolved masks with their windows, as plain ints
    for i in order:
        mask = masks[i]
        ax0, ay0, ax1, ay1 = mask.window
        crop = None
        for other, bx0, by0, bx1, by1 in placed:
            x0, y0, x1, y1 = max(ax0, bx0), max(ay0, by0), min(ax1, bx1), min(ay1, by1)
            if x1 > x0 and y1 > y0:
                theirs = other.crop[y0 - by0 : y1 - by0, x0 - bx0 : x1 - bx0]
                mine = (mask.crop if crop is None else crop)[y0 - ay0 : y1 - ay0, x0 - ax0 : x1 - ax0]
                if cv2.countNonZero(cv2.bitwise_and(mine.view(np.uint8), theirs.view(np.uint8))):  # OpenCV: big crops
                    if crop is None:
                        crop = mask.crop.copy()
                        mine = crop[y0 - ay0 : y1 - ay0, x0 - ax0 : x1 - ax0]
                    mine &= ~theirs
        if crop is not None:
            result[i] = CropMask(crop, ax0, ay0)
        if result[i].area:
            placed.append((result[i], ax0, ay0, ax1, ay1))
    return result


def mots_lines(frame_number: int, observations: Sequence[TrackObservation], image_size: tuple[int, int]) -> list[str]:
    """``frame obj_id class_id img_h img_w rle`` lines for one frame, overlaps resolved by score, encoded together."""
    height, width = image_size
    disjoint = resolve_overlaps([o.mask for o in observations], [o.score for o in observations])
    kept = [(obs, mask) for obs, mask in zip(observations, disjoint) if mask.area]
    counts = encode_rles([mask for _, mask in kept], height, width)
    return [
        format_mots_line(frame_number, obs.track_id, obs.class_id, {"size": [height, width], "counts": rle})
        for (obs, _), rle in zip(kept, counts)
    ]
