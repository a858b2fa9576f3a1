"""0003: ``runs.owner`` (the process writing a running run) and the run status ``crashed``.

A run whose owner has died without closing it is closed as ``crashed`` by the
next process that starts a run of its camera (:meth:`storage.store.Store.start_run`).
Runs from before this revision have no owner (NULL).

SQLite cannot alter a CHECK constraint, and rebuilding ``runs`` is no option
inside the migration's transaction: dropping a table that others reference
fails their foreign keys, and they cannot be switched off in a transaction. The
constraint only admits one more value, which every row satisfies, so its text is
changed in place as SQLite's documentation describes ("Making Other Kinds Of
Table Schema Changes", https://www.sqlite.org/lang_altertable.html).
"""

from __future__ import annotations

import re

from alembic import op
from sqlalchemy import Column, String, text

revision = "0003"
down_revision = "0002"

STATUSES = ("running", "finished", "interrupted", "failed", "crashed")
CHECK = f"status IN {STATUSES}"


def upgrade() -> None:
    op.add_column("runs", Column("owner", String(400)))
    conn = op.get_bind()
    if conn.dialect.name != "sqlite":
        op.drop_constraint("runs_status", "runs", type_="check")
        op.create_check_constraint("runs_status", "runs", CHECK)
        return
    sql = conn.execute(text("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'runs'")).scalar_one()
    new, found = re.subn(r"CONSTRAINT runs_status CHECK \(status IN \([^)]*\)\)", f"CONSTRAINT runs_status CHECK ({CHECK})", sql)
    if found != 1:
        raise RuntimeError(f"runs table without the runs_status constraint of revision 0001: {sql}")
    version = conn.execute(text("PRAGMA schema_version")).scalar_one()
    conn.execute(text("PRAGMA writable_schema = ON"))
    conn.execute(text("UPDATE sqlite_master SET sql = :sql WHERE type = 'table' AND name = 'runs'"), {"sql": new})
    conn.execute(text(f"PRAGMA schema_version = {version + 1}"))  # every connection reads the schema anew
    conn.execute(text("PRAGMA writable_schema = OFF"))
