"""Constant-velocity Kalman filter on a box, with noise proportional to its size.

State ``[cx, cy, w, h, vx, vy, vw, vh]``, measurement ``[cx, cy, w, h]``. Process
and measurement noise scale with the box height (as in ByteTrack/DeepSORT) so a
distant 20 px pedestrian and a close 400 px one are filtered alike.
"""

from __future__ import annotations

import numpy as np
from filterpy.kalman import KalmanFilter

_POS_STD = 1.0 / 20
_VEL_STD = 1.0 / 160


def xyxy_to_cxcywh(box: np.ndarray) -> np.ndarray:
    x0, y0, x1, y1 = box
    return np.array([(x0 + x1) / 2, (y0 + y1) / 2, x1 - x0, y1 - y0], dtype=np.float64)


def cxcywh_to_xyxy(state: np.ndarray) -> np.ndarray:
    cx, cy, w, h = state[:4]
    return np.array([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], dtype=np.float64)


class BoxKalman:
    """A filterpy ``KalmanFilter`` tracking one box with constant velocity."""

    def __init__(self, box_xyxy: np.ndarray) -> None:
        kf = KalmanFilter(dim_x=8, dim_z=4)
        kf.F = np.eye(8)
        kf.F[:4, 4:] = np.eye(4)
        kf.H = np.eye(4, 8)
        z = xyxy_to_cxcywh(box_xyxy)
        kf.x = np.concatenate([z, np.zeros(4)]).reshape(8, 1)
        h = max(z[3], 1.0)
        kf.P = np.diag(np.square([2 * _POS_STD * h] * 4 + [10 * _VEL_STD * h] * 4))
        self.kf = kf

    def _height(self) -> float:
        return max(float(self.kf.x[3, 0]), 1.0)

    def predict(self) -> np.ndarray:
        """Advance one frame; returns the predicted xyxy box."""
        h = self._height()
        self.kf.Q = np.diag(np.square([_POS_STD * h] * 4 + [_VEL_STD * h] * 4))
        if self.kf.x[2, 0] + self.kf.x[6, 0] <= 1 or self.kf.x[3, 0] + self.kf.x[7, 0] <= 1:
            self.kf.x[6:8] = 0  # a box may not shrink through zero size
        self.kf.predict()
        return self.box()

    def update(self, box_xyxy: np.ndarray) -> None:
        h = self._height()
        self.kf.R = np.diag(np.square([_POS_STD * h] * 4))
        self.kf.update(xyxy_to_cxcywh(box_xyxy).reshape(4, 1))

    def box(self) -> np.ndarray:
        return cxcywh_to_xyxy(self.kf.x[:, 0])
