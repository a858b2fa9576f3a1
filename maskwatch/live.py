"""Live camera ingestion for ``maskwatch serve``: the newest frame, always, and a source that heals itself.

A camera does not wait for us. If the pipeline is slower than the camera, reading
frames in order makes the lag grow without bound, so a dedicated reader thread
drains the source as fast as it delivers and keeps only the latest frame in a
hand-over slot of size one: an unread frame is replaced (and counted as dropped).
Cameras also go away (reboots, network blips, NVR restarts): every failure to open
or read, and every stall, closes the capture and reopens it after an exponential
backoff with jitter (so a site's cameras do not reconnect in lockstep), forever,
until :meth:`LiveSource.stop`. A full open is expensive, so during the backoff a
network camera is only probed (a TCP connect to its host and port); when a probe
answers after one went unanswered, the camera is back and is reopened at once,
so recovery does not wait out a long backoff.

Credentials in camera URLs never leave this module in clear: :func:`redact_url`
is applied to everything shown, logged or stored.
"""

from __future__ import annotations

import os

# Read by OpenCV's FFmpeg backend on every open; set before cv2 is imported, without overriding a user's choice.
os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")  # FFmpeg's stderr chatter can echo the URL
os.environ.setdefault("OPENCV_FFMPEG_CAPTURE_OPTIONS", "")  # the user's options, for every camera; see _open_ffmpeg

import enum
import logging
import random
import socket
import threading
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Literal
from urllib.parse import urlsplit

import cv2
import numpy as np

from common import InputError, redact_url

logger = logging.getLogger(__name__)

if "OPENCV_LOG_LEVEL" not in os.environ:  # else the user asked for OpenCV's own lines
    # OpenCV warns on stderr at every failed open ("backend ... can't be used to capture by name"),
    # unredacted and once per attempt; our one log line per failure says it better.
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)

RtspTransport = Literal["tcp", "udp"]

_RATE_WINDOW_S = 2.0  # fps figures are averaged over this long: smooth, yet they fall to 0 soon after a stall
_DEFAULT_FILE_FPS = 25.0  # for a file that does not state its frame rate
_PROBE_INTERVAL_S = 1.0  # during a backoff, how often a network camera is probed (a TCP connect: cheap for both ends)
_DEFAULT_PORTS = {"rtsp": 554, "rtsps": 322, "http": 80, "https": 443}
_OPEN_LOCK = threading.Lock()  # OPENCV_FFMPEG_CAPTURE_OPTIONS holds one camera's options from setting to reading


@dataclass(frozen=True)
class LiveFrame:
    """A frame as handed to the consumer; has ``index``, ``pts`` and ``image`` like :class:`maskwatch.sources.Frame`."""

    index: int  # position among all frames read from the source (every connection): a gap means frames dropped
    pts: float  # seconds, monotonic (the clock of every duration): a file's own pts, continued over loops; else since start()
    ts: float  # wall-clock time of capture, UTC epoch seconds: the frame's age is time.time() - ts
    image: np.ndarray  # BGR uint8


@dataclass(frozen=True)
class SourceState:
    """A consistent snapshot of a :class:`LiveSource`, for health pages and logs (credentials redacted)."""

    source: str
    connected: bool
    fps_in: float  # frames/s read from the source
    fps_out: float  # frames/s handed to the consumer
    frames_in: int
    dropped: int  # frames replaced before the consumer read them
    reconnects: int  # successful opens after a failure
    last_error: str | None
    last_frame_ts: float | None  # wall-clock time of the newest frame read
    frame_size: tuple[int, int] | None  # (width, height) of the newest frame
    backoff_s: float  # wait before the next attempt while disconnected; 0 when connected
    ended: bool  # a local file without loop=True has played to its end; nothing more will come
    queue_depth: int  # frames waiting for the consumer: 0 or 1 (only the latest is ever kept)


class _Outcome(enum.Enum):
    STOPPED = enum.auto()
    END_OF_FILE = enum.auto()
    FAILED = enum.auto()


class _Rate:
    """Events per second over a sliding window: exact for a steady stream, decaying to 0 once events stop."""

    def __init__(self, window_s: float = _RATE_WINDOW_S) -> None:
        self.window_s = window_s
        self.times: deque[float] = deque()

    def add(self, now: float) -> None:
        self.times.append(now)

    def per_second(self, now: float) -> float:
        while self.times and self.times[0] <= now - self.window_s:
            self.times.popleft()
        if len(self.times) < 2:
            return 0.0
        span = self.times[-1] - self.times[0]
        interval = span / (len(self.times) - 1)
        # silent for longer than the usual interval: the silence counts, so a stall shows as a falling rate
        return (len(self.times) - 1) / max(span, now - self.times[0] - interval)


def _device_index(source: str | int) -> int | None:
    if isinstance(source, int):
        return source
    return int(source) if source.strip().isdigit() else None


def _tcp_address(url: str) -> tuple[str, int] | None:
    """(host, port) a network camera listens on, for the probe; None when the URL does not say."""
    parts = urlsplit(url)
    try:
        port = parts.port or _DEFAULT_PORTS.get(parts.scheme.lower())
    except ValueError:
        return None
    return (parts.hostname, port) if parts.hostname and port else None


def _capture_options(user_options: str, rtsp_transport: RtspTransport) -> str:
    """The user's FFmpeg options (``key;value|...``) with this camera's ``rtsp_transport`` in place of theirs."""
    pairs = [p for p in user_options.split("|") if p and p.split(";", 1)[0] != "rtsp_transport"]
    return "|".join([*pairs, f"rtsp_transport;{rtsp_transport}"])


def _open_ffmpeg(url: str, params: list[int], options: str) -> cv2.VideoCapture:
    """Open with these FFmpeg options, for this capture only.

    OpenCV has no per-capture option for FFmpeg: it reads OPENCV_FFMPEG_CAPTURE_OPTIONS
    inside each open, under a lock of its own that already serialises FFmpeg opens. So
    the variable is set just for this open, under our lock, and put back afterwards.
    """
    with _OPEN_LOCK:
        before = os.environ["OPENCV_FFMPEG_CAPTURE_OPTIONS"]
        os.environ["OPENCV_FFMPEG_CAPTURE_OPTIONS"] = options
        try:
            return cv2.VideoCapture(url, cv2.CAP_FFMPEG, params)
        finally:
            os.environ["OPENCV_FFMPEG_CAPTURE_OPTIONS"] = before


class LiveSource:
    """Frames from a camera (RTSP/HTTP URL, device index) or a local video file played like a camera.

    ``read()`` returns the newest frame not yet read; older unread ones are dropped.
    Local files play at their native frame rate (``loop=True`` restarts them at the
    end), so a recording stands in for a camera. See the module docstring for why.
    """

    def __init__(
        self,
        source: str | int,
        *,
        loop: bool = False,
        stall_s: float = 5.0,
        backoff_initial_s: float = 0.5,
        backoff_max_s: float = 30.0,
        jitter: float = 0.2,
        open_timeout_s: float = 10.0,
        rtsp_transport: RtspTransport = "tcp",
    ) -> None:
        if stall_s <= 0 or open_timeout_s <= 0 or backoff_initial_s <= 0:
            raise InputError("stall_s, open_timeout_s and backoff_initial_s must be > 0")
        if backoff_max_s < backoff_initial_s:
            raise InputError(f"backoff_max_s ({backoff_max_s}) must be >= backoff_initial_s ({backoff_initial_s})")
        if not 0 <= jitter < 1:
            raise InputError(f"jitter must be in [0, 1), got {jitter}")
        if rtsp_transport not in ("tcp", "udp"):
            raise InputError(f"rtsp_transport must be tcp or udp, got {rtsp_transport!r}")
        self._source = source
        self._device = _device_index(source)
        self._shown = redact_url(str(source))
        self._is_file = self._device is None and "://" not in str(source)
        if self._is_file and not Path(source).is_file():
            raise InputError(f"live source not found: {self._shown} (not a URL, a device index or a video file)")
        self._address = None if self._device is not None or self._is_file else _tcp_address(str(source))
        # UDP loses packets on a busy network (smeared frames): TCP is the default
        self._capture_options = _capture_options(os.environ["OPENCV_FFMPEG_CAPTURE_OPTIONS"], rtsp_transport)
        self.loop = loop
        self.stall_s = stall_s
        self.backoff_initial_s = backoff_initial_s
        self.backoff_max_s = backoff_max_s
        self.jitter = jitter
        self.open_timeout_s = open_timeout_s

        self._stop = threading.Event()
        self._cond = threading.Condition()  # guards everything below; read() waits on it
        self._thread: threading.Thread | None = None
        self._t0 = time.monotonic()
        self._slot: LiveFrame | None = None
        self._connected = False
        self._ended = False
        self._frames_in = 0
        self._dropped = 0
        self._reconnects = 0
        self._last_error: str | None = None
        self._last_frame_ts: float | None = None
        self._frame_size: tuple[int, int] | None = None
        self._backoff_s = 0.0
        self._rate_in = _Rate()
        self._rate_out = _Rate()
        self._delivered_at = float("-inf")  # monotonic time of the newest frame handed over (reader thread only)
        self._last_pts = float("-inf")  # pts of the newest frame handed over: pts never goes back
        self._file_origin = 0.0  # a file's pts at the start of the current pass (reader thread only)
        self._answered: bool | None = None  # the last probe's answer; None: none since connected (reader thread)

    def __repr__(self) -> str:
        return f"LiveSource({self._shown!r})"

    # -- consumer side --------------------------------------------------------------------------

    def start(self) -> LiveSource:
        """Start the reader thread (once)."""
        if self._thread is not None:
            raise RuntimeError(f"{self!r} was already started")
        self._t0 = time.monotonic()
        self._thread = threading.Thread(target=self._run, name=f"live:{self._shown}", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout_s: float = 2.0) -> None:
        """Stop the reader and wait for it (at most ``timeout_s``).

        Backoff and file pacing waits end at once. A blocking OpenCV open or read
        cannot be interrupted: then this returns after ``timeout_s`` and the (daemon)
        thread releases the capture itself when that call returns.
        """
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout_s)
            if self._thread.is_alive():
                logger.warning("%s: reader still in a blocking open/read; it exits when that returns", self._shown)

    def __enter__(self) -> LiveSource:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def read(self, timeout: float = 1.0) -> LiveFrame | None:
        """The newest frame not read yet, waiting up to ``timeout`` s; None on timeout, after stop() or the end."""
        with self._cond:
            self._cond.wait_for(lambda: self._slot is not None or self._stop.is_set() or self._ended, timeout)
            frame, self._slot = self._slot, None
            if frame is not None:
                self._rate_out.add(time.monotonic())
            return frame

    @property
    def frame_size(self) -> tuple[int, int] | None:
        """(width, height) of the newest frame; it can change when the camera is reconfigured."""
        with self._cond:
            return self._frame_size

    def state(self) -> SourceState:
        """A snapshot of health and counters (thread-safe)."""
        now = time.monotonic()
        with self._cond:
            return SourceState(
                source=self._shown,
                connected=self._connected,
                fps_in=self._rate_in.per_second(now),
                fps_out=self._rate_out.per_second(now),
                frames_in=self._frames_in,
                dropped=self._dropped,
                reconnects=self._reconnects,
                last_error=self._last_error,
                last_frame_ts=self._last_frame_ts,
                frame_size=self._frame_size,
                backoff_s=self._backoff_s,
                ended=self._ended,
                queue_depth=int(self._slot is not None),
            )

    # -- reader thread --------------------------------------------------------------------------

    def _run(self) -> None:
        backoff = self.backoff_initial_s
        failing = False  # the last connection attempt or connection ended in a failure
        while not self._stop.is_set():
            capture = self._open()
            if capture is not None:
                self._answered = None
                self._on_connected(reconnect=failing)
                failing = False
                try:
                    outcome, got_frames = self._pump(capture)
                finally:
                    capture.release()
                    with self._cond:
                        self._connected = False
                if outcome is _Outcome.STOPPED:
                    break
                if outcome is _Outcome.END_OF_FILE:
                    if self.loop:
                        continue  # replay at once: a loop is not a failure
                    with self._cond:
                        self._ended = True
                        self._cond.notify_all()
                    logger.info("%s: end of file", self._shown)
                    break
                if got_frames:
                    backoff = self.backoff_initial_s  # a stream that worked starts the backoff over
            failing = True
            if self._wait(backoff):
                backoff = self.backoff_initial_s  # the camera is back: its failures start over
            else:
                backoff = min(self.backoff_max_s, backoff * 2)

    def _open(self) -> cv2.VideoCapture | None:
        """Open the source, or record why not; FFmpeg's own timeouts keep a dead host from hanging us."""
        try:
            if self._device is not None:
                capture = cv2.VideoCapture(self._device)
            else:
                capture = _open_ffmpeg(str(self._source), self._timeouts(), self._capture_options)
        except cv2.error as exc:
            self._fail(f"cannot open {self._shown}: {exc}")
            return None
        if not capture.isOpened():
            capture.release()
            self._fail(f"cannot open {self._shown}")
            return None
        return capture

    def _timeouts(self) -> list[int]:
        params = []
        if hasattr(cv2, "CAP_PROP_OPEN_TIMEOUT_MSEC"):
            params += [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, int(self.open_timeout_s * 1000)]
        if hasattr(cv2, "CAP_PROP_READ_TIMEOUT_MSEC"):  # a read blocked this long is a stall
            params += [cv2.CAP_PROP_READ_TIMEOUT_MSEC, int(self.stall_s * 1000)]
        return params

    def _on_connected(self, *, reconnect: bool) -> None:
        with self._cond:
            self._connected = True
            self._backoff_s = 0.0
            self._reconnects += reconnect
            first = self._frames_in == 0
        if reconnect or first:  # not on every replay of a looped file
            logger.info("%s: %s", self._shown, "reconnected" if reconnect else "connected")

    def _pump(self, capture: cv2.VideoCapture) -> tuple[_Outcome, bool]:
        """Read until stop, failure, stall or end of file; returns why it stopped and whether frames came."""
        period = 0.0
        if self._is_file:
            fps = capture.get(cv2.CAP_PROP_FPS)
            period = 1.0 / (fps if 0 < fps < 1000 else _DEFAULT_FILE_FPS)
        last_frame = time.monotonic()
        due = max(self._delivered_at, last_frame - period)  # a looped file keeps its pace across the reopen
        got_frames = False
        while not self._stop.is_set():
            try:
                ok, image = capture.read()
            except cv2.error as exc:
                self._fail(f"read failed: {exc}")
                return _Outcome.FAILED, got_frames
            now = time.monotonic()
            if not ok or image is None:
                if self._is_file and got_frames:
                    self._file_origin = self._last_pts + period  # a looped file's next pass starts one frame later
                    return _Outcome.END_OF_FILE, True
                silent = now - last_frame
                if silent >= self.stall_s:
                    self._fail(f"stalled: no frame from {self._shown} for {silent:.1f} s")
                else:
                    self._fail(f"read failed: {self._shown} ended or the connection was lost")
                return _Outcome.FAILED, got_frames
            if period:  # pace a file like a camera; after a hiccup carry on, do not burst to catch up
                due = max(due + period, now)
                if self._stop.wait(due - now):
                    break
                now = time.monotonic()
            last_frame = now
            got_frames = True
            pts = now - self._t0
            if self._is_file:  # the file's own clock, continued across loops: durations follow the footage
                pts = self._file_origin + capture.get(cv2.CAP_PROP_POS_MSEC) / 1000.0
            self._deliver(image, now, pts if pts > self._last_pts else self._last_pts + (period or 1e-3))
        return _Outcome.STOPPED, got_frames

    def _deliver(self, image: np.ndarray, now: float, pts: float) -> None:
        size = (image.shape[1], image.shape[0])
        with self._cond:
            if size != self._frame_size:
                if self._frame_size is not None:
                    logger.info("%s: frame size changed from %dx%d to %dx%d", self._shown, *self._frame_size, *size)
                self._frame_size = size
            frame = LiveFrame(self._frames_in, pts, time.time(), image)
            self._last_pts = pts
            self._frames_in += 1
            if self._slot is not None:
                self._dropped += 1
            self._slot = frame
            self._last_frame_ts = frame.ts
            self._delivered_at = now
            self._rate_in.add(now)
            self._cond.notify_all()

    def _fail(self, message: str) -> None:
        """Record an error (one line, redacted); warn on the first of a run of failures, then only debug-log."""
        line = redact_url(" ".join(message.split()))
        with self._cond:
            repeated = not self._connected and self._last_error is not None and self._backoff_s > 0
            self._last_error = line
        logger.log(logging.DEBUG if repeated else logging.WARNING, "%s", line)

    def _wait(self, backoff: float) -> bool:
        """Wait before the next open, probing a network camera meanwhile; True when it came back early.

        Jitter only shortens the wait, so the cap holds; stop() ends it at once. A probe
        that answers ends it only after one went unanswered: a camera that answers yet
        fails to open (wrong password, still booting) keeps its backoff, and the first
        probe runs before ``backoff_s`` is published, so a camera killed then restarted
        is always seen coming back.
        """
        wait = backoff * (1.0 - self.jitter * random.random())
        deadline = time.monotonic() + wait
        while True:
            if self._address is not None:
                answered, was = self._probe(), self._answered
                self._answered = answered
                if answered and was is False:
                    logger.debug("%s: answers again; opening now", self._shown)
                    return True
            with self._cond:
                if self._backoff_s != wait:
                    self._backoff_s = wait
                    logger.debug("%s: next attempt in %.1f s", self._shown, wait)
            left = deadline - time.monotonic()
            if left <= 0 or self._stop.wait(min(_PROBE_INTERVAL_S, left)):
                return False

    def _probe(self) -> bool:
        """Whether the camera's host accepts a TCP connection on its port (a cheap sign it is back)."""
        try:
            with socket.create_connection(self._address, timeout=min(_PROBE_INTERVAL_S, self.open_timeout_s)):
                return True
        except OSError:
            return False
