"""``maskwatch serve``: every configured camera, continuously, plus alarm delivery and metrics.

The service process supervises: one worker process per camera (restarted with
backoff when it dies, so one dead camera never stops the others), with
``maskrcnn`` one shared segmenter process that batches all cameras' frames
(``maskwatch.segmenter_server``; restarted the same way), one alarm
sender thread working the store's outbox (webhooks, MQTT), and one HTTP
server for ``/healthz`` and Prometheus ``/metrics``. Workers report through
their status files in ``live_dir``; the supervisor reads them, so a stuck
worker can never block it. SIGTERM/SIGINT stop everything in order (workers
flush their store batches) and the service exits 0.
"""

from __future__ import annotations

import json
import logging
import multiprocessing as mp
import random
import shutil
import signal
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from common import InputError, log_redacted, redact_url
from maskwatch.camera_worker import run_camera, safe_name
from maskwatch.config import AppConfig
from maskwatch.pipeline import store_errors, store_url
from maskwatch.segmenter_server import SegmenterLink, run_segmenter_process
from storage.live import SEGMENTER_STATUS, CameraStatus, process_key, read_status

log = logging.getLogger(__name__)


@dataclass
class _Child:
    """A supervised process: a camera worker or the shared segmenter."""

    label: str  # for log lines: "camera <name>" or "shared segmenter"
    target: Callable[..., None]
    args: tuple
    error_path: Path | None = None  # where the child writes a configuration error before exiting with CONFIG_ERROR_EXIT
    process: mp.Process | None = None
    process_key: str | None = None  # storage.live.process_key of the running process: its status files name it
    restarts: int = 0
    next_start: float = 0.0
    last_exit: str | None = None

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.is_alive()

    def wrote(self, status: CameraStatus) -> bool:
        """Whether ``status`` comes from the running process, not from one before it (a restart, a killed service)."""
        return self.alive and status.pid == self.process.pid and status.process == self.process_key


@dataclass
class Service:
    config: AppConfig
    out_dir: Path
    workers: dict[str, _Child] = field(default_factory=dict)
    stop_event: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        self._setup()
        self._private_dir = Path(tempfile.mkdtemp(prefix="maskwatch-"))  # 0700, and short: socket paths are limited to ~100 bytes
        link = None
        if self.config.service.shared_segmenter(self.config.segmenter.name):
            link = SegmenterLink(str(self._private_dir / "segmenter.sock"), self.config.service.segmenter_timeout_s)
            args = (self.config.segmenter, link, self.config.segmenter.maskrcnn.batch_size,
                    self.config.service.batch_wait_ms / 1000, self.segmenter_status_path)
            self.segmenter = self._child("shared segmenter", run_segmenter_process, args)
        self.workers = {c.name: self._child(f"camera {c.name}", run_camera, (self.config, c, self.out_dir, link))
                        for c in self.config.cameras}
        self._ctx = mp.get_context("spawn")  # no forked copies of threads, CUDA or open connections

    def _setup(self) -> None:
        """What the service is on one host and on Ray alike: its store, live folder and cameras."""
        self.url = store_url(self.config, self.out_dir)
        live = Path(self.config.service.live_dir)
        self.live_dir = live if live.is_absolute() else self.out_dir / live
        self.live_dir.mkdir(parents=True, exist_ok=True)
        self.cameras = {c.name: c for c in self.config.cameras}
        self.segmenter: _Child | None = None
        self.fatal: str | None = None  # a child's configuration error: the service stops with it

    def restart_delay(self, restarts: int) -> float:
        """Exponential backoff with jitter before restarting a camera (or segmenter) that died ``restarts`` times."""
        delay = min(self.config.service.restart_backoff_max_s, 2.0 ** min(restarts, 10))
        return delay * (1 + 0.2 * random.random())

    @property
    def segmenter_status_path(self) -> Path:
        return self.live_dir / SEGMENTER_STATUS  # in a folder: the dashboard takes every *.json of live_dir for a camera

    @property
    def stale_after_s(self) -> float:
        """A running worker reports between frames; a frame may wait ``segmenter_timeout_s`` for its masks."""
        return SILENT_S + self.config.service.segmenter_timeout_s

    def status(self) -> dict[str, CameraStatus]:
        """Per camera: its running worker's latest status, plus what the supervisor knows (alive, restarts, why it died).

        A status file written by any other process (the worker before a restart, a killed
        service's) tells nothing about the camera now: the camera counts as unreported.
        """
        out = {}
        for name, worker in self.workers.items():
            state = read_status(self.live_dir / f"{safe_name(name)}.json")
            if state is None or not worker.wrote(state):
                state = CameraStatus.unreported(name, redact_url(str(self.cameras[name].source)))
            out[name] = supervised(state, worker.alive, worker.restarts, worker.last_exit)
        return out

    def shared_segmenter_status(self) -> dict | None:
        """The shared segmenter's batch statistics and health; None when each camera runs its own."""
        if self.segmenter is None:
            return None
        try:
            state = json.loads(self.segmenter_status_path.read_text())
        except (OSError, ValueError):  # still loading the model, or never started
            state = {}
        if not self.segmenter.alive or state.get("pid") != self.segmenter.process.pid:  # a predecessor's
            state = {}
        return _add_supervision(state, self.segmenter)

    def health(self) -> dict:
        """``/healthz``: ``ok`` only while every camera is live (connected, processing, reporting); else ``degraded``."""
        now = time.time()
        cameras = {}
        for name, state in self.status().items():
            health, reason = state.health(self.stale_after_s, now)
            cameras[name] = state.model_dump(include=HEALTH_FIELDS) | {"health": health, "reason": reason}
        segmenter = self.shared_segmenter_status()
        ok = all(c["health"] == "live" for c in cameras.values()) and (segmenter is None or segmenter["worker_alive"])
        return {"status": "ok" if ok else "degraded", "cameras": cameras, "segmenter": segmenter}

    def _child(self, label: str, target: Callable[..., None], args: tuple) -> _Child:
        error_path = self._private_dir / f"{safe_name(label)}.error"
        return _Child(label, _child_main, (label, error_path, target, *args), error_path=error_path)

    def _segmenter_hung(self) -> str | None:
        """Why the running shared segmenter counts as hung (a stuck driver or kernel), or None.

        It reports after every batch and at least every 0.5 s while idle; a status
        of this very process (not its predecessor's: loading the model is no hang)
        older than ``segmenter_timeout_s`` means a forward pass that never ends.
        The cameras gave up on it at the same timeout, so it is killed and restarted.
        """
        if self.segmenter is None or not self.segmenter.alive:
            return None
        state = self.shared_segmenter_status() or {}
        silent = time.time() - float(state.get("updated_ts") or 0.0)
        limit = self.config.service.segmenter_timeout_s
        if state.get("pid") == self.segmenter.process.pid and silent > limit:
            return f"no progress for {silent:.0f} s (service.segmenter_timeout_s: {limit:g})"
        return None

    def children(self) -> list[_Child]:
        return ([self.segmenter] if self.segmenter is not None else []) + list(self.workers.values())

    def supervise_once(self, now: float) -> None:
        """Start processes that are due, kill a hung segmenter, note the dead and schedule their restart with backoff."""
        for child in self.children():
            process = child.process
            hung = self._segmenter_hung() if child is self.segmenter else None
            if hung is not None:
                log.error("%s: %s; killing it", child.label, hung)
                process.kill()
                process.join(5)
            if process is not None and not process.is_alive():
                error = _read_text(child.error_path) if process.exitcode == CONFIG_ERROR_EXIT else None
                if error and child.restarts == 0:  # at startup: a configuration a restart cannot fix
                    self.fatal = f"{child.label}: {error}"
                    self.stop_event.set()
                child.last_exit = hung or error or f"process exited with code {process.exitcode}"
                log.warning("%s: %s; restarting", child.label, child.last_exit)
                child.next_start = now + self.restart_delay(child.restarts)
                child.restarts += 1
                child.process = None
            if child.process is None and now >= child.next_start and not self.stop_event.is_set():
                child.process = self._ctx.Process(target=child.target, args=child.args, name=child.label.replace(" ", "-"),
                                                  daemon=False)
                child.process.start()
                child.process_key = process_key(child.process.pid)

    def stop_workers(self, timeout: float = 20.0) -> None:
        """Cameras first (they flush their store batches, and may need the segmenter for a frame in flight), then the segmenter."""
        cameras = list(self.workers.values())
        _stop(cameras, timeout)
        if self.segmenter is not None:
            _stop([self.segmenter], timeout)
        shutil.rmtree(self._private_dir, ignore_errors=True)


def supervised(state: CameraStatus, alive: bool, restarts: int, last_exit: str | None) -> CameraStatus:
    """A camera's status as its supervisor sees it: whether its worker lives, how often it restarted, why it ended."""
    supervision: dict = {"worker_alive": alive, "worker_restarts": restarts}
    if not alive:
        supervision["connected"] = False
        if last_exit:
            supervision["last_error"] = last_exit
    return state.model_copy(update=supervision)


def _add_supervision(state: dict, child: _Child) -> dict:
    state.update(worker_alive=child.alive, worker_restarts=child.restarts)
    if child.last_exit and not child.alive:
        state["last_error"] = child.last_exit
    return state


def _stop(children: list[_Child], timeout: float) -> None:
    for child in children:
        if child.alive:
            child.process.terminate()  # SIGTERM: a camera stops its reader and flushes the store
    deadline = time.monotonic() + timeout
    for child in children:
        if child.process is not None:
            child.process.join(max(deadline - time.monotonic(), 0.1))
            if child.process.is_alive():
                log.error("%s did not stop in %.0f s; killing it", child.label, timeout)
                child.process.kill()
                child.process.join()


CONFIG_ERROR_EXIT = 2  # a child's exit code for an InputError: bad weights, an unknown class, ...


def _child_main(label: str, error_path: Path, target: Callable[..., None], *args: object) -> None:
    """A child process: its log lines name it; an :class:`InputError` is written for the supervisor, not a traceback."""
    log_redacted(f"%(asctime)s {label} %(levelname)s %(message)s")
    try:
        target(*args)
    except InputError as exc:
        log.error("%s", exc)
        error_path.write_text(str(exc))
        raise SystemExit(CONFIG_ERROR_EXIT) from None


def _read_text(path: Path | None) -> str | None:
    try:
        return path.read_text().strip() if path is not None else None
    except OSError:
        return None


class _Collector:
    """Prometheus metrics read from the workers' status files at scrape time."""

    def __init__(self, service: Service, backlog) -> None:
        self.service, self.backlog = service, backlog

    def collect(self):
        gauges = {
            "connected": GaugeMetricFamily("maskwatch_camera_connected", "1 when the camera delivers frames", labels=["camera"]),
            "fps_in": GaugeMetricFamily("maskwatch_camera_fps_in", "Frames per second read from the camera", labels=["camera"]),
            "fps_out": GaugeMetricFamily("maskwatch_camera_fps_out", "Frames per second processed", labels=["camera"]),
            "lag_s": GaugeMetricFamily("maskwatch_camera_lag_seconds", "Capture to end of processing, last frame", labels=["camera"]),
            "segment_s": GaugeMetricFamily("maskwatch_camera_segment_seconds",
                                           "Wait for the last frame's masks (shared segmenter: queue and batch included)",
                                           labels=["camera"]),
            "backoff_s": GaugeMetricFamily("maskwatch_camera_backoff_seconds", "Current reconnect wait", labels=["camera"]),
            "queue_depth": GaugeMetricFamily("maskwatch_camera_queue_depth", "Frames waiting to be processed", labels=["camera"]),
        }
        counters = {
            "dropped": CounterMetricFamily("maskwatch_camera_dropped_frames", "Stale frames dropped unprocessed", labels=["camera"]),
            "reconnects": CounterMetricFamily("maskwatch_camera_reconnects", "Reconnections to the camera", labels=["camera"]),
            "frames": CounterMetricFamily("maskwatch_camera_frames", "Frames processed", labels=["camera"]),
            "worker_restarts": CounterMetricFamily("maskwatch_camera_worker_restarts", "Worker process restarts", labels=["camera"]),
        }
        for name, state in self.service.status().items():
            for key, family in gauges.items():
                value = getattr(state, key)
                if value is not None:
                    family.add_metric([name], float(value))
            for key, family in counters.items():
                family.add_metric([name], float(getattr(state, key) or 0))
        yield from gauges.values()
        yield from counters.values()
        backlog = GaugeMetricFamily("maskwatch_alarm_backlog", "Alarm deliveries not yet delivered (pending)")
        backlog.add_metric([], float(self.backlog()))
        yield backlog
        shared = self.service.shared_segmenter_status()
        if shared is not None:
            yield from _segmenter_metrics(shared)


def _segmenter_metrics(state: dict):
    """The shared segmenter: is it up, how full are its batches, how busy is it."""
    up = GaugeMetricFamily("maskwatch_segmenter_up", "1 when the shared segmenter process runs")
    up.add_metric([], 1.0 if state["worker_alive"] else 0.0)
    yield up
    mean = GaugeMetricFamily("maskwatch_segmenter_mean_batch", "Frames per forward pass, mean since start")
    mean.add_metric([], float(state.get("mean_batch") or 0))
    yield mean
    for key, help_text in (("batches", "Forward passes"), ("frames", "Frames segmented"),
                           ("failed_frames", "Frames the segmenter failed on"), ("busy_s", "Seconds spent segmenting"),
                           ("worker_restarts", "Segmenter process restarts")):
        name = "maskwatch_segmenter_busy_seconds" if key == "busy_s" else f"maskwatch_segmenter_{key.replace('worker_', '')}"
        family = CounterMetricFamily(name, help_text)
        family.add_metric([], float(state.get(key) or 0))
        yield family


SILENT_S = 10.0  # a worker reports every 0.5 s between frames: silent longer than this (plus a frame's wait), it is stale
HEALTH_FIELDS = {"connected", "fps_in", "fps_out", "lag_s", "segment_s", "frames", "dropped", "reconnects", "queue_depth",
                 "backoff_s", "last_error", "segmenter_error", "worker_alive", "worker_restarts", "source",
                 "ended"}  # per camera in /healthz, with its health and the reason


def _http_server(service: Service, registry: CollectorRegistry) -> ThreadingHTTPServer:
    host, _, port = service.config.service.listen.rpartition(":")

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            if self.path.startswith("/metrics"):
                body, ctype, code = generate_latest(registry), "text/plain; version=0.0.4", 200
            elif self.path.startswith("/healthz"):
                body = json.dumps(service.health()).encode()
                ctype, code = "application/json", 200
            else:
                body, ctype, code = b"not found\n", "text/plain", 404
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:  # scrapes every few seconds: not worth a log line each
            pass

    return ThreadingHTTPServer((host or "127.0.0.1", int(port)), Handler)


def _check_weights(config: AppConfig) -> None:
    """A missing Mask R-CNN checkpoint stops the service at once, not after its segmenter process has started and died."""
    from segmenter.maskrcnn import check_weights_file

    weights = config.segmenter.maskrcnn.weights
    if config.segmenter.name == "maskrcnn" and weights.lower() not in ("default", "none"):
        check_weights_file(Path(weights))


def serve(config: AppConfig, out_dir: Path, ray_address: str | None = None) -> int:
    """Run until SIGTERM/SIGINT; returns the exit code (0 after a clean stop).

    The signal handlers come first: a signal during start-up stops the service as soon as it has started.
    With ``ray_address`` (``auto``: a local Ray) the cameras run as actors on a Ray cluster
    (:mod:`maskwatch.ray_serve`); everything else is the same.
    """
    stop_event = threading.Event()

    def stop(signum: int, _frame: object) -> None:
        if stop_event.is_set():  # a second signal may land inside the first one's set(): its lock is held
            return
        log.info("signal %d: stopping", signum)
        stop_event.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)

    from delivery.metrics import DeliveryCollector
    from delivery.outbox import Sender, pending_count, webhook_channels

    if not config.cameras:
        raise InputError("no cameras configured: add a 'cameras:' list (name, source) to the config")
    _check_weights(config)
    out_dir.mkdir(parents=True, exist_ok=True)
    snapshot_root = Path(config.store.snapshot_dir) if config.store.snapshot_dir else out_dir / "snapshots"

    channels: dict = dict(webhook_channels(config.delivery))
    mqtt = None
    if config.mqtt is not None:
        from delivery.mqtt import MqttChannel, MqttPublisher

        mqtt = MqttPublisher(config.mqtt)
        channels["mqtt"] = MqttChannel(mqtt)
    url = store_url(config, out_dir)
    with store_errors(url):  # before anything starts: a store that cannot be opened is one error line, not a crash
        sender = Sender(url, channels, config.delivery, snapshot_root)
    started_ray = False
    if ray_address is None:
        service = Service(config, out_dir, stop_event=stop_event)
    else:
        from maskwatch import ray_serve

        started_ray = ray_serve.connect(ray_address)
        signal.signal(signal.SIGTERM, stop)  # Ray's core worker installed its own (a crash dump, then abort): ours again
        signal.signal(signal.SIGINT, stop)
        try:
            service = ray_serve.ray_service(Service, config, out_dir, stop_event, snapshot_root)
        except BaseException:
            if started_ray:
                ray_serve.import_ray().shutdown()
            raise
    if mqtt is not None:
        mqtt.connect()  # returns at once when the broker is down: it keeps retrying in the background

    registry = CollectorRegistry()
    registry.register(_Collector(service, lambda: pending_count(service.url)))
    registry.register(DeliveryCollector(sender, mqtt))  # attempts, backlog and dead letters per channel, MQTT link
    http = _http_server(service, registry)
    threads = [
        threading.Thread(target=http.serve_forever, name="http", daemon=True),
        threading.Thread(target=sender.run, args=(service.stop_event,), name="alarm-sender", daemon=True),
    ]
    for thread in threads:
        thread.start()
    log.info("serving %d camera(s); health and metrics on http://%s", len(service.workers), config.service.listen)
    last_mqtt = 0.0
    try:
        while not service.stop_event.wait(0.5):
            now = time.monotonic()
            service.supervise_once(now)
            if mqtt is not None and now - last_mqtt >= 1.0:
                for name, state in service.status().items():
                    mqtt.camera_status(name, state.connected)
                    if state.updated_ts:
                        mqtt.publish_counts(name, state.updated_ts, state.visible, state.occupancy)
                last_mqtt = now
    finally:
        service.stop_workers()
        http.shutdown()
        threads[1].join(timeout=10)
        if mqtt is not None:
            for name in service.workers:
                mqtt.camera_status(name, False)
            mqtt.close()
        if started_ray:
            ray_serve.import_ray().shutdown()
    if service.fatal is not None:
        raise InputError(service.fatal)
    return 0
