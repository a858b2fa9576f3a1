"""MOTS result lines for tracks, with masks made disjoint (each pixel to one track) as MOTS evaluation requires."""

from __future__ import annotations

from collections.abc import Sequence

from segmenter.masks import CropMask
from segmenter.motsio import format_mots_line
from tracker.tracker import TrackObservation


def resolve_overlaps(masks: Sequence[CropMask], priority: Sequence[float]) -> list[CropMask]:
    """Give every contested pixel to the mask of highest ``priority`` (ties: earlier index).

    Works on crops: each mask only looks at the windows of higher-priority masks
    that overlap its own, so no full-frame array is ever built.
    """
    order = sorted(range(len(masks)), key=lambda i: (-priority[i], i))
    result: list[CropMask | None] = [None] * len(masks)
    placed: list[CropMask] = []
    for i in order:
        mask = masks[i]
        crop = mask.crop.copy()
        for other in placed:
            x0, y0 = max(mask.x0, other.x0), max(mask.y0, other.y0)
            x1, y1 = min(mask.x1, other.x1), min(mask.y1, other.y1)
            if x1 > x0 and y1 > y0:
                crop[y0 - mask.y0 : y1 - mask.y0, x0 - mask.x0 : x1 - mask.x0] &= ~other.crop[
                    y0 - other.y0 : y1 - other.y0, x0 - other.x0 : x1 - other.x0
                ]
        resolved = CropMask(crop, mask.x0, mask.y0)
        result[i] = resolved
        placed.append(resolved)
    return [m for m in result if m is not None]


def mots_lines(frame_number: int, observations: Sequence[TrackObservation], image_size: tuple[int, int]) -> list[str]:
    """``frame obj_id class_id img_h img_w rle`` lines for one frame, overlaps resolved by score."""
    height, width = image_size
    disjoint = resolve_overlaps([o.mask for o in observations], [o.score for o in observations])
    return [
        format_mots_line(frame_number, obs.track_id, obs.class_id, mask.to_rle(height, width))
        for obs, mask in zip(observations, disjoint)
        if mask.area
    ]
