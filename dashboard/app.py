"""The operator dashboard: ``streamlit run dashboard/app.py -- --config site.yaml [--out serve-out]``.

It reads the store and the live service's status files and never runs the
pipeline itself, so a slow page can never slow the cameras down. Every page
has its own address (``/alarms``, ``/tracks?camera=..&track=..``: see
:func:`dashboard.links.page_link`). With ``dashboard.auth.users`` configured,
every address shows the login form until a user logs in, then the page it
names, query included; the login is a signed session that survives reloads
and new tabs (:mod:`dashboard.auth`).
"""

from __future__ import annotations

import logging
import re
import sqlite3
import sys
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import streamlit as st

from common import InputError, redact_url
from dashboard import auth
from dashboard.settings import SettingsError, User, load_settings
from dashboard.widgets import set_context

PAGES = (  # file, title, icon, address (url_path); the first is the default page
    ("live.py", "Live", ":material/videocam:", "live"),
    ("counts.py", "Counts", ":material/bar_chart:", "counts"),
    ("sizes.py", "Sizes", ":material/straighten:", "sizes"),
    ("alarms.py", "Alarms", ":material/notifications:", "alarms"),
    ("zones.py", "Zones", ":material/polyline:", "zones"),
    ("tracks.py", "Track explorer", ":material/timeline:", "tracks"),
    ("heatmap.py", "Heatmap", ":material/local_fire_department:", "heatmap"),
)

SESSION_RECHECK_S = 60.0  # how often an open page checks its session again by itself
log = logging.getLogger("dashboard")
_PATH = re.compile(r"""(?:[A-Za-z]:)?(?:[/\\][^\s/\\'"():]+){2,}[/\\]?""")  # an absolute path of two parts or more


def _argv() -> list[str]:
    """Arguments after ``--`` of ``streamlit run``; none when another program (a test) runs the script."""
    return sys.argv[1:] if sys.argv and Path(sys.argv[0]).resolve() == Path(__file__).resolve() else []


def store_problem(exc: BaseException) -> str | None:
    """A short reason, without paths or credentials, if ``exc`` means the store cannot be read; else None."""
    from alembic.util import CommandError
    from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchModuleError, SQLAlchemyError

    seen: BaseException | None = exc
    for _ in range(8):  # the exception, what caused it, what that was raised in...
        if seen is None:
            break
        if isinstance(seen, ArgumentError | NoSuchModuleError):
            return "not a database URL (store.url)"
        if isinstance(seen, SQLAlchemyError | sqlite3.Error | CommandError) or _from_storage(seen):
            detail = str(seen.orig if isinstance(seen, DBAPIError) and seen.orig is not None else seen)
            line = next((part.strip() for part in detail.splitlines() if part.strip()), type(seen).__name__)
            line = _PATH.sub("…", redact_url(line))
            return line if len(line) <= 160 else line[:157] + "..."
        seen = seen.__cause__ or seen.__context__
    return None


def _from_storage(exc: BaseException) -> bool:
    """An InputError the store package raised about the store itself (a schema newer than this maskwatch, say)."""
    import storage

    if not isinstance(exc, InputError):
        return False
    package = Path(storage.__file__).resolve().parent
    return any(Path(frame.filename).resolve().is_relative_to(package) for frame in traceback.extract_tb(exc.__traceback__))


@contextmanager
def store_errors_shown() -> Iterator[None]:
    """A store that cannot be read, inside the block, is one plain line on the page and its traceback goes to the log.

    Every page runs inside it; a fragment that re-runs on its own (``st.fragment(run_every=...)``) can put its body
    in it too. Any other exception is a bug and goes on to Streamlit, which logs it with its traceback.
    """
    try:
        yield
    except Exception as exc:  # not st.rerun / st.stop: those are BaseExceptions
        reason = store_problem(exc)
        if reason is None:
            raise
        log.error("the store cannot be read: %s", reason, exc_info=True)
        st.error(f"The store cannot be read: {reason}", icon=":material/database:")


def watch_session(user: User, seconds_left: float | None) -> None:
    """Check the session again every minute (and when it ends) without a click, as a wall display needs.

    Pages that re-run only a fragment never pass through :func:`main`, so an expired session, a removed user or a
    changed role would otherwise go unnoticed until someone clicks.
    """
    every = max(1.0, min(SESSION_RECHECK_S, (seconds_left or 0) + 0.5))

    @st.fragment(run_every=every)
    def recheck() -> None:
        try:
            settings = load_settings(_argv())
        except SettingsError:
            st.rerun()  # the full run shows the problem
        if auth.current_user(settings) != user:
            st.rerun()

    recheck()


def main() -> None:
    st.set_page_config(page_title="maskwatch", page_icon=":material/visibility:", layout="wide")
    try:
        settings = load_settings(_argv())
    except SettingsError as exc:
        st.error(str(exc))
        st.stop()
    user = auth.current_user(settings)
    if user is None:  # every address shows the login, so the page and its query are still there after it
        def login() -> None:
            auth.sync_cookie(settings)
            auth.login_page(settings)

        pages = [st.Page(login, title="Log in", url_path=path, default=i == 0) for i, (_, _, _, path) in enumerate(PAGES)]
        st.navigation(pages, position="hidden").run()
        return
    set_context(settings, user)
    with st.sidebar:
        st.caption(f"{user.name} · {user.role}")
        if settings.auth_required:
            st.button("Log out", on_click=auth.logout)
            watch_session(user, auth.seconds_left(settings))
        auth.sync_cookie(settings)
    pages = [st.Page(file, title=title, icon=icon, url_path=path, default=i == 0)
             for i, (file, title, icon, path) in enumerate(PAGES)]  # fmt: skip
    with store_errors_shown():
        st.navigation(pages).run()


if __name__ == "__main__":  # streamlit run (and AppTest) run this file as __main__; dashboard.links imports PAGES
    main()
