"""The one contract every stage shares: the instances found in one frame."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from segmenter.masks import CropMask


@dataclass
class Detections:
    """Instances in one frame, as parallel arrays (index with ints, slices or bool masks).

    ``masks[i]`` is a compact :class:`CropMask`, never a full-frame array, so a
    frame with 200 objects costs kilobytes, not hundreds of megabytes.
    """

    boxes: np.ndarray  # (N, 4) float32 xyxy, pixels
    masks: list[CropMask]
    class_ids: np.ndarray  # (N,) int32
    scores: np.ndarray  # (N,) float32
    class_names: np.ndarray  # (N,) object (str)
    image_size: tuple[int, int]  # (height, width)
    embeddings: np.ndarray | None = None  # (N, D) float32, L2-normalised appearance, from segmenters that compute one

    def __post_init__(self) -> None:
        n = len(self.masks)
        if self.embeddings is not None:
            self.embeddings = np.asarray(self.embeddings, dtype=np.float32)
            if self.embeddings.ndim != 2 or len(self.embeddings) != n:
                raise ValueError(f"embeddings must be ({n}, D), not {self.embeddings.shape}")
        self.boxes = np.asarray(self.boxes, dtype=np.float32).reshape(n, 4)
        self.class_ids = np.asarray(self.class_ids, dtype=np.int32).reshape(n)
        self.scores = np.asarray(self.scores, dtype=np.float32).reshape(n)
        self.class_names = np.asarray(self.class_names, dtype=object).reshape(n)

    @classmethod
    def empty(cls, image_size: tuple[int, int], embedding_dim: int | None = None) -> Detections:
        """No instances; with ``embedding_dim``, a (0, D) embeddings array, as its segmenter's other frames have."""
        embeddings = None if embedding_dim is None else np.zeros((0, embedding_dim), dtype=np.float32)
        return cls(np.zeros((0, 4)), [], np.zeros(0), np.zeros(0), np.zeros(0, dtype=object), image_size, embeddings)

    @classmethod
    def from_masks(
        cls,
        masks: Sequence[CropMask],
        class_ids: Sequence[int],
        scores: Sequence[float],
        class_names: Sequence[str],
        image_size: tuple[int, int],
        embeddings: np.ndarray | None = None,
    ) -> Detections:
        """Build from crop masks, deriving each box from its mask's pixels."""
        masks = list(masks)
        boxes = np.array([m.box() for m in masks], dtype=np.float32).reshape(len(masks), 4)
        return cls(boxes, masks, class_ids, scores, class_names, image_size, embeddings)

    def __len__(self) -> int:
        return len(self.masks)

    def __getitem__(self, index: int | slice | np.ndarray | Sequence[int]) -> Detections:
        idx = np.arange(len(self))[index]
        idx = np.atleast_1d(idx)
        return Detections(
            self.boxes[idx],
            [self.masks[i] for i in idx],
            self.class_ids[idx],
            self.scores[idx],
            self.class_names[idx],
            self.image_size,
            None if self.embeddings is None else self.embeddings[idx],
        )

    @property
    def areas(self) -> np.ndarray:
        return np.array([m.area for m in self.masks], dtype=np.int64)


class Segmenter(Protocol):
    """Anything that turns a batch of BGR frames into one ``Detections`` per frame."""

    def segment(self, frames: Sequence[np.ndarray]) -> list[Detections]: ...
