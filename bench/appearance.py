"""How well mask colour histograms tell MOTS20-05 pedestrians apart, per histogram design, and what they cost.

For each gap (1, 5, 15 frames) every ground-truth object of frame t is compared
with every object of frame t + gap: the same identity gives a positive pair, any
other a negative one. Reported: ROC AUC of the similarity over those pairs, the
rate at which an object's most similar object in frame t + gap is itself (when
it is there among at least two), and the histogram cost per mask.
Usage: python bench/appearance.py [GT.txt] [--step 1]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import cv2
import numpy as np

from segmenter.masks import CropMask
from segmenter.motsio import read_mots
from tracker.appearance import HistogramDesign, appearance_similarity, mask_histograms

DEFAULT_GT = Path(__file__).resolve().parents[2] / "shared" / "data" / "mots20_05" / "gt.txt"
GAPS = (1, 5, 15)
DESIGNS = {
    "HS16x4 halves": HistogramDesign(grey_saturation=0, value_bins=0),
    "HS16x4|grey8": HistogramDesign(parts=1),
    "HS16x4|grey8 halves": HistogramDesign(),
    "HS16x4|grey8 thirds": HistogramDesign(parts=3),
    "HS8x4|grey4 halves": HistogramDesign(hue_bins=8, value_bins=4),
    "HS16x4|grey8 halves 4k": HistogramDesign(max_pixels=4096),
    "HS16x4|grey8 halves 256": HistogramDesign(max_pixels=256),
}


def load_frames(gt: Path, step: int) -> list[tuple[np.ndarray, list[CropMask], np.ndarray]]:
    """(BGR image, masks, identities) of every ``step``-th frame with pedestrians (MOTS class 2; 10 is ignore)."""
    by_frame: dict[int, list] = {}
    for record in read_mots(gt):
        if record.class_id in (1, 2):
            by_frame.setdefault(record.frame, []).append(record)
    frames = []
    for number in range(min(by_frame), max(by_frame) + 1, step):
        records = by_frame.get(number, [])
        image = cv2.imread(str(gt.parent / "img1" / f"{number:06d}.jpg"))
        if image is None:
            raise FileNotFoundError(gt.parent / "img1" / f"{number:06d}.jpg")
        frames.append((image, [r.mask() for r in records], np.array([r.obj_id for r in records])))
    return frames


def auc(positives: np.ndarray, negatives: np.ndarray) -> float:
    """Probability that a random positive pair scores above a random negative one (ties count half)."""
    scores = np.concatenate([positives, negatives])
    order = scores.argsort(kind="mergesort")
    ranks = np.empty(len(scores))
    ranks[order] = np.arange(1, len(scores) + 1)
    _, inverse, counts = np.unique(scores, return_inverse=True, return_counts=True)
    sums = np.bincount(inverse, weights=ranks)
    ranks = (sums / counts)[inverse]  # tied scores share their mean rank
    n_pos, n_neg = len(positives), len(negatives)
    return float((ranks[:n_pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def separation(features: list[np.ndarray], ids: list[np.ndarray], gap: int) -> tuple[float, float, float, float]:
    """AUC, nearest-neighbour rate, and mean same / different-identity similarity at ``gap`` (in loaded frames)."""
    positives, negatives, hits, asked = [], [], 0, 0
    for t in range(len(features) - gap):
        a, b = features[t], features[t + gap]
        if len(a) == 0 or len(b) == 0:
            continue
        sim = appearance_similarity(a, b)
        same = ids[t][:, None] == ids[t + gap][None, :]
        positives.append(sim[same])
        negatives.append(sim[~same])
        for row in np.flatnonzero(same.any(axis=1)):
            if len(b) >= 2:
                asked += 1
                hits += bool(same[row, sim[row].argmax()])
    pos, neg = np.concatenate(positives), np.concatenate(negatives)
    return auc(pos, neg), hits / max(asked, 1), float(pos.mean()), float(neg.mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("gt", nargs="?", type=Path, default=DEFAULT_GT)
    parser.add_argument("--step", type=int, default=1, help="Use every step-th frame (gaps count original frames).")
    args = parser.parse_args()
    frames = load_frames(args.gt, args.step)
    ids = [i for _, _, i in frames]
    n_masks = sum(len(m) for _, m, _ in frames)
    mean_area = np.mean([m.area for _, masks, _ in frames for m in masks])
    print(f"{len(frames)} frames, {n_masks} masks (mean area {mean_area:.0f} px)")
    header = f"{'design':<22} {'D':>4} {'us/mask':>8} " + " ".join(f"{'AUC@' + str(g):>7} {'NN@' + str(g):>6}" for g in GAPS)
    print(header + f" {'same@5':>7} {'diff@5':>7}")
    for name, design in DESIGNS.items():
        start = time.perf_counter()
        features = [mask_histograms(image, masks, design) for image, masks, _ in frames]
        per_mask = (time.perf_counter() - start) / n_masks * 1e6
        cells = []
        for gap in GAPS:
            area, nn, same, diff = separation(features, ids, max(gap // args.step, 1))
            cells.append(f"{area:>7.3f} {nn:>6.3f}")
            if gap == 5:
                means = f" {same:>7.3f} {diff:>7.3f}"
        print(f"{name:<22} {design.dim:>4} {per_mask:>8.1f} " + " ".join(cells) + means)


if __name__ == "__main__":
    main()
