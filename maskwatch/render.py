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


def draw_frame(image: np.ndarray, tracks: list[TrackObservation], camera: CameraConfig, regions: list[Region] = ()) -> np.ndarray:
    """Zones (fixed and this frame's dynamic ones) and lines, then each track's mask, outline and label."""
    out = image.copy()
    h, w = out.shape[:2]
    for zone in camera.zones:
        if zone.polygon is not None:
            cv2.polylines(out, [np.round(np.array(zone.polygon)).astype(np.int32)], True, zone.color[::-1], 2)
        else:
            cx, cy, r = zone.circle
            cv2.circle(out, (round(cx), round(cy)), round(r), zone.color[::-1], 2)
    for region in regions:
        if region.anchor_id is not None:
            contours, _ = cv2.findContours(region.mask.crop.view(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
            cv2.drawContours(out, contours, -1, region.zone.color[::-1], 2, offset=(region.mask.x0, region.mask.y0))
    for line in camera.lines:
        (ax, ay), (bx, by) = line.points
        cv2.arrowedLine(out, (round(ax), round(ay)), (round(bx), round(by)), line.color[::-1], 2, tipLength=0.05)
        cv2.putText(out, line.name, (round(ax) + 4, round(ay) - 4), cv2.FONT_HERSHEY_SIMPLEX, 0.45, line.color[::-1], 1, cv2.LINE_AA)
    for obs in tracks:
        color = np.array(id_color(obs.track_id), dtype=np.float32)
        m = obs.mask
        x0, y0, x1, y1 = max(m.x0, 0), max(m.y0, 0), min(m.x1, w), min(m.y1, h)
        if x1 <= x0 or y1 <= y0:
            continue
        crop = m.crop[y0 - m.y0 : y1 - m.y0, x0 - m.x0 : x1 - m.x0]
        region = out[y0:y1, x0:x1]
        region[crop] = (0.5 * region[crop] + 0.5 * color).astype(np.uint8)
        contours, _ = cv2.findContours(crop.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        cv2.drawContours(region, contours, -1, tuple(int(c) for c in color), 1)
        label = f"{obs.track_id} {obs.class_name}"
        cv2.putText(out, label, (x0, max(y0 - 4, 10)), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 3, cv2.LINE_AA)
        cv2.putText(out, label, (x0, max(y0 - 4, 10)), cv2.FONT_HERSHEY_SIMPLEX, 0.45, tuple(int(c) for c in color), 1, cv2.LINE_AA)
    return out


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
