"""Pictures the dashboard draws on: a camera's background frame, its zones and lines, a track's path.

Geometry is in the camera's full-frame pixels, so it can only be drawn on a
full frame, and it must be a *clean* one: under new geometry, the zones, masks
and boxes burnt into the service's annotated JPEG (``<camera>.jpg``) look like
the ones being edited. So the background is, cleanest first: a frame of the
run's source when that is a local file (the dashboard never connects to
cameras); else the clean frame the service publishes beside its JPEG every few
seconds (``<camera>.clean.jpg``); else the annotated JPEG, said to be annotated;
else a blank canvas of the frame's size. Event snapshots are crops around an
object, shown beside, never under, the geometry.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import cv2
import numpy as np
import streamlit as st

from storage.live import find_camera, read_frame

BLANK_SIZE = (720, 1280)  # height, width of the canvas when no frame of the camera can be had
HIGHLIGHT = (0, 255, 255)


@st.cache_data(ttl=60, show_spinner=False)
def _source_frame(path: str, mtime: float) -> np.ndarray | None:
    """A frame a second into a video file (past any fade-in), or its first; keyed by mtime so a new file is re-read."""
    capture = cv2.VideoCapture(path)
    try:
        fps = capture.get(cv2.CAP_PROP_FPS) or 0
        if fps > 0 and capture.get(cv2.CAP_PROP_FRAME_COUNT) > fps:
            capture.set(cv2.CAP_PROP_POS_FRAMES, int(fps))
        ok, image = capture.read()
    finally:
        capture.release()
    return image if ok else None


def camera_background(live_dir: Path, camera: str, source: str | None) -> tuple[np.ndarray, str]:
    """A full frame of ``camera`` (BGR), as clean as can be had (see the module docstring), and where it came from."""
    if source and Path(source).is_file():
        image = _source_frame(source, Path(source).stat().st_mtime)
        if image is not None:
            return image.copy(), f"a clean frame of {Path(source).name} (the run's source video)"
    live = find_camera(live_dir, camera)
    data = read_frame(live, clean=True) if live is not None else None
    if data is not None:
        image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
        if image is not None:
            return image, "a clean frame of the live camera (refreshed every few seconds)"
    data = read_frame(live) if live is not None else None
    if data is not None:
        image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
        if image is not None:
            return image, ("the latest live frame, as the service annotates it: the zones it runs with and its masks "
                           "show in the picture (no clean frame published yet)")  # fmt: skip
    size = live.status.frame_size if live is not None else None  # (width, height)
    height, width = (size[1], size[0]) if size else BLANK_SIZE
    blank = np.full((height, width, 3), 64, np.uint8)
    for x in range(0, width, 100):  # a 100 px grid to place vertices by
        cv2.line(blank, (x, 0), (x, height - 1), (90, 90, 90), 1)
    for y in range(0, height, 100):
        cv2.line(blank, (0, y), (width - 1, y), (90, 90, 90), 1)
    return blank, "blank canvas (no live frame or source file for this camera)"


def _label(image: np.ndarray, text: str, at: tuple[int, int], color: tuple[int, int, int]) -> None:
    cv2.putText(image, text, at, cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 3, cv2.LINE_AA)
    cv2.putText(image, text, at, cv2.FONT_HERSHEY_SIMPLEX, 0.5, color, 1, cv2.LINE_AA)


def _bgr(item: dict[str, Any], default: tuple[int, int, int]) -> tuple[int, int, int]:
    color = item.get("color") or default
    return int(color[0]), int(color[1]), int(color[2])


def draw_geometry(image: np.ndarray, geometry: dict[str, Any], highlight: str | None = None) -> np.ndarray:
    """Zones (filled lightly, outlined) and lines (with their A→B arrow) on a copy; ``highlight`` drawn thicker in yellow.

    Dynamic zones move with their anchors and have no fixed place to draw.
    """
    out = image.copy()
    shade = image.copy()
    for zone in geometry.get("zones", []):
        color = HIGHLIGHT if zone.get("name") == highlight else _bgr(zone, (0, 200, 255))
        if zone.get("polygon"):
            points = np.round(np.array(zone["polygon"], dtype=float)).astype(np.int32)
            cv2.fillPoly(shade, [points], color)
            cv2.polylines(out, [points], True, color, 3 if color == HIGHLIGHT else 2, cv2.LINE_AA)
            anchor = tuple(points.min(axis=0))
        elif zone.get("circle"):
            cx, cy, r = (round(v) for v in zone["circle"])
            cv2.circle(shade, (cx, cy), r, color, -1)
            cv2.circle(out, (cx, cy), r, color, 3 if color == HIGHLIGHT else 2, cv2.LINE_AA)
            anchor = (cx - r, cy - r)
        else:
            continue
        _label(out, str(zone.get("name", "")), (int(anchor[0]) + 4, int(anchor[1]) + 16), color)
    out = cv2.addWeighted(shade, 0.2, out, 0.8, 0)
    for line in geometry.get("lines", []):
        (ax, ay), (bx, by) = ((round(x), round(y)) for x, y in line["points"])
        color = HIGHLIGHT if line.get("name") == highlight else _bgr(line, (255, 160, 0))
        cv2.arrowedLine(out, (ax, ay), (bx, by), color, 3 if color == HIGHLIGHT else 2, cv2.LINE_AA, tipLength=0.05)
        _label(out, f"{line.get('name', '')} (A)", (ax + 4, ay - 6), color)
    return out


def draw_points(image: np.ndarray, points: list[tuple[float, float]], color: tuple[int, int, int] = HIGHLIGHT) -> np.ndarray:
    """Numbered vertices of the item being edited, so a table row can be matched to its point."""
    for i, (x, y) in enumerate(points):
        cv2.circle(image, (round(x), round(y)), 5, color, -1, cv2.LINE_AA)
        _label(image, str(i + 1), (round(x) + 6, round(y) - 6), color)
    return image


def draw_path(image: np.ndarray, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
    """A track's centroid path, green at its start and red at its end."""
    points = np.round(np.column_stack([xs, ys])).astype(np.int32)
    if len(points) > 1:
        cv2.polylines(image, [points], False, (255, 255, 255), 4, cv2.LINE_AA)
        cv2.polylines(image, [points], False, (255, 80, 0), 2, cv2.LINE_AA)
    if len(points):
        cv2.circle(image, tuple(int(v) for v in points[0]), 7, (0, 200, 0), -1, cv2.LINE_AA)
        cv2.circle(image, tuple(int(v) for v in points[-1]), 7, (0, 0, 230), -1, cv2.LINE_AA)
    return image
