"""Engines on the store: SQLite or PostgreSQL, chosen by URL, always at the newest schema.

``sqlite:///path.db`` (embedded, the default for a single box) or
``postgresql+psycopg://user@host/db`` (several cameras, a shared dashboard).
Whatever opens a store by URL (writer, outbox sender, exports, dashboard) goes
through :func:`open_engine`, which migrates it first (:mod:`storage.migrations`).
"""

from __future__ import annotations

import sqlite3
import time
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url

from storage.migrations import upgrade


def make_engine(url: str) -> Engine:
    """An engine for ``url``; SQLite files get WAL so the dashboard reads while the pipeline writes.

    ``synchronous=NORMAL`` under WAL keeps every committed batch through a process
    crash (only a power loss may drop the last commits) at a fraction of FULL's fsyncs;
    the busy timeout lets a reader's checkpoint and a writer wait for each other
    instead of failing with "database is locked". Foreign keys are switched on so
    SQLite rejects what PostgreSQL rejects.
    """
    if make_url(url).get_backend_name() != "sqlite":
        return create_engine(url, pool_pre_ping=True)
    engine = create_engine(url)

    @event.listens_for(engine, "connect")
    def _pragmas(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        # busy_timeout first: switching a new file to WAL takes a lock that another process may hold
        for pragma in ("busy_timeout=10000", "journal_mode=WAL", "synchronous=NORMAL", "foreign_keys=ON"):
            _pragma(cursor, pragma)
        cursor.close()

    return engine


def _pragma(cursor: Any, pragma: str, wait_s: float = 10.0) -> None:
    """One PRAGMA, tried again while another process holds the lock it needs.

    Switching a new file to WAL can fail with "database is locked" at once, without
    waiting out busy_timeout, when several processes open the same new store together
    (``serve``'s camera workers do).
    """
    deadline = time.monotonic() + wait_s
    while True:
        try:
            cursor.execute(f"PRAGMA {pragma}")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def open_engine(url: str) -> Engine:
    """:func:`make_engine`, on a store brought to the newest schema (created if empty)."""
    engine = make_engine(url)
    try:
        upgrade(engine)
    except BaseException:
        engine.dispose()
        raise
    return engine
