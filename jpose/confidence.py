"""Per-joint confidence scores of a lifter's 3D predictions, for pseudo-labelling.

Li et al. (ICCV 2019) complete and weight a video's joints by a score ``s`` in [0, 1]
(seed 000: the volumetric heatmap's peak value; ``tau`` 0.7 on Human3.6M, 0.5 on
MPI-INF-3DHP). A 2D-to-3D lifter has no heatmap, so a score must come from elsewhere.
The candidates here, all ``(F, J)`` arrays in [0, 1] for one video:

* :func:`detector` -- the 2D detector's per-joint confidence (the default of
  ``launch/boost.py``): a joint the detector was unsure of is likely lifted badly. It
  carries no information where the 2D has no scores (ground-truth 2D, VideoPose3D's CPN
  files: all ones).
* :func:`flip_consistency` -- agreement of the lifter with itself under the mirror
  symmetry it was trained with: ``d`` = distance between the prediction and the
  mirrored-back prediction of the mirrored input, ``s = exp(-d^2 / (2 sigma^2))``. Where
  the two disagree, at least one is wrong.
* :func:`temporal_consistency` -- smoothness of a single-frame lifter's predictions over
  the video: ``a`` = the joint's acceleration ``|p_{t+1} - 2 p_t + p_{t-1}|``,
  ``s = exp(-a^2 / (2 sigma^2))``; real joints move smoothly, errors jitter.
* products of these (:func:`combine`).

Distances are in metres and ``sigma`` too. :func:`ranking_report` measures how well a
score ranks the actual errors (the issue's measure: the fraction of joints above ``tau``
and their error, against the rest; Spearman's rank correlation of score and error).
"""

from __future__ import annotations

import numpy as np
import scipy.stats

__all__ = ["KINDS", "detector", "flip_consistency", "temporal_consistency", "combine",
           "ranking_report"]

#: Score kinds ``launch/boost.py`` accepts (``boost.confidence``), products with "*".
KINDS = ("detector", "flip", "temporal")


def _gaussian(distance: np.ndarray, sigma: float) -> np.ndarray:
    if not sigma > 0:
        raise ValueError(f"sigma must be positive (metres); got {sigma}")
    return np.exp(-0.5 * (np.asarray(distance, np.float64) / sigma) ** 2).astype(np.float32)


def detector(confidence: np.ndarray) -> np.ndarray:
    """The 2D detector's scores ``(F, J)``, clipped to [0, 1]."""
    return np.clip(np.asarray(confidence, np.float32), 0.0, 1.0)


def flip_consistency(poses: np.ndarray, poses_from_flipped: np.ndarray, *,
                     sigma: float) -> np.ndarray:
    """``exp(-d^2 / 2 sigma^2)``, ``d`` the per-joint distance ``(F, J)`` between the
    prediction ``(F, J, 3)`` and the mirrored-back prediction of the mirrored input
    (both root-relative, metres)."""
    poses, other = np.asarray(poses), np.asarray(poses_from_flipped)
    if poses.shape != other.shape or poses.ndim != 3:
        raise ValueError(f"flip_consistency: poses {poses.shape} and poses_from_flipped "
                         f"{other.shape} must both be (F, J, 3)")
    return _gaussian(np.linalg.norm(poses - other, axis=-1), sigma)


def temporal_consistency(poses: np.ndarray, *, sigma: float) -> np.ndarray:
    """``exp(-a^2 / 2 sigma^2)``, ``a`` the per-joint acceleration (metres per frame^2)
    of a video's predictions ``(F, J, 3)``, with the end frames repeated (a one-frame
    video scores 1)."""
    poses = np.asarray(poses, np.float64)
    if poses.ndim != 3:
        raise ValueError(f"temporal_consistency: poses must be (F, J, 3); got {poses.shape}")
    padded = np.concatenate([poses[:1], poses, poses[-1:]], axis=0)
    accel = padded[2:] - 2 * padded[1:-1] + padded[:-2]
    return _gaussian(np.linalg.norm(accel, axis=-1), sigma)


def combine(*scores: np.ndarray) -> np.ndarray:
    """The product of scores (each in [0, 1]): confident only where all are."""
    out = np.ones_like(np.asarray(scores[0], np.float32))
    for s in scores:
        out = out * np.asarray(s, np.float32)
    return out


def ranking_report(scores: np.ndarray, errors: np.ndarray, *, tau: float) -> dict:
    """How well ``scores`` rank per-joint ``errors`` (same shape, errors in metres).

    Returns ``fraction_confident`` (share of joints with score > tau),
    ``mpjpe_confident_mm`` / ``mpjpe_rest_mm`` (mean error of those and of the others;
    NaN where a side is empty) and ``spearman`` (rank correlation of score and error:
    -1 is a perfect ranking, 0 none; NaN for a constant score).
    """
    s, e = np.asarray(scores, np.float64).ravel(), np.asarray(errors, np.float64).ravel()
    if s.shape != e.shape:
        raise ValueError(f"ranking_report: scores {np.shape(scores)} and errors "
                         f"{np.shape(errors)} differ in shape")
    above = s > tau

    def mean_mm(mask):
        return float(1000 * e[mask].mean()) if mask.any() else float("nan")

    spearman = (float(scipy.stats.spearmanr(s, e).statistic) if np.ptp(s) > 0
                else float("nan"))
    return {"fraction_confident": float(above.mean()),
            "mpjpe_confident_mm": mean_mm(above), "mpjpe_rest_mm": mean_mm(~above),
            "spearman": spearman}
