"""Schema migrations with Alembic: every store is brought to the newest revision when it is opened.

Revisions are the files in ``versions/`` (``0001``: the schema before migrations,
``0002``: track uids, ``0003``: run owners and ``crashed``); :mod:`storage.schema`
is what they add up to, and tests/test_store.py compares the two. Nothing reads an ``alembic.ini``:
:func:`upgrade` configures Alembic itself, so an installed package migrates its
stores on its own. A new revision is a file in ``versions/`` with ``revision``,
``down_revision`` and ``upgrade()`` (forward only), plus the same change in
:mod:`storage.schema`.

Several processes may open one store at once (``maskwatch serve`` starts a worker
per camera). The upgrade runs in one transaction that first takes a lock (a
PostgreSQL advisory lock; SQLite's write lock, ``BEGIN IMMEDIATE``), and Alembic
reads the store's revision only once it holds it, so whoever comes second finds
the work done.
"""

from __future__ import annotations

import logging
from functools import cache
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, column, func, inspect, select, table
from sqlalchemy.exc import OperationalError

from common import InputError

log = logging.getLogger(__name__)

ADVISORY_LOCK = 0x6D61736B77617463  # PostgreSQL advisory lock key of migrations ("maskwatc")
VERSION_TABLE = "alembic_version"  # Alembic's default; one row: the store's revision
SQLITE_LOCK_TRIES = 30  # each try waits out the busy timeout (10 s): a long migration elsewhere gets 5 minutes


def _config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(Path(__file__).parent).replace("%", "%%"))  # configparser syntax
    return config


@cache
def _scripts() -> ScriptDirectory:
    return ScriptDirectory.from_config(_config())


def head() -> str:
    """The newest revision: where :func:`upgrade` takes a store."""
    return _scripts().get_current_head()


def revision(engine: Engine) -> str | None:
    """The store's revision; None for an empty database or one made before migrations.

    Read from Alembic's version table directly: its MigrationContext logs at INFO
    on every look, and readers that poll (the workers' geometry) look often.
    """
    with engine.connect() as conn:
        if not inspect(conn).has_table(VERSION_TABLE):
            return None
        return conn.execute(select(column("version_num")).select_from(table(VERSION_TABLE))).scalar_one_or_none()


def _lock(conn: Connection) -> None:
    """Begin the migration's transaction holding the lock that keeps other processes' upgrades out."""
    if conn.dialect.name != "sqlite":
        conn.execute(select(func.pg_advisory_xact_lock(ADVISORY_LOCK)))  # released at commit or rollback
        return
    for attempt in range(1, SQLITE_LOCK_TRIES + 1):
        try:
            conn.exec_driver_sql("BEGIN IMMEDIATE")
            return
        except OperationalError as exc:
            conn.rollback()
            if "locked" not in str(exc) or attempt == SQLITE_LOCK_TRIES:
                raise
            log.info("store busy (another process migrating or writing?): waiting again for its write lock")


def upgrade(engine: Engine) -> None:
    """Bring the store behind ``engine`` to :func:`head`; a single read when it is there already.

    A store migrated by a newer maskwatch is refused (InputError) rather than half understood.
    """
    current = revision(engine)
    if current == head():
        return
    if current is not None and current not in {script.revision for script in _scripts().walk_revisions()}:
        raise InputError(f"the store's schema is at revision {current!r}, newer than this maskwatch knows ({head()!r}): "
                         "upgrade maskwatch to open it")
    config = _config()
    with engine.connect() as conn:
        _lock(conn)
        config.attributes["connection"] = conn
        command.upgrade(config, "head")
        conn.commit()
    log.info("store schema at revision %s", head())
