"""The live service's published state: ``<live_dir>/<camera>.json`` (health, counts) and ``<camera>.jpg``.

The camera workers of ``maskwatch serve`` replace both files atomically a few
times a second, so reading them is all the dashboard does for live views: it
never runs the pipeline or opens a camera itself. The JPEG sits beside the
JSON under the same stem; the camera's real name is the JSON's ``camera``.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

Health = Literal["live", "stale", "disconnected", "worker down", "not segmenting"]
SEGMENTER_STATUS = Path("segmenter") / "status.json"  # the shared segmenter's, under live_dir (see maskwatch.serve)


@dataclass(frozen=True)
class CameraStatus:
    camera: str
    status: dict[str, Any]
    status_path: Path

    @property
    def frame_path(self) -> Path:
        return self.status_path.with_suffix(".jpg")

    def age_s(self, now: float | None = None) -> float:
        return (time.time() if now is None else now) - float(self.status.get("updated_ts") or 0.0)

    def health(self, stale_after_s: float, now: float | None = None) -> tuple[Health, str]:
        """What an operator must know first, with why: a silent worker is worse than a disconnected camera."""
        age = self.age_s(now)
        if self.status.get("worker_alive") is False:
            return "worker down", f"worker process not running (restarts: {self.status.get('worker_restarts', 0)})"
        if age > stale_after_s:
            return "stale", f"no status for {age:.0f} s"
        if not self.status.get("connected"):
            return "disconnected", "the camera is not connected"
        if self.status.get("segmenter_error"):
            return "not segmenting", f"frames skipped: {self.status['segmenter_error']}"
        return "live", f"updated {age:.1f} s ago"


def read_statuses(live_dir: Path) -> list[CameraStatus]:
    """Every camera's latest status, by camera name; files that vanish or do not parse are skipped."""
    found = []
    for path in sorted(live_dir.glob("*.json")) if live_dir.is_dir() else []:
        if path.name.startswith("."):  # a writer's temporary file
            continue
        try:
            status = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(status, dict):
            found.append(CameraStatus(str(status.get("camera") or path.stem), status, path))
    return sorted(found, key=lambda s: s.camera)


def find_status(live_dir: Path, camera: str) -> CameraStatus | None:
    return next((s for s in read_statuses(live_dir) if s.camera == camera), None)


def read_segmenter(live_dir: Path) -> dict[str, Any] | None:
    """The shared segmenter's batch statistics, or None when the cameras run their own (or it has not started)."""
    try:
        status = json.loads((live_dir / SEGMENTER_STATUS).read_text())
    except (OSError, ValueError):
        return None
    return status if isinstance(status, dict) else None


def read_frame(status: CameraStatus) -> bytes | None:
    """The latest annotated JPEG as bytes (a few tens of kB), or None before the first frame."""
    try:
        return status.frame_path.read_bytes()
    except OSError:
        return None
