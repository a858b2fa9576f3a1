"""MOTS text formats: strict reading (file:line errors) and byte-exact writing."""

from __future__ import annotations

import numpy as np
import pytest
from pycocotools import mask as mask_utils

from common import InputError
from segmenter.masks import CropMask
from segmenter.motsio import format_detection_line, format_mots_line, read_mots, read_mots_detections, rle_total


def write_round_trip(records, path):
    """Decode every mask to a crop, re-encode it and write the file again."""
    with path.open("w") as handle:
        for r in records:
            handle.write(format_mots_line(r.frame, r.obj_id, r.class_id, r.mask().to_rle(r.height, r.width)) + "\n")


def test_round_trip_is_byte_exact_on_mots20_gt(shared_data, tmp_path):
    gt = shared_data / "mots20_05" / "gt.txt"
    records = read_mots(gt)
    assert len(records) == 7372 and {r.class_id for r in records} == {2, 10}
    out = tmp_path / "gt.txt"
    write_round_trip(records, out)
    assert out.read_bytes() == gt.read_bytes()


def test_round_trip_on_generated_masks(tmp_path):
    rng = np.random.default_rng(0)
    lines = []
    for frame in range(1, 6):
        for obj in range(3):
            full = np.zeros((40, 60), bool)
            x, y = rng.integers(0, 40), rng.integers(0, 25)
            full[y : y + 12, x : x + 15] = rng.random((12, 15))[: 40 - y, : 60 - x] > 0.3
            lines.append(format_mots_line(frame, 100 + obj, 2, CropMask.from_full(full).to_rle(40, 60)))
    path = tmp_path / "a.txt"
    path.write_text("\n".join(lines) + "\n")
    again = tmp_path / "b.txt"
    write_round_trip(read_mots(path), again)
    assert again.read_bytes() == path.read_bytes()


def test_rle_total_agrees_with_pycocotools():
    rng = np.random.default_rng(1)
    for _ in range(50):
        h, w = rng.integers(1, 50, 2)
        m = rng.random((h, w)) > rng.random()
        rle = mask_utils.encode(np.asfortranarray(m.astype(np.uint8)))
        assert rle_total(rle["counts"].decode()) == h * w


def test_detection_lines_round_trip(tmp_path):
    m = CropMask(np.ones((3, 4), bool), 2, 1)
    path = tmp_path / "det.txt"
    path.write_text(format_detection_line(7, 2, 0.87654, m.to_rle(10, 12)) + "\n")
    (d,) = read_mots_detections(path)
    assert (d.frame, d.class_id, d.height, d.width) == (7, 2, 10, 12) and d.score == pytest.approx(0.8765)
    assert np.array_equal(d.mask().to_full(10, 12), m.to_full(10, 12))


@pytest.mark.parametrize(
    "line, message",
    [
        ("1 2 3 4 4", "expected 6 fields"),
        ("x 2 2 4 4 `0", "frame must be an integer"),
        ("1 2 2 4 4 `1", "RLE covers"),
        ("1 2 2 4 4 ~~", "invalid character"),
        ("1 2 2 0 4 `0", "image size"),
    ],
)
def test_malformed_gt_lines_name_file_and_line(tmp_path, line, message):
    path = tmp_path / "gt.txt"
    path.write_text("1 5 2 4 4 `0\n\n" + line + "\n")
    with pytest.raises(InputError, match=rf"gt\.txt:3: .*{message}"):
        read_mots(path)


def test_malformed_detection_score(tmp_path):
    path = tmp_path / "det.txt"
    path.write_text("1 2 high 4 4 `0\n")
    with pytest.raises(InputError, match=r"det\.txt:1: score must be a number"):
        read_mots_detections(path)


def test_missing_file(tmp_path):
    with pytest.raises(InputError, match="not found"):
        read_mots(tmp_path / "nope.txt")


def exact_total(counts: str) -> int:
    """The character-by-character reading the vectorised one must agree with, error messages included."""
    from segmenter.masks import _rle_runs_exact

    return int(_rle_runs_exact(counts).sum())


def outcome(function, counts):
    try:
        return function(counts)
    except ValueError as exc:
        return str(exc)


def test_rle_total_and_its_errors_agree_with_the_character_loop():
    rng = np.random.default_rng(2)
    alphabet = np.array([chr(c) for c in range(40, 120)])  # in and around the 48..111 alphabet
    cases = ["", "0", "P", "1P", "~~", "`0", "0a", "0" * 13 + "1", "o" * 12 + "0", "55", "5:", "12345"]
    for _ in range(3000):
        m = rng.random(tuple(int(v) for v in rng.integers(1, 30, 2))) > rng.random()
        good = mask_utils.encode(np.asfortranarray(m.astype(np.uint8)))["counts"].decode("ascii")
        cases.append(good)
        chars = list(good)
        for _ in range(int(rng.integers(1, 3))):  # mutated: bad characters, cut numbers, other runs
            chars[int(rng.integers(0, len(chars)))] = str(rng.choice(alphabet))
        cases.append("".join(chars))
        cases.append(good[: int(rng.integers(0, len(good) + 1))])
    errors = 0
    for counts in cases:
        expected = outcome(exact_total, counts)
        assert outcome(rle_total, counts) == expected, counts
        errors += isinstance(expected, str)
    assert errors > 1000  # the mutations did reach every error


def test_batched_runs_equal_string_by_string():
    from segmenter.masks import _rle_runs_exact, rle_runs_batch

    rng = np.random.default_rng(4)
    strings = ["", "0"]
    for _ in range(200):
        m = rng.random(tuple(int(v) for v in rng.integers(1, 40, 2))) > rng.random()
        strings.append(mask_utils.encode(np.asfortranarray(m.astype(np.uint8)))["counts"].decode("ascii"))
    strings.append("")
    runs, offsets = rle_runs_batch(strings)
    assert offsets[0] == 0 and offsets[-1] == runs.size and len(offsets) == len(strings) + 1
    for i, counts in enumerate(strings):
        assert runs[offsets[i] : offsets[i + 1]].tolist() == _rle_runs_exact(counts).tolist()
    bytes_runs, bytes_offsets = rle_runs_batch([s.encode("ascii") for s in strings])
    assert np.array_equal(bytes_runs, runs) and np.array_equal(bytes_offsets, offsets)


@pytest.mark.parametrize(
    "rle, message",
    [
        ("`P", "truncated run length"),
        ("`0\u00e9", "invalid character"),
        ("111N", "negative run length"),
        ("o" * 13 + "1", f"RLE covers {2**66 - 1} pixels"),  # past int64: read character by character
        ("4", "RLE covers 4 pixels, expected img_h\\*img_w = 16"),
    ],
)
def test_bad_masks_are_reported_at_their_line_in_line_order(tmp_path, monkeypatch, rle, message):
    import segmenter.motsio as motsio

    monkeypatch.setattr(motsio, "_CHECK_LINES", 2)  # batches end inside the file
    good = "1 5 2 4 4 `0"
    path = tmp_path / "gt.txt"
    path.write_text("\n".join([good, good, good, f"1 6 2 4 4 {rle}", "x 2 2 4 4 `0"]) + "\n", encoding="utf-8")
    with pytest.raises(InputError, match=rf"gt\.txt:4: {message}"):  # line 4's mask before line 5's field error
        read_mots(path)
    det = tmp_path / "det.txt"
    det.write_text("\n".join(["1 2 0.5 4 4 `0", f"1 2 0.5 4 4 {rle}"]) + "\n", encoding="utf-8")
    with pytest.raises(InputError, match=rf"det\.txt:2: {message}"):
        read_mots_detections(det)


def test_detection_runs_are_kept_from_the_check_across_batches(tmp_path, monkeypatch):
    import segmenter.motsio as motsio
    from segmenter.masks import rle_runs_batch

    monkeypatch.setattr(motsio, "_CHECK_LINES", 3)  # several checked batches
    rng = np.random.default_rng(9)
    lines = []
    for frame in range(1, 12):
        full = rng.random((7, 9)) > rng.random()
        lines.append(format_detection_line(frame, 1, 0.5, CropMask.from_full(full).to_rle(7, 9)))
    path = tmp_path / "det.txt"
    path.write_text("\n".join(lines) + "\n")
    records, runs, offsets = motsio.read_mots_detection_runs(path)
    assert records == read_mots_detections(path) and runs.dtype == np.int32
    expected, expected_offsets = rle_runs_batch([r.rle for r in records])
    assert np.array_equal(runs, expected) and np.array_equal(offsets, expected_offsets)
