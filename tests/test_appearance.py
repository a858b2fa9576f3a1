"""Mask colour histograms: what they tell apart, edge cases of masks, the running average; MOTS20-05 when present."""

from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest

from segmenter.masks import CropMask
from segmenter.motsio import read_mots
from tracker.appearance import DEFAULT_DESIGN, appearance_similarity, blend, mask_histograms

MOTS = Path("/work/shared/data/mots20_05")


def person(shirt: tuple[int, int, int], trousers: tuple[int, int, int], seed: int = 0) -> tuple[np.ndarray, CropMask]:
    """A 120x160 BGR frame with a noisy two-colour figure on a grey background, and the figure's mask."""
    rng = np.random.default_rng(seed)
    image = np.full((120, 160, 3), 128, np.uint8)
    image[20:60, 50:90] = shirt
    image[60:110, 55:85] = trousers
    image = np.clip(image + rng.normal(0, 6, image.shape), 0, 255).astype(np.uint8)
    full = np.zeros((120, 160), bool)
    full[20:60, 50:90] = True
    full[60:110, 55:85] = True
    return image, CropMask.from_full(full)


def histogram(image: np.ndarray, mask: CropMask) -> np.ndarray:
    return mask_histograms(image, [mask])[0]


def test_same_clothes_relit_are_similar_and_other_clothes_are_not():
    red_blue = histogram(*person((40, 40, 200), (160, 60, 30)))
    relit = histogram(*person((50, 52, 215), (150, 58, 35), seed=1))  # a little brighter shirt, darker trousers
    swapped = histogram(*person((160, 60, 30), (40, 40, 200), seed=2))  # the same colours, other way up
    green_grey = histogram(*person((40, 180, 40), (90, 90, 90), seed=3))
    sim = appearance_similarity(np.stack([red_blue]), np.stack([relit, swapped, green_grey]))[0]
    assert sim[0] > 0.8
    assert sim[0] > sim[1] + 0.3 and sim[0] > sim[2] + 0.5  # halves matter: shirt and trousers are compared apart
    assert np.all((0 <= sim) & (sim <= 1))


def test_vectors_are_unit_rows_and_empty_masks_rows_of_zeros():
    image, mask = person((40, 40, 200), (160, 60, 30))
    empty = CropMask(np.zeros((0, 0), bool), 0, 0)
    outside = CropMask(np.ones((5, 5), bool), 200, 10)  # wholly right of the frame
    vectors = mask_histograms(image, [mask, empty, outside, mask])
    assert vectors.shape == (4, DEFAULT_DESIGN.dim) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), [1, 0, 0, 1], atol=1e-6)
    np.testing.assert_array_equal(vectors[0], vectors[3])
    np.testing.assert_allclose(appearance_similarity(vectors, vectors)[0], [1, 0, 0, 1], atol=1e-6)
    assert mask_histograms(image, []).shape == (0, DEFAULT_DESIGN.dim)


def test_masks_partly_outside_the_frame_count_only_their_pixels_inside():
    image, _ = person((40, 40, 200), (160, 60, 30))
    spilling = CropMask(np.ones((40, 50), bool), 130, -15)  # off the right and top edges
    inside = CropMask(np.ones((25, 30), bool), 130, 0)
    np.testing.assert_array_equal(mask_histograms(image, [spilling]), mask_histograms(image, [inside]))


def test_large_masks_are_sampled_without_changing_their_appearance_much():
    rng = np.random.default_rng(0)
    image = cv2.GaussianBlur(rng.integers(0, 256, (480, 640, 3), dtype=np.uint8), (31, 31), 0)  # smooth colours
    full = np.zeros((480, 640), bool)
    full[40:440, 200:420] = True  # 88,000 pixels
    mask = CropMask.from_full(full)
    sampled = mask_histograms(image, [mask])
    every_pixel = mask_histograms(image, [mask], replace(DEFAULT_DESIGN, max_pixels=10**6))
    assert appearance_similarity(sampled, every_pixel)[0, 0] > 0.98


def test_blend_is_a_renormalised_running_average_that_ignores_empty_masks():
    a, b = np.eye(4, dtype=np.float32)[:2]
    np.testing.assert_array_equal(blend(None, a, 0.9), a)
    mixed = blend(a, b, 0.75)
    assert np.isclose(np.linalg.norm(mixed), 1) and mixed[0] > mixed[1] > 0
    np.testing.assert_allclose(mixed[:2] / np.linalg.norm(mixed[:2]), np.array([3, 1]) / np.sqrt(10), rtol=1e-6)
    np.testing.assert_array_equal(blend(a, np.zeros(4, np.float32), 0.5), a)
    rows = blend(np.stack([a, a]), np.stack([b, np.zeros(4, np.float32)]), 0.5)  # row-wise: one track per row
    np.testing.assert_allclose(rows, [[2**-0.5, 2**-0.5, 0, 0], [1, 0, 0, 0]], atol=1e-6)


@pytest.mark.skipif(not (MOTS / "gt.txt").is_file(), reason="needs /work/shared/data/mots20_05")
def test_on_mots20_05_the_same_pedestrian_looks_more_alike_than_others_in_the_same_frames():
    frames: dict[int, list] = {}
    for record in read_mots(MOTS / "gt.txt"):
        if record.class_id == 2 and record.frame <= 80:
            frames.setdefault(record.frame, []).append(record)
    features = {}
    for number, records in frames.items():
        image = cv2.imread(str(MOTS / "img1" / f"{number:06d}.jpg"))
        features[number] = (mask_histograms(image, [r.mask() for r in records]), np.array([r.obj_id for r in records]))
    same, other = [], []
    for number in range(min(frames), max(frames) - 4):
        (a, ids_a), (b, ids_b) = features[number], features[number + 5]
        sim = appearance_similarity(a, b)
        match = ids_a[:, None] == ids_b[None, :]
        same.extend(sim[match])
        other.extend(sim[~match])
    assert len(same) > 100 and len(other) > 100
    assert np.mean(same) > np.mean(other) + 0.15
