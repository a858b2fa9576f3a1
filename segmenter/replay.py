"""Replay segmenter: serves precomputed masks, so any external segmenter can feed the tracker.

Reads a MOTS detection txt (``frame class_id score img_h img_w rle``) or a COCO
results JSON (``[{image_id, category_id, segmentation: {size, counts}, score}]``,
``image_id`` being the frame number). Everything is validated when loaded, so a
bad file fails before any tracking starts.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from common import InputError
from segmenter.detections import Detections
from segmenter.masks import CropMask, canonical_rles, rle_runs_batch
from segmenter.motsio import check_rle, compact_runs, read_mots_detection_runs

MOTS_CLASS_NAMES = {1: "car", 2: "pedestrian"}


class ReplayConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    path: str | None = Field(None, description="MOTS detection txt or COCO results JSON (`run --detections` sets it).")
    format: Literal["auto", "mots", "coco"] = Field("auto", description="auto: .json is COCO, anything else MOTS txt.")
    first_frame: int | None = Field(
        None, ge=0, description="Number of the first frame; unset: 0 when the file has a frame 0 (KITTI MOTS), else 1 (MOTS20)."
    )
    class_names: dict[int, str] = Field(default_factory=lambda: dict(MOTS_CLASS_NAMES), description="Name per class id.")
    score_threshold: float = Field(0.0, ge=0, le=1, description="Detections below this score are not served.")


class ReplaySegmenter:
    """Serves the stored detections of consecutive frames, starting at :attr:`first_frame`."""

    def __init__(self, config: ReplayConfig) -> None:
        self.config = config
        if config.path is None:
            raise InputError("segmenter.replay.path is required with the replay segmenter (or run --detections FILE)")
        path = Path(config.path)
        fmt = config.format if config.format != "auto" else ("coco" if path.suffix.lower() == ".json" else "mots")
        rows, self._runs, self._offsets, strings = _load_coco(path) if fmt == "coco" else _load_mots(path)
        # masks are kept as the run lengths parsed while checking the file: a frame is decoded without parsing again;
        # and as their strings where a writer would write the same: one that reaches the output unchanged is not encoded
        canonical = canonical_rles(strings, self._runs, self._offsets).tolist()
        self._rles = [counts if ok else None for counts, ok in zip(strings, canonical)]
        self._by_frame: dict[int, list[tuple[int, float, int]]] = defaultdict(list)  # (class_id, score, row)
        for index, (frame, class_id, score, _, _) in enumerate(rows):
            if score >= config.score_threshold:
                self._by_frame[frame].append((class_id, score, index))
        sizes = {(row[3], row[4]) for row in rows}
        if len(sizes) > 1:
            raise InputError(f"{path}: detections have different image sizes {sorted(sizes)}")
        self.image_size: tuple[int, int] | None = sizes.pop() if sizes else None
        if config.first_frame is not None:
            self.first_frame = config.first_frame
        else:
            self.first_frame = 0 if any(row[0] == 0 for row in rows) else 1
        self.last_frame = max((row[0] for row in rows), default=self.first_frame - 1)
        self.cursor = self.first_frame

    def frame_count(self) -> int:
        """Frames from :attr:`first_frame` to the last frame with a detection."""
        return max(self.last_frame - self.first_frame + 1, 0)

    def segment(self, frames: Sequence[np.ndarray | None]) -> list[Detections]:
        """One ``Detections`` per frame; frames may be ``None`` when only masks are replayed."""
        out = []
        for image in frames:
            size = self.image_size or (image.shape[:2] if image is not None else (0, 0))
            if image is not None and self.image_size is not None and image.shape[:2] != self.image_size:
                raise InputError(
                    f"frame {self.cursor} is {image.shape[1]}x{image.shape[0]} but the replayed masks are "
                    f"{self.image_size[1]}x{self.image_size[0]}"
                )
            rows = self._by_frame.get(self.cursor, [])
            masks = self._masks([row[2] for row in rows], size) if rows else []
            keep = [i for i, m in enumerate(masks) if m.area]
            out.append(
                Detections.from_masks(
                    [masks[i] for i in keep],
                    [rows[i][0] for i in keep],
                    [rows[i][1] for i in keep],
                    [self.config.class_names.get(rows[i][0], f"class_{rows[i][0]}") for i in keep],
                    tuple(size),
                )
            )
            self.cursor += 1
        return out

    def _masks(self, indices: list[int], size: tuple[int, int]) -> list[CropMask]:
        """The crops of the given rows, from their stored runs (a frame's rows are usually adjacent in the file)."""
        rows = np.array(indices)
        starts, stops = self._offsets[rows], self._offsets[rows + 1]
        if (starts[1:] == stops[:-1]).all():
            runs = self._runs[starts[0] : stops[-1]]
        else:
            runs = np.concatenate([self._runs[a:b] for a, b in zip(starts.tolist(), stops.tolist())])
        offsets = np.zeros(rows.size + 1, dtype=np.int64)
        np.cumsum(stops - starts, out=offsets[1:])
        masks = CropMask.from_runs_batch(runs, offsets, size[0])
        for mask, index in zip(masks, indices):
            if self._rles[index] is not None:
                mask.remember_rle(self._rles[index], *size)
        return masks


# (frame, class, score, h, w) per row, the rows' runs and offsets, and their RLE strings
_Rows = tuple[list[tuple[int, int, float, int, int]], np.ndarray, np.ndarray, list[str]]


def _load_mots(path: Path) -> _Rows:
    detections, runs, offsets = read_mots_detection_runs(path)
    rows = [(d.frame, d.class_id, d.score, d.height, d.width) for d in detections]
    return rows, runs, offsets, [d.rle for d in detections]


def _load_coco(path: Path) -> _Rows:
    if not path.is_file():
        raise InputError(f"file not found: {path}")
    try:
        items = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(items, list):
        raise InputError(f"{path}: COCO results must be a JSON list of detections")
    rows, strings = [], []
    for index, item in enumerate(items):
        try:
            seg = item["segmentation"]
            height, width = (int(v) for v in seg["size"])
            counts = seg["counts"]
            if not isinstance(counts, str):
                raise ValueError("segmentation.counts must be a compressed RLE string")
            check_rle(height, width, counts)
            rows.append((int(item["image_id"]), int(item["category_id"]), float(item.get("score", 1.0)), height, width))
            strings.append(counts)
        except (KeyError, TypeError, ValueError) as exc:
            what = f"missing field {exc}" if isinstance(exc, KeyError) else str(exc)
            raise InputError(f"{path}: detection [{index}]: {what}") from None
    runs, offsets = rle_runs_batch(strings)
    return rows, compact_runs(runs), offsets, strings
