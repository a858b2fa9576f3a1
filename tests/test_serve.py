"""``maskwatch serve`` end to end: a looped clip and a dead camera, alarms to a real webhook receiver.

The service runs as a real subprocess; the receiver is a real HTTP server that
verifies every delivery with the ``standardwebhooks`` library.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml
from sqlalchemy import select
from standardwebhooks import Webhook

from maskwatch.synthetic import demo_config, render_scene
from storage.engine import make_engine
from storage.schema import alarms, runs, tracks
from tests.test_live import RtspCamera, gstreamer  # noqa: F401 (a fixture)
from tests.test_mqtt import Subscriber, prefix  # noqa: F401 (a fixture)

SECRET = "whsec_" + base64.b64encode(b"maskwatch-serve-test-secret-0001").decode()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Receiver:
    """Accepts webhooks, verifies each signature, keeps the payloads; answers 503 while ``failing``."""

    def __init__(self) -> None:
        self.payloads: list[dict] = []
        self.invalid = 0
        self.failing = False
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers["content-length"]))
                if receiver.failing:
                    self.send_response(503)
                    self.end_headers()
                    return
                try:
                    receiver.payloads.append(Webhook(SECRET).verify(body, dict(self.headers)))
                    code = 204
                except Exception:
                    receiver.invalid += 1
                    code = 401
                self.send_response(code)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


def get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as response:
        return response.read().decode()


@pytest.fixture
def service(tmp_path, prefix):  # noqa: F811
    video = tmp_path / "belt.mp4"
    render_scene(video)
    receiver = Receiver()
    demo = demo_config()
    listen = f"127.0.0.1:{free_port()}"
    dead = f"rtsp://operator:s3cr3t-pw@127.0.0.1:{free_port()}/stream"
    config = {
        "segmenter": demo["segmenter"],
        "tracker": demo["tracker"],
        "sampling": {"measure_every": 1, "count_every_s": 0.5},
        "alarms": [{**demo["alarms"][0], "notify": ["ops", "mqtt"], "cooldown_s": 0}],
        "delivery": {"webhooks": [{"name": "ops", "url": receiver.url, "secret": SECRET}]},
        "mqtt": {"topic_prefix": prefix, "client_id": f"{prefix}-service"},
        "cameras": [
            {**{k: v for k, v in demo["camera"].items() if k != "name"}, "name": "belt", "source": str(video), "loop": True, "fps": 10},
            {"name": "dead", "source": dead, "stall_s": 1, "backoff_max_s": 1},
        ],
        "service": {"listen": listen},
    }
    (tmp_path / "site.yaml").write_text(yaml.safe_dump(config))
    out = tmp_path / "out"
    subscriber = Subscriber(f"{prefix}/#")
    proc = subprocess.Popen([sys.executable, "-m", "maskwatch", "serve", "--config", str(tmp_path / "site.yaml"), "--out", str(out)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    yield proc, f"http://{listen}", receiver, out, (subscriber, prefix)
    subscriber.close()
    if proc.poll() is None:
        proc.kill()
        proc.communicate()
    receiver.server.shutdown()


def wait_for(check, timeout: float, what: str):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            value = check()
            if value:
                return value
        except OSError:
            pass
        time.sleep(0.25)
    raise AssertionError(f"timed out waiting for {what}")


def test_serve_tracks_a_live_clip_keeps_a_dead_camera_in_backoff_and_delivers_alarms(service):
    proc, base, receiver, out, (subscriber, topics) = service
    wait_for(lambda: json.loads(get(base + "/healthz"))["cameras"]["belt"].get("connected"), 60, "/healthz")

    # the live camera processes frames while the dead one stays in backoff, credentials redacted
    belt = wait_for(lambda: (c := json.loads(get(base + "/healthz"))["cameras"]["belt"])["fps_out"] and c, 30, "processing")
    assert belt["lag_s"] is not None and belt["lag_s"] < 1.0
    dead = wait_for(lambda: (c := json.loads(get(base + "/healthz"))["cameras"]["dead"]).get("last_error") and c, 30, "dead camera error")
    assert dead["connected"] is False and "***" in dead["source"] and "s3cr3t" not in json.dumps(dead)
    health = json.loads(get(base + "/healthz"))  # one camera down: the service is not ok, and says why
    assert health["status"] == "degraded" and health["cameras"]["belt"]["health"] == "live"
    assert health["cameras"]["dead"]["reason"].startswith("the camera is not connected: cannot open")

    metrics = get(base + "/metrics")
    assert 'maskwatch_camera_connected{camera="belt"} 1.0' in metrics
    assert 'maskwatch_camera_connected{camera="dead"} 0.0' in metrics
    assert "maskwatch_alarm_backlog" in metrics and 'maskwatch_camera_fps_out{camera="belt"}' in metrics

    # the person crosses the belt zone about 10 s into the clip: its alarm arrives, signed
    wait_for(lambda: receiver.payloads, 90, "an alarm webhook")
    alarm = receiver.payloads[0]
    assert receiver.invalid == 0
    assert alarm["alarm"]["rule"] == "person-on-belt" and alarm["event"]["class_name"] == "person"
    assert alarm["event"]["zone"] == "crossing" and alarm["alarm"]["camera"] == "belt"

    assert (out / "live" / "belt.jpg").stat().st_size > 1000  # the latest annotated frame for the dashboard

    # a zone drawn in the dashboard (saved to the store) is picked up by the running service, no restart
    from storage.geometry import save_geometry

    whole = {"name": "whole-belt", "polygon": [[0, 150], [639, 150], [639, 250], [0, 250]], "enter_frames": 1}
    save_geometry(f"sqlite:///{out / 'maskwatch.db'}", "belt", [whole], [], [], "test")
    wait_for(lambda: "whole-belt" in json.loads((out / "live" / "belt.json").read_text())["occupancy"], 30, "the edited zone")

    # MQTT: the same alarm at QoS 1, retained counts and camera status
    mqtt_alarm = json.loads(subscriber.next(f"{topics}/belt/alarm", timeout=30).payload)
    assert mqtt_alarm["alarm"]["rule"] == "person-on-belt" and mqtt_alarm["alarm"]["id"] in {p["alarm"]["id"] for p in receiver.payloads}
    running = Subscriber(f"{topics}/#")  # retained messages: what a dashboard connecting now is told
    retained = {m.topic: m for m in running.drain(0.5) if m.retain}
    running.close()
    assert retained[f"{topics}/belt/status"].payload == b"online" and retained[f"{topics}/dead/status"].payload == b"offline"
    assert retained[f"{topics}/belt/counts"].qos == 1 and "visible" in json.loads(retained[f"{topics}/belt/counts"].payload)

    proc.send_signal(signal.SIGTERM)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 0, stderr
    assert "s3cr3t" not in stdout + stderr
    late = Subscriber(f"{topics}/#")  # retained: what a client connecting now is told
    states = {m.topic: m.payload for m in late.drain(0.5) if m.retain}
    late.close()
    assert states[f"{topics}/status"] == b"offline" and states[f"{topics}/belt/status"] == b"offline"
    with make_engine(f"sqlite:///{out / 'maskwatch.db'}").connect() as conn:
        rows = {r.source.split("/")[-1]: r for r in conn.execute(select(runs.c.source, runs.c.status, runs.c.frames))}
    assert all(r.status == "finished" for r in rows.values()) and rows["belt.mp4"].frames > 50
    assert any("***" in r.source for r in rows.values()) and not any("s3cr3t" in r.source for r in rows.values())
    for path in (out / "live").iterdir():
        assert "s3cr3t" not in path.read_bytes().decode("latin-1")
    assert os.path.exists(out / "maskwatch.db")


def start_service(config: dict, folder: Path) -> subprocess.Popen:
    (folder / "site.yaml").write_text(yaml.safe_dump(config))
    return subprocess.Popen([sys.executable, "-m", "maskwatch", "serve", "--config", str(folder / "site.yaml"), "--out",
                             str(folder / "out")], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def camera_state(base: str, name: str) -> dict:
    return json.loads(get(base + "/healthz"))["cameras"][name]


def test_rtsp_camera_reconnects_and_alarms_survive_kill_9(gstreamer, tmp_path):  # noqa: F811
    """A real RTSP camera: killed and back within 5 s; then the service is killed -9 and every alarm still arrives."""
    rtsp = RtspCamera()
    rtsp.start()
    receiver = Receiver()
    receiver.failing = True  # alarms pile up in the outbox
    listen = f"127.0.0.1:{free_port()}"
    base = f"http://{listen}"
    config = {
        "segmenter": {"name": "motion", "motion": {"warmup_frames": 5, "min_area": 100}},
        "alarms": [{"name": "any", "kinds": ["zone_enter", "zone_exit"], "cooldown_s": 0, "notify": ["ops"]}],
        "delivery": {"webhooks": [{"name": "ops", "url": receiver.url, "secret": SECRET}], "backoff": {"initial_s": 0.2, "max_s": 0.5}},
        "cameras": [{"name": "cam", "source": rtsp.url(), "fps": 25, "stall_s": 1, "backoff_max_s": 1,
                     "zones": [{"name": "left", "polygon": [[0, 0], [159, 0], [159, 239], [0, 239]], "enter_frames": 1, "exit_frames": 1}]}],
        "service": {"listen": listen},
    }
    proc = start_service(config, tmp_path)
    try:
        wait_for(lambda: (camera_state(base, "cam").get("frames") or 0) > 20, 60, "frames from the RTSP camera")
        rtsp.kill()
        wait_for(lambda: camera_state(base, "cam")["connected"] is False, 15, "the camera to drop")
        rtsp.start()
        before = camera_state(base, "cam")["frames"]
        wait_for(lambda: (c := camera_state(base, "cam"))["connected"] and c["frames"] > before, 60, "the camera to come back")
        assert camera_state(base, "cam")["reconnects"] >= 1
        url = f"sqlite:///{tmp_path / 'out' / 'maskwatch.db'}"
        wait_for(lambda: len(alarm_ids(url)) >= 2, 60, "alarms in the store")
        worker = json.loads((tmp_path / "out" / "live" / "cam.json").read_text())["pid"]  # the camera worker
        proc.kill()  # kill -9: the outbox keeps what was not delivered
        proc.communicate()
        wait_for(lambda: not Path(f"/proc/{worker}").exists(), 60, "the orphaned worker to notice and stop")
        stored = alarm_ids(url)
        receiver.failing = False
        proc = start_service(config, tmp_path)
        wait_for(lambda: stored <= {p["alarm"]["id"] for p in receiver.payloads}, 60, "every stored alarm delivered")
        assert receiver.invalid == 0
        # identities after the restart: small ids start again, track_uids never repeat; the payloads name them
        uids = wait_for(lambda: len(u := track_uids(url)) == 2 and all(u.values()) and u, 60, "tracks of both runs")
        first, second = uids.values()
        assert first.isdisjoint(second)
        assert {p["alarm"]["track_uid"] for p in receiver.payloads} <= first | second
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            proc.communicate(timeout=60)
        rtsp.kill()
        receiver.server.shutdown()
    assert proc.returncode == 0


def track_uids(url: str) -> dict[int, set[str]]:
    """run id → the track_uids stored for it."""
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            found: dict[int, set[str]] = {}
            for row in conn.execute(select(tracks.c.run_id, tracks.c.track_uid)):
                found.setdefault(row.run_id, set()).add(row.track_uid)
            return found
    finally:
        engine.dispose()


def alarm_ids(url: str) -> set[str]:
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            return {row.id for row in conn.execute(select(alarms.c.id))}
    finally:
        engine.dispose()


def test_two_cameras_share_one_segmenter_process_that_is_replaced_when_killed_or_hung(tmp_path):
    """maskrcnn under serve: one model for both cameras, their frames batched; losing it costs frames, not cameras."""
    import torch
    from torchvision.models.detection import maskrcnn_resnet50_fpn

    torch.manual_seed(0)
    weights = tmp_path / "model.pth"
    torch.save({"model": maskrcnn_resnet50_fpn(weights=None, weights_backbone=None, num_classes=2).state_dict(),
                "class_names": ["part"], "version": "v1"}, weights)
    video = tmp_path / "belt.mp4"
    render_scene(video, frames=60)
    listen = f"127.0.0.1:{free_port()}"
    base = f"http://{listen}"
    config = {
        "segmenter": {"name": "maskrcnn", "maskrcnn": {"weights": str(weights), "min_size": 96, "max_size": 160,
                                                       "score_threshold": 0.0, "max_detections": 5, "batch_size": 4}},
        "cameras": [{"name": name, "source": str(video), "loop": True, "fps": 10} for name in ("left", "right")],
        "service": {"listen": listen, "batch_wait_ms": 200, "segmenter_timeout_s": 4},
    }
    proc = start_service(config, tmp_path)
    try:
        def frames(name: str) -> int:
            return camera_state(base, name).get("frames") or 0

        wait_for(lambda: frames("left") > 5 and frames("right") > 5, 120, "both cameras segmented")
        # both cameras in one pass, at least once (how often depends on the machine's load)
        shared = wait_for(lambda: int((s := json.loads(get(base + "/healthz"))["segmenter"])["batch_sizes"].get("2", 0)) >= 1
                          and s, 120, "a batch of both cameras")
        assert shared["worker_alive"] and shared["device"] == ("cuda" if torch.cuda.is_available() else "cpu") and shared["workers"] == 2
        from storage.live import read_segmenter

        written = read_segmenter(tmp_path / "out" / "live")  # what the dashboard's Live page shows
        assert {"device", "frames", "batches", "mean_batch", "workers", "updated_ts"} <= written.keys()
        assert all(0 < camera_state(base, name)["segment_s"] for name in ("left", "right"))
        metrics = get(base + "/metrics")
        assert 'maskwatch_camera_segment_seconds{camera="left"}' in metrics
        assert "maskwatch_segmenter_up 1.0" in metrics and "maskwatch_segmenter_frames_total" in metrics

        os.kill(shared["pid"], signal.SIGKILL)
        wait_for(lambda: camera_state(base, "left").get("segmenter_error"), 30, "the cameras to notice")
        wait_for(lambda: json.loads(get(base + "/healthz"))["segmenter"]["worker_restarts"] == 1, 30, "a restart")
        before = {name: frames(name) for name in ("left", "right")}
        wait_for(lambda: all(frames(name) > before[name] + 3 for name in before), 120, "segmenting again")
        for name in ("left", "right"):
            state = camera_state(base, name)
            assert state["worker_restarts"] == 0 and state["segmenter_error"] is None  # the cameras kept running

        # hung, not dead (SIGSTOP stands in for a stuck driver): the cameras give up on it and the service replaces it
        hung = wait_for(lambda: (s := json.loads(get(base + "/healthz"))["segmenter"]).get("pid") not in (None, shared["pid"]) and s,
                        30, "the new segmenter's status")  # none until it reports: its predecessor's is not shown
        os.kill(hung["pid"], signal.SIGSTOP)
        wait_for(lambda: camera_state(base, "left").get("segmenter_error"), 30, "the cameras to give up on it")
        wait_for(lambda: json.loads(get(base + "/healthz"))["segmenter"]["worker_restarts"] == 2, 30, "the hung one killed")
        before = {name: frames(name) for name in ("left", "right")}
        wait_for(lambda: all(frames(name) > before[name] + 3 for name in before), 120, "segmenting after the hang")
        assert all(camera_state(base, name)["worker_restarts"] == 0 for name in before)
    finally:
        proc.send_signal(signal.SIGTERM)
        stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 0, stderr[-3000:]
    assert "shared segmenter: no progress for" in stderr and "service.segmenter_timeout_s: 4" in stderr
    assert "Traceback" not in stderr and "leaked" not in stderr
    with make_engine(f"sqlite:///{tmp_path / 'out' / 'maskwatch.db'}").connect() as conn:
        rows = list(conn.execute(select(runs.c.status, runs.c.frames)))
    assert len(rows) == 2 and all(r.status == "finished" and r.frames > 8 for r in rows)


NOT_A_CHECKPOINT = "{tmp}/model.pth is not a Mask R-CNN checkpoint: torch.load cannot read it"
MISSING_WEIGHTS = "Mask R-CNN weights not found: {tmp}/no-such-model.pth"
NO_SOURCE = "cameras.0: Value error, camera gate: source {tmp}/gate.mp4 is not a URL"


@pytest.mark.parametrize(("mode", "weights", "video", "error"), [
    ("shared", "model.pth", True, "shared segmenter: " + NOT_A_CHECKPOINT),  # found only once the model loads
    ("per_camera", "model.pth", True, "camera gate: " + NOT_A_CHECKPOINT),
    ("shared", "no-such-model.pth", True, MISSING_WEIGHTS),  # before anything starts
    ("shared", "model.pth", False, NO_SOURCE),  # when the config loads
])
def test_a_configuration_error_at_startup_stops_the_service_with_one_line(tmp_path, mode, weights, video, error):
    """Bad weights or a camera file that is not there: restarting cannot help, so the service exits 2 saying why."""
    if video:
        render_scene(tmp_path / "gate.mp4", frames=5)
    (tmp_path / "model.pth").write_text("not a checkpoint")
    config = {
        "segmenter": {"name": "maskrcnn", "maskrcnn": {"weights": str(tmp_path / weights)}},
        "cameras": [{"name": "gate", "source": str(tmp_path / "gate.mp4"), "loop": True}],
        "service": {"listen": f"127.0.0.1:{free_port()}", "segmenter": mode},
    }
    proc = start_service(config, tmp_path)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 2
    last = stderr.strip().splitlines()[-1]
    assert last.startswith("maskwatch: error: ") and error.format(tmp=tmp_path) in last, last
    assert "Traceback" not in stderr
