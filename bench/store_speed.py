"""Store write throughput and one dashboard query, on SQLite and on PostgreSQL.

Writes --frames frames through ``Store.write`` (batch_frames=30, as in the pipeline):
each frame has 50 observations with sizes, the 50 track summaries they update, two
counts and, every tenth frame, an event. Frames go round-robin to four cameras and
span six hours, so the store looks like a day of a small site. Prints observations/s
(only the time inside ``Store.write``/``flush``, not building the records) and the
median time of the dashboard's typical query: one camera's events of the last hour
through ``load_events``. PostgreSQL uses a scratch database on the server of
$MASKWATCH_TEST_PG_URL (default: local, role root), dropped afterwards.
Usage: python bench/store_speed.py [--frames 1500]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from sqlalchemy import create_engine, make_url, select, text
from sqlalchemy.exc import OperationalError

from analytics.records import CountRecord, EventRecord, Measurement, ObservationRecord, TrackRecord
from storage.engine import make_engine
from storage.export import load_events
from storage.schema import cameras, events
from storage.store import Store

PG_URL = os.environ.get("MASKWATCH_TEST_PG_URL", "postgresql+psycopg://root@127.0.0.1:5432/test")
CAMERAS = [f"cam-{i}" for i in range(4)]
OBJECTS = 50
SPAN = 6 * 3600.0


def fill(url: str, frames: int, end_ts: float) -> float:
    """Write ``frames`` frames; return seconds spent inside the store."""
    spent = 0.0
    store = Store(url, batch_frames=30)
    run_ids = [store.start_run(c, "bench", segmenter="motion", unit="mm", started_ts=end_ts - SPAN) for c in CAMERAS]
    uids = {(c, t): uuid.uuid4().hex for c in CAMERAS for t in range(OBJECTS)}
    for frame in range(frames):
        ts, camera = end_ts - SPAN + SPAN * frame / frames, CAMERAS[frame % len(CAMERAS)]
        size = Measurement(1200.0 + frame % 7, 140.0, 50.0, 24.0, 12.0, 39.0, "mm", True)
        observations = [
            ObservationRecord(ts, frame, frame / 30, t, uids[camera, t], "bottle", 0.9, (t, 10.0, t + 40.0, 60.0), t + 20.0, 35.0, 1800,
                              size, 120.0, ("belt",))
            for t in range(OBJECTS)
        ]  # fmt: skip
        tracks = [TrackRecord(t, uids[camera, t], "bottle", end_ts - SPAN, ts, 0, frame, frame + 1, "mm", {"area": (1200.0, 5.0)}, 9)
                  for t in range(OBJECTS)]  # fmt: skip
        counts = [CountRecord(ts, frame, "bottle", None, OBJECTS), CountRecord(ts, frame, "bottle", "belt", 20)]
        news = [EventRecord("zone_enter", camera, ts, frame, frame / 30, zone="belt")] if frame % 10 == 0 else []
        run_id = run_ids[frame % len(CAMERAS)]
        start = time.perf_counter()
        store.write(run_id, observations=observations, tracks=tracks, events=news, counts=counts)
        spent += time.perf_counter() - start
    start = time.perf_counter()
    store.close()
    return spent + time.perf_counter() - start


def median_ms(query: Callable[[], int], repeat: int = 7) -> tuple[float, int]:
    """Median wall time of ``query`` in ms, and the rows it returned."""
    times, rows = [], 0
    for _ in range(repeat):
        start = time.perf_counter()
        rows = query()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000, rows


def measure(name: str, url: str, frames: int) -> None:
    end_ts = time.time()
    spent = fill(url, frames, end_ts)
    print(f"{name}: {frames * OBJECTS / spent:,.0f} observations/s ({frames} frames x {OBJECTS} in {spent:.2f} s)")
    since, camera = end_ts - 3600, CAMERAS[0]
    ms, rows = median_ms(lambda: len(load_events(url, since=since, camera=camera)))
    print(f"{name}: dashboard query, events of one camera in the last hour ({rows} of {frames // 10}): "
          f"load_events {ms:.1f} ms", end="")  # fmt: skip
    engine = make_engine(url)
    stmt = select(events).join(cameras).where(cameras.c.name == camera, events.c.ts >= since).order_by(events.c.ts)
    with engine.connect() as conn:
        ms, rows = median_ms(lambda: len(conn.execute(stmt).all()))
    engine.dispose()
    print(f", the SQL alone on an open connection {ms:.2f} ms (medians)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=1500, help="frames written per backend (~4-10 s each)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        measure("sqlite", f"sqlite:///{Path(tmp) / 'bench.db'}", args.frames)

    name = f"mw_bench_{os.urandom(4).hex()}"
    try:
        admin = create_engine(PG_URL, isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 5})
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    except (ImportError, OperationalError) as exc:
        print(f"postgresql: skipped ({PG_URL}: {str(getattr(exc, 'orig', None) or exc).strip().splitlines()[0]})")
        return
    try:
        measure("postgresql", make_url(PG_URL).set(database=name).render_as_string(hide_password=False), args.frames)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


if __name__ == "__main__":
    main()
