"""Procrustes for solvers: one implementation, shared with :mod:`jpose.metrics`.

The similarity / rigid alignment of point sets (weighted Umeyama with the reflection fix
and a custom JVP that stays finite at repeated singular values) lives in
:mod:`jpose.procrustes`, which the P-MPJPE metric uses. This module re-exports that API
unchanged (the *same* function objects, so a solver and the metric can never disagree)
and adds the two matrix forms solvers need, both computed by the same orthogonal-factor
routine :func:`jpose.procrustes._orthogonal_factor` (and so sharing its derivative):

* :func:`nearest_rotation` -- the rotation closest to a square matrix in the Frobenius
  norm (the orthogonal polar factor with ``det = +1``), e.g. to re-orthonormalise an
  estimated rotation or to project a linear camera estimate onto SO(D);
* :func:`orthogonal_procrustes` -- ``argmin_R sum_i w_i |a_i R - b_i|^2`` over rotations,
  in scipy's row-vector convention (``scipy.linalg.orthogonal_procrustes``).

Conventions. Points are rows, ``(..., N, D)``, as everywhere in jpose; every function is
batched over leading axes, pure ``jax.numpy``, jit-able and differentiable (see
:mod:`jpose.procrustes` for the gradient at non-unique solutions). Reflections are
excluded unless ``allow_reflection=True``. Note the two rotation conventions:
:class:`Alignment` ``.rotation`` acts on column vectors (``target_j ≈ s R source_j + t``),
while :func:`orthogonal_procrustes` follows scipy (``a @ R ≈ b``, i.e. ``b_i ≈ R^T a_i``):
for centred points ``orthogonal_procrustes(a, b) == similarity_transform(a, b,
allow_scale=False).rotation^T``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jpose import procrustes as _procrustes
from jpose.procrustes import Alignment, align, apply_alignment, similarity_transform

__all__ = [
    "Alignment",
    "similarity_transform",
    "align",
    "apply_alignment",
    "nearest_rotation",
    "orthogonal_procrustes",
]


def _check_square(m, name: str) -> jax.Array:
    m = jnp.asarray(m)
    if m.ndim < 2 or m.shape[-1] != m.shape[-2] or m.shape[-1] < 1:
        raise ValueError(f"`{name}` must have shape (..., D, D) (square); got {m.shape}.")
    if not jnp.issubdtype(m.dtype, jnp.floating):
        m = m.astype(jnp.asarray(0.0).dtype)
    return m


def nearest_rotation(m, *, allow_reflection: bool = False) -> jax.Array:
    """The rotation ``R`` closest to ``m`` in the Frobenius norm, batched.

    ``R = U diag(1, ..., 1, det(U V^T)) V^T`` from the SVD ``m = U S V^T``: it maximises
    ``trace(R^T m)``, i.e. minimises ``|R - m|_F`` over SO(D). When ``det m > 0`` this is
    the orthogonal factor of the polar decomposition ``m = R P`` (``P`` symmetric positive
    semi-definite); when ``det m < 0`` the polar factor is a reflection and the last
    singular direction is flipped instead (Umeyama's fix).

    Args:
      m: ``(..., D, D)`` real matrices (any units; the result is unitless).
      allow_reflection: if True return the plain orthogonal polar factor ``U V^T``
        (``det = ±1``).

    Returns:
      ``(..., D, D)`` orthogonal matrices with ``det = +1`` (unless reflections are
      allowed), in ``m``'s dtype. Unique when the two smallest signed singular values do
      not sum to 0 (e.g. ``m`` of rank ``>= D - 1``); otherwise one of the minimisers.
    """
    m = _check_square(m, "m")
    rotation, _ = _procrustes._orthogonal_factor(m, allow_reflection)
    return rotation


def orthogonal_procrustes(a, b, *, weights=None, allow_reflection: bool = False) -> jax.Array:
    """``argmin_R sum_i w_i |a_i R - b_i|^2`` over rotations ``R`` (scipy's convention).

    The points are *not* centred (use :func:`similarity_transform` for a translation and
    scale too). The minimiser is :func:`nearest_rotation` of ``a^T W b``.

    Args:
      a: ``(..., N, D)`` rows to be rotated (any units).
      b: ``(..., N, D)`` target rows, same shape and units.
      weights: optional ``(..., N)`` (or broadcastable, e.g. ``(N,)``) non-negative row
        weights; a row with weight ``<= 0`` is excluded and may hold NaN. Default ones.
      allow_reflection: if True, ``R`` may have ``det = -1`` -- this is exactly
        ``scipy.linalg.orthogonal_procrustes(a, b)[0]`` (unweighted).

    Returns:
      ``R (..., D, D)`` with ``a @ R ≈ b`` (equivalently ``b_i ≈ R^T a_i`` for column
      vectors), ``det = +1`` unless reflections are allowed.
    """
    a, b = _procrustes._check_points(a, b)
    w = _procrustes.broadcast_weights(weights, a.shape[:-1], a.dtype)
    include = w > 0
    # Mask the coordinates, not only the weights: 0 * NaN is NaN.
    a = jnp.where(include[..., None], a, 0)
    b = jnp.where(include[..., None], b, 0)
    w = jnp.where(include, w, 0)
    cross = jnp.swapaxes(a, -1, -2) @ (w[..., None] * b)  # (..., D, D) = a^T W b
    rotation, _ = _procrustes._orthogonal_factor(cross, allow_reflection)
    return rotation
