"""Mask tracker: a Kalman filter per track for motion, mask IoU for association.

One ``update`` per frame, read top to bottom (as in SORT):

1. predict every track's box and carry its last mask to the predicted box;
2. match high-score detections to confirmed tracks, then to lost ones;
3. match low-score detections to the tracks still unmatched
   (ByteTrack's idea: a partly occluded object scores low but is still there);
4. match the remaining high-score detections to tentative tracks;
5. rescue: match what is left of both by buffered box IoU, for small or
   fast objects whose predicted mask no longer overlaps their new one;
6. start tentative tracks from what is left, age and remove the rest.

A track is ``tentative`` until ``min_hits`` consecutive matches, then
``confirmed`` with a public id; unmatched it becomes ``lost`` and is
``removed`` once ``lost_seconds`` have passed since its last match. Time is the
frames' timestamps (``pts``), so dropped frames neither stretch nor shrink it.

A confirmed track gets two ids: ``track_id``, small and readable, counted from
``first_id`` (a restarted tracker passes on its ``next_id``), and ``track_uid``,
a random UUID that never repeats across runs, cameras or restarts, for storage.
Public ids are given at confirmation, so flickers never consume ids; the
matches a track had while tentative are returned once, as ``backfill``, for
offline writers that want whole tracks.
"""

from __future__ import annotations

import enum
import math
import uuid
from dataclasses import dataclass, field

import numpy as np

from segmenter.detections import Detections
from segmenter.masks import CropMask, buffered_box_iou, mask_iou_matrix
from tracker.association import Similarity, assign
from tracker.config import TrackerConfig
from tracker.kalman import BoxKalman


class TrackState(str, enum.Enum):
    TENTATIVE = "tentative"
    CONFIRMED = "confirmed"
    LOST = "lost"
    REMOVED = "removed"


@dataclass(frozen=True, slots=True)
class TrackObservation:
    """One track seen in one frame: what downstream stages consume."""

    frame: int  # the caller's frame index
    pts: float  # timestamp of that frame, seconds
    track_id: int  # small, counted from the tracker's first_id
    track_uid: str  # globally unique (uuid4 hex)
    class_id: int
    class_name: str
    mask: CropMask
    box: np.ndarray  # xyxy float32, the measured (mask) box
    score: float
    age: int  # frames since the track started
    hits: int  # matched frames so far
    state: TrackState


@dataclass
class FrameTracks:
    """Result of one ``update``: the tracks matched in this frame."""

    frame: int
    pts: float
    tracks: list[TrackObservation]
    backfill: list[TrackObservation] = field(default_factory=list)  # earlier frames of newly confirmed tracks
    removed_ids: list[int] = field(default_factory=list)


@dataclass
class _Track:
    kalman: BoxKalman
    mask: CropMask
    class_id: int
    class_name: str
    score: float
    start_frame: int
    last_pts: float  # timestamp of the last match
    hits: int = 1
    state: TrackState = TrackState.TENTATIVE
    track_id: int = 0
    track_uid: str = ""
    history: list[tuple[int, float, CropMask, float]] = field(default_factory=list)  # (frame, pts, mask, score)
    predicted: CropMask | None = None


class MaskTracker:
    """Online multi-object tracker over :class:`Detections` with compact masks."""

    def __init__(self, config: TrackerConfig | None = None, similarity: Similarity = mask_iou_matrix, first_id: int = 1):
        self.config = config or TrackerConfig()
        self.similarity = similarity
        self.next_id = first_id  # the track_id the next confirmed track gets
        self.frame = -1
        self.pts: float | None = None
        self._tracks: list[_Track] = []

    def update(self, detections: Detections, pts: float, frame: int | None = None) -> FrameTracks:
        """Consume one frame's detections; returns the tracks matched in it.

        ``pts`` is the frame's timestamp in seconds, strictly increasing; ``frame``
        the caller's frame index (default: the previous one + 1, from 0), which
        observations carry so that skipped frames keep their numbers.
        """
        cfg = self.config
        frame = self.frame + 1 if frame is None else frame
        if not math.isfinite(pts) or (self.pts is not None and not pts > self.pts):
            raise ValueError(f"pts must be finite and strictly increasing: got {pts} after {self.pts}")
        if frame <= self.frame:
            raise ValueError(f"frame must increase: got {frame} after {self.frame}")
        dt = 0.0 if self.pts is None else pts - self.pts
        self.frame, self.pts = frame, pts
        for track in self._tracks:
            track.predicted = _predict_mask(track, dt)

        high = np.flatnonzero(detections.scores >= cfg.high_score)
        low = np.flatnonzero((detections.scores >= cfg.low_score) & (detections.scores < cfg.high_score))

        confirmed = [t for t in self._tracks if t.state is TrackState.CONFIRMED]
        lost = [t for t in self._tracks if t.state is TrackState.LOST]
        tentative = [t for t in self._tracks if t.state is TrackState.TENTATIVE]

        # tracks seen last frame choose first, so a lost track cannot take a detection from them
        matched, alive, rest_high = self._match(confirmed, detections, high, cfg.match_iou)
        matched_lost, rest_lost, rest_high = self._match(lost, detections, rest_high, cfg.match_iou)
        matched_low, rest_tracks, _ = self._match(alive + rest_lost, detections, low, cfg.low_match_iou)
        matched_tent, rest_tent, rest_high = self._match(tentative, detections, rest_high, cfg.tentative_match_iou)
        matched_rescue, _, rest_high = self._match(rest_tracks + rest_tent, detections, rest_high, cfg.rescue_iou, rescue=True)

        result = FrameTracks(self.frame, self.pts, [])
        for track, det in matched + matched_lost + matched_low + matched_tent + matched_rescue:
            self._apply_match(track, detections, det, result)
        for det in rest_high:
            if detections.scores[det] >= cfg.new_track_score:
                self._start(detections, det, result)
        self._age(result, detections.image_size)
        return result

    def _match(
        self, tracks: list[_Track], detections: Detections, det_idx: np.ndarray, min_similarity: float, rescue: bool = False
    ) -> tuple[list[tuple[_Track, int]], list[_Track], np.ndarray]:
        """Assign ``tracks`` to detections ``det_idx``; returns matches and leftovers of both."""
        det_masks = [detections.masks[i] for i in det_idx]
        if rescue:
            sim = self._rescue_similarity(tracks, det_masks)
        else:
            sim = self.similarity([t.predicted for t in tracks], det_masks)
        if self.config.class_consistent and sim.size:
            track_classes = np.array([t.class_id for t in tracks])
            sim[track_classes[:, None] != detections.class_ids[det_idx][None, :]] = 0.0
        pairs, free_rows, free_cols = assign(sim, min_similarity)
        matches = [(tracks[r], int(det_idx[c])) for r, c in pairs]
        return matches, [tracks[r] for r in free_rows], det_idx[free_cols]

    def _apply_match(self, track: _Track, detections: Detections, det: int, result: FrameTracks) -> None:
        mask = detections.masks[det]
        track.kalman.update(mask.box())
        track.mask, track.score, track.last_pts = mask, float(detections.scores[det]), self.pts
        track.hits += 1
        if track.state is TrackState.TENTATIVE:
            track.history.append((self.frame, self.pts, mask, track.score))
            if track.hits >= self.config.min_hits:
                self._confirm(track)
                result.backfill.extend(self._observe(track, f, t, m, s) for f, t, m, s in track.history[:-1])
                track.history.clear()
        else:
            track.state = TrackState.CONFIRMED
        if track.state is TrackState.CONFIRMED:
            result.tracks.append(self._observe(track, self.frame, self.pts, mask, track.score))

    def _start(self, detections: Detections, det: int, result: FrameTracks) -> None:
        mask = detections.masks[det]
        track = _Track(
            kalman=BoxKalman(mask.box()),
            mask=mask,
            class_id=int(detections.class_ids[det]),
            class_name=str(detections.class_names[det]),
            score=float(detections.scores[det]),
            start_frame=self.frame,
            last_pts=self.pts,
        )
        if self.config.min_hits <= 1:
            self._confirm(track)
            result.tracks.append(self._observe(track, self.frame, self.pts, mask, track.score))
        else:
            track.history.append((self.frame, self.pts, mask, track.score))
        self._tracks.append(track)

    def _confirm(self, track: _Track) -> None:
        track.state, track.track_id, track.track_uid = TrackState.CONFIRMED, self.next_id, uuid.uuid4().hex
        self.next_id += 1

    def _age(self, result: FrameTracks, image_size: tuple[int, int]) -> None:
        """Unmatched tentative tracks die at once; confirmed ones go lost, then removed.

        A lost track predicted to have left the image is removed at once: kept, it
        would wait at the border and take the next object that enters there.
        """
        survivors = []
        for track in self._tracks:
            if track.last_pts == self.pts:
                survivors.append(track)
            elif track.state is TrackState.TENTATIVE:
                track.state = TrackState.REMOVED
            elif self.pts - track.last_pts > self.config.lost_seconds or _left_image(track.predicted, image_size):
                track.state = TrackState.REMOVED
                result.removed_ids.append(track.track_id)
            else:
                track.state = TrackState.LOST
                survivors.append(track)
        self._tracks = survivors

    def _observe(self, track: _Track, frame: int, pts: float, mask: CropMask, score: float) -> TrackObservation:
        return TrackObservation(
            frame=frame,
            pts=pts,
            track_id=track.track_id,
            track_uid=track.track_uid,
            class_id=track.class_id,
            class_name=track.class_name,
            mask=mask,
            box=mask.box(),
            score=score,
            age=frame - track.start_frame + 1,
            hits=track.hits,
            state=track.state,
        )

    def _rescue_similarity(self, tracks: list[_Track], det_masks: list[CropMask]) -> np.ndarray:
        """Rescue similarity: buffered box IoU (C-BIoU) of predicted and detected boxes.

        For objects that moved further than their own size (small, fast, or after a
        gap), where the predicted mask no longer overlaps the new one.
        """
        return buffered_box_iou(
            np.array([t.predicted.box() for t in tracks]), np.array([m.box() for m in det_masks]), self.config.rescue_buffer
        )

    @property
    def active(self) -> list[_Track]:
        return list(self._tracks)


def _predict_mask(track: _Track, dt: float) -> CropMask:
    """Advance the track's Kalman filter by ``dt`` seconds and carry its last mask onto the predicted box."""
    x0, y0, x1, y1 = track.kalman.predict(dt)
    return track.mask.moved(round(x0), round(y0), round(x1 - x0), round(y1 - y0))


def _left_image(mask: CropMask, image_size: tuple[int, int]) -> bool:
    """Less than half of the predicted mask's window is inside the image."""
    height, width = image_size
    x0, y0, x1, y1 = mask.window
    inside = max(min(x1, width) - max(x0, 0), 0) * max(min(y1, height) - max(y0, 0), 0)
    return inside < 0.5 * max((x1 - x0) * (y1 - y0), 1)
