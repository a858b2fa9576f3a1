"""Counting lines: in/out per class, decided by the mask centroid's path.

A track is counted once per line: its first crossing decides the direction,
and later wobbles back and forth across the line (a bottle jostled on the
belt, a person hesitating) never count again.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

Direction = Literal["in", "out"]


class LineConfig(BaseModel):
    """A segment A→B in pixels. Looking from A towards B, crossing from right to left is ``in``."""

    model_config = ConfigDict(extra="forbid")

    name: str
    points: tuple[tuple[float, float], tuple[float, float]] = Field(description="[[ax, ay], [bx, by]] in pixels.")
    classes: list[str] | None = Field(None, description="Only these class names; None means every class.")
    invert: bool = Field(False, description="Swap which direction counts as in.")
    color: tuple[int, int, int] = (255, 160, 0)

    @model_validator(mode="after")
    def _not_a_point(self) -> LineConfig:
        (ax, ay), (bx, by) = self.points
        if ax == bx and ay == by:
            raise ValueError(f"line {self.name!r} has two identical points")
        return self


def side(line: LineConfig, x: float, y: float) -> float:
    """Signed side of (x, y): > 0 on the ``in`` side (left of A→B in image coordinates, y down)."""
    (ax, ay), (bx, by) = line.points
    value = (bx - ax) * (y - ay) - (by - ay) * (x - ax)  # > 0: right of A→B on screen
    return value if line.invert else -value


def crosses_segment(line: LineConfig, p: tuple[float, float], q: tuple[float, float]) -> bool:
    """Does the move p→q pass between A and B (not beyond the line's ends)?"""
    (ax, ay), (bx, by) = line.points
    d1 = (q[0] - p[0]) * (ay - p[1]) - (q[1] - p[1]) * (ax - p[0])
    d2 = (q[0] - p[0]) * (by - p[1]) - (q[1] - p[1]) * (bx - p[0])
    return d1 * d2 <= 0


@dataclass(frozen=True)
class LineCrossing:
    line: str
    track_id: int
    class_name: str
    frame: int
    pts: float  # monotonic time of that frame: a backfilled crossing keeps its own
    direction: Direction
    point: tuple[float, float]  # centroid after the crossing


@dataclass
class _Path:
    point: tuple[float, float]
    side: float  # last non-zero side; 0 while the track has only touched the line
    counted: bool = False


@dataclass
class LineCounter:
    """Per-line, per-class in/out totals from centroid paths."""

    lines: list[LineConfig]
    totals: dict[tuple[str, str, Direction], int] = field(default_factory=dict)  # (line, class, direction) → count
    _paths: dict[tuple[str, int], _Path] = field(default_factory=dict)

    def update(self, frame: int, pts: float, track_id: int, class_name: str,
               centroid: tuple[float, float]) -> list[LineCrossing]:
        """Advance one track's path to ``centroid`` (seen in ``frame`` at ``pts``); returns the crossings it makes."""
        crossings = []
        for line in self.lines:
            if line.classes is not None and class_name not in line.classes:
                continue
            s = side(line, *centroid)
            path = self._paths.get((line.name, track_id))
            if path is None:
                self._paths[(line.name, track_id)] = _Path(centroid, s)
                continue
            if not path.counted and s * path.side < 0 and crosses_segment(line, path.point, centroid):
                direction: Direction = "in" if s > 0 else "out"
                path.counted = True
                key = (line.name, class_name, direction)
                self.totals[key] = self.totals.get(key, 0) + 1
                crossings.append(LineCrossing(line.name, track_id, class_name, frame, pts, direction, centroid))
            path.point = centroid
            if s != 0:
                path.side = s
        return crossings

    def forget(self, track_id: int) -> None:
        """Drop a removed track's paths."""
        for line in self.lines:
            self._paths.pop((line.name, track_id), None)
