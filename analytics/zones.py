"""Mask-accurate zones: an object is in a zone when enough of its *mask* is.

A box corner or centre says a worker is inside a swing radius when only the
box is; here the decision is the number of mask pixels inside the zone, with
hysteresis so one noisy frame neither enters nor exits.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import cv2
import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from segmenter.masks import CropMask
from tracker.tracker import TrackObservation


class ZoneConfig(BaseModel):
    """A polygon or circle in image coordinates, with who it applies to."""

    model_config = ConfigDict(extra="forbid")

    name: str
    polygon: list[tuple[float, float]] | None = Field(None, description="Vertices in pixels, at least 3.")
    circle: tuple[float, float, float] | None = Field(None, description="(cx, cy, radius) in pixels.")
    classes: list[str] | None = Field(None, description="Only these class names; None means every class.")
    min_fraction: float = Field(0.02, gt=0, le=1, description="Fraction of the mask inside that counts as inside...")
    min_pixels: int = Field(200, ge=1, description="...or this many mask pixels, whichever is smaller.")
    enter_frames: int = Field(2, ge=1, description="Consecutive inside frames before 'enter'.")
    exit_frames: int = Field(3, ge=1, description="Consecutive outside frames before 'exit'.")
    color: tuple[int, int, int] = (0, 200, 255)

    @model_validator(mode="after")
    def _one_shape(self) -> "ZoneConfig":
        if (self.polygon is None) == (self.circle is None):
            raise ValueError(f"zone {self.name!r} needs exactly one of polygon or circle")
        if self.polygon is not None and len(self.polygon) < 3:
            raise ValueError(f"zone {self.name!r} polygon needs at least 3 points")
        if self.circle is not None and self.circle[2] <= 0:
            raise ValueError(f"zone {self.name!r} circle radius must be positive")
        return self

    def raster(self, height: int, width: int) -> np.ndarray:
        """The zone as a boolean (height, width) image, drawn once per frame size."""
        canvas = np.zeros((height, width), dtype=np.uint8)
        if self.polygon is not None:
            cv2.fillPoly(canvas, [np.round(np.array(self.polygon)).astype(np.int32)], 1)
        else:
            cx, cy, r = self.circle
            cv2.circle(canvas, (round(cx), round(cy)), round(r), 1, thickness=-1)
        return canvas.astype(bool)


def pixels_inside(mask: CropMask, zone_raster: np.ndarray) -> int:
    """Mask pixels that fall inside the zone, reading only the mask's window."""
    h, w = zone_raster.shape
    x0, y0, x1, y1 = max(mask.x0, 0), max(mask.y0, 0), min(mask.x1, w), min(mask.y1, h)
    if x1 <= x0 or y1 <= y0:
        return 0
    crop = mask.crop[y0 - mask.y0 : y1 - mask.y0, x0 - mask.x0 : x1 - mask.x0]
    return int(np.count_nonzero(crop & zone_raster[y0:y1, x0:x1]))


def is_inside(mask: CropMask, zone: ZoneConfig, zone_raster: np.ndarray) -> bool:
    """Inside when the pixels inside reach min(min_fraction × area, min_pixels)."""
    area = mask.area
    return area > 0 and pixels_inside(mask, zone_raster) >= min(zone.min_fraction * area, zone.min_pixels)


@dataclass(frozen=True)
class ZoneEvent:
    kind: Literal["enter", "exit"]
    zone: str
    track_id: int
    class_name: str
    frame: int
    dwell_frames: int = 0  # on exit: frames from enter to exit


@dataclass
class _Presence:
    class_name: str
    inside: bool = False
    streak: int = 0  # consecutive frames disagreeing with ``inside``
    entered_frame: int = 0


@dataclass
class ZoneMonitor:
    """Turns per-frame track observations into enter/exit events with hysteresis."""

    zones: list[ZoneConfig]
    _rasters: dict[str, np.ndarray] = field(default_factory=dict)
    _presence: dict[tuple[str, int], _Presence] = field(default_factory=dict)

    def update(self, frame: int, image_size: tuple[int, int], tracks: list[TrackObservation]) -> list[ZoneEvent]:
        events: list[ZoneEvent] = []
        seen = {t.track_id: t for t in tracks}
        for zone in self.zones:
            raster = self._raster(zone, image_size)
            for track in tracks:
                if zone.classes is not None and track.class_name not in zone.classes:
                    continue
                self._step(zone, track.track_id, track.class_name, frame, is_inside(track.mask, zone, raster), events)
            for (name, track_id), presence in list(self._presence.items()):
                if name == zone.name and track_id not in seen:
                    self._step(zone, track_id, presence.class_name, frame, False, events)
        return events

    def close(self, frame: int) -> list[ZoneEvent]:
        """Exit every track still inside (end of stream), so each enter has its exit."""
        events = [
            ZoneEvent("exit", name, track_id, p.class_name, frame, frame - p.entered_frame)
            for (name, track_id), p in self._presence.items()
            if p.inside
        ]
        self._presence.clear()
        return events

    def _raster(self, zone: ZoneConfig, image_size: tuple[int, int]) -> np.ndarray:
        raster = self._rasters.get(zone.name)
        if raster is None or raster.shape != tuple(image_size):
            raster = self._rasters[zone.name] = zone.raster(*image_size)
        return raster

    def _step(self, zone: ZoneConfig, track_id: int, class_name: str, frame: int, inside: bool, events: list[ZoneEvent]) -> None:
        key = (zone.name, track_id)
        presence = self._presence.get(key)
        if presence is None:
            if not inside:
                return
            presence = self._presence[key] = _Presence(class_name)
        if inside == presence.inside:
            presence.streak = 0
            if not inside:
                del self._presence[key]  # only tracks inside or on their way in are kept
            return
        presence.streak += 1
        if inside and presence.streak >= zone.enter_frames:
            presence.inside, presence.streak, presence.entered_frame = True, 0, frame
            events.append(ZoneEvent("enter", zone.name, track_id, presence.class_name, frame))
        elif not inside and presence.streak >= zone.exit_frames:
            events.append(ZoneEvent("exit", zone.name, track_id, presence.class_name, frame, frame - presence.entered_frame))
            del self._presence[key]
