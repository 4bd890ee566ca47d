"""Back-projection to 2D: VideoPose3D's semi-supervised reconstruction term (seed 001 §4).

The 3D pose (root-relative, metres, camera frame) plus its predicted trajectory (the
root's camera-frame position) is projected through the sequence's camera and compared
with the 2D keypoints the network was given. Everything is in VideoPose3D's normalised
screen units (``jpose.camera.pixels_to_screen``: ``x = u / w * 2 - 1``), so the
intrinsics are the 9-vector of :func:`jpose.camera.intrinsics9` with ``screen=True``:
``[fx, fy, cx, cy, k1, k2, k3, t0, t1]`` with radial ``k`` and VideoPose3D's tangential
``t = (p2, p1)``.
"""

from __future__ import annotations

import jax.numpy as jnp

__all__ = ["project_to_2d", "reprojection_error"]


def project_to_2d(points_cam, intrinsics9, *, min_depth: float = 1e-3):
    """VideoPose3D's ``common/camera.py:project_to_2d`` with a validity mask.

    ``xx = clip((X, Y) / Z, -1, 1)``; ``r2 = |xx|^2``; ``radial = 1 + k1 r2 + k2 r2^2 +
    k3 r2^3``; ``tan = t0 x + t1 y``; ``uv = f * (xx * (radial + tan) + t * r2) + c``.

    VideoPose3D clips ``xx`` to [-1, 1] (points more than 45 degrees off the optical axis),
    which keeps a diverging prediction's projection bounded; jpose keeps the clip for
    fidelity and reports it: ``valid`` is False where the point is behind ``min_depth``
    (metres) or was clipped, so a loss can drop those joints.

    Args:
      points_cam: ``(..., 3)`` camera-frame points, metres.
      intrinsics9: ``(..., 9)`` screen-unit intrinsics, broadcastable against
        ``points_cam``'s leading axes (e.g. ``(B, 1, 1, 9)`` for ``(B, T, J, 3)``).

    Returns:
      ``(uv (..., 2) screen units, valid (...,) bool)``.
    """
    points = jnp.asarray(points_cam)
    k = jnp.broadcast_to(jnp.asarray(intrinsics9, points.dtype), points.shape[:-1] + (9,))
    f, c, radial, t = k[..., 0:2], k[..., 2:4], k[..., 4:7], k[..., 7:9]
    z = points[..., 2:3]
    front = z > min_depth
    xx_raw = points[..., :2] / jnp.where(front, z, 1.0)
    xx = jnp.clip(xx_raw, -1.0, 1.0)
    r2 = jnp.sum(xx * xx, axis=-1, keepdims=True)
    rad = 1 + radial[..., 0:1] * r2 + radial[..., 1:2] * r2 ** 2 + radial[..., 2:3] * r2 ** 3
    tan = jnp.sum(t * xx, axis=-1, keepdims=True)
    uv = f * (xx * (rad + tan) + t * r2) + c
    valid = front[..., 0] & jnp.all(jnp.abs(xx_raw) <= 1.0, axis=-1)
    return uv, valid


def reprojection_error(points_cam, intrinsics9, keypoints_2d):
    """Per-joint 2D error ``(..., J)`` in screen units between the projection of
    ``points_cam`` ``(..., J, 3)`` and ``keypoints_2d`` ``(..., J, 2)`` (VideoPose3D's
    ``mpjpe(reconstruction, target)`` before its mean), and ``valid`` ``(..., J)``
    (:func:`project_to_2d`). Multiply by ``w / 2`` for pixels."""
    uv, valid = project_to_2d(points_cam, intrinsics9)
    diff = uv - jnp.asarray(keypoints_2d, uv.dtype)
    sq = jnp.sum(diff * diff, axis=-1)
    zero = sq == 0  # a finite gradient at an exact match
    return jnp.where(zero, 0.0, jnp.sqrt(jnp.where(zero, 1.0, sq))), valid
