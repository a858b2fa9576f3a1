"""Tracking quality that tuning cannot overfit: every sequence, two noise levels, three seeds, three box trackers and the ceiling.

Every tracker gets the same detection masks: the MOTS ground truth of
../shared/data (MOTS20-05 and 12 KITTI MOTS train sequences) as it is
(``clean``, deterministic, run once) and through the simulated segmenter of
``segmenter.noise`` (``noisy``: misses in occlusion-like bursts, merged touching
objects, object-shaped false positives; one run per seed). Trackers: maskwatch
(through the engine, with the video's images where there are any), SORT,
ByteTrack and OC-SORT of Roboflow's ``trackers`` (boxes, each keeping its
detection's mask), and ``perfect`` association, the ceiling (see
``bench.reference.perfect_mots``). TrackEval scores HOTA, IDF1 and ID switches,
combining sequences (and KITTI's two classes) as it does for a benchmark;
``analytics.count_eval`` scores unique-object counts and line crossings.

Split, fixed so that tuning never sees the report: TUNE is MOTS20-05 (tuned on
before) and every other KITTI sequence that has both cars and pedestrians, by
name, starting with the first (0000, 0004, 0011, 0015); REPORT is the rest.

Derived figures, per set (MOTS20, KITTI car, KITTI pedestrian, KITTI combined)
and level, as mean ± std over seeds: the share of the gap from the best box
tracker to the ceiling that maskwatch closes (HOTA, IDF1), and the count errors
of maskwatch beside ByteTrack's. Targets on REPORT: gap closed >= 50% on every
set and level; count errors <= 10% clean and <= ByteTrack's noisy.

Usage: python -m bench.tracker_quality [--split report] [--jobs 2] [--config tracker.yaml] [--markdown FILE]
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import math
import multiprocessing
import statistics
import sys
import tempfile
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from analytics.count_eval import CountDiff, compare, count_tracks, default_lines
from bench.reference import BOX_TRACKERS, box_mots, engine_mots, noisy_detections, perfect_mots
from maskwatch.engine import mask_tracker
from maskwatch.offline import load_track_config
from segmenter.motsio import read_mots
from segmenter.noise import LEVELS, NoiseModel
from tracker.config import TrackerConfig
from tracker.evaluate import CLASSES, METRICS, flatten, sequence_results

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
TRACKERS = ("maskwatch", *BOX_TRACKERS, "perfect")
TUNE = ("MOTS20-05", "KITTI-0000", "KITTI-0004", "KITTI-0011", "KITTI-0015")
SEEDS = (0, 1, 2)
SETS = {  # name → (format, classes TrackEval combines)
    "MOTS20": ("mots20", ("pedestrian",)),
    "KITTI car": ("kitti", ("car",)),
    "KITTI pedestrian": ("kitti", ("pedestrian",)),
    "KITTI": ("kitti", ("car", "pedestrian")),
}
GAP_TARGET, CLEAN_COUNT_TARGET = 50.0, 10.0


@dataclass(frozen=True)
class Seq:
    name: str
    gt: Path
    fmt: str  # "mots20" or "kitti" (tracker.evaluate's formats)
    fps: float
    images: Path | None  # the video's frames, fed to the engine where they exist

    @property
    def split(self) -> str:
        return "tune" if self.name in TUNE else "report"


def sequences(data: Path = DATA) -> list[Seq]:
    """MOTS20-05 (14 fps, with its images) and every KITTI MOTS train sequence (10 fps, masks only) under ``data``."""
    out = []
    mots = data / "mots20_05"
    if (mots / "gt.txt").is_file():
        images = mots / "img1"
        out.append(Seq("MOTS20-05", mots / "gt.txt", "mots20", 14.0, images if images.is_dir() else None))
    for gt in sorted((data / "kitti_mots_train").glob("*.txt")):
        out.append(Seq(f"KITTI-{gt.stem}", gt, "kitti", 10.0, None))
    return out


@dataclass(frozen=True)
class Job:
    """One (sequence, level, seed): its detections are made once and every tracker runs on them."""

    seq: Seq
    level: str
    seed: int
    trackers: tuple[str, ...]
    config: dict
    max_frames: int | None
    work: Path


@dataclass
class Result:
    seq: str
    fmt: str
    level: str
    seed: int
    tracker: str
    raw: dict  # class → metric name → TrackEval's result for this sequence
    counts: CountDiff = field(default_factory=CountDiff)


def _sliced_gt(job: Job) -> Path:
    """The ground truth, cut to its first ``max_frames`` frames when asked (quick looks, smoke tests)."""
    if job.max_frames is None:
        return job.seq.gt
    out = job.work / f"{job.seq.name}-gt-{job.max_frames}.txt"
    if not out.exists():
        records = read_mots(job.seq.gt)
        first = min(r.frame for r in records)
        lines = [line for line in job.seq.gt.read_text().splitlines() if int(line.split()[0]) < first + job.max_frames]
        _write_atomic(out, "".join(line + "\n" for line in lines))
    return out


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_suffix(f".{multiprocessing.current_process().pid}.tmp")
    tmp.write_text(text)
    tmp.replace(path)


def run_job(job: Job) -> list[Result]:
    """Make (or reuse) the job's detections, run every tracker on them, score each result."""
    seq, tag = job.seq, f"{job.seq.name}-{job.level}-{job.seed}-{job.max_frames}"
    gt_path = _sliced_gt(job)
    noise = NoiseModel.level(job.level, job.seed)
    det = job.work / f"{tag}-det-{hashlib.sha1(repr(noise).encode()).hexdigest()[:8]}.txt"  # a changed model: new file
    if not det.exists():
        tmp = det.with_suffix(".tmp")
        noisy_detections(gt_path, tmp, noise)
        tmp.replace(det)
    gt = read_mots(gt_path)
    first, last = min(r.frame for r in gt), max(r.frame for r in gt)
    height, width = gt[0].height, gt[0].width
    lines = default_lines(width, height)
    truth = count_tracks(gt, lines, seq.fps)
    config = TrackerConfig.model_validate(job.config)
    results = []
    for name in job.trackers:
        out = job.work / f"{tag}-{name}.txt"
        if name == "maskwatch":
            engine_mots(det, out, mask_tracker(config), seq.fps, first, last - first + 1, seq.images, config.min_hits)
        elif name == "perfect":
            perfect_mots(gt_path, det, out)
        else:
            box_mots(name, det, out, seq.fps, first, last - first + 1)  # boxes only: they would ignore images
        counts = compare(count_tracks(read_mots(out), lines, seq.fps), truth)
        results.append(Result(seq.name, seq.fmt, job.level, job.seed, name, trackeval_raw(gt_path, out, seq.fmt), counts))
    return results


def trackeval_raw(gt_path: Path, pred_path: Path, fmt: str) -> dict:
    """TrackEval's per-sequence results (class → metric → values), to be combined over sequences as TrackEval does."""
    return sequence_results(gt_path, pred_path, fmt)


def combine(results: Iterable[Result], classes: Sequence[str]) -> dict[str, float]:
    """HOTA, IDF1, IDSW… over sequences (and classes, detection-weighted) as TrackEval combines a benchmark."""
    results = list(results)
    metrics = [m({"PRINT_CONFIG": False}) for m in METRICS]
    by_class = {}
    for cls in classes:
        by_class[cls] = {m.get_name(): m.combine_sequences({f"{r.seq}": r.raw[cls][m.get_name()] for r in results})
                         for m in metrics}
    if len(classes) == 1:
        return flatten(by_class[classes[0]])
    return flatten({m.get_name(): m.combine_classes_det_averaged({c: by_class[c][m.get_name()] for c in classes})
                     for m in metrics})


@dataclass
class Row:
    """One tracker on one set and level: metrics per seed."""

    hota: list[float] = field(default_factory=list)
    idf1: list[float] = field(default_factory=list)
    idsw: list[float] = field(default_factory=list)
    unique: list[float] = field(default_factory=list)
    lines: list[float] = field(default_factory=list)


def aggregate(results: list[Result], split_of: dict[str, str]) -> dict[tuple[str, str, str, str], Row]:
    """(split, set, level, tracker) → per-seed figures; sets without sequences in a split are left out."""
    rows: dict[tuple[str, str, str, str], Row] = {}
    for split in sorted({split_of[r.seq] for r in results}):
        for set_name, (fmt, classes) in SETS.items():
            mine = [r for r in results if split_of[r.seq] == split and r.fmt == fmt]
            for level in LEVELS:
                for seed in sorted({r.seed for r in mine if r.level == level}):
                    for tracker in TRACKERS:
                        group = [r for r in mine if r.level == level and r.seed == seed and r.tracker == tracker]
                        if not group:
                            continue
                        counts = sum((r.counts for r in group), CountDiff())
                        if counts.unique_error(classes) is None:  # no such object in this split
                            continue
                        m = combine(group, classes)
                        row = rows.setdefault((split, set_name, level, tracker), Row())
                        row.hota.append(m["HOTA"]), row.idf1.append(m["IDF1"]), row.idsw.append(m["IDSW"])
                        row.unique.append(counts.unique_error(classes))
                        row.lines.append(counts.line_error(classes) or 0.0)
    return rows


def gap_closed(rows: dict, key: tuple[str, str, str], metric: str) -> list[float]:
    """Per seed: 100 * (maskwatch - best box tracker) / (perfect - best box tracker)."""
    get = lambda tracker: getattr(rows[(*key, tracker)], metric)  # noqa: E731
    if (*key, "maskwatch") not in rows or (*key, "perfect") not in rows:
        return []
    boxes = [get(t) for t in BOX_TRACKERS if (*key, t) in rows]
    if not boxes:
        return []
    out = []
    for i, (ours, ceiling) in enumerate(zip(get("maskwatch"), get("perfect"))):
        best = max(b[i] for b in boxes)
        out.append(100.0 * (ours - best) / (ceiling - best) if ceiling - best > 1e-9 else float("nan"))
    return out


def spread(values: Sequence[float], digits: int = 1) -> str:
    """Mean, and ± the standard deviation over seeds when there are several; "n/a" where nothing was left to close."""
    if not values:
        return "–"
    values = [v for v in values if not math.isnan(v)]
    if not values:
        return "n/a"
    mean = statistics.fmean(values)
    if len(values) == 1:
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {statistics.stdev(values):.{digits}f}"


@dataclass
class Derived:
    split: str
    set_name: str
    level: str
    seeds: int
    gap_hota: list[float]
    gap_idf1: list[float]
    unique: tuple[list[float], list[float]]  # maskwatch, bytetrack
    lines: tuple[list[float], list[float]]

    def verdict(self) -> str:
        """Which targets hold (means over seeds); the report split is the one judged."""
        misses = []
        for name, gap in (("HOTA gap", self.gap_hota), ("IDF1 gap", self.gap_idf1)):
            gap = [g for g in gap if not math.isnan(g)]  # no gap: the best box tracker reached the ceiling
            if gap and not statistics.fmean(gap) >= GAP_TARGET:
                misses.append(name)
        for name, (ours, theirs) in (("unique", self.unique), ("lines", self.lines)):
            if not ours:
                continue
            bound = CLEAN_COUNT_TARGET if self.level == "clean" else (statistics.fmean(theirs) if theirs else None)
            if bound is not None and statistics.fmean(ours) > bound + 1e-9:
                misses.append(name)
        return "met" if not misses else "missed: " + ", ".join(misses)


def derive(rows: dict) -> list[Derived]:
    out = []
    for split, set_name, level in sorted({k[:3] for k in rows}, key=lambda k: (k[0], list(SETS).index(k[1]), k[2])):
        key = (split, set_name, level)
        ours, theirs = rows.get((*key, "maskwatch"), Row()), rows.get((*key, "bytetrack"), Row())
        out.append(Derived(split, set_name, level, len(ours.hota), gap_closed(rows, key, "hota"),
                           gap_closed(rows, key, "idf1"), (ours.unique, theirs.unique), (ours.lines, theirs.lines)))
    return out


def tables(rows: dict, derived: list[Derived]) -> tuple[list[str], list[str]]:
    """The aggregated table and the derived one, as markdown lines."""
    metrics = ["| split | set | level | seeds | tracker | HOTA | IDF1 | IDSW | unique err % | line err % |",
               "|---|---|---|---:|---|---:|---:|---:|---:|---:|"]
    for (split, set_name, level, tracker), row in sorted(
            rows.items(), key=lambda kv: (kv[0][0], list(SETS).index(kv[0][1]), kv[0][2], TRACKERS.index(kv[0][3]))):
        metrics.append(f"| {split} | {set_name} | {level} | {len(row.hota)} | {tracker} | {spread(row.hota)} | "
                       f"{spread(row.idf1)} | {spread(row.idsw, 0)} | {spread(row.unique)} | {spread(row.lines)} |")
    gaps = ["| split | set | level | seeds | HOTA gap closed % | IDF1 gap closed % | unique err % (maskwatch / ByteTrack) "
            "| line err % (maskwatch / ByteTrack) | targets |",
            "|---|---|---|---:|---:|---:|---:|---:|---|"]
    for d in derived:
        gaps.append(f"| {d.split} | {d.set_name} | {d.level} | {d.seeds} | {spread(d.gap_hota)} | {spread(d.gap_idf1)} | "
                    f"{spread(d.unique[0])} / {spread(d.unique[1])} | {spread(d.lines[0])} / {spread(d.lines[1])} | "
                    f"{d.verdict()} |")
    return metrics, gaps


def per_sequence_lines(results: list[Result]) -> list[str]:
    """One line per sequence, level, seed and tracker (``--verbose``)."""
    out = [f"{'sequence':<12} {'level':<6} {'seed':>4} {'tracker':<10} {'HOTA':>6} {'IDF1':>6} {'IDSW':>5} "
           f"{'uniq%':>6} {'line%':>6}"]
    for r in sorted(results, key=lambda r: (r.seq, r.level, r.seed, TRACKERS.index(r.tracker))):
        classes = CLASSES[r.fmt]
        m = combine([r], classes)
        unique, line = r.counts.unique_error(classes), r.counts.line_error(classes)
        out.append(f"{r.seq:<12} {r.level:<6} {r.seed:>4} {r.tracker:<10} {m['HOTA']:>6.1f} {m['IDF1']:>6.1f} "
                   f"{m['IDSW']:>5d} {_pct(unique):>6} {_pct(line):>6}")
    return out


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{value:.1f}"


def run(seqs: list[Seq], trackers: Sequence[str], seeds: Sequence[int], config: TrackerConfig, jobs: int,
        work: Path, max_frames: int | None = None, levels: Sequence[str] = LEVELS) -> list[Result]:
    """Every (sequence, level, seed) job on ``jobs`` processes, longest sequences first; clean runs once (seed 0)."""
    todo = [Job(seq, level, seed, tuple(trackers), config.model_dump(), max_frames, work)
            for seq in seqs for level in levels for seed in (seeds[:1] if level == "clean" else seeds)]
    todo.sort(key=lambda j: -j.seq.gt.stat().st_size)
    if jobs <= 1:
        return [r for job in todo for r in run_job(job)]
    with multiprocessing.get_context("spawn").Pool(jobs) as pool:
        return [r for batch in pool.imap_unordered(run_job, todo) for r in batch]


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DATA, help="folder with mots20_05/ and kitti_mots_train/")
    parser.add_argument("--split", choices=["tune", "report", "all"], default="report")
    parser.add_argument("--sequences", nargs="+", help="only these sequence names (e.g. MOTS20-05 KITTI-0019)")
    parser.add_argument("--seeds", nargs="+", type=int, default=list(SEEDS), help="seeds of the noisy level")
    parser.add_argument("--levels", nargs="+", choices=LEVELS, default=list(LEVELS))
    parser.add_argument("--trackers", nargs="+", choices=TRACKERS, default=list(TRACKERS))
    parser.add_argument("--jobs", type=int, default=2, help="worker processes")
    parser.add_argument("--config", type=Path, help="YAML of TrackerConfig keys for maskwatch (or a site config)")
    parser.add_argument("--max-frames", type=int, help="only the first N frames of each sequence")
    parser.add_argument("--markdown", type=Path, help="write the tables as markdown to this file")
    parser.add_argument("--work", type=Path, help="keep detections and results here (detections are reused by "
                        "later runs: tuning); default: a temporary folder")
    parser.add_argument("--verbose", action="store_true", help="also print one row per sequence, level, seed, tracker")
    args = parser.parse_args(argv)
    seqs = [s for s in sequences(args.data) if args.split in ("all", s.split)]
    if args.sequences:
        unknown = set(args.sequences) - {s.name for s in sequences(args.data)}
        if unknown:
            parser.error(f"unknown sequences {sorted(unknown)}; known: {[s.name for s in sequences(args.data)]}")
        seqs = [s for s in sequences(args.data) if s.name in args.sequences]
    if not seqs:
        parser.error(f"no sequences under {args.data} for split {args.split!r}")
    config = load_track_config(args.config)[0]
    start = time.monotonic()
    with contextlib.ExitStack() as stack:
        work = args.work or Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="maskwatch-quality-")))
        work.mkdir(parents=True, exist_ok=True)
        results = run(seqs, args.trackers, args.seeds, config, args.jobs, work, args.max_frames, args.levels)
    elapsed = time.monotonic() - start
    if args.verbose:
        print("\n".join(per_sequence_lines(results)), end="\n\n")
    rows = aggregate(results, {s.name: s.split for s in seqs})
    metrics, gaps = tables(rows, derive(rows))
    print("\n".join(metrics), end="\n\n")
    print("\n".join(gaps))
    names = ", ".join(s.name for s in seqs)
    print(f"\n{len(seqs)} sequences ({names}), {elapsed:.0f} s on {args.jobs} processes", file=sys.stderr)
    if args.markdown:
        args.markdown.write_text(
            f"Sequences: {names}. Noise levels: {', '.join(args.levels)} (clean once; noisy seeds "
            f"{', '.join(map(str, args.seeds))}). Gap closed: share of the gap from the best box tracker "
            f"to perfect association closed by maskwatch.\n\n" + "\n".join(gaps) + "\n\n" + "\n".join(metrics) + "\n")


if __name__ == "__main__":
    main()
