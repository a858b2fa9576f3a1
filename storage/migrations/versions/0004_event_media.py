"""0004: ``events.context_snapshot`` (the whole frame, downscaled) and ``events.clip`` (the alarm's MP4).

Both are paths relative to the snapshot folder, like ``events.snapshot``
(:mod:`analytics.snapshots`). Nullable: events from before this revision have
neither, and most events raise no alarm and so get no clip. Only columns are
added, so SQLite needs no table rebuild.
"""

from __future__ import annotations

from alembic import op
from sqlalchemy import Column, Text

revision = "0004"
down_revision = "0003"


def upgrade() -> None:
    op.add_column("events", Column("context_snapshot", Text))
    op.add_column("events", Column("clip", Text))
