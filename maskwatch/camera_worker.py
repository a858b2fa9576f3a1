"""One live camera, in its own process: the newest frame through the engine (segment → track → analyse → store).

Each camera is its own failure domain: a crash, a hang in a driver or a bad
stream takes down this process only; the service restarts it. The worker
publishes what the dashboard and ``/metrics`` need as two small files in
``live_dir`` — ``<camera>.json`` (health, counts) and ``<camera>.jpg`` (the
latest annotated frame, a few times a second) — written atomically, so
readers never see half a file and the worker never waits for a reader.
"""

from __future__ import annotations

import logging
import os
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path

import cv2

from common import redact_url
from maskwatch.child_process import Lifetime
from maskwatch.config import AppConfig, LiveCameraConfig
from maskwatch.engine import Engine, Sink, Step, mask_tracker
from maskwatch.live import LiveSource
from maskwatch.outputs import StoreSink
from maskwatch.pipeline import build_analyzer, build_clips, build_segmenter, open_store, snapshot_dir, store_url
from maskwatch.render import draw_frame
from maskwatch.segmenter_server import RemoteSegmenter, SegmenterLink, SegmenterUnavailable
from segmenter.detections import Segmenter
from storage.geometry import load_geometry
from storage.live import CameraStatus, clean_frame_path, process_key, write_atomic, write_status

log = logging.getLogger(__name__)


def safe_name(camera: str) -> str:
    """The camera's name as a file name (the live files are ``<safe_name>.json/.jpg``)."""
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in camera) or "camera"


GEOMETRY_POLL_S = 2.0
CLEAN_FRAME_EVERY_S = 10.0  # how often the un-annotated frame beside the live JPEG is refreshed


def _edited_geometry(url: str, camera: LiveCameraConfig, applied_ts: float | None) -> tuple[LiveCameraConfig, float | None]:
    """The camera with the geometry saved in the store, if newer than ``applied_ts`` (see storage.geometry)."""
    try:
        saved = load_geometry(url, camera.name)
    except Exception as exc:  # a busy or unreachable store must not stop the camera: try again next poll
        log.warning("camera %s: cannot read edited zones: %s", camera.name, redact_url(str(exc).splitlines()[0]))
        return camera, applied_ts
    if saved is None or saved[1] == applied_ts:
        return camera, applied_ts
    geometry, updated_ts = saved
    log.info("camera %s: zones and lines updated from the store", camera.name)
    return LiveCameraConfig.model_validate({**camera.model_dump(), **geometry}), updated_ts


class Pacer:
    """At most ``fps`` frames a second, spread evenly: a frame is taken once its slot has come (by its own timestamp)."""

    def __init__(self, fps: float) -> None:
        self.interval, self.due = 1.0 / fps, float("-inf")

    def take(self, pts: float) -> bool:
        if pts + 1e-6 < self.due:
            return False
        # slots follow each other, so a frame taken a little late does not push the rate down; after a gap, start anew
        self.due = self.due + self.interval if pts - self.due <= self.interval else pts + self.interval
        return True


class LiveView(Sink):
    """What the dashboard and /metrics see of the camera: counts of the latest frame and its annotated JPEG."""

    def __init__(self, frame_path: Path, jpeg_every_s: float, camera: LiveCameraConfig) -> None:
        self.frame_path, self.jpeg_every_s, self.camera = frame_path, jpeg_every_s, camera
        self.visible: dict[str, int] = {}
        self.occupancy: dict[str, dict[str, int]] = {}
        self.lag = 0.0
        self.processed: deque[float] = deque()
        self._last_jpeg = self._last_clean = float("-inf")

    def on_frame(self, step: Step) -> None:
        now = time.time()
        self.lag = now - step.frame.ts
        self.processed.append(now)
        while now - self.processed[0] >= 5.0:
            self.processed.popleft()
        if step.analysis is not None:
            self.visible, self.occupancy = step.analysis.visible, step.analysis.occupancy
        if now - self._last_jpeg >= self.jpeg_every_s:
            image = draw_frame(step.frame.image, step.tracks.tracks, self.camera, step.regions)
            ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 80])
            if ok:
                write_atomic(self.frame_path, data.tobytes())
            self._last_jpeg = now
        if now - self._last_clean >= CLEAN_FRAME_EVERY_S:  # the zone editor's background: rarely needed fresh
            ok, data = cv2.imencode(".jpg", step.frame.image, [cv2.IMWRITE_JPEG_QUALITY, 85])
            if ok:
                write_atomic(clean_frame_path(self.frame_path), data.tobytes())
            self._last_clean = now

    def fps(self) -> float:
        """Frames processed per second over the last few seconds."""
        times = self.processed
        return (len(times) - 1) / (times[-1] - times[0]) if len(times) > 1 and times[-1] > times[0] else 0.0


def run_camera(config: AppConfig, camera: LiveCameraConfig, out_dir: Path, link: SegmenterLink | None = None, *,
               lifetime: Lifetime | None = None, segmenter: Segmenter | None = None,
               report: Callable[[CameraStatus], None] | None = None, node: str | None = None) -> None:
    """The worker's main loop; returns (exit 0) on SIGTERM/SIGINT after flushing the store.

    Frames go through the same engine as ``maskwatch run``, at most ``camera.fps``
    a second (the newest frame is always the one taken). With ``link`` the frames
    are segmented by the service's shared segmenter process; while it is
    unreachable, frames are skipped (``segmenter_error`` in the status says why)
    and everything else keeps running.

    On Ray (``maskwatch.ray_serve``) the same loop runs in a camera actor's thread:
    ``lifetime`` is the actor's stop flag (anything with ``running``), ``segmenter``
    its client of the segmenter pool, and ``report`` receives every status written,
    for the supervisor on another node, which cannot read this node's files;
    ``node`` (``host/<Ray node id>``) is recorded with the run.
    """
    lifetime = lifetime if lifetime is not None else Lifetime()
    live_dir = Path(config.service.live_dir) if Path(config.service.live_dir).is_absolute() else out_dir / config.service.live_dir
    live_dir.mkdir(parents=True, exist_ok=True)
    status_path, frame_path = live_dir / f"{safe_name(camera.name)}.json", live_dir / f"{safe_name(camera.name)}.jpg"
    source = LiveSource(camera.source, loop=camera.loop, stall_s=camera.stall_s, backoff_max_s=camera.backoff_max_s,
                        rtsp_transport=camera.rtsp_transport)
    if segmenter is None:
        segmenter = RemoteSegmenter(link) if link is not None else build_segmenter(config.segmenter)
    url = store_url(config, out_dir)
    store = open_store(url, config, snapshot_dir(config, out_dir))
    view = LiveView(frame_path, config.service.live_jpeg_every_s, camera)
    engine = Engine(segmenter, mask_tracker(config.tracker), lambda: build_analyzer(config, view.camera, out_dir), [view],
                    backfill_frames=config.tracker.min_hits, clips=build_clips(config, camera.name, out_dir))
    run_id = store.start_run(camera.name, redact_url(str(camera.source)), segmenter=config.segmenter.name,
                             unit=engine.analyzer.calibration.unit, started_ts=time.time(), config=config.redacted(),
                             **({"node": node} if node else {}))
    engine.sinks.append(StoreSink(store, run_id))
    pacer = Pacer(camera.fps)
    segmenter_error: str | None = None
    segment_s = None  # the last frame's wait for its masks: with a shared segmenter, queueing and batching included
    geometry_ts, last_geometry_check, last_publish = None, 0.0, 0.0
    status = "finished"
    me = process_key(os.getpid())  # with the pid, tells the supervisor this process wrote the status, not a predecessor
    source.start()
    try:
        while lifetime.running:
            frame = source.read(timeout=0.5)
            now = time.time()
            if now - last_geometry_check >= GEOMETRY_POLL_S:  # zones edited in the dashboard: applied between frames
                edited, geometry_ts = _edited_geometry(url, view.camera, geometry_ts)
                if edited is not view.camera:
                    view.camera = edited
                    engine.analyzer.set_geometry(edited)
                last_geometry_check = now
            if frame is not None and pacer.take(frame.pts):
                try:
                    asked = time.perf_counter()
                    engine.process([frame])
                    segment_s = time.perf_counter() - asked
                except SegmenterUnavailable as exc:
                    if segmenter_error != str(exc):  # before its first answer it is loading its model: no cause for alarm
                        log.log(logging.WARNING if engine.frames else logging.INFO, "camera %s: frames skipped: %s", camera.name, exc)
                    segmenter_error = str(exc)
                else:
                    if segmenter_error is not None:
                        log.info("camera %s: shared segmenter answering again", camera.name)
                    segmenter_error = None
            now = time.time()
            if now - last_publish >= 0.5:
                state = source.state()
                report_status = CameraStatus(
                    camera=camera.name, pid=os.getpid(), process=me, updated_ts=now, run_id=run_id, source=state.source,
                    connected=state.connected, fps_in=state.fps_in, fps_out=round(view.fps(), 2), dropped=state.dropped,
                    reconnects=state.reconnects, last_error=state.last_error, segmenter_error=segmenter_error,
                    backoff_s=state.backoff_s, frame_size=state.frame_size, queue_depth=state.queue_depth,
                    lag_s=round(view.lag, 3) if state.connected else None,
                    segment_s=round(segment_s, 4) if segment_s is not None else None, frames=engine.frames,
                    ended=state.ended, visible=view.visible, occupancy=view.occupancy, unique=engine.unique(),
                    line_counts=engine.line_counts(), alarms=engine.alarms(),
                )
                write_status(status_path, report_status)
                if report is not None:
                    report(report_status)
                last_publish = now
    except Exception:
        status = "failed"
        raise
    finally:
        source.stop()
        if hasattr(segmenter, "close"):  # a client of a shared segmenter: its connection, its shared memory
            segmenter.close()
        engine.close(status)
