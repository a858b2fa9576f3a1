"""Signed sessions, one address per page, operator chrome and plain errors of the dashboard.

Tokens and links are tested as functions; the session's checks against the
config and a broken store through AppTest (the browser's cookie stands in for
``st.context.cookies``, which AppTest cannot seed); reloads, new tabs, a server
restart, deep links through the login and the hidden Deploy button in a real
Chromium on ``maskwatch dashboard``, started away from the checkout so only its
own command line sets the chrome.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import yaml
from streamlit.testing.v1 import AppTest
from test_cli import assert_one_line_error, maskwatch, write_site
from test_dashboard import PASSWORDS, REPO, configure, copy_store, demo, hashes, open_app, texts, with_users  # noqa: F401

from common import InputError
from dashboard import auth
from dashboard.app import PAGES, store_problem
from dashboard.links import page_link
from dashboard.passwords import SESSION_KEY_ENV, read_session, session_key, sign_session
from dashboard.settings import SettingsError, load_settings
from storage.migrations import head
from tests.test_serve import free_port

CHROMIUM = "/usr/bin/chromium"
KEY = b"k" * 32
HASHES = {"olivia": "scrypt$16384$8$1$00$aa", "victor": "scrypt$16384$8$1$01$bb"}  # shapes only: tokens bind to them


# -- tokens and links ---------------------------------------------------------------------------------------------


def test_a_session_token_is_refused_when_expired_tampered_with_or_its_password_changed() -> None:
    now = 1_800_000_000
    token = sign_session(KEY, "olivia", "operator", HASHES["olivia"], hours=12, now=now)
    claims = read_session(token, KEY, HASHES, now=now + 11.9 * 3600)
    assert (claims.user, claims.role, claims.expires) == ("olivia", "operator", now + 12 * 3600)
    assert "operator-pass" not in token and HASHES["olivia"] not in token
    assert read_session(token, KEY, HASHES, now=now + 12 * 3600) is None  # expired
    assert read_session(token, b"x" * 32, HASHES, now=now) is None  # another server's key
    assert read_session(token, KEY, HASHES | {"olivia": "scrypt$16384$8$1$02$cc"}, now=now) is None  # new password
    assert read_session(token, KEY, {"victor": HASHES["victor"]}, now=now) is None  # user removed
    prefix, payload, mac = token.split(".")
    forged = sign_session(KEY, "olivia", "operator", HASHES["olivia"], hours=12 * 365, now=now).split(".")[1]
    for bad in (f"{prefix}.{forged}.{mac}", f"{prefix}.{payload}.{mac[:-2]}AA", f"{prefix}.{payload}", "", "v1..", "x.y.z"):
        assert read_session(bad, KEY, HASHES, now=now) is None, bad
    assert sign_session(KEY, "olivia", "operator", HASHES["olivia"], 12, now) != token  # a fresh nonce each time


def test_the_session_key_comes_from_the_environment_or_this_process(tmp_path: Path) -> None:
    assert session_key({}) == session_key({}) and len(session_key({})) == 32
    shared = "s" * 40
    assert session_key({SESSION_KEY_ENV: shared}) == session_key({SESSION_KEY_ENV: shared}) != session_key({})
    config = tmp_path / "site.yaml"
    config.write_text(yaml.safe_dump({"dashboard": {"auth": {"session_hours": 2, "users": {
        "olivia": {"role": "operator", "password_hash": auth.hash_password("pw")}}}}}))  # fmt: skip
    assert load_settings(["--config", str(config)], env={}).dashboard.auth.session_hours == 2
    with pytest.raises(SettingsError, match=f"{SESSION_KEY_ENV} is too short") as error:
        load_settings(["--config", str(config)], env={SESSION_KEY_ENV: "hunter2"})
    assert "hunter2" not in str(error.value)


def test_every_page_has_an_address_and_links_carry_their_query() -> None:
    assert [p for *_, p in PAGES][:6] == ["live", "counts", "sizes", "alarms", "zones", "tracks"]
    assert len({p for *_, p in PAGES}) == len(PAGES)
    assert page_link("alarms", alarm="1b2c-3d") == "alarms?alarm=1b2c-3d"
    assert page_link("tracks.py", camera="gate cam", track="u/1", unused=None) == "tracks?camera=gate+cam&track=u%2F1"
    assert page_link("counts") == "counts"
    with pytest.raises(ValueError, match="no dashboard page 'nope'"):
        page_link("nope")


# -- sessions through AppTest -------------------------------------------------------------------------------------


@pytest.fixture
def users(demo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, hashes: dict[str, str]) -> dict:  # noqa: F811
    users = with_users(monkeypatch, hashes)
    configure(monkeypatch, tmp_path, copy_store(demo, tmp_path), demo / "snapshots", users=users)
    return users


def browser_cookie(monkeypatch: pytest.MonkeyPatch, token: str | None) -> None:
    """What the browser sends as the session cookie when the page is opened."""
    monkeypatch.setattr(auth, "_browser_cookie", lambda: token)


def cookie_scripts(at) -> list[str]:
    return [e.proto.body for e in at.get("html") if "maskwatch_session=" in e.proto.body]


def token_for(name: str, known: dict[str, str], role: str, hours: float = 12, now: float | None = None) -> str:
    return sign_session(session_key(), name, role, known[name], hours, now)


def test_login_sets_a_cookie_that_opens_later_pages_until_logout(users: dict, monkeypatch: pytest.MonkeyPatch,
                                                                  hashes: dict[str, str]) -> None:  # noqa: F811  # fmt: skip
    browser_cookie(monkeypatch, None)
    at = open_app(login="olivia")
    scripts = cookie_scripts(at)
    assert len(scripts) == 1, (texts(at), [e.value for e in at.exception], [e.proto.body[:80] for e in at.get("html")])
    [script] = scripts
    at.switch_page("counts.py").run()
    assert [t.value for t in at.title] == ["Counts"] and cookie_scripts(at) == [script]  # the same, until logout
    token = script.split("maskwatch_session=")[1].split(";")[0]
    assert 12 * 3600 - 60 <= int(script.split("Max-Age=")[1].split(";")[0]) <= 12 * 3600
    assert "SameSite=Lax" in script and "operator-pass" not in script

    browser_cookie(monkeypatch, token)  # a reload or a new tab: a fresh session with the cookie
    fresh = open_app("alarms.py")
    assert [t.value for t in fresh.title] == ["Alarms"] and "olivia · operator" in fresh.sidebar.caption[0].value

    next(b for b in fresh.sidebar.button if b.label == "Log out").click().run()
    assert fresh.text_input(key="login_password") and [t.value for t in fresh.title] == ["maskwatch"]
    scripts = cookie_scripts(fresh)
    assert len(scripts) == 1, (texts(fresh), [e.value for e in fresh.exception])
    [cleared] = scripts
    assert "maskwatch_session=;" in cleared and "Max-Age=0" in cleared
    fresh.run()
    assert fresh.text_input(key="login_password")  # the cookie the page was opened with counts no more
    again = open_app()
    assert again.text_input(key="login_password")  # and the token is revoked in this server even if a copy survives


@pytest.mark.parametrize("change", ["expired", "tampered", "role changed", "user removed", "password changed"])
def test_a_session_ends_when_it_expires_is_tampered_with_or_the_user_changes(
        users: dict, monkeypatch: pytest.MonkeyPatch, hashes: dict[str, str], tmp_path: Path, change: str) -> None:  # noqa: F811  # fmt: skip
    token = token_for("victor", hashes, "viewer", now=time.time() - (13 * 3600 if change == "expired" else 0))
    if change == "tampered":
        prefix, _, mac = token.split(".")
        token = f"{prefix}.{token_for('victor', hashes, 'operator').split('.')[1]}.{mac}"
    browser_cookie(monkeypatch, token)
    config = tmp_path / "site.yaml"
    site = yaml.safe_load(config.read_text())
    if change == "role changed":
        site["dashboard"]["auth"]["users"]["victor"]["role"] = "operator"
    elif change == "user removed":
        del site["dashboard"]["auth"]["users"]["victor"]
    elif change == "password changed":
        monkeypatch.setenv("TEST_VIEWER_HASH", auth.hash_password("a new one"))
    config.write_text(yaml.safe_dump(site))
    at = open_app()
    assert at.text_input(key="login_password") and not at.sidebar.caption, change
    assert any("Max-Age=0" in s for s in cookie_scripts(at))  # the browser is told to forget it


def test_a_config_change_ends_a_session_that_is_already_open(users: dict, monkeypatch: pytest.MonkeyPatch,
                                                               hashes: dict[str, str], tmp_path: Path) -> None:  # noqa: F811  # fmt: skip
    browser_cookie(monkeypatch, None)
    at = open_app("counts.py", login="victor")
    config = tmp_path / "site.yaml"
    site = yaml.safe_load(config.read_text())
    site["dashboard"]["auth"]["users"]["victor"]["role"] = "operator"
    config.write_text(yaml.safe_dump(site))
    at.run()
    assert at.text_input(key="login_password")


def test_the_page_and_its_query_survive_the_login(users: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    browser_cookie(monkeypatch, None)
    at = open_app()
    at.query_params["alarm"] = "abc-123"
    at.run()
    at.text_input(key="login_username").input("olivia")
    at.text_input(key="login_password").input(PASSWORDS["olivia"])
    at.button[0].click().run()
    assert not at.exception and at.query_params.get("alarm") == "abc-123"


# -- a store that cannot be read ----------------------------------------------------------------------------------


@pytest.mark.parametrize("broken", ["not a database", "refused"])
def test_a_store_that_cannot_be_read_is_one_plain_line(demo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,  # noqa: F811
                                                       broken: str) -> None:  # fmt: skip
    db = tmp_path / "secret-dir" / "store.db"
    db.parent.mkdir()
    db.write_bytes(b"this is not a SQLite file " * 100)
    configure(monkeypatch, tmp_path, db, demo / "snapshots")
    if broken == "refused":
        monkeypatch.setenv("MASKWATCH_STORE_URL", f"postgresql+psycopg://root:StorePw-72@127.0.0.1:{free_port()}/x")
    at = open_app()
    for file, *_ in PAGES[1:]:
        at.switch_page(file).run()
        assert not at.exception, (file, [e.value for e in at.exception])
        errors = [e.value for e in at.error]
        assert len(errors) == 1 and errors[0].startswith("The store cannot be read: "), (file, errors)
        assert "secret-dir" not in texts(at) and str(tmp_path) not in texts(at) and "StorePw-72" not in texts(at)
        assert "Traceback" not in texts(at)
    expected = "file is not a database" if broken == "not a database" else "Connection refused"
    assert expected in errors[0], errors[0]


def _fragment_script() -> None:
    import sqlite3

    import streamlit as st
    from sqlalchemy.exc import OperationalError

    from dashboard.app import store_errors_shown

    with store_errors_shown():  # as a fragment that re-runs on its own would use it
        st.title("Feed")
        if st.session_state.get("bug"):
            raise KeyError("a real bug")
        raise OperationalError("SELECT 1", {}, sqlite3.DatabaseError("file is not a database"))


def test_a_fragment_can_show_store_failures_the_same_way() -> None:
    at = AppTest.from_function(_fragment_script).run()
    assert [e.value for e in at.error] == ["The store cannot be read: file is not a database"] and not at.exception
    at.session_state["bug"] = True
    at.run()
    assert not at.error and at.exception  # a bug stays an exception (and Streamlit logs its traceback)


def test_only_store_failures_become_a_line() -> None:
    from sqlalchemy.exc import OperationalError

    error = OperationalError("SELECT 1", {}, sqlite3.OperationalError("unable to open database file /srv/a/b.db"))
    assert store_problem(error) == "unable to open database file …"
    assert store_problem(KeyError("a bug")) is None and store_problem(ValueError("another")) is None
    assert store_problem(InputError("bad input elsewhere")) is None



def test_a_store_from_a_newer_maskwatch_is_one_plain_line_too(demo: Path, tmp_path: Path,  # noqa: F811
                                                              monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    db = copy_store(demo, tmp_path)
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE alembic_version SET version_num = '9999'")
    configure(monkeypatch, tmp_path, db, demo / "snapshots")
    at = open_app("counts.py")
    assert [e.value for e in at.error] == [
        "The store cannot be read: the store's schema is at revision '9999', newer than this maskwatch knows "
        f"('{head()}'): upgrade maskwatch to open it"], [e.value for e in at.error]


# -- the command line ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("problem", ["missing file", "not YAML", "plain password", "short session key"])
def test_dashboard_with_a_bad_config_stops_at_start_in_one_line(tmp_path: Path, problem: str) -> None:
    site = write_site(tmp_path, {"dashboard": {"auth": {"users": {"ann": {"password_hash": "Plain-Secret-9"}}}}})
    env = {}
    if problem == "missing file":
        site, expected = str(tmp_path / "gone.yaml"), "config file not found"
    elif problem == "not YAML":
        Path(site).write_text("dashboard: [unclosed\n")
        expected = "is not valid YAML"
    elif problem == "plain password":
        expected = "dashboard.auth.users.ann: not a password hash"
    else:
        write_site(tmp_path, {"dashboard": {"auth": {"users": {"ann": {"password_hash": auth.hash_password("x")}}}}})
        env, expected = {SESSION_KEY_ENV: "Short-Key-9"}, f"{SESSION_KEY_ENV} is too short"
    result = subprocess.run([sys.executable, "-m", "maskwatch", "dashboard", "--config", site, "--out", str(tmp_path / "o"),
                             "--port", str(free_port())], capture_output=True, text=True, timeout=120,
                            env=os.environ | env)  # fmt: skip
    assert_one_line_error(result, expected)
    assert "Plain-Secret-9" not in result.stderr and "Short-Key-9" not in result.stderr
    debug = maskwatch("--debug", "dashboard", "--config", site, "--port", str(free_port()))
    assert debug.returncode != 0 and "Traceback" in debug.stderr


def test_dashboard_command_hides_the_developer_chrome(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from maskwatch import cli

    started = []
    monkeypatch.setattr(cli, "_run_until_stopped", lambda command: started.append(command) or 0)
    site = write_site(tmp_path, {"store": {"url": f"sqlite:///{tmp_path / 'new.db'}"}})
    result = CliRunner().invoke(cli.app, ["dashboard", "--config", site])
    assert result.exit_code == 0, result.output
    [command] = started
    options = dict(zip(command[command.index("run") + 2::2], command[command.index("run") + 3::2]))
    assert options["--client.toolbarMode"] == "minimal" and options["--client.showErrorDetails"] == "none"
    checked_in = (REPO / ".streamlit" / "config.toml").read_text()
    assert 'toolbarMode = "minimal"' in checked_in and 'showErrorDetails = "none"' in checked_in


# -- in Chromium ---------------------------------------------------------------------------------------------------


@contextmanager
def dashboard_server(site: Path, cwd: Path, env: dict[str, str]) -> Iterator[str]:
    """``maskwatch dashboard`` on a free port, started in ``cwd`` (not the checkout: no .streamlit/ to pick up)."""
    from test_dashboard_browser import dashboard_served  # noqa: PLC0415 (its module skips without Chromium)

    with dashboard_served([sys.executable, "-m", "maskwatch", "dashboard", "--config", str(site)], cwd, env) as url:
        yield url


def signed_in(page) -> bool:
    """Wait for the page to settle on either the login form or a signed-in page; which one?"""
    page.locator("[data-testid=stSidebarUserContent] >> text=olivia · operator").or_(
        page.get_by_role("button", name="Log in")).first.wait_for()
    return page.get_by_role("button", name="Log in").count() == 0


def cookie_cleared(context, within_s: float = 10) -> bool:
    deadline = time.monotonic() + within_s
    while [c for c in context.cookies() if c["name"] == auth.COOKIE]:
        if time.monotonic() > deadline:
            return False
        time.sleep(0.2)
    return True


def test_reloads_tabs_and_restarts_keep_the_session_and_the_page(demo: Path, tmp_path: Path) -> None:  # noqa: F811
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install -e '.[test]')")
    if not Path(CHROMIUM).is_file():
        pytest.skip(f"no Chromium at {CHROMIUM} (Debian's chromium package; .ci/services.sh installs it)")
    site = tmp_path / "site.yaml"
    site.write_text(yaml.safe_dump({
        "store": {"url": f"sqlite:///{copy_store(demo, tmp_path)}", "snapshot_dir": str(demo / "snapshots")},
        "dashboard": {"auth": {"users": {"olivia": {"role": "operator", "password_hash": auth.hash_password(PASSWORDS["olivia"])}}}},
    }))  # fmt: skip
    env = {SESSION_KEY_ENV: "replicas-share-this-key-" + "0123456789abcdef"}
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            context = browser.new_context(viewport={"width": 1400, "height": 900})
            context.set_default_timeout(30_000)
            page = context.new_page()
            with dashboard_server(site, tmp_path, env) as url:
                page.goto(f"{url}/alarms?alarm=deep-link-1")  # a bookmark, signed out
                assert not signed_in(page)
                assert page.get_by_text("Page not found").count() == 0
                page.get_by_label("Username").fill("olivia")
                page.get_by_label("Password", exact=True).fill(PASSWORDS["olivia"])
                page.get_by_role("button", name="Log in").click()
                page.get_by_role("heading", name="Alarms", exact=True).wait_for()
                assert signed_in(page) and page.url == f"{url}/alarms?alarm=deep-link-1"
                assert "operator-pass" not in page.url and not [c for c in context.cookies() if "pass" in c["value"]]
                page.wait_for_timeout(500)
                assert page.get_by_text("Deploy").count() == 0 and page.get_by_test_id("stMainMenu").count() == 0

                page.reload()
                page.get_by_role("heading", name="Alarms", exact=True).wait_for()
                assert signed_in(page) and page.url.startswith(f"{url}/alarms")

                tab = context.new_page()
                tab.goto(f"{url}/counts")
                tab.get_by_role("heading", name="Counts", exact=True).wait_for()
                assert signed_in(tab)
                tab.close()

            with dashboard_server(site, tmp_path, env) as url:  # a restart (or another replica) with the same key
                page.goto(f"{url}/zones")
                page.get_by_role("heading", name="Zones", exact=True).wait_for()
                assert signed_in(page)
                page.get_by_role("button", name="Log out").click()
                page.get_by_role("button", name="Log in").wait_for()
                assert cookie_cleared(context)  # by a script on the login page
                page.reload()
                assert not signed_in(page)
        finally:
            browser.close()


def test_a_wall_display_is_signed_out_when_its_session_ends(demo: Path, tmp_path: Path) -> None:  # noqa: F811
    """No clicks on a wall display: the page checks its session by itself and shows the login once it has expired."""
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install -e '.[test]')")
    if not Path(CHROMIUM).is_file():
        pytest.skip(f"no Chromium at {CHROMIUM} (Debian's chromium package; .ci/services.sh installs it)")
    site = tmp_path / "site.yaml"
    site.write_text(yaml.safe_dump({
        "store": {"url": f"sqlite:///{copy_store(demo, tmp_path)}", "snapshot_dir": str(demo / "snapshots")},
        "dashboard": {"auth": {"session_hours": 0.004, "users": {  # 14.4 s
            "olivia": {"role": "operator", "password_hash": auth.hash_password(PASSWORDS["olivia"])}}}},
    }))  # fmt: skip
    with sync_api.sync_playwright() as playwright, dashboard_server(site, tmp_path, {}) as url:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            page.set_default_timeout(30_000)
            page.goto(f"{url}/counts")
            page.get_by_label("Username").fill("olivia")
            page.get_by_label("Password", exact=True).fill(PASSWORDS["olivia"])
            page.get_by_role("button", name="Log in").click()
            page.get_by_role("heading", name="Counts", exact=True).wait_for()
            started = time.monotonic()
            page.get_by_role("button", name="Log in").wait_for(timeout=40_000)
            assert time.monotonic() - started > 5 and page.url.startswith(f"{url}/counts")
            assert cookie_cleared(page.context)
        finally:
            browser.close()
