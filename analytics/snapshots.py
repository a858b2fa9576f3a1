"""Event media: the tight snapshot, the full-frame context image, and where alarm clips go.

Stored as files (not database blobs) under the snapshot folder, so the store stays
small and a webhook or the dashboard can serve them as-is; events store the paths
relative to that folder (:func:`media_path` makes every one of them):

- ``<camera>/<YYYY-MM-DD>/<event id>.jpg``: the object, its mask outlined (``events.snapshot``);
- ``<camera>/<YYYY-MM-DD>/<event id>-context.jpg``: the whole frame, at most 960 px wide,
  the object's mask outlined (``events.context_snapshot``);
- ``clips/<camera>/<YYYY-MM-DD>/<event id>.mp4``: an alarm's clip (``events.clip``),
  written by ``maskwatch.clips`` a few seconds after the alarm.

The date is the event's UTC day.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import cv2
import numpy as np

from segmenter.masks import CropMask

_MAX_SIDE = 640
CONTEXT_MAX_WIDTH = 960
CLIP_FOLDER = "clips"


def camera_folder(camera: str) -> str:
    """The camera's name as one safe folder name."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", camera) or "camera"


def media_path(camera: str, ts: float, event_id: str, suffix: str, folder: str | None = None) -> str:
    """``[folder/]<camera>/<YYYY-MM-DD>/<event id><suffix>``, relative to the snapshot folder, as stored."""
    parts = [folder] if folder else []
    return Path(*parts, camera_folder(camera), time.strftime("%Y-%m-%d", time.gmtime(ts)), f"{event_id}{suffix}").as_posix()


def clip_path(camera: str, ts: float, event_id: str) -> str:
    """Where the clip of an alarm raised by event ``event_id`` goes (relative to the snapshot folder)."""
    return media_path(camera, ts, event_id, ".mp4", CLIP_FOLDER)


class SnapshotWriter:
    def __init__(self, root: Path, camera: str, quality: int = 85) -> None:
        self.root, self.quality, self.camera = Path(root), quality, camera
        self.camera_dir = camera_folder(camera)

    def save(self, event_id: str, ts: float, image: np.ndarray, mask: CropMask | None, color: tuple[int, int, int] = (0, 0, 255)) -> str:
        """Write the snapshot; returns its path relative to the root (what events store)."""
        return self._write(media_path(self.camera, ts, event_id, ".jpg"), snapshot_image(image, mask, color))

    def save_context(
        self, event_id: str, ts: float, image: np.ndarray, mask: CropMask | None, color: tuple[int, int, int] = (0, 0, 255)
    ) -> str:
        """Write the full-frame context image; returns its path relative to the root."""
        return self._write(media_path(self.camera, ts, event_id, "-context.jpg"), context_image(image, mask, color))

    def _write(self, relative: str, image: np.ndarray) -> str:
        path = self.root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, self.quality])
        if not ok:
            raise OSError(f"could not encode snapshot {path}")
        path.write_bytes(data.tobytes())
        return relative


def snapshot_image(image: np.ndarray, mask: CropMask | None, color: tuple[int, int, int] = (0, 0, 255)) -> np.ndarray:
    """The mask's box grown by half its size (at least 32 px) with the mask outlined; the whole frame without a mask."""
    height, width = image.shape[:2]
    if mask is None or mask.area == 0:
        x0, y0, x1, y1 = 0, 0, width, height
    else:
        mx = max((mask.x1 - mask.x0) // 2, 32)
        my = max((mask.y1 - mask.y0) // 2, 32)
        x0, y0 = max(mask.x0 - mx, 0), max(mask.y0 - my, 0)
        x1, y1 = min(mask.x1 + mx, width), min(mask.y1 + my, height)
    out = np.ascontiguousarray(image[y0:y1, x0:x1])
    if mask is not None and mask.area:
        contours, _ = cv2.findContours(mask.crop.view(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        cv2.drawContours(out, contours, -1, color, 2, offset=(mask.x0 - x0, mask.y0 - y0))
    scale = _MAX_SIDE / max(out.shape[:2])
    if scale < 1:
        out = cv2.resize(out, (round(out.shape[1] * scale), round(out.shape[0] * scale)), interpolation=cv2.INTER_AREA)
    return out


def context_image(
    image: np.ndarray, mask: CropMask | None, color: tuple[int, int, int] = (0, 0, 255), max_width: int = CONTEXT_MAX_WIDTH
) -> np.ndarray:
    """The whole frame, at most ``max_width`` wide, with the mask outlined (about 2 px thick after downscaling)."""
    scale = min(max_width / image.shape[1], 1.0)
    out = image.copy()
    if mask is not None and mask.area:
        contours, _ = cv2.findContours(mask.crop.view(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        cv2.drawContours(out, contours, -1, color, max(2, round(2 / scale)), offset=(mask.x0, mask.y0))
    if scale < 1:
        out = cv2.resize(out, (round(image.shape[1] * scale), round(image.shape[0] * scale)), interpolation=cv2.INTER_AREA)
    return out
