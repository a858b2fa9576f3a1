"""``maskwatch serve``: every configured camera, continuously, plus alarm delivery and metrics.

The service process supervises: one worker process per camera (restarted with
backoff when it dies, so one dead camera never stops the others), one alarm
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
import signal
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from maskwatch.camera_worker import run_camera, safe_name
from maskwatch.config import AppConfig, LiveCameraConfig
from maskwatch.live import redact_url
from maskwatch.pipeline import store_url

log = logging.getLogger(__name__)


@dataclass
class _Worker:
    camera: LiveCameraConfig
    process: mp.Process | None = None
    restarts: int = 0
    next_start: float = 0.0
    last_exit: str | None = None


@dataclass
class Service:
    config: AppConfig
    out_dir: Path
    workers: dict[str, _Worker] = field(default_factory=dict)
    stop_event: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        self.url = store_url(self.config, self.out_dir)
        live = Path(self.config.service.live_dir)
        self.live_dir = live if live.is_absolute() else self.out_dir / live
        self.live_dir.mkdir(parents=True, exist_ok=True)
        self.workers = {c.name: _Worker(c) for c in self.config.cameras}
        self._ctx = mp.get_context("spawn")  # no forked copies of threads, CUDA or open connections

    def status(self) -> dict[str, dict]:
        """Per camera: the worker's latest status file, plus what the supervisor knows (alive, restarts)."""
        out = {}
        for name, worker in self.workers.items():
            path = self.live_dir / f"{safe_name(name)}.json"
            try:
                state = json.loads(path.read_text())
            except (OSError, ValueError):
                state = {"camera": name, "connected": False, "source": redact_url(str(worker.camera.source))}
            alive = worker.process is not None and worker.process.is_alive()
            if not alive:
                state["connected"] = False
            state.update(worker_alive=alive, worker_restarts=worker.restarts)
            if worker.last_exit and not alive:
                state["last_error"] = worker.last_exit
            out[name] = state
        return out

    def supervise_once(self, now: float) -> None:
        """Start workers that are due, note the ones that died and schedule their restart with backoff."""
        for name, worker in self.workers.items():
            process = worker.process
            if process is not None and not process.is_alive():
                worker.last_exit = f"worker exited with code {process.exitcode}"
                log.warning("camera %s: %s; restarting", name, worker.last_exit)
                delay = min(self.config.service.restart_backoff_max_s, 2.0 ** min(worker.restarts, 10))
                worker.next_start = now + delay * (1 + 0.2 * random.random())
                worker.restarts += 1
                worker.process = None
            if worker.process is None and now >= worker.next_start and not self.stop_event.is_set():
                worker.process = self._ctx.Process(
                    target=_worker_main, args=(self.config, worker.camera, self.out_dir), name=f"camera-{name}", daemon=False
                )
                worker.process.start()

    def stop_workers(self, timeout: float = 20.0) -> None:
        for worker in self.workers.values():
            if worker.process is not None and worker.process.is_alive():
                worker.process.terminate()  # SIGTERM: the worker stops its reader and flushes the store
        deadline = time.monotonic() + timeout
        for worker in self.workers.values():
            if worker.process is not None:
                worker.process.join(max(deadline - time.monotonic(), 0.1))
                if worker.process.is_alive():
                    log.error("camera %s did not stop in %.0f s; killing it", worker.camera.name, timeout)
                    worker.process.kill()
                    worker.process.join()


def _worker_main(config: AppConfig, camera: LiveCameraConfig, out_dir: Path) -> None:
    logging.basicConfig(level=logging.INFO, format=f"%(asctime)s {camera.name} %(levelname)s %(message)s")
    run_camera(config, camera, out_dir)


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
                value = state.get(key)
                if key == "connected":
                    value = 1.0 if value else 0.0
                if value is not None:
                    family.add_metric([name], float(value))
            for key, family in counters.items():
                family.add_metric([name], float(state.get(key) or 0))
        yield from gauges.values()
        yield from counters.values()
        backlog = GaugeMetricFamily("maskwatch_alarm_backlog", "Alarm deliveries not yet delivered (pending)")
        backlog.add_metric([], float(self.backlog()))
        yield backlog


def _http_server(service: Service, registry: CollectorRegistry) -> ThreadingHTTPServer:
    host, _, port = service.config.service.listen.rpartition(":")

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            if self.path.startswith("/metrics"):
                body, ctype, code = generate_latest(registry), "text/plain; version=0.0.4", 200
            elif self.path.startswith("/healthz"):
                cameras = service.status()
                body = json.dumps({"status": "ok", "cameras": {
                    n: {k: s.get(k) for k in ("connected", "fps_in", "fps_out", "lag_s", "frames", "dropped", "reconnects",
                                              "queue_depth", "backoff_s", "last_error", "worker_alive", "worker_restarts", "source")}
                    for n, s in cameras.items()}}).encode()
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


def serve(config: AppConfig, out_dir: Path) -> int:
    """Run until SIGTERM/SIGINT; returns the exit code (0 after a clean stop)."""
    from analytics.delivery import Sender, pending_count, webhook_channels

    if not config.cameras:
        from segmenter.errors import InputError

        raise InputError("no cameras configured: add a 'cameras:' list (name, source) to the config")
    out_dir.mkdir(parents=True, exist_ok=True)
    service = Service(config, out_dir)
    snapshot_root = Path(config.store.snapshot_dir) if config.store.snapshot_dir else out_dir / "snapshots"

    channels: dict = dict(webhook_channels(config.delivery))
    mqtt = None
    if config.mqtt is not None:
        from analytics.mqtt import MqttChannel, MqttPublisher

        mqtt = MqttPublisher(config.mqtt)
        mqtt.connect()  # returns at once when the broker is down: it keeps retrying in the background
        channels["mqtt"] = MqttChannel(mqtt)
    sender = Sender(service.url, channels, config.delivery, snapshot_root)

    registry = CollectorRegistry()
    registry.register(_Collector(service, lambda: pending_count(service.url)))
    http = _http_server(service, registry)
    threads = [
        threading.Thread(target=http.serve_forever, name="http", daemon=True),
        threading.Thread(target=sender.run, args=(service.stop_event,), name="alarm-sender", daemon=True),
    ]
    for thread in threads:
        thread.start()

    def stop(signum: int, _frame: object) -> None:
        log.info("signal %d: stopping", signum)
        service.stop_event.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    log.info("serving %d camera(s); health and metrics on http://%s", len(service.workers), config.service.listen)
    last_mqtt = 0.0
    try:
        while not service.stop_event.wait(0.5):
            now = time.monotonic()
            service.supervise_once(now)
            if mqtt is not None and now - last_mqtt >= 1.0:
                for name, state in service.status().items():
                    mqtt.camera_status(name, bool(state.get("connected")))
                    if state.get("updated_ts"):
                        mqtt.publish_counts(name, state["updated_ts"], state.get("visible", {}), state.get("occupancy", {}))
                last_mqtt = now
    finally:
        service.stop_workers()
        http.shutdown()
        threads[1].join(timeout=10)
        if mqtt is not None:
            for name in service.workers:
                mqtt.camera_status(name, False)
            mqtt.close()
    return 0
