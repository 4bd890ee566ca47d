"""Relative-depth labels made from 3D poses (Ronchi et al. BMVC 2018's simulated
annotations), in NumPy and in jnp (for use inside a loss, with a PRNG key).

Labels follow :mod:`jpose.objectives.ordinal`'s convention: camera frame, z forward,
metres; for the ordered pair ``(j, k)``, ``r = sign(z_j - z_k)`` (``+1``: ``j`` is
**farther** than ``k``), and ``r = 0`` where ``|z_j - z_k| < tolerance`` (default 0.1 m =
100 mm, the paper's). The LSP crowd labels map to it by ``r = 2 * depth_closer - 1``.

Which pairs
-----------
* ``"random"``: ``num_pairs`` random ordered pairs ``j != k`` per example (1 in the
  paper's "1 pair per image" setting), ``j`` uniform over the joints, ``k`` uniform over
  the other ``J - 1`` (pairs within an example may repeat);
* ``"all"``: every unordered pair ``j < k`` once, in row-major order (:func:`all_pairs`:
  ``J (J - 1) / 2``, 136 for 17 joints).

Annotator noise (``noise=True``)
--------------------------------
A simulated annotator gets an ordered pair (``r != 0``) the wrong way round with
probability ``p_flip(|dz|) = flip_max * exp(-|dz| / flip_scale)``: a coin toss
(``flip_max = 0.5``) for joints at the same depth, less likely the farther apart they
are (``flip_scale = 0.1`` m: 18 % at 100 mm, 2.5 % at 300 mm, 0.3 % at 500 mm).
Ties (``r = 0``) are kept: the annotator's "about the same" answer is not flipped into an
order. The flip is ``r -> -r``; the pair indices do not change.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["MODES", "TOLERANCE_M", "all_pairs", "labels_from_depths", "flip_probability",
           "sample_pairs", "make_labels", "make_labels_jax"]

#: Pair-selection modes.
MODES = ("random", "all")
#: The paper's tie tolerance: 100 mm.
TOLERANCE_M = 0.1


def all_pairs(num_joints: int) -> np.ndarray:
    """Every unordered pair ``(j, k)``, ``j < k``, row-major: ``(J (J - 1) / 2, 2)`` int32."""
    j, k = np.triu_indices(int(num_joints), k=1)
    return np.stack([j, k], axis=-1).astype(np.int32)


def labels_from_depths(dz, *, tolerance: float = TOLERANCE_M):
    """``r = sign(dz)`` with 0 where ``|dz| < tolerance`` (int32; NumPy or jnp input)."""
    xp = jnp if isinstance(dz, jax.Array) else np
    return xp.where(xp.abs(dz) < tolerance, 0, xp.sign(dz)).astype(xp.int32)


def flip_probability(dz, *, flip_max: float = 0.5, flip_scale: float = 0.1):
    """The annotator noise model ``flip_max * exp(-|dz| / flip_scale)`` (module doc)."""
    xp = jnp if isinstance(dz, jax.Array) else np
    return flip_max * xp.exp(-xp.abs(dz) / flip_scale)


def sample_pairs(rng: np.random.Generator, num_examples: int, num_joints: int, *,
                 num_pairs: int = 1) -> np.ndarray:
    """``(N, num_pairs, 2)`` int32 random ordered pairs ``j != k`` (mode ``"random"``)."""
    j = rng.integers(0, num_joints, size=(num_examples, num_pairs))
    k = (j + 1 + rng.integers(0, num_joints - 1, size=j.shape)) % num_joints
    return np.stack([j, k], axis=-1).astype(np.int32)


def _check_mode(mode: str) -> None:
    if mode not in MODES:
        raise ValueError(f"mode: {mode!r}; expected one of {MODES}")


def make_labels(rng: np.random.Generator, poses_3d, *, mode: str = "random",
                num_pairs: int = 1, tolerance: float = TOLERANCE_M, noise: bool = False,
                flip_max: float = 0.5, flip_scale: float = 0.1):
    """Pairs and labels for poses ``(N, J, 3)`` (metres, camera frame), NumPy.

    Returns ``(pairs (N, K, 2) int32, labels (N, K) int32)``; ``K = num_pairs`` for
    ``"random"``, ``J (J - 1) / 2`` for ``"all"``.
    """
    _check_mode(mode)
    poses = np.asarray(poses_3d)
    n, num_joints = poses.shape[0], poses.shape[-2]
    if mode == "all":
        pairs = np.broadcast_to(all_pairs(num_joints), (n, num_joints * (num_joints - 1) // 2, 2))
    else:
        pairs = sample_pairs(rng, n, num_joints, num_pairs=num_pairs)
    z = poses[..., 2]
    dz = np.take_along_axis(z, pairs[..., 0], -1) - np.take_along_axis(z, pairs[..., 1], -1)
    labels = labels_from_depths(dz, tolerance=tolerance)
    if noise:
        flip = rng.random(dz.shape) < flip_probability(dz, flip_max=flip_max,
                                                       flip_scale=flip_scale)
        labels = np.where(flip, -labels, labels).astype(np.int32)
    return np.ascontiguousarray(pairs), labels


def make_labels_jax(key: jax.Array, poses_3d, *, mode: str = "random", num_pairs: int = 1,
                    tolerance: float = TOLERANCE_M, noise: bool = False,
                    flip_max: float = 0.5, flip_scale: float = 0.1):
    """:func:`make_labels` in jnp for use inside a jitted loss: ``poses_3d`` ``(..., J,
    3)``, a PRNG ``key`` (e.g. ``fold_in(step.rng, salt)``); returns ``(pairs (..., K, 2)
    int32, labels (..., K) int32)``, both free of gradients (labels are data).
    """
    _check_mode(mode)
    z = jax.lax.stop_gradient(jnp.asarray(poses_3d)[..., 2])
    lead, num_joints = z.shape[:-1], z.shape[-1]
    k_pairs, k_noise = jax.random.split(key)
    if mode == "all":
        pairs = jnp.broadcast_to(jnp.asarray(all_pairs(num_joints)),
                                 lead + (num_joints * (num_joints - 1) // 2, 2))
    else:
        kj, kk = jax.random.split(k_pairs)
        j = jax.random.randint(kj, lead + (num_pairs,), 0, num_joints, jnp.int32)
        k = (j + 1 + jax.random.randint(kk, j.shape, 0, num_joints - 1, jnp.int32)) % num_joints
        pairs = jnp.stack([j, k], axis=-1)
    dz = (jnp.take_along_axis(z, pairs[..., 0], axis=-1)
          - jnp.take_along_axis(z, pairs[..., 1], axis=-1))
    labels = labels_from_depths(dz, tolerance=tolerance)
    if noise:
        flip = jax.random.uniform(k_noise, dz.shape, dz.dtype) < flip_probability(
            dz, flip_max=flip_max, flip_scale=flip_scale)
        labels = jnp.where(flip, -labels, labels)
    return pairs, labels
