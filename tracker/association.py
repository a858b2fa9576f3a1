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

    Returns ``(matches (K, 2) [row, col], unmatched_rows, unmatched_cols)``. A pair that
    shares neither its row nor its column with another pair that can match is in every
    optimum; the solver only sees the rows and columns of pairs that compete (most frames
    have few: tracks are mostly apart from each other).
    """
    rows, cols = similarity.shape
    if rows == 0 or cols == 0:
        return np.zeros((0, 2), dtype=np.intp), np.arange(rows), np.arange(cols)
    pair_rows, pair_cols = np.nonzero(similarity >= min_similarity)
    per_row, per_col = np.bincount(pair_rows, minlength=rows), np.bincount(pair_cols, minlength=cols)
    if per_row.max() <= 1 and per_col.max() <= 1:
        return np.stack([pair_rows, pair_cols], axis=1), np.flatnonzero(per_row == 0), np.flatnonzero(per_col == 0)
    alone = (per_row[pair_rows] == 1) & (per_col[pair_cols] == 1)
    matched = np.full(rows, -1, dtype=np.intp)  # each row's column, -1 when unmatched
    matched[pair_rows[alone]] = pair_cols[alone]
    sub_rows, sub_cols = np.unique(pair_rows[~alone]), np.unique(pair_cols[~alone])
    sub = similarity[np.ix_(sub_rows, sub_cols)]
    _, row_to_col, _ = lap.lapjv(1.0 - sub, extend_cost=True, cost_limit=1.0 - min_similarity + 1e-9)
    solved = np.flatnonzero(row_to_col >= 0)
    keep = solved[sub[solved, row_to_col[solved]] >= min_similarity]
    matched[sub_rows[keep]] = sub_cols[row_to_col[keep]]
    matched_rows = np.flatnonzero(matched >= 0)
    free_cols = np.ones(cols, bool)
    free_cols[matched[matched_rows]] = False
    matches = np.stack([matched_rows, matched[matched_rows]], axis=1)
    return matches, np.flatnonzero(matched < 0), np.flatnonzero(free_cols)
