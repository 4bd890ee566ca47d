r"""Objectives of the consistent factorization network (Yang Li, thesis 2020, ch. 4).

All per-element (no hidden reduction); the recipe weights and reduces them with
explicit masks (:func:`jpose.metrics.masked_sum_count`).

* :func:`orthographic_reprojection` -- Eq. 4.3/4.4: the squared distance, per joint,
  between the orthographic projection of the camera-frame pose ``X = Y R^T`` (its x, y)
  and the normalised 2D input ``w`` (root-centred, divided by the mean joint distance to
  the root: :func:`jpose.nets.factorization.normalise_keypoints`), ``||w_j - X_j[:2]||^2``
  ``(..., J)``. Unit: squared normalised units.
* :func:`cross_view_consistency` -- Eq. 4.8: the canonical shapes ``Y_1``, ``Y_2`` that
  two views of the same instant give must agree, ``lambda ||Y_1 - Y_2||^2`` summed over
  joints. Each view is normalised by its *own* 2D scale, so the views' canonical shapes
  differ by the ratio of their projected sizes (foreshortening) even when the 3D pose is
  the same; the term therefore compares **scale-normalised** shapes,
  ``Y / rms_j ||Y_j||`` (root-relative), per joint ``||Y_1/s_1 - Y_2/s_2||^2``
  ``(..., J)`` (unit-free).
"""

from __future__ import annotations

import jax.numpy as jnp

__all__ = ["orthographic_projection", "orthographic_reprojection", "rms_normalised",
           "cross_view_consistency"]


def orthographic_projection(points):
    """``(..., J, 3) -> (..., J, 2)``: the camera frame's x, y (orthographic camera)."""
    return jnp.asarray(points)[..., :2]


def orthographic_reprojection(pose_camera, keypoints_2d):
    """Per-joint ``||keypoints_2d - (pose_camera)_xy||^2`` ``(..., J)``.

    Args:
      pose_camera: ``(..., J, 3)`` camera-frame, root-relative, normalised units.
      keypoints_2d: ``(..., J, 2)`` normalised 2D (root-centred, same unit).
    """
    diff = orthographic_projection(pose_camera) - jnp.asarray(keypoints_2d)
    return jnp.sum(diff * diff, axis=-1)


def rms_normalised(shape, *, eps: float = 1e-6):
    """``shape / sqrt(mean_j ||shape_j||^2)`` for root-relative ``(..., J, 3)`` shapes
    (``eps`` keeps a collapsed shape finite)."""
    shape = jnp.asarray(shape)
    rms = jnp.sqrt(jnp.mean(jnp.sum(shape * shape, axis=-1), axis=-1) + eps * eps)
    return shape / rms[..., None, None]


def cross_view_consistency(canonical_a, canonical_b):
    """Per-joint ``||Y_a / s_a - Y_b / s_b||^2`` ``(..., J)`` of two views' canonical
    shapes ``(..., J, 3)`` (:func:`rms_normalised`; module doc)."""
    diff = rms_normalised(canonical_a) - rms_normalised(canonical_b)
    return jnp.sum(diff * diff, axis=-1)
