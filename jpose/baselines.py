"""Trivial lifting baselines, to put learned models' errors in context.

* :func:`fit_mean_pose`: predicts the training set's mean root-relative pose for every
  frame, whatever the input. Any model should beat it by a wide margin.
* :func:`fit_linear_lifter`: ridge regression from one frame's root-relative 2D
  keypoints (normalised screen coordinates) to its root-relative 3D pose, solved in
  closed form. A single-frame linear model: what depth a linear map can read off 2D.

Poses are ``(N, J, 3)`` root-relative camera-frame metres; 2D inputs ``(N, J, 2)``.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

__all__ = ["LinearLifter", "fit_mean_pose", "fit_linear_lifter", "apply_linear_lifter"]


def _check(name: str, array: np.ndarray, last: int) -> np.ndarray:
    array = np.asarray(array, np.float64)
    if array.ndim != 3 or array.shape[-1] != last:
        raise ValueError(f"{name} must have shape (N, J, {last}); got {array.shape}.")
    if not np.isfinite(array).all():
        raise ValueError(f"{name} contains NaN or infinite values.")
    return array


def fit_mean_pose(poses_3d: np.ndarray) -> np.ndarray:
    """The mean ``(J, 3)`` of root-relative training poses ``(N, J, 3)`` (metres)."""
    return _check("poses_3d", poses_3d, 3).mean(axis=0).astype(np.float32)


class LinearLifter(NamedTuple):
    """``pose_3d = reshape([x_2d.ravel(), 1] @ weights, (J, 3))``."""

    weights: np.ndarray  # ((J * 2 + 1), J * 3) float64


def fit_linear_lifter(inputs_2d: np.ndarray, poses_3d: np.ndarray, *,
                      ridge: float = 1e-3) -> LinearLifter:
    """Ridge regression from ``(N, J, 2)`` inputs to ``(N, J, 3)`` poses.

    ``ridge`` is the L2 penalty per sample (the normal equations use ``N * ridge``), so
    its effect does not depend on the data set size; the bias is not penalised.
    """
    x = _check("inputs_2d", inputs_2d, 2)
    y = _check("poses_3d", poses_3d, 3)
    if x.shape[:2] != y.shape[:2]:
        raise ValueError(f"inputs_2d {x.shape} and poses_3d {y.shape} disagree in (N, J).")
    n = x.shape[0]
    design = np.concatenate([x.reshape(n, -1), np.ones((n, 1))], axis=1)
    penalty = n * ridge * np.eye(design.shape[1])
    penalty[-1, -1] = 0.0
    weights = np.linalg.solve(design.T @ design + penalty, design.T @ y.reshape(n, -1))
    return LinearLifter(weights)


def apply_linear_lifter(lifter: LinearLifter, inputs_2d: np.ndarray) -> np.ndarray:
    """Predicted ``(N, J, 3)`` root-relative poses (metres, float32)."""
    x = _check("inputs_2d", inputs_2d, 2)
    n, j = x.shape[:2]
    if lifter.weights.shape[0] != j * 2 + 1:
        raise ValueError(f"inputs_2d has {j} joints; the lifter was fitted on "
                         f"{(lifter.weights.shape[0] - 1) // 2}.")
    design = np.concatenate([x.reshape(n, -1), np.ones((n, 1))], axis=1)
    return (design @ lifter.weights).reshape(n, j, 3).astype(np.float32)
