"""``maskwatch serve --ray ADDRESS``: the live service with its cameras spread over a Ray cluster.

The supervisor (``maskwatch serve`` on the head, the Ray driver) is the same
:class:`maskwatch.serve.Service` as on one host, with Ray actors in place of
child processes:

* one :class:`CameraActor` per camera (``num_cpus=1``; ``num_gpus=1`` for a
  ``maskrcnn`` camera that runs its own model on a GPU cluster), placed with the
  ``SPREAD`` strategy and ``max_restarts=-1``: when its node dies Ray starts it
  again on a node that lives. The actor runs the one camera loop,
  :func:`maskwatch.camera_worker.run_camera`, in a thread; every (re)start opens
  a new run, and track ids are uuid4 (``track_uid``), so nothing collides with
  what the camera wrote on its old node;
* for ``maskrcnn`` (``service.segmenter: shared``/``auto``) a pool of
  :class:`SegmenterPoolActor` (one per GPU of the cluster, else one on a CPU)
  that batches the frames of all cameras it serves, in place of the socket and
  shared memory of :mod:`maskwatch.segmenter_server`; cameras reach it through
  :class:`RaySegmenter`, with the same :class:`SegmenterUnavailable` contract;
* on PostgreSQL, :data:`SENDERS` :class:`SenderActor` (webhooks) spread over the
  nodes beside the supervisor's own sender: ``SELECT ... FOR UPDATE SKIP LOCKED``
  shares the outbox among them.

Status: a camera's files in ``live_dir`` are written on the node it runs on. The
supervisor polls each actor (:meth:`CameraActor.poll`) for its latest
:class:`~storage.live.CameraStatus` (the one schema), so ``/healthz`` and
``/metrics`` cover every camera wherever it runs; for a camera on another host
it also copies the status and the latest JPEG into its own ``live_dir``, so the
dashboard's Live page, reading that folder, shows every camera.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import threading
import time
import zlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from common import InputError, log_redacted, redact_url
from maskwatch.camera_worker import run_camera, safe_name
from maskwatch.config import AppConfig, LiveCameraConfig
from maskwatch.segmenter_server import BatchStats, SegmenterUnavailable
from maskwatch.serve import supervised
from segmenter.detections import Detections
from storage.live import CameraStatus, process_key, write_atomic, write_status

log = logging.getLogger(__name__)

SENDERS = 2  # alarm sender actors besides the supervisor's own sender (PostgreSQL stores only)
POLL_TIMEOUT_S = 5.0  # an actor that has not answered a status poll for this long counts as not running


def import_ray():
    """Ray, imported only for ``--ray`` (the optional extra ``maskwatch[cluster]``)."""
    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    try:
        import ray
    except ImportError:
        raise InputError("serve --ray needs Ray: pip install 'maskwatch[cluster]'") from None
    return ray


def connect(address: str) -> bool:
    """Join the Ray cluster at ``address`` (``auto``: the one running on this machine, else a new local one).

    Returns whether this call started Ray (and so must shut it down).
    """
    ray = import_ray()
    if ray.is_initialized():
        return False
    if address == "auto":
        try:
            ray.init(address="auto", log_to_driver=True)
        except ConnectionError:
            log.info("no Ray cluster running on this machine: starting a local one")
            ray.init()
    else:
        try:
            ray.init(address=address, log_to_driver=True)
        except ConnectionError as exc:
            raise InputError(f"cannot join the Ray cluster at {address}: {exc}") from None
    return True


def _node_label() -> tuple[str, str]:
    ray = import_ray()
    return ray.get_runtime_context().get_node_id(), socket.gethostname()


# ---------------------------------------------------------------- the segmenter pool


class SegmenterPoolActor:
    """One model (on a GPU when the node has one) answering frames of many cameras in batches.

    An async actor: every :meth:`segment` call of a camera waits on a future; one
    batching task takes what is queued, waits up to ``batch_wait_s`` for more (up
    to ``batch_size``), and runs the forward pass on a thread, so calls keep
    arriving meanwhile. A failed batch is retried frame by frame, as in
    :class:`maskwatch.segmenter_server.SegmenterServer`.
    """

    def __init__(self, section: Any, batch_size: int, batch_wait_s: float) -> None:
        from maskwatch.pipeline import build_segmenter

        log_redacted("%(asctime)s segmenter pool %(levelname)s %(message)s")
        self.segmenter = build_segmenter(section)
        self.segmenter.segment([np.zeros((240, 320, 3), np.uint8)])  # one-time start-up costs before the first camera
        self.device = str(getattr(self.segmenter, "device", "cpu"))
        self.batch_size, self.batch_wait_s = batch_size, batch_wait_s
        self.stats = BatchStats()
        self.node, self.host = _node_label()
        self._queue: list[tuple[np.ndarray, asyncio.Future]] = []
        self._arrived: asyncio.Event | None = None
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="forward")
        self._batcher: asyncio.Task | None = None

    async def segment(self, frame: np.ndarray) -> tuple[str, Any]:
        """``("ok", Detections)`` or ``("error", why)`` for one camera's frame."""
        if self._batcher is None:
            self._arrived = asyncio.Event()
            self._batcher = asyncio.get_running_loop().create_task(self._batch_loop())
        future = asyncio.get_running_loop().create_future()
        self._queue.append((frame, future))
        self._arrived.set()
        return await future

    async def _batch_loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self._arrived.wait()
            deadline = loop.time() + self.batch_wait_s
            while len(self._queue) < self.batch_size and loop.time() < deadline:
                await asyncio.sleep(min(0.002, max(deadline - loop.time(), 0)))
            batch, self._queue = self._queue[: self.batch_size], self._queue[self.batch_size :]
            if not self._queue:
                self._arrived.clear()
            results = await loop.run_in_executor(self._executor, self._segment, [frame for frame, _ in batch])
            for (_, future), result in zip(batch, results):
                if not future.done():
                    future.set_result(result)

    def _segment(self, frames: list[np.ndarray]) -> list[tuple[str, Any]]:
        started = time.perf_counter()
        try:
            results = [("ok", det) for det in self.segmenter.segment(frames)]
        except Exception:
            log.exception("segmenter pool: batch of %d failed; segmenting its frames one at a time", len(frames))
            results = []
            for frame in frames:
                try:
                    results.append(("ok", self.segmenter.segment([frame])[0]))
                except Exception as exc:
                    self.stats.failed_frames += 1
                    results.append(("error", f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"))
        self.stats.add(len(frames), time.perf_counter() - started)
        return results

    def status(self) -> dict:
        """Batch statistics, as the single-host segmenter's status file has them."""
        return {"pid": os.getpid(), "updated_ts": time.time(), "device": self.device, "node": self.node,
                "host": self.host, "batch_size": self.batch_size, **self.stats.as_dict()}


class RaySegmenter:
    """A camera's :class:`~segmenter.detections.Segmenter` whose model runs in the segmenter pool.

    A camera sticks to one pool actor (by its name), so the pool's batches mix
    cameras evenly; an actor that is gone or silent for ``timeout_s`` makes the
    frame skipped (:class:`SegmenterUnavailable`) and the next frame tries the
    next actor of the pool.
    """

    def __init__(self, pool: list, camera: str, timeout_s: float) -> None:
        self.pool, self.timeout_s = pool, timeout_s
        self._turn = zlib.crc32(camera.encode()) % len(pool)

    def segment(self, frames: list[np.ndarray]) -> list[Detections]:
        ray = import_ray()
        actor = self.pool[self._turn]
        refs = [actor.segment.remote(frame) for frame in frames]
        try:
            answers = ray.get(refs, timeout=self.timeout_s)
        except (ray.exceptions.RayActorError, ray.exceptions.GetTimeoutError, ray.exceptions.ActorUnavailableError) as exc:
            for ref in refs:
                ray.cancel(ref)
            self._turn = (self._turn + 1) % len(self.pool)
            raise SegmenterUnavailable(f"segmenter pool actor unavailable ({type(exc).__name__})") from None
        out = []
        for status, payload in answers:
            if status != "ok":
                raise SegmenterUnavailable(f"segmenter pool failed on this frame: {payload}")
            out.append(payload)
        return out


# ---------------------------------------------------------------- cameras


class CameraActor:
    """One camera on some node: :func:`run_camera` in a thread, its latest status kept for the supervisor.

    The loop starts with the actor (also when Ray restarts it on another node);
    a loop that ends with an error stays down until the supervisor calls
    :meth:`start` again, after its backoff, as it restarts a worker process.
    """

    def __init__(self, config: AppConfig, camera: LiveCameraConfig, out_dir: str, pool: list | None) -> None:
        log_redacted(f"%(asctime)s camera {camera.name} %(levelname)s %(message)s")
        self.config, self.camera, self.out_dir, self.pool = config, camera, Path(out_dir), pool
        self.key = process_key(os.getpid())
        self.node, self.host = _node_label()
        self._stopping = threading.Event()
        self._status: CameraStatus | None = None
        self._thread: threading.Thread | None = None
        self.exit: str | None = None
        self.config_error = False
        self.start()

    @property
    def running(self) -> bool:  # run_camera's lifetime
        return not self._stopping.is_set()

    def start(self) -> bool:
        """Start the camera loop unless it runs; whether it was started."""
        if self._thread is not None and self._thread.is_alive():
            return False
        self._stopping.clear()
        self._status, self.exit, self.config_error = None, None, False
        self._thread = threading.Thread(target=self._run, name=f"camera-{self.camera.name}", daemon=True)
        self._thread.start()
        return True

    def _run(self) -> None:
        segmenter = (RaySegmenter(self.pool, self.camera.name, self.config.service.segmenter_timeout_s)
                     if self.pool else None)
        try:
            run_camera(self.config, self.camera, self.out_dir, lifetime=self, segmenter=segmenter, report=self._report,
                       node=f"{self.host}/{self.node}")
            self.exit = "stopped"
        except InputError as exc:
            log.error("%s", exc)
            self.exit, self.config_error = str(exc), True
        except BaseException as exc:
            log.exception("camera %s: loop failed", self.camera.name)
            self.exit = redact_url(f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")

    def _report(self, status: CameraStatus) -> None:
        self._status = status

    def poll(self, with_frame: bool = False) -> dict:
        """Where the camera runs, whether its loop does, its latest status and, if asked, its latest JPEG."""
        frame = None
        if with_frame:
            live = Path(self.config.service.live_dir)
            live = live if live.is_absolute() else self.out_dir / live
            try:
                frame = (live / f"{safe_name(self.camera.name)}.jpg").read_bytes()
            except OSError:
                pass
        status = self._status
        return {"key": self.key, "node": self.node, "host": self.host, "running": bool(self._thread and self._thread.is_alive()),
                "exit": self.exit, "config_error": self.config_error,
                "status": status.model_dump() if status is not None else None, "frame": frame}

    def stop(self, timeout: float = 20.0) -> bool:
        """Stop the loop (the store batch is flushed, the run closed); whether it stopped in time."""
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout)
        return self._thread is None or not self._thread.is_alive()


# ---------------------------------------------------------------- alarm senders


class SenderActor:
    """An alarm sender on some node: :class:`delivery.outbox.Sender` over the shared PostgreSQL outbox, webhooks only.

    MQTT stays with the supervisor's sender (one client id, one retained status).
    """

    def __init__(self, url: str, config: AppConfig, snapshot_root: str) -> None:
        from delivery.outbox import Sender, webhook_channels

        log_redacted("%(asctime)s alarm sender %(levelname)s %(message)s")
        self.node, self.host = _node_label()
        self._stop = threading.Event()
        self.sender = Sender(url, webhook_channels(config.delivery), config.delivery, Path(snapshot_root),
                             partial=True)  # MQTT rows are the supervisor's sender's
        self._thread = threading.Thread(target=self.sender.run, args=(self._stop,), name="alarm-sender", daemon=True)
        self._thread.start()

    def where(self) -> tuple[str, str]:
        return self.node, self.host

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self._thread.join(timeout)
        self.sender.close()


# ---------------------------------------------------------------- supervisor side


@dataclass
class ActorChild:
    """The supervisor's view of one camera actor: what its last poll said, and its restarts."""

    label: str
    name: str
    handle: Any = None
    key: str | None = None  # process_key of the actor process last seen: a new one is a restart by Ray
    node: str | None = None
    host: str | None = None
    running: bool = False
    restarts: int = 0
    last_exit: str | None = None
    next_start: float | None = None  # when the ended camera loop is started again; None: none scheduled
    status: CameraStatus | None = None
    pending: Any = None  # the poll in flight
    asked: float = 0.0  # when it was sent (monotonic)
    answered: float = float("-inf")  # when a poll last answered (monotonic)

    @property
    def alive(self) -> bool:
        return self.running and time.monotonic() - self.answered < POLL_TIMEOUT_S


def _pool_totals(ray: Any, refs: list) -> dict:
    """The pool as one shared segmenter for ``/healthz`` and ``/metrics``: its actors' statistics added up.

    ``worker_alive`` only while every actor answers; ``actors`` lists each one's own status.
    """
    states = []
    for ref in refs:
        try:
            states.append(ray.get(ref) | {"worker_alive": True})
        except ray.exceptions.RayError as exc:
            states.append({"worker_alive": False, "last_error": f"pool actor lost: {type(exc).__name__}"})
    total = {key: sum(s.get(key) or 0 for s in states) for key in ("batches", "frames", "failed_frames", "busy_s")}
    total["mean_batch"] = round(total["frames"] / total["batches"], 3) if total["batches"] else 0.0
    return total | {"worker_alive": all(s["worker_alive"] for s in states), "actors": states}


def actor_options(config: AppConfig, gpus: float) -> dict:
    """Resources of a camera actor: a CPU, and a GPU when it runs Mask R-CNN itself on a cluster that has GPUs."""
    own_model = config.segmenter.name == "maskrcnn" and not config.service.shared_segmenter(config.segmenter.name)
    resources = {"num_cpus": 1, "num_gpus": 1 if own_model and gpus >= 1 else 0}
    return {**resources, "max_restarts": -1, "max_task_retries": 0, "scheduling_strategy": "SPREAD"}


class RayCameras:
    """The camera actors, the segmenter pool and the sender actors of one service; polled by the supervisor."""

    def __init__(self, config: AppConfig, out_dir: Path, live_dir: Path, url: str, snapshot_root: Path) -> None:
        ray = import_ray()
        self.ray, self.config, self.live_dir = ray, config, live_dir
        self.host = socket.gethostname()
        gpus = float(ray.cluster_resources().get("GPU", 0))
        self.pool: list = []
        if config.service.shared_segmenter(config.segmenter.name):
            count = max(int(gpus), 1)
            pool_class = ray.remote(SegmenterPoolActor).options(
                num_cpus=0 if gpus else 1, num_gpus=1 if gpus else 0, max_restarts=-1, max_task_retries=0,
                max_concurrency=1000, scheduling_strategy="SPREAD")
            section = config.segmenter
            self.pool = [pool_class.remote(section, section.maskrcnn.batch_size, config.service.batch_wait_ms / 1000)
                         for _ in range(count)]
        camera_class = ray.remote(CameraActor).options(**actor_options(config, gpus))
        self.children = {}
        for camera in config.cameras:
            child = ActorChild(f"camera {camera.name}", camera.name)
            child.handle = camera_class.remote(config, camera, str(out_dir.resolve()), self.pool or None)
            self.children[camera.name] = child
        self.senders: list = []
        if url.startswith("postgresql"):  # SKIP LOCKED shares the outbox; on SQLite the supervisor's sender is the one
            sender_class = ray.remote(SenderActor).options(num_cpus=0, max_restarts=-1, scheduling_strategy="SPREAD")
            self.senders = [sender_class.remote(url, config, str(snapshot_root)) for _ in range(SENDERS)]
        self._pool_state: dict | None = None
        self._pool_pending: list = []  # a status call per pool actor

    def poll(self, backoff: Callable[[int], float], stop: threading.Event) -> str | None:
        """Collect answered polls, send new ones, restart loops that ended; a configuration error, if one ended so."""
        ray, now = self.ray, time.monotonic()
        fatal = None
        for child in self.children.values():
            if child.pending is None:
                elsewhere = child.host is not None and child.host != self.host  # its JPEG is not in our live_dir
                child.pending, child.asked = child.handle.poll.remote(with_frame=elsewhere), now
        refs = [c.pending for c in self.children.values()]
        ready, _ = ray.wait(refs, num_returns=len(refs), timeout=0.2)
        ready = set(ready)
        for child in self.children.values():
            if child.pending not in ready:
                if time.monotonic() - child.answered >= POLL_TIMEOUT_S and child.running:
                    child.running = False
                    child.last_exit = child.last_exit or "actor not answering (its node may be gone)"
                continue
            ref, child.pending = child.pending, None
            try:
                answer = ray.get(ref)
            except (ray.exceptions.RayActorError, ray.exceptions.ActorUnavailableError) as exc:
                if child.running or child.last_exit is None:
                    log.warning("%s: actor lost (%s); Ray restarts it on a live node", child.label, type(exc).__name__)
                child.running, child.last_exit = False, f"actor lost: {type(exc).__name__}"
                continue
            fatal = self._take(child, answer, backoff, stop) or fatal
        if self.pool and len(ray.wait(self._pool_pending, num_returns=len(self._pool_pending), timeout=0)[0]) == len(
                self._pool_pending):
            if self._pool_pending:
                self._pool_state = _pool_totals(ray, self._pool_pending)
            self._pool_pending = [actor.status.remote() for actor in self.pool]
        return fatal

    def _take(self, child: ActorChild, answer: dict, backoff: Callable[[int], float], stop: threading.Event) -> str | None:
        now = time.monotonic()
        child.answered = now
        if answer["key"] != child.key:
            if child.key is not None:
                child.restarts += 1
                log.warning("%s: restarted by Ray on node %s (%s)", child.label, answer["node"][:12], answer["host"])
            child.key = answer["key"]
        child.node, child.host = answer["node"], answer["host"]
        status = answer["status"]
        child.status = CameraStatus.model_validate(status) if status is not None else None
        if child.status is not None and child.host != self.host:  # the dashboard here reads only local files
            write_status(self.live_dir / f"{safe_name(child.name)}.json", child.status)
            if answer["frame"]:
                write_atomic(self.live_dir / f"{safe_name(child.name)}.jpg", answer["frame"])
        child.running = answer["running"]
        if child.running:  # also after Ray restarted the actor while a restart of its loop was scheduled
            child.next_start = None
            return None
        if child.next_start is None:  # the loop has just been seen ended: a configuration error, or restart after a backoff
            child.last_exit = answer["exit"] or "camera loop not running"
            if answer["config_error"] and child.restarts == 0:  # at startup: a configuration a restart cannot fix
                return f"{child.label}: {child.last_exit}"
            delay = backoff(child.restarts)
            child.next_start = now + delay
            log.warning("%s: %s; restarting in %.1f s", child.label, child.last_exit, delay)
        elif now >= child.next_start and not stop.is_set():
            child.restarts += 1
            child.handle.start.remote()  # ordered before the next poll: that one sees the loop running
            child.next_start = None
        return None

    def pool_status(self) -> dict | None:
        if not self.pool:
            return None
        return dict(self._pool_state or {"worker_alive": False, "actors": len(self.pool)})

    def stop(self, timeout: float) -> None:
        """Cameras first (each flushes its store batch and closes its run), then the pool and the senders."""
        ray = self.ray
        stops = [c.handle.stop.remote(timeout) for c in self.children.values()]
        try:
            ray.get(stops, timeout=timeout + 5)
        except ray.exceptions.RayError as exc:
            log.error("cameras did not all stop cleanly: %s", type(exc).__name__)
        try:
            ray.get([s.stop.remote() for s in self.senders], timeout=15)
        except ray.exceptions.RayError:
            pass
        for actor in [*(c.handle for c in self.children.values()), *self.pool, *self.senders]:
            ray.kill(actor, no_restart=True)


# ---------------------------------------------------------------- the service


def _check_store_reachable(ray: Any, url: str) -> None:
    """A SQLite file is this machine's: refused when the cluster has nodes on other machines."""
    if not url.startswith("sqlite"):
        return
    hosts = {n["NodeManagerAddress"] for n in ray.nodes() if n.get("Alive")}
    if len(hosts) > 1:
        raise InputError(f"serve --ray: the cluster spans {len(hosts)} machines ({', '.join(sorted(hosts))}) but the store "
                         "is a SQLite file on this one; set store.url to a PostgreSQL URL every node reaches")


def ray_service(service_class: type, config: AppConfig, out_dir: Path, stop_event: threading.Event,
                snapshot_root: Path) -> Any:
    """A :class:`maskwatch.serve.Service` whose cameras are Ray actors (Ray joined already: :func:`connect`)."""

    class RayService(service_class):
        def __post_init__(self) -> None:
            self._setup()
            _check_store_reachable(import_ray(), self.url)
            self.cluster = RayCameras(self.config, self.out_dir, self.live_dir, self.url, snapshot_root)
            self.workers = self.cluster.children

        def status(self) -> dict[str, CameraStatus]:
            out = {}
            for name, child in self.workers.items():
                state = child.status if child.alive and child.status is not None else None
                if state is None:
                    state = CameraStatus.unreported(name, redact_url(str(self.cameras[name].source)))
                out[name] = supervised(state, child.alive, child.restarts, child.last_exit)
            return out

        def shared_segmenter_status(self) -> dict | None:
            return self.cluster.pool_status()

        def health(self) -> dict:
            """As on one host, and where each camera runs: its Ray node id and host."""
            health = super().health()
            for name, child in self.workers.items():
                health["cameras"][name] |= {"node": child.node, "host": child.host}
            return health

        def supervise_once(self, now: float) -> None:
            fatal = self.cluster.poll(self.restart_delay, self.stop_event)
            if fatal is not None:
                self.fatal = fatal
                self.stop_event.set()

        def stop_workers(self, timeout: float = 20.0) -> None:
            self.cluster.stop(timeout)

    return RayService(config, out_dir, stop_event=stop_event)
