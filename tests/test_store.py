"""The store and its pandas loaders, run on SQLite and on a real PostgreSQL server (``store_url``).

Each test checks behaviour through a second connection or the public loaders:
what an operator's dashboard or an analyst would see.
"""

from __future__ import annotations

import datetime as dt
import importlib
import json
import logging
import math
import multiprocessing as mp
import os
import socket
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pandas as pd
import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Executable, Table, delete, event, func, inspect, select, text
from sqlalchemy.exc import IntegrityError

import storage.store
from analytics.records import (
    EVENT_COLUMNS,
    SIZE_FIELDS,
    AlarmRecord,
    CountRecord,
    EventRecord,
    Measurement,
    ObservationRecord,
    TrackRecord,
    event_row,
)
from common import InputError
from storage.engine import make_engine
from storage.export import (
    export_table,
    load_alarms,
    load_counts,
    load_events,
    load_observations,
    load_tracks,
    unique_counts,
)
from storage.geometry import load_geometry, save_geometry
from storage.live import process_key
from storage.migrations import head, revision, upgrade
from storage.schema import alarms, cameras, counts, events, metadata, observations, runs, tracks
from storage.store import Store

T0 = 1_700_000_000.25  # 2023-11-14T22:13:20.25Z
REPO = Path(__file__).resolve().parents[1]
NEVER = 3600.0  # batch_seconds that never trigger within a test


def uid(track_id: int, camera: str = "gate") -> str:
    """The uid of track ``track_id`` of ``camera`` in these tests: 32 hex digits like the tracker's, but repeatable."""
    return uuid.uuid5(uuid.NAMESPACE_URL, f"{camera}/{track_id}").hex


def obs(
    frame: int, ts: float | None = None, *, track_id: int = 1, cls: str = "bottle", sized: bool = True
) -> ObservationRecord:
    """One observation; ``sized`` False gives the mask no measurement (sizes, unit, speed NULL)."""
    size = Measurement(1234.5, 140.25, 50.5, 24.75, -12.5, 39.625, "mm", True) if sized else None
    return ObservationRecord(
        ts=T0 + frame / 30 if ts is None else ts, frame=frame, pts=frame / 30, track_id=track_id, track_uid=uid(track_id),
        class_name=cls, score=0.875, box=(10.5, 20.0, 110.0, 220.25), cx=60.25, cy=120.0, area_px=12345, size=size,
        speed=12.5 if sized else None, zones=("belt", "reject bin") if sized else (),
    )  # fmt: skip


def count_rows(url: str, table: Table) -> int:
    """Rows committed, seen through a connection of its own (not the store's)."""
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            return conn.execute(select(func.count()).select_from(table)).scalar_one()
    finally:
        engine.dispose()


def fetch(url: str, stmt: Executable) -> list:
    """All result rows of ``stmt`` through a connection of its own."""
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            return conn.execute(stmt).all()
    finally:
        engine.dispose()


def test_round_trip_of_every_record_type(store_url: str) -> None:
    sizes = {f: (10.0 * i + 0.5, 0.25 * i) for i, f in enumerate(SIZE_FIELDS)}
    track = TrackRecord(7, uid(7), "bottle", T0, T0 + 1, 0, 30, 31, "mm", sizes, 9, 11.0, "gate/track7.jpg")
    bare_track = TrackRecord(8, uid(8), "person", T0 + 1, T0 + 1, 30, 30, 1, "mm")
    event = EventRecord(
        "size_rule", "gate", T0 + 1, 30, 1.0, track_id=7, track_uid=uid(7), class_name="bottle", zone="belt", rule="too big",
        value=1234.5, unit="mm", values={"bounds": [None, 1000.0], "direction": "in", "nested": {"k": 1}},
        snapshot="gate/event.jpg",
    )  # fmt: skip
    bare_event = EventRecord("count_threshold", "gate", T0 + 2, 60, 2.0)
    alarm = AlarmRecord(event.id, "too big", "critical", "gate", T0 + 1, 7, uid(7))
    with Store(store_url, batch_frames=100, batch_seconds=NEVER) as store:
        config = {"fps": 30, "zones": ["belt"]}
        run = store.start_run("gate", "rtsp://cam/1", segmenter="maskrcnn", unit="mm", started_ts=T0, config=config)
        store.write(
            run,
            observations=[obs(30), obs(31, track_id=8, cls="person", sized=False)],
            tracks=[track, bare_track],
            events=[event, bare_event],
            alarms=[alarm],
            counts=[CountRecord(T0 + 1, 30, "bottle", None, 3), CountRecord(T0 + 1, 30, "bottle", "belt", 2)],
        )
        store.end_run(run, frames=61, status="finished", ended_ts=T0 + 3)

    (run_row,) = fetch(store_url, select(runs, cameras.c.name, cameras.c.unit.label("cam_unit")).join(cameras))
    assert (run_row.name, run_row.cam_unit, run_row.source) == ("gate", "mm", "rtsp://cam/1")
    assert run_row.segmenter == "maskrcnn"
    assert (run_row.started_ts, run_row.ended_ts, run_row.frames, run_row.status) == (T0, T0 + 3, 61, "finished")
    assert json.loads(run_row.config_json) == {"fps": 30, "zones": ["belt"]}

    o = load_observations(store_url)
    assert list(o.track_id) == [1, 8] and list(o.camera) == ["gate", "gate"]
    assert list(o.track_uid) == [uid(1), uid(8)]
    sized, bare = o.iloc[0], o.iloc[1]
    assert sized.ts == T0 + 1 and sized.time == pd.Timestamp(T0 + 1, unit="s", tz="UTC")
    assert (sized.x0, sized.y0, sized.x1, sized.y1, sized.cx, sized.cy) == (10.5, 20.0, 110.0, 220.25, 60.25, 120.0)
    assert (sized.area, sized.perimeter, sized.length, sized.width, sized.angle, sized.diameter) == (
        1234.5, 140.25, 50.5, 24.75, -12.5, 39.625,
    )  # fmt: skip
    assert (sized.unit, sized.clean, sized.speed, sized.area_px) == ("mm", True, 12.5, 12345)
    assert sized.zones == "belt,reject bin"
    assert all(math.isnan(bare[c]) for c in ("area", "perimeter", "length", "width", "angle", "diameter", "speed"))
    assert pd.isna(bare.unit) and pd.isna(bare.clean) and bare.zones == ""

    t = load_tracks(store_url).set_index("track_id")
    assert (t.loc[7, "track_uid"], t.loc[8, "track_uid"]) == (uid(7), uid(8))
    assert t.loc[7, "snapshot"] == "gate/track7.jpg" and t.loc[7, "speed_median"] == 11.0
    assert {f: (t.loc[7, f"{f}_median"], t.loc[7, f"{f}_iqr"]) for f in SIZE_FIELDS} == sizes
    assert t.loc[8, "size_samples"] == 0 and all(math.isnan(t.loc[8, f"{f}_median"]) for f in SIZE_FIELDS)
    assert tuple(t.loc[7, ["first_frame", "last_frame", "frames_seen", "unit"]]) == (0, 30, 31, "mm")

    e = load_events(store_url).set_index("id")
    assert e.loc[event.id, "values"] == {"bounds": [None, 1000.0], "direction": "in", "nested": {"k": 1}}
    assert tuple(e.loc[event.id, ["kind", "zone", "line", "rule"]]) == ("size_rule", "belt", None, "too big")
    assert tuple(e.loc[event.id, ["value", "unit", "track_id", "class_name"]]) == (1234.5, "mm", 7, "bottle")
    assert e.loc[event.id, "track_uid"] == uid(7) and pd.isna(e.loc[bare_event.id, "track_uid"])
    assert tuple(e.loc[event.id, ["frame", "pts", "snapshot"]]) == (30, 1.0, "gate/event.jpg")
    assert e.loc[bare_event.id, "values"] == {} and pd.isna(e.loc[bare_event.id, "track_id"])
    assert math.isnan(e.loc[bare_event.id, "value"])

    (a,) = load_alarms(store_url).itertuples()
    assert (a.id, a.event_id, a.ts, a.track_id, a.track_uid) == (alarm.id, event.id, T0 + 1, 7, uid(7))
    assert (a.rule, a.severity, a.state) == ("too big", "critical", "open")
    assert pd.isna(a.acknowledged_by) and math.isnan(a.acknowledged_ts)

    c = load_counts(store_url)
    assert list(c.zone.fillna("<frame>")) == ["<frame>", "belt"] and list(c.visible) == [3, 2]


def test_rows_wait_for_a_full_batch_but_alarms_go_at_once(store_url: str) -> None:
    store = Store(store_url, batch_frames=5, batch_seconds=NEVER)
    run = store.start_run("gate", "v.mp4", segmenter="motion", unit="px", started_ts=T0)
    for frame in range(4):
        store.write(run, observations=[obs(frame)])
    assert count_rows(store_url, observations) == 0
    store.write(run, observations=[obs(4)])
    assert count_rows(store_url, observations) == 5

    event = EventRecord("dwell_exceeded", "gate", T0 + 1, 5, 5 / 30, track_id=1)
    alarm = AlarmRecord(event.id, "dwell", "warning", "gate", T0 + 1, 1, uid(1))
    store.write(run, observations=[obs(5)], events=[event], alarms=[alarm])  # one frame in the batch: flushed
    assert [count_rows(store_url, t) for t in (observations, events, alarms)] == [6, 1, 1]

    store.write(run, observations=[obs(6)])
    assert count_rows(store_url, observations) == 6
    store.close()  # flushes the partial batch
    assert count_rows(store_url, observations) == 7


def test_a_batch_older_than_batch_seconds_is_flushed(store_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    clock = [100.0]  # the store's monotonic clock, moved by hand
    monkeypatch.setattr(storage.store, "time", SimpleNamespace(monotonic=lambda: clock[0], time=time.time))
    with Store(store_url, batch_frames=1000, batch_seconds=0.2) as store:
        run = store.start_run("gate", "v.mp4", segmenter="motion", unit="px", started_ts=T0)
        store.write(run, observations=[obs(0)])
        clock[0] += 0.19
        store.write(run, observations=[obs(1)])
        assert count_rows(store_url, observations) == 0
        clock[0] += 0.01
        store.write(run, observations=[obs(2)])
        assert count_rows(store_url, observations) == 3


def test_tracks_collapse_within_a_batch_and_update_across_batches(store_url: str) -> None:
    def grown(frame: int, sizes: dict | None = None) -> TrackRecord:
        return TrackRecord(1, uid(1), "bottle", T0, T0 + frame, 0, frame, frame + 1, "mm", sizes or {}, len(sizes or {}))

    with Store(store_url, batch_frames=3, batch_seconds=NEVER) as store:
        sent = []  # track rows per upsert, as the driver receives them

        @event.listens_for(store.engine, "before_cursor_execute")
        def _count(conn, cursor, statement: str, parameters, context, executemany: bool) -> None:
            if statement.lstrip().upper().startswith("INSERT INTO TRACKS"):
                sent.append(len(parameters) if executemany else 1)

        run = store.start_run("gate", "v.mp4", segmenter="motion", unit="mm", started_ts=T0)
        store.write(run, tracks=[grown(0)])
        store.write(run, tracks=[grown(1), TrackRecord(2, uid(2), "person", T0 + 1, T0 + 1, 1, 1, 1, "mm")])
        store.write(run, tracks=[grown(2, {"area": (100.0, 4.0)})])  # third frame: flushed
        first = load_tracks(store_url).set_index("track_id")
        assert len(first) == 2 and sent == [2]  # three versions of track 1 went out as one row
        assert (first.loc[1, "last_frame"], first.loc[1, "frames_seen"], first.loc[1, "area_median"]) == (2, 3, 100.0)

        store.write(run, tracks=[grown(9, {"area": (120.0, 5.0), "width": (8.0, 0.5)})])
        store.flush()
    second = load_tracks(store_url).set_index("track_id")
    assert len(second) == 2 and second.loc[1, "id"] == first.loc[1, "id"]  # updated in place
    assert (second.loc[1, "last_ts"], second.loc[1, "frames_seen"], second.loc[1, "size_samples"]) == (T0 + 9, 10, 2)
    assert (second.loc[1, "area_median"], second.loc[1, "width_iqr"], second.loc[1, "first_ts"]) == (120.0, 0.5, T0)
    assert second.loc[2, "class_name"] == "person"


@pytest.fixture
def two_cameras(store_url: str) -> str:
    """Ten minutes of one event, alarm, observation, track and count per minute on cameras 'gate' and 'dock'."""
    with Store(store_url, batch_frames=100, batch_seconds=NEVER) as store:
        for camera in ("gate", "dock"):
            run = store.start_run(camera, f"{camera}.mp4", segmenter="motion", unit="px", started_ts=T0)
            for k in range(10):
                ts, kind, cls = T0 + 60 * k, ("zone_enter", "zone_exit")[k % 2], ("bottle", "person")[k % 2]
                event = EventRecord(kind, camera, ts, k, k, track_id=k, track_uid=uid(k, camera), zone="belt",
                                    values={"k": k})
                store.write(
                    run,
                    observations=[obs(k, ts, track_id=k, cls=cls)],
                    tracks=[TrackRecord(k, uid(k, camera), cls, ts, ts + 30, k, k + 5, 6, "px")],
                    events=[event],
                    alarms=[AlarmRecord(event.id, "belt", "info", camera, ts, k, uid(k, camera))] if k < 4 else [],
                    counts=[CountRecord(ts, k, cls, None, k)],
                )
    return store_url


def test_loaders_filter_by_time_camera_and_kind(two_cameras: str) -> None:
    url = two_cameras
    everything = load_events(url)
    assert len(everything) == 20 and str(everything.time.dt.tz) == "UTC"
    assert (everything.time == pd.to_datetime(everything.ts, unit="s", utc=True)).all()
    assert list(everything.ts) == sorted(everything.ts)

    gate = load_events(url, camera="gate")
    assert len(gate) == 10 and set(gate.camera) == {"gate"}
    assert [v["k"] for v in gate["values"]] == list(range(10))

    since = T0 + 120  # [since, until) holds minutes 2, 3, 4 of both cameras
    aware = dt.datetime.fromtimestamp(since, dt.UTC)
    for start in (since, aware, pd.Timestamp(aware), aware.isoformat(), aware.replace(tzinfo=None)):  # naive = UTC
        window = load_events(url, since=start, until=T0 + 300)
        assert sorted(window.frame) == [2, 2, 3, 3, 4, 4], start

    exits = load_events(url, camera="dock", kind="zone_exit", since="2023-11-14T22:15:00Z")
    assert list(exits.frame) == [3, 5, 7, 9] and set(exits.kind) == {"zone_exit"}

    assert len(load_observations(url, camera="gate", class_name="person")) == 5
    assert list(load_observations(url, since=T0 + 540).frame) == [9, 9]
    assert sorted(load_tracks(url, until=T0 + 60).camera) == ["dock", "gate"]  # by first_ts
    assert len(load_alarms(url, camera="dock", state="open")) == 4
    assert list(load_counts(url, camera="gate", since=T0 + 480).visible) == [8, 9]
    assert load_events(url, camera="nowhere").empty


def test_unique_counts_are_tracks_seen_in_the_window(two_cameras: str) -> None:
    url = two_cameras  # track k of each camera lives [T0 + 60k, T0 + 60k + 30]; even k bottles, odd k persons
    assert unique_counts(url) == {"bottle": 10, "person": 10}
    assert unique_counts(url, camera="gate") == {"bottle": 5, "person": 5}
    # [T0 + 100, T0 + 200): track 1 ended at T0 + 90 (out), 2 at 120..150 (in), 3 at 180..210 (in), 4 starts at 240 (out)
    assert unique_counts(url, since=T0 + 100, until=T0 + 200, camera="dock") == {"bottle": 1, "person": 1}
    assert unique_counts(url, since=T0 + 95, until=T0 + 119) == {}
    assert unique_counts(url, since=T0 + 89, until=T0 + 91) == {"person": 2}  # track 1 of both cameras, seen till T0 + 90


def test_the_dashboard_queries_have_indexes(store_url: str) -> None:
    Store(store_url).close()
    engine = make_engine(store_url)
    indexes = [(table, i) for table in ("observations", "events", "alarms", "counts", "tracks")
               for i in inspect(engine).get_indexes(table)]  # fmt: skip
    engine.dispose()
    indexed = {(table, tuple(i["column_names"])) for table, i in indexes}
    unique = {(table, tuple(i["column_names"])) for table, i in indexes if i["unique"]}
    assert ("tracks", ("track_uid",)) in unique and ("observations", ("track_uid",)) in indexed
    for table in ("observations", "events", "alarms", "counts"):
        assert (table, ("camera_id", "ts")) in indexed
    for table in ("events", "counts"):
        assert (table, ("camera_id", "zone", "ts")) in indexed
    for table in ("observations", "events"):
        assert (table, ("camera_id", "class_name", "ts")) in indexed
    assert {("tracks", ("camera_id", "first_ts")), ("tracks", ("camera_id", "class_name", "first_ts"))} <= indexed
    assert {("alarms", ("state", "ts")), ("observations", ("run_id", "track_id"))} <= indexed


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_export_and_read_back(two_cameras: str, tmp_path: Path, suffix: str) -> None:
    read = pd.read_csv if suffix == ".csv" else pd.read_parquet
    for table in ("tracks", "observations", "events", "alarms", "counts"):
        path = tmp_path / f"{table}{suffix}"
        assert export_table(two_cameras, table, path) == len(read(path)) > 0
    events_path = tmp_path / f"gate-events{suffix}"
    assert export_table(two_cameras, "events", events_path, since=T0 + 60, until=T0 + 180, camera="gate") == 2
    back = read(events_path)
    assert list(back.camera) == ["gate", "gate"] and list(back.frame) == [1, 2]
    assert [json.loads(v) for v in back.values_json] == [{"k": 1}, {"k": 2}]
    assert pd.to_datetime(back.time, utc=True).tolist() == pd.to_datetime(back.ts, unit="s", utc=True).tolist()


def test_export_rejects_an_unknown_suffix(two_cameras: str, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"\.csv or \.parquet"):
        export_table(two_cameras, "events", tmp_path / "events.xlsx")
    assert not (tmp_path / "events.xlsx").exists()


def test_acknowledge_once(store_url: str) -> None:
    event = EventRecord("dwell_exceeded", "gate", T0, 0, 0.0, track_id=3)
    alarm = AlarmRecord(event.id, "dwell", "critical", "gate", T0, 3, uid(3))
    with Store(store_url) as store:
        run = store.start_run("gate", "v.mp4", segmenter="motion", unit="px", started_ts=T0)
        store.write(run, events=[event], alarms=[alarm])
        assert store.acknowledge(alarm.id, "alice", ts=T0 + 42)
        assert not store.acknowledge(alarm.id, "bob")
        assert not store.acknowledge("no-such-alarm", "bob")
    (row,) = load_alarms(store_url).itertuples()
    assert (row.state, row.acknowledged_by, row.acknowledged_ts) == ("acknowledged", "alice", T0 + 42)
    assert load_alarms(store_url, state="open").empty


def test_retention_deletes_only_old_observations(store_url: str) -> None:
    now, day = T0 + 30 * 86400, 86400
    with Store(store_url, batch_frames=100, batch_seconds=NEVER) as store:
        run = store.start_run("gate", "v.mp4", segmenter="motion", unit="px", started_ts=T0)
        for frame, age_days in enumerate((20, 10, 8, 6, 1)):
            ts = now - age_days * day
            event = EventRecord("zone_enter", "gate", ts, frame, frame, track_id=frame)
            store.write(
                run, observations=[obs(frame, ts), obs(frame, ts, track_id=99)], events=[event],
                alarms=[AlarmRecord(event.id, "r", "info", "gate", ts, frame, uid(frame))],
                tracks=[TrackRecord(frame, uid(frame), "bottle", ts, ts, frame, frame, 1, "px")],
                counts=[CountRecord(ts, frame, "bottle", None, 2)],
            )  # fmt: skip
        assert store.purge_observations(7, now=now) == 6
        assert store.purge_observations(7, now=now) == 0
    assert sorted(load_observations(store_url).frame) == [3, 3, 4, 4]
    assert [len(f(store_url)) for f in (load_events, load_alarms, load_tracks, load_counts)] == [5, 5, 5, 5]


CRASHING_WRITER = """
import os, signal, sys, threading
from analytics.records import CountRecord, ObservationRecord
from storage.store import Store

url, kill_after = sys.argv[1], float(sys.argv[2])
store = Store(url, batch_frames=10, batch_seconds=3600)
run = store.start_run("gate", "v.mp4", segmenter="motion", unit="px", started_ts=0.0)
die = lambda: os.kill(os.getpid(), signal.SIGKILL)
frame = 0
while True:
    if frame == 10 and kill_after:  # at least one batch is in; die at a moment the writer does not choose
        threading.Timer(kill_after, die).start()
    store.write(run, counts=[CountRecord(frame, frame, "bottle", None, 1)], observations=[
        ObservationRecord(frame, frame, frame, t, f"{t:032x}", "bottle", 1.0, (0, 0, 1, 1), 0.5, 0.5, 1) for t in range(100)])
    frame += 1
    if frame == 25 and not kill_after:
        die()
"""


@pytest.mark.parametrize("kill_after", [0.0, 0.3], ids=["after-25-frames", "during-writes"])
def test_a_killed_writer_leaves_exactly_the_flushed_batches(store_url: str, kill_after: float) -> None:
    Store(store_url).close()  # tables exist before the writer's first transaction
    command = [sys.executable, "-c", textwrap.dedent(CRASHING_WRITER), store_url, str(kill_after)]
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == -9, done.stderr

    engine = make_engine(store_url)
    with engine.connect() as conn:
        if engine.dialect.name == "sqlite":
            assert conn.execute(text("PRAGMA integrity_check")).scalar_one() == "ok"
        frames = conn.execute(select(observations.c.frame).distinct().order_by(observations.c.frame)).scalars().all()
        n_obs = conn.execute(select(func.count()).select_from(observations)).scalar_one()
        n_counts = conn.execute(select(func.count()).select_from(counts)).scalar_one()
        (status,) = conn.execute(select(runs.c.status)).scalars().all()
    engine.dispose()
    assert len(frames) % 10 == 0 and frames == list(range(len(frames)))  # whole batches, oldest first
    assert n_obs == 100 * len(frames) and n_counts == len(frames)
    assert len(frames) == 20 if not kill_after else len(frames) >= 10
    assert status == "running"  # nobody ended it

    with Store(store_url) as store:  # the store opens and takes writes again
        run = store.start_run("gate", "v.mp4", segmenter="motion", unit="px", started_ts=1.0)
        store.write(run, observations=[obs(0)])
    assert count_rows(store_url, observations) == n_obs + 1


def test_a_failed_flush_raises_and_keeps_the_batch(store_url: str) -> None:
    original = EventRecord("zone_enter", "gate", T0, 0, 0.0, track_id=1)
    duplicate = EventRecord("zone_exit", "gate", T0 + 1, 1, 1 / 30, track_id=1, id=original.id)
    store = Store(store_url, batch_frames=100, batch_seconds=NEVER)
    run = store.start_run("gate", "v.mp4", segmenter="motion", unit="px", started_ts=T0)
    store.write(run, events=[original])
    store.flush()

    store.write(run, observations=[obs(1)], events=[duplicate], counts=[CountRecord(T0 + 1, 1, "bottle", None, 1)])
    for _ in range(2):  # a retry fails the same way: nothing was dropped in between
        with pytest.raises(IntegrityError):
            store.flush()
        assert [count_rows(store_url, t) for t in (observations, counts, events)] == [0, 0, 1]  # rolled back as one

    engine = make_engine(store_url)
    with engine.begin() as conn:  # whoever handles the error removes the conflict...
        conn.execute(delete(events).where(events.c.id == original.id))
    engine.dispose()
    store.flush()  # ...and the kept rows land
    assert list(load_events(store_url).kind) == ["zone_exit"]
    store.write(run, observations=[obs(2)])
    store.close()
    assert list(load_observations(store_url).frame) == [1, 2]


def test_inconsistent_input_is_refused(store_url: str) -> None:
    with Store(store_url) as store:
        run = store.start_run("gate", "v.mp4", segmenter="motion", unit="px", started_ts=T0)
        with pytest.raises(ValueError, match="'dock'"):
            store.write(run, events=[EventRecord("zone_enter", "dock", T0, 0, 0.0)])
        with pytest.raises(ValueError, match="unknown run id 999"):
            store.write(999, observations=[obs(0)])
        with pytest.raises(ValueError, match="run status"):
            store.end_run(run, frames=0, status="done", ended_ts=T0)
        again = store.start_run("gate", "v2.mp4", segmenter="motion", unit="mm", started_ts=T0 + 1)
    assert again != run
    assert fetch(store_url, select(cameras.c.name, cameras.c.unit)) == [("gate", "mm")]  # one camera, latest unit
    assert count_rows(store_url, events) == 0


def test_hourly_counts_fold_the_samples_and_rebuild_gives_the_same(store_url: str) -> None:
    from storage.schema import counts_hourly
    from storage.store import rebuild_hourly_counts

    hour = 1_700_000_000.0 - 1_700_000_000.0 % 3600
    with Store(store_url, batch_frames=7, batch_seconds=NEVER) as store:  # batches split the hours: upserts merge
        run = store.start_run("gate", "gate.mp4", segmenter="motion", unit="px", started_ts=hour)
        for k in range(30):  # every 4 minutes over 2 hours, visible 0..9
            ts = hour + 240 * k
            store.write(run, counts=[CountRecord(ts, k, "person", None, k % 10), CountRecord(ts, k, "person", "pit", 1)])

    def folded() -> list[tuple]:
        rows = fetch(store_url, select(counts_hourly.c.hour_ts, counts_hourly.c.zone, counts_hourly.c.visible_max,
                                       counts_hourly.c.visible_sum, counts_hourly.c.samples).order_by("hour_ts", "zone"))
        return [tuple(r) for r in rows]

    first = [k for k in range(30) if 240 * k < 3600]
    second = [k for k in range(30) if 240 * k >= 3600]
    expected = [
        (hour, "", max(k % 10 for k in first), float(sum(k % 10 for k in first)), len(first)),
        (hour, "pit", 1, float(len(first)), len(first)),
        (hour + 3600, "", max(k % 10 for k in second), float(sum(k % 10 for k in second)), len(second)),
        (hour + 3600, "pit", 1, float(len(second)), len(second)),
    ]
    assert folded() == expected
    assert rebuild_hourly_counts(store_url) == 4 and folded() == expected


# -- identities and event fields ---------------------------------------------------------------------------------


def test_a_track_is_its_uid_not_its_display_id(store_url: str) -> None:
    """Two runs' track 1 are two tracks; the same uid again updates its row; a uid never goes to a second row."""
    with Store(store_url, batch_frames=1) as store:
        first = store.start_run("gate", "v.mp4", segmenter="motion", unit="px", started_ts=T0)
        second = store.start_run("gate", "v.mp4", segmenter="motion", unit="px", started_ts=T0 + 60)
        store.write(first, tracks=[TrackRecord(1, uid(1, "first"), "bottle", T0, T0 + 1, 0, 30, 31, "px")])
        store.write(second, tracks=[TrackRecord(1, uid(1, "second"), "person", T0 + 60, T0 + 61, 0, 30, 31, "px")])
        store.write(second, tracks=[TrackRecord(1, uid(1, "second"), "person", T0 + 60, T0 + 69, 0, 270, 271, "px")])
    t = load_tracks(store_url).set_index("track_uid")
    assert sorted(t.index) == sorted([uid(1, "first"), uid(1, "second")]) and set(t.track_id) == {1}
    assert (t.loc[uid(1, "second"), "frames_seen"], t.loc[uid(1, "first"), "frames_seen"]) == (271, 31)

    engine = make_engine(store_url)
    with engine.connect() as conn:
        row = conn.execute(select(tracks).where(tracks.c.track_uid == uid(1, "first"))).one()._asdict()
    del row["id"]
    with pytest.raises(IntegrityError, match="track_uid"), engine.begin() as conn:  # track 2 of the first run...
        conn.execute(tracks.insert(), row | {"track_id": 2, "track_uid": uid(1, "second")})  # ...with a used uid
    engine.dispose()


def test_every_event_field_is_stored_and_read_back(store_url: str) -> None:
    """EVENT_COLUMNS is the events table (camera by id, values as JSON text) and what load_events returns."""
    assert {c.name for c in events.c} == set(EVENT_COLUMNS) - {"camera", "values"} | {"values_json", "run_id", "camera_id"}
    event = EventRecord(
        "line_cross", "gate", np.float64(T0), np.int64(30), np.float32(1.0), track_id=np.int32(7), track_uid=uid(7),
        class_name="bottle", zone="belt", line="door", rule="in", value=np.float32(0.5), unit="m",
        values={"direction": "in", "at": np.array([1.5, 2.0]), "n": np.int64(3)}, snapshot="gate/e.jpg",
    )  # fmt: skip
    row = event_row(event)
    assert list(row) == list(EVENT_COLUMNS) and all(type(v).__module__ == "builtins" for v in row.values())
    assert json.loads(row["values"]) == {"direction": "in", "at": [1.5, 2.0], "n": 3}
    with Store(store_url) as store:
        run = store.start_run("gate", "v.mp4", segmenter="motion", unit="m", started_ts=T0)
        store.write(run, events=[event])
    back = load_events(store_url).iloc[0]
    assert {name: back[name] for name in EVENT_COLUMNS} == row | {"values": json.loads(row["values"])}


# -- migrations ----------------------------------------------------------------------------------------------------


def schema_differences(url: str) -> list:
    """What Alembic's autogenerate finds between the database and storage.schema: empty when they agree."""
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            return compare_metadata(MigrationContext.configure(conn), metadata)
    finally:
        engine.dispose()


def store_revision(url: str) -> str | None:
    engine = make_engine(url)
    try:
        return revision(engine)
    finally:
        engine.dispose()


def test_the_migrations_make_exactly_the_schema(store_url: str) -> None:
    assert store_revision(store_url) is None
    Store(store_url).close()
    assert store_revision(store_url) == head()
    assert schema_differences(store_url) == []


def test_a_store_made_before_migrations_is_adopted_and_upgraded(store_url: str) -> None:
    """Tables as the code before migrations made them (camera_geometry only came with the first geometry), with rows."""
    baseline = importlib.import_module("storage.migrations.versions.0001_baseline")  # that code's tables, frozen
    old = {name: table for name, table in baseline.metadata.tables.items() if name != "camera_geometry"}
    engine = make_engine(store_url)
    baseline.metadata.create_all(engine, tables=list(old.values()))
    with engine.begin() as conn:
        camera = conn.execute(old["cameras"].insert().returning(old["cameras"].c.id),
                              {"name": "gate", "unit": "px", "created_ts": T0}).scalar_one()  # fmt: skip
        run = conn.execute(old["runs"].insert().returning(old["runs"].c.id),
                           {"camera_id": camera, "source": "v.mp4", "segmenter": "motion", "started_ts": T0,
                            "status": "finished", "config_json": "{}"}).scalar_one()  # fmt: skip
        conn.execute(old["tracks"].insert(), {"run_id": run, "camera_id": camera, "track_id": 1, "class_name": "bottle",
                                              "first_ts": T0, "last_ts": T0 + 1, "first_frame": 0, "last_frame": 30,
                                              "frames_seen": 31, "unit": "px", "size_samples": 0})  # fmt: skip
    engine.dispose()
    assert store_revision(store_url) is None

    with Store(store_url) as store:
        run = store.start_run("gate", "v.mp4", segmenter="motion", unit="px", started_ts=T0 + 60)
        store.write(run, tracks=[TrackRecord(1, uid(1), "person", T0 + 60, T0 + 61, 0, 30, 31, "px")])
    assert store_revision(store_url) == head() and schema_differences(store_url) == []
    t = load_tracks(store_url)
    assert list(t.class_name) == ["bottle", "person"] and t.track_uid.isna().tolist() == [True, False]
    assert save_geometry(store_url, "gate", [], [], [], "olivia") and load_geometry(store_url, "gate")[0]["zones"] == []


def test_a_store_from_a_newer_maskwatch_is_refused(store_url: str) -> None:
    Store(store_url).close()
    engine = make_engine(store_url)
    with engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '9999'"))
    engine.dispose()
    with pytest.raises(InputError, match="revision '9999', newer than this maskwatch knows"):
        Store(store_url)
    assert store_revision(store_url) == "9999"


def test_sqlite_upgrade_waits_for_a_writer_that_holds_the_lock_past_the_busy_timeout(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    url = f"sqlite:///{tmp_path / 'store.db'}"
    holder = sqlite3.connect(tmp_path / "store.db", isolation_level=None)
    holder.execute("PRAGMA journal_mode=WAL")  # as every opener of a store leaves it
    holder.execute("BEGIN IMMEDIATE")  # another process's long write transaction
    engine = make_engine(url)
    event.listen(engine, "connect", lambda dbapi, _: dbapi.execute("PRAGMA busy_timeout=50"))  # after make_engine's
    upgrading = threading.Thread(target=upgrade, args=(engine,))
    with caplog.at_level(logging.INFO, logger="storage.migrations"):
        upgrading.start()
        deadline = time.monotonic() + 30
        while "waiting again for its write lock" not in caplog.text and time.monotonic() < deadline:
            time.sleep(0.01)
        assert "waiting again for its write lock" in caplog.text and upgrading.is_alive()
        holder.execute("COMMIT")
        upgrading.join(30)
    holder.close()
    assert revision(engine) == head()
    engine.dispose()


def _open_store_with_the_others(url: str, barrier: Any) -> None:
    barrier.wait(timeout=60)  # every process past its imports: they open the store together
    Store(url).close()


def test_processes_opening_a_new_store_together_all_succeed(store_url: str) -> None:
    """``maskwatch serve``'s camera workers open one store at once; whoever migrates, the others wait and find it done."""
    context = mp.get_context("spawn")
    barrier = context.Barrier(4)
    processes = [context.Process(target=_open_store_with_the_others, args=(store_url, barrier)) for _ in range(4)]
    for process in processes:
        process.start()
    for process in processes:
        process.join(120)
    assert [p.exitcode for p in processes] == [0, 0, 0, 0]
    assert store_revision(store_url) == head() and schema_differences(store_url) == []


def _start_runs_and_die(url: str) -> None:
    """A writer killed mid-run: runs of two cameras started, one batch flushed, never ended."""
    store = Store(url, batch_frames=100, batch_seconds=NEVER)
    gate = store.start_run("gate", "rtsp://gate", segmenter="motion", unit="mm", started_ts=T0)
    store.start_run("dock", "rtsp://dock", segmenter="motion", unit="mm", started_ts=T0)
    store.write(gate, observations=[obs(150, T0 + 5)], events=[EventRecord("zone_enter", "gate", T0 + 6, 180, 6.0)],
                tracks=[TrackRecord(1, uid(1), "bottle", T0 + 1, T0 + 7, 30, 210, 20, "mm")])
    store.flush()
    os._exit(0)  # no end_run, no close: as after kill -9 or a power cut


def test_runs_left_running_by_a_dead_process_are_closed_as_crashed_at_their_last_write(store_url: str) -> None:
    """Only the camera's own runs whose process is gone: not a live process's, another host's or another camera's."""
    writer = mp.get_context("spawn").Process(target=_start_runs_and_die, args=(store_url,))
    writer.start()
    writer.join(120)
    assert writer.exitcode == 0
    with Store(store_url) as live:  # a process still writing its run of the camera (this one)
        mine = live.start_run("gate", "v.mp4", segmenter="motion", unit="mm", started_ts=T0 + 20)
        others = {}
        for name, owner in (("legacy", None), ("elsewhere", f"other-host {uuid.uuid4()}/{os.getpid()}/1"),
                            ("reused pid", f"{socket.gethostname()} {process_key(os.getpid()).rsplit('/', 1)[0]}/1")):
            others[name] = live.start_run("gate", "v.mp4", segmenter="motion", unit="mm", started_ts=T0 + 30)
            with live.engine.begin() as conn:
                conn.execute(runs.update().where(runs.c.id == others[name]).values(owner=owner))
        with Store(store_url) as store:
            run = store.start_run("gate", "v.mp4", segmenter="motion", unit="mm", started_ts=T0 + 60)
        rows = {r.id: r for r in fetch(store_url, select(runs.c.id, runs.c.status, runs.c.ended_ts, cameras.c.name).join(cameras))}
        dead = {r.name: r for r in rows.values() if r.id < mine}  # the killed writer's
        crashed, dock = dead["gate"], dead["dock"]
        assert (crashed.status, crashed.ended_ts) == ("crashed", T0 + 7)  # the track's last_ts: its latest write
        assert dock.status == "running"  # another camera's: closed when that camera starts a run
        assert rows[mine].status == "running" and rows[run].status == "running"
        assert rows[others["elsewhere"]].status == "running"
        assert [(rows[others[n]].status, rows[others[n]].ended_ts) for n in ("legacy", "reused pid")] == [("crashed", T0 + 30)] * 2
        with Store(store_url) as store:
            assert store.close_stale_runs("dock") == [dock.id] and store.close_stale_runs("dock") == []
    with pytest.raises(IntegrityError):  # the constraint still holds after it learnt "crashed"
        with make_engine(store_url).begin() as conn:
            conn.execute(runs.update().where(runs.c.id == mine).values(status="lost"))
