"""Pixels to real units: a fixed scale, or a ground-plane homography.

A scale (``px_per_mm`` or ``px_per_m``) suits a camera looking straight down
at a belt or a bench. A homography from four image points to four world
points suits a camera looking at the ground at an angle (a site, a yard):
every contour is mapped onto the ground plane before it is measured, so
objects far away are not reported smaller than near ones.
"""

from __future__ import annotations

import math
from typing import Literal

import cv2
import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

Unit = Literal["px", "mm", "cm", "m"]
_MM_PER = {"mm": 1.0, "cm": 10.0, "m": 1000.0}


class HomographyConfig(BaseModel):
    """Four (or more) image points and where they lie on the ground, in ``unit``."""

    model_config = ConfigDict(extra="forbid")

    image_points: list[tuple[float, float]] = Field(description="Pixels, at least 4, no three on a line.")
    world_points: list[tuple[float, float]] = Field(description="The same points on the ground plane, in `unit`.")
    unit: Literal["mm", "cm", "m"] = "m"

    @model_validator(mode="after")
    def _pairs(self) -> HomographyConfig:
        if len(self.image_points) != len(self.world_points) or len(self.image_points) < 4:
            raise ValueError("homography needs the same number (at least 4) of image_points and world_points")
        return self


class CalibrationConfig(BaseModel):
    """One of ``px_per_mm``, ``px_per_m`` or ``homography``; none leaves sizes in pixels."""

    model_config = ConfigDict(extra="forbid")

    px_per_mm: float | None = Field(None, gt=0)
    px_per_m: float | None = Field(None, gt=0)
    homography: HomographyConfig | None = None

    @model_validator(mode="after")
    def _one(self) -> CalibrationConfig:
        if sum(x is not None for x in (self.px_per_mm, self.px_per_m, self.homography)) > 1:
            raise ValueError("give only one of px_per_mm, px_per_m or homography")
        return self


class Calibration:
    """Maps image points to world points in :attr:`unit` (``px`` when uncalibrated)."""

    def __init__(self, config: CalibrationConfig | None = None) -> None:
        config = config or CalibrationConfig()
        self.matrix: np.ndarray | None = None
        self.scale = 1.0  # world units per pixel, when not a homography
        if config.homography is not None:
            h = config.homography
            matrix, _ = cv2.findHomography(np.float64(h.image_points), np.float64(h.world_points), 0)
            if matrix is None or abs(np.linalg.det(matrix)) < 1e-12:
                raise ValueError("homography points are degenerate (three on a line, or repeated)")
            self.matrix, self.unit = matrix, h.unit
        elif config.px_per_mm is not None:
            self.scale, self.unit = 1.0 / config.px_per_mm, "mm"
        elif config.px_per_m is not None:
            self.scale, self.unit = 1.0 / config.px_per_m, "m"
        else:
            self.unit = "px"

    def to_world(self, points: np.ndarray) -> np.ndarray:
        """(N, 2) image points → (N, 2) world points, float64."""
        points = np.asarray(points, dtype=np.float64).reshape(-1, 2)
        if self.matrix is None:
            return points * self.scale
        return cv2.perspectiveTransform(points[None], self.matrix)[0]

    def to_image(self, points: np.ndarray) -> np.ndarray:
        """(N, 2) world points → (N, 2) image points."""
        points = np.asarray(points, dtype=np.float64).reshape(-1, 2)
        if self.matrix is None:
            return points / self.scale
        return cv2.perspectiveTransform(points[None], np.linalg.inv(self.matrix))[0]

    def pixel_areas(self, xs: np.ndarray, ys: np.ndarray) -> np.ndarray | float:
        """World area of the pixels centred at (xs, ys): |det J| of the map at each centre.

        For a homography the Jacobian determinant is det(H) / w³ with
        w = h31·x + h32·y + h33, exact for each pixel's centre; for a scale it is scale².
        """
        if self.matrix is None:
            return self.scale**2
        h = self.matrix
        w = h[2, 0] * xs + h[2, 1] * ys + h[2, 2]
        return np.abs(np.linalg.det(h) / w**3)

    def length_to_pixels(self, length: float, at: tuple[float, float], unit: str) -> float:
        """How many pixels ``length`` (in ``unit``) spans near image point ``at`` (local scale)."""
        if self.unit == "px":
            if unit != "px":
                raise ValueError(f"a length in {unit} needs a calibration; this camera has none")
            return length
        length = convert(length, unit, self.unit)
        return length / math.sqrt(float(np.mean(self.pixel_areas(np.float64(at[0]), np.float64(at[1])))))


def convert(value: float, unit: str, to: str) -> float:
    """Convert a length between mm, cm and m (px only to px)."""
    if unit == to:
        return value
    if unit not in _MM_PER or to not in _MM_PER:
        raise ValueError(f"cannot convert {unit} to {to}")
    return value * _MM_PER[unit] / _MM_PER[to]
