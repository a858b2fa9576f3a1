"""Health that tells the truth: what ``/healthz``, ``/metrics`` and MQTT say of each camera, and how the service stops.

The supervisor believes a status file only when the worker process it started
wrote it; a camera is ``ok`` only while connected and processing.
"""

from __future__ import annotations

import os
import subprocess
import sys

from storage.live import CameraStatus, process_key
from tests.test_dashboard import camera_status


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
