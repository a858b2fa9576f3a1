"""``maskwatch label``: the frames most worth labelling, pre-labelled, as a COCO data set ``maskwatch train`` reads.

Every video runs through the same :class:`~maskwatch.engine.Engine` as ``run``
(the configured segmenter and tracker, without analytics), every ``stride``-th
frame. Each processed frame is scored from what that run shows is hard:

- ``uncertain``: detections scoring near the decision threshold (1 at the
  threshold, 0 at ``margin`` away, summed over the frame);
- ``break``: a track ended and another started near it soon after (the frames
  from the old one's last sighting to the new one's first); ``class_flip`` when
  the two, or one track's own observations, differ in class;
- ``missed``: a track went unseen in this frame and was seen again later;
- ``unconfirmed``: a detection no confirmed track took (flicker, clutter).

Frames are then chosen greedily: each pick maximises its (normalised)
informativeness plus ``diversity`` × its novelty (distance of a cheap image
descriptor, a downscaled grey image and a colour histogram, to the frames
already chosen) minus a penalty for lying within ``neighbour_seconds`` of a
chosen frame of the same video. The chosen frames are decoded again and
written as ``images/*.jpg`` with ``annotations.json`` (COCO instance
segmentation: the detections as pre-labels, their score in an extra ``score``
field) and ``manifest.json`` (why each frame was chosen, its video, frame
index and pts).
"""

from __future__ import annotations

import json
import shutil
import time
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
from pycocotools import mask as mask_utils

from common import InputError
from maskwatch.engine import Engine, Sink, Step, mask_tracker
from segmenter.detections import Detections, Segmenter
from segmenter.masks import CropMask, encode_rles
from tracker.config import TrackerConfig
from tracker.tracker import TrackObservation

DESCRIPTOR_SIZE = (32, 18)  # (width, height) of the grey thumbnail in the image descriptor
HIST_BINS = (8, 4)  # hue x saturation bins of the descriptor's colour histogram
HIST_WEIGHT = 4.0  # the histogram's share against the 576 thumbnail values
JPEG_QUALITY = 95
PLACEHOLDER_CLASSES = {"__background__", "N/A", "background"}  # labels of COCO weights that are no class


@dataclass
class Weights:
    """What each kind of evidence adds to a frame's informativeness, and the selection's trade-offs."""

    uncertain: float = 1.0  # per detection at the threshold (less further away)
    break_: float = 1.0  # per track break the frame lies in
    class_flip: float = 1.0
    missed: float = 0.5  # per track unseen in this frame but seen again
    unconfirmed: float = 0.5  # per detection no confirmed track took
    diversity: float = 1.0  # novelty's weight against normalised informativeness (0..1)
    neighbour: float = 1.0  # penalty for a frame at the same time as a chosen one of its video
    neighbour_seconds: float = 2.0  # the penalty falls to 0 this far from a chosen frame
    break_seconds: float = 3.0  # a new track starting this soon after one ended (nearby) is a break
    break_reach: float = 1.5  # ... and this near: centre distance in diagonals of the larger box


@dataclass
class FrameInfo:
    """One processed frame: its detections, descriptor and the evidence that it is worth labelling."""

    video: int  # index into the videos given
    frame: int  # frame index in its video
    pts: float
    detections: Detections
    descriptor: np.ndarray
    evidence: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    notes: list[str] = field(default_factory=list)

    def informativeness(self, weights: Weights) -> float:
        w = {"uncertain": weights.uncertain, "break": weights.break_, "class_flip": weights.class_flip,
             "missed": weights.missed, "unconfirmed": weights.unconfirmed}
        return float(sum(w.get(kind, 0.0) * amount for kind, amount in self.evidence.items()))


@dataclass
class Choice:
    """A chosen frame, with the terms of the gain that chose it."""

    info: FrameInfo
    rank: int
    gain: float
    informativeness: float
    novelty: float
    penalty: float


def descriptor(image: np.ndarray) -> np.ndarray:
    """A cheap image embedding: a 32x18 grey thumbnail (0..1) and a weighted hue/saturation histogram."""
    grey = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY) if image.ndim == 3 else image
    thumb = cv2.resize(grey, DESCRIPTOR_SIZE, interpolation=cv2.INTER_AREA).astype(np.float32) / 255.0
    if image.ndim == 3:
        small = cv2.resize(image, (DESCRIPTOR_SIZE[0] * 2, DESCRIPTOR_SIZE[1] * 2), interpolation=cv2.INTER_AREA)
        hsv = cv2.cvtColor(small, cv2.COLOR_BGR2HSV)
        hist = cv2.calcHist([hsv], [0, 1], None, list(HIST_BINS), [0, 180, 0, 256]).ravel()
        hist = hist / max(hist.sum(), 1.0)
    else:
        hist = np.zeros(HIST_BINS[0] * HIST_BINS[1], np.float32)
    return np.concatenate([thumb.ravel(), HIST_WEIGHT * hist]).astype(np.float32)


def uncertainty(scores: np.ndarray, threshold: float, margin: float) -> np.ndarray:
    """Per detection: 1 at the decision threshold, falling linearly to 0 at ``margin`` away."""
    return np.clip(1.0 - np.abs(np.asarray(scores, np.float64) - threshold) / margin, 0.0, 1.0)


class _Collector(Sink):
    """Keeps each processed frame's detections and descriptor, and every confirmed track's observations."""

    def __init__(self, video: int, threshold: float, margin: float) -> None:
        self.video, self.threshold, self.margin = video, threshold, margin
        self.frames: list[FrameInfo] = []
        self.observations: list[TrackObservation] = []
        self.size: tuple[int, int] | None = None

    def on_frame(self, step: Step) -> None:
        frame, detections = step.frame, step.detections
        info = FrameInfo(self.video, frame.index, frame.pts, detections, descriptor(frame.image))
        near = uncertainty(detections.scores, self.threshold, self.margin)
        if near.sum() > 0:
            info.evidence["uncertain"] += float(near.sum())
            info.notes += [
                f"{detections.class_names[i]} scored {detections.scores[i]:.2f} (threshold {self.threshold:g})"
                for i in np.flatnonzero(near > 0)
            ]
        self.frames.append(info)

    def on_completed(self, frame: int, observations: list[TrackObservation]) -> None:
        self.observations.extend(observations)


def scan(
    frames: Iterable,
    segmenter: Segmenter,
    tracker: TrackerConfig,
    *,
    video: int = 0,
    threshold: float = 0.5,
    margin: float = 0.15,
    weights: Weights | None = None,
    stride: int = 1,
    batch: int = 1,
) -> list[FrameInfo]:
    """Run ``frames`` (``Frame``-like: index, pts, ts, image) through segmenter and tracker; score every processed one.

    Every ``stride``-th frame (by index) is processed, ``batch`` frames per segmenter call.
    """
    weights = weights or Weights()
    collector = _Collector(video, threshold, margin)
    engine = Engine(segmenter, mask_tracker(tracker), None, [collector], backfill_frames=tracker.min_hits)
    status = "failed"
    try:
        pending = []
        for frame in frames:
            if frame.index % stride:
                continue
            pending.append(frame)
            if len(pending) >= batch:
                engine.process(pending)
                pending = []
        if pending:
            engine.process(pending)
        status = "finished"
    finally:
        engine.close(status)
    track_evidence(collector.frames, collector.observations, weights)
    return collector.frames


def track_evidence(frames: list[FrameInfo], observations: list[TrackObservation], weights: Weights) -> None:
    """Add what the tracks show to ``frames`` (one video's processed frames, in order): breaks, flips, misses."""
    if not frames:
        return
    position = {info.frame: k for k, info in enumerate(frames)}
    height, width = frames[0].detections.image_size
    tracks: dict[int, list[TrackObservation]] = defaultdict(list)
    taken: dict[int, set[int]] = defaultdict(set)  # frame -> ids of the masks confirmed tracks took
    for obs in observations:
        if obs.frame in position:
            tracks[obs.track_id].append(obs)
            taken[obs.frame].add(id(obs.mask))
    for info in frames:
        loose = [i for i, m in enumerate(info.detections.masks) if id(m) not in taken[info.frame]]
        if loose:
            info.evidence["unconfirmed"] += len(loose)
            info.notes.append(f"{len(loose)} detection(s) no confirmed track took")
    for track_id, seen in tracks.items():
        seen.sort(key=lambda o: o.frame)
        for before, after in zip(seen, seen[1:]):
            for k in range(position[before.frame] + 1, position[after.frame]):
                frames[k].evidence["missed"] += 1
                frames[k].notes.append(f"track {track_id} ({before.class_name}) not seen")
            if after.class_name != before.class_name:
                frames[position[after.frame]].evidence["class_flip"] += 1
                frames[position[after.frame]].notes.append(
                    f"track {track_id} changed class {before.class_name} -> {after.class_name}"
                )
    starts = sorted((seen[0] for seen in tracks.values()), key=lambda o: o.pts)
    used: set[int] = set()
    for last in sorted((seen[-1] for seen in tracks.values()), key=lambda o: o.pts):
        best, best_distance = None, np.inf
        for new in starts:
            if new.track_id == last.track_id or new.track_id in used:
                continue
            dt = new.pts - last.pts
            if dt <= 0 or dt > weights.break_seconds:
                continue
            if _at_border(last.box, width, height) and _at_border(new.box, width, height):
                continue  # one object left where another came in
            distance = float(np.hypot(*(_centre(new.box) - _centre(last.box))))
            reach = weights.break_reach * max(_diagonal(last.box), _diagonal(new.box))
            if distance <= reach and distance < best_distance:
                best, best_distance = new, distance
        if best is None:
            continue
        used.add(best.track_id)
        flip = best.class_name != last.class_name
        note = (
            f"track {last.track_id} ({last.class_name}) ended, track {best.track_id} ({best.class_name}) started "
            f"{best_distance:.0f} px away {best.pts - last.pts:.2f} s later"
        )
        for k in range(position[last.frame], position[best.frame] + 1):
            frames[k].evidence["break"] += 1
            if flip:
                frames[k].evidence["class_flip"] += 1
            frames[k].notes.append(note)


def _centre(box: np.ndarray) -> np.ndarray:
    return np.array([(box[0] + box[2]) / 2, (box[1] + box[3]) / 2], np.float64)


def _diagonal(box: np.ndarray) -> float:
    return float(np.hypot(box[2] - box[0], box[3] - box[1]))


def _at_border(box: np.ndarray, width: int, height: int) -> bool:
    return bool(box[0] <= 1 or box[1] <= 1 or box[2] >= width - 1 or box[3] >= height - 1)


def select(frames: Sequence[FrameInfo], budget: int, weights: Weights | None = None) -> list[Choice]:
    """Greedily choose up to ``budget`` distinct frames: informative, unlike the chosen ones, not next to them.

    Each pick maximises ``informativeness / max informativeness + diversity * novelty - neighbour * penalty``,
    where novelty is the descriptor distance to the nearest chosen frame over a typical distance between
    frames (capped at 1; 1 before the first pick) and penalty falls linearly from 1 at a chosen frame of
    the same video to 0 at ``neighbour_seconds`` from it.
    """
    weights = weights or Weights()
    if not frames or budget <= 0:
        return []
    n = len(frames)
    info = np.array([f.informativeness(weights) for f in frames], np.float64)
    informative = info / info.max() if info.max() > 0 else np.zeros(n)
    descriptors = np.stack([f.descriptor for f in frames]).astype(np.float64)
    scale = _typical_distance(descriptors)
    nearest = np.full(n, np.inf)
    penalty = np.zeros(n)
    videos = np.array([f.video for f in frames])
    pts = np.array([f.pts for f in frames], np.float64)
    chosen = np.zeros(n, dtype=bool)
    out: list[Choice] = []
    for rank in range(min(budget, n)):
        novelty = np.minimum(nearest / scale, 1.0)
        gain = informative + weights.diversity * novelty - weights.neighbour * penalty
        gain[chosen] = -np.inf
        pick = int(np.argmax(gain))
        chosen[pick] = True
        out.append(Choice(frames[pick], rank, float(gain[pick]), float(info[pick]), float(novelty[pick]),
                          float(penalty[pick])))
        nearest = np.minimum(nearest, np.linalg.norm(descriptors - descriptors[pick], axis=1))
        if weights.neighbour_seconds > 0:
            near = np.clip(1.0 - np.abs(pts - pts[pick]) / weights.neighbour_seconds, 0.0, 1.0)
            penalty = np.maximum(penalty, np.where(videos == videos[pick], near, 0.0))
    return out


def _typical_distance(descriptors: np.ndarray, sample: int = 400) -> float:
    """Median distance between (up to ``sample`` evenly spaced) frames: the unit of novelty."""
    step = max(len(descriptors) // sample, 1)
    some = descriptors[::step]
    if len(some) < 2:
        return 1.0
    squared = (some * some).sum(axis=1)
    d = np.sqrt(np.maximum(squared[:, None] + squared[None, :] - 2.0 * some @ some.T, 0.0))
    median = float(np.median(d[np.triu_indices(len(some), 1)]))
    return median if median > 1e-9 else 1.0


# ---------------------------------------------------------------- COCO export


def mask_polygons(mask: CropMask) -> list[list[float]]:
    """COCO polygons of a mask's outer outlines (holes are filled: COCO polygons cannot hold them).

    The outline runs along pixel edges, traced on the crop upsampled twice: rasterised again by
    pycocotools (as CVAT and Label Studio rasterise polygons) it gives back the mask's pixels.
    """
    if mask.area == 0:
        return []
    crop = mask.crop.view(np.uint8)
    big = cv2.resize(crop, (crop.shape[1] * 2, crop.shape[0] * 2), interpolation=cv2.INTER_NEAREST)
    contours, _ = cv2.findContours(big, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    polygons = []
    for contour in contours:
        points = contour.reshape(-1, 2).astype(np.float64) / 2.0 + (mask.x0, mask.y0)
        if len(points) >= 3:
            polygons.append([round(v, 1) for v in points.ravel().tolist()])
    return polygons


def coco_annotations(
    detections: Detections, image_id: int, first_id: int, categories: dict[str, int], rle: bool
) -> list[dict]:
    """One frame's detections as COCO annotations (polygons, or compressed RLE with string counts)."""
    height, width = detections.image_size
    counts = encode_rles(detections.masks, height, width) if rle else None
    out = []
    for i, mask in enumerate(detections.masks):
        if mask.area == 0:
            continue
        if rle:
            segmentation = {"size": [height, width], "counts": counts[i]}
            encoded = {"size": [height, width], "counts": counts[i].encode("ascii")}
        else:
            segmentation = mask_polygons(mask)
            if not segmentation:
                continue
            encoded = mask_utils.merge(mask_utils.frPyObjects(segmentation, height, width))
        out.append({
            "id": first_id + len(out),
            "image_id": image_id,
            "category_id": categories[str(detections.class_names[i])],
            "segmentation": segmentation,
            "area": int(mask_utils.area(encoded)),
            "bbox": [float(v) for v in mask_utils.toBbox(encoded)],
            "iscrowd": 0,
            "score": round(float(detections.scores[i]), 4),
        })
    return out


def class_names_of(segmenter: Segmenter, section) -> list[str]:
    """The classes the configured segmenter can report, in its label order: the export's categories."""
    if section.name == "motion":
        return list(dict.fromkeys(rule.name for rule in section.motion.classes))
    names = [str(n) for n in getattr(segmenter, "class_names", []) or [] if str(n) not in PLACEHOLDER_CLASSES]
    if section.name == "maskrcnn" and section.maskrcnn.classes:
        names = [n for n in names if n in section.maskrcnn.classes]
    return list(dict.fromkeys(names))


# ---------------------------------------------------------------- the command


def check_out(out: Path, force: bool) -> None:
    """``out`` must be new or empty unless ``force``; a file there is an error either way."""
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {out} is a file, not a folder")
    if out.is_dir() and any(out.iterdir()) and not force:
        raise InputError(f"--out {out} is not empty (use --force to overwrite the labelling set there)")


@dataclass
class Picked:
    """What :func:`pick_frames` chose, and what writing the set needs."""

    choices: list[Choice]
    sources: list  # FrameSource per video, in the order given
    class_names: list[str]
    settings: dict
    frames_scanned: int


def pick_frames(
    videos: Sequence[Path],
    budget: int,
    config,
    *,
    stride: int = 1,
    threshold: float | None = None,
    margin: float = 0.15,
    weights: Weights | None = None,
    console=None,
) -> Picked:
    """Scan every video with the configured segmenter and tracker and choose ``budget`` frames across them."""
    from maskwatch.pipeline import build_segmenter
    from maskwatch.sources import FrameSource

    if budget <= 0:
        raise InputError(f"--budget must be at least 1, not {budget}")
    if stride <= 0:
        raise InputError(f"--stride must be at least 1, not {stride}")
    if not videos:
        raise InputError("no videos given")
    if not 0 < margin <= 1:
        raise InputError(f"--margin must be in (0, 1], not {margin}")
    sources = [FrameSource(path) for path in videos]  # every input checked before the long scan
    weights = weights or Weights()
    section = config.segmenter
    if threshold is None:
        threshold = section.maskrcnn.score_threshold if section.name == "maskrcnn" else config.tracker.high_score
    if section.name == "maskrcnn":  # see detections just under the threshold too: the uncertain ones
        section = section.model_copy(deep=True)
        section.maskrcnn.score_threshold = max(0.0, min(section.maskrcnn.score_threshold, threshold - margin))
    batch = section.maskrcnn.batch_size if section.name == "maskrcnn" else 1
    shared = build_segmenter(section) if section.name == "maskrcnn" else None  # stateless: one model for all
    frames: list[FrameInfo] = []
    names: list[str] = []
    for number, source in enumerate(sources):
        segmenter = shared or build_segmenter(section)  # motion keeps a background model per video
        names = names or class_names_of(segmenter, section)
        if console is not None:
            console.print(f"scanning {source.path} ({number + 1}/{len(sources)})", markup=False, highlight=False)
        frames += scan(source.frames(), segmenter, config.tracker, video=number, threshold=threshold, margin=margin,
                       weights=weights, stride=stride, batch=batch)
    settings = {"segmenter": section.name, "stride": stride, "threshold": threshold, "margin": margin, "budget": budget}
    return Picked(select(frames, budget, weights), sources, names, settings, len(frames))


def label_command(
    videos: Sequence[Path],
    budget: int,
    out: Path,
    config,
    *,
    stride: int = 1,
    rle: bool = False,
    force: bool = False,
    threshold: float | None = None,
    margin: float = 0.15,
    weights: Weights | None = None,
    console=None,
) -> dict:
    """What ``maskwatch label`` does; returns a JSON-able summary. Bad input raises :class:`InputError`."""
    started = time.monotonic()
    check_out(out, force)
    picked = pick_frames(videos, budget, config, stride=stride, threshold=threshold, margin=margin, weights=weights,
                         console=console)
    summary = write_set(out, picked, rle=rle, force=force)
    return {**summary, "frames_scanned": picked.frames_scanned, "seconds": round(time.monotonic() - started, 1)}


def write_set(out: Path, picked: Picked, *, rle: bool = False, force: bool = False) -> dict:
    """Decode the chosen frames again and write ``images/``, ``annotations.json`` and ``manifest.json``.

    Masks are written as polygons (``rle``: compressed RLE with string counts, ``iscrowd`` 0); see the README.
    """
    choices, sources, class_names = picked.choices, picked.sources, picked.class_names
    settings = {**picked.settings, "format": "rle" if rle else "polygons"}
    images_dir = out / "images"
    if force and images_dir.is_dir():
        shutil.rmtree(images_dir)
    images_dir.mkdir(parents=True, exist_ok=True)
    names = list(class_names)
    for choice in choices:  # a class the segmenter reported that its config did not list
        names += [str(n) for n in choice.info.detections.class_names if str(n) not in names]
    categories = {name: k + 1 for k, name in enumerate(names)}
    stems = [Path(s.path).stem for s in sources]
    ordered = sorted(choices, key=lambda c: (c.info.video, c.info.frame))
    file_names = {}
    for choice in ordered:
        video = choice.info.video
        stem = stems[video] if stems.count(stems[video]) == 1 else f"{video:02d}-{stems[video]}"
        file_names[id(choice)] = f"{stem}_{choice.info.frame:06d}.jpg"
    wanted: dict[int, dict[int, Choice]] = defaultdict(dict)
    for choice in ordered:
        wanted[choice.info.video][choice.info.frame] = choice
    for video, by_frame in wanted.items():
        last = max(by_frame)
        for frame in sources[video].frames():
            if frame.index in by_frame:
                path = images_dir / file_names[id(by_frame[frame.index])]
                if not cv2.imwrite(str(path), frame.image, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY]):
                    raise OSError(f"cannot write {path}")
            if frame.index >= last:
                break
    images, annotations, manifest = [], [], []
    for image_id, choice in enumerate(ordered, start=1):
        info = choice.info
        height, width = info.detections.image_size
        images.append({"id": image_id, "file_name": file_names[id(choice)], "width": int(width), "height": int(height)})
        annotations += coco_annotations(info.detections, image_id, len(annotations) + 1, categories, rle)
        manifest.append({
            "image_id": image_id,
            "file_name": file_names[id(choice)],
            "video": str(sources[info.video].path),
            "frame": info.frame,
            "pts": round(info.pts, 4),
            "rank": choice.rank + 1,
            "gain": round(choice.gain, 4),
            "informativeness": round(choice.informativeness, 4),
            "novelty": round(choice.novelty, 4),
            "neighbour_penalty": round(choice.penalty, 4),
            "evidence": {k: round(v, 4) for k, v in sorted(info.evidence.items()) if v},
            "why": _why(choice),
            "notes": info.notes[:20],
        })
    data = {
        "info": {"description": "maskwatch label: pre-labels to correct", "version": "1.0",
                 "date_created": time.strftime("%Y-%m-%dT%H:%M:%S")},
        "licenses": [],
        "images": images,
        "annotations": annotations,
        "categories": [{"id": cid, "name": name, "supercategory": ""} for name, cid in categories.items()],
    }
    (out / "annotations.json").write_text(json.dumps(data), encoding="utf-8")
    found = {a["category_id"] for a in annotations}
    empty = [name for name, cid in categories.items() if cid not in found]
    (out / "manifest.json").write_text(
        json.dumps({**settings, "videos": [str(s.path) for s in sources], "classes_without_prelabels": empty,
                    "frames": manifest}, indent=1),
        encoding="utf-8",
    )
    return {"images": len(images), "annotations": len(annotations), "categories": list(categories),
            "classes_without_prelabels": empty, "out": str(out)}


def _why(choice: Choice) -> str:
    """The manifest's one-line reason: the evidence, strongest first, and how new the frame looked."""
    parts = [f"{kind} {amount:g}" for kind, amount in sorted(choice.info.evidence.items(), key=lambda kv: -kv[1])
             if amount]
    parts.append(f"novelty {choice.novelty:.2f}")
    return ", ".join(parts)
