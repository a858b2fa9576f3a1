"""Score MOTS results with TrackEval (HOTA, DetA, AssA, MOTSA, IDF1, ID switches).

TrackEval wants its benchmark folder layout; this module builds it in a
temporary directory for one sequence (gt file + result file), runs the
evaluator quietly on one process and returns a flat dict. The metrics code is
TrackEval's own, untouched: only the dataset plumbing lives here.
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
from segmenter.motsio import read_mots

Format = Literal["mots20", "kitti"]
_CLASSES = {"mots20": ["pedestrian"], "kitti": ["car", "pedestrian"]}


def _flatten(result: dict) -> dict[str, float]:
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
        "CLASSES_TO_EVAL": _CLASSES[fmt],
        "PRINT_CONFIG": False,
    }
    if fmt == "mots20":
        config["SKIP_SPLIT_FOL"] = True
    return config


def evaluate_mots(gt_path: Path | str, pred_path: Path | str, fmt: Format = "mots20", seq_name: str = "seq") -> dict[str, float]:
    """Metrics of ``pred_path`` against ``gt_path`` (MOTS txt, one sequence).

    For ``mots20`` (frames from 1) the class is pedestrian. For ``kitti`` (frames
    from 0) the plain keys are the detection-weighted average over car and
    pedestrian, and ``car/HOTA``, ``pedestrian/HOTA``… give each class.
    """
    gt_path, pred_path = Path(gt_path), Path(pred_path)
    gt = read_mots(gt_path)  # validates, and tells the sequence length
    read_mots(pred_path)
    if not gt:
        raise InputError(f"{gt_path}: ground truth is empty")
    last = max(r.frame for r in gt)
    length = last if fmt == "mots20" else last + 1
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
        quiet = {"PRINT_CONFIG": False}
        metrics = [trackeval.metrics.HOTA(quiet), trackeval.metrics.CLEAR(quiet), trackeval.metrics.Identity(quiet)]
        try:
            with contextlib.redirect_stdout(io.StringIO()):
                results, _ = trackeval.Evaluator(eval_config).evaluate([dataset_cls(dataset_config)], metrics)
        except trackeval.utils.TrackEvalException as exc:
            raise InputError(f"TrackEval rejected {pred_path}: {exc}") from None
    combined = next(iter(results.values()))["maskwatch"]["COMBINED_SEQ"]
    if fmt == "mots20":
        return _flatten(combined["pedestrian"])
    both = {m.get_name(): m.combine_classes_det_averaged({c: combined[c][m.get_name()] for c in _CLASSES["kitti"]}) for m in metrics}
    out = _flatten(both)
    for cls in _CLASSES["kitti"]:
        out.update({f"{cls}/{k}": v for k, v in _flatten(combined[cls]).items()})
    return out
