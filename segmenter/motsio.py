"""MOTS text formats, read strictly and written byte-exactly.

Two line layouts share the COCO RLE mask at the end:

- results / ground truth: ``frame obj_id class_id img_h img_w rle``
- detections:            ``frame class_id score img_h img_w rle``

Every line is validated when read (field count, numbers, and that the RLE's
run lengths add up to ``img_h * img_w``, which pycocotools does not check and
would otherwise decode out of bounds); a bad line is reported as ``file:line``.
Masks stay RLE strings until asked for, so reading a long file is cheap.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from common import InputError
from segmenter.masks import CropMask, rle_runs, rle_runs_batch


@dataclass(frozen=True, slots=True)
class MotsRecord:
    """One object in one frame of a result or ground-truth file."""

    frame: int
    obj_id: int
    class_id: int
    height: int
    width: int
    rle: str

    def mask(self) -> CropMask:
        return CropMask.from_rle({"size": [self.height, self.width], "counts": self.rle})


@dataclass(frozen=True, slots=True)
class MotsDetection:
    """One detection (no identity yet) in one frame of a detection file."""

    frame: int
    class_id: int
    score: float
    height: int
    width: int
    rle: str

    def mask(self) -> CropMask:
        return CropMask.from_rle({"size": [self.height, self.width], "counts": self.rle})


def rle_total(counts: str) -> int:
    """Sum of the run lengths of a compressed COCO RLE string (pycocotools' LEB128 variant).

    Raises ValueError on characters outside the alphabet, a truncated number or a negative run.
    """
    return int(rle_runs(counts).sum())


def _int(text: str, name: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"{name} must be an integer, got {text!r}") from None


def check_rle(height: int, width: int, rle: str) -> None:
    if height <= 0 or width <= 0:
        raise ValueError(f"image size must be positive, got {height}x{width}")
    total = rle_total(rle)
    if total != height * width:
        raise ValueError(f"RLE covers {total} pixels, expected img_h*img_w = {height * width}")


_CHECK_LINES = 4096  # lines whose masks are validated in one vectorised pass (bounds the temporary arrays)


class _RleChecker:
    """Validates the masks of a file's lines in batches; raises at the first bad one, naming its line.

    Line order is kept: :meth:`flush` runs before a line's own field error is raised,
    so a mask error on an earlier line is the one reported, as when lines were checked one by one.
    """

    def __init__(self, path: Path | str, keep_runs: bool = False) -> None:
        self.path, self.keep_runs = path, keep_runs
        self.lines: list[tuple[int, int, int, str]] = []  # (lineno, height, width, rle)
        self.runs: list[np.ndarray] = []  # with keep_runs: every checked batch's runs, compact
        self.counts: list[np.ndarray] = []  # ... and how many runs each of its lines has

    def add(self, lineno: int, height: int, width: int, rle: str) -> None:
        self.lines.append((lineno, height, width, rle))
        if len(self.lines) >= _CHECK_LINES:
            self.flush()

    def flush(self) -> None:
        lines, self.lines = self.lines, []
        if not lines:
            return
        sizes = np.array([(h, w) for _, h, w, _ in lines], dtype=np.int64)
        if (sizes > 0).all():
            try:
                runs, offsets = rle_runs_batch([rle for *_, rle in lines])
            except ValueError:
                pass
            else:
                sums = np.concatenate(([0], np.cumsum(runs)))
                if ((sums[offsets[1:]] - sums[offsets[:-1]]) == sizes[:, 0] * sizes[:, 1]).all():
                    if self.keep_runs:
                        self.runs.append(compact_runs(runs))
                        self.counts.append(np.diff(offsets))
                    return
        for lineno, height, width, rle in lines:  # something is wrong: find the first bad line and its message
            try:
                check_rle(height, width, rle)
            except ValueError as exc:
                raise InputError(f"{self.path}:{lineno}: {exc}") from None

    def kept_runs(self) -> tuple[np.ndarray, np.ndarray]:
        """Every checked line's runs (after :meth:`flush`): line ``i`` has ``runs[offsets[i]:offsets[i + 1]]``."""
        offsets = np.zeros(sum(c.size for c in self.counts) + 1, dtype=np.int64)
        if self.counts:
            np.cumsum(np.concatenate(self.counts), out=offsets[1:])
        return (np.concatenate(self.runs) if self.runs else np.zeros(0, dtype=np.int32)), offsets


def compact_runs(runs: np.ndarray) -> np.ndarray:
    """int32 runs where they fit (every frame under 2**31 pixels): a file's masks are kept as runs, not strings."""
    return runs.astype(np.int32) if runs.size == 0 or int(runs.max()) < 2**31 else runs.astype(np.int64)


def _lines(path: Path) -> Iterator[tuple[int, list[str]]]:
    path = Path(path)
    if not path.is_file():
        raise InputError(f"file not found: {path}")
    with path.open("r", encoding="ascii", errors="replace", newline="\n") as handle:
        for lineno, line in enumerate(handle, start=1):
            if line.strip():
                yield lineno, line.rstrip("\r\n").split(" ")


def read_mots(path: Path | str) -> list[MotsRecord]:
    """Read a MOTS result or ground-truth file (``frame obj_id class_id img_h img_w rle``)."""
    records = []
    checker = _RleChecker(path)
    for lineno, fields in _lines(Path(path)):
        try:
            if len(fields) != 6:
                raise ValueError(f"expected 6 fields 'frame obj_id class_id img_h img_w rle', got {len(fields)}")
            frame, obj_id, class_id, height, width = (
                _int(v, k) for v, k in zip(fields[:5], ("frame", "obj_id", "class_id", "img_h", "img_w"))
            )
        except ValueError as exc:
            checker.flush()
            raise InputError(f"{path}:{lineno}: {exc}") from None
        checker.add(lineno, height, width, fields[5])
        records.append(MotsRecord(frame, obj_id, class_id, height, width, fields[5]))
    checker.flush()
    return records


def read_mots_detections(path: Path | str) -> list[MotsDetection]:
    """Read a MOTS detection file (``frame class_id score img_h img_w rle``)."""
    return _read_detections(Path(path), _RleChecker(path))


def read_mots_detection_runs(path: Path | str) -> tuple[list[MotsDetection], np.ndarray, np.ndarray]:
    """:func:`read_mots_detections`, plus every line's run lengths as parsed while checking them.

    Line ``i``'s runs are ``runs[offsets[i]:offsets[i + 1]]``: the replay segmenter decodes
    crops from them without parsing the strings a second time.
    """
    checker = _RleChecker(path, keep_runs=True)
    records = _read_detections(Path(path), checker)
    return (records, *checker.kept_runs())


def _read_detections(path: Path, checker: _RleChecker) -> list[MotsDetection]:
    records = []
    for lineno, fields in _lines(path):
        try:
            if len(fields) != 6:
                raise ValueError(f"expected 6 fields 'frame class_id score img_h img_w rle', got {len(fields)}")
            frame, class_id = _int(fields[0], "frame"), _int(fields[1], "class_id")
            try:
                score = float(fields[2])
            except ValueError:
                raise ValueError(f"score must be a number, got {fields[2]!r}") from None
            height, width = _int(fields[3], "img_h"), _int(fields[4], "img_w")
        except ValueError as exc:
            checker.flush()
            raise InputError(f"{path}:{lineno}: {exc}") from None
        checker.add(lineno, height, width, fields[5])
        records.append(MotsDetection(frame, class_id, score, height, width, fields[5]))
    checker.flush()
    return records


def format_mots_line(frame: int, obj_id: int, class_id: int, rle: dict) -> str:
    """A result line; ``rle`` as from :meth:`CropMask.to_rle` (``size`` [h, w], ``counts`` str)."""
    height, width = rle["size"]
    counts = rle["counts"].decode("ascii") if isinstance(rle["counts"], bytes) else rle["counts"]
    return f"{frame} {obj_id} {class_id} {height} {width} {counts}"


def format_detection_line(frame: int, class_id: int, score: float, rle: dict) -> str:
    """A detection line, the input format of ``maskwatch track`` and the replay segmenter."""
    height, width = rle["size"]
    counts = rle["counts"].decode("ascii") if isinstance(rle["counts"], bytes) else rle["counts"]
    return f"{frame} {class_id} {score:.4f} {height} {width} {counts}"
