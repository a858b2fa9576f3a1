"""Server CPU of one open Live tab: ``streamlit run`` serving the dashboard, one Chromium tab on the Live page.

Writes a live folder as ``maskwatch serve``'s workers would (a status every 0.5 s
and a 1280×720 JPEG every 0.25 s per camera, from a separate process so its CPU
is not counted), or leaves every camera stopped (``--stopped``: an hour-old
status, nothing written). Then reads the server process's user+system CPU time
(``/proc/<pid>/stat``) over ``--seconds`` with the tab open and untouched, and
prints it as a fraction of one core. ``--repo`` serves another checkout (e.g.
``git archive`` of an older commit) to compare before and after.
Usage: python bench/live_tab_cpu.py [--repo DIR] [--cameras 3] [--seconds 20] [--stopped] [--refresh S] [--path 'live?camera=cam-0']
Needs Playwright's Python package and Debian's chromium (as tests/test_dashboard_browser.py).
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import cv2
import numpy as np
import yaml

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
sys.path.insert(0, str(REPO))

from storage.live import CameraStatus, write_atomic, write_status  # noqa: E402

TICK = os.sysconf("SC_CLK_TCK")


def status(name: str, updated_ts: float) -> CameraStatus:
    return CameraStatus(
        camera=name, pid=os.getpid(), updated_ts=updated_ts, run_id=1, source=f"rtsp://{name}/stream", connected=True,
        fps_in=15.0, fps_out=14.5, dropped=0, reconnects=0, last_error=None, segmenter_error=None, backoff_s=0.0,
        frame_size=(1280, 720), queue_depth=0, lag_s=0.1, segment_s=0.05, frames=1000, ended=False,
        visible={"person": 2, "bottle": 1}, occupancy={"loading": {"person": 1}}, unique={"person": 40},
        line_counts={"door": {"person": {"in": 3, "out": 2}}}, alarms=4,
    )  # fmt: skip


def frames(cameras: int) -> list[bytes]:
    rng = np.random.default_rng(1)
    out = []
    for i in range(8):  # a few different frames, so each write is a new picture
        image = cv2.GaussianBlur(rng.integers(0, 255, (720, 1280, 3), np.uint8), (31, 31), 0)
        cv2.putText(image, f"frame {i}", (100, 300), cv2.FONT_HERSHEY_SIMPLEX, 4, (0, 0, 255), 8)
        out.append(cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 80])[1].tobytes())
    return out


def workers(live: Path, names: list[str]) -> None:
    """What the camera workers publish: a status every 0.5 s, a frame every 0.25 s, per camera."""
    pictures = frames(len(names))
    tick = 0
    while True:
        for i, name in enumerate(names):
            write_atomic(live / f"{name}.jpg", pictures[(tick + i) % len(pictures)])
            if tick % 2 == 0:
                write_status(live / f"{name}.json", status(name, time.time()))
        tick += 1
        time.sleep(0.25)


def cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK  # utime, stime (stat fields 14, 15)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def measure(repo: Path, cameras: int, seconds: float, stopped: bool, refresh_s: float | None = None, path: str = "") -> float:
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as tmp:
        live = Path(tmp) / "live"
        live.mkdir()
        names = [f"cam-{i}" for i in range(cameras)]
        writer = None
        if stopped:
            pictures = frames(cameras)
            for i, name in enumerate(names):
                write_atomic(live / f"{name}.jpg", pictures[i % len(pictures)])
                write_status(live / f"{name}.json", status(name, time.time() - 3600))
        else:
            writer = multiprocessing.Process(target=workers, args=(live, names), daemon=True)
            writer.start()
            time.sleep(1)
        site = Path(tmp) / "site.yaml"
        dashboard = {} if refresh_s is None else {"live_refresh_s": refresh_s}
        site.write_text(yaml.safe_dump({"store": {"url": f"sqlite:///{tmp}/store.db"}, "service": {"live_dir": str(live)},
                                        "dashboard": dashboard}))  # fmt: skip
        port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("MASKWATCH_")} | {"PYTHONPATH": str(repo)}
        server = subprocess.Popen(
            [sys.executable, "-m", "streamlit", "run", "dashboard/app.py", "--server.headless", "true",
             "--server.address", "127.0.0.1", "--server.port", str(port), "--browser.gatherUsageStats", "false",
             "--", "--config", str(site)],
            cwd=repo, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
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
                        raise RuntimeError(f"streamlit run did not come up (exit code {server.poll()})") from None
                    time.sleep(0.5)
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
                try:
                    page = browser.new_page(viewport={"width": 1500, "height": 1000})
                    page.goto(f"{url}/{path}")
                    page.get_by_text("cam-0").first.wait_for(timeout=60_000)
                    page.wait_for_timeout(5000)  # settled: caches filled, images loaded
                    start = cpu_s(server.pid)
                    page.wait_for_timeout(seconds * 1000)
                    return (cpu_s(server.pid) - start) / seconds
                finally:
                    browser.close()
        finally:
            server.terminate()
            server.wait(timeout=30)
            if writer is not None:
                writer.terminate()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repo", type=Path, default=REPO, help="Checkout whose dashboard is served (default: this one).")
    parser.add_argument("--cameras", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--stopped", action="store_true", help="Every camera stopped an hour ago (no files written).")
    parser.add_argument("--refresh", type=float, help="dashboard.live_refresh_s (default: the settings' default).")
    parser.add_argument("--path", default="", help="Address opened, e.g. 'live?camera=cam-0' (default: the Live grid).")
    args = parser.parse_args()
    share = measure(args.repo.resolve(), args.cameras, args.seconds, args.stopped, args.refresh, args.path)
    what = "stopped" if args.stopped else "live"
    refresh = "" if args.refresh is None else f", live_refresh_s {args.refresh:g}"
    shown = f" /{args.path}" if args.path else ""
    print(f"{args.repo}{shown}: one Live tab, {args.cameras} {what} cameras{refresh}: server CPU {share * 100:.1f}% of a core")


if __name__ == "__main__":
    main()
