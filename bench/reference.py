"""Reference trackers and inputs shared by the quality tests and benchmarks.

ByteTrack (Roboflow ``trackers``) tracks boxes; its output is turned into MOTS
by giving each tracked box its detection's mask, so both trackers are scored
on exactly the same masks and differ only in association.
"""

from __future__ import annotations

import uuid
import warnings
from pathlib import Path

import numpy as np

from segmenter.detections import Detections
from segmenter.motsio import format_detection_line, read_mots
from segmenter.noise import NoiseModel
from tracker.tracker import FrameTracks, TrackObservation, TrackState


def gt_frames(gt_path: Path, classes: tuple[int, ...] = (1, 2)) -> tuple[list[Detections], int]:
    """Ground-truth masks per frame as Detections (score 1), ignore regions dropped; and the first frame number."""
    records = [r for r in read_mots(gt_path) if r.class_id in classes]
    first = 0 if any(r.frame == 0 for r in records) else 1
    last = max(r.frame for r in records)
    size = (records[0].height, records[0].width)
    by_frame: dict[int, list] = {}
    for r in records:
        by_frame.setdefault(r.frame, []).append(r)
    frames = []
    for f in range(first, last + 1):
        rows = by_frame.get(f, [])
        frames.append(Detections.from_masks([r.mask() for r in rows], [r.class_id for r in rows], [1.0] * len(rows),
                                            [str(r.class_id) for r in rows], size))
    return frames, first


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
    frames, first = gt_frames(gt_path)
    write_detections(noise.apply(frames), first, out)
    return first


class ByteTrackBoxes:
    """Roboflow's ByteTrack (boxes) behind the engine's tracker interface: each tracked box keeps its detection's mask."""

    def __init__(self, fps: float, first_id: int = 1) -> None:
        from trackers import ByteTrackTracker

        self._tracker = ByteTrackTracker(frame_rate=fps)
        self._uids: dict[int, str] = {}
        self.next_id = first_id

    def update(self, det: Detections, pts: float, frame: int | None = None) -> FrameTracks:
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


def bytetrack_mots(det_path: Path, out: Path, fps: float) -> None:
    """Track a MOTS detection file with ByteTrack (boxes) through the engine and write MOTS results with the detections' masks."""
    from maskwatch.engine import Engine
    from maskwatch.outputs import MotsFile
    from maskwatch.sources import replay_frames
    from segmenter.replay import ReplayConfig, ReplaySegmenter

    replay = ReplaySegmenter(ReplayConfig(path=str(det_path)))
    engine = Engine(replay, lambda first_id: ByteTrackBoxes(fps, first_id), None, [MotsFile(out, replay.first_frame)])
    for frame in replay_frames(replay.frame_count(), fps, 0.0):
        engine.process([frame])
    engine.close()
