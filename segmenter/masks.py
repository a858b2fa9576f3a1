"""Compact instance masks: a boolean crop plus where it sits in the frame.

Full-frame boolean arrays cost H*W bytes per object (2 MB per object at 1080p),
so every mask in maskwatch is stored as the tight crop around its pixels and the
crop's top-left corner. IoU between two such masks only touches the pixels of
the overlap window, and RLE is produced only at the file boundary.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import cv2
import numpy as np


@dataclass(frozen=True, slots=True)
class CropMask:
    """A boolean mask stored as ``crop`` placed at ``(x0, y0)`` in a frame."""

    crop: np.ndarray  # (h, w) bool
    x0: int
    y0: int
    area: int = field(init=False, compare=False)  # pixel count, computed once: IoU needs it per pair
    _centroid: tuple[float, float] | None = field(init=False, compare=False, default=None, repr=False)
    _rle: tuple[int, int, str] | None = field(init=False, compare=False, default=None, repr=False)  # see remember_rle

    def __post_init__(self) -> None:
        object.__setattr__(self, "area", int(np.count_nonzero(self.crop)))

    def __reduce__(self) -> tuple:
        """Pickle the crop as packed bits, an eighth of its bytes.

        Masks cross process boundaries in bulk: the shared segmenter of ``serve``
        answers every camera over a socket, 50 masks of a 720p frame are about
        2.4 MB as bool bytes, and sending them took longer than unpacking costs.
        """
        return _unpickle, (np.packbits(self.crop), self.crop.shape, self.x0, self.y0)

    @property
    def x1(self) -> int:
        return self.x0 + self.crop.shape[1]

    @property
    def y1(self) -> int:
        return self.y0 + self.crop.shape[0]

    @property
    def window(self) -> tuple[int, int, int, int]:
        """Integer ``(x0, y0, x1, y1)`` with exclusive ends."""
        return self.x0, self.y0, self.x1, self.y1

    @classmethod
    def from_full(cls, mask: np.ndarray) -> CropMask:
        """Crop a full-frame mask to the bounding box of its pixels."""
        mask = np.asarray(mask, dtype=bool)
        rows = np.flatnonzero(mask.any(axis=1))
        if rows.size == 0:
            return cls(np.zeros((0, 0), dtype=bool), 0, 0)
        cols = np.flatnonzero(mask.any(axis=0))
        y0, y1, x0, x1 = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
        return cls(np.ascontiguousarray(mask[y0:y1, x0:x1]), int(x0), int(y0))

    @classmethod
    def from_rle(cls, rle: dict) -> CropMask:
        """Decode a COCO RLE (``{'size': [h, w], 'counts': str | bytes | list}``) straight into its crop.

        Raises ValueError when the counts are malformed or do not cover ``h * w`` pixels.
        """
        height, width = (int(v) for v in rle["size"])
        counts = rle["counts"]
        if isinstance(counts, str | bytes):
            return cls.from_rles([counts], height, width)[0]
        runs = np.asarray(counts, dtype=np.int64)
        if (runs < 0).any():
            raise ValueError("negative run length")
        return cls.from_runs(_checked_totals(runs, np.array([0, runs.size]), height, width), height)

    @classmethod
    def from_rles(cls, counts: Sequence[str] | Sequence[bytes], height: int, width: int) -> list[CropMask]:
        """Decode many compressed RLE strings of one frame size (a frame's masks) with one vectorised parse and fill."""
        runs, offsets = rle_runs_batch(counts)
        return cls.from_runs_batch(_checked_totals(runs, offsets, height, width), offsets, height)

    @classmethod
    def from_runs(cls, runs: np.ndarray, height: int) -> CropMask:
        """The crop of column-major run lengths (zeros first) in a frame ``height`` pixels tall."""
        return cls.from_runs_batch(runs, np.array([0, runs.size], dtype=np.int64), height)[0]

    @classmethod
    def from_runs_batch(cls, runs: np.ndarray, offsets: np.ndarray, height: int) -> list[CropMask]:
        """The crops of many masks' run lengths ``runs[offsets[i]:offsets[i + 1]]`` in a frame ``height`` pixels tall.

        Only the crop windows are written: every mask's ones-runs are placed in its crop's
        column-major layout, all crops side by side in one buffer filled by one ``np.repeat``
        (a run crossing into the next column implies a full-height crop, where it stays contiguous).
        """
        count = offsets.size - 1
        if runs.size == 0:
            return [cls(np.zeros((0, 0), dtype=bool), 0, 0) for _ in range(count)]
        ends = np.cumsum(runs)
        mask_of_run = np.repeat(np.arange(count), np.diff(offsets))
        ones = np.flatnonzero(((np.arange(runs.size) - offsets[mask_of_run]) & 1).astype(bool) & (runs > 0))
        owner = mask_of_run[ones]
        lengths = runs[ones]
        begins = ends[ones] - lengths - (ends[offsets[:-1] - 1] * (offsets[:-1] > 0))[owner]  # in the mask's frame
        col, top = np.divmod(begins, height)
        last_col, last_row = np.divmod(begins + lengths - 1, height)
        firsts = np.searchsorted(owner, np.arange(count))
        filled = np.flatnonzero(np.searchsorted(owner, np.arange(count), side="right") > firsts)
        if filled.size == 0:
            return [cls(np.zeros((0, 0), dtype=bool), 0, 0) for _ in range(count)]
        starts = firsts[filled]
        stops = np.append(starts[1:], ones.size)
        x0, x1 = col[starts], last_col[stops - 1] + 1
        crossing = np.maximum.reduceat(last_col - col, starts) > 0  # only a full-height crop can hold such a run
        y0 = np.where(crossing, 0, np.minimum.reduceat(top, starts))
        y1 = np.where(crossing, height, np.maximum.reduceat(last_row, starts) + 1)
        widths, heights = x1 - x0, y1 - y0
        sizes = widths * heights
        bases = np.cumsum(sizes) - sizes
        rank = np.repeat(np.arange(filled.size), stops - starts)  # of each ones-run's mask among the filled ones
        where = bases[rank] + (col - x0[rank]) * heights[rank] + (top - y0[rank])
        bounds = np.empty(2 * where.size + 2, dtype=np.int64)
        bounds[0], bounds[-1] = 0, bases[-1] + sizes[-1]
        bounds[1:-1:2], bounds[2:-1:2] = where, where + lengths
        values = np.zeros(bounds.size - 1, dtype=np.uint8)
        values[1::2] = 1
        flat = np.repeat(values, np.diff(bounds))
        out = [cls(np.zeros((0, 0), dtype=bool), 0, 0)] * count
        for k, base, w, h, left, upper in zip(
            filled.tolist(), bases.tolist(), widths.tolist(), heights.tolist(), x0.tolist(), y0.tolist()
        ):
            out[k] = cls(cv2.transpose(flat[base : base + w * h].reshape(w, h)).view(bool), left, upper)
        return out

    def to_full(self, height: int, width: int) -> np.ndarray:
        """Paste into an ``(height, width)`` frame, clipping what falls outside."""
        out = np.zeros((height, width), dtype=bool)
        cx0, cy0 = max(self.x0, 0), max(self.y0, 0)
        cx1, cy1 = min(self.x1, width), min(self.y1, height)
        if cx1 > cx0 and cy1 > cy0:
            out[cy0:cy1, cx0:cx1] = self.crop[cy0 - self.y0 : cy1 - self.y0, cx0 - self.x0 : cx1 - self.x0]
        return out

    def to_rle(self, height: int, width: int) -> dict:
        """COCO RLE of the mask in an ``(height, width)`` frame; counts as str, as pycocotools writes them."""
        return {"size": [height, width], "counts": encode_rles([self], height, width)[0]}

    def clipped(self, height: int, width: int) -> CropMask:
        """The part inside an ``(height, width)`` frame (itself when already inside)."""
        if self.x0 >= 0 and self.y0 >= 0 and self.x1 <= width and self.y1 <= height:
            return self
        x0, y0, x1, y1 = max(self.x0, 0), max(self.y0, 0), min(self.x1, width), min(self.y1, height)
        if x1 <= x0 or y1 <= y0:
            return CropMask(np.zeros((0, 0), dtype=bool), 0, 0)
        return CropMask(self.crop[y0 - self.y0 : y1 - self.y0, x0 - self.x0 : x1 - self.x0], x0, y0)

    def box(self) -> np.ndarray:
        """Tight xyxy box of the mask pixels (float32, exclusive right/bottom)."""
        height, width = self.crop.shape
        return np.array((self.x0, self.y0, self.x0 + width, self.y0 + height), dtype=np.float32)

    def centroid(self) -> tuple[float, float]:
        """Mean pixel position, computed once (zones, lines, speeds and writers all ask for it)."""
        if self._centroid is None:
            if self.area == 0:
                value = (float("nan"), float("nan"))
            else:  # image moments of the 0/1 crop: several times faster than averaging np.nonzero
                m = cv2.moments(self.crop.view(np.uint8))
                value = (m["m10"] / m["m00"] + self.x0, m["m01"] / m["m00"] + self.y0)
            object.__setattr__(self, "_centroid", value)
        return self._centroid

    def placed(self, x0: int, y0: int) -> CropMask:
        """The same crop placed at ``(x0, y0)``, its area carried over rather than counted again (a per-track hot path)."""
        mask = object.__new__(CropMask)
        for name, value in (("crop", self.crop), ("x0", x0), ("y0", y0), ("area", self.area)):
            object.__setattr__(mask, name, value)
        object.__setattr__(mask, "_centroid", None)
        object.__setattr__(mask, "_rle", None)
        return mask

    def remember_rle(self, counts: str, height: int, width: int) -> None:
        """Keep ``counts``, this mask's compressed RLE in an ``(height, width)`` frame, for :func:`encode_rles` to re-emit.

        Only for the string :func:`encode_rles` would write (see :func:`canonical_rles`): a replayed
        detection that reaches the output unchanged is then written without encoding it again.
        """
        object.__setattr__(self, "_rle", (height, width, counts))

    def moved(self, x0: int, y0: int, width: int, height: int) -> CropMask:
        """The same shape placed at ``(x0, y0)`` and resized to ``width``×``height``.

        Used to predict where a track's mask will be: the last mask is carried by
        the Kalman box motion (translation and scale) rather than re-segmented.
        """
        width, height = max(int(width), 1), max(int(height), 1)
        crop = self.crop
        if crop.size and (crop.shape[1] != width or crop.shape[0] != height):
            crop = cv2.resize(crop.view(np.uint8), (width, height), interpolation=cv2.INTER_NEAREST).view(bool)
            return CropMask(crop, int(x0), int(y0))
        return self.placed(int(x0), int(y0))


def frame_runs_batch(masks: Sequence[CropMask], height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Column-major run lengths (zeros first, no empty last run) of many masks in an ``(height, width)`` frame.

    As pycocotools counts them, ``runs[offsets[i]:offsets[i + 1]]``. Run boundaries are
    found on the crops alone, each with a zero row above and below (the frame around a
    crop is zeros), by comparing rows in place (no transpose), then placed in the frame
    and sorted into column-major order for all masks at once: no frame-tall array.
    """
    crops = [mask.clipped(height, width) for mask in masks]
    pixels = height * width
    found = []
    for rank, m in enumerate(crops):
        if m.area:
            crop_h, crop_w = m.crop.shape
            padded = np.zeros((crop_h + 2, crop_w), dtype=bool)
            padded[1:-1] = m.crop
            flat = padded.ravel()
            row, col = np.divmod(np.flatnonzero(flat[crop_w:] != flat[:-crop_w]), crop_w)
            found.append((m.x0 + col) * height + (m.y0 + rank * (pixels + 1)) + row)  # masks apart, in order
    keys = np.sort(np.concatenate(found)) if found else np.zeros(0, dtype=np.int64)
    owner, bounds = np.divmod(keys, pixels + 1)
    # a full-height crop: a run ending at a column's bottom and one starting at the next top are one run
    joined = np.flatnonzero(keys[1:] == keys[:-1])
    if joined.size:
        drop = np.concatenate((joined, joined + 1))
        bounds, owner = np.delete(bounds, drop), np.delete(owner, drop)
    # every mask's bounds between a 0 and height * width, then differences within each mask
    per_mask = np.bincount(owner, minlength=len(crops))
    starts = np.cumsum(per_mask) - per_mask + 2 * np.arange(len(crops))
    framed = np.empty(bounds.size + 2 * len(crops), dtype=np.int64)
    framed[starts], framed[starts + per_mask + 1] = 0, pixels
    framed[np.arange(bounds.size) + 2 * owner + 1] = bounds
    runs = np.diff(framed)
    keep = np.ones(runs.size, dtype=bool)
    keep[starts[1:] - 1] = False  # from one mask's end to the next one's start
    last = starts + per_mask
    keep[last[runs[last] == 0]] = False  # as pycocotools writes it: no empty run at the end
    offsets = np.zeros(len(crops) + 1, dtype=np.int64)
    offsets[1:] = np.cumsum(per_mask + 1 - (runs[last] == 0))
    return runs[keep], offsets


def encode_rles(masks: Sequence[CropMask], height: int, width: int) -> list[str]:
    """Compressed COCO RLE strings of many masks of one frame size, byte-identical to pycocotools' ``encode``.

    A mask that remembers its string for this frame size (:meth:`CropMask.remember_rle`) gives it as it is.
    """
    known = [m._rle[2] if m._rle is not None and m._rle[:2] == (height, width) else None for m in masks]
    todo = [i for i, counts in enumerate(known) if counts is None]
    if todo:
        encoded = encode_runs_batch(*frame_runs_batch([masks[i] for i in todo], height, width))
        for i, counts in zip(todo, encoded):
            known[i] = counts
    return known


_CHUNK_LIMITS = 16 << (5 * np.arange(12, dtype=np.int64))  # a number below 16 * 32**k needs k + 1 characters


def encode_runs_batch(runs: np.ndarray, offsets: np.ndarray) -> list[str]:
    """Compressed COCO RLE strings of many run-length arrays ``runs[offsets[i]:offsets[i + 1]]`` (int64).

    The inverse of :func:`rle_runs_batch`: runs after the third become differences to
    the run two back, and every number is written as 5-bit chunks, low first, as
    ``48 + chunk`` with 0x20 set on all but the last (whose 0x10 bit is the sign);
    all numbers at once, as a table of chunks with the unused ones dropped.
    """
    if runs.size == 0:
        return [""] * (offsets.size - 1)
    _, values, chars = _rle_numbers(runs, offsets)
    positions = np.arange(int(chars.max()))
    table = ((values[:, None] >> (5 * positions)) & 0x1F).astype(np.uint8)
    table += np.where(positions < (chars - 1)[:, None], np.uint8(48 + 0x20), np.uint8(48))
    text = table[positions < chars[:, None]].tobytes().decode("ascii")
    ends = np.concatenate(([0], np.cumsum(chars)))[offsets].tolist()
    return [text[start:stop] for start, stop in zip(ends[:-1], ends[1:])]


def _rle_numbers(runs: np.ndarray, offsets: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per run: its index in its mask, the number a compressed RLE writes for it and how many characters that takes.

    Runs after the third are written as differences to the run two back; a number in
    ``[-16 * 32**k, 16 * 32**k)`` takes ``k + 1`` characters.
    """
    index = np.arange(runs.size) - np.repeat(offsets[:-1], np.diff(offsets))
    values = runs.astype(np.int64)
    later = np.flatnonzero(index > 2)
    values[later] -= runs[later - 2]
    magnitude = np.where(values < 0, ~values, values)
    return index, values, np.searchsorted(_CHUNK_LIMITS, magnitude, side="right") + 1


def canonical_rles(counts: Sequence[str], runs: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Which compressed RLE strings are exactly what :func:`encode_rles` writes for their masks (bool per string).

    ``runs[offsets[i]:offsets[i + 1]]`` are string ``i``'s parsed runs. A mask has one run-length form
    (no empty run but the first) and each number one shortest spelling, which is at most as long as any
    other: so a string is canonical when its runs have that form and it is as long as their encoding.
    """
    index, _, chars = _rle_numbers(runs, offsets)
    owner = np.repeat(np.arange(len(counts)), np.diff(offsets))
    shortest = np.bincount(owner, weights=chars, minlength=len(counts))
    empty_runs = np.bincount(owner, weights=(runs == 0) & (index > 0), minlength=len(counts))
    lengths = np.fromiter(map(len, counts), dtype=np.int64, count=len(counts))
    return (lengths == shortest) & (empty_runs == 0)


def rle_runs(counts: str | bytes) -> np.ndarray:
    """Run lengths (int64) of one compressed COCO RLE string; see :func:`rle_runs_batch`."""
    return rle_runs_batch([counts])[0]


def rle_runs_batch(counts: Sequence[str] | Sequence[bytes]) -> tuple[np.ndarray, np.ndarray]:
    """Run lengths of many compressed COCO RLE strings in one vectorised pass: ``runs[offsets[i]:offsets[i + 1]]``.

    pycocotools' variant of LEB128: each character is ``48 + 6 bits``, bit 0x20
    continues the number, 5-bit chunks come low first, 0x10 in the last chunk
    makes it negative, and runs after the third are stored as differences to the
    run two back. Raises ValueError (the messages of :func:`_rle_runs_exact`, for
    the first bad string) on characters outside the alphabet, a truncated number
    or a negative run.
    """
    lengths = np.fromiter(map(len, counts), dtype=np.int64, count=len(counts))
    try:
        data = "".join(counts).encode("ascii") if counts and isinstance(counts[0], str) else b"".join(counts)
    except UnicodeEncodeError:
        return _rle_runs_exact_batch(counts)
    codes = np.frombuffer(data, dtype=np.uint8)
    if codes.size and (codes.min() < 48 or codes.max() >= 112):
        return _rle_runs_exact_batch(counts)
    digits6 = codes - np.uint8(48)
    last = np.flatnonzero(digits6 < 0x20)  # the last character of every number: no continuation bit
    char_ends = np.cumsum(lengths)
    offsets = np.zeros(len(counts) + 1, dtype=np.int64)
    offsets[1:] = np.searchsorted(last, char_ends)  # numbers ending before each string's end
    if (lengths > 0).any() and (digits6[char_ends[lengths > 0] - 1] >= 0x20).any():
        return _rle_runs_exact_batch(counts)  # a string ends inside a number
    first = np.empty_like(last)
    first[:1], first[1:] = 0, last[:-1] + 1
    digits = last - first + 1
    longest = int(digits.max()) if last.size else 0
    if longest > 12:  # 5 bits a digit: longer numbers leave int64
        return _rle_runs_exact_batch(counts)
    chunks = digits6 & np.uint8(0x1F)
    raw = chunks[first].astype(np.int64)
    for k in range(1, longest):  # the k-th chunk of the numbers that have one
        longer = np.flatnonzero(digits > k)
        raw[longer] |= chunks[first[longer] + k].astype(np.int64) << (5 * k)
    negative = np.flatnonzero(chunks[last] & 0x10)
    raw[negative] -= np.left_shift(1, 5 * digits[negative])
    if float(np.abs(raw).sum()) >= 2.0**62:  # partial sums below could leave int64
        return _rle_runs_exact_batch(counts)
    index = np.arange(raw.size) - np.repeat(offsets[:-1], np.diff(offsets))  # of each number in its string
    # runs[m] += runs[m - 2] for m > 2: running sums over the odd runs from run 1 and over the even ones from run 2
    runs = raw.copy()
    for parity in (1, 0):
        chain = np.flatnonzero((index % 2 == parity) & (index >= 1))
        sums = np.cumsum(raw[chain])
        start = index[chain] <= 2
        before = sums[start] - raw[chain][start]  # what the chains before this one summed up
        runs[chain] = sums - np.repeat(before, np.diff(np.append(np.flatnonzero(start), chain.size)))
    if (runs < 0).any():
        return _rle_runs_exact_batch(counts)
    return runs, offsets


def _rle_runs_exact_batch(counts: Sequence[str] | Sequence[bytes]) -> tuple[np.ndarray, np.ndarray]:
    """:func:`rle_runs_batch` string by string, in Python: the first bad string raises its error."""
    parts = [_rle_runs_exact(c if isinstance(c, str) else c.decode("latin-1")) for c in counts]
    offsets = np.zeros(len(parts) + 1, dtype=np.int64)
    offsets[1:] = np.cumsum([p.size for p in parts])
    return (np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)), offsets


def _rle_runs_exact(counts: str) -> np.ndarray:
    """Character by character, as pycocotools reads it: the error messages, and numbers too long for int64."""
    runs: list[int] = []
    i, n = 0, len(counts)
    while i < n:
        value, shift, more = 0, 0, True
        while more:
            if i >= n:
                raise ValueError("truncated run length")
            c = ord(counts[i]) - 48
            if not 0 <= c < 64:
                raise ValueError(f"invalid character {counts[i]!r}")
            value |= (c & 0x1F) << (5 * shift)
            more = bool(c & 0x20)
            i += 1
            shift += 1
            if not more and c & 0x10:
                value |= -1 << (5 * shift)
        if len(runs) > 2:
            value += runs[-2]  # runs after the third are stored as differences to the run two back
        if value < 0:
            raise ValueError("negative run length")
        runs.append(value)
    return np.array(runs, dtype=object if runs and max(runs) >= 2**62 else np.int64)


def _checked_totals(runs: np.ndarray, offsets: np.ndarray, height: int, width: int) -> np.ndarray:
    """``runs``, after checking that every mask's runs cover ``height * width`` pixels (pycocotools does not)."""
    totals = np.diff(np.concatenate(([0], np.cumsum(runs)))[offsets])
    bad = np.flatnonzero(totals != height * width)
    if bad.size:
        raise ValueError(f"RLE covers {totals[bad[0]]} pixels, expected img_h*img_w = {height * width}")
    return runs


def _unpickle(bits: np.ndarray, shape: tuple[int, int], x0: int, y0: int) -> CropMask:
    return CropMask(np.unpackbits(bits, count=shape[0] * shape[1]).reshape(shape).view(bool), x0, y0)


def mask_iou(a: CropMask, b: CropMask) -> float:
    """IoU of two crop masks, touching only their overlap window."""
    return float(mask_iou_matrix([a], [b])[0, 0])


def box_overlap_pairs(boxes_a: np.ndarray, boxes_b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Index pairs ``(i, j)`` whose xyxy boxes intersect with positive area."""
    if len(boxes_a) == 0 or len(boxes_b) == 0:
        return np.zeros(0, dtype=np.intp), np.zeros(0, dtype=np.intp)
    a, b = boxes_a[:, None, :], boxes_b[None, :, :]
    overlap = (np.minimum(a[..., 2], b[..., 2]) > np.maximum(a[..., 0], b[..., 0])) & (
        np.minimum(a[..., 3], b[..., 3]) > np.maximum(a[..., 1], b[..., 1])
    )
    return np.nonzero(overlap)


def mask_iou_matrix(masks_a: list[CropMask], masks_b: list[CropMask], *, min_iou: float = 0.0) -> np.ndarray:
    """Pairwise mask IoU, computed only for pairs whose crop windows overlap and that can reach ``min_iou``.

    A pair's intersection is at most ``min(area_a, area_b, window overlap)``, which bounds
    its IoU from above; pairs whose bound is below ``min_iou`` stay 0 without touching pixels.
    Every other pair gets its exact IoU: the windows are compared all at once, and each
    remaining pair costs one OpenCV AND-and-count over its overlap window (a hot path).
    """
    out = np.zeros((len(masks_a), len(masks_b)), dtype=np.float64)
    if not masks_a or not masks_b:
        return out
    wa, wb = _windows(masks_a), _windows(masks_b)
    overlap_x = (wa[:, None, 0] < wb[None, :, 2]) & (wb[None, :, 0] < wa[:, None, 2])
    rows, cols = np.nonzero(overlap_x & (wa[:, None, 1] < wb[None, :, 3]) & (wb[None, :, 1] < wa[:, None, 3]))
    a, b = wa[rows], wb[cols]
    window = np.hstack([np.maximum(a[:, :2], b[:, :2]), np.minimum(a[:, 2:4], b[:, 2:4])])  # of each pair's overlap
    size = window[:, 2:] - window[:, :2]
    inter = np.minimum(np.minimum(a[:, 4], b[:, 4]), size[:, 0] * size[:, 1])
    union = a[:, 4] + b[:, 4] - inter
    # an upper bound of 0 leaves the exact IoU 0; else union > 0, divided as the exact IoU is divided (rounding is
    # monotone, so no pair reaching min_iou is dropped)
    keep = np.flatnonzero((inter > 0) & (inter / np.maximum(union, 1) >= min_iou))
    if not keep.size:
        return out
    corners = np.hstack([rows[:, None], cols[:, None], window - a[:, _XYXY], window - b[:, _XYXY]])
    inter = np.array(
        [
            cv2.countNonZero(
                cv2.bitwise_and(
                    masks_a[i].crop[ta:da, la:ra].view(np.uint8), masks_b[j].crop[tb:db, lb:rb].view(np.uint8)
                )
            )
            for i, j, la, ta, ra, da, lb, tb, rb, db in corners[keep].tolist()
        ],
        dtype=np.int64,
    )
    out[rows[keep], cols[keep]] = inter / (a[keep, 4] + b[keep, 4] - inter)  # both areas > 0: so is the union
    return out


_XYXY = [0, 1, 0, 1]  # a window's corner columns: (x0, y0) twice


def _windows(masks: Sequence[CropMask]) -> np.ndarray:
    """``(n, 5)`` int64: every mask's window ``x0, y0, x1, y1`` (exclusive ends) and its area."""
    return np.array(
        [(m.x0, m.y0, m.x0 + m.crop.shape[1], m.y0 + m.crop.shape[0], m.area) for m in masks], dtype=np.int64
    ).reshape(-1, 5)


def buffered_box_iou(boxes_a: np.ndarray, boxes_b: np.ndarray, buffer: float) -> np.ndarray:
    """IoU of xyxy boxes each grown by ``buffer`` × its width/height on every side.

    Buffered IoU (C-BIoU) still overlaps when a small object moved more than its
    own size between frames, where plain IoU (mask or box) is already zero.
    """
    def grow(b: np.ndarray) -> np.ndarray:
        w, h = b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]
        return np.stack([b[:, 0] - buffer * w, b[:, 1] - buffer * h, b[:, 2] + buffer * w, b[:, 3] + buffer * h], 1)

    a, b = grow(np.asarray(boxes_a, np.float64).reshape(-1, 4)), grow(np.asarray(boxes_b, np.float64).reshape(-1, 4))
    iw = np.clip(np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0]), 0, None)
    ih = np.clip(np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1]), 0, None)
    inter = iw * ih
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = area_a[:, None] + area_b[None, :] - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)
