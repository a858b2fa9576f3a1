"""Motion segmenter for fixed cameras: no weights, instances from background subtraction.

Per frame: MOG2 background subtraction (shadows, value 127, are dropped, not
called objects), an opening (speckle) and a closing (holes), connected
components, and per component a marker-controlled watershed that splits
touching objects (two bottles side by side, two people walking together):
such a blob has one distance-transform peak per object, each peak seeds
``cv2.watershed`` inside the component's crop, and a cut is kept only where
the blob narrows to a neck between the parts. Classes come from size/shape
rules, since motion alone cannot say what an object is.

Everything after MOG2 works on component crops, never on per-instance full
frames, so the cost grows with the moving area, not with the frame size:
160-240 frames/s on 768x576 with 2 CPU cores (vtest.avi), MOG2 itself most of it.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Literal

import cv2
import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from common import InputError
from segmenter.detections import Detections
from segmenter.masks import CropMask

MOG2_FOREGROUND = 255  # MOG2 writes 127 for shadow pixels, 255 for foreground


class MotionClassRule(BaseModel):
    """A class given by size and shape; the first matching rule in the config wins."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(..., min_length=1)
    class_id: int = Field(..., ge=0)
    min_area: int = Field(0, ge=0, description="Pixels.")
    max_area: int | None = Field(None, ge=1, description="Pixels; None: no limit.")
    min_aspect: float = Field(0.0, ge=0, description="Box height / width.")
    max_aspect: float | None = Field(None, gt=0, description="Box height / width; None: no limit.")

    @model_validator(mode="after")
    def _ranges(self) -> MotionClassRule:
        if self.max_area is not None and self.max_area < self.min_area:
            raise ValueError(f"max_area ({self.max_area}) is below min_area ({self.min_area})")
        if self.max_aspect is not None and self.max_aspect < self.min_aspect:
            raise ValueError(f"max_aspect ({self.max_aspect}) is below min_aspect ({self.min_aspect})")
        return self

    def matches(self, area: int, aspect: float) -> bool:
        return (
            self.min_area <= area
            and (self.max_area is None or area <= self.max_area)
            and self.min_aspect <= aspect
            and (self.max_aspect is None or aspect <= self.max_aspect)
        )


class MotionConfig(BaseModel):
    """Settings of :class:`MotionSegmenter`; the defaults suit walkers ~30x80 px (vtest.avi, 768x576)."""

    model_config = ConfigDict(extra="forbid")

    history: int = Field(300, ge=1, description="MOG2 history (frames): how slowly the background adapts.")
    var_threshold: float = Field(
        25.0, gt=0, description="MOG2 squared Mahalanobis threshold: higher is less sensitive."
    )
    detect_shadows: bool = Field(True, description="Mark shadows (and drop them) instead of calling them foreground.")
    learning_rate: float = Field(-1.0, description="MOG2 learning rate in [0, 1]; -1: automatic from history.")
    warmup_frames: int = Field(
        10, ge=0, description="Frames that only teach the background (empty detections): at first MOG2 calls all new."
    )
    open_kernel: int = Field(3, ge=1, description="Opening kernel size (pixels): removes speckle.")
    close_kernel: int = Field(7, ge=1, description="Closing kernel size (pixels): fills holes inside objects.")
    min_area: int = Field(150, ge=1, description="Instances smaller than this (pixels) are dropped.")
    max_area: int | None = Field(
        None, ge=1, description="Instances larger than this are dropped (e.g. lighting changes)."
    )
    split_ratio: float = Field(
        0.7,
        gt=0,
        lt=1,
        description="Watershed seeds: distance-transform peaks above this fraction of the blob's maximum."
        " An object thinner than this fraction of the one it touches gets no seed and is not split off.",
    )
    min_peak_distance: float = Field(
        5.0, gt=0, description="Seeds lie at least this far (pixels) inside the blob: thin parts never seed."
    )
    max_neck_ratio: float = Field(
        0.65,
        gt=0,
        le=1,
        description="A watershed cut is kept only where the blob's width there is at most this"
        " fraction of the thinner part's width: touching objects meet at a narrow neck, one object's parts do not.",
    )
    seeds: Literal["global", "prominence"] = Field(
        "global",
        description="global: seeds where the distance to the background reaches split_ratio of the blob's maximum."
        " prominence: one seed per distance peak that stands out from every deeper peak (the lowest level joining"
        " them at most max_neck_ratio of its depth), wherever it is in the blob: dense clusters of small objects"
        " of several sizes (pills), where one large object would otherwise raise the bar over all the small ones.",
    )
    edge_threshold: float | None = Field(
        None,
        gt=0,
        description="Colour edges (Canny's upper threshold on the blurred frame, per channel) inside a blob cut it for"
        " the seeds and the neck test: touching objects of different colours part even across a wide contact."
        " None: off.",
    )
    drop_border_instances: bool = Field(
        False, description="Drop instances touching the image border: partly visible objects defeat size/shape rules."
    )
    classes: list[MotionClassRule] = Field(
        default_factory=lambda: [MotionClassRule(name="object", class_id=0)],
        min_length=1,
        description="Size/shape rules naming instances, first match wins; an instance matching none is dropped.",
    )

    @model_validator(mode="after")
    def _consistent(self) -> MotionConfig:
        if self.max_area is not None and self.max_area < self.min_area:
            raise ValueError(f"max_area ({self.max_area}) is below min_area ({self.min_area})")
        if self.learning_rate != -1 and not 0 <= self.learning_rate <= 1:
            raise ValueError(f"learning_rate must be -1 (automatic) or within [0, 1], got {self.learning_rate}")
        names: dict[int, str] = {}
        for rule in self.classes:
            if names.setdefault(rule.class_id, rule.name) != rule.name:
                raise ValueError(f"class_id {rule.class_id} is named both {names[rule.class_id]!r} and {rule.name!r}")
        return self


class MotionSegmenter:
    """Instances of moving objects in frames of one fixed camera.

    The background model lives in the instance: feed the frames of one video in
    order, over as many ``segment`` calls as convenient, and use a new instance
    for another video. The first ``warmup_frames`` frames give empty detections.
    Each instance's score is its solidity (see :func:`solidity`).
    """

    def __init__(self, config: MotionConfig | None = None) -> None:
        self.config = config or MotionConfig()
        self._bg = cv2.createBackgroundSubtractorMOG2(
            history=self.config.history,
            varThreshold=self.config.var_threshold,
            detectShadows=self.config.detect_shadows,
        )
        self._open = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (self.config.open_kernel,) * 2)
        self._close = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (self.config.close_kernel,) * 2)
        self.frames_seen = 0
        self.image_size: tuple[int, int] | None = None

    def segment(self, frames: Sequence[np.ndarray]) -> list[Detections]:
        return [self._segment_one(frame) for frame in frames]

    def foreground(self, frame: np.ndarray) -> np.ndarray:
        """Cleaned binary foreground (uint8 0/1) of one frame; updates the background model."""
        raw = self._bg.apply(frame, learningRate=self.config.learning_rate)
        fg = (raw == MOG2_FOREGROUND).view(np.uint8)
        fg = cv2.morphologyEx(fg, cv2.MORPH_OPEN, self._open)
        return cv2.morphologyEx(fg, cv2.MORPH_CLOSE, self._close)

    def _segment_one(self, frame: np.ndarray) -> Detections:
        self._check_frame(frame)
        fg = self.foreground(frame)
        self.frames_seen += 1
        size = frame.shape[:2]
        if self.frames_seen <= self.config.warmup_frames:
            return Detections.empty(size)
        config = self.config
        masks, class_ids, names, scores = [], [], [], []
        for x, y, blob in components(fg):
            if np.count_nonzero(blob) < config.min_area:  # its parts would be smaller still
                continue
            image = frame[y : y + blob.shape[0], x : x + blob.shape[1]]
            for part in split_touching(
                blob,
                image,
                config.split_ratio,
                config.min_peak_distance,
                config.max_neck_ratio,
                seeds=config.seeds,
                edge_threshold=config.edge_threshold,
            ):
                mask = CropMask(part.crop, part.x0 + x, part.y0 + y)
                rule = self._classify(mask, size)
                if rule is not None:
                    masks.append(mask)
                    class_ids.append(rule.class_id)
                    names.append(rule.name)
                    scores.append(solidity(mask.crop))
        return Detections.from_masks(masks, class_ids, scores, names, size)

    def _check_frame(self, frame: np.ndarray) -> None:
        if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
            raise InputError(f"motion segmenter needs BGR uint8 frames, got shape {frame.shape} {frame.dtype}")
        if self.image_size is None:
            self.image_size = frame.shape[:2]
        elif frame.shape[:2] != self.image_size:
            h, w = self.image_size
            raise InputError(
                f"motion segmenter needs one fixed camera: frame {self.frames_seen} is "
                f"{frame.shape[1]}x{frame.shape[0]}, earlier frames were {w}x{h}"
            )

    def _classify(self, mask: CropMask, size: tuple[int, int]) -> MotionClassRule | None:
        """The first rule the instance matches, or None when it is filtered out."""
        config = self.config
        if mask.area < config.min_area or (config.max_area is not None and mask.area > config.max_area):
            return None
        if config.drop_border_instances and (mask.x0 <= 0 or mask.y0 <= 0 or mask.x1 >= size[1] or mask.y1 >= size[0]):
            return None
        h, w = mask.crop.shape
        return next((rule for rule in config.classes if rule.matches(mask.area, h / w)), None)


def components(fg: np.ndarray) -> Iterator[tuple[int, int, np.ndarray]]:
    """The 8-connected components of a binary uint8 image as ``(x0, y0, tight bool crop)``.

    Same result as ``cv2.connectedComponentsWithStats``, whose statistics pass
    costs many times the labelling itself: the boxes come instead from the outer
    contours (one per component), and each contour's first point, a pixel of
    its component, names the component's label.
    """
    _, labels = cv2.connectedComponents(fg, connectivity=8)
    contours, hierarchy = cv2.findContours(fg, cv2.RETR_CCOMP, cv2.CHAIN_APPROX_SIMPLE)
    for contour, (_, _, _, parent) in zip(contours, hierarchy[0] if hierarchy is not None else ()):
        if parent != -1:  # the border of a hole
            continue
        x, y, w, h = cv2.boundingRect(contour)
        px, py = contour[0, 0]
        yield x, y, labels[y : y + h, x : x + w] == labels[py, px]


def solidity(crop: np.ndarray) -> float:
    """Area over convex-hull area, in [0, 1]: the score of a motion instance.

    Compact, filled blobs (a real object) score near 1; ragged foreground
    (noise, reflections, a bad split) scores lower, which the tracker's
    low-score stage then treats with suspicion.
    """
    contours, _ = cv2.findContours(crop.view(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    hull_area = cv2.contourArea(cv2.convexHull(np.concatenate(contours))) if contours else 0.0
    return float(min(1.0, np.count_nonzero(crop) / hull_area)) if hull_area > 0 else 0.0


def split_touching(
    blob: np.ndarray,
    image: np.ndarray,
    split_ratio: float,
    min_peak_distance: float,
    max_neck_ratio: float,
    *,
    seeds: str = "global",
    edge_threshold: float | None = None,
) -> list[CropMask]:
    """Split one connected blob into instances with a seeded watershed; masks relative to the crop.

    ``blob`` is the component's tight bool crop and ``image`` the BGR frame
    under it. Seeds are the connected regions where the distance to the
    background is at least ``split_ratio`` × the blob's maximum (and
    ``min_peak_distance``): two touching discs give two seeds, the neck between
    them being thinner than either disc, while one disc gives one.
    ``cv2.watershed`` floods the blob from the seeds in order of colour
    difference, so the cut follows the colour edge between touching objects
    where there is one and, between objects of one colour, falls where the
    floods meet: at the neck, as far from either seed as the seeds are from the
    blob's edge. Cuts across a wide neck are undone (see :func:`neck_ratios`).

    ``seeds="prominence"`` seeds every distance peak that a narrow neck parts
    from the deeper ones (see :func:`prominent_seeds`), so a 7 px tablet beside
    a 10 px softgel still seeds; ``edge_threshold`` cuts the blob along colour
    edges before the distance transform (see :class:`MotionConfig`).
    """
    padded = np.pad(blob, 1).view(np.uint8)
    relief = cv2.GaussianBlur(cv2.copyMakeBorder(image, 1, 1, 1, 1, cv2.BORDER_REPLICATE), (5, 5), 0)
    cut = padded if edge_threshold is None else padded & ~colour_edges(relief, edge_threshold)
    dist = cv2.distanceTransform(cut, cv2.DIST_L2, 5)
    if seeds == "prominence":
        n_seeds, markers = prominent_seeds(dist, split_ratio, min_peak_distance, max_neck_ratio)
    else:
        peak = float(dist.max())
        core = (dist >= max(split_ratio * peak, min(min_peak_distance, peak))).view(np.uint8)
        n_seeds, markers = cv2.connectedComponents(core)  # label 0 = not a seed
    if n_seeds <= 2:  # one seed: nothing to split
        return [CropMask(blob, 0, 0)]
    outside = padded == 0
    markers[outside] = n_seeds  # the background is a basin of its own, so no flood leaves the blob
    cv2.watershed(relief, markers)  # blurred: sensor noise would otherwise let one flood outrun the other
    parts = _fill_watershed_lines(markers, ~outside, n_seeds)
    parts = _merge_wide_necks(parts, dist, n_seeds - 1, max_neck_ratio)[1:-1, 1:-1]
    return [CropMask.from_full(parts == label) for label in np.unique(parts[parts > 0])]


def colour_edges(image: np.ndarray, threshold: float) -> np.ndarray:
    """uint8 0/1: Canny edges of any colour channel (upper threshold ``threshold``, lower half of it)."""
    edges = np.zeros(image.shape[:2], np.uint8)
    for channel in cv2.split(image):
        edges |= cv2.Canny(channel, threshold / 2, threshold)
    return (edges > 0).view(np.uint8)


def prominent_seeds(
    dist: np.ndarray, split_ratio: float, min_peak_distance: float, max_neck_ratio: float, step: float = 0.5
) -> tuple[int, np.ndarray]:
    """Watershed markers, one per prominent peak of ``dist``, as ``(n + 1, labels)`` like ``cv2.connectedComponents``.

    The blob is flooded down from its deepest point, ``step`` pixels of distance
    at a time (one labelling per level). Where two regions meet at level ``L``,
    the shallower one (peak ``p``) is an object of its own when ``L <= max_neck_ratio * p``
    (a narrow neck, as :func:`neck_ratios` measures it), else it was a bulge of the
    deeper one and joins it. Peaks shallower than ``min_peak_distance`` never seed.
    Each seed's marker is its core: the pixels around its peak at least
    ``split_ratio`` of its depth deep and above every level where it met another
    object, so markers never touch.
    """
    peak = float(dist.max())
    # per living region: [peak value, peak (row, col), highest level it met another object at]
    alive: list[list] = []
    seeds: list[list] = []
    level = peak
    while alive or level == peak:
        level = max(level - step, 0.0)
        count, labels = cv2.connectedComponents((dist > level).view(np.uint8))
        groups: dict[int, list[list]] = {}
        for region in alive:
            groups.setdefault(int(labels[region[1]]), []).append(region)
        survivors = []
        for members in groups.values():
            members.sort(key=lambda r: -r[0])
            head = members[0]
            for other in members[1:]:
                if level <= max_neck_ratio * other[0]:  # a narrow neck: two objects
                    other[2] = head[2] = max(head[2], other[2], level)
                    seeds.append(other)
                # else: a bulge of the deeper region, which takes it over
            survivors.append(head)
        born = np.setdiff1d(np.arange(1, count), list(groups))
        for label in born.tolist():
            inside = labels == label
            depth = float(dist[inside].max())
            if depth >= min_peak_distance:
                where = np.unravel_index(int(np.argmax(np.where(inside, dist, -1))), dist.shape)
                survivors.append([depth, where, 0.0])
        alive = survivors
        if level <= 0:
            seeds.extend(alive)
            break
    markers = np.zeros(dist.shape, np.int32)
    for index, (depth, where, met) in enumerate(seeds, start=1):
        bar = max(split_ratio * depth, met + step + 1e-4)  # above the last level where it stood apart
        _, core = cv2.connectedComponents((dist >= bar).view(np.uint8))
        markers[core == core[where]] = index
    return len(seeds) + 1, markers


def _fill_watershed_lines(markers: np.ndarray, inside: np.ndarray, n_seeds: int) -> np.ndarray:
    """Seed labels for every blob pixel (0 outside): pixels the watershed left unclaimed join their nearest part.

    ``cv2.watershed`` marks every pixel where two basins meet with -1, and the
    background is one of the basins, so the blob's outline and the cuts would
    be lost; each such pixel joins the nearest pixel a seed did claim, which
    keeps the parts a partition of the blob.
    """
    claimed = (markers > 0) & (markers < n_seeds)
    lost = inside & ~claimed
    out = np.where(inside, markers, 0)
    if lost.any():
        # Label each claimed pixel by its own index; distanceTransformWithLabels gives every other
        # pixel the index of its nearest claimed pixel, which maps back to that pixel's seed.
        _, nearest = cv2.distanceTransformWithLabels(
            (~claimed).view(np.uint8), cv2.DIST_L2, 5, labelType=cv2.DIST_LABEL_PIXEL
        )
        owner = np.zeros(int(nearest.max()) + 1, dtype=np.int32)
        owner[nearest[claimed]] = markers[claimed]
        out[lost] = owner[nearest[lost]]
    return out


def neck_ratios(parts: np.ndarray, dist: np.ndarray, n_parts: int) -> np.ndarray:
    """``(n+1, n+1)`` matrix: for each pair of adjacent parts, the neck over the thinner part's depth.

    The neck is the largest distance-to-background along the cut between the
    two parts (half the blob's width where they meet), a part's depth the
    largest distance inside it (half its width). Two objects merely touching
    meet at a neck much thinner than either (two touching discs: ~0.4-0.6);
    the torso and legs of one walker meet at a waist as wide as the legs
    (~0.7-1). Pairs that do not touch get 0; row and column 0 are the background.
    """
    depth = np.zeros(n_parts + 1, dtype=np.float32)
    np.maximum.at(depth, parts.ravel(), dist.ravel())
    neck = np.zeros((n_parts + 1, n_parts + 1), dtype=np.float32)
    for a, b, da, db in (
        (parts[:, :-1], parts[:, 1:], dist[:, :-1], dist[:, 1:]),
        (parts[:-1], parts[1:], dist[:-1], dist[1:]),
    ):
        cut = (a != b) & (a > 0) & (b > 0)
        np.maximum.at(neck, (a[cut], b[cut]), np.minimum(da[cut], db[cut]))
    neck = np.maximum(neck, neck.T)
    thinner = np.minimum(depth[:, None], depth[None, :])
    return np.divide(neck, thinner, out=np.zeros_like(neck), where=thinner > 0)


def _merge_wide_necks(parts: np.ndarray, dist: np.ndarray, n_parts: int, max_neck_ratio: float) -> np.ndarray:
    """Join adjacent parts whose neck ratio (see :func:`neck_ratios`) exceeds ``max_neck_ratio``.

    Distance peaks alone over-split elongated objects (a walker has a peak in
    the torso and often one in the legs); a real split needs a narrow neck.
    """
    group = np.arange(n_parts + 1)
    for a, b in zip(*np.nonzero(np.triu(neck_ratios(parts, dist, n_parts) > max_neck_ratio))):
        group[group == group[b]] = group[a]  # parts are few: relabel the whole group
    return group[parts]
