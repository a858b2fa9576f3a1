"""Tiled inference: cut a frame into overlapping tiles, segment each, merge the masks back into one frame.

Small objects (pills, particles) are a few pixels at the detector's input
scale; run on tiles, each resized to the model's input size, they are seen
several times larger. The price is the seams: an object cut by a tile's edge is
found in two (or four) tiles, as parts or as whole copies. :func:`merge_tiled`
joins them into one mask per object, in full-frame coordinates:

* within the overlap of two tiles both see the same pixels, so two masks of one
  object agree there: masks of one class from different tiles whose parts inside
  the shared window have IoU (or containment in the smaller part) above a bar are
  one object, and its mask is their union (the whole object when each tile saw
  part of it; a duplicate when both saw all of it);
* tiles that share an edge without overlapping (``overlap=0``) see nothing in
  common: there, two masks cut by that edge that abut along it over most of
  their width are joined.

Masks of one tile are never joined: the model's own NMS already decided there.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from segmenter.detections import Detections
from segmenter.masks import CropMask

Window = tuple[int, int, int, int]  # x0, y0, x1, y1 with exclusive ends


def tile_windows(height: int, width: int, size: int, overlap: int) -> list[Window]:
    """Windows of at most ``size``×``size`` covering a frame, row by row; neighbours overlap by at least ``overlap``.

    Along each axis the tiles are spread evenly from edge to edge, so the last one
    is not a sliver; a frame side no longer than ``size`` is one tile.
    """
    if size < 1 or not 0 <= overlap < size:
        raise ValueError(f"tiles need size >= 1 and 0 <= overlap < size, got size={size} overlap={overlap}")
    if height < 1 or width < 1:
        raise ValueError(f"empty frame {width}x{height}")
    ys, xs = _starts(height, size, overlap), _starts(width, size, overlap)
    return [(x, y, min(x + size, width), min(y + size, height)) for y in ys for x in xs]


def _starts(length: int, size: int, overlap: int) -> list[int]:
    if length <= size:
        return [0]
    count = -(-(length - overlap) // (size - overlap))  # ceil: strides of at most size - overlap
    return [round(i * (length - size) / (count - 1)) for i in range(count)]


def merge_tiled(
    detections_per_tile: Sequence[Detections],
    windows: Sequence[Window],
    image_size: tuple[int, int],
    *,
    match_iou: float = 0.5,
    match_containment: float = 0.8,
    abut_ratio: float = 0.5,
) -> Detections:
    """One frame's :class:`Detections` from those of its tiles (tile coordinates, ``windows[i]`` for tile ``i``).

    Two masks of one class from different tiles are one object when, inside the
    window the two tiles share, their IoU reaches ``match_iou`` or the smaller
    one lies at least ``match_containment`` inside the other; or, for tiles that
    only share an edge, when both reach that edge and touch along it over at
    least ``abut_ratio`` of the shorter one's extent there. Each tile's mask
    pairs with at most one of another tile (best first); groups are joined
    transitively and become the union of their masks, the best score, and the
    best-scoring member's embedding. Output order: by each group's first mask.
    """
    if len(detections_per_tile) != len(windows):
        raise ValueError(f"{len(detections_per_tile)} tile detections for {len(windows)} windows")
    height, width = image_size
    masks: list[CropMask] = []
    tile_of: list[int] = []
    rows: list[tuple[int, int]] = []  # (tile, index in it)
    for tile, (dets, (wx, wy, _, _)) in enumerate(zip(detections_per_tile, windows)):
        for index, mask in enumerate(dets.masks):
            if mask.area:
                masks.append(CropMask(mask.crop, mask.x0 + wx, mask.y0 + wy).clipped(height, width))
                tile_of.append(tile)
                rows.append((tile, index))
    embedding_dim = next((d.embeddings.shape[1] for d in detections_per_tile if d.embeddings is not None), None)
    if not masks:
        return Detections.empty(image_size, embedding_dim)
    class_ids = np.array([detections_per_tile[t].class_ids[i] for t, i in rows], dtype=np.int64)
    scores = np.array([detections_per_tile[t].scores[i] for t, i in rows], dtype=np.float64)
    parent = list(range(len(masks)))

    def root(k: int) -> int:
        while parent[k] != k:
            parent[k] = parent[parent[k]]
            k = parent[k]
        return k

    for a, b in _matches(masks, tile_of, class_ids, windows, match_iou, match_containment, abut_ratio):
        ra, rb = root(a), root(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
    groups: dict[int, list[int]] = {}
    for k in range(len(masks)):
        groups.setdefault(root(k), []).append(k)
    out_masks, out_classes, out_scores, out_names, out_embeddings = [], [], [], [], []
    for members in groups.values():
        best = max(members, key=lambda k: scores[k])
        tile, index = rows[best]
        source = detections_per_tile[tile]
        out_masks.append(union([masks[k] for k in members]))
        out_classes.append(int(class_ids[best]))
        out_scores.append(float(scores[best]))
        out_names.append(source.class_names[index])
        if embedding_dim is not None:
            out_embeddings.append(
                source.embeddings[index] if source.embeddings is not None else np.zeros(embedding_dim, np.float32)
            )
    embeddings = np.array(out_embeddings, np.float32).reshape(-1, embedding_dim) if embedding_dim else None
    return Detections.from_masks(out_masks, out_classes, out_scores, out_names, image_size, embeddings)


def _matches(
    masks: list[CropMask],
    tile_of: list[int],
    class_ids: np.ndarray,
    windows: Sequence[Window],
    match_iou: float,
    match_containment: float,
    abut_ratio: float,
) -> list[tuple[int, int]]:
    """Pairs of masks (indices) from different tiles that are one object; one partner per mask and other tile."""
    boxes = np.array([m.window for m in masks], dtype=np.int64)
    # candidates: same class, other tile, windows overlapping or touching (abutting halves share no pixel)
    near = (
        (boxes[:, None, 0] <= boxes[None, :, 2])
        & (boxes[None, :, 0] <= boxes[:, None, 2])
        & (boxes[:, None, 1] <= boxes[None, :, 3])
        & (boxes[None, :, 1] <= boxes[:, None, 3])
    )
    tiles = np.array(tile_of)
    near &= (tiles[:, None] < tiles[None, :]) & (class_ids[:, None] == class_ids[None, :])
    scored = []
    for a, b in zip(*np.nonzero(near)):
        a, b = int(a), int(b)
        score = _same_object(masks[a], masks[b], windows[tile_of[a]], windows[tile_of[b]], match_iou,
                             match_containment, abut_ratio)
        if score > 0:
            scored.append((score, a, b))
    scored.sort(reverse=True)
    taken: set[tuple[int, int]] = set()  # (mask, other tile): each mask pairs once with each other tile
    pairs = []
    for _, a, b in scored:
        if (a, tile_of[b]) in taken or (b, tile_of[a]) in taken:
            continue
        taken.update({(a, tile_of[b]), (b, tile_of[a])})
        pairs.append((a, b))
    return pairs


def _same_object(
    a: CropMask, b: CropMask, wa: Window, wb: Window, match_iou: float, match_containment: float, abut_ratio: float
) -> float:
    """How surely two masks of two tiles are one object (0: not): their agreement inside the tiles' shared window.

    Ranked by IoU there, then by containment, so a whole copy pairs before a smaller one inside it.
    """
    shared = (max(wa[0], wb[0]), max(wa[1], wb[1]), min(wa[2], wb[2]), min(wa[3], wb[3]))
    if shared[2] > shared[0] and shared[3] > shared[1]:
        pa, pb = _inside(a, shared), _inside(b, shared)
        na, nb = np.count_nonzero(pa), np.count_nonzero(pb)
        if not na or not nb:
            return 0.0
        inter = np.count_nonzero(pa & pb)
        iou = inter / (na + nb - inter)
        contained = inter / min(na, nb)
        return iou + 1e-3 * contained if iou >= match_iou or contained >= match_containment else 0.0  # IoU first
    return _abutting(a, b, wa, wb, abut_ratio)


def _inside(mask: CropMask, window: Window) -> np.ndarray:
    """The mask's pixels inside ``window``, as a bool array of the window's shape."""
    x0, y0, x1, y1 = window
    return CropMask(mask.crop, mask.x0 - x0, mask.y0 - y0).to_full(y1 - y0, x1 - x0)


def _abutting(a: CropMask, b: CropMask, wa: Window, wb: Window, abut_ratio: float) -> float:
    """For tiles sharing an edge only: the share of the shorter edge line both masks cover across it (0 below the bar)."""
    if wa[2] == wb[0] or wb[2] == wa[0]:  # side by side: the seam is the column x = seam
        seam = wa[2] if wa[2] == wb[0] else wb[2]
        left, right = (a, b) if wa[2] == wb[0] else (b, a)
        line_l = _column(left, seam - 1, axis=0)
        line_r = _column(right, seam, axis=0)
    elif wa[3] == wb[1] or wb[3] == wa[1]:  # one above the other: the seam is the row y = seam
        seam = wa[3] if wa[3] == wb[1] else wb[3]
        top, bottom = (a, b) if wa[3] == wb[1] else (b, a)
        line_l = _column(top, seam - 1, axis=1)
        line_r = _column(bottom, seam, axis=1)
    else:
        return 0.0
    if line_l is None or line_r is None:
        return 0.0
    (start_l, on_l), (start_r, on_r) = line_l, line_r
    lo, hi = max(start_l, start_r), min(start_l + on_l.size, start_r + on_r.size)
    if hi <= lo:
        return 0.0
    both = np.count_nonzero(on_l[lo - start_l : hi - start_l] & on_r[lo - start_r : hi - start_r])
    ratio = both / min(np.count_nonzero(on_l), np.count_nonzero(on_r))
    return ratio if ratio >= abut_ratio else 0.0


def _column(mask: CropMask, at: int, axis: int) -> tuple[int, np.ndarray] | None:
    """The mask's pixels on frame column ``at`` (axis 0) or row ``at`` (axis 1): (first coordinate, bools); None: none."""
    if axis == 0:
        if not mask.x0 <= at < mask.x1:
            return None
        line, start = mask.crop[:, at - mask.x0], mask.y0
    else:
        if not mask.y0 <= at < mask.y1:
            return None
        line, start = mask.crop[at - mask.y0], mask.x0
    return (start, line) if line.any() else None


def union(masks: Sequence[CropMask]) -> CropMask:
    """The union of crop masks, as a tight crop."""
    if len(masks) == 1:
        return masks[0]
    x0, y0 = min(m.x0 for m in masks), min(m.y0 for m in masks)
    x1, y1 = max(m.x1 for m in masks), max(m.y1 for m in masks)
    canvas = np.zeros((y1 - y0, x1 - x0), dtype=bool)
    for m in masks:
        canvas[m.y0 - y0 : m.y1 - y0, m.x0 - x0 : m.x1 - x0] |= m.crop
    tight = CropMask.from_full(canvas)
    return CropMask(tight.crop, tight.x0 + x0, tight.y0 + y0)
