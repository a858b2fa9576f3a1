"""What ``maskwatch run`` writes: observations, track summaries, MOTS txt, summary.json.

Rows are streamed to disk as frames complete (CSV appended, Parquet written in
row groups), so memory stays flat over long videos and an interrupted run keeps
everything up to its last completed frame.
"""

from __future__ import annotations

import csv
import json
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from analytics.records import EventRecord
from tracker.mots_output import mots_lines
from tracker.tracker import TrackObservation

OBSERVATION_COLUMNS = ["frame", "pts", "track_id", "class_id", "class_name", "score", "x0", "y0", "x1", "y1", "area", "cx", "cy"]
EVENT_COLUMNS = ["id", "kind", "camera", "ts", "frame", "pts", "track_id", "class_name", "zone", "line", "rule", "value", "unit",
                 "values", "snapshot"]


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


class RunOutputs:
    """Receives completed frames (observations in frame order) and analytics events."""

    def __init__(self, out_dir: Path, image_size: tuple[int, int], fps: float, parquet: bool = True) -> None:
        out_dir.mkdir(parents=True, exist_ok=True)
        self.out_dir, self.image_size, self.fps, self.parquet = out_dir, image_size, fps, parquet
        self.observations = _TableWriter(out_dir, "observations", OBSERVATION_COLUMNS, parquet)
        self.events = _TableWriter(out_dir, "events", EVENT_COLUMNS, parquet, group_rows=500)
        self.mots_path = out_dir / "tracks.mots.txt"
        self._mots = self.mots_path.open("w")
        self.tracks: dict[int, _TrackStats] = {}
        self.event_counts: dict[str, int] = defaultdict(int)

    def write_frame(self, frame: int, observations: list[TrackObservation]) -> None:
        """One completed frame: rows, per-track stats, and MOTS lines with overlaps resolved."""
        rows = []
        for obs in observations:
            cx, cy = obs.mask.centroid()
            x0, y0, x1, y1 = (float(v) for v in obs.box)
            rows.append([frame, round(frame / self.fps, 4), obs.track_id, obs.class_id, obs.class_name, round(obs.score, 4),
                         x0, y0, x1, y1, obs.mask.area, round(cx, 2), round(cy, 2)])
            stats = self.tracks.get(obs.track_id)
            if stats is None:
                stats = self.tracks[obs.track_id] = _TrackStats(obs.class_id, obs.class_name, frame, frame)
            stats.last_frame = max(stats.last_frame, frame)
            stats.first_frame = min(stats.first_frame, frame)
            stats.frames_seen += 1
            stats.areas.append(obs.mask.area)
        self.observations.write(rows)
        self._mots.writelines(line + "\n" for line in mots_lines(frame + 1, observations, self.image_size))

    def write_events(self, events: list[EventRecord]) -> None:
        self.events.write([
            [e.id, e.kind, e.camera, e.ts, e.frame, e.pts, e.track_id, e.class_name, e.zone, e.line, e.rule, e.value, e.unit,
             json.dumps(e.values), e.snapshot]
            for e in events
        ])
        for e in events:
            self.event_counts[f"{e.zone or e.line or e.rule}:{e.kind}"] += 1

    def close(self, summary: dict, extra_files: dict[str, Path] | None = None) -> dict:
        """Finish every file, write the track summary and ``summary.json``; returns the summary."""
        self.observations.close()
        self.events.close()
        self._mots.close()
        table = pd.DataFrame(
            [
                {"track_id": tid, "class_id": s.class_id, "class_name": s.class_name, "first_frame": s.first_frame,
                 "last_frame": s.last_frame, "frames_seen": s.frames_seen, "median_area": float(np.median(s.areas))}
                for tid, s in sorted(self.tracks.items())
            ],
            columns=["track_id", "class_id", "class_name", "first_frame", "last_frame", "frames_seen", "median_area"],
        )
        table.to_csv(self.out_dir / "tracks.csv", index=False)
        files = {"tracks_csv": "tracks.csv", "observations_csv": "observations.csv", "events_csv": "events.csv", "mots": self.mots_path.name}
        if self.parquet:
            table.to_parquet(self.out_dir / "tracks.parquet", index=False)
            files.update(tracks_parquet="tracks.parquet", observations_parquet="observations.parquet", events_parquet="events.parquet")
        paths = {k: str(self.out_dir / v) for k, v in files.items()} | {k: str(v) for k, v in (extra_files or {}).items()}
        summary = {**summary, "objects_tracked": len(self.tracks),
                   "events": dict(sorted(self.event_counts.items())), "files": paths}
        (self.out_dir / "summary.json").write_text(json.dumps(summary, indent=2))
        return summary
