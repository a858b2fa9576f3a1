"""Shared fixtures: the read-only data set beside the checkout, skipped cleanly when absent."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

SHARED_DATA = Path(os.environ.get("MASKWATCH_SHARED_DATA", Path(__file__).resolve().parents[1].parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data`` (or $MASKWATCH_SHARED_DATA); tests needing it skip when it is missing."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared test data not found at {SHARED_DATA} (set MASKWATCH_SHARED_DATA)")
    return SHARED_DATA


PG_TEST_URL = os.environ.get("MASKWATCH_TEST_PG_URL", "postgresql+psycopg://root@127.0.0.1:5432/test")


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A store URL with an empty database: a SQLite file in tmp_path, or a fresh PostgreSQL database.

    PostgreSQL tests get their own database (created from $MASKWATCH_TEST_PG_URL,
    dropped afterwards) so they never see each other's rows; they skip, naming the
    URL and the error, when that server cannot be reached.
    """
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'store.db'}"
    from sqlalchemy import create_engine, make_url, text
    from sqlalchemy.exc import OperationalError

    name = f"mw_{os.urandom(6).hex()}"
    try:
        admin = create_engine(PG_TEST_URL, isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 5})
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    except (ImportError, OperationalError) as exc:
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        pytest.skip(f"PostgreSQL not reachable at {PG_TEST_URL}: {reason}")

    def drop() -> None:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()

    request.addfinalizer(drop)
    return make_url(PG_TEST_URL).set(database=name).render_as_string(hide_password=False)
