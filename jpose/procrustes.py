"""Closed-form orthogonal / similarity Procrustes alignment (Kabsch 1976, Umeyama 1991).

Given two sets of corresponding points, ``source`` and ``target`` of shape ``(..., J, D)``
(``D`` is 3 for poses in metres, 2 for image keypoints; any ``D >= 1`` works), find the
scale ``s``, rotation ``R`` and translation ``t`` that minimise the weighted squared error

    sum_j w_j || target_j - (s * R @ source_j + t) ||^2.

**Convention.** With points stored as row vectors (the library-wide ``(..., J, D)``
layout) the fitted transform acts as

    target ≈ scale[..., None, None] * source @ swapaxes(rotation, -1, -2)
             + translation[..., None, :]

i.e. ``target_j ≈ s * R @ source_j + t`` for every joint ``j``. ``R`` maps *source*
coordinates to *target* coordinates. :func:`apply_alignment` applies exactly this.

Everything is batched over the leading axes (one alignment per leading index), pure
``jax.numpy``, jit-able and differentiable.

**Gradients.** ``jnp.linalg.svd``'s own derivative divides by ``s_i**2 - s_j**2`` and is
therefore infinite whenever two singular values of the cross-covariance coincide (e.g. a
symmetric point set, or a rank-deficient one) even where the optimal rotation is perfectly
smooth. We instead give the rotation a custom JVP: the derivative of the orthogonal
factor ``R = U S_fix V^T`` is ``dR = U' Ω V^T`` with
``Ω_ij = (M_ij - M_ji) / (s'_i + s'_j)``, ``M = U'^T dΣ V``, ``s'`` the signed singular
values after the reflection fix and ``U' = U S_fix``. It only divides by *sums* of signed
singular values, so it is exact wherever the rotation is unique. The rotation is not
unique (and its derivative does not exist) when ``s'_i + s'_j == 0`` for some pair: with
reflections forbidden that happens when the cross-covariance has rank ``<= D - 2``
(collinear points in 3D), or when the reflection fix is active and the two smallest
singular values are equal. There we set the corresponding components of ``Ω`` to zero, so
gradients stay finite but are an arbitrary choice. With ``allow_reflection=True`` the
rotation also jumps discontinuously when ``det`` of the cross-covariance changes sign.

**Degenerate inputs** never produce NaN or inf (values and gradients):

* all weights zero (e.g. a fully padded pose): ``scale = 1``, ``rotation = I``,
  ``translation = 0``, ``valid = False``;
* all included source points (numerically) identical: ``scale = 1``, ``rotation = I``,
  ``translation = mean(target) - mean(source)`` (maps the source point onto the target
  centroid, the least-squares optimum for any ``s`` and ``R``), ``valid = False``;
* all target points identical but source spread: ``scale = 0`` (the genuine least-squares
  optimum), ``translation = mean(target)``, the rotation is whatever the SVD returns, and
  ``valid = True``.

NaN or inf in a joint with weight 0 does not propagate (the joint is masked out before
any arithmetic); NaN in an included joint propagates to the whole pose's alignment.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp

__all__ = ["Alignment", "similarity_transform", "apply_alignment", "align", "broadcast_weights"]


class Alignment(NamedTuple):
    """A similarity transform ``x -> scale * rotation @ x + translation`` per leading index.

    Attributes:
      scale: ``(...,)`` float, unitless (1 when scaling was not allowed or the input was
        degenerate).
      rotation: ``(..., D, D)`` float, orthogonal; ``det = +1`` unless reflections were
        allowed. Acts on column vectors: ``target_j ≈ scale * rotation @ source_j + t``.
      translation: ``(..., D)`` float, in the units of ``target``.
      valid: ``(...,)`` bool; False when the alignment was undetermined (no included
        joint, or all included source points identical) and a fallback was returned.
    """

    scale: jax.Array
    rotation: jax.Array
    translation: jax.Array
    valid: jax.Array


def _float_dtype(*arrays):
    """The widest floating dtype among ``arrays`` (default float if none is floating).

    Chosen by hand, not by ``jnp.result_type``, because the strict dtype-promotion mode
    refuses to promote float32 with float64 even when asked explicitly.
    """
    floats = [a.dtype for a in arrays if jnp.issubdtype(a.dtype, jnp.floating)]
    if not floats:
        return jnp.asarray(0.0).dtype
    return max(floats, key=lambda d: jnp.dtype(d).itemsize)


def _check_points(source, target):
    source = jnp.asarray(source)
    target = jnp.asarray(target)
    if source.ndim < 2:
        raise ValueError(
            f"`source` must have shape (..., J, D); got shape {source.shape}."
        )
    if target.shape != source.shape:
        raise ValueError(
            f"`target` must have the same shape as `source` {source.shape}; "
            f"got {target.shape}."
        )
    if source.shape[-1] < 1 or source.shape[-2] < 1:
        raise ValueError(
            f"`source` needs at least one joint and one coordinate; got {source.shape}."
        )
    dtype = _float_dtype(source, target)
    return source.astype(dtype), target.astype(dtype)


def broadcast_weights(weights, batch_joint_shape, dtype, name="weights"):
    """Weights ``(..., J)`` broadcast explicitly to ``batch_joint_shape``; None -> ones."""
    if weights is None:
        return jnp.ones(batch_joint_shape, dtype)
    weights = jnp.asarray(weights)
    try:
        weights = jnp.broadcast_to(weights, batch_joint_shape)
    except ValueError:
        raise ValueError(
            f"`{name}` must have shape {batch_joint_shape} (or broadcast to it, "
            f"e.g. ({batch_joint_shape[-1]},)); got {weights.shape}."
        ) from None
    return weights.astype(dtype)


def _signed_svd(cov, allow_reflection):
    """SVD ``cov = U' diag(s') V^T`` with the Umeyama reflection fix folded into U', s'.

    Without reflections, when ``det(U) det(V) < 0`` the last column of ``U`` and the last
    singular value are negated, so that ``R = U' V^T`` has ``det = +1``.
    """
    u, s, vt = jnp.linalg.svd(cov, full_matrices=False)
    if not allow_reflection:
        det = jnp.linalg.det(u) * jnp.linalg.det(vt)
        last = jnp.where(det < 0, -jnp.ones_like(det), jnp.ones_like(det))
        ones = jnp.ones(s.shape[:-1] + (s.shape[-1] - 1,), s.dtype)
        signs = jnp.concatenate([ones, last[..., None]], axis=-1)
        u = u * signs[..., None, :]
        s = s * signs
    return u, s, vt


@functools.partial(jax.custom_jvp, nondiff_argnums=(1,))
def _orthogonal_factor(cov, allow_reflection):
    """``(R, tr)``: the orthogonal ``R`` maximising ``trace(R^T cov)`` and that maximum."""
    u, s, vt = _signed_svd(cov, allow_reflection)
    return u @ vt, jnp.sum(s, axis=-1)


@_orthogonal_factor.defjvp
def _orthogonal_factor_jvp(allow_reflection, primals, tangents):
    (cov,), (dcov,) = primals, tangents
    u, s, vt = _signed_svd(cov, allow_reflection)
    rotation = u @ vt
    v = jnp.swapaxes(vt, -1, -2)
    m = jnp.swapaxes(u, -1, -2) @ dcov @ v
    denom = s[..., :, None] + s[..., None, :]
    # Relative tolerance: a zero denominator means the rotation is not unique there
    # (see module docstring); those components of Ω are set to zero.
    eps = jnp.finfo(cov.dtype).eps
    smax = jnp.max(jnp.abs(s), axis=-1)
    tol = (eps * s.shape[-1]) * smax
    ok = jnp.abs(denom) > tol[..., None, None]
    omega = jnp.where(ok, (m - jnp.swapaxes(m, -1, -2)) / jnp.where(ok, denom, 1), 0)
    d_rotation = u @ omega @ vt
    # d trace(R^T cov) = trace(R^T dcov) = trace(M) since dR^T cov is traceless.
    d_trace = jnp.trace(m, axis1=-2, axis2=-1)
    return (rotation, jnp.sum(s, axis=-1)), (d_rotation, d_trace)


def similarity_transform(
    source,
    target,
    *,
    weights=None,
    allow_scale: bool = True,
    allow_reflection: bool = False,
) -> Alignment:
    """Weighted least-squares similarity transform from ``source`` to ``target``.

    Umeyama (1991) closed form: centre both point sets at their weighted centroids,
    take the SVD of the weighted cross-covariance ``Σ = Σ_j w_j y0_j x0_j^T = U S V^T``,
    then ``R = U S_fix V^T`` with ``S_fix = diag(1, ..., 1, ±1)`` chosen so that
    ``det R = +1`` (unless ``allow_reflection``), ``s = trace(S S_fix) / Σ_j w_j |x0_j|^2``
    and ``t = mean_w(target) - s R mean_w(source)``.

    Args:
      source: ``(..., J, D)`` points to be moved (any units; e.g. metres).
      target: ``(..., J, D)`` corresponding points, same shape and units.
      weights: optional ``(..., J)`` (or anything that broadcasts to it, e.g. ``(J,)``)
        non-negative per-joint weights. A joint with weight ``<= 0`` is excluded entirely
        (padding, invisible joints); its coordinates may be NaN. Default: all ones.
      allow_scale: if False, ``scale`` is fixed to 1 (rigid / orthogonal Procrustes).
      allow_reflection: if False (default, as Umeyama and VideoPose3D's P-MPJPE) the
        rotation is proper, ``det = +1``; if True, ``det = -1`` is allowed when it fits
        better.

    Returns:
      :class:`Alignment` with ``scale (...,)``, ``rotation (..., D, D)``,
      ``translation (..., D)``, ``valid (...,)``, such that
      ``target ≈ scale[..., None, None] * source @ rotation^T + translation[..., None, :]``.
      See the module docstring for degenerate inputs and gradients.
    """
    source, target = _check_points(source, target)
    dtype = source.dtype
    dim = source.shape[-1]
    w = broadcast_weights(weights, source.shape[:-1], dtype)

    include = w > 0
    # Mask coordinates, not just weights: 0 * NaN would still be NaN.
    x = jnp.where(include[..., None], source, 0)
    y = jnp.where(include[..., None], target, 0)
    w = jnp.where(include, w, 0)

    total = jnp.sum(w, axis=-1)
    has_weight = total > 0
    safe_total = jnp.where(has_weight, total, 1)
    mu_x = jnp.sum(w[..., None] * x, axis=-2) / safe_total[..., None]
    mu_y = jnp.sum(w[..., None] * y, axis=-2) / safe_total[..., None]
    x0 = x - mu_x[..., None, :]
    y0 = y - mu_y[..., None, :]
    wx0 = w[..., None] * x0

    # Σ = Σ_j w_j y0_j x0_j^T (the 1/total normalisations cancel in R and s).
    cov = jnp.swapaxes(y0, -1, -2) @ wx0
    var_x = jnp.sum(wx0 * x0, axis=(-2, -1))
    second_moment = jnp.sum(w[..., None] * x * x, axis=(-2, -1))
    # "All source points identical" up to the rounding error of computing the centroid
    # (which grows with J), relative to the points' magnitude.
    rel_tol = (4 * source.shape[-2] * jnp.finfo(dtype).eps) ** 2
    valid = has_weight & (var_x > 0) & (var_x > rel_tol * second_moment)

    rotation, trace = _orthogonal_factor(cov, allow_reflection)
    eye = jnp.broadcast_to(jnp.eye(dim, dtype=dtype), rotation.shape)
    rotation = jnp.where(valid[..., None, None], rotation, eye)
    if allow_scale:
        # Double `where`: the unselected branch must not divide by ~0 either, or its
        # (masked) gradient would be 0 * inf = NaN.
        safe_var = jnp.where(valid, var_x, 1)
        scale = jnp.where(valid, trace / safe_var, 1)
    else:
        scale = jnp.ones(source.shape[:-2], dtype)
    rotated_mu_x = jnp.sum(rotation * mu_x[..., None, :], axis=-1)  # R @ mu_x
    translation = mu_y - scale[..., None] * rotated_mu_x
    return Alignment(scale=scale, rotation=rotation, translation=translation, valid=valid)


def apply_alignment(points, alignment: Alignment):
    """Apply ``alignment`` to ``points (..., J, D)``: ``s * points @ R^T + t``.

    The leading axes of ``points`` must equal those of the alignment (one transform per
    leading index; no implicit broadcasting). Units are those of the alignment's target.
    """
    points = jnp.asarray(points)
    rotation = alignment.rotation
    if points.ndim < 2 or points.shape[-1] != rotation.shape[-1]:
        raise ValueError(
            f"`points` must have shape (..., J, {rotation.shape[-1]}); got {points.shape}."
        )
    if points.shape[:-2] != rotation.shape[:-2]:
        raise ValueError(
            f"`points` leading axes {points.shape[:-2]} must equal the alignment's "
            f"batch shape {rotation.shape[:-2]}."
        )
    points = points.astype(rotation.dtype)
    rotated = points @ jnp.swapaxes(rotation, -1, -2)
    return (
        alignment.scale[..., None, None] * rotated
        + alignment.translation[..., None, :]
    )


def align(
    source,
    target,
    *,
    weights=None,
    allow_scale: bool = True,
    allow_reflection: bool = False,
):
    """``source (..., J, D)`` moved onto ``target`` by :func:`similarity_transform`.

    All joints are transformed, including those excluded by ``weights`` (their result is
    NaN if their input was NaN). Arguments as in :func:`similarity_transform`.
    """
    alignment = similarity_transform(
        source,
        target,
        weights=weights,
        allow_scale=allow_scale,
        allow_reflection=allow_reflection,
    )
    return apply_alignment(source, alignment)
