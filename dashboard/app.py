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
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import streamlit as st

from common import redact_url
from dashboard import auth
from dashboard.settings import SettingsError, load_settings
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
        if isinstance(seen, SQLAlchemyError | sqlite3.Error | CommandError):
            detail = str(seen.orig if isinstance(seen, DBAPIError) and seen.orig is not None else seen)
            line = next((part.strip() for part in detail.splitlines() if part.strip()), type(seen).__name__)
            line = _PATH.sub("…", redact_url(line))
            return line if len(line) <= 160 else line[:157] + "..."
        seen = seen.__cause__ or seen.__context__
    return None


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
        auth.sync_cookie(settings)
    pages = [st.Page(file, title=title, icon=icon, url_path=path, default=i == 0)
             for i, (file, title, icon, path) in enumerate(PAGES)]  # fmt: skip
    with store_errors_shown():
        st.navigation(pages).run()


if __name__ == "__main__":  # streamlit run (and AppTest) run this file as __main__; dashboard.links imports PAGES
    main()
