"""Mask-accurate zones: an object is in a zone when enough of its *mask* is.

A box corner or centre says a worker is inside a swing radius when only the
box is; here the decision is the number of mask pixels inside the zone, with
hysteresis so one noisy frame neither enters nor exits. Zones are fixed
(polygons, circles) or dynamic: attached to every tracked object of a class
(a circle around each excavator, or its mask dilated by a distance) and
redrawn every frame as it moves.

A track that is lost (not seen this frame) keeps its state: an occluded
worker does not "leave" the zone; it exits when seen outside in
``exit_frames`` observations or when the tracker removes it. Dwell is the
time between the frames' timestamps, so it is the same whatever the frame
rate and however many frames were dropped.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import cv2
import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from analytics.calibration import Calibration, convert
from segmenter.masks import CropMask
from tracker.tracker import TrackObservation


class _Membership(BaseModel):
    """What every zone shares: who it applies to and how membership is decided."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[^,]+$", description="Unique per camera; no commas (observations list zones comma-joined).")
    classes: list[str] | None = Field(None, description="Only these class names; None means every class.")
    min_fraction: float = Field(0.02, gt=0, le=1, description="Fraction of the mask inside that counts as inside...")
    min_pixels: int = Field(200, ge=1, description="...or this many mask pixels, whichever is smaller.")
    enter_frames: int = Field(2, ge=1, description="Consecutive observations inside before 'enter': a count, not a "
                              "time, as it filters mask flicker.")
    exit_frames: int = Field(3, ge=1, description="Consecutive observations outside before 'exit': a count, not a "
                             "time, as it filters mask flicker.")
    max_dwell_s: float | None = Field(None, gt=0, description="Raise 'dwell_exceeded' once a track has been inside "
                                      "this long, in s between frame timestamps.")
    color: tuple[int, int, int] = (0, 200, 255)


class ZoneConfig(_Membership):
    """A polygon or circle in image coordinates."""

    polygon: list[tuple[float, float]] | None = Field(None, description="Vertices in pixels, at least 3.")
    circle: tuple[float, float, float] | None = Field(None, description="(cx, cy, radius) in pixels.")

    @model_validator(mode="after")
    def _one_shape(self) -> ZoneConfig:
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


class DynamicZoneConfig(_Membership):
    """A zone around every tracked object of ``anchor_classes``, moving with it.

    ``shape: circle`` is a circle of ``radius`` around the anchor's mask
    centroid (on the ground plane when the camera has a homography);
    ``shape: dilate`` is the anchor's mask grown by ``radius``.
    """

    anchor_classes: list[str] = Field(min_length=1)
    shape: Literal["circle", "dilate"] = "circle"
    radius: float = Field(gt=0)
    unit: Literal["px", "mm", "cm", "m"] = Field("m", description="Unit of radius; anything but px needs a calibration.")
    color: tuple[int, int, int] = (0, 0, 255)


@dataclass(frozen=True)
class ZoneEvent:
    kind: Literal["enter", "exit", "dwell_exceeded"]
    zone: str
    track_id: int
    track_uid: str
    class_name: str
    frame: int
    dwell_s: float = 0.0  # exit and dwell_exceeded: seconds since enter, between frame timestamps
    anchor_id: int | None = None  # dynamic zones: the track the zone is attached to
    anchor_uid: str | None = None
    inside_pixels: int = 0  # on enter: the mask pixels inside that decided it
    inside_fraction: float = 0.0


@dataclass(frozen=True)
class Region:
    """A zone drawn for one frame: its pixels as a crop, and the zone it belongs to."""

    zone: ZoneConfig | DynamicZoneConfig
    mask: CropMask
    anchor_id: int | None = None
    anchor_uid: str | None = None
    integral: np.ndarray | None = None  # summed-area table of ``mask``: O(1) "fully in/out" checks

    def pixels_inside(self, mask: CropMask) -> int:
        """Mask pixels inside the region, touching only the pixels of their overlap window."""
        r = self.mask
        x0, y0, x1, y1 = max(mask.x0, r.x0), max(mask.y0, r.y0), min(mask.x1, r.x1), min(mask.y1, r.y1)
        if x1 <= x0 or y1 <= y0:
            return 0
        window = mask.crop[y0 - mask.y0 : y1 - mask.y0, x0 - mask.x0 : x1 - mask.x0]
        if self.integral is not None:
            s = self.integral
            rx0, ry0, rx1, ry1 = x0 - r.x0, y0 - r.y0, x1 - r.x0, y1 - r.y0
            filled = int(s[ry1, rx1] - s[ry0, rx1] - s[ry1, rx0] + s[ry0, rx0])
            if filled == 0:
                return 0
            if filled == (x1 - x0) * (y1 - y0):  # window wholly inside the zone
                return mask.area if window.shape == mask.crop.shape else int(np.count_nonzero(window))
        return int(np.count_nonzero(window & r.crop[y0 - r.y0 : y1 - r.y0, x0 - r.x0 : x1 - r.x0]))


def static_region(zone: ZoneConfig, image_size: tuple[int, int]) -> Region:
    mask = CropMask.from_full(zone.raster(*image_size))
    return Region(zone, mask, integral=cv2.integral(mask.crop.view(np.uint8)))


def dynamic_region(zone: DynamicZoneConfig, anchor: TrackObservation, calibration: Calibration, image_size: tuple[int, int]) -> Region:
    """The zone ``zone`` drawn around ``anchor`` in this frame, clipped to the image."""
    height, width = image_size
    cx, cy = anchor.mask.centroid()
    if zone.shape == "circle" and calibration.matrix is not None and zone.unit != "px":
        centre = calibration.to_world([(cx, cy)])[0]
        r = convert(zone.radius, zone.unit, calibration.unit)
        angles = np.linspace(0, 2 * np.pi, 72, endpoint=False)
        ring = calibration.to_image(centre + r * np.stack([np.cos(angles), np.sin(angles)], 1))
        canvas = np.zeros((height, width), np.uint8)
        cv2.fillPoly(canvas, [np.round(ring).astype(np.int32)], 1)
        return Region(zone, CropMask.from_full(canvas.astype(bool)), anchor.track_id, anchor.track_uid)
    r_px = calibration.length_to_pixels(zone.radius, (cx, cy), zone.unit)
    if zone.shape == "circle":
        ri = int(np.ceil(r_px))
        ys, xs = np.mgrid[0 : 2 * ri + 1, 0 : 2 * ri + 1]
        x0, y0 = round(cx) - ri, round(cy) - ri
        disc = (xs + x0 - cx) ** 2 + (ys + y0 - cy) ** 2 <= r_px**2
        return Region(zone, CropMask(disc, x0, y0).clipped(height, width), anchor.track_id, anchor.track_uid)
    pad = int(np.ceil(r_px)) + 1
    outside = np.pad(~anchor.mask.crop, pad, constant_values=True).view(np.uint8)
    grown = cv2.distanceTransform(outside, cv2.DIST_L2, cv2.DIST_MASK_PRECISE) <= r_px
    grown_mask = CropMask(grown, anchor.mask.x0 - pad, anchor.mask.y0 - pad).clipped(height, width)
    return Region(zone, grown_mask, anchor.track_id, anchor.track_uid)


def pixels_inside(mask: CropMask, zone_raster: np.ndarray) -> int:
    """Mask pixels inside a full-frame boolean zone raster (a reference for tests and tools)."""
    return Region(None, CropMask(zone_raster, 0, 0)).pixels_inside(mask)  # type: ignore[arg-type]


def is_inside(pixels: int, area: int, zone: _Membership) -> bool:
    """Inside when the pixels inside reach min(min_fraction × area, min_pixels)."""
    return area > 0 and pixels > 0 and pixels >= min(zone.min_fraction * area, zone.min_pixels)


@dataclass
class _Presence:
    class_name: str
    track_uid: str
    anchor_uid: str | None
    inside: bool = False
    streak: int = 0  # consecutive observations disagreeing with ``inside``
    entered_pts: float = 0.0
    dwell_reported: bool = False

    def event(self, kind: str, name: str, track_id: int, anchor_id: int | None, frame: int, pts: float) -> ZoneEvent:
        """An exit or dwell_exceeded event now, with the dwell since enter."""
        return ZoneEvent(kind, name, track_id, self.track_uid, self.class_name, frame, pts - self.entered_pts,
                         anchor_id, self.anchor_uid)


_ROUNDING_S = 1e-9  # timestamps made as i / rate carry float rounding: 2.0 s after enter must not read as 1.9999999999


@dataclass
class ZoneMonitor:
    """Turns per-frame track observations into enter/exit/dwell events with hysteresis."""

    zones: list[ZoneConfig]
    dynamic_zones: list[DynamicZoneConfig] = field(default_factory=list)
    calibration: Calibration = field(default_factory=Calibration)
    _static: dict[tuple[int, int], list[Region]] = field(default_factory=dict)
    _presence: dict[tuple[str, int | None], dict[int, _Presence]] = field(default_factory=dict)  # (zone, anchor) → track → state
    regions: list[Region] = field(default_factory=list)  # this frame's, for drawing

    def update(self, frame: int, pts: float, image_size: tuple[int, int], tracks: list[TrackObservation],
               removed_ids: list[int] = ()) -> list[ZoneEvent]:
        """One frame at ``pts`` (s): ``tracks`` are the tracks seen in it, ``removed_ids`` those the tracker dropped."""
        events: list[ZoneEvent] = []
        self.regions = self._regions(image_size, tracks)
        if tracks and self.regions:
            index = {t.track_id: i for i, t in enumerate(tracks)}
            boxes = np.array([t.mask.window for t in tracks], dtype=np.int64)
            windows = np.array([r.mask.window for r in self.regions], dtype=np.int64)
            overlap = (np.minimum(boxes[:, None, 2], windows[None, :, 2]) > np.maximum(boxes[:, None, 0], windows[None, :, 0])) & (
                np.minimum(boxes[:, None, 3], windows[None, :, 3]) > np.maximum(boxes[:, None, 1], windows[None, :, 1])
            )
            for ri, region in enumerate(self.regions):
                zone, key = region.zone, (region.zone.name, region.anchor_id)
                present = self._presence.get(key, {})
                touching = set(np.flatnonzero(overlap[:, ri]).tolist())
                for ti in sorted(touching | {index[tid] for tid in present if tid in index}):
                    track = tracks[ti]
                    if track.track_id == region.anchor_id or (zone.classes is not None and track.class_name not in zone.classes):
                        continue
                    pixels = region.pixels_inside(track.mask) if ti in touching else 0
                    inside = is_inside(pixels, track.mask.area, zone)
                    self._step(region, track, frame, pts, inside, pixels, events)
        self._drop(frame, pts, set(removed_ids), events)
        return events

    def occupancy(self) -> dict[str, dict[str, int]]:
        """Tracks inside each zone now, per class (a track counted once per zone name)."""
        seen: dict[str, dict[str, set[int]]] = {}
        for (name, _), present in self._presence.items():
            for track_id, p in present.items():
                if p.inside:
                    seen.setdefault(name, {}).setdefault(p.class_name, set()).add(track_id)
        return {zone: {cls: len(ids) for cls, ids in sorted(by_class.items())} for zone, by_class in sorted(seen.items())}

    def inside_zones(self, track_id: int) -> tuple[str, ...]:
        """Names of the zones ``track_id`` is inside now."""
        return tuple(sorted({name for (name, _), present in self._presence.items() if track_id in present and present[track_id].inside}))

    def close(self, frame: int, pts: float) -> list[ZoneEvent]:
        """Exit every track still inside (end of stream), so each enter has its exit."""
        events = [
            p.event("exit", name, track_id, anchor, frame, pts)
            for (name, anchor), present in self._presence.items()
            for track_id, p in present.items()
            if p.inside
        ]
        self._presence.clear()
        return events

    def _regions(self, image_size: tuple[int, int], tracks: list[TrackObservation]) -> list[Region]:
        regions = self._static.get(image_size)
        if regions is None:
            regions = self._static[image_size] = [static_region(z, image_size) for z in self.zones]
        regions = list(regions)
        for zone in self.dynamic_zones:
            regions.extend(
                dynamic_region(zone, t, self.calibration, image_size) for t in tracks if t.class_name in zone.anchor_classes and t.mask.area
            )
        return regions

    def _drop(self, frame: int, pts: float, removed: set[int], events: list[ZoneEvent]) -> None:
        """Tracks the tracker removed, and zones whose anchor it removed, exit now."""
        if not removed:
            return
        for (name, anchor), present in list(self._presence.items()):
            gone = list(present) if anchor in removed else [tid for tid in present if tid in removed]
            for track_id in gone:
                p = present.pop(track_id)
                if p.inside:
                    events.append(p.event("exit", name, track_id, anchor, frame, pts))
            if not present:
                del self._presence[(name, anchor)]

    def _step(self, region: Region, track: TrackObservation, frame: int, pts: float, inside: bool, pixels: int,
              events: list[ZoneEvent]) -> None:
        zone, key = region.zone, (region.zone.name, region.anchor_id)
        track_id = track.track_id
        presence = self._presence.get(key, {}).get(track_id)
        if presence is None:
            if not inside:
                return
            presence = _Presence(track.class_name, track.track_uid, region.anchor_uid)
            self._presence.setdefault(key, {})[track_id] = presence
        present = self._presence[key]
        if inside == presence.inside:
            presence.streak = 0
            if not inside:
                del present[track_id]  # only tracks inside or on their way in are kept
            elif (zone.max_dwell_s is not None and not presence.dwell_reported
                  and pts - presence.entered_pts + _ROUNDING_S >= zone.max_dwell_s):
                presence.dwell_reported = True
                events.append(presence.event("dwell_exceeded", zone.name, track_id, region.anchor_id, frame, pts))
            return
        presence.streak += 1
        if inside and presence.streak >= zone.enter_frames:
            presence.inside, presence.streak, presence.entered_pts = True, 0, pts
            events.append(ZoneEvent("enter", zone.name, track_id, track.track_uid, track.class_name, frame, 0.0,
                                    region.anchor_id, region.anchor_uid, pixels, round(pixels / track.mask.area, 4)))
        elif not inside and presence.streak >= zone.exit_frames:
            events.append(presence.event("exit", zone.name, track_id, region.anchor_id, frame, pts))
            del present[track_id]
