"""The one per-frame path: segment → track → analyse → sinks, for files, replays and live cameras alike.

``run``, ``track``, the camera workers of ``serve`` and the benchmarks feed
frames to :class:`Engine`; only where frames come from (a decoder, a replay, a
camera) and which sinks listen differ. Every frame carries its own timestamp
(``pts``, monotonic seconds; ``ts``, wall clock), so durations are the same
whatever rate the frames are processed at.

A stream whose frame size changes ends the current tracks as a run's end does
and starts tracker and analyzer anew together, numbering on from the old
tracker so small ids never collide within the run.

Alarm clips are part of this path too: a :class:`maskwatch.clips.ClipRecorder`
given to the engine sees every frame and every alarm before the sinks do.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import numpy as np

from analytics.analyzer import Analyzer, FrameAnalytics
from analytics.zones import Region
from segmenter.detections import Detections, Segmenter
from tracker.tracker import FrameTracks, MaskTracker, TrackObservation

if TYPE_CHECKING:
    from maskwatch.clips import ClipRecorder  # imports the renderer, which imports this module


class FrameLike(Protocol):
    """What the engine needs of a frame: ``maskwatch.sources.Frame`` and ``maskwatch.live.LiveFrame`` both are."""

    index: int  # position in the source
    pts: float  # seconds, monotonic: the clock of every duration
    ts: float  # wall-clock epoch seconds of the same frame: what records carry
    image: np.ndarray | None  # None when only masks are replayed


class Tracker(Protocol):
    """A tracker the engine can drive (the mask tracker, or a reference tracker in the benchmarks)."""

    next_id: int

    def update(
        self, detections: Detections, pts: float, frame: int | None = None, image: np.ndarray | None = None
    ) -> FrameTracks: ...


@dataclass
class Step:
    """One processed frame as every sink sees it."""

    frame: FrameLike
    detections: Detections
    tracks: FrameTracks
    analysis: FrameAnalytics | None
    regions: Sequence[Region]  # zones as drawn this frame (dynamic ones move)


class Sink:
    """Receives what the engine produces; override what you need."""

    def on_frame(self, step: Step) -> None:
        """Every processed frame, as soon as it is processed (live views, the store)."""

    def on_completed(self, frame: int, observations: list[TrackObservation]) -> None:
        """A frame none of whose observations can still arrive (backfill included), in frame order (files)."""

    def on_final(self, analysis: FrameAnalytics) -> None:
        """Tracks ended by the end of the stream or a change of frame size: exits and final summaries."""

    def close(self, status: str) -> None:
        """The stream is over: ``finished``, ``interrupted`` or ``failed``."""


def mask_tracker(config) -> Callable[[int], Tracker]:
    """The default tracker factory: a :class:`MaskTracker` numbering from the id it is given."""
    return lambda first_id: MaskTracker(config, first_id=first_id)


class Engine:
    """Drives one stream through segmenter, tracker, analyzer and sinks."""

    def __init__(
        self,
        segmenter: Segmenter,
        tracker: Callable[[int], Tracker],
        analyzer: Callable[[], Analyzer] | None,
        sinks: Iterable[Sink],
        *,
        backfill_frames: int = 1,
        clips: ClipRecorder | None = None,
    ) -> None:
        """``tracker`` and ``analyzer`` are factories (called again when the frame size changes); no analyzer: tracks only.

        ``backfill_frames`` is how many processed frames back a newly confirmed track
        reaches (the tracker's ``min_hits``); frames are completed that much later.
        ``clips`` keeps recent frames and records a clip for each alarm that wants one
        (:mod:`maskwatch.clips`); it sets the events' ``clip`` before any sink sees them.
        """
        self.clips = clips
        self.segmenter = segmenter
        self.sinks = list(sinks)
        self._make_tracker, self._make_analyzer = tracker, analyzer
        self.tracker = tracker(1)
        self.analyzer = analyzer() if analyzer is not None else None
        self._retired: list[Analyzer] = []
        self._pending: dict[int, list[TrackObservation]] = {}
        self._recent: deque[int] = deque(maxlen=max(backfill_frames - 1, 0) + 1)
        self._size: tuple[int, int] | None = None
        self.last: FrameLike | None = None
        self.frames = 0

    def process(self, frames: Sequence[FrameLike]) -> None:
        """Segment ``frames`` in one call (a batch), then take each through the rest of the path."""
        for frame, detections in zip(frames, self.segmenter.segment([f.image for f in frames])):
            self.step(frame, detections)

    def step(self, frame: FrameLike, detections: Detections) -> Step:
        """Track, analyse and hand one segmented frame to every sink."""
        size = frame.image.shape[:2] if frame.image is not None else tuple(detections.image_size)
        if self._size is not None and size != self._size:
            self._end_tracks()
            self.tracker = self._make_tracker(self.tracker.next_id)
            if self._make_analyzer is not None:
                self._retired.append(self.analyzer)
                self.analyzer = self._make_analyzer()
        self._size = size
        result = self.tracker.update(detections, frame.pts, frame.index, image=frame.image)
        analysis = None
        if self.analyzer is not None:
            analysis = self.analyzer.update(frame.index, frame.pts, frame.ts, frame.image, result)
        step = Step(frame, detections, result, analysis, self.analyzer.zones.regions if self.analyzer else ())
        if self.clips is not None and self.analyzer is not None:
            self.clips.on_frame(frame.pts, frame.image, result.tracks, step.regions, self.analyzer.camera, analysis)
        for sink in self.sinks:
            sink.on_frame(step)
        for obs in [*result.tracks, *result.backfill]:
            self._pending.setdefault(obs.frame, []).append(obs)
        if len(self._recent) == self._recent.maxlen:
            self._complete(self._recent[0])
        self._recent.append(frame.index)
        self.last = frame
        self.frames += 1
        return step

    def close(self, status: str = "finished") -> None:
        """End every track (zone exits, final summaries), complete every frame, close the sinks."""
        self._end_tracks()
        try:
            for sink in self.sinks:
                sink.close(status)
        finally:
            if self.clips is not None:
                self.clips.close()  # waits until every clip is written

    def _complete(self, up_to: int) -> None:
        for frame in sorted(f for f in self._pending if f <= up_to):
            observations = sorted(self._pending.pop(frame), key=lambda o: o.track_id)
            for sink in self.sinks:
                sink.on_completed(frame, observations)

    def _end_tracks(self) -> None:
        if self.last is None:
            return
        self._complete(self.last.index)
        self._recent.clear()
        if self.analyzer is not None:
            final = self.analyzer.close(self.last.index, self.last.ts, self.last.pts)
            if self.clips is not None:
                self.clips.claim(final)
                self.clips.finish_all()
            for sink in self.sinks:
                sink.on_final(final)

    # -- totals over every analyzer of the stream (one per frame size) --------------------------------

    def _analyzers(self) -> list[Analyzer]:
        return [*self._retired, *([self.analyzer] if self.analyzer is not None else [])]

    def unique(self) -> dict[str, int]:
        """Confirmed tracks per class so far."""
        totals: dict[str, int] = {}
        for analyzer in self._analyzers():
            for name, n in analyzer.unique.items():
                totals[name] = totals.get(name, 0) + n
        return dict(sorted(totals.items()))

    def line_counts(self) -> dict[str, dict[str, dict[str, int]]]:
        """line → class → {"in": n, "out": n} so far."""
        totals: dict[str, dict[str, dict[str, int]]] = {}
        for analyzer in self._analyzers():
            for line, by_class in analyzer.line_counts().items():
                for cls, counts in by_class.items():
                    slot = totals.setdefault(line, {}).setdefault(cls, {"in": 0, "out": 0})
                    for direction, n in counts.items():
                        slot[direction] += n
        return totals

    def alarms(self) -> int:
        return sum(a.alarm_total for a in self._analyzers())
