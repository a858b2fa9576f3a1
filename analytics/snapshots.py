"""Event snapshots: the frame around the object, its mask outlined, as a JPEG file.

Stored as files (not database blobs) under ``<dir>/<camera>/<YYYY-MM-DD>/<event id>.jpg``
so the store stays small and a webhook or the dashboard can serve them as-is.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import cv2
import numpy as np

from segmenter.masks import CropMask

_MAX_SIDE = 640


class SnapshotWriter:
    def __init__(self, root: Path, camera: str, quality: int = 85) -> None:
        self.root, self.quality = Path(root), quality
        self.camera_dir = re.sub(r"[^A-Za-z0-9_.-]+", "_", camera) or "camera"

    def save(self, event_id: str, ts: float, image: np.ndarray, mask: CropMask | None, color: tuple[int, int, int] = (0, 0, 255)) -> str:
        """Write the snapshot; returns its path relative to the root (what events store)."""
        crop = snapshot_image(image, mask, color)
        relative = Path(self.camera_dir, time.strftime("%Y-%m-%d", time.gmtime(ts)), f"{event_id}.jpg")
        path = self.root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        ok, data = cv2.imencode(".jpg", crop, [cv2.IMWRITE_JPEG_QUALITY, self.quality])
        if not ok:
            raise OSError(f"could not encode snapshot {path}")
        path.write_bytes(data.tobytes())
        return relative.as_posix()


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
