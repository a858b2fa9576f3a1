"""Mask-IoU association: cost matrices and the linear assignment (``lap``).

The distance is a pluggable function (as in Norfair): it gets the tracks'
predicted masks, the detections' masks and the least similarity that can match,
and returns a similarity matrix (pairs below that least value may be left at 0).
The default is mask IoU computed only for pairs that can reach it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import lap
import numpy as np

from segmenter.masks import CropMask

Similarity = Callable[[Sequence[CropMask], Sequence[CropMask], float], np.ndarray]


def assign(similarity: np.ndarray, min_similarity: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Optimal one-to-one matching maximising similarity, ignoring pairs below ``min_similarity``.

    Returns ``(matches (K, 2) [row, col], unmatched_rows, unmatched_cols)``. When no row
    and no column has two pairs that can match, the optimum is all of those pairs and
    the solver is not called (most frames: tracks apart from each other).
    """
    rows, cols = similarity.shape
    if rows == 0 or cols == 0:
        return np.zeros((0, 2), dtype=np.intp), np.arange(rows), np.arange(cols)
    matched_rows, matched_cols = np.nonzero(similarity >= min_similarity)
    if _repeats(matched_rows) or _repeats(matched_cols):
        cost = 1.0 - similarity
        _, row_to_col, _ = lap.lapjv(cost, extend_cost=True, cost_limit=1.0 - min_similarity + 1e-9)
        matched_rows = np.flatnonzero(row_to_col >= 0)
        matched_cols = row_to_col[matched_rows]
        keep = similarity[matched_rows, matched_cols] >= min_similarity
        matched_rows, matched_cols = matched_rows[keep], matched_cols[keep]
    matches = np.stack([matched_rows, matched_cols], axis=1).astype(np.intp)
    free_rows, free_cols = np.ones(rows, bool), np.ones(cols, bool)
    free_rows[matches[:, 0]] = False
    free_cols[matches[:, 1]] = False
    return matches, np.flatnonzero(free_rows), np.flatnonzero(free_cols)


def _repeats(indices: np.ndarray) -> bool:
    """Whether any index occurs twice."""
    return indices.size > 1 and bool(np.bincount(indices).max() > 1)
