"""The store's schema: every table, in one ``MetaData``, as the newest migration leaves it.

Readers (:mod:`storage.export`, the dashboard), the writer (:mod:`storage.store`)
and the outbox (:mod:`delivery.outbox`) import their tables from here;
:mod:`storage.migrations` brings a database to this schema, and a test compares
the two so they cannot drift. Times are float UTC epoch seconds, stored as
double precision.

``track_uid`` (uuid4 hex, never repeated across runs, cameras or restarts) is the
identity of a track; the small ``track_id`` is only for display. Rows written
before migration 0002 have no ``track_uid`` (NULL), events before 0004 no
``context_snapshot`` or ``clip``, runs before 0005 no ``node``.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    Double,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

from analytics.records import SIZE_FIELDS

RUN_STATUSES = ("running", "finished", "interrupted", "failed", "crashed")  # crashed: closed by the next opener (0003)
DELIVERY_STATES = ("pending", "delivered", "dead")

# SQLite only auto-increments a column declared exactly INTEGER PRIMARY KEY.
BigId = BigInteger().with_variant(Integer(), "sqlite")

metadata = MetaData()

cameras = Table(
    "cameras",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("name", String(200), nullable=False, unique=True),
    Column("unit", String(16), nullable=False),
    Column("created_ts", Double, nullable=False),
)

runs = Table(
    "runs",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("camera_id", ForeignKey("cameras.id"), nullable=False),
    Column("source", Text, nullable=False),
    Column("segmenter", String(64), nullable=False),
    Column("started_ts", Double, nullable=False),
    Column("ended_ts", Double),
    Column("frames", Integer),
    Column("status", String(16), nullable=False),
    Column("config_json", Text, nullable=False),
    Column("owner", String(400)),  # the process writing a running run (storage.store); NULL before 0003
    Column("node", String(200)),  # the machine it ran on: host name, or host/<Ray node id> (batch); NULL before 0005
    CheckConstraint(f"status IN {RUN_STATUSES}", name="runs_status"),
)

tracks = Table(
    "tracks",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("run_id", ForeignKey("runs.id"), nullable=False),
    Column("camera_id", ForeignKey("cameras.id"), nullable=False),
    Column("track_id", Integer, nullable=False),
    Column("track_uid", String(32)),
    Column("class_name", String(64), nullable=False),
    Column("first_ts", Double, nullable=False),
    Column("last_ts", Double, nullable=False),
    Column("first_frame", Integer, nullable=False),
    Column("last_frame", Integer, nullable=False),
    Column("frames_seen", Integer, nullable=False),
    Column("unit", String(16), nullable=False),
    *(Column(f"{f}_{stat}", Double) for f in SIZE_FIELDS for stat in ("median", "iqr")),
    Column("size_samples", Integer, nullable=False),
    Column("speed_median", Double),
    Column("snapshot", Text),
    UniqueConstraint("run_id", "track_id", name="tracks_run_track"),
    Index("tracks_track_uid", "track_uid", unique=True),  # the writer's upsert key
    Index("tracks_camera_ts", "camera_id", "first_ts"),
    Index("tracks_camera_class_ts", "camera_id", "class_name", "first_ts"),
)

observations = Table(
    "observations",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("run_id", ForeignKey("runs.id"), nullable=False),
    Column("camera_id", ForeignKey("cameras.id"), nullable=False),
    Column("ts", Double, nullable=False),
    Column("frame", Integer, nullable=False),
    Column("pts", Double, nullable=False),
    Column("track_id", Integer, nullable=False),
    Column("track_uid", String(32)),
    Column("class_name", String(64), nullable=False),
    Column("score", Double, nullable=False),
    *(Column(c, Double, nullable=False) for c in ("x0", "y0", "x1", "y1", "cx", "cy")),
    Column("area_px", Integer, nullable=False),
    *(Column(c, Double) for c in ("area", "perimeter", "length", "width", "angle", "diameter")),
    Column("unit", String(16)),
    Column("clean", Boolean),
    Column("speed", Double),
    Column("zones", Text, nullable=False),
    Index("observations_camera_ts", "camera_id", "ts"),
    Index("observations_camera_class_ts", "camera_id", "class_name", "ts"),
    Index("observations_run_track", "run_id", "track_id"),
    Index("observations_track_uid", "track_uid"),
)

events = Table(
    "events",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("run_id", ForeignKey("runs.id"), nullable=False),
    Column("camera_id", ForeignKey("cameras.id"), nullable=False),
    Column("ts", Double, nullable=False),
    Column("frame", Integer, nullable=False),
    Column("pts", Double, nullable=False),
    Column("kind", String(32), nullable=False),
    Column("track_id", Integer),
    Column("track_uid", String(32)),
    Column("class_name", String(64)),
    Column("zone", String(200)),
    Column("line", String(200)),
    Column("rule", String(200)),
    Column("value", Double),
    Column("unit", String(16)),
    Column("values_json", Text, nullable=False),
    Column("snapshot", Text),  # paths relative to the snapshot folder (analytics.snapshots): the tight crop,
    Column("context_snapshot", Text),  # the whole frame downscaled (0004),
    Column("clip", Text),  # the alarm's MP4 (0004; written seconds after the row, NULL once purged)
    Index("events_camera_ts", "camera_id", "ts"),
    Index("events_camera_zone_ts", "camera_id", "zone", "ts"),
    Index("events_camera_class_ts", "camera_id", "class_name", "ts"),
)

alarms = Table(
    "alarms",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("event_id", ForeignKey("events.id"), nullable=False),
    Column("run_id", ForeignKey("runs.id"), nullable=False),
    Column("camera_id", ForeignKey("cameras.id"), nullable=False),
    Column("ts", Double, nullable=False),
    Column("rule", String(200), nullable=False),
    Column("severity", String(16), nullable=False),
    Column("track_id", Integer),
    Column("track_uid", String(32)),
    Column("state", String(16), nullable=False),
    Column("acknowledged_by", String(200)),
    Column("acknowledged_ts", Double),
    CheckConstraint("state IN ('open', 'acknowledged')", name="alarms_state"),
    Index("alarms_camera_ts", "camera_id", "ts"),
    Index("alarms_state_ts", "state", "ts"),
)

deliveries = Table(  # the alarm outbox: what delivery.outbox still has to send, and what became of it
    "deliveries",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("alarm_id", ForeignKey("alarms.id"), nullable=False),
    Column("event_id", String(36), nullable=False),
    Column("camera_id", ForeignKey("cameras.id"), nullable=False),
    Column("channel", String(200), nullable=False),
    Column("state", String(16), nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("last_status", Integer),  # HTTP status of the last attempt (None: no response)
    Column("last_error", Text),
    Column("response", Text),  # first 2 kB of the response that dead-lettered it
    Column("next_attempt_ts", Double, nullable=False),
    Column("created_ts", Double, nullable=False),
    Column("delivered_ts", Double),
    CheckConstraint(f"state IN {DELIVERY_STATES}", name="deliveries_state"),
    UniqueConstraint("alarm_id", "channel", name="deliveries_alarm_channel"),
    Index("deliveries_state_next", "state", "next_attempt_ts"),
)

counts = Table(
    "counts",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("run_id", ForeignKey("runs.id"), nullable=False),
    Column("camera_id", ForeignKey("cameras.id"), nullable=False),
    Column("ts", Double, nullable=False),
    Column("frame", Integer, nullable=False),
    Column("class_name", String(64), nullable=False),
    Column("zone", String(200)),
    Column("visible", Integer, nullable=False),
    Index("counts_camera_ts", "camera_id", "ts"),
    Index("counts_camera_zone_ts", "camera_id", "zone", "ts"),
)

counts_hourly = Table(  # the dashboard's long windows read this: 3,600 samples a second-by-second count become one row
    "counts_hourly",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("camera_id", ForeignKey("cameras.id"), nullable=False),
    Column("hour_ts", Double, nullable=False),  # start of the UTC hour
    Column("class_name", String(64), nullable=False),
    Column("zone", String(200), nullable=False),  # "" for the whole frame: NULLs never conflict in a unique key
    Column("visible_max", Integer, nullable=False),
    Column("visible_sum", Double, nullable=False),
    Column("samples", Integer, nullable=False),
    UniqueConstraint("camera_id", "hour_ts", "class_name", "zone"),
)

camera_geometry = Table(  # zones and lines edited in the dashboard (storage.geometry); by camera name, not id
    "camera_geometry",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("camera", String(200), nullable=False, unique=True),
    Column("geometry_json", Text, nullable=False),
    Column("updated_ts", Double, nullable=False),
    Column("updated_by", String(200), nullable=False),
)
