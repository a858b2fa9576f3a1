"""End to end: ``streamlit run dashboard/app.py`` served headless, every page opened in a real Chromium.

The store comes from a real ``maskwatch demo`` run and the Live page from a real
``maskwatch serve``; the dashboard gets its settings the way a deployment
passes them (``-- --config site.yaml``) and requires a login. Each page must
show its key text and no Streamlit exception box; a screenshot of each is
saved under :data:`SCREENSHOTS` (CI keeps them as artifacts).

Needs Playwright's Python package and Debian's ``chromium`` (``.ci/services.sh``
installs it); never Playwright's own browser downloads.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import yaml
from test_dashboard import PASSWORDS, REPO, run_demo, serving

from dashboard.passwords import hash_password

CHROMIUM = "/usr/bin/chromium"
SCREENSHOTS = REPO / "artifacts" / "screenshots"
PAGES = (  # sidebar link, text the page must show
    ("Live", "demo-belt · latest frame"),
    ("Counts", "Totals in the window"),
    ("Sizes", "Tracks with sizes"),
    ("Alarms", "person-on-belt"),
    ("Zones", "points"),
    ("Track explorer", "stored observations"),
    ("Heatmap", "Dwell time per zone"),
)

sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install -e '.[test]')")
if not Path(CHROMIUM).is_file():
    pytest.skip(f"no Chromium at {CHROMIUM} (Debian's chromium package; .ci/services.sh installs it)", allow_module_level=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def dashboard_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The dashboard served by ``streamlit run`` on a free port, over a demo store and a running service."""
    demo = run_demo(tmp_path_factory.mktemp("demo"))
    with serving(demo, tmp_path_factory.mktemp("serve")) as (out, _):
        site = tmp_path_factory.mktemp("site") / "site.yaml"
        site.write_text(yaml.safe_dump({
            "store": {"url": f"sqlite:///{demo / 'maskwatch.db'}", "snapshot_dir": str(demo / "snapshots")},
            "service": {"live_dir": str(out / "live")},
            "dashboard": {"auth": {"users": {"olivia": {"role": "operator", "password_hash": hash_password(PASSWORDS["olivia"])}}}},
        }))  # fmt: skip
        with dashboard_served(streamlit_run(site)) as url:
            yield url


def streamlit_run(site: Path) -> list[str]:
    """``streamlit run dashboard/app.py -- --config site``, headless on loopback (the port is added by dashboard_served)."""
    return [sys.executable, "-m", "streamlit", "run", "dashboard/app.py", "--server.headless", "true",
            "--server.address", "127.0.0.1", "--browser.gatherUsageStats", "false", "--", "--config", str(site)]  # fmt: skip


@contextmanager
def dashboard_served(command: list[str], cwd: Path = REPO, env: dict[str, str] | None = None) -> Iterator[str]:
    """``command`` (a dashboard server) on a free port, waited for until its health check answers; yields its URL.

    ``streamlit run`` commands get ``--server.port``, others (``maskwatch dashboard``) ``--port``; the server sees no
    MASKWATCH_ variable of the test run, only ``env``'s.
    """
    port = free_port()
    if "streamlit" in command:
        at = command.index("--") if "--" in command else len(command)
        command = [*command[:at], "--server.port", str(port), *command[at:]]
    else:
        command = [*command, "--port", str(port)]
    clean = {k: v for k, v in os.environ.items() if not k.startswith("MASKWATCH_")} | (env or {})
    server = subprocess.Popen(command, cwd=cwd, env=clean, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as answer:
                    if answer.read() == b"ok":
                        break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"{' '.join(command[1:4])} did not come up (exit code {server.poll()})")
                time.sleep(0.5)
        yield url
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_every_page_renders_in_chromium(dashboard_url: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)  # other tests' screenshots are kept beside these
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1500, "height": 1000})
            page.set_default_timeout(30_000)
            page.goto(dashboard_url)
            page.get_by_label("Username").fill("olivia")
            page.get_by_label("Password", exact=True).fill(PASSWORDS["olivia"])
            page.screenshot(path=SCREENSHOTS / "login.png")
            page.get_by_role("button", name="Log in").click()
            for title, expected in PAGES:
                page.get_by_test_id("stSidebarNav").get_by_role("link", name=title).click()
                page.get_by_role("heading", name=title, exact=True).wait_for()
                page.get_by_text(expected).first.wait_for()
                page.wait_for_timeout(1500)  # charts and images settle
                name = title.lower().replace(" ", "-")
                page.screenshot(path=SCREENSHOTS / f"{name}.png", full_page=True)
                assert page.get_by_test_id("stException").count() == 0, f"{title}: Streamlit exception shown"
                assert "hunter2" not in page.content(), f"{title}: a camera password reached the page"
            # the zone editor's frame takes clicks: one click adds a vertex to the zone being edited
            page.get_by_test_id("stSidebarNav").get_by_role("link", name="Zones").click()
            page.get_by_text("4 points").wait_for()
            page.frame_locator("iframe[title*='streamlit_image_coordinates']").locator("img").click(position={"x": 40, "y": 40})
            page.get_by_text("5 points").wait_for()
            page.screenshot(path=SCREENSHOTS / "zones-clicked.png", full_page=True)
        finally:
            browser.close()
