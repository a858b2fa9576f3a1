"""The store's writer: records from :mod:`analytics.records` into SQLite or PostgreSQL.

The tables are :mod:`storage.schema`'s; opening a store migrates it first
(:mod:`storage.migrations`). Writes are buffered per frame and flushed as one
transaction per batch, so the database sees a few large executemany inserts
instead of one commit per frame, and a crash loses at most the unflushed batch.
Alarms are flushed at once: an operator must never wait for a batch to fill.

Every alarm carries its outbox: one ``deliveries`` row per channel it must reach
(webhook names, "mqtt"), inserted in the alarm's own transaction, so an alarm is
never stored without them nor they without it. :mod:`delivery.outbox` sends them.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Self

from sqlalchemy import Double, Engine, Integer, Table, case, cast, delete, func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import make_url

from analytics.records import (
    SIZE_FIELDS,
    AlarmRecord,
    CountRecord,
    EventRecord,
    ObservationRecord,
    TrackRecord,
    event_row,
    json_default,
)
from storage.engine import make_engine, open_engine
from storage.live import process_key
from storage.migrations import upgrade
from storage.schema import (
    RUN_STATUSES,
    alarms,
    cameras,
    counts,
    counts_hourly,
    events,
    metadata,
    observations,
    runs,
    tracks,
)

log = logging.getLogger(__name__)

# Plain inserts, in flush order: alarms reference events and deliveries alarms, so they go first.
_INSERTED = ("observations", "events", "alarms", "deliveries", "counts")


def _hourly_rows(count_rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A batch of count rows folded into per-hour rows (max, sum, samples) per camera, class and zone."""
    folded: dict[tuple, dict[str, Any]] = {}
    for row in count_rows:
        hour = row["ts"] - row["ts"] % 3600.0
        key = (row["camera_id"], hour, row["class_name"], row["zone"] or "")
        agg = folded.get(key)
        if agg is None:
            folded[key] = {"camera_id": key[0], "hour_ts": hour, "class_name": key[2], "zone": key[3],
                           "visible_max": row["visible"], "visible_sum": float(row["visible"]), "samples": 1}
        else:
            agg["visible_max"] = max(agg["visible_max"], row["visible"])
            agg["visible_sum"] += row["visible"]
            agg["samples"] += 1
    return list(folded.values())


def _hourly_upsert(engine: Engine) -> postgresql.Insert | sqlite.Insert:
    """Insert an hour, or merge into it: the larger max, summed sums and sample counts."""
    stmt = _dialect_insert(engine, counts_hourly)
    new = stmt.excluded
    return stmt.on_conflict_do_update(
        index_elements=["camera_id", "hour_ts", "class_name", "zone"],
        set_={
            "visible_max": case((new.visible_max > counts_hourly.c.visible_max, new.visible_max), else_=counts_hourly.c.visible_max),
            "visible_sum": counts_hourly.c.visible_sum + new.visible_sum,
            "samples": counts_hourly.c.samples + new.samples,
        },
    )


def rebuild_hourly_counts(url: str) -> int:
    """Recompute ``counts_hourly`` from ``counts`` (for stores filled by other means, e.g. bulk loads); returns rows."""
    engine = open_engine(url)
    hours = func.floor(counts.c.ts / 3600.0) if engine.dialect.name == "postgresql" else cast(counts.c.ts / 3600.0, Integer)
    hour = hours * 3600.0  # (times are positive: truncation is floor on SQLite, which may lack floor())
    zone = func.coalesce(counts.c.zone, "")
    select_hours = select(
        counts.c.camera_id, hour.label("hour_ts"), counts.c.class_name, zone.label("zone"),
        func.max(counts.c.visible), func.sum(cast(counts.c.visible, Double)), func.count(),
    ).group_by(counts.c.camera_id, hour, counts.c.class_name, zone)
    try:
        with engine.begin() as conn:
            conn.execute(delete(counts_hourly))
            conn.execute(counts_hourly.insert().from_select(
                ["camera_id", "hour_ts", "class_name", "zone", "visible_max", "visible_sum", "samples"], select_hours))
            return conn.execute(select(func.count()).select_from(counts_hourly)).scalar_one()
    finally:
        engine.dispose()


def _owner() -> str:
    """This process as the owner of the runs it writes: its host and :func:`storage.live.process_key`."""
    return f"{socket.gethostname()} {process_key(os.getpid())}"


def _owner_alive(owner: str | None) -> bool:
    """Whether the process that started a running run may still write it.

    Only processes of this host can be looked at: another host's are presumed
    alive, to be closed by that host. A run without an owner was started before
    owners were recorded (revision 0003), by a maskwatch since upgraded.
    """
    if owner is None:
        return False
    host, _, key = owner.rpartition(" ")
    parts = key.split("/")
    if host != socket.gethostname() or len(parts) != 3:  # elsewhere, or written where /proc could not tell
        return True
    return process_key(int(parts[1])) == key


def _dialect_insert(engine: Engine, table: Table) -> postgresql.Insert | sqlite.Insert:
    """``INSERT`` with ``ON CONFLICT`` support: both dialects spell it the same way."""
    return (postgresql if engine.dialect.name == "postgresql" else sqlite).insert(table)


def _opt(cast: type, value: Any) -> Any:
    """``cast(value)`` unless None: numpy scalars from the tracker become plain Python numbers for the driver."""
    return None if value is None else cast(value)


_NO_SIZE = dict.fromkeys((*SIZE_FIELDS, "angle", "unit", "clean"))


def _observation_row(run_id: int, camera_id: int, o: ObservationRecord) -> dict[str, Any]:
    s = o.size
    sizes = _NO_SIZE if s is None else {
        "area": float(s.area), "perimeter": float(s.perimeter), "length": float(s.length), "width": float(s.width),
        "angle": float(s.angle), "diameter": float(s.diameter), "unit": s.unit, "clean": bool(s.clean),
    }  # fmt: skip
    x0, y0, x1, y1 = o.box
    return {
        "run_id": run_id, "camera_id": camera_id, "ts": float(o.ts), "frame": int(o.frame), "pts": float(o.pts),
        "track_id": int(o.track_id), "track_uid": o.track_uid, "class_name": o.class_name, "score": float(o.score),
        "x0": float(x0), "y0": float(y0), "x1": float(x1), "y1": float(y1), "cx": float(o.cx), "cy": float(o.cy),
        "area_px": int(o.area_px), **sizes, "speed": _opt(float, o.speed), "zones": ",".join(o.zones),
    }  # fmt: skip


def _track_row(run_id: int, camera_id: int, t: TrackRecord) -> dict[str, Any]:
    sizes = {f"{f}_{stat}": None for f in SIZE_FIELDS for stat in ("median", "iqr")}
    for f, (median, iqr) in t.sizes.items():
        sizes[f"{f}_median"], sizes[f"{f}_iqr"] = float(median), float(iqr)
    return {
        "run_id": run_id, "camera_id": camera_id, "track_id": int(t.track_id), "track_uid": t.track_uid,
        "class_name": t.class_name,
        "first_ts": float(t.first_ts), "last_ts": float(t.last_ts), "first_frame": int(t.first_frame),
        "last_frame": int(t.last_frame), "frames_seen": int(t.frames_seen), "unit": t.unit, **sizes,
        "size_samples": int(t.size_samples), "speed_median": _opt(float, t.speed_median), "snapshot": t.snapshot,
    }  # fmt: skip


def _event_row(run_id: int, camera_id: int, e: EventRecord) -> dict[str, Any]:
    row = event_row(e)
    del row["camera"]  # the run's camera_id stands for it
    row["values_json"] = row.pop("values")
    return row | {"run_id": run_id, "camera_id": camera_id}


def _alarm_row(run_id: int, camera_id: int, a: AlarmRecord) -> dict[str, Any]:
    return {
        "id": a.id, "event_id": a.event_id, "run_id": run_id, "camera_id": camera_id, "ts": float(a.ts),
        "rule": a.rule, "severity": a.severity, "track_id": _opt(int, a.track_id), "track_uid": a.track_uid,
        "state": a.state,
        "acknowledged_by": None, "acknowledged_ts": None,
    }  # fmt: skip


def _delivery_rows(camera_id: int, a: AlarmRecord, now: float) -> list[dict[str, Any]]:
    """One pending outbox row per distinct channel of the alarm, due at once.

    Due by the wall clock ``now``, not the alarm's ``ts``: a file replayed faster than
    real time has alarm times in the future, and its alarms must still go out now.
    """
    return [
        {"alarm_id": a.id, "event_id": a.event_id, "camera_id": camera_id, "channel": channel, "state": "pending",
         "attempts": 0, "last_status": None, "last_error": None, "response": None, "next_attempt_ts": now,
         "created_ts": now, "delivered_ts": None}
        for channel in dict.fromkeys(a.channels)
    ]  # fmt: skip


def _count_row(run_id: int, camera_id: int, c: CountRecord) -> dict[str, Any]:
    return {
        "run_id": run_id, "camera_id": camera_id, "ts": float(c.ts), "frame": int(c.frame),
        "class_name": c.class_name, "zone": c.zone, "visible": int(c.visible),
    }  # fmt: skip


class Store:
    """Buffered writer of one process's runs; also the place for alarm acknowledgement and retention.

    Not thread-safe: one pipeline thread writes. Readers (dashboard, exports) use
    their own connections through :mod:`storage.export`.
    """

    def __init__(self, url: str, *, batch_frames: int = 30, batch_seconds: float = 2.0) -> None:
        """Open the store at ``url``: created (SQLite: with its folder) when missing, migrated when older."""
        parsed = make_url(url)
        if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        self.engine = make_engine(url)
        upgrade(self.engine)
        self.batch_frames = batch_frames
        self.batch_seconds = batch_seconds
        self._runs: dict[int, tuple[int, str]] = {}  # run id -> (camera id, camera name)
        self._rows: dict[str, list[dict[str, Any]]] = {name: [] for name in _INSERTED}
        self._tracks: dict[str, tuple[int, int, TrackRecord]] = {}  # track_uid -> (run, camera, latest)
        self._frames = 0
        self._last_flush = time.monotonic()
        self._upsert_tracks = self._tracks_upsert()
        self._upsert_hourly = _hourly_upsert(self.engine)

    def _tracks_upsert(self) -> postgresql.Insert | sqlite.Insert:
        """One statement for every track row of a batch: insert, or update all but the identity columns."""
        stmt = _dialect_insert(self.engine, tracks)
        keep = {"id", "run_id", "track_id", "track_uid", "camera_id", "first_ts", "first_frame"}
        return stmt.on_conflict_do_update(
            index_elements=["track_uid"],
            set_={c.name: stmt.excluded[c.name] for c in tracks.c if c.name not in keep},
        )

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start_run(
        self, camera: str, source: str, *, segmenter: str, unit: str, started_ts: float, config: dict | None = None,
        node: str | None = None,
    ) -> int:
        """Register a run of ``camera`` (created if new; its unit follows the latest run) and return its id.

        ``node`` is the machine processing it (default: this host's name; ``maskwatch batch`` adds the Ray node).
        The camera's runs left ``running`` by a process that died are closed first (:meth:`close_stale_runs`).
        """
        self.close_stale_runs(camera)
        upsert = _dialect_insert(self.engine, cameras).values(name=camera, unit=unit, created_ts=started_ts)
        upsert = upsert.on_conflict_do_update(index_elements=["name"], set_={"unit": upsert.excluded.unit})
        with self.engine.begin() as conn:
            camera_id = conn.execute(upsert.returning(cameras.c.id)).scalar_one()
            run_id = conn.execute(
                runs.insert().returning(runs.c.id),
                {"camera_id": camera_id, "source": source, "segmenter": segmenter, "started_ts": started_ts,
                 "status": "running", "config_json": json.dumps(config or {}, default=json_default), "owner": _owner(),
                 "node": node or socket.gethostname()},
            ).scalar_one()  # fmt: skip
        self._runs[run_id] = (camera_id, camera)
        return run_id

    def close_stale_runs(self, camera: str) -> list[int]:
        """Close ``camera``'s runs whose process died without closing them (killed, power cut) as ``crashed``.

        Each ends at its last write (its latest observation, event, alarm, count or
        track), else where it started. Runs of live processes are left to them.
        Returns the ids closed.
        """
        with self.engine.connect() as conn:
            stale = [row for row in conn.execute(
                select(runs.c.id, runs.c.camera_id, runs.c.started_ts, runs.c.owner).join(cameras)
                .where(cameras.c.name == camera, runs.c.status == "running")
            ) if not _owner_alive(row.owner)]  # fmt: skip
        closed = []
        for run in stale:
            last = [select(func.max(t.c.ts)).where(t.c.camera_id == run.camera_id, t.c.run_id == run.id)
                    for t in (observations, events, alarms, counts)]  # fmt: skip
            last.append(select(func.max(tracks.c.last_ts)).where(tracks.c.run_id == run.id))
            with self.engine.begin() as conn:
                ended = max([run.started_ts, *(ts for ts in map(conn.scalar, last) if ts is not None)])
                stmt = update(runs).where(runs.c.id == run.id, runs.c.status == "running").values(status="crashed", ended_ts=ended)
                if conn.execute(stmt).rowcount == 1:  # not closed by another process meanwhile
                    closed.append(run.id)
                    log.warning("camera %s: run %d was left running by a process that died; closed as crashed", camera, run.id)
        return closed

    def _camera_of(self, run_id: int) -> tuple[int, str]:
        """(camera id, camera name) of a run, also for runs started by another process."""
        if run_id not in self._runs:
            with self.engine.connect() as conn:
                row = conn.execute(
                    select(runs.c.camera_id, cameras.c.name).join(cameras).where(runs.c.id == run_id)
                ).one_or_none()
            if row is None:
                raise ValueError(f"unknown run id {run_id}")
            self._runs[run_id] = (row.camera_id, row.name)
        return self._runs[run_id]

    def write(
        self,
        run_id: int,
        *,
        observations: Iterable[ObservationRecord] = (),
        tracks: Iterable[TrackRecord] = (),
        events: Iterable[EventRecord] = (),
        alarms: Iterable[AlarmRecord] = (),
        counts: Iterable[CountRecord] = (),
    ) -> None:
        """Buffer one frame's records; flush when the batch is full or old, and at once when it holds alarms.

        Each alarm brings one outbox row per channel in its ``channels``, flushed in
        the same transaction. A failing flush raises and keeps every buffered row,
        this frame's included.
        """
        camera_id, camera = self._camera_of(run_id)
        events, alarms = list(events), list(alarms)
        for record in (*events, *alarms):
            if record.camera != camera:
                raise ValueError(f"{type(record).__name__} for camera {record.camera!r} written to a run of {camera!r}")
        self._rows["observations"].extend(_observation_row(run_id, camera_id, o) for o in observations)
        self._rows["events"].extend(_event_row(run_id, camera_id, e) for e in events)
        self._rows["alarms"].extend(_alarm_row(run_id, camera_id, a) for a in alarms)
        now = time.time()
        for a in alarms:
            self._rows["deliveries"].extend(_delivery_rows(camera_id, a, now))
        self._rows["counts"].extend(_count_row(run_id, camera_id, c) for c in counts)
        for t in tracks:  # only the latest record per track is written: made a row at flush
            self._tracks[t.track_uid] = (run_id, camera_id, t)
        self._frames += 1
        if alarms or self._frames >= self.batch_frames or time.monotonic() - self._last_flush >= self.batch_seconds:
            self.flush()

    def flush(self) -> None:
        """Write everything buffered in one transaction; on error roll back, keep the buffer and raise."""
        if any(self._rows.values()) or self._tracks:
            with self.engine.begin() as conn:
                if self._tracks:
                    track_rows = [_track_row(run, camera, t) for run, camera, t in self._tracks.values()]
                    conn.execute(self._upsert_tracks, track_rows)
                for name, rows in self._rows.items():
                    if rows:
                        conn.execute(metadata.tables[name].insert(), rows)
                if self._rows["counts"]:
                    conn.execute(self._upsert_hourly, _hourly_rows(self._rows["counts"]))
            for rows in self._rows.values():
                rows.clear()
            self._tracks.clear()
        self._frames = 0
        self._last_flush = time.monotonic()

    def end_run(self, run_id: int, *, frames: int, status: str, ended_ts: float) -> None:
        """Flush, then close the run with its frame count and how it ended."""
        if status not in RUN_STATUSES:
            raise ValueError(f"run status must be one of {RUN_STATUSES}, not {status!r}")
        self.flush()
        with self.engine.begin() as conn:
            stmt = update(runs).where(runs.c.id == run_id).values(frames=frames, status=status, ended_ts=ended_ts)
            conn.execute(stmt)

    def acknowledge(self, alarm_id: str, user: str, ts: float | None = None) -> bool:
        """Mark an open alarm acknowledged by ``user``; False if unknown or already acknowledged.

        One conditional UPDATE, so two operators acknowledging at once cannot both win.
        """
        stmt = (
            update(alarms)
            .where(alarms.c.id == alarm_id, alarms.c.state == "open")
            .values(state="acknowledged", acknowledged_by=user, acknowledged_ts=time.time() if ts is None else ts)
        )
        with self.engine.begin() as conn:
            return conn.execute(stmt).rowcount == 1

    @staticmethod
    def alarm_conditions(
        camera_ids: Iterable[int], since: float, until: float, *, states: Iterable[str] = (), severities: Iterable[str] = (),
        rules: Iterable[str] = (), zones: Iterable[str] = (), classes: Iterable[str] = (),
    ) -> list[Any]:  # fmt: skip
        """WHERE conditions on ``alarms`` for a filter; an empty collection (but ``camera_ids``) means any value.

        ``[since, until)`` and the cameras use the ``alarms_camera_ts`` index. ``zones`` match the zone *or* the
        line of the alarm's event and ``classes`` its class, through a correlated EXISTS (a primary-key lookup per
        alarm), so the same conditions serve a SELECT and an UPDATE on both SQLite and PostgreSQL.
        """
        from sqlalchemy import exists, or_

        where = [alarms.c.camera_id.in_(tuple(camera_ids)), alarms.c.ts >= since, alarms.c.ts < until]
        for column, values in ((alarms.c.state, states), (alarms.c.severity, severities), (alarms.c.rule, rules)):
            if values := tuple(values):
                where.append(column.in_(values))
        event = events.alias("alarm_event")  # its own name: the caller may join ``events`` too
        on_event = []
        if zones := tuple(zones):
            on_event.append(or_(event.c.zone.in_(zones), event.c.line.in_(zones)))
        if classes := tuple(classes):
            on_event.append(event.c.class_name.in_(classes))
        if on_event:
            where.append(exists().where(event.c.id == alarms.c.event_id, *on_event))
        return where

    def acknowledge_where(self, user: str, *conditions: Any, ts: float | None = None) -> int:
        """Acknowledge every *open* alarm matching ``conditions`` (see :meth:`alarm_conditions`) in ONE conditional
        UPDATE, recording ``user`` and the time; alarms already acknowledged keep who and when. Returns how many."""
        stmt = (
            update(alarms)
            .where(*conditions, alarms.c.state == "open")
            .values(state="acknowledged", acknowledged_by=user, acknowledged_ts=time.time() if ts is None else ts)
        )
        with self.engine.begin() as conn:
            return conn.execute(stmt).rowcount

    def purge_observations(self, older_than_days: float, now: float | None = None) -> int:
        """Delete observations older than the retention period and return how many.

        Only observations grow with every frame; events, alarms, tracks and counts are
        the audit trail and stay.
        """
        cutoff = (time.time() if now is None else now) - older_than_days * 86400.0
        with self.engine.begin() as conn:
            return conn.execute(delete(observations).where(observations.c.ts < cutoff)).rowcount

    def purge_clips(self, older_than_days: float, media_root: Path, now: float | None = None) -> int:
        """Delete the clip files of events older than the retention period and clear their ``clip``; returns how many.

        Clips are the bulk of the media (a few hundred kB each, snapshots a few tens); the
        events keep their snapshots and context images, as the audit trail they are. A clip
        whose file is already gone is cleared too; paths outside ``media_root`` are never touched.
        """
        cutoff = (time.time() if now is None else now) - older_than_days * 86400.0
        root = Path(media_root).resolve()
        with self.engine.begin() as conn:
            rows = conn.execute(select(events.c.id, events.c.clip).where(events.c.clip.is_not(None), events.c.ts < cutoff)).all()
            for row in rows:
                path = (root / row.clip).resolve()
                if path.is_relative_to(root):
                    path.unlink(missing_ok=True)
                    for folder in (path.parent, path.parent.parent):  # the day's and the camera's, once empty
                        if folder != root and folder.is_dir() and not any(folder.iterdir()):
                            folder.rmdir()
            ids = [row.id for row in rows]
            for start in range(0, len(ids), 500):
                conn.execute(update(events).where(events.c.id.in_(ids[start : start + 500])).values(clip=None))
        return len(ids)

    def close(self) -> None:
        """Flush what is buffered and release the connections (even when the flush fails)."""
        try:
            self.flush()
        finally:
            self.engine.dispose()
