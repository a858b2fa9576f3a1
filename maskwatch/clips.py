"""Alarm clips: a few seconds of annotated video around each alarm, as browser-playable H.264 MP4.

The engine hands every processed frame to a :class:`ClipRecorder` (``maskwatch run``
and the camera workers of ``maskwatch serve`` alike). It keeps a ring buffer of
recent frames, downscaled to ``max_width`` and at most ``fps`` a second, with the
frame's tracks and dynamic zones (small crop masks) and the camera's geometry.

When an alarm is raised, its event gets its clip path at once
(``events.clip``, :func:`analytics.snapshots.clip_path`), so the store, the
dashboard and the alarm's webhook know it; the recorder collects the buffered
frames from ``before_s`` before the event, then the frames up to ``after_s`` after
it, and hands them to a background thread that draws the masks
(:func:`maskwatch.render.draw_frame`) and encodes the MP4: libx264, yuv420p, the
``moov`` atom at the front (faststart), each frame at its own timestamp (from its
``pts``, milliseconds), so a browser can play it while it downloads and durations
are true whatever rate the frames came at. The file appears under its final name
only when it is complete (written as ``.part``, then renamed).

The frame loop never waits for an encoder: a full queue (an alarm storm) drops
the clip with a warning. At the end of the stream (or a change of frame size)
clips still waiting for their after-part are finished with what there is, and
closing the recorder waits for every queued clip to be written.
"""

from __future__ import annotations

import logging
import math
import os
import queue
import threading
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np

from analytics.analyzer import FrameAnalytics
from analytics.config import CameraConfig, ClipConfig
from analytics.snapshots import clip_path
from analytics.zones import Region
from maskwatch.render import draw_frame
from tracker.tracker import TrackObservation

log = logging.getLogger(__name__)

TIME_BASE = Fraction(1, 1000)  # clip timestamps in milliseconds
QUEUE_CLIPS = 16  # clips waiting for the encoder before new ones are dropped
CODEC = "libx264"


@dataclass(frozen=True, slots=True)
class ClipFrame:
    """One kept frame: the image downscaled by ``scale``, and what is drawn on it."""

    pts: float
    image: np.ndarray
    scale: float
    tracks: Sequence[TrackObservation]
    regions: Sequence[Region]
    camera: CameraConfig


@dataclass
class _Pending:
    path: Path
    end_pts: float
    frames: list[ClipFrame] = field(default_factory=list)


def _even(n: float) -> int:
    return max(2, int(n) // 2 * 2)


def encode_clip(path: Path, frames: Sequence[ClipFrame], crf: int = 26) -> None:
    """Draw ``frames`` and write them to ``path`` as H.264 MP4 (faststart), timed by their pts."""
    height, width = frames[0].image.shape[:2]
    part = path.with_name(path.name + ".part")
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with av.open(str(part), "w", format="mp4", options={"movflags": "+faststart"}) as container:
            stream = container.add_stream(CODEC, rate=30)
            stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
            stream.time_base = TIME_BASE
            stream.codec_context.time_base = TIME_BASE
            stream.options = {"crf": str(crf), "preset": "veryfast"}
            start, last = frames[0].pts, -1
            for f in frames:
                pts = round((f.pts - start) / TIME_BASE)
                if pts <= last or f.image.shape[:2] != (height, width):
                    continue  # strictly increasing timestamps, one frame size
                image = draw_frame(f.image, list(f.tracks), f.camera, list(f.regions), scale=f.scale)
                frame = av.VideoFrame.from_ndarray(image, format="bgr24")
                frame.pts, frame.time_base, last = pts, TIME_BASE, pts
                container.mux(stream.encode(frame))
            container.mux(stream.encode(None))
        os.replace(part, path)
    finally:
        part.unlink(missing_ok=True)


class ClipRecorder:
    """Buffers one stream's recent frames and writes a clip for each alarm that asks for one."""

    def __init__(self, root: Path, camera: str, config: ClipConfig) -> None:
        """``root``: the snapshot folder (clips go under ``root/clips``); ``camera``: the stream's camera name."""
        self.root, self.camera, self.config = Path(root), camera, config
        self._interval = 1.0 / config.fps
        self._buffer: deque[ClipFrame] = deque(maxlen=math.ceil((config.before_s + 1.0) * config.fps) + 2)
        self._pending: list[_Pending] = []
        self._due = -math.inf
        self._size: tuple[int, int] | None = None
        self._queue: queue.Queue[tuple[Path, list[ClipFrame]] | None] = queue.Queue(QUEUE_CLIPS)
        self._thread: threading.Thread | None = None
        self.written: list[Path] = []  # clips finished, in order (for tests and summaries)
        self.failed = 0
        self.dropped = 0

    # -- the frame loop's side -----------------------------------------------------------------------------------------

    def on_frame(self, pts: float, image: np.ndarray | None, tracks: Sequence[TrackObservation],
                 regions: Sequence[Region], camera: CameraConfig, analysis: FrameAnalytics | None) -> None:
        """Keep the frame (at most ``fps`` a second), give this frame's alarms their clips, finish clips now complete."""
        if image is None:
            return
        if image.shape[:2] != self._size:  # a new frame size: what was kept cannot go into the same video
            self.finish_all()
            self._buffer.clear()
            self._size = image.shape[:2]
        if pts + 1e-6 >= self._due:
            self._due = self._due + self._interval if pts - self._due <= self._interval else pts + self._interval
            frame = self._keep(pts, image, tracks, regions, camera)
            self._buffer.append(frame)
            for clip in self._pending:
                clip.frames.append(frame)
        if analysis is not None:
            self.claim(analysis)
        done = [c for c in self._pending if pts >= c.end_pts]
        for clip in done:
            self._pending.remove(clip)
            self._submit(clip)

    def claim(self, analysis: FrameAnalytics) -> None:
        """Set ``clip`` on the events whose alarms want one (in place) and start collecting their frames."""
        wanted = {a.event_id for a in analysis.alarms if self.config.wanted(a.rule)}
        if not wanted or self._size is None:  # no frames ever: nothing to show
            return
        for i, event in enumerate(analysis.events):
            if event.id in wanted and event.clip is None:
                relative = clip_path(self.camera, event.ts, event.id)
                analysis.events[i] = replace(event, clip=relative)
                start = event.pts - self.config.before_s
                self._pending.append(_Pending(self.root / relative, event.pts + self.config.after_s,
                                              [f for f in self._buffer if f.pts >= start - 1e-6]))

    def finish_all(self) -> None:
        """Hand every clip still collecting to the encoder with the frames it has (end of stream, new frame size)."""
        pending, self._pending = self._pending, []
        for clip in pending:
            self._submit(clip)

    def close(self, timeout: float | None = None) -> None:
        """Finish every clip and wait until all are written."""
        self.finish_all()
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(timeout)
            self._thread = None

    def _keep(self, pts: float, image: np.ndarray, tracks, regions, camera: CameraConfig) -> ClipFrame:
        height, width = image.shape[:2]
        scale = min(self.config.max_width / width, 1.0)
        size = (_even(width * scale), _even(height * scale))  # yuv420p wants even sides
        small = cv2.resize(image, size, interpolation=cv2.INTER_AREA) if size != (width, height) else image.copy()
        return ClipFrame(pts, small, size[0] / width, tuple(tracks), tuple(regions), camera)

    def _submit(self, clip: _Pending) -> None:
        if not clip.frames:
            log.warning("camera %s: no frames for clip %s", self.camera, clip.path.name)
            return
        if self._thread is None:
            self._thread = threading.Thread(target=self._encode_loop, name=f"clips-{self.camera}", daemon=True)
            self._thread.start()
        try:
            self._queue.put_nowait((clip.path, clip.frames))
        except queue.Full:
            self.dropped += 1
            log.warning("camera %s: clip encoder behind, clip %s dropped", self.camera, clip.path.name)

    # -- the encoder thread --------------------------------------------------------------------------------------------

    def _encode_loop(self) -> None:
        while (job := self._queue.get()) is not None:
            path, frames = job
            try:
                encode_clip(path, frames, self.config.crf)
                self.written.append(path)
            except Exception:
                self.failed += 1
                log.exception("camera %s: clip %s could not be written", self.camera, path)
