"""One segmenter for every camera of ``maskwatch serve``: frames from all cameras batched into one forward pass.

A GPU runs Mask R-CNN at batch 8 many times faster per frame than at batch 1
(``bench/RESULTS.md``), and one model in GPU memory serves any number of
cameras. Camera workers stay separate processes, each its own failure domain;
each hands its latest frame to the segmenter process and waits for that
frame's :class:`Detections`.

Transport: a Unix socket (``multiprocessing.connection``) for the small
messages, and one shared-memory block per worker for the frame, so
a 1080p frame is written once by the worker and read in place by the
segmenter instead of being pickled through the socket. Each worker has at
most one frame in flight, so the segmenter batches across workers: it takes
what has arrived and waits at most ``batch_wait_s`` for the other connected
cameras, up to ``batch_size`` frames.

The segmenter process may die (a driver fault, out of GPU memory); the
service restarts it. Workers then get :class:`SegmenterUnavailable` at once
(or after ``timeout_s`` if it hangs), skip frames while it is away and
reconnect by themselves; their tracks, zones and alarm state are untouched.

Access control is the socket's folder, private to the service's user (0700).
There is deliberately no authkey handshake: its connect cannot time out, so a
worker connecting to a hung segmenter would hang with it, while a plain
connect to a listening Unix socket returns at once and the request's answer
is waited for with ``timeout_s``.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import socket
import struct
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from multiprocessing.connection import Client, Connection, Listener, wait
from multiprocessing.shared_memory import SharedMemory
from pathlib import Path
from typing import Any

import numpy as np

from maskwatch.child_process import Lifetime
from segmenter.detections import Detections
from storage.live import write_atomic

log = logging.getLogger(__name__)


class SegmenterUnavailable(Exception):
    """The shared segmenter cannot be reached, hung or failed on this frame; the frame is skipped."""


@dataclass(frozen=True)
class SegmenterLink:
    """Where the service's segmenter listens: passed to the segmenter process and to every camera worker."""

    address: str  # a Unix socket path in a private (0700) folder
    timeout_s: float = 30.0


# ---------------------------------------------------------------- worker side


class RemoteSegmenter:
    """A :class:`~segmenter.detections.Segmenter` whose model runs in the shared segmenter process."""

    def __init__(self, link: SegmenterLink) -> None:
        self.link = link
        self._conn: Connection | None = None
        self._shm: SharedMemory | None = None

    def segment(self, frames: list[np.ndarray]) -> list[Detections]:
        return [self._segment_one(frame) for frame in frames]

    def _segment_one(self, frame: np.ndarray) -> Detections:
        conn = self._connect()
        shm = self._frame_block(frame.nbytes)
        np.ndarray(frame.shape, np.uint8, buffer=shm.buf)[...] = frame
        try:
            conn.send((shm.name, frame.shape))
            if not conn.poll(self.link.timeout_s):
                raise SegmenterUnavailable(f"shared segmenter did not answer within {self.link.timeout_s:.0f} s")
            status, payload = conn.recv()
        except (OSError, EOFError) as exc:  # the segmenter process went away mid-request
            self._disconnect()
            raise SegmenterUnavailable(f"shared segmenter connection lost ({type(exc).__name__})") from None
        except SegmenterUnavailable:
            self._disconnect()  # a late answer must not be taken for the next frame's
            raise
        if status != "ok":
            raise SegmenterUnavailable(f"shared segmenter failed on this frame: {payload}")
        return payload

    def _connect(self) -> Connection:
        if self._conn is None:
            try:
                self._conn = Client(self.link.address, family="AF_UNIX")
            except (OSError, EOFError) as exc:  # not started yet, restarting, or gone
                raise SegmenterUnavailable(f"shared segmenter not reachable ({type(exc).__name__})") from None
        return self._conn

    def _frame_block(self, nbytes: int) -> SharedMemory:
        """The shared block the frame is written to; replaced only when the frame size changes."""
        if self._shm is not None and self._shm.size < nbytes:
            self._release_block()
        if self._shm is None:
            self._shm = SharedMemory(create=True, size=nbytes)
        return self._shm

    def _disconnect(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _release_block(self) -> None:
        if self._shm is not None:
            self._shm.close()
            self._shm.unlink()
            self._shm = None

    def close(self) -> None:
        self._disconnect()
        self._release_block()


# ---------------------------------------------------------------- segmenter side


@dataclass(eq=False)  # hashed by identity: a key of the pending frames
class _Peer:
    """One connected worker: its connection and its frame block, attached once."""

    conn: Connection
    block: SharedMemory | None = None

    def frame(self, name: str, shape: tuple[int, int, int]) -> np.ndarray:
        if self.block is None or self.block.name.lstrip("/") != name.lstrip("/"):
            self.release()
            self.block = SharedMemory(name=name)
        return np.ndarray(shape, np.uint8, buffer=self.block.buf)

    def release(self) -> None:
        if self.block is not None:
            self.block.close()
            self.block = None


@dataclass
class BatchStats:
    """What ``/metrics`` and ``/healthz`` report about the shared segmenter."""

    batches: int = 0
    frames: int = 0
    failed_frames: int = 0
    busy_s: float = 0.0
    sizes: Counter = field(default_factory=Counter)

    def add(self, size: int, seconds: float) -> None:
        self.batches += 1
        self.frames += size
        self.busy_s += seconds
        self.sizes[size] += 1

    def as_dict(self) -> dict[str, Any]:
        return {
            "batches": self.batches,
            "frames": self.frames,
            "failed_frames": self.failed_frames,
            "busy_s": round(self.busy_s, 3),
            "mean_batch": round(self.frames / self.batches, 3) if self.batches else 0.0,
            "batch_sizes": {str(k): v for k, v in sorted(self.sizes.items())},
        }


class SegmenterServer:
    """Accepts worker connections and answers their frames in batches, one :meth:`serve_round` at a time."""

    def __init__(self, segmenter: Any, link: SegmenterLink, batch_size: int, batch_wait_s: float) -> None:
        self.segmenter, self.batch_size, self.batch_wait_s = segmenter, batch_size, batch_wait_s
        self.send_timeout_s = link.timeout_s  # a camera that has not read its answer by then has given up on it
        Path(link.address).unlink(missing_ok=True)  # left behind by a predecessor that was killed
        # a backlog for every camera: a connect to a full backlog would block until the segmenter accepts
        self.listener = Listener(link.address, family="AF_UNIX", backlog=128)
        self.peers: list[_Peer] = []
        self._pending: dict[_Peer, np.ndarray] = {}
        self.stats = BatchStats()
        self._lock = threading.Lock()
        self._closing = False
        # Answers go out on a thread of their own, so pickling and writing a batch's masks overlaps the next
        # batch's forward pass. A peer belongs to that thread from its answer being queued until it is sent:
        # the serving loop neither reads from nor closes its connection meanwhile.
        self._outbox: queue.Queue[tuple[_Peer, tuple[str, Any]] | None] = queue.Queue()
        self._answering: set[_Peer] = set()
        self._answerer = threading.Thread(target=self._answer, name="answer", daemon=True)
        self._answerer.start()
        threading.Thread(target=self._accept, name="accept", daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn = self.listener.accept()
            except OSError as exc:  # close(), or out of file descriptors
                if self._closing:
                    return
                log.warning("shared segmenter cannot accept a connection: %s", exc)
                time.sleep(0.5)
                continue
            _limit_send_time(conn, self.send_timeout_s)
            with self._lock:
                self.peers.append(_Peer(conn))

    def serve_round(self, idle_timeout: float = 0.2) -> int:
        """Collect one batch, segment it and queue its answers; returns its size (0: nothing arrived in ``idle_timeout``).

        A batch goes as soon as it has ``batch_size`` frames or every connected
        worker has a frame waiting, else when the first frame has waited
        ``batch_wait_s``. Frames beyond ``batch_size`` (more cameras than the
        batch) stay pending and go first in the next batch.
        """
        started = time.monotonic()
        deadline = started + self.batch_wait_s if self._pending else None
        while True:
            with self._lock:
                waiting = [p for p in self.peers if p not in self._pending]  # each may still send a frame
                answering = set(self._answering)
            if self._pending and (len(self._pending) >= self.batch_size or not waiting):
                break
            if deadline is not None and time.monotonic() >= deadline:
                break
            timeout = idle_timeout if deadline is None else deadline - time.monotonic()
            if not waiting:  # no worker connected (yet)
                time.sleep(timeout)
                return 0
            readable = [p for p in waiting if p not in answering]
            # a peer whose answer is still being sent cannot have sent its next frame: look again shortly
            ready = wait([p.conn for p in readable], min(timeout, 0.002) if answering else timeout)
            if not ready and deadline is None and (not answering or time.monotonic() >= started + idle_timeout):
                return 0
            for peer in readable:
                if peer.conn in ready and (frame := self._receive(peer)) is not None:
                    self._pending[peer] = frame
                    deadline = deadline or time.monotonic() + self.batch_wait_s
        peers = list(self._pending)[: self.batch_size]
        results = self._segment([self._pending.pop(peer) for peer in peers])  # no view of a block outlives this
        for peer, result in zip(peers, results):
            self._send(peer, result)
        return len(peers)

    def _receive(self, peer: _Peer) -> np.ndarray | None:
        try:
            name, shape = peer.conn.recv()
            return peer.frame(name, tuple(shape))
        except (OSError, EOFError):  # the worker stopped or died
            self._drop(peer)
        except (ValueError, TypeError) as exc:  # a block that vanished or does not fit the shape
            self._send(peer, ("error", f"cannot read the frame: {exc}"))
        return None

    def _segment(self, frames: list[np.ndarray]) -> list[tuple[str, Any]]:
        started = time.perf_counter()
        try:
            results = [("ok", det) for det in self.segmenter.segment(frames)]
        except Exception:  # one bad frame must not fail the other cameras' frames: retry them one by one
            log.exception("shared segmenter: batch of %d failed; segmenting its frames one at a time", len(frames))
            results = [self._segment_alone(frame) for frame in frames]
        self.stats.add(len(frames), time.perf_counter() - started)
        return results

    def _segment_alone(self, frame: np.ndarray) -> tuple[str, Any]:
        try:
            return "ok", self.segmenter.segment([frame])[0]
        except Exception as exc:
            self.stats.failed_frames += 1
            return "error", f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else 'no details'}"

    def _send(self, peer: _Peer, message: tuple[str, Any]) -> None:
        with self._lock:
            self._answering.add(peer)
        self._outbox.put((peer, message))

    def _answer(self) -> None:
        """The answer thread: send each queued answer, then hand the peer back to the serving loop."""
        while (item := self._outbox.get()) is not None:
            peer, message = item
            try:
                peer.conn.send(message)
            except OSError:  # the worker went away, or stopped reading (hung): it must not hold up the others
                self._drop(peer)  # still this thread's peer: the serving loop does not touch it
            except Exception:  # one answer that cannot be sent must not stop the answers to every camera
                log.exception("shared segmenter: cannot send an answer; that camera's frame times out")
            with self._lock:
                self._answering.discard(peer)

    def _drop(self, peer: _Peer) -> None:
        with self._lock:
            if peer in self.peers:
                self.peers.remove(peer)
        self._pending.pop(peer, None)
        peer.conn.close()
        peer.release()

    def close(self) -> None:
        self._closing = True
        self.listener.close()
        self._outbox.put(None)  # answers already queued still go out
        self._answerer.join(5)
        with self._lock:
            peers = list(self.peers)
        for peer in peers:
            self._drop(peer)


def _limit_send_time(conn: Connection, seconds: float) -> None:
    """Make a write to ``conn`` fail after ``seconds`` instead of waiting for ever on a worker that stopped reading.

    An answer is larger than the socket's buffer, so a hung camera worker would
    otherwise block the answer thread, and with it the answers to every camera,
    while the segmenter itself looks healthy to the service's watchdog.
    """
    sock = socket.socket(fileno=os.dup(conn.fileno()))  # the same socket: options set here apply to conn
    try:
        whole = int(seconds)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, struct.pack("ll", whole, int((seconds - whole) * 1e6)))
    finally:
        sock.close()


def run_segmenter_process(section: Any, link: SegmenterLink, batch_size: int, batch_wait_s: float, status_path: Path) -> None:
    """The segmenter process of ``maskwatch serve``: load the model once, then answer batches until SIGTERM.

    The model is loaded, and run once on a blank frame, before the socket opens, so
    workers see "not reachable" (and skip frames) rather than waiting on a model
    that is still loading, and the first real batch pays no one-time start-up costs.
    ``status_path`` gets the batch statistics twice a second for the service's
    ``/metrics``. An orphan (service killed with -9) stops too.
    """
    from maskwatch.pipeline import build_segmenter

    lifetime = Lifetime()
    segmenter = build_segmenter(section)
    segmenter.segment([np.zeros((240, 320, 3), np.uint8)])
    device = str(getattr(segmenter, "device", "cpu"))
    server = SegmenterServer(segmenter, link, batch_size, batch_wait_s)
    log.info("shared segmenter ready on %s (batch up to %d, wait %.0f ms)", device, batch_size, batch_wait_s * 1000)
    status_path.parent.mkdir(parents=True, exist_ok=True)
    last_status = 0.0
    try:
        while lifetime.running:
            server.serve_round()
            if time.monotonic() - last_status >= 0.5:
                state = {"pid": os.getpid(), "updated_ts": time.time(), "device": device, "workers": len(server.peers),
                         "batch_size": batch_size, "gpu_memory_mb": _gpu_memory_mb(device), **server.stats.as_dict()}
                write_atomic(status_path, json.dumps(state).encode())
                last_status = time.monotonic()
    finally:
        server.close()


def _gpu_memory_mb(device: str) -> float | None:
    """Peak GPU memory the model has used, for sizing how many cameras a GPU takes; None off CUDA."""
    if not device.startswith("cuda"):
        return None
    import torch

    return round(torch.cuda.max_memory_allocated(device) / 2**20, 1)
