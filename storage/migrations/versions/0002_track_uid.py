"""0002: ``track_uid`` on tracks (unique: the writer upserts on it), observations (indexed), events and alarms.

Nullable: rows written before this revision have no uid, and their
``(run_id, track_id)`` still tells their tracks apart. Only columns and indexes
are added, so SQLite needs no table rebuild.
"""

from __future__ import annotations

from alembic import op
from sqlalchemy import Column, String

revision = "0002"
down_revision = "0001"


def upgrade() -> None:
    for table in ("tracks", "observations", "events", "alarms"):
        op.add_column(table, Column("track_uid", String(32)))
    op.create_index("tracks_track_uid", "tracks", ["track_uid"], unique=True)
    op.create_index("observations_track_uid", "observations", ["track_uid"])
