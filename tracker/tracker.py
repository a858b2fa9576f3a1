"""Mask tracker: Kalman filters for motion, mask IoU and appearance for association.

One ``update`` per frame, read top to bottom (as in SORT):

1. move every track with the camera (when its motion is estimated), predict
   every box, and carry each track's last mask to its predicted box;
2. match high-score detections to confirmed tracks, then to lost ones;
3. match low-score detections to the tracks still unmatched
   (ByteTrack's idea: a partly occluded object scores low but is still there);
4. recover lost tracks from their last observed mask (OC-SORT's idea: after a
   gap the Kalman prediction has drifted, the last observation has not);
5. match the remaining high-score detections to tentative tracks;
6. rescue: match what is left of both by buffered box IoU, for small or
   fast objects whose predicted mask no longer overlaps their new one
   (known tracks first: a tentative one is often a duplicate of a lagging track);
7. start tentative tracks from what is left, age and remove the rest.

Mask IoU decides which pairs may match; among those, the assignment weighs in
appearance (colours under the mask, or the segmenter's embeddings) so that two
crossing objects keep their own ids. A track found again after a gap has its
Kalman state re-run along the gap (OC-SORT's re-update). A mask that touches
another or the image border is partly seen, so its box counts less.

A track is ``tentative`` until ``min_hits`` consecutive matches, then
``confirmed`` with a public id, unless it is a lost track seen again elsewhere
(within reach, same class, same look): then it takes that track's identity back
(re-linking), so an occlusion does not add a count. Unmatched, a confirmed track
becomes ``lost`` and is ``removed`` once ``lost_seconds`` have passed since its
last match. Time is the frames' timestamps (``pts``), so dropped frames neither
stretch nor shrink it.

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

import cv2
import numpy as np

from segmenter.detections import Detections
from segmenter.masks import CropMask, box_overlap_pairs, buffered_box_iou, mask_iou_matrix
from tracker.appearance import appearance_similarity, blend, mask_histograms
from tracker.association import Similarity, assign
from tracker.camera_motion import CameraMotion, apply_to_points, is_identity
from tracker.config import TrackerConfig
from tracker.kalman import KalmanBank


def mask_box_iou(box_weight: float) -> Similarity:
    """The default similarity: mask IoU of the pairs that can reach ``min_iou``, ``box_weight`` of box IoU blended in.

    Mask IoU alone collapses for thin objects: a few pixels of prediction error put
    a walking person's legs beside the predicted ones, while the boxes still overlap well.
    """

    def similarity(masks_a: list[CropMask], masks_b: list[CropMask], min_iou: float) -> np.ndarray:
        # box IoU is at most 1, so the blend reaches min_iou only where mask IoU reaches this floor
        floor = max(min_iou - box_weight, 0.0) / (1 - box_weight) if box_weight < 1 else 0.0
        ious = mask_iou_matrix(masks_a, masks_b, min_iou=floor)
        if not box_weight or not ious.size:
            return ious
        boxes = buffered_box_iou(np.array([m.box() for m in masks_a]), np.array([m.box() for m in masks_b]), 0.0)
        return (1 - box_weight) * ious + box_weight * boxes

    return similarity


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


@dataclass(eq=False)
class _Track:
    mask: CropMask  # the last matched mask
    class_id: int
    class_name: str
    score: float
    start_frame: int
    first_pts: float  # timestamp of the first match
    last_pts: float  # timestamp of the last match
    hits: int = 1
    misses: int = 0  # frames since the last match
    state: TrackState = TrackState.TENTATIVE
    track_id: int = 0
    track_uid: str = ""
    history: list[tuple[int, float, CropMask, float]] = field(default_factory=list)  # (frame, pts, mask, score)
    predicted: CropMask | None = None
    feature: np.ndarray | None = None  # running appearance


class MaskTracker:
    """Online multi-object tracker over :class:`Detections` with compact masks."""

    def __init__(self, config: TrackerConfig | None = None, similarity: Similarity | None = None, first_id: int = 1):
        self.config = config or TrackerConfig()
        self.similarity = similarity  # None: mask IoU, blended with box IoU in frames without appearance
        self._similar = similarity or mask_box_iou(0.0)  # this frame's
        self.next_id = first_id  # the track_id the next confirmed track gets
        self.frame = -1
        self.pts: float | None = None
        self._tracks: list[_Track] = []  # row i of the Kalman bank is track i
        self._kalman = KalmanBank()
        self._camera = None if self.config.camera_motion == "off" else CameraMotion()
        self._moving_until = -math.inf  # auto: estimate camera motion until this pts (a probe, or while it moves)
        self._next_probe = -math.inf

    def update(
        self, detections: Detections, pts: float, frame: int | None = None, image: np.ndarray | None = None
    ) -> FrameTracks:
        """Consume one frame's detections; returns the tracks matched in it.

        ``pts`` is the frame's timestamp in seconds, strictly increasing; ``frame``
        the caller's frame index (default: the previous one + 1, from 0), which
        observations carry so that skipped frames keep their numbers. ``image``
        (BGR), when given, feeds camera-motion compensation and appearance.
        """
        cfg = self.config
        frame = self.frame + 1 if frame is None else frame
        if not math.isfinite(pts) or (self.pts is not None and not pts > self.pts):
            raise ValueError(f"pts must be finite and strictly increasing: got {pts} after {self.pts}")
        if frame <= self.frame:
            raise ValueError(f"frame must increase: got {frame} after {self.frame}")
        dt = 0.0 if self.pts is None else pts - self.pts
        self.frame, self.pts = frame, pts
        if self._camera is not None and image is not None:
            self._follow_camera(image, detections)
        self._kalman.predict(dt)
        for track, predicted in zip(self._tracks, _carried([t.mask for t in self._tracks], self._kalman.boxes())):
            track.predicted = predicted
        features = self._features(detections, image)
        # appearance tells apart the crossing objects whose boxes overlap; without it, box overlap is the steadier cue
        self._similar = self.similarity or mask_box_iou(0.0 if features is not None else cfg.box_weight)

        high = np.flatnonzero(detections.scores >= cfg.high_score)
        low = np.flatnonzero((detections.scores >= cfg.low_score) & (detections.scores < cfg.high_score))
        confirmed = [t for t in self._tracks if t.state is TrackState.CONFIRMED]
        lost = [t for t in self._tracks if t.state is TrackState.LOST]
        tentative = [t for t in self._tracks if t.state is TrackState.TENTATIVE]

        # tracks seen last frame choose first, so a lost track cannot take a detection from them
        match = self._match
        matched, alive, rest_high = match(confirmed, detections, features, high, cfg.match_iou)
        matched_lost, rest_lost, rest_high = match(lost, detections, features, rest_high, cfg.match_iou)
        matched_low, rest_tracks, _ = match(alive + rest_lost, detections, features, low, cfg.low_match_iou)
        gone = [t for t in rest_tracks if t.misses > 0]
        recovered, _, rest_high = match(gone, detections, features, rest_high, cfg.match_iou, self._last_seen)
        recovered_tracks = {id(t) for t, _ in recovered}
        rest_tracks = [t for t in rest_tracks if id(t) not in recovered_tracks]
        matched_tent, rest_tent, rest_high = match(tentative, detections, features, rest_high, cfg.tentative_match_iou)
        rescued, _, rest_high = match(rest_tracks, detections, features, rest_high, cfg.rescue_iou, self._rescue_similarity)
        rescued_tent, _, rest_high = match(rest_tent, detections, features, rest_high, cfg.rescue_iou, self._rescue_similarity)

        result = FrameTracks(self.frame, self.pts, [])
        pairs = matched + matched_lost + matched_low + recovered + matched_tent + rescued + rescued_tent
        self._correct(pairs, detections, features)
        for track, det in sorted(pairs, key=lambda p: p[0].state is TrackState.TENTATIVE):  # known tracks first:
            self._observe_match(track, detections, det, result)  # a lost one seen again is no longer re-linkable
        for det in rest_high:
            if detections.scores[det] >= cfg.new_track_score:
                self._start(detections, features, det, result)
        self._age(result, detections.image_size)
        return result

    def _follow_camera(self, image: np.ndarray, detections: Detections) -> None:
        """Move every track with the camera; in ``auto`` mode only while it moves, probing a second every ten.

        A fixed camera then costs a tenth of the estimate, and a camera that starts
        to pan is noticed within ten seconds and followed until it has been still
        for a few seconds.
        """
        if self.config.camera_motion == "auto" and self.pts >= self._moving_until:
            if self.pts < self._next_probe:
                self._camera.reset()  # the next estimate must not compare with a frame long gone
                return
            self._moving_until, self._next_probe = self.pts + _PROBE_SECONDS, self.pts + _PROBE_EVERY
        affine = self._camera.update(image, detections.masks)
        if is_identity(affine):
            return
        self._kalman.warp(affine)
        height, width = image.shape[:2]
        corners = np.array([[0, 0], [width, 0], [0, height], [width, height]], dtype=np.float64)
        if np.abs(apply_to_points(affine, corners) - corners).max() > _MOVING_PX:
            self._moving_until = self.pts + _FOLLOW_SECONDS  # still moving: keep following

    def _features(self, detections: Detections, image: np.ndarray | None) -> np.ndarray | None:
        """Appearance vectors of this frame's detections: the segmenter's embeddings, else colours under the masks."""
        if detections.embeddings is not None:
            return detections.embeddings
        if image is None or not len(detections) or not (self.config.appearance_weight or self.config.relink_appearance):
            return None
        return mask_histograms(image, detections.masks)

    def _match(
        self,
        tracks: list[_Track],
        detections: Detections,
        features: np.ndarray | None,
        det_idx: np.ndarray,
        min_similarity: float,
        similarity=None,
    ) -> tuple[list[tuple[_Track, int]], list[_Track], np.ndarray]:
        """Assign ``tracks`` to detections ``det_idx``; returns matches and leftovers of both.

        Pairs below ``min_similarity`` (mask IoU by default) never match; among the
        others, appearance takes ``appearance_weight`` of the score.
        """
        det_masks = [detections.masks[i] for i in det_idx.tolist()]
        if not tracks or not det_masks:
            return [], list(tracks), det_idx
        if similarity is not None:
            sim = similarity(tracks, det_masks, min_similarity)
        else:
            sim = self._similar([t.predicted for t in tracks], det_masks, min_similarity)
        if self.config.class_consistent:
            track_classes = np.array([t.class_id for t in tracks])
            sim[track_classes[:, None] != detections.class_ids[det_idx][None, :]] = 0.0
        weight = self.config.appearance_weight
        known = [i for i, t in enumerate(tracks) if t.feature is not None]
        if features is not None and weight and known:
            look = sim.copy()
            look[known] = appearance_similarity(np.stack([tracks[i].feature for i in known]), features[det_idx])
            sim = np.where(sim >= min_similarity, (1 - weight) * sim + weight * look, 0.0)
            min_similarity = 1e-9
        pairs, free_rows, free_cols = assign(sim, min_similarity)
        matches = [(tracks[r], c) for r, c in zip(pairs[:, 0].tolist(), det_idx[pairs[:, 1]].tolist())]
        return matches, [tracks[r] for r in free_rows.tolist()], det_idx[free_cols]

    def _last_seen(self, tracks: list[_Track], det_masks: list[CropMask], min_iou: float) -> np.ndarray:
        """Similarity with each track's last observed mask, where it was last seen (moved with the camera since)."""
        last = _carried([t.mask for t in tracks], self._kalman.saved_boxes()[self._rows(tracks)])
        return self._similar(last, det_masks, min_iou)

    def _rescue_similarity(self, tracks: list[_Track], det_masks: list[CropMask], _: float) -> np.ndarray:
        """Rescue similarity: buffered box IoU (C-BIoU) of predicted and detected boxes.

        For objects that moved further than their own size (small, fast, or after a
        gap), where the predicted mask no longer overlaps the new one.
        """
        return buffered_box_iou(
            np.array([t.predicted.box() for t in tracks]), np.array([m.box() for m in det_masks]), self.config.rescue_buffer
        )

    def _correct(self, pairs: list[tuple[_Track, int]], detections: Detections, features: np.ndarray | None) -> None:
        """Kalman update of every matched track in one call; tracks back from a gap re-run it along the gap."""
        if not pairs:
            return
        noise = self._partial_noise(detections)
        rows = self._rows([t for t, _ in pairs])
        dets = np.array([d for _, d in pairs])
        gap = np.array([t.misses for t, _ in pairs]) > 0
        self._kalman.update(rows[~gap], detections.boxes[dets[~gap]], noise[dets[~gap]])
        saved = self._kalman.saved_boxes()
        for (track, det), row in zip([p for p, g in zip(pairs, gap) if g], rows[gap]):
            steps = track.misses + 1
            fractions = np.arange(1, steps + 1)[:, None] / steps
            virtual = saved[row] + fractions * (detections.boxes[det] - saved[row])
            self._kalman.reupdate(row, virtual, np.full(steps, (self.pts - track.last_pts) / steps), noise[det])
        if features is not None:
            for track, det in pairs:
                track.feature = blend(track.feature, features[det], self.config.appearance_momentum)

    def _partial_noise(self, detections: Detections) -> np.ndarray:
        """Measurement variance factor per detection: ``partial_noise`` for a mask touching another or the border."""
        height, width = detections.image_size
        boxes = detections.boxes
        partial = (boxes[:, 0] <= 0) | (boxes[:, 1] <= 0) | (boxes[:, 2] >= width) | (boxes[:, 3] >= height)
        grown = boxes + np.array([-1, -1, 1, 1], dtype=np.float32)
        first, second = box_overlap_pairs(grown, boxes)
        masks, seen = detections.masks, partial.tolist()
        for i, j in zip(first.tolist(), second.tolist()):
            if i < j and not (seen[i] and seen[j]) and _touch(masks[i], masks[j]):
                seen[i] = seen[j] = True
        return np.where(seen, self.config.partial_noise, 1.0)

    def _observe_match(self, track: _Track, detections: Detections, det: int, result: FrameTracks) -> None:
        mask = detections.masks[det]
        track.mask, track.score, track.last_pts, track.misses = mask, float(detections.scores[det]), self.pts, 0
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

    def _start(self, detections: Detections, features: np.ndarray | None, det: int, result: FrameTracks) -> None:
        mask = detections.masks[det]
        track = _Track(
            mask=mask,
            class_id=int(detections.class_ids[det]),
            class_name=str(detections.class_names[det]),
            score=float(detections.scores[det]),
            start_frame=self.frame,
            first_pts=self.pts,
            last_pts=self.pts,
            feature=None if features is None else features[det].copy(),
        )
        self._kalman.add(mask.box()[None])
        self._tracks.append(track)
        if self.config.min_hits <= 1:
            self._confirm(track)
            result.tracks.append(self._observe(track, self.frame, self.pts, mask, track.score))
        else:
            track.history.append((self.frame, self.pts, mask, track.score))

    def _confirm(self, track: _Track) -> None:
        """Give a track its public identity: a lost track's it continues (re-linking), else a new one."""
        track.state = TrackState.CONFIRMED
        old = self._relink(track)
        if old is None:
            track.track_id, track.track_uid = self.next_id, uuid.uuid4().hex
            self.next_id += 1
            return
        track.track_id, track.track_uid, track.start_frame = old.track_id, old.track_uid, old.start_frame
        track.hits += old.hits
        if old.feature is not None and track.feature is not None:
            track.feature = blend(old.feature, track.feature, 0.5)
        old.state = TrackState.REMOVED  # continued by ``track``: dropped in ``_age`` without a removal

    def _relink(self, track: _Track) -> _Track | None:
        """The lost track this new one continues, if any: same class, last seen before it began, within reach, same look.

        Reach is ``relink_speed`` of the lost object's heights per second since it
        was last seen (plus half a height); with appearance known on both sides it
        must be at least ``relink_appearance`` alike. The closest look, else the
        nearest, wins.
        """
        cfg = self.config
        if not track.history or cfg.relink_speed <= 0:
            return None
        first = track.history[0][2].box()
        first_centre, first_h = (first[:2] + first[2:]) / 2, max(float(first[3] - first[1]), 1.0)
        saved = self._kalman.saved_boxes()
        best, best_score = None, -np.inf
        for row, old in enumerate(self._tracks):
            if old.state is not TrackState.LOST or old.last_pts >= track.first_pts or old.last_pts == self.pts:
                continue
            if cfg.class_consistent and old.class_id != track.class_id:
                continue
            box = saved[row]
            height = max(float(box[3] - box[1]), 1.0)
            if not 2 / 3 <= first_h / height <= 3 / 2:
                continue
            distance = float(np.hypot(*(first_centre - (box[:2] + box[2:]) / 2))) / height
            if distance > 0.5 + cfg.relink_speed * (track.first_pts - old.last_pts):
                continue
            score = -distance
            if old.feature is not None and track.feature is not None:
                look = float(appearance_similarity(old.feature[None], track.feature[None])[0, 0])
                if look < cfg.relink_appearance:
                    continue
                score = look - 0.01 * distance
            if score > best_score:
                best, best_score = old, score
        return best

    def _age(self, result: FrameTracks, image_size: tuple[int, int]) -> None:
        """Unmatched tentative tracks die at once; confirmed ones go lost, then removed.

        A lost track predicted to have left the image is removed at once: kept, it
        would wait at the border and take the next object that enters there.
        """
        keep = []
        for row, track in enumerate(self._tracks):
            if track.state is TrackState.REMOVED:  # continued by a re-linked track
                continue
            if track.last_pts == self.pts:
                keep.append(row)
                continue
            track.misses += 1
            if track.state is TrackState.TENTATIVE:
                track.state = TrackState.REMOVED
            elif self.pts - track.last_pts > self.config.lost_seconds or _left_image(track.predicted, image_size):
                track.state = TrackState.REMOVED
                result.removed_ids.append(track.track_id)
            else:
                track.state = TrackState.LOST
                keep.append(row)
        if len(keep) < len(self._tracks):
            self._tracks = [self._tracks[row] for row in keep]
            self._kalman.keep(np.array(keep, dtype=np.intp))

    def _rows(self, tracks: list[_Track]) -> np.ndarray:
        index = {id(t): row for row, t in enumerate(self._tracks)}
        return np.array([index[id(t)] for t in tracks], dtype=np.intp)

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

    @property
    def active(self) -> list[_Track]:
        return list(self._tracks)


_NEIGHBOURS = np.ones((3, 3), np.uint8)
_PROBE_SECONDS, _PROBE_EVERY = 1.0, 10.0  # camera_motion auto: estimate this long, this often, while the camera is still
_FOLLOW_SECONDS = 3.0  # and keep estimating this long after the camera last moved
_MOVING_PX = 0.5  # a frame's corner moving more than this means the camera moves


def _carried(masks: list[CropMask], boxes: np.ndarray) -> list[CropMask]:
    """Each mask carried onto its box (xyxy): moved, and resized only when the size changed by more than 3%.

    A resize is the costliest step of a prediction and a pixel or two of size
    changes no IoU that matters, so most frames only move the mask. The
    arithmetic runs on all tracks at once (rounding half to even, as ``round``).
    """
    shapes = np.array([m.crop.shape for m in masks], dtype=np.float64).reshape(-1, 2)
    height, width = shapes[:, 0], shapes[:, 1]
    x0, y0, x1, y1 = np.asarray(boxes, dtype=np.float64).reshape(-1, 4).T
    same = (np.abs(x1 - x0 - width) <= np.maximum(1.0, 0.03 * width)) & (
        np.abs(y1 - y0 - height) <= np.maximum(1.0, 0.03 * height)
    )
    left = np.where(same, (x0 + x1 - width) / 2, x0)
    top = np.where(same, (y0 + y1 - height) / 2, y0)
    places = np.rint(np.stack([left, top, x1 - x0, y1 - y0], axis=1)).astype(np.int64).tolist()
    return [
        mask.placed(x, y) if kept else mask.moved(x, y, w, h)
        for mask, kept, (x, y, w, h) in zip(masks, same.tolist(), places)
    ]


def _touch(a: CropMask, b: CropMask) -> bool:
    """Whether two masks overlap or are 8-neighbours somewhere: ``a``, grown by a pixel, meets ``b``.

    Overlapping masks are found by one AND over their common window; otherwise only
    the strip where ``a``'s grown window meets ``b``'s is dilated, so touching masks
    cost a few hundred pixels, not their whole crops (OpenCV calls: a hot path).
    """
    if not a.area or not b.area:
        return False
    crop_a, crop_b = a.crop.view(np.uint8), b.crop.view(np.uint8)
    (ah, aw), (bh, bw) = crop_a.shape, crop_b.shape
    ax0, ay0, bx0, by0 = a.x0, a.y0, b.x0, b.y0
    ax1, ay1, bx1, by1 = ax0 + aw, ay0 + ah, bx0 + bw, by0 + bh
    x0, y0, x1, y1 = max(ax0, bx0), max(ay0, by0), min(ax1, bx1), min(ay1, by1)
    if x1 > x0 and y1 > y0:
        mine = crop_a[y0 - ay0 : y1 - ay0, x0 - ax0 : x1 - ax0]
        if cv2.countNonZero(cv2.bitwise_and(mine, crop_b[y0 - by0 : y1 - by0, x0 - bx0 : x1 - bx0])):
            return True
    x0, y0, x1, y1 = max(ax0 - 1, bx0), max(ay0 - 1, by0), min(ax1 + 1, bx1), min(ay1 + 1, by1)
    if x1 <= x0 or y1 <= y0:
        return False
    near_b = crop_b[y0 - by0 : y1 - by0, x0 - bx0 : x1 - bx0]
    if not cv2.countNonZero(near_b):
        return False
    # a's pixels in the strip and one pixel around it (the strip is within a's window grown by one), zeros elsewhere
    sx0, sy0, sx1, sy1 = max(x0 - 1, ax0), max(y0 - 1, ay0), min(x1 + 1, ax1), min(y1 + 1, ay1)
    pads = (sy0 - y0 + 1, y1 + 1 - sy1, sx0 - x0 + 1, x1 + 1 - sx1)
    near_a = cv2.copyMakeBorder(
        crop_a[sy0 - ay0 : sy1 - ay0, sx0 - ax0 : sx1 - ax0], *pads, cv2.BORDER_CONSTANT, value=0
    )
    return cv2.countNonZero(cv2.bitwise_and(cv2.dilate(near_a, _NEIGHBOURS)[1:-1, 1:-1], near_b)) > 0


def _left_image(mask: CropMask, image_size: tuple[int, int]) -> bool:
    """Less than half of the predicted mask's window is inside the image."""
    height, width = image_size
    x0, y0, x1, y1 = mask.window
    inside = max(min(x1, width) - max(x0, 0), 0) * max(min(y1, height) - max(y0, 0), 0)
    return inside < 0.5 * max((x1 - x0) * (y1 - y0), 1)
