"""Constant-velocity Kalman filter on a box, stepped by elapsed time, with noise proportional to its size.

State ``[cx, cy, w, h, vx, vy]`` (velocities in px/s; the size follows a random
walk), measurement ``[cx, cy, w, h]``. Each step advances by the seconds since
the last one, so a dropped frame is a longer step, not a wrong one. Process
and measurement noise scale with the box height (as in ByteTrack/DeepSORT) so a
distant 20 px pedestrian and a close 400 px one are filtered alike. The
equations are filterpy's functional ``predict``/``update``: the same maths as
its ``KalmanFilter`` class without the per-call bookkeeping, which matters at
hundreds of tracks per frame.
"""

from __future__ import annotations

import numpy as np
from filterpy.kalman import predict, update

# The noise was tuned per frame at 14 fps (MOTS20-05): 1/20 h for positions, 1/160 h px/frame for velocities.
_TUNED_FPS = 14.0
_POS_STD = 1.0 / 20  # × h: measurement noise, and position process noise per 1/14 s
_VEL_STD = _TUNED_FPS / 160  # × h px/s: velocity process noise per 1/14 s
_H = np.eye(4, 6)
# process noise as variance per second, times h²: a random walk's variance grows linearly with time
_Q_RATE = np.diag(np.square([_POS_STD] * 4 + [_VEL_STD] * 2) * _TUNED_FPS)
_R_UNIT = np.diag(np.square([_POS_STD] * 4))


def xyxy_to_cxcywh(box: np.ndarray) -> np.ndarray:
    x0, y0, x1, y1 = box
    return np.array([(x0 + x1) / 2, (y0 + y1) / 2, x1 - x0, y1 - y0], dtype=np.float64)


def cxcywh_to_xyxy(state: np.ndarray) -> np.ndarray:
    cx, cy, w, h = state[:4]
    return np.array([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], dtype=np.float64)


class BoxKalman:
    """One box tracked with constant velocity (filterpy predict/update)."""

    def __init__(self, box_xyxy: np.ndarray) -> None:
        z = xyxy_to_cxcywh(box_xyxy)
        self.x = np.concatenate([z, np.zeros(2)])
        h = max(z[3], 1.0)
        self.P = np.diag(np.square([2 * _POS_STD * h] * 4 + [10 * _VEL_STD * h] * 2))

    def _height(self) -> float:
        return max(float(self.x[3]), 1.0)

    def predict(self, dt: float) -> np.ndarray:
        """Advance by ``dt`` seconds; returns the predicted xyxy box."""
        h = self._height()
        transition = np.eye(6)
        transition[0, 4] = transition[1, 5] = dt  # the centre moves with its velocity
        self.x, self.P = predict(self.x, self.P, transition, _Q_RATE * (h * h * dt))
        return self.box()

    def update(self, box_xyxy: np.ndarray) -> None:
        h = self._height()
        self.x, self.P = update(self.x, self.P, xyxy_to_cxcywh(box_xyxy), _R_UNIT * (h * h), _H)

    def box(self) -> np.ndarray:
        return cxcywh_to_xyxy(self.x)
