"""What ``maskwatch run`` and ``track`` write: observations, events, track summaries, MOTS txt (engine sinks).

Rows are streamed to disk as frames complete (CSV appended, Parquet written in
row groups), so memory stays flat over long videos and an interrupted run keeps
everything up to its last completed frame.
"""

from __future__ import annotations

import csv
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from analytics.analyzer import FrameAnalytics
from analytics.records import EVENT_COLUMNS, EventRecord, event_row
from maskwatch.engine import Sink, Step
from storage.store import Store
from tracker.mots_output import mots_lines
from tracker.tracker import TrackObservation

OBSERVATION_COLUMNS = ["frame", "pts", "track_id", "track_uid", "class_id", "class_name", "score", "x0", "y0", "x1", "y1",
                       "area", "cx", "cy"]
TRACK_COLUMNS = ["track_id", "track_uid", "class_id", "class_name", "first_frame", "last_frame", "frames_seen", "median_area"]


class _TableWriter:
    """Appends rows to ``name.csv`` and, optionally, ``name.parquet`` in row groups."""

    def __init__(self, out_dir: Path, name: str, columns: list[str], parquet: bool, group_rows: int = 5000) -> None:
        self.columns = columns
        self.csv_path = out_dir / f"{name}.csv"
        self.parquet_path = out_dir / f"{name}.parquet" if parquet else None
        self._file = self.csv_path.open("w", newline="")
        self._csv = csv.writer(self._file)
        self._csv.writerow(columns)
        self._group: list[list] = []
        self._group_rows = group_rows
        self._parquet: pq.ParquetWriter | None = None

    def write(self, rows: list[list]) -> None:
        self._csv.writerows(rows)
        if self.parquet_path is not None:
            self._group.extend(rows)
            if len(self._group) >= self._group_rows:
                self._flush_parquet()

    def _flush_parquet(self) -> None:
        if not self._group and self._parquet is not None:
            return
        table = pa.Table.from_pandas(pd.DataFrame(self._group, columns=self.columns), preserve_index=False)
        if self._parquet is None:
            self._parquet = pq.ParquetWriter(self.parquet_path, table.schema)
        self._parquet.write_table(table)
        self._group = []

    def flush(self) -> None:
        self._file.flush()

    def close(self) -> None:
        self._file.close()
        if self.parquet_path is not None:
            self._flush_parquet()
            self._parquet.close()


@dataclass
class _TrackStats:
    class_id: int
    class_name: str
    first_frame: int
    last_frame: int
    frames_seen: int = 0
    areas: list[int] = field(default_factory=list)


class MotsFile(Sink):
    """``tracks.mots.txt``: whole tracks (backfill included) in frame order, numbered as the input numbers its frames."""

    def __init__(self, path: Path, first_frame: int) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path, self.first_frame = path, first_frame
        self._file = path.open("w")
        self._size: tuple[int, int] = (0, 0)
        self.track_ids: set[int] = set()

    def on_frame(self, step: Step) -> None:
        self._size = tuple(step.detections.image_size)

    def on_completed(self, frame: int, observations: list[TrackObservation]) -> None:
        self.track_ids.update(o.track_id for o in observations)
        self._file.writelines(line + "\n" for line in mots_lines(self.first_frame + frame, observations, self._size))

    def close(self, status: str) -> None:
        self._file.close()


class RunFiles(Sink):
    """The tables of ``maskwatch run``: observations and events as they complete, tracks and summary.json at the end."""

    def __init__(self, out_dir: Path, parquet: bool = True) -> None:
        out_dir.mkdir(parents=True, exist_ok=True)
        self.out_dir, self.parquet = out_dir, parquet
        self.observations = _TableWriter(out_dir, "observations", OBSERVATION_COLUMNS, parquet)
        self.events = _TableWriter(out_dir, "events", list(EVENT_COLUMNS), parquet, group_rows=500)
        self.tracks: dict[str, _TrackStats] = {}  # by track_uid
        self._ids: dict[str, int] = {}  # track_uid -> the small id shown
        self.event_counts: dict[str, int] = defaultdict(int)

    def on_frame(self, step: Step) -> None:
        if step.analysis is not None:
            self._write_events(step.analysis.events)

    def on_final(self, analysis: FrameAnalytics) -> None:
        self._write_events(analysis.events)

    def on_completed(self, frame: int, observations: list[TrackObservation]) -> None:
        """One completed frame: a row per track, and per-track stats."""
        rows = []
        for obs in observations:
            cx, cy = obs.mask.centroid()
            x0, y0, x1, y1 = (float(v) for v in obs.box)
            rows.append([frame, round(obs.pts, 4), obs.track_id, obs.track_uid, obs.class_id, obs.class_name,
                         round(obs.score, 4), x0, y0, x1, y1, obs.mask.area, round(cx, 2), round(cy, 2)])
            stats = self.tracks.get(obs.track_uid)
            if stats is None:
                stats = self.tracks[obs.track_uid] = _TrackStats(obs.class_id, obs.class_name, frame, frame)
            stats.last_frame = max(stats.last_frame, frame)
            stats.first_frame = min(stats.first_frame, frame)
            stats.frames_seen += 1
            stats.areas.append(obs.mask.area)
            self._ids[obs.track_uid] = obs.track_id
        self.observations.write(rows)

    def _write_events(self, events: list[EventRecord]) -> None:
        self.events.write([list(event_row(e).values()) for e in events])
        for e in events:
            self.event_counts[f"{e.zone or e.line or e.rule}:{e.kind}"] += 1

    def close(self, status: str) -> None:
        """Finish the streamed tables and write the track table."""
        self.observations.close()
        self.events.close()
        table = pd.DataFrame(
            [
                {"track_id": self._ids[uid], "track_uid": uid, "class_id": s.class_id, "class_name": s.class_name,
                 "first_frame": s.first_frame, "last_frame": s.last_frame, "frames_seen": s.frames_seen,
                 "median_area": float(np.median(s.areas))}
                for uid, s in sorted(self.tracks.items(), key=lambda item: self._ids[item[0]])
            ],
            columns=TRACK_COLUMNS,
        )
        table.to_csv(self.out_dir / "tracks.csv", index=False)
        if self.parquet:
            table.to_parquet(self.out_dir / "tracks.parquet", index=False)

    def files(self) -> dict[str, str]:
        names = {"tracks_csv": "tracks.csv", "observations_csv": "observations.csv", "events_csv": "events.csv"}
        if self.parquet:
            names.update(tracks_parquet="tracks.parquet", observations_parquet="observations.parquet",
                         events_parquet="events.parquet")
        return {k: str(self.out_dir / v) for k, v in names.items()}

    def summary(self) -> dict:
        return {"objects_tracked": len(self.tracks), "events": dict(sorted(self.event_counts.items()))}


class StoreSink(Sink):
    """Every frame's analytics into the store under one run; the run ends with the stream's status."""

    def __init__(self, store: Store, run_id: int) -> None:
        self.store, self.run_id, self.frames = store, run_id, 0

    def on_frame(self, step: Step) -> None:
        self.frames += 1
        if step.analysis is not None:
            self.on_final(step.analysis)

    def on_final(self, analysis: FrameAnalytics) -> None:
        self.store.write(self.run_id, observations=analysis.observations, tracks=analysis.tracks, events=analysis.events,
                         alarms=analysis.alarms, counts=analysis.counts)

    def close(self, status: str) -> None:
        self.store.end_run(self.run_id, frames=self.frames, status=status, ended_ts=time.time())
        self.store.close()
