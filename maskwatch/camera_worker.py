"""One live camera, in its own process: latest frame → segment → track → analyse → store.

Each camera is its own failure domain: a crash, a hang in a driver or a bad
stream takes down this process only; the service restarts it. The worker
publishes what the dashboard and ``/metrics`` need as two small files in
``live_dir`` — ``<camera>.json`` (health, counts) and ``<camera>.jpg`` (the
latest annotated frame, a few times a second) — written atomically, so
readers never see half a file and the worker never waits for a reader.
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path

import cv2

from analytics.analyzer import Analyzer
from common import redact_url
from maskwatch.child_process import Lifetime, write_atomic
from maskwatch.config import AppConfig, LiveCameraConfig
from maskwatch.live import LiveSource
from maskwatch.pipeline import build_segmenter, open_store, store_url
from maskwatch.render import draw_frame
from maskwatch.segmenter_server import RemoteSegmenter, SegmenterLink, SegmenterUnavailable
from storage.geometry import load_geometry
from tracker.tracker import MaskTracker

log = logging.getLogger(__name__)


def safe_name(camera: str) -> str:
    """The camera's name as a file name (the live files are ``<safe_name>.json/.jpg``)."""
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in camera) or "camera"


GEOMETRY_POLL_S = 2.0


def _edited_geometry(url: str, camera: LiveCameraConfig, applied_ts: float | None, analyzer: Analyzer):
    """The camera with the geometry saved in the store, if newer than ``applied_ts`` (see storage.geometry)."""
    try:
        saved = load_geometry(url, camera.name)
    except Exception as exc:  # a busy or unreachable store must not stop the camera: try again next poll
        log.warning("camera %s: cannot read edited zones: %s", camera.name, str(exc).splitlines()[0])
        return camera, applied_ts
    if saved is None or saved[1] == applied_ts:
        return camera, applied_ts
    geometry, updated_ts = saved
    camera = LiveCameraConfig.model_validate({**camera.model_dump(), **geometry})
    analyzer.set_geometry(camera)
    log.info("camera %s: zones and lines updated from the store", camera.name)
    return camera, updated_ts


def run_camera(config: AppConfig, camera: LiveCameraConfig, out_dir: Path, link: SegmenterLink | None = None) -> None:
    """The worker's main loop; returns (exit 0) on SIGTERM/SIGINT after flushing the store.

    With ``link`` the frames are segmented by the service's shared segmenter
    process; while it is unreachable, frames are skipped (``segmenter_error``
    in the status says why) and everything else keeps running.
    """
    lifetime = Lifetime()
    live_dir = Path(config.service.live_dir) if Path(config.service.live_dir).is_absolute() else out_dir / config.service.live_dir
    live_dir.mkdir(parents=True, exist_ok=True)
    status_path, frame_path = live_dir / f"{safe_name(camera.name)}.json", live_dir / f"{safe_name(camera.name)}.jpg"
    source = LiveSource(camera.source, loop=camera.loop, stall_s=camera.stall_s, backoff_max_s=camera.backoff_max_s)
    segmenter = RemoteSegmenter(link) if link is not None else build_segmenter(config.segmenter)
    segmenter_error: str | None = None
    fps = camera.fps
    tracker = MaskTracker(config.tracker, fps=fps)
    snapshot_dir = Path(config.store.snapshot_dir) if config.store.snapshot_dir else out_dir / "snapshots"
    analyzer = Analyzer(camera, config.rules, config.alarms, fps=fps, sampling=config.sampling, snapshot_dir=snapshot_dir)
    url = store_url(config, out_dir)
    store = open_store(url, config)
    started = time.time()
    run_id = store.start_run(camera.name, redact_url(str(camera.source)), segmenter=config.segmenter.name,
                             unit=analyzer.calibration.unit, started_ts=started, config=config.model_dump(mode="json"))
    frames, lag, last_publish, last_jpeg, processed_times = 0, 0.0, 0.0, 0.0, []
    segment_s = None  # the last frame's wait for its masks: with a shared segmenter, queueing and batching included
    geometry_ts, last_geometry_check = None, 0.0
    size = None
    visible: dict[str, int] = {}
    occupancy: dict[str, dict[str, int]] = {}
    status = "finished"
    source.start()
    try:
        while lifetime.running:
            frame = source.read(timeout=0.5)
            now = time.time()
            if now - last_geometry_check >= GEOMETRY_POLL_S:  # zones edited in the dashboard: applied between frames
                camera, geometry_ts = _edited_geometry(url, camera, geometry_ts, analyzer)
                last_geometry_check = now
            if frame is not None:
                if size is not None and frame.image.shape[:2] != size:  # the stream changed size after a reconnect
                    tracker = MaskTracker(config.tracker, fps=fps)
                size = frame.image.shape[:2]
                try:
                    asked = time.perf_counter()
                    detections = segmenter.segment([frame.image])[0]
                    segment_s = time.perf_counter() - asked
                except SegmenterUnavailable as exc:
                    if segmenter_error != str(exc):  # before its first answer it is loading its model: no cause for alarm
                        log.log(logging.WARNING if frames else logging.INFO, "camera %s: frames skipped: %s", camera.name, exc)
                    segmenter_error, frame = str(exc), None
                else:
                    if segmenter_error is not None:
                        log.info("camera %s: shared segmenter answering again", camera.name)
                    segmenter_error = None
            if frame is not None:
                result = tracker.update(detections)
                analysis = analyzer.update(frames, frame.pts, frame.ts, frame.image, result)
                store.write(run_id, observations=analysis.observations, tracks=analysis.tracks, events=analysis.events,
                            alarms=analysis.alarms, counts=analysis.counts)
                frames += 1
                now = time.time()
                lag = now - frame.ts
                processed_times = [t for t in processed_times if now - t < 5.0] + [now]
                if now - last_jpeg >= config.service.live_jpeg_every_s:
                    image = draw_frame(frame.image, result.tracks, camera, analyzer.zones.regions)
                    ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 80])
                    if ok:
                        write_atomic(frame_path, data.tobytes())
                    last_jpeg = now
                visible, occupancy = analysis.visible, analysis.occupancy
            if now - last_publish >= 0.5:
                state = source.state()
                processing_fps = (len(processed_times) - 1) / (processed_times[-1] - processed_times[0]) if len(processed_times) > 1 else 0.0
                write_atomic(status_path, json.dumps({
                    "camera": camera.name, "pid": os.getpid(), "updated_ts": now, "run_id": run_id,
                    "source": state.source, "connected": state.connected, "fps_in": state.fps_in,
                    "fps_out": round(processing_fps, 2), "dropped": state.dropped, "reconnects": state.reconnects,
                    "last_error": state.last_error, "segmenter_error": segmenter_error, "backoff_s": state.backoff_s, "frame_size": state.frame_size, "queue_depth": state.queue_depth,
                    "lag_s": round(lag, 3) if state.connected else None,
                    "segment_s": round(segment_s, 4) if segment_s is not None else None, "frames": frames, "ended": state.ended,
                    "visible": visible, "occupancy": occupancy,
                    "unique": dict(sorted(analyzer.unique.items())), "line_counts": analyzer.line_counts(),
                    "alarms": analyzer.alarm_total,
                }).encode())
                last_publish = now
    except Exception:
        status = "failed"
        raise
    finally:
        source.stop()
        if isinstance(segmenter, RemoteSegmenter):
            segmenter.close()
        closing = analyzer.close(max(frames - 1, 0), time.time(), time.time() - started)
        store.write(run_id, events=closing.events, alarms=closing.alarms, tracks=closing.tracks)
        store.end_run(run_id, frames=frames, status=status, ended_ts=time.time())
        store.close()
