"""Score MOTS results with TrackEval (HOTA, DetA, AssA, MOTSA, IDF1, ID switches).

TrackEval wants its benchmark folder layout; this module builds it in a
temporary directory for one sequence (gt file + result file), runs the
evaluator quietly on one process and returns a flat dict. The metrics code is
TrackEval's own, untouched: only the dataset plumbing lives here. Inputs are
checked first, and anything TrackEval still rejects is re-raised as one
:class:`InputError` line, never as its traceback.
"""

from __future__ import annotations

import contextlib
import io
import shutil
import tempfile
from pathlib import Path
from typing import Literal

import trackeval

from common import InputError
from segmenter.motsio import MotsRecord, read_mots

Format = Literal["mots20", "kitti"]
CLASSES = {"mots20": ["pedestrian"], "kitti": ["car", "pedestrian"]}
_CLASS_IDS = {"car": 1, "pedestrian": 2}  # both benchmarks' numbering
_FIRST_FRAME = {"mots20": 1, "kitti": 0}


def flatten(result: dict) -> dict[str, float]:
    hota, clear, identity = result["HOTA"], result["CLEAR"], result["Identity"]
    return {
        "HOTA": float(hota["HOTA"].mean()) * 100,
        "DetA": float(hota["DetA"].mean()) * 100,
        "AssA": float(hota["AssA"].mean()) * 100,
        "MOTSA": float(clear["MOTA"]) * 100,  # TrackEval's MOTS datasets compute MOTA on masks: that is MOTSA
        "IDF1": float(identity["IDF1"]) * 100,
        "IDSW": int(clear["IDSW"]),
    }


def _layout(root: Path, gt_path: Path, pred_path: Path, fmt: Format, seq: str) -> dict:
    """Copy the two files where TrackEval looks for them; returns the dataset config."""
    if fmt == "mots20":
        gt_file = root / "gt" / seq / "gt" / "gt.txt"
    else:
        gt_file = root / "gt" / "label_02" / f"{seq}.txt"
    pred_file = root / "trackers" / "maskwatch" / "data" / f"{seq}.txt"
    gt_file.parent.mkdir(parents=True)
    pred_file.parent.mkdir(parents=True)
    shutil.copyfile(gt_path, gt_file)
    shutil.copyfile(pred_path, pred_file)
    config = {
        "GT_FOLDER": str(root / "gt"),
        "TRACKERS_FOLDER": str(root / "trackers"),
        "TRACKERS_TO_EVAL": ["maskwatch"],
        "CLASSES_TO_EVAL": CLASSES[fmt],
        "PRINT_CONFIG": False,
    }
    if fmt == "mots20":
        config["SKIP_SPLIT_FOL"] = True
    return config


METRICS = (trackeval.metrics.HOTA, trackeval.metrics.CLEAR, trackeval.metrics.Identity)


def evaluate_mots(gt_path: Path | str, pred_path: Path | str, fmt: Format = "mots20", seq_name: str = "seq") -> dict[str, float]:
    """Metrics of ``pred_path`` against ``gt_path`` (MOTS txt, one sequence).

    For ``mots20`` (frames from 1) the class is pedestrian. For ``kitti`` (frames
    from 0) the plain keys are the detection-weighted average over car and
    pedestrian, and ``car/HOTA``, ``pedestrian/HOTA``… give each class.
    """
    combined, metrics = _evaluate(gt_path, pred_path, fmt, seq_name, "COMBINED_SEQ")
    if fmt == "mots20":
        return flatten(combined["pedestrian"])
    both = {m.get_name(): m.combine_classes_det_averaged({c: combined[c][m.get_name()] for c in CLASSES["kitti"]}) for m in metrics}
    out = flatten(both)
    for cls in CLASSES["kitti"]:
        out.update({f"{cls}/{k}": v for k, v in flatten(combined[cls]).items()})
    return out


def sequence_results(gt_path: Path | str, pred_path: Path | str, fmt: Format, seq_name: str = "seq") -> dict[str, dict]:
    """TrackEval's raw results of one sequence (class → metric name → values), to combine over many as a benchmark does."""
    per_seq, _ = _evaluate(gt_path, pred_path, fmt, seq_name, seq_name)
    return {cls: {m.__name__: per_seq[cls][m.__name__] for m in METRICS} for cls in CLASSES[fmt]}


def _evaluate(gt_path: Path | str, pred_path: Path | str, fmt: Format, seq_name: str, key: str) -> tuple[dict, list]:
    """Check both files, run TrackEval on them quietly; returns the results under ``key`` and the metric objects."""
    if fmt not in _FIRST_FRAME:
        raise InputError(f"unknown format {fmt!r}: expected one of {', '.join(_FIRST_FRAME)}")
    gt_path, pred_path = Path(gt_path), Path(pred_path)
    gt = read_mots(gt_path)  # validates, and tells the sequence length
    pred = read_mots(pred_path)
    if not gt:
        raise InputError(f"{gt_path}: ground truth is empty")
    last = _check_fit(gt, pred, gt_path, pred_path, fmt)
    length = last - _FIRST_FRAME[fmt] + 1
    eval_config = trackeval.Evaluator.get_default_eval_config()
    eval_config.update(
        USE_PARALLEL=False, PRINT_RESULTS=False, PRINT_CONFIG=False, TIME_PROGRESS=False, OUTPUT_SUMMARY=False,
        OUTPUT_DETAILED=False, PLOT_CURVES=False, PRINT_ONLY_COMBINED=True, BREAK_ON_ERROR=True, LOG_ON_ERROR=None,
        DISPLAY_LESS_PROGRESS=True,
    )
    with tempfile.TemporaryDirectory(prefix="maskwatch-eval-") as tmp:
        dataset_config = _layout(Path(tmp), gt_path, pred_path, fmt, seq_name)
        dataset_config["SEQ_INFO"] = {seq_name: length}
        dataset_cls = trackeval.datasets.MOTSChallenge if fmt == "mots20" else trackeval.datasets.KittiMOTS
        metrics = [m({"PRINT_CONFIG": False}) for m in METRICS]
        try:  # TrackEval prints a traceback to stderr before re-raising: both streams are silenced
            with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
                results, _ = trackeval.Evaluator(eval_config).evaluate([dataset_cls(dataset_config)], metrics)
        except Exception as exc:  # whatever TrackEval raises is about these inputs
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise InputError(f"TrackEval rejected {pred_path} against {gt_path}: {reason}") from None
    return next(iter(results.values()))["maskwatch"][key], metrics


def _check_fit(gt: list[MotsRecord], pred: list[MotsRecord], gt_path: Path, pred_path: Path, fmt: Format) -> int:
    """Frame numbers, image sizes and classes of both files fit ``fmt`` and each other; returns the last frame.

    TrackEval would reject a misfit with a traceback (frames) or silently score it
    zero (image size, classes); here it is one line that says what to change.
    """
    first, last = _FIRST_FRAME[fmt], max(r.frame for r in gt)
    gt_first = min(r.frame for r in gt)
    if gt_first < first:
        raise InputError(f"{gt_path}: frame {gt_first} in the ground truth, but {fmt} numbers frames from {first}; "
                         f"is --format right?")
    if pred:
        lo, hi = min(r.frame for r in pred), max(r.frame for r in pred)
        if lo < first or hi > last:
            raise InputError(f"{pred_path}: frames {lo}..{hi} do not fit the ground truth's {first}..{last} "
                             f"({fmt} numbers frames from {first}); are the tracks numbered from the same frame?")
    sizes = {(r.height, r.width) for r in gt}
    if len(sizes) > 1:
        raise InputError(f"{gt_path}: image sizes differ between lines: {sorted(sizes)}")
    (size,) = sizes
    other = next((r for r in pred if (r.height, r.width) != size), None)
    if other is not None:
        raise InputError(f"{pred_path}: frame {other.frame} has image size {other.height}x{other.width}, "
                         f"the ground truth {size[0]}x{size[1]}")
    scored = {_CLASS_IDS[c] for c in CLASSES[fmt]}
    if pred and not any(r.class_id in scored for r in pred):
        names = ", ".join(f"{c} ({_CLASS_IDS[c]})" for c in CLASSES[fmt])
        raise InputError(f"{pred_path}: no line has a class {fmt} scores: {names}")
    return last
