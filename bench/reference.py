"""Reference trackers and inputs shared by the quality tests and benchmarks.

The box trackers of Roboflow's ``trackers`` (SORT, ByteTrack, OC-SORT) track
boxes; their output is turned into MOTS by giving each tracked box its
detection's mask, so every tracker is scored on exactly the same masks and
differs only in association. ``perfect_mots`` is the association ceiling: the
same detections, each with the identity of the ground-truth object it covers.
"""

from __future__ import annotations

import uuid
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.optimize import linear_sum_assignment

from segmenter.detections import Detections
from segmenter.masks import mask_iou_matrix
from segmenter.motsio import format_detection_line, format_mots_line, read_mots, read_mots_detections
from segmenter.noise import NoiseModel
from tracker.mots_output import resolve_overlaps
from tracker.tracker import FrameTracks, TrackObservation, TrackState

BOX_TRACKERS = ("sort", "bytetrack", "ocsort")
PERFECT_IOU = 0.5  # a detection takes a ground-truth identity only when it covers that object this well


@dataclass
class GtSequence:
    """Ground-truth masks per frame as Detections (score 1, ignore regions dropped) with their object ids."""

    frames: list[Detections]
    ids: list[np.ndarray]
    first: int  # number of the first frame (0 for KITTI MOTS, 1 for MOTS20)


def gt_sequence(gt_path: Path, classes: tuple[int, ...] = (1, 2)) -> GtSequence:
    """Every frame from the first to the last of the ground truth, empty ones included."""
    every = read_mots(gt_path)
    records = [r for r in every if r.class_id in classes]
    first = 0 if any(r.frame == 0 for r in every) else 1
    last = max(r.frame for r in every)
    size = (every[0].height, every[0].width)
    by_frame: dict[int, list] = {}
    for r in records:
        by_frame.setdefault(r.frame, []).append(r)
    frames, ids = [], []
    for f in range(first, last + 1):
        rows = by_frame.get(f, [])
        frames.append(Detections.from_masks([r.mask() for r in rows], [r.class_id for r in rows], [1.0] * len(rows),
                                            [str(r.class_id) for r in rows], size))
        ids.append(np.array([r.obj_id for r in rows], dtype=np.int64))
    return GtSequence(frames, ids, first)


def gt_frames(gt_path: Path, classes: tuple[int, ...] = (1, 2)) -> tuple[list[Detections], int]:
    """Ground-truth masks per frame as Detections (score 1), ignore regions dropped; and the first frame number."""
    gt = gt_sequence(gt_path, classes)
    return gt.frames, gt.first


def gt_as_detections(gt_path: Path, out: Path, score: float = 1.0, classes: tuple[int, ...] = (1, 2)) -> None:
    """The ground truth itself as a detection file (masks byte-identical, one score), ignore regions dropped."""
    with out.open("w") as handle:
        for r in read_mots(gt_path):
            if r.class_id in classes:
                handle.write(f"{r.frame} {r.class_id} {score} {r.height} {r.width} {r.rle}\n")


def write_detections(frames: list[Detections], first: int, path: Path) -> None:
    """MOTS detection txt (``frame class_id score img_h img_w rle``), the input of ``maskwatch track``."""
    with path.open("w") as handle:
        for index, det in enumerate(frames):
            h, w = det.image_size
            for mask, cls, score in zip(det.masks, det.class_ids, det.scores):
                handle.write(format_detection_line(first + index, int(cls), float(score), mask.to_rle(h, w)) + "\n")


def noisy_detections(gt_path: Path, out: Path, noise: NoiseModel) -> int:
    """Write ``noise`` applied to the ground truth as a detection file; returns the first frame number."""
    gt = gt_sequence(gt_path)
    write_detections(noise.apply(gt.frames, gt.ids), gt.first, out)
    return gt.first


def box_tracker_class(kind: str) -> type:
    """The ``trackers`` class of a box tracker named in :data:`BOX_TRACKERS`."""
    import trackers

    classes = {"sort": trackers.SORTTracker, "bytetrack": trackers.ByteTrackTracker, "ocsort": trackers.OCSORTTracker}
    if kind not in classes:
        raise ValueError(f"unknown box tracker {kind!r}: expected one of {', '.join(BOX_TRACKERS)}")
    return classes[kind]


class BoxTracks:
    """A box tracker of ``trackers`` behind the engine's tracker interface: each tracked box keeps its detection's mask."""

    def __init__(self, tracker_class: type, fps: float, first_id: int = 1) -> None:
        self._tracker = tracker_class(frame_rate=fps)
        self._uids: dict[int, str] = {}
        self.next_id = first_id

    def update(self, det: Detections, pts: float, frame: int | None = None, image: np.ndarray | None = None) -> FrameTracks:
        """``image`` is accepted and ignored: these trackers use no camera-motion compensation."""
        import supervision as sv

        boxes = sv.Detections(xyxy=det.boxes.reshape(-1, 4), confidence=det.scores, class_id=det.class_ids,
                              data={"index": np.arange(len(det))})
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            tracked = self._tracker.update(boxes)
        observations = []
        if len(tracked):
            keep = tracked.tracker_id >= 0
            for track_id, i in zip(tracked.tracker_id[keep], tracked.data["index"][keep]):
                uid = self._uids.setdefault(int(track_id), uuid.uuid4().hex)
                self.next_id = max(self.next_id, int(track_id) + 1)
                observations.append(TrackObservation(
                    frame=frame, pts=pts, track_id=int(track_id), track_uid=uid, class_id=int(det.class_ids[i]),
                    class_name=str(det.class_names[i]), mask=det.masks[i], box=det.boxes[i], score=float(det.scores[i]),
                    age=1, hits=1, state=TrackState.CONFIRMED))
        return FrameTracks(frame, pts, observations)


def engine_mots(det_path: Path, out: Path, tracker: Callable[[int], object], fps: float, first_frame: int,
                frames: int, images: Path | None = None, backfill_frames: int = 1) -> None:
    """Track a MOTS detection file through the engine (with the video's frames when ``images`` is a folder) into MOTS results.

    ``first_frame`` and ``frames`` come from the ground truth, so the results are numbered as it is even
    when the detections of the first or last frames are all missed.
    """
    from maskwatch.engine import Engine
    from maskwatch.outputs import MotsFile
    from segmenter.replay import ReplayConfig, ReplaySegmenter

    replay = ReplaySegmenter(ReplayConfig(path=str(det_path), first_frame=first_frame))
    engine = Engine(replay, tracker, None, [MotsFile(out, first_frame)], backfill_frames=backfill_frames)
    for frame in _frames(frames, fps, images):
        engine.process([frame])
    engine.close()


def _frames(count: int, fps: float, images: Path | None) -> Iterator:
    from maskwatch.sources import FrameSource, replay_frames

    if images is None:
        yield from replay_frames(count, fps, 0.0)
        return
    for frame, _ in zip(FrameSource(images, fps).frames(), range(count)):
        yield frame


def box_mots(kind: str, det_path: Path, out: Path, fps: float, first_frame: int, frames: int,
             images: Path | None = None) -> None:
    """Track a MOTS detection file with the box tracker ``kind`` (see :data:`BOX_TRACKERS`) through the engine."""
    cls = box_tracker_class(kind)
    engine_mots(det_path, out, lambda first_id: BoxTracks(cls, fps, first_id), fps, first_frame, frames, images)


def bytetrack_mots(det_path: Path, out: Path, fps: float) -> None:
    """Track a MOTS detection file with ByteTrack (boxes) through the engine and write MOTS results with the detections' masks."""
    from segmenter.replay import ReplayConfig, ReplaySegmenter

    replay = ReplaySegmenter(ReplayConfig(path=str(det_path)))
    box_mots("bytetrack", det_path, out, fps, replay.first_frame, replay.frame_count())


def perfect_mots(gt_path: Path, det_path: Path, out: Path) -> None:
    """The association ceiling: each detection gets the id of the ground-truth object it covers best.

    Detections and objects are paired one to one (Hungarian on mask IoU, at least
    :data:`PERFECT_IOU`); detections left unpaired (false positives, merges that
    cover neither object well) are dropped, so no identity is ever wrong or
    split and no false positive survives that a tracker could have filtered.
    """
    gt: dict[int, list] = {}
    for r in read_mots(gt_path):
        if r.class_id in (1, 2):
            gt.setdefault(r.frame, []).append(r)
    det: dict[int, list] = {}
    for d in read_mots_detections(det_path):
        det.setdefault(d.frame, []).append(d)
    with out.open("w") as handle:
        for frame in sorted(det):
            rows, objects = det[frame], gt.get(frame, [])
            if not objects:
                continue
            masks = [d.mask() for d in rows]
            iou = mask_iou_matrix(masks, [r.mask() for r in objects])
            pairs = [(i, j) for i, j in zip(*linear_sum_assignment(-iou)) if iou[i, j] >= PERFECT_IOU]
            kept = resolve_overlaps([masks[i] for i, _ in pairs], [rows[i].score for i, _ in pairs])
            height, width = rows[0].height, rows[0].width
            for (i, j), mask in sorted(zip(pairs, kept), key=lambda p: objects[p[0][1]].obj_id):
                if mask.area:
                    handle.write(format_mots_line(frame, objects[j].obj_id, rows[i].class_id,
                                                  mask.to_rle(height, width)) + "\n")
