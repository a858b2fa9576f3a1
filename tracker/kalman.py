"""Constant-velocity Kalman filter on a box, with noise proportional to its size.

State ``[cx, cy, w, h, vx, vy, vw, vh]``, measurement ``[cx, cy, w, h]``. Process
and measurement noise scale with the box height (as in ByteTrack/DeepSORT) so a
distant 20 px pedestrian and a close 400 px one are filtered alike. The
equations are filterpy's functional ``predict``/``update``: the same maths as
its ``KalmanFilter`` class without the per-call bookkeeping, which matters at
hundreds of tracks per frame.
"""

from __future__ import annotations

import numpy as np
from filterpy.kalman import predict, update

_POS_STD = 1.0 / 20
_VEL_STD = 1.0 / 160
_F = np.eye(8)
_F[:2, 4:6] = np.eye(2)  # centre moves with constant velocity; size follows a random walk
_H = np.eye(4, 8)
_Q_UNIT = np.diag(np.square([_POS_STD] * 4 + [_VEL_STD] * 4))  # times h² each step
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
        self.x = np.concatenate([z, np.zeros(4)])
        h = max(z[3], 1.0)
        self.P = np.diag(np.square([2 * _POS_STD * h] * 4 + [10 * _VEL_STD * h] * 4))

    def _height(self) -> float:
        return max(float(self.x[3]), 1.0)

    def predict(self) -> np.ndarray:
        """Advance one frame; returns the predicted xyxy box."""
        h = self._height()
        if self.x[2] + self.x[6] <= 1 or self.x[3] + self.x[7] <= 1:
            self.x[6:8] = 0  # a box may not shrink through zero size
        self.x, self.P = predict(self.x, self.P, _F, _Q_UNIT * (h * h))
        return self.box()

    def update(self, box_xyxy: np.ndarray) -> None:
        h = self._height()
        self.x, self.P = update(self.x, self.P, xyxy_to_cxcywh(box_xyxy), _R_UNIT * (h * h), _H)

    def box(self) -> np.ndarray:
        return cxcywh_to_xyxy(self.x)
