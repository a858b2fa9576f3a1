"""Who is using the dashboard: a login form when users are configured, a signed session, and the role that decides edits.

Without ``dashboard.auth.users`` the dashboard is open and everyone is an
operator (a single box on a trusted network); with users, nothing but the
login form is served until a user logs in, and viewers cannot acknowledge
alarms or edit zones. Pages check :attr:`User.can_edit` before showing an
edit control *and* again in the action itself.

A login lasts ``dashboard.auth.session_hours`` across reloads, bookmarks, new
tabs and server restarts (with ``MASKWATCH_SESSION_KEY``): the browser keeps a
signed token (:func:`dashboard.passwords.sign_session`) in the cookie
:data:`COOKIE`, and every script run checks it again against the config, so a
removed user, a changed role or a changed password ends the session at once.
Logging out forgets the token in this tab, clears the cookie and revokes the
token in this server process.

``python -m dashboard.auth hash`` prints the salted hash to put in the config.
"""

from __future__ import annotations

import base64
import getpass
import json
import sys
import threading
import time

import streamlit as st

from dashboard.passwords import hash_password, read_session, session_key, sign_session, verify_password
from dashboard.settings import Settings, User

COOKIE = "maskwatch_session"
TOKEN_KEY, COOKIE_ACTION_KEY, SIGNED_OUT_KEY = "dashboard_session", "dashboard_cookie_action", "dashboard_signed_out"
ANONYMOUS = User("anonymous", "operator")
_DUMMY_HASH = hash_password("", salt=b"\0" * 16)  # unknown users cost as much as wrong passwords: no name probing
_revoked: dict[str, float] = {}  # nonce of a logged-out session → its expiry (this process only)
_revoked_lock = threading.Lock()


def current_user(settings: Settings) -> User | None:
    """The logged-in user; the anonymous operator when no users are configured; None before login.

    The session is this tab's token or, on a fresh page (reload, new tab, bookmark), the browser's cookie; either is
    checked on every run: signature, expiry, revocation, and that the user still exists with the same role.
    """
    if not settings.auth_required:
        return ANONYMOUS
    token = st.session_state.get(TOKEN_KEY)
    from_cookie = token is None and not st.session_state.get(SIGNED_OUT_KEY)
    if from_cookie:
        token = _browser_cookie()
    user = session_user(settings, token) if token else None
    if user is None:
        st.session_state.pop(TOKEN_KEY, None)
        if token:  # expired, tampered with, revoked or for a user the config no longer has: the browser forgets it
            st.session_state[COOKIE_ACTION_KEY] = "clear"
    else:
        st.session_state[TOKEN_KEY] = token
    return user


def seconds_left(settings: Settings) -> float | None:
    """How long this tab's session has left; None without one."""
    token = st.session_state.get(TOKEN_KEY)
    claims = read_session(token, session_key(), settings.password_hashes) if token else None
    return claims.expires - time.time() if claims else None


def session_user(settings: Settings, token: str) -> User | None:
    """The user a session token stands for, if it is still good under ``settings``."""
    claims = read_session(token, session_key(), settings.password_hashes)
    if claims is None or _is_revoked(claims.nonce):
        return None
    config = settings.dashboard.auth.users.get(claims.user)
    if config is None or config.role != claims.role:
        return None
    return User(claims.user, config.role)


def _browser_cookie() -> str | None:
    """The session cookie the browser sent when this page was opened."""
    try:
        return st.context.cookies.get(COOKIE)
    except Exception:  # no browser behind this run (a test harness, a bare script run)
        return None


def _is_revoked(nonce: str) -> bool:
    with _revoked_lock:
        now = time.time()
        for gone in [n for n, expires in _revoked.items() if expires <= now]:
            del _revoked[gone]
        return nonce in _revoked


def _revoke(token: str) -> None:
    """Refuse ``token`` from now on in this process (its nonce, read without checking: revoking is always safe)."""
    try:
        payload = json.loads(_b64decode(token.split(".")[1]))
        nonce, expires = str(payload["n"]), float(payload["e"])
    except (ValueError, KeyError, TypeError, IndexError, AttributeError):
        return
    with _revoked_lock:
        _revoked[nonce] = expires


def _b64decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def check_login(settings: Settings, username: str, password: str) -> User | None:
    """The user if ``password`` is theirs."""
    encoded = settings.password_hashes.get(username)
    ok = verify_password(password, encoded or _DUMMY_HASH)
    return User(username, settings.role(username)) if ok and encoded else None


def login_page(settings: Settings) -> None:
    """The only page served to someone not logged in, at whichever page address they opened (kept for after)."""
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
            hours = settings.dashboard.auth.session_hours
            token = sign_session(session_key(), user.name, user.role, settings.password_hashes[user.name], hours)
            st.session_state[TOKEN_KEY] = token
            st.session_state[COOKIE_ACTION_KEY] = "set"
            st.session_state.pop(SIGNED_OUT_KEY, None)
            st.rerun()  # the same address, now with its page: /alarms?alarm=... opened signed out lands there


def logout() -> None:
    token = st.session_state.pop(TOKEN_KEY, None)
    if token:
        _revoke(token)
    st.session_state[SIGNED_OUT_KEY] = True  # the cookie this page was opened with no longer counts
    st.session_state[COOKIE_ACTION_KEY] = "clear"


def sync_cookie(settings: Settings) -> None:
    """Set or clear the browser's session cookie after a login or logout in this tab (a same-origin script).

    Rendered on every run until the next login or logout, not once: a run cut short (a click, a reload) cannot lose
    it, and an unchanged element is not run again by the browser.
    """
    action = st.session_state.get(COOKIE_ACTION_KEY)
    token = st.session_state.get(TOKEN_KEY)
    if action == "set" and token:
        claims = read_session(token, session_key(), settings.password_hashes)
        max_age = max(0, round(claims.expires - time.time())) if claims else 0
        value = token
    elif action in ("set", "clear"):
        max_age, value = 0, ""
    else:
        return
    cookie = json.dumps(f"{COOKIE}={value}; Path=/; Max-Age={max_age}; SameSite=Lax")
    st.html(f"<script>document.cookie = {cookie} + (location.protocol === 'https:' ? '; Secure' : '');</script>",
            width="content", unsafe_allow_javascript=True)  # fmt: skip


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
