"""Annotated video: masks in per-ID colours, IDs and class names, zones outlined."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from analytics.config import CameraConfig
from analytics.zones import Region
from maskwatch.engine import Sink, Step
from tracker.tracker import TrackObservation


def id_color(track_id: int) -> tuple[int, int, int]:
    """A stable, well-spread BGR colour per track id (golden-ratio hue steps)."""
    hue = int((track_id * 0.618033988749895 % 1.0) * 179)
    bgr = cv2.cvtColor(np.uint8([[[hue, 220, 255]]]), cv2.COLOR_HSV2BGR)[0, 0]
    return int(bgr[0]), int(bgr[1]), int(bgr[2])


def draw_frame(
    image: np.ndarray, tracks: list[TrackObservation], camera: CameraConfig, regions: list[Region] = (), scale: float = 1.0
) -> np.ndarray:
    """Zones (fixed and this frame's dynamic ones) and lines, then each track's mask, outline and label.

    ``scale``: ``image`` is the frame resized by this factor (alarm clips keep small frames);
    geometry and masks, in the frame's pixels, are scaled to match.
    """
    out = image.copy()
    h, w = out.shape[:2]

    def pt(x: float, y: float) -> tuple[int, int]:
        return round(x * scale), round(y * scale)

    for zone in camera.zones:
        if zone.polygon is not None:
            cv2.polylines(out, [np.round(np.array(zone.polygon) * scale).astype(np.int32)], True, zone.color[::-1], 2)
        else:
            cx, cy, r = zone.circle
            cv2.circle(out, pt(cx, cy), round(r * scale), zone.color[::-1], 2)
    for region in regions:
        if region.anchor_id is not None:
            crop, (ox, oy) = _scaled_crop(region.mask, scale)
            contours, _ = cv2.findContours(crop, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
            cv2.drawContours(out, contours, -1, region.zone.color[::-1], 2, offset=(ox, oy))
    for line in camera.lines:
        (ax, ay), (bx, by) = line.points
        cv2.arrowedLine(out, pt(ax, ay), pt(bx, by), line.color[::-1], 2, tipLength=0.05)
        lx, ly = pt(ax, ay)
        cv2.putText(out, line.name, (lx + 4, ly - 4), cv2.FONT_HERSHEY_SIMPLEX, 0.45, line.color[::-1], 1, cv2.LINE_AA)
    for obs in tracks:
        color = np.array(id_color(obs.track_id), dtype=np.float32)
        mask, (mx, my) = _scaled_crop(obs.mask, scale)
        mh, mw = mask.shape
        x0, y0, x1, y1 = max(mx, 0), max(my, 0), min(mx + mw, w), min(my + mh, h)
        if x1 <= x0 or y1 <= y0:
            continue
        crop = mask[y0 - my : y1 - my, x0 - mx : x1 - mx].astype(bool)
        region = out[y0:y1, x0:x1]
        region[crop] = (0.5 * region[crop] + 0.5 * color).astype(np.uint8)
        contours, _ = cv2.findContours(crop.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        cv2.drawContours(region, contours, -1, tuple(int(c) for c in color), 1)
        label = f"{obs.track_id} {obs.class_name}"
        cv2.putText(out, label, (x0, max(y0 - 4, 10)), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 3, cv2.LINE_AA)
        cv2.putText(out, label, (x0, max(y0 - 4, 10)), cv2.FONT_HERSHEY_SIMPLEX, 0.45, tuple(int(c) for c in color), 1, cv2.LINE_AA)
    return out


def _scaled_crop(mask, scale: float) -> tuple[np.ndarray, tuple[int, int]]:
    """A crop mask as uint8 and its top-left corner, resized by ``scale`` (nearest neighbour)."""
    crop = mask.crop.view(np.uint8)
    if scale == 1.0:
        return crop, (mask.x0, mask.y0)
    x0, y0 = round(mask.x0 * scale), round(mask.y0 * scale)
    width, height = max(round(mask.x1 * scale) - x0, 1), max(round(mask.y1 * scale) - y0, 1)
    return cv2.resize(crop, (width, height), interpolation=cv2.INTER_NEAREST), (x0, y0)


class VideoRenderer(Sink):
    """Writes every processed frame, annotated, to an MP4 file."""

    def __init__(self, path: Path, fps: float, size: tuple[int, int], camera: CameraConfig) -> None:
        height, width = size
        self.path, self.camera = path, camera
        self._writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (width, height))

    def on_frame(self, step: Step) -> None:
        self._writer.write(draw_frame(step.frame.image, step.tracks.tracks, self.camera, step.regions))

    def close(self, status: str) -> None:
        self._writer.release()
