"""Tracks in, operator analytics out: one ``update`` per frame, read top to bottom.

1. newly confirmed tracks bring their tentative frames (backfill): their
   centroid paths are replayed through the counting lines first;
2. every track seen now is measured (on measuring frames) and its running
   summary updated — only clean measurements (not touching the border or
   another mask) enter the medians;
3. zones (fixed and dynamic) decide enter/exit/dwell from mask pixels;
4. lines, size rules and count rules add their events;
5. alarm rules promote events to alarms, with a cooldown per (rule, track);
6. each event gets its snapshot (a tight crop) and context image (the whole frame, downscaled);
   observations and visible counts are sampled.

Only confirmed tracks reach this stage, so tentative tracks and flickers
never inflate a count. Every duration (dwell, speed, alarm cooldown, count interval) is a
difference of the frames' monotonic timestamps (``pts``), never a frame count
over a rate, so dropped or irregular frames do not stretch it; records carry
the wall-clock ``ts`` of the same frame and the track's ``track_uid``.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from analytics.calibration import Calibration
from analytics.config import AlarmRule, CameraConfig, CountRule, RulesConfig, SamplingConfig, SizeRule
from analytics.lines import LineCounter, LineCrossing
from analytics.measure import measure, touches_border, touching
from analytics.records import (
    SIZE_FIELDS,
    AlarmRecord,
    CountRecord,
    EventRecord,
    Measurement,
    ObservationRecord,
    TrackRecord,
)
from analytics.snapshots import SnapshotWriter
from analytics.zones import ZoneEvent, ZoneMonitor
from tracker.tracker import FrameTracks, TrackObservation

_SAMPLES_KEPT = 1000  # per track and size field: medians over the latest 1000 clean measurements


@dataclass
class FrameAnalytics:
    """What one frame produced, for the store and the live view."""

    frame: int
    ts: float
    observations: list[ObservationRecord] = field(default_factory=list)
    tracks: list[TrackRecord] = field(default_factory=list)
    events: list[EventRecord] = field(default_factory=list)
    alarms: list[AlarmRecord] = field(default_factory=list)
    counts: list[CountRecord] = field(default_factory=list)
    visible: dict[str, int] = field(default_factory=dict)  # class → tracks seen in this frame
    occupancy: dict[str, dict[str, int]] = field(default_factory=dict)  # zone → class → tracks inside


@dataclass
class _TrackSummary:
    track_uid: str
    class_name: str
    first_frame: int
    first_ts: float
    last_frame: int = 0
    last_ts: float = 0.0
    frames_seen: int = 0
    sizes: deque = field(default_factory=lambda: deque(maxlen=_SAMPLES_KEPT))  # clean measurements, one tuple of SIZE_FIELDS each
    speeds: deque = field(default_factory=lambda: deque(maxlen=_SAMPLES_KEPT))
    last_world: tuple[float, float, float] | None = None  # (x, y, pts) of the last measured centroid
    fired: set[str] = field(default_factory=set)  # size rules already raised
    snapshot: str | None = None


def quartiles(values: np.ndarray) -> np.ndarray:
    """25th, 50th and 75th percentiles along axis 0 (numpy's default linear method), from one sort.

    Runs for every live track: one sort instead of np.percentile's per-call overhead.
    """
    ordered = np.sort(values, axis=0)
    position = np.array([0.25, 0.5, 0.75]) * (len(ordered) - 1)
    low = np.floor(position).astype(int)
    high = np.minimum(low + 1, len(ordered) - 1)
    weight = (position - low).reshape(-1, *([1] * (ordered.ndim - 1)))
    return ordered[low] * (1 - weight) + ordered[high] * weight


def median_iqr(samples) -> dict[str, tuple[float, float]]:
    """Median and interquartile range of each size field over ``samples`` (rows of SIZE_FIELDS)."""
    q1, q2, q3 = quartiles(np.asarray(samples, dtype=np.float64))
    return {name: (float(q2[i]), float(q3[i] - q1[i])) for i, name in enumerate(SIZE_FIELDS)}


class Analyzer:
    """Counts, sizes, zones, lines, rules and alarms for one camera."""

    def __init__(
        self,
        camera: CameraConfig,
        rules: RulesConfig | None = None,
        alarms: list[AlarmRule] | None = None,
        *,
        sampling: SamplingConfig | None = None,
        snapshot_dir: Path | None = None,
    ) -> None:
        self.camera, self.rules, self.alarm_rules = camera, rules or RulesConfig(), alarms or []
        self.sampling = sampling or SamplingConfig()
        self.calibration = Calibration(camera.calibration)
        self.zones = ZoneMonitor(camera.zones, camera.dynamic_zones, self.calibration)
        self.lines = LineCounter(camera.lines)
        self.snapshots = SnapshotWriter(snapshot_dir, camera.name) if snapshot_dir and self.sampling.snapshots else None
        self.tracks: dict[int, _TrackSummary] = {}
        self.unique: dict[str, int] = {}  # class → confirmed tracks so far
        self.alarm_total = 0
        self._count_active: set[str] = set()  # count rules currently above their threshold
        self._cooldown: dict[tuple[str, object], float] = {}  # (rule, track uid or (zone, rule)) → pts of last alarm
        self._classes_seen: set[str] = set()
        self._next_count_pts = 0.0

    def update(self, frame: int, pts: float, ts: float, image: np.ndarray | None, result: FrameTracks) -> FrameAnalytics:
        """One frame: ``pts`` its monotonic time in s (the clock of every duration), ``ts`` its wall-clock epoch."""
        out = FrameAnalytics(frame, ts)
        image_size = image.shape[:2] if image is not None else None
        current = {t.track_id: t for t in result.tracks}
        crossings: list[LineCrossing] = []

        for obs in sorted(result.backfill, key=lambda o: o.frame):  # 1
            self._summary(obs, ts - (pts - obs.pts)).frames_seen += 1
            crossings += self.lines.update(obs.frame, obs.pts, obs.track_id, obs.class_name, obs.mask.centroid())

        measuring = frame % self.sampling.measure_every == 0  # 2
        observing = frame % self.sampling.observe_every == 0
        measurements: dict[int, Measurement | None] = {}
        if (measuring or observing) and result.tracks:
            contact = touching([t.mask for t in result.tracks])
            for obs, touches in zip(result.tracks, contact):
                clean = not touches and not (image_size and touches_border(obs.mask, image_size))
                measurements[obs.track_id] = measure(obs.mask, self.calibration, clean)
        sampled: list[TrackObservation] = []  # tracks with a new clean measurement: size rules look at these
        for obs in result.tracks:
            summary = self._summary(obs, ts)
            summary.last_frame, summary.last_ts = frame, ts
            summary.frames_seen += 1
            cx, cy = obs.mask.centroid()
            m = measurements.get(obs.track_id)
            if m is not None and m.clean:
                summary.sizes.append(tuple(getattr(m, name) for name in SIZE_FIELDS))
                sampled.append(obs)
            speed = self._speed(summary, cx, cy, pts) if obs.track_id in measurements else None
            crossings += self.lines.update(frame, pts, obs.track_id, obs.class_name, (cx, cy))
            if observing:
                out.observations.append(
                    ObservationRecord(ts, frame, pts, obs.track_id, obs.track_uid, obs.class_name, obs.score,
                                      tuple(float(v) for v in obs.box), round(cx, 2), round(cy, 2), obs.mask.area, m,
                                      speed, ())
                )

        zone_events = self.zones.update(frame, pts, image_size or (0, 0), result.tracks, result.removed_ids)  # 3
        if out.observations and (self.camera.zones or self.camera.dynamic_zones):
            out.observations = [_with_zones(o, self.zones.inside_zones(o.track_id)) for o in out.observations]
        events = [self._zone_event(e, ts, pts) for e in zone_events]
        events += [self._line_event(c, ts, pts) for c in crossings]  # 4
        for obs in sampled:
            events += self._size_events(obs, ts, frame, pts)
        out.visible = _count_classes(result.tracks)
        out.occupancy = self.zones.occupancy()
        events += self._count_events(out, ts, frame, pts)

        for event in events:  # 5, 6
            mask = current[event.track_id].mask if event.track_id in current else None
            if self.snapshots is not None and image is not None:
                event = replace(event, snapshot=self.snapshots.save(event.id, ts, image, mask),
                                context_snapshot=self.snapshots.save_context(event.id, ts, image, mask))
                if event.track_id in self.tracks and self.tracks[event.track_id].snapshot is None:
                    self.tracks[event.track_id].snapshot = event.snapshot
            out.events.append(event)
            out.alarms += self._alarms(event)
        self.alarm_total += len(out.alarms)

        summarizing = pts + 1e-9 >= self._next_count_pts  # counts and live track summaries: every count_every_s
        if summarizing:
            out.tracks = [self.track_record(tid) for tid in current]
        out.tracks += [self.track_record(tid) for tid in result.removed_ids if tid in self.tracks]
        for tid in result.removed_ids:
            self.lines.forget(tid)
            self.tracks.pop(tid, None)
        self._classes_seen.update(out.visible)
        if summarizing:
            out.counts = self._count_records(out, ts, frame)
            self._next_count_pts = pts + self.sampling.count_every_s
        return out

    def close(self, frame: int, ts: float, pts: float) -> FrameAnalytics:
        """End of stream: every track still in a zone exits; final track summaries."""
        out = FrameAnalytics(frame, ts)
        out.events = [self._zone_event(e, ts, pts) for e in self.zones.close(frame, pts)]
        for event in out.events:
            out.alarms += self._alarms(event)
        self.alarm_total += len(out.alarms)
        out.tracks = [self.track_record(tid) for tid in self.tracks]
        return out

    def set_geometry(self, camera: CameraConfig) -> None:
        """Use new zones, dynamic zones and lines from the next frame on (an edit while running).

        Zone memberships and line paths start afresh: a track inside a zone that
        was redrawn enters it again. Counts, sizes and track summaries are kept.
        """
        self.camera = camera
        self.zones = ZoneMonitor(camera.zones, camera.dynamic_zones, self.calibration)
        totals = self.lines.totals
        self.lines = LineCounter(camera.lines)
        self.lines.totals.update(totals)
        self._count_active.clear()

    def line_counts(self) -> dict[str, dict[str, dict[str, int]]]:
        """line → class → {"in": n, "out": n} so far."""
        counts: dict[str, dict[str, dict[str, int]]] = {}
        for (line, cls, direction), n in sorted(self.lines.totals.items()):
            counts.setdefault(line, {}).setdefault(cls, {"in": 0, "out": 0})[direction] = n
        return counts

    def track_record(self, track_id: int) -> TrackRecord:
        s = self.tracks[track_id]
        sizes = median_iqr(s.sizes) if s.sizes else {}
        return TrackRecord(
            track_id, s.track_uid, s.class_name, s.first_ts, s.last_ts, s.first_frame, s.last_frame, s.frames_seen,
            self.calibration.unit, sizes, len(s.sizes), float(quartiles(np.asarray(s.speeds))[1]) if s.speeds else None,
            s.snapshot,
        )

    def _summary(self, obs: TrackObservation, ts: float) -> _TrackSummary:
        summary = self.tracks.get(obs.track_id)
        if summary is None:
            summary = _TrackSummary(obs.track_uid, obs.class_name, obs.frame, ts, obs.frame, ts)
            self.tracks[obs.track_id] = summary
            self.unique[obs.class_name] = self.unique.get(obs.class_name, 0) + 1
        return summary

    def _speed(self, summary: _TrackSummary, cx: float, cy: float, pts: float) -> float | None:
        """Centroid speed in unit/s since the track's previous measurement (on the ground plane if calibrated)."""
        (wx, wy), = self.calibration.to_world([(cx, cy)])
        previous, summary.last_world = summary.last_world, (wx, wy, pts)
        if previous is None or pts <= previous[2]:
            return None
        speed = float(np.hypot(wx - previous[0], wy - previous[1]) / (pts - previous[2]))
        summary.speeds.append(speed)
        return round(speed, 4)

    def _zone_event(self, e: ZoneEvent, ts: float, pts: float) -> EventRecord:
        kind = {"enter": "zone_enter", "exit": "zone_exit", "dwell_exceeded": "dwell_exceeded"}[e.kind]
        dwell_s = round(e.dwell_s, 3)
        values: dict = {"dwell_s": dwell_s}
        if e.anchor_id is not None:
            values.update(anchor_track_id=e.anchor_id, anchor_track_uid=e.anchor_uid)
        if e.kind == "enter":  # the value that decided it: how much of the mask was inside
            values.update(inside_pixels=e.inside_pixels, inside_fraction=e.inside_fraction)
            value, unit = e.inside_fraction, "fraction"
        else:
            value, unit = dwell_s, "s"
        return EventRecord(kind, self.camera.name, ts, e.frame, pts, e.track_id, e.track_uid, e.class_name, zone=e.zone,
                           value=value, unit=unit, values=values)

    def _line_event(self, c: LineCrossing, ts: float, pts: float) -> EventRecord:
        """A crossing at the time of the frame it happened in (earlier than this one when backfilled)."""
        return EventRecord("line_cross", self.camera.name, ts - (pts - c.pts), c.frame, c.pts, c.track_id,
                           self.tracks[c.track_id].track_uid, c.class_name, line=c.line,
                           values={"direction": c.direction, "x": round(c.point[0], 2), "y": round(c.point[1], 2)})

    def _size_events(self, obs: TrackObservation, ts: float, frame: int, pts: float) -> list[EventRecord]:
        summary = self.tracks[obs.track_id]
        events = []
        for rule in self.rules.sizes:
            if rule.name in summary.fired or (rule.classes is not None and obs.class_name not in rule.classes):
                continue
            n = len(summary.sizes)
            if n < rule.min_samples or n % rule.min_samples:  # judged at min_samples, then every min_samples more
                continue
            value = float(quartiles(np.asarray([sample[SIZE_FIELDS.index(rule.measure)] for sample in summary.sizes]))[1])
            if _outside(rule, value):
                summary.fired.add(rule.name)
                unit = self.calibration.unit + ("²" if rule.measure == "area" else "")
                events.append(EventRecord("size_rule", self.camera.name, ts, frame, pts, obs.track_id, obs.track_uid,
                                          obs.class_name, rule=rule.name, value=round(value, 4), unit=unit,
                                          values={"measure": rule.measure, "min": rule.min, "max": rule.max, "samples": n}))
        return events

    def _count_events(self, out: FrameAnalytics, ts: float, frame: int, pts: float) -> list[EventRecord]:
        events = []
        for rule in self.rules.counts:
            count = _rule_count(rule, out)
            if count > rule.above and rule.name not in self._count_active:
                self._count_active.add(rule.name)
                events.append(EventRecord("count_threshold", self.camera.name, ts, frame, pts, zone=rule.zone, rule=rule.name,
                                          value=float(count), unit="objects", values={"above": rule.above, "classes": rule.classes}))
            elif count <= rule.above:
                self._count_active.discard(rule.name)
        return events

    def _alarms(self, event: EventRecord) -> list[AlarmRecord]:
        alarms = []
        for rule in self.alarm_rules:
            if not _matches(rule, event):
                continue
            key = (rule.name, event.track_uid if event.track_uid is not None else (event.zone, event.rule))
            last = self._cooldown.get(key)
            if last is not None and event.pts - last < rule.cooldown_s:
                continue
            self._cooldown[key] = event.pts
            alarms.append(AlarmRecord(event.id, rule.name, rule.severity, event.camera, event.ts, event.track_id,
                                      event.track_uid, channels=tuple(rule.notify)))
        return alarms

    def _count_records(self, out: FrameAnalytics, ts: float, frame: int) -> list[CountRecord]:
        records = [CountRecord(ts, frame, cls, None, out.visible.get(cls, 0)) for cls in sorted(self._classes_seen)]
        zone_names = [z.name for z in self.camera.zones] + [z.name for z in self.camera.dynamic_zones]
        for zone in zone_names:
            inside = out.occupancy.get(zone, {})
            records += [CountRecord(ts, frame, cls, zone, inside.get(cls, 0)) for cls in sorted(self._classes_seen)]
        return records


def _count_classes(tracks: list[TrackObservation]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for t in tracks:
        counts[t.class_name] = counts.get(t.class_name, 0) + 1
    return dict(sorted(counts.items()))


def _rule_count(rule: CountRule, out: FrameAnalytics) -> int:
    counts = out.visible if rule.zone is None else out.occupancy.get(rule.zone, {})
    return sum(n for cls, n in counts.items() if rule.classes is None or cls in rule.classes)


def _outside(rule: SizeRule, value: float) -> bool:
    return (rule.min is not None and value < rule.min) or (rule.max is not None and value > rule.max)


def _matches(rule: AlarmRule, event: EventRecord) -> bool:
    return (
        event.kind in rule.kinds
        and (rule.zones is None or event.zone in rule.zones)
        and (rule.lines is None or event.line in rule.lines)
        and (rule.rules is None or event.rule in rule.rules)
        and (rule.classes is None or event.class_name in rule.classes)
    )


def _with_zones(obs: ObservationRecord, zones: tuple[str, ...]) -> ObservationRecord:
    return replace(obs, zones=zones) if zones else obs
