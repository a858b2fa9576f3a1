"""Who is using the dashboard: a login form when users are configured, and the role that decides edits.

Without ``dashboard.auth.users`` the dashboard is open and everyone is an
operator (a single box on a trusted network); with users, nothing but the
login form is served until a user logs in, and viewers cannot acknowledge
alarms or edit zones. Pages check :attr:`User.can_edit` before showing an
edit control *and* again in the action itself.

``python -m dashboard.auth hash`` prints the salted hash to put in the config.
"""

from __future__ import annotations

import getpass
import sys

import streamlit as st

from dashboard.passwords import hash_password, verify_password
from dashboard.settings import Settings, User

USER_KEY = "dashboard_user"
ANONYMOUS = User("anonymous", "operator")
_DUMMY_HASH = hash_password("", salt=b"\0" * 16)  # unknown users cost as much as wrong passwords: no name probing


def current_user(settings: Settings) -> User | None:
    """The logged-in user; the anonymous operator when no users are configured; None before login."""
    if not settings.auth_required:
        return ANONYMOUS
    return st.session_state.get(USER_KEY)


def check_login(settings: Settings, username: str, password: str) -> User | None:
    """The user if ``password`` is theirs."""
    encoded = settings.password_hashes.get(username)
    ok = verify_password(password, encoded or _DUMMY_HASH)
    return User(username, settings.role(username)) if ok and encoded else None


def login_page(settings: Settings) -> None:
    """The only page served to someone not logged in."""
    st.title("maskwatch")
    with st.form("login"):
        username = st.text_input("Username", key="login_username")
        password = st.text_input("Password", type="password", key="login_password")
        submitted = st.form_submit_button("Log in")
    if submitted:
        user = check_login(settings, username.strip(), password)
        if user is None:
            st.error("Wrong username or password.")
        else:
            st.session_state[USER_KEY] = user
            st.rerun()


def logout() -> None:
    st.session_state.pop(USER_KEY, None)


def main(argv: list[str]) -> int:
    """``python -m dashboard.auth hash``: read a password (twice on a terminal, once from a pipe) and print its hash."""
    if argv != ["hash"]:
        print("usage: python -m dashboard.auth hash   (reads the password; prints the scrypt hash)", file=sys.stderr)
        return 2
    if sys.stdin.isatty():
        password = getpass.getpass("Password: ")
        if getpass.getpass("Again: ") != password:
            print("the passwords differ", file=sys.stderr)
            return 1
    else:
        password = sys.stdin.readline().rstrip("\n")
    if not password:
        print("empty password", file=sys.stderr)
        return 1
    print(hash_password(password))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
