"""The operator dashboard: ``streamlit run dashboard/app.py -- --config site.yaml [--out serve-out]``.

It reads the store and the live service's status files and never runs the
pipeline itself, so a slow page can never slow the cameras down. With
``dashboard.auth.users`` configured, only the login page exists until a user
logs in.
"""

from __future__ import annotations

import sys
from pathlib import Path

import streamlit as st

from dashboard import auth
from dashboard.settings import SettingsError, load_settings
from dashboard.widgets import set_context

PAGES = (  # file, title, icon
    ("live.py", "Live", ":material/videocam:"),
    ("counts.py", "Counts", ":material/bar_chart:"),
    ("sizes.py", "Sizes", ":material/straighten:"),
    ("alarms.py", "Alarms", ":material/notifications:"),
    ("zones.py", "Zones", ":material/polyline:"),
    ("tracks.py", "Track explorer", ":material/timeline:"),
)


def _argv() -> list[str]:
    """Arguments after ``--`` of ``streamlit run``; none when another program (a test) runs the script."""
    return sys.argv[1:] if sys.argv and Path(sys.argv[0]).resolve() == Path(__file__).resolve() else []


def main() -> None:
    st.set_page_config(page_title="maskwatch", page_icon=":material/visibility:", layout="wide")
    try:
        settings = load_settings(_argv())
    except SettingsError as exc:
        st.error(str(exc))
        st.stop()
    user = auth.current_user(settings)
    if user is None:
        st.navigation([st.Page(lambda: auth.login_page(settings), title="Log in", url_path="login")]).run()
        return
    set_context(settings, user)
    with st.sidebar:
        st.caption(f"{user.name} · {user.role}")
        if settings.auth_required:
            st.button("Log out", on_click=auth.logout)
    st.navigation([st.Page(file, title=title, icon=icon, default=i == 0) for i, (file, title, icon) in enumerate(PAGES)]).run()


main()
