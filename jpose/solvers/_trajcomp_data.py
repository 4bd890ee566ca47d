"""Corrupted walking motion for testing and benchmarking trajectory completion (private).

The corruption follows the oracle's recipe (``shared/oracles/README.md`` section 3):
Gaussian noise (20 mm per coordinate), 6% isolated gross outliers of 150-400 mm, and
F/40 occlusion bursts in which a limb joint drifts by 100-300 mm over 4-12 frames.
Confidence: 85% of the outliers and 90% of the burst frames fall below ``tau``, and so
do 3% of the good joints. Everything is in metres, ``h36m_17`` joint order, root-relative
(the pelvis is exactly zero and never corrupted).
"""

from __future__ import annotations

import contextlib
from typing import NamedTuple

import numpy as np

from jpose import skeleton

#: h36m_17 limb joints that get occlusion bursts: knees, ankles, elbows, wrists.
_BURST_JOINTS = (2, 3, 5, 6, 12, 13, 15, 16)


class CorruptedMotion(NamedTuple):
    truth: np.ndarray  # (F, 17, 3) float64 metres, root-relative
    poses: np.ndarray  # (F, 17, 3) float64 corrupted predictions
    confidence: np.ndarray  # (F, 17) float64 in [0, 1]


def walking(num_frames: int, seed: int, *, fps: float = 25.0) -> np.ndarray:
    """Synthetic walk (``jpose.datasets.synthetic``), h36m_17, root-relative, metres."""
    from jpose.datasets import synthetic

    clip = synthetic.synthetic_clip("walk", num_frames=num_frames, fps=fps, seed=seed)
    pos = skeleton.convert(clip.positions.astype(np.float64), "deepmimic_16", "h36m_17")
    return pos - pos[:, :1]


def sample_clip(name: str) -> np.ndarray:
    """A DeepMimic sample clip (needs the pybullet wheel), h36m_17, root-relative, metres."""
    from jpose.datasets import samples

    clip = samples.load_deepmimic_clip(name)
    pos = skeleton.convert(clip.positions.astype(np.float64), "deepmimic_16", "h36m_17")
    return pos - pos[:, :1]


def corrupt(truth: np.ndarray, seed: int, *, tau: float = 0.5, noise: float = 0.02,
            outlier_rate: float = 0.06) -> CorruptedMotion:
    """Noise, gross outliers and occlusion bursts with matching low confidences."""
    rng = np.random.default_rng(seed)
    truth = np.asarray(truth, np.float64)
    f, p, _ = truth.shape
    poses = truth + rng.normal(0.0, noise, truth.shape)
    poses[:, 0] = truth[:, 0]
    outlier = rng.random((f, p)) < outlier_rate
    outlier[:, 0] = False
    direction = rng.normal(size=(f, p, 3))
    direction /= np.linalg.norm(direction, axis=-1, keepdims=True)
    poses += outlier[..., None] * direction * rng.uniform(0.15, 0.4, (f, p, 1))
    burst = np.zeros((f, p), bool)
    for _ in range(max(1, f // 40)):
        joint = rng.choice(_BURST_JOINTS)
        length = int(rng.integers(4, 13))
        start = int(rng.integers(0, max(1, f - length)))
        d = rng.normal(size=3)
        d /= np.linalg.norm(d)
        ramp = np.linspace(0.0, 1.0, length)[:, None] * rng.uniform(0.1, 0.3) * d
        stop = min(f, start + length)
        poses[start:stop, joint] += ramp[: stop - start]
        burst[start:stop, joint] = True
    confidence = rng.uniform(0.6, 1.0, (f, p))
    low = ((outlier & (rng.random((f, p)) < 0.85)) | (burst & (rng.random((f, p)) < 0.9))
           | (rng.random((f, p)) < 0.03))
    low[:, 0] = False
    confidence[low] = rng.uniform(0.0, tau, int(low.sum()))
    return CorruptedMotion(truth, poses, confidence)


def interpolate(poses: np.ndarray, observed: np.ndarray) -> np.ndarray:
    """Baseline: linear interpolation in time of unobserved joints (held at the ends).

    ``poses`` (F, P, 3), ``observed`` (F, P) bool. A joint never observed is left as is.
    """
    out = np.array(poses, np.float64)
    frames = np.arange(poses.shape[0])
    for j in range(poses.shape[1]):
        ob = observed[:, j]
        if ob.all() or not ob.any():
            continue
        for k in range(3):
            out[~ob, j, k] = np.interp(frames[~ob], frames[ob], poses[ob, j, k])
    return out


def mpjpe(a: np.ndarray, b: np.ndarray, where: np.ndarray | None = None) -> float:
    """Mean per-joint position error over the (F, P) entries selected by ``where``,
    in the units of the poses (no alignment)."""
    err = np.linalg.norm(np.asarray(a, np.float64) - np.asarray(b, np.float64), axis=-1)
    return float(err.mean() if where is None else err[where].mean())


@contextlib.contextmanager
def single_threaded_lapack():
    """Runs jaxlib's CPU LAPACK (scipy's OpenBLAS) single-threaded, then restores it.

    On a busy 2-core host a multi-threaded OpenBLAS call (e.g. a triangular solve inside
    a 10 ms solver iteration) was measured 10-100x slower than single-threaded, as the
    oracle README also warns. Equivalent to ``OPENBLAS_NUM_THREADS=1`` set before the
    process starts, for code (tests) that cannot set the environment. No-op when the
    library is not found.
    """
    lib = None
    try:
        import ctypes
        import glob
        import os

        import scipy

        root = os.path.join(os.path.dirname(os.path.dirname(scipy.__file__)), "scipy.libs")
        for path in glob.glob(os.path.join(root, "libscipy_openblas*.so*")):
            candidate = ctypes.CDLL(path)
            if hasattr(candidate, "scipy_openblas_set_num_threads"):
                lib = candidate
                break
    except (ImportError, OSError):
        lib = None
    if lib is None:
        yield
        return
    previous = int(lib.scipy_openblas_get_num_threads())
    lib.scipy_openblas_set_num_threads(1)
    try:
        yield
    finally:
        lib.scipy_openblas_set_num_threads(previous)
