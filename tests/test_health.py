"""Health that tells the truth: what ``/healthz``, ``/metrics`` and MQTT say of each camera, and how the service stops.

The supervisor believes a status file only when the worker process it started
wrote it; a camera is ``ok`` only while connected and processing.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import yaml
from prometheus_client import CollectorRegistry, generate_latest
from sqlalchemy import func, select

from maskwatch.config import AppConfig
from maskwatch.serve import Service, _Collector
from maskwatch.synthetic import demo_config, render_scene
from storage.engine import make_engine
from storage.live import CameraStatus, process_key, read_status, write_status
from storage.schema import counts, events, observations, runs, tracks
from tests.test_dashboard import camera_status
from tests.test_mqtt import Subscriber, prefix  # noqa: F401 (a fixture)
from tests.test_serve import camera_state, free_port, get, wait_for


def test_health_names_an_ended_file_a_silent_new_worker_and_a_camera_not_processing_yet() -> None:
    now = 1_700_000_000.0
    assert camera_status(updated_ts=now - 1, connected=False, ended=True).health(5, now) == (
        "disconnected", "the file has played to its end (loop: false)")
    assert camera_status(updated_ts=now - 1, connected=False, last_error="cannot open rtsp://cam").health(5, now) == (
        "disconnected", "the camera is not connected: cannot open rtsp://cam")
    assert camera_status(updated_ts=now - 1, frames=0).health(5, now) == ("not segmenting", "connected, no frame processed yet")
    assert CameraStatus.unreported("gate", "rtsp://gate").health(5, now) == ("stale", "no status yet from this worker")


def test_a_process_key_names_one_living_process() -> None:
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        key = process_key(child.pid)
        assert key is not None and key != process_key(os.getpid()) and key == process_key(child.pid)
    finally:
        child.kill()
        child.wait()
    assert process_key(child.pid) is None  # reaped: gone, and a later process with its pid gets another key


class Sleeper:
    """A live process standing in for a camera worker, as the supervisor sees one (pid, is_alive)."""

    def __init__(self) -> None:
        self.popen = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"])
        self.pid = self.popen.pid

    def is_alive(self) -> bool:
        return self.popen.poll() is None

    def end(self) -> None:
        self.popen.kill()
        self.popen.wait()


def test_the_supervisor_believes_only_its_running_workers_status_and_is_ok_only_when_every_camera_is_live(tmp_path) -> None:
    config = AppConfig.model_validate({"segmenter": {"name": "motion"}, "service": {"listen": "127.0.0.1:0"},
                                       "cameras": [{"name": name, "source": f"rtsp://{name}/stream"} for name in ("gate", "dock")]})
    service = Service(config, tmp_path)
    registry = CollectorRegistry()
    registry.register(_Collector(service, lambda: 0))
    dead = Sleeper()
    dead.end()
    workers = {name: Sleeper() for name in service.workers}
    try:
        for name, worker in workers.items():
            service.workers[name].process, service.workers[name].process_key = worker, process_key(worker.pid)
        now = time.time()
        write_status(tmp_path / "live" / "gate.json", camera_status(camera="gate", pid=workers["gate"].pid, updated_ts=now,
                                                                    process=process_key(workers["gate"].pid)))
        for pid, key in ((dead.pid, None), (workers["dock"].pid, f"{process_key(workers['dock'].pid)}-before")):
            write_status(tmp_path / "live" / "dock.json", camera_status(camera="dock", pid=pid, process=key, updated_ts=now))
            health = service.health()  # the killed worker's file, or one of an earlier process with the pid
            assert health["status"] == "degraded" and health["cameras"]["gate"]["health"] == "live"
            dock = health["cameras"]["dock"]
            assert (dock["health"], dock["reason"], dock["connected"], dock["fps_out"], dock["frames"]) == (
                "stale", "no status yet from this worker", False, 0.0, 0)
            assert 'maskwatch_camera_connected{camera="dock"} 0.0' in generate_latest(registry).decode()
        write_status(tmp_path / "live" / "dock.json", camera_status(camera="dock", pid=workers["dock"].pid, updated_ts=now,
                                                                    process=process_key(workers["dock"].pid)))
        assert service.health()["status"] == "ok"
        assert 'maskwatch_camera_connected{camera="dock"} 1.0' in generate_latest(registry).decode()
        write_status(tmp_path / "live" / "dock.json", camera_status(camera="dock", pid=workers["dock"].pid, updated_ts=now,
                                                                    process=process_key(workers["dock"].pid), connected=False))
        health = service.health()
        assert health["status"] == "degraded" and health["cameras"]["dock"]["health"] == "disconnected"
        workers["dock"].end()
        health = service.health()
        assert health["status"] == "degraded" and health["cameras"]["dock"]["reason"].startswith("worker process not running")
    finally:
        for worker in workers.values():
            worker.end()
        shutil.rmtree(service._private_dir)


def start(folder: Path, config: dict, *command: str) -> subprocess.Popen:
    """``python -m maskwatch <command>`` on ``config``, in a session of its own: the test can kill it with its children."""
    (folder / "site.yaml").write_text(yaml.safe_dump(config))
    return subprocess.Popen([sys.executable, "-m", "maskwatch", *command, "--config", str(folder / "site.yaml"), "--out",
                             str(folder / "out")], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)


def killpg(proc: subprocess.Popen) -> None:
    """kill -9 of the process and every child of its session, as a power cut or the OOM killer of a whole cgroup."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.communicate()


def test_after_kill_9_of_the_whole_service_nothing_of_it_is_shown_as_live_and_its_run_is_closed_as_crashed(
    tmp_path, prefix  # noqa: F811
) -> None:
    video = tmp_path / "belt.mp4"
    render_scene(video, frames=60)
    listen = f"127.0.0.1:{free_port()}"
    base = f"http://{listen}"
    demo = demo_config()
    camera = {**{k: v for k, v in demo["camera"].items() if k != "name"}, "name": "belt", "source": str(video), "loop": True}
    config = {"segmenter": demo["segmenter"], "tracker": demo["tracker"], "cameras": [camera], "service": {"listen": listen},
              "mqtt": {"topic_prefix": prefix, "client_id": f"{prefix}-service"}}
    proc = start(tmp_path, config, "serve")
    try:
        url = f"sqlite:///{tmp_path / 'out' / 'maskwatch.db'}"
        wait_for(lambda: (c := camera_state(base, "belt"))["connected"] and c["fps_out"], 90, "frames")
        wait_for(lambda: last_write(url), 60, "a batch in the store")
        killpg(proc)
        written = last_write(url)
        assert read_status(tmp_path / "out" / "live" / "belt.json").connected  # what the killed worker left behind

        # the camera is now unreachable: whatever the new service says of it comes from the dead worker if it says "connected"
        camera["source"] = f"rtsp://127.0.0.1:{free_port()}/stream"
        subscriber = Subscriber(f"{prefix}/belt/status")
        subscriber.drain(0.5)  # the retained "online" of the killed service
        proc = start(tmp_path, config, "serve")

        def new_worker_reported() -> dict | None:
            health = json.loads(get(base + "/healthz"))
            belt = health["cameras"]["belt"]
            assert health["status"] == "degraded" and not belt["connected"] and belt["fps_out"] == 0, belt
            metrics = get(base + "/metrics")
            assert 'maskwatch_camera_connected{camera="belt"} 0.0' in metrics
            assert 'maskwatch_delivery_backlog{channel="mqtt"}' in metrics and "maskwatch_mqtt_connected" in metrics
            return belt if belt["last_error"] else None

        belt = wait_for(new_worker_reported, 90, "the new worker's status")
        assert belt["health"] == "disconnected" and belt["frames"] == 0
        assert [m.payload for m in subscriber.drain(1.5) if not m.retain] == [b"offline"]
        subscriber.close()
        statuses = wait_for(lambda: len(r := run_rows(url)) == 2 and r, 30, "the new run")
        killed, new = statuses
        assert (killed.status, killed.ended_ts) == ("crashed", written) and killed.started_ts < written < new.started_ts
        assert new.status == "running"
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            proc.communicate(timeout=60)
    assert proc.returncode == 0


def run_rows(url: str) -> list:
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            return list(conn.execute(select(runs.c.status, runs.c.started_ts, runs.c.ended_ts).order_by(runs.c.id)))
    finally:
        engine.dispose()


def last_write(url: str) -> float | None:
    """The time of the newest row in the store (there is one run at a time here), None before the first batch."""
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            times = [conn.execute(select(func.max(column))).scalar()
                     for column in (observations.c.ts, counts.c.ts, events.c.ts, tracks.c.last_ts)]  # fmt: skip
        return max((t for t in times if t is not None), default=None)
    finally:
        engine.dispose()


def catches_sigterm(pid: int) -> bool:
    """Whether the process has a handler for SIGTERM (``SigCgt`` in ``/proc/<pid>/status``)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("SigCgt:"):
            return bool(int(line.split()[1], 16) >> (signal.SIGTERM - 1) & 1)
    return False


def listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def session_ended(pid: int) -> bool:
    """No process left in the session the test started (the service's children included)."""
    try:
        os.killpg(pid, 0)
    except ProcessLookupError:
        return True
    return False


def test_sigterm_while_the_service_is_still_importing_exits_0(tmp_path) -> None:
    port = free_port()
    config = {"segmenter": {"name": "motion"}, "service": {"listen": f"127.0.0.1:{port}"},
              "cameras": [{"name": "gate", "source": f"rtsp://127.0.0.1:{free_port()}/stream"}]}
    proc = start(tmp_path, config, "serve")
    try:
        wait_for(lambda: catches_sigterm(proc.pid), 60, "a SIGTERM handler")
        assert not listening(port)  # still starting: the imports take seconds, and nothing serves yet
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=120)
        assert proc.returncode == 0, stderr
        assert "Traceback" not in stderr
        wait_for(lambda: session_ended(proc.pid), 30, "every process of the service gone")
    finally:
        killpg(proc)


def test_sigterm_stops_the_dashboard_and_its_streamlit_server(tmp_path) -> None:
    port = free_port()
    (tmp_path / "out").mkdir()  # where the store is: the dashboard opens it before its server starts
    proc = start(tmp_path, {}, "dashboard", "--port", str(port))
    try:
        wait_for(lambda: listening(port), 120, "the Streamlit server")
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=60)
        assert proc.returncode == 0, stderr
        wait_for(lambda: not listening(port), 30, "the port to be free again")
        wait_for(lambda: session_ended(proc.pid), 30, "the Streamlit process gone")
    finally:
        killpg(proc)
