"""Constant-velocity Kalman filters for every track at once, stepped by elapsed time, with noise proportional to box size.

State ``[cx, cy, w, h, vx, vy]`` per track (velocities in px/s; the size follows
a random walk), measurement ``[cx, cy, w, h]``. Each step advances by the seconds
since the last one, so a dropped frame is a longer step, not a wrong one.
Process and measurement noise scale with the box height (as in ByteTrack and
DeepSORT) so a distant 20 px pedestrian and a close 400 px one are filtered
alike. All tracks live in one array and are predicted and updated by batched
matrix products: one call per frame, not one per track.

Each track also keeps the state of its last update (``saved``): OC-SORT's
observation-centric re-update restarts from it when a lost track is found again.
"""

from __future__ import annotations

import numpy as np

# The noise was tuned per frame at 14 fps (MOTS20-05): 1/20 h for positions, 1/160 h px/frame for velocities.
_TUNED_FPS = 14.0
_POS_STD = 1.0 / 20  # × h: measurement noise, and position process noise per 1/14 s
_VEL_STD = _TUNED_FPS / 160  # × h px/s: velocity process noise per 1/14 s
# process noise as variance per second, times h²: a random walk's variance grows linearly with time
_Q_RATE = np.square([_POS_STD] * 4 + [_VEL_STD] * 2) * _TUNED_FPS
_R_UNIT = np.square([_POS_STD] * 4)
# a new track's speed is unknown: up to several heights a second (a car crossing a moving camera's view), so the
# second observation sets it nearly alone instead of the filter taking many frames to learn it
_P0_VEL_STD = 5.0  # × h px/s
_P0_UNIT = np.square([2 * _POS_STD] * 4 + [_P0_VEL_STD] * 2)


def xyxy_to_cxcywh(boxes: np.ndarray) -> np.ndarray:
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    return np.stack([(b[:, 0] + b[:, 2]) / 2, (b[:, 1] + b[:, 3]) / 2, b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]], axis=1)


def cxcywh_to_xyxy(states: np.ndarray) -> np.ndarray:
    s = np.asarray(states, dtype=np.float64).reshape(-1, states.shape[-1])
    half_w, half_h = s[:, 2] / 2, s[:, 3] / 2
    return np.stack([s[:, 0] - half_w, s[:, 1] - half_h, s[:, 0] + half_w, s[:, 1] + half_h], axis=1)


class KalmanBank:
    """The Kalman filters of all tracks as rows of ``x`` (N, 6) and ``P`` (N, 6, 6)."""

    def __init__(self) -> None:
        self.x = np.zeros((0, 6))
        self.P = np.zeros((0, 6, 6))
        self.saved_x = np.zeros((0, 6))  # state right after each track's last update
        self.saved_P = np.zeros((0, 6, 6))

    def __len__(self) -> int:
        return len(self.x)

    def add(self, boxes_xyxy: np.ndarray) -> np.ndarray:
        """Start one filter per box (at rest); returns their row indices."""
        z = xyxy_to_cxcywh(boxes_xyxy)
        h2 = np.square(np.maximum(z[:, 3], 1.0))
        x = np.concatenate([z, np.zeros((len(z), 2))], axis=1)
        P = np.einsum("n,ij->nij", h2, np.diag(_P0_UNIT))
        start = len(self.x)
        self.x, self.P = np.concatenate([self.x, x]), np.concatenate([self.P, P])
        self.saved_x, self.saved_P = np.concatenate([self.saved_x, x]), np.concatenate([self.saved_P, P])
        return np.arange(start, start + len(z))

    def keep(self, rows: np.ndarray) -> None:
        """Keep only ``rows`` (in that order): removed tracks leave the arrays."""
        self.x, self.P, self.saved_x, self.saved_P = self.x[rows], self.P[rows], self.saved_x[rows], self.saved_P[rows]

    def predict(self, dt: float) -> None:
        """Advance every filter by ``dt`` seconds."""
        if dt <= 0 or not len(self.x):
            return
        self.x, self.P = _predict(self.x, self.P, dt)

    def update(self, rows: np.ndarray, boxes_xyxy: np.ndarray, noise_scale: np.ndarray | float = 1.0) -> None:
        """Correct ``rows`` with measured boxes; ``noise_scale`` multiplies the measurement variance (partly seen objects)."""
        rows = np.asarray(rows, dtype=np.intp)
        if not rows.size:
            return
        self.x[rows], self.P[rows] = _update(self.x[rows], self.P[rows], xyxy_to_cxcywh(boxes_xyxy), noise_scale)
        self.saved_x[rows], self.saved_P[rows] = self.x[rows], self.P[rows]

    def reupdate(self, row: int, boxes_xyxy: np.ndarray, dts: np.ndarray, noise_scale: float = 1.0) -> None:
        """Observation-centric re-update (OC-SORT): from the last update, step along ``boxes_xyxy`` ``dts`` seconds apart.

        The boxes are virtual observations across a gap ending with the real one, so
        the velocity learnt over the gap is the one the object really had, not the
        drift the filter accumulated while it saw nothing.
        """
        x, P = self.saved_x[row : row + 1], self.saved_P[row : row + 1]
        for box, dt in zip(boxes_xyxy, dts):
            x, P = _predict(x, P, float(dt))
            x, P = _update(x, P, xyxy_to_cxcywh(box), noise_scale)
        self.x[row], self.P[row] = x[0], P[0]
        self.saved_x[row], self.saved_P[row] = x[0], P[0]

    def warp(self, affine: np.ndarray) -> None:
        """Move every filter (current and saved) by a camera motion: a 2×3 similarity transform of the image."""
        if not len(self.x):
            return
        M, t = affine[:, :2], affine[:, 2]
        scale = float(np.sqrt(abs(np.linalg.det(M))))
        T = np.zeros((6, 6))
        T[0:2, 0:2] = T[4:6, 4:6] = M
        T[2, 2] = T[3, 3] = scale
        for x, P in ((self.x, self.P), (self.saved_x, self.saved_P)):
            x[:] = x @ T.T
            x[:, 0:2] += t
            P[:] = T @ P @ T.T

    def boxes(self, rows: np.ndarray | None = None) -> np.ndarray:
        """Current xyxy boxes (all rows, or ``rows``)."""
        return cxcywh_to_xyxy(self.x if rows is None else self.x[rows])

    def saved_boxes(self) -> np.ndarray:
        """Boxes at each track's last update (moved with the camera since)."""
        return cxcywh_to_xyxy(self.saved_x)


def _predict(x: np.ndarray, P: np.ndarray, dt: float) -> tuple[np.ndarray, np.ndarray]:
    F = np.eye(6)
    F[0, 4] = F[1, 5] = dt  # the centre moves with its velocity
    h2 = np.square(np.maximum(x[:, 3], 1.0))
    x = x @ F.T
    P = F @ P @ F.T
    P[:, np.arange(6), np.arange(6)] += h2[:, None] * (_Q_RATE * dt)
    return x, P


def _update(x: np.ndarray, P: np.ndarray, z: np.ndarray, noise_scale: np.ndarray | float) -> tuple[np.ndarray, np.ndarray]:
    h2 = np.square(np.maximum(x[:, 3], 1.0)) * np.broadcast_to(np.asarray(noise_scale, dtype=np.float64), (len(x),))
    S = P[:, :4, :4].copy()
    S[:, np.arange(4), np.arange(4)] += h2[:, None] * _R_UNIT
    PHt = P[:, :, :4]  # P Hᵀ with H = [I4 0]
    K = np.linalg.solve(S, PHt.transpose(0, 2, 1)).transpose(0, 2, 1)  # S is symmetric: K = P Hᵀ S⁻¹
    x = x + np.einsum("nij,nj->ni", K, z - x[:, :4])
    P = P - K @ P[:, :4, :]
    return x, (P + P.transpose(0, 2, 1)) / 2
