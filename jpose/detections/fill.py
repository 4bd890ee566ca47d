r"""Filling missing and low-confidence 2D joints over time, before lifting.

A joint is *valid* in a frame when its coordinates are finite and its confidence is
``>= threshold``; every other entry is filled. Both fills keep valid entries exactly and
return a mask of what they filled (:class:`Filled`).

:func:`fill_linear`
  Per joint and coordinate, linear interpolation over the frame numbers (gaps in the
  numbering are respected), held constant before the first and after the last valid
  frame (``np.interp``). A joint never valid in the whole track is filled from the other
  joints, per frame, by the first of these that applies:

  1. with ``layout``, the skeleton's synthesis rule over joints that are valid somewhere
     (:data:`jpose.skeleton.SYNTHESIS_RULES`: e.g. a never-seen BODY_25 ``MidHip`` is the
     mid-hip, a never-seen ``Neck`` the mid-shoulder);
  2. with ``layout``, its nearest ancestor in the layout's tree that is valid somewhere
     (a never-seen wrist sits on its elbow: a zero-length bone, but finite and in place);
  3. the mean of the joints that are valid somewhere (their filled values).

:func:`fill_low_rank`
  Trajectory completion (Li et al., ICCV 2019, Eq. 1; the ALM solver of
  :mod:`jpose.solvers.trajectory_completion`) applied to the 2D track. The solver's
  matrix form takes any number of coordinates per joint (``(C P, F)`` rows with one mask
  row per joint), so 2D needs no change to it. Its lambdas are defined for metres, so the
  pixels are first centred (the mean valid coordinate) and divided by
  ``median box diagonal of the valid joints / 1.7``: the person then spans about 1.7
  units, like an adult in metres, and the default lambdas keep their meaning. Frames
  missing from the numbering are inserted as unobserved columns (so the smoothness term
  sees true time steps) and dropped again. Joints never valid get the
  :func:`fill_linear` fallback and are held fixed (the solver has nothing to go on).
  It is initialised from nothing but the valid entries; the linear fill only supplies
  finite placeholders.
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import numpy as np

from jpose import skeleton

__all__ = ["Filled", "fill_linear", "fill_low_rank", "valid_mask"]

#: Box diagonal (in metre-like units) that a person is scaled to for the solver.
PERSON_SIZE = 1.7


class Filled(NamedTuple):
    """Result of a fill."""

    keypoints: np.ndarray  # (T, J, C) float64 pixels, finite everywhere
    filled: np.ndarray  # (T, J) bool: True where the value was filled, not detected
    status: str  # "interpolated", or the solver's: "converged" / "max_iterations"
    iterations: int  # solver iterations (0 for the linear fill)


def valid_mask(keypoints, confidence, *, threshold: float) -> np.ndarray:
    """``(T, J)`` bool: finite coordinates and ``confidence >= threshold``."""
    kp = np.asarray(keypoints, np.float64)
    conf = np.asarray(confidence, np.float64)
    return np.isfinite(kp).all(axis=-1) & (conf >= threshold)


def _inputs(keypoints, confidence, frames, threshold):
    kp = np.asarray(keypoints, np.float64)
    conf = np.asarray(confidence, np.float64)
    if kp.ndim != 3 or kp.shape[0] < 1:
        raise ValueError(f"keypoints: expected shape (T, J, C) with T >= 1, got {kp.shape}")
    if conf.shape != kp.shape[:2]:
        raise ValueError(f"confidence: expected shape {kp.shape[:2]}, got {conf.shape}")
    if not np.isfinite(threshold):
        raise ValueError(f"threshold: expected a finite number, got {threshold!r}")
    t = np.arange(kp.shape[0]) if frames is None else np.asarray(frames)
    if t.shape != (kp.shape[0],) or t.dtype.kind not in "iu":
        raise ValueError(f"frames: expected ({kp.shape[0]},) integers, got "
                         f"{t.dtype}{t.shape}")
    if kp.shape[0] > 1 and not np.all(np.diff(t) > 0):
        raise ValueError("frames: must be strictly increasing")
    valid = valid_mask(kp, conf, threshold=threshold)
    if not valid.any():
        raise ValueError(f"no joint has confidence >= threshold={threshold} in any frame; "
                         "nothing to fill from")
    return kp, t.astype(np.int64), valid


def _synthesis_weights(name: str, available: list[str]) -> np.ndarray | None:
    """Weights over ``available`` joints giving ``name`` by the skeleton's rules."""
    source = skeleton.Skeleton("observed", tuple(available), (-1,) + (0,) * (len(available) - 1))
    target = skeleton.Skeleton("target", (name,), (-1,))
    try:
        matrix, _ = skeleton.conversion_matrix(source, target)
    except ValueError:
        return None
    return matrix[0]


def _fallback(out: np.ndarray, ever: np.ndarray, layout) -> None:
    """Fills the never-valid joints of ``out`` (T, J, C) in place (module docstring)."""
    have = np.flatnonzero(ever)
    skel = None if layout is None else skeleton.get(layout)
    if skel is not None and skel.num_joints != out.shape[1]:
        raise ValueError(f"layout: {skel.name!r} has {skel.num_joints} joints; keypoints "
                         f"have {out.shape[1]}")
    for j in np.flatnonzero(~ever):
        if skel is not None:
            names = [skel.joint_names[i] for i in have]
            w = _synthesis_weights(skel.joint_names[j], names)
            if w is not None:
                out[:, j] = np.tensordot(out[:, have], w, axes=([1], [0]))
                continue
            p = skel.parents[j]
            while p != -1 and not ever[p]:
                p = skel.parents[p]
            if p != -1:
                out[:, j] = out[:, p]
                continue
        out[:, j] = out[:, have].mean(axis=1)


def fill_linear(keypoints, confidence, *, threshold: float, frames=None,
                layout: str | skeleton.Skeleton | None = None) -> Filled:
    """Linear interpolation in time of invalid joints (rules in the module docstring).

    Args:
      keypoints: ``(T, J, C)`` pixels (C = 2 for image keypoints), NaN where missing.
      confidence: ``(T, J)`` in [0, 1].
      threshold: entries with ``confidence < threshold`` (or non-finite) are filled.
      frames: ``(T,)`` increasing frame numbers (default ``0..T-1``).
      layout: joint layout, for the fallback of joints never valid.

    Returns:
      :class:`Filled` with ``status="interpolated"``.

    Raises:
      ValueError: bad shapes, or no valid entry at all.
    """
    kp, t, valid = _inputs(keypoints, confidence, frames, threshold)
    out = kp.copy()
    ever = valid.any(axis=0)
    for j in np.flatnonzero(ever):
        ok = valid[:, j]
        if ok.all():
            continue
        for c in range(kp.shape[2]):
            out[~ok, j, c] = np.interp(t[~ok], t[ok], kp[ok, j, c])
    if not ever.all():
        _fallback(out, ever, layout)
    return Filled(out, ~valid, "interpolated", 0)


def fill_low_rank(keypoints, confidence, *, threshold: float, frames=None,
                  layout: str | skeleton.Skeleton | None = None, config=None) -> Filled:
    """Low-rank + smooth completion of invalid joints (module docstring).

    Args:
      keypoints, confidence, threshold, frames, layout: as :func:`fill_linear`.
      config: a :class:`jpose.solvers.trajectory_completion.CompletionConfig`
        (lambdas, tolerance, iteration budget); its ``units`` must be ``"m"`` (the
        pixels are rescaled to metre-like units here), ``tau`` and ``window`` are not
        used (``threshold`` decides what is observed). Default ``CompletionConfig()``.

    Returns:
      :class:`Filled` with the solver's status (``"converged"`` or
      ``"max_iterations"``) and iteration count. Runs in float64 when JAX's x64 mode
      is on, else float32.

    Raises:
      ValueError: as :func:`fill_linear`, or ``config.units != "m"``.
      RuntimeError: the solver's iterates stopped being finite.
    """
    import jax  # Deferred: the readers and the linear fill need no JAX.

    from jpose.solvers import _loop
    from jpose.solvers import trajectory_completion as tc

    config = tc.CompletionConfig() if config is None else config
    if config.units != "m":
        raise ValueError(f"config.units: must be 'm' (pixels are rescaled to metre-like "
                         f"units by fill_low_rank), got {config.units!r}")
    config = dataclasses.replace(config, window=None)
    kp, t, valid = _inputs(keypoints, confidence, frames, threshold)
    linear = fill_linear(kp, confidence, threshold=threshold, frames=t, layout=layout)
    num_t, num_j, num_c = kp.shape
    ever = valid.any(axis=0)
    pinned = valid | ~ever[None, :]
    cols = t - t[0]
    num_f = int(cols[-1]) + 1
    s = np.zeros((num_f, num_j, num_c))
    s[cols] = linear.keypoints
    observed = np.zeros((num_f, num_j), bool)
    observed[cols] = pinned
    center = s[observed].mean(axis=0)
    diag = _box_diagonals(np.where(valid[..., None], kp, np.nan))
    unit = max(float(np.nanmedian(diag)) if np.isfinite(diag).any() else 0.0, 1.0)
    unit /= PERSON_SIZE
    dtype = jax.dtypes.canonicalize_dtype(np.float64)
    matrix = ((s - center) / unit).transpose(1, 2, 0).reshape(num_j * num_c, num_f)
    result = tc.solve(matrix.astype(dtype), np.ascontiguousarray(observed.T), config=config)
    status = _loop.status_name(result.status)
    x = np.asarray(result.x, np.float64)
    if status == "non_finite" or not np.isfinite(x).all():
        raise RuntimeError(f"trajectory completion failed: status {status} after "
                           f"{int(result.iterations)} iterations")
    completed = x.reshape(num_j, num_c, num_f).transpose(2, 0, 1)[cols] * unit + center
    completed[pinned] = linear.keypoints[pinned]  # Exact detections (no float32 rounding).
    return Filled(completed, ~valid, status, int(result.iterations))


def _box_diagonals(kp: np.ndarray) -> np.ndarray:
    from jpose.detections.tracking import box_diagonals
    return box_diagonals(kp)
