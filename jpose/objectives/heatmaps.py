"""Heatmap targets, the heatmap loss and heatmap decoding (2D and volumetric).

Layout and coordinates
----------------------
Heatmaps are channels last, one channel per joint, as the image networks output them:
2D ``(..., H, W, J)``, volumetric ``(..., H, W, D, J)`` (:mod:`jpose.nets.hourglass`).
Coordinates are in heatmap pixels (voxels), ordered ``(x, y)`` / ``(x, y, z)`` with ``x``
along W, ``y`` along H and ``z`` along D; the centre of pixel ``[i, j]`` is ``(x, y) =
(j, i)``. :func:`heatmap_to_image` maps them to input-image pixels.

Functions
---------
* :func:`gaussian_heatmaps` -- targets ``exp(-|q - p|^2 / (2 sigma^2))`` (peak value 1 at
  an on-grid point; Newell et al. use sigma = 1 at 64x64).
* :func:`heatmap_l2` -- per-element weighted squared error (no reduction: the caller sums
  and normalises, e.g. by ``sum(weights) * H * W``; Newell et al.'s MSE is the plain mean).
* :func:`argmax` -- the hard peak (2D or 3D) and its score.
* :func:`soft_peak` -- the differentiable 3D peak of Li et al.: the score-weighted mean of
  the voxel coordinates inside a cube of half-size ``half_size`` voxels around the coarse
  argmax (negative scores weigh 0); its confidence is the heatmap score at the argmax.

Confidence scale: the score is the network's raw heatmap value at the peak. Networks
trained on :func:`gaussian_heatmaps` targets (peak 1, background 0) give scores near 1
for a clearly located joint and towards 0 for an absent or ambiguous one; Li et al.
threshold this score at 0.7 and 0.5 (e.g. to select reliable joints / frames), which only
makes sense on that scale (unit-peak Gaussian targets, no normalisation of the output).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

__all__ = ["SoftPeak", "argmax", "gaussian_heatmaps", "heatmap_l2", "heatmap_to_image",
           "soft_peak"]

# Coordinate c (x, y, z) lives on spatial axis _AXIS[c] of (H, W, D).
_AXIS = (1, 0, 2)


def _spatial_grid(shape: tuple[int, ...], coord: int, rank: int) -> jax.Array:
    """Coordinate ``coord`` (0 = x, ...) of every cell of ``(*shape, J)``, broadcastable at
    full rank ``rank`` (batch axes first, joints last)."""
    axis = _AXIS[coord]
    n = len(shape)
    g = jnp.arange(shape[axis], dtype=jnp.float32)
    return g.reshape((1,) * (rank - n - 1) + tuple(
        shape[axis] if a == axis else 1 for a in range(n)) + (1,))


def _check_num_spatial(num_spatial: int) -> None:
    if num_spatial not in (2, 3):
        raise ValueError(f"num_spatial: expected 2 or 3, got {num_spatial!r}")


def gaussian_heatmaps(points, *, shape: tuple[int, ...], sigma: float) -> jax.Array:
    """Gaussian targets around ``points``.

    Args:
      points: ``(..., J, K)`` coordinates ``(x, y)`` (K = 2) or ``(x, y, z)`` (K = 3) in
        heatmap pixels (module doc).
      shape: ``(H, W)`` or ``(H, W, D)``, length K.
      sigma: standard deviation in pixels.

    Returns:
      ``(..., *shape, J)`` float32 in (0, 1]. A point off the grid gives a truncated or
      all-near-zero map; weight such joints out in :func:`heatmap_l2`.
    """
    points = jnp.asarray(points, jnp.float32)
    k = points.shape[-1]
    shape = tuple(int(s) for s in shape)
    if k not in (2, 3) or len(shape) != k:
        raise ValueError(f"points/shape: expected (..., J, K) with K = len(shape) in (2, 3), "
                         f"got points {points.shape}, shape {shape}")
    rank = points.ndim - 1 + k  # (..., *shape, J)
    d2 = jnp.zeros((), jnp.float32)
    for c in range(k):
        p = points[..., c].reshape(points.shape[:-2] + (1,) * k + points.shape[-2:-1])
        d2 = d2 + jnp.square(_spatial_grid(shape, c, rank) - p)
    return jnp.exp(-d2 / jnp.float32(2.0 * sigma * sigma))


def heatmap_l2(pred, target, *, weights) -> jax.Array:
    """Per-element ``weights * (pred - target)^2``.

    Args:
      pred, target: ``(..., *spatial, J)``, the same shape.
      weights: ``(..., J)`` per-joint weights (visibility: 0 for unlabelled or invisible
        joints), broadcast over the spatial axes.

    Returns:
      ``(..., *spatial, J)``; sum it and divide by the matching count.
    """
    if pred.shape != target.shape:
        raise ValueError(f"pred/target: shapes differ, {pred.shape} vs {target.shape}")
    weights = jnp.asarray(weights, pred.dtype)
    n = pred.ndim - weights.ndim
    if (n < 1 or weights.shape[:-1] != pred.shape[:weights.ndim - 1]
            or weights.shape[-1] != pred.shape[-1]):
        raise ValueError(f"weights: expected shape (..., J) matching pred {pred.shape} "
                         f"without its spatial axes, got {weights.shape}")
    w = weights.reshape(weights.shape[:-1] + (1,) * n + weights.shape[-1:])
    return w * jnp.square(pred - target)


def argmax(heatmaps, *, num_spatial: int) -> tuple[jax.Array, jax.Array]:
    """Hard peak of each joint's map.

    Args:
      heatmaps: ``(..., H, W, J)`` (num_spatial = 2) or ``(..., H, W, D, J)`` (3).

    Returns:
      ``(coords, score)``: ``(..., J, num_spatial)`` float32 integer-valued ``(x, y[, z])``
      of the first maximum (row-major order), and ``(..., J)`` the value there.
    """
    _check_num_spatial(num_spatial)
    shape = heatmaps.shape[-num_spatial - 1:-1]
    lead = heatmaps.shape[:-num_spatial - 1]
    j = heatmaps.shape[-1]
    flat = heatmaps.reshape(lead + (-1, j))
    idx = jnp.argmax(flat, axis=-2)  # (..., J)
    score = jnp.max(flat, axis=-2)
    unravelled = jnp.unravel_index(idx, shape)  # per spatial axis (y, x[, z])
    coords = jnp.stack([unravelled[_AXIS[c]] for c in range(num_spatial)], axis=-1)
    return coords.astype(jnp.float32), score


class SoftPeak(NamedTuple):
    """Output of :func:`soft_peak`."""

    coords: jax.Array  # (..., J, S) float32, (x, y[, z]) heatmap voxels
    score: jax.Array  # (..., J) heatmap value at the coarse argmax (confidence)
    inside: jax.Array  # (..., J) bool: the whole cube lies inside the map (not truncated)


def soft_peak(heatmaps, *, half_size: int = 2, num_spatial: int = 3) -> SoftPeak:
    """Differentiable sub-voxel peak (Li et al.): the mean of the voxel coordinates inside
    the cube ``|q - argmax| <= half_size`` (per axis), weighted by ``max(score, 0)``.

    Near the border the cube is cut by the map (``inside`` False there). If every weight
    in the cube is 0 the coarse argmax is returned. Gradients flow to the scores inside
    the cube (the argmax itself is piecewise constant).

    Args:
      heatmaps: ``(..., H, W, D, J)`` (num_spatial = 3, the default) or ``(..., H, W, J)``.
      half_size: cube half-size in voxels (0: the argmax).
    """
    _check_num_spatial(num_spatial)
    if not isinstance(half_size, int) or half_size < 0:
        raise ValueError(f"half_size: expected an int >= 0, got {half_size!r}")
    coarse, score = argmax(heatmaps, num_spatial=num_spatial)
    coarse = jax.lax.stop_gradient(coarse)
    shape = heatmaps.shape[-num_spatial - 1:-1]
    lead = heatmaps.shape[:-num_spatial - 1]
    rank = heatmaps.ndim
    h = jnp.float32(half_size)
    grids, mask = [], jnp.ones((), bool)
    inside = jnp.ones(coarse.shape[:-1], bool)
    for c in range(num_spatial):
        g = _spatial_grid(shape, c, rank)
        p = coarse[..., c]
        mask = mask & (jnp.abs(g - p.reshape(lead + (1,) * num_spatial + p.shape[-1:])) <= h)
        inside = inside & (p - h >= 0) & (p + h <= jnp.float32(shape[_AXIS[c]] - 1))
        grids.append(g)
    w = jnp.where(mask, jnp.maximum(heatmaps, 0.0), 0.0)
    axes = tuple(range(rank - num_spatial - 1, rank - 1))
    den = jnp.sum(w, axis=axes)
    safe = jnp.where(den > 0, den, 1.0)
    coords = jnp.stack([jnp.sum(w * g, axis=axes) / safe for g in grids], axis=-1)
    coords = jnp.where((den > 0)[..., None], coords, coarse)
    return SoftPeak(coords, score, inside)


def heatmap_to_image(coords, *, stride: int | float) -> jax.Array:
    """Heatmap pixel coordinates -> input-image pixel coordinates (pixel centres):
    ``(c + 0.5) * stride - 0.5`` (``stride`` = input pixels per heatmap pixel, 4 for the
    hourglass and :mod:`jpose.nets.pose2d`). Apply to x and y only (not z)."""
    coords = jnp.asarray(coords, jnp.float32)
    return (coords + 0.5) * jnp.float32(stride) - 0.5
