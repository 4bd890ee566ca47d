"""Multi-view self-supervised lifting objectives (Yang Li, PhD thesis 2020, chapter 3).

The "transform re-projection" of the thesis (and of Li et al., AAAI 2020): a lifting
network predicts each view's root-relative 3D pose ``Y_v`` and a root network the root's
camera-frame position ``r_v``, so ``P_v = Y_v + r_v`` are camera-frame joints (metres).
With calibrated cameras, view 1's joints can be carried into view 2's frame and projected
there, against view 2's 2D detections; no 3D label is needed anywhere.

Conventions (jpose's, :mod:`jpose.camera`): extrinsics ``x_cam = R (x_world - c)``,
passed as the 12-vector ``[R row-major (9), c (3)]`` of the streams; intrinsics the
screen-unit 9-vector ``[fx, fy, cx, cy, k1, k2, k3, t0, t1]``
(:func:`jpose.camera.intrinsics9`, ``screen=True``); 2D in normalised screen units
(``x = u / w * 2 - 1``; multiply errors by ``w / 2`` for pixels).

The transform (thesis Eq. 3.3-3.4, written for jpose's convention)
----------------------------------------------------------------------
From ``x1 = R1 (x - c1)`` and ``x2 = R2 (x - c2)``: ``x = R1^T x1 + c1``, so

    x2 = R2 (R1^T x1 + c1 - c2) = R2 R1^T (x1 - R1 (c2 - c1)),

i.e. ``tau(Y) = R_1to2 (Y - t_1to2)`` with ``R_1to2 = R2 R1^T`` and ``t_1to2 = R1 (c2 -
c1)``: ``t_1to2`` is camera 2's centre in camera 1's frame (metres), so ``|t_1to2|`` is
the baseline. (:mod:`jpose.solvers.relative_pose` writes the same map as ``x2 = R x1 +
t`` with ``t = -R_1to2 t_1to2 = R2 (c1 - c2)``.) ``tau`` acts on *camera-frame* points
``P = Y + r``; applied to a root-relative pose alone it would drop the translation.

Objectives (per element, no hidden reduction; ``weight`` explicit; each returns
``(error, weight)``, so a loss is ``sum(err * w) / sum(w)``; joints whose projection is
invalid -- behind the camera or clipped -- keep their weight and get a barrier, see
:func:`reprojection_loss`):

* :func:`reprojection_loss` -- Eq. 3.2, ``L_reproj``: each view's own ``P_v`` projected
  through its own intrinsics against its own 2D, weighted by its 2D confidences;
* :func:`transform_reprojection_loss` -- Eq. 3.5, ``L_t-reproj``: ``tau_{1->2}(P_1)``
  projected through view 2's intrinsics against view 2's 2D, each joint weighted by the
  **source** view's (view 1's) confidence (the thesis: a joint badly detected in view 1
  gives an unreliable 3D estimate to carry over);
* :func:`pretraining_loss` -- Eq. 3.6, ``L_pre``, as jpose reads it: the weak-perspective
  re-projection ``f * (Y_xy + r_xy) / r_z + c`` against the 2D, which trains the root
  network and the image-plane part of the pose but leaves the pose's own depth at its
  initial, near-zero output (a flat start for the depth that ``L_T`` then learns);
* :func:`total_loss` -- ``L_T = L_reproj + lambda L_t-reproj`` from the two means
  (:data:`LAMBDA`: 1 Human3.6M-like, 1.5 MPI-INF-3DHP).

Error per joint: the Euclidean 2D distance in screen units (as VideoPose3D's
re-projection term), not its square.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jpose.objectives import projection

__all__ = ["LAMBDA", "split_extrinsics", "relative_transform", "transform_points",
           "root_from_depth", "reprojection_loss", "transform_reprojection_loss",
           "pretraining_loss", "total_loss", "weighted_mean"]

#: ``lambda`` of ``L_T = L_reproj + lambda L_t-reproj`` per dataset (thesis §3.4).
LAMBDA = {"h36m": 1.0, "mpi_inf_3dhp": 1.5}


def _distance(uv, target):
    diff = uv - jnp.asarray(target, uv.dtype)
    sq = jnp.sum(diff * diff, axis=-1)
    zero = sq == 0  # a finite gradient at an exact match
    return jnp.where(zero, 0.0, jnp.sqrt(jnp.where(zero, 1.0, sq)))


def split_extrinsics(extrinsics):
    """``(R (..., 3, 3), c (..., 3))`` of the 12-vector ``[R row-major, c]``."""
    e = jnp.asarray(extrinsics)
    return e[..., :9].reshape(e.shape[:-1] + (3, 3)), e[..., 9:12]


def relative_transform(extrinsics_1, extrinsics_2):
    """``(R_1to2 (..., 3, 3), t_1to2 (..., 3))``: ``x_cam2 = R_1to2 (x_cam1 - t_1to2)``
    with ``R_1to2 = R2 R1^T``, ``t_1to2 = R1 (c2 - c1)`` (module docstring), metres."""
    r1, c1 = split_extrinsics(extrinsics_1)
    r2, c2 = split_extrinsics(extrinsics_2)
    rotation = jnp.einsum("...ab,...cb->...ac", r2, r1)
    translation = jnp.einsum("...ab,...b->...a", r1, c2 - c1)
    return rotation, translation


def transform_points(points, rotation, translation):
    """``tau(P) = R (P - t)`` for points ``(..., J, 3)`` with ``R (..., 3, 3)`` and
    ``t (..., 3)`` on the same leading axes."""
    p = jnp.asarray(points)
    return jnp.einsum("...ab,...jb->...ja", rotation, p - translation[..., None, :])


def root_from_depth(root_2d, depth, intrinsics9):
    """The root's camera-frame position ``z ((u - cx) / fx, (v - cy) / fy, 1)`` from its
    2D detection ``(..., 2)`` (screen units) and depth ``(...,)`` metres (pinhole: lens
    distortion ignored, a sub-pixel effect for Human3.6M-like lenses near the centre)."""
    k = jnp.asarray(intrinsics9)
    xy = (jnp.asarray(root_2d) - k[..., 2:4]) / k[..., 0:2]
    z = jnp.asarray(depth)[..., None]
    return jnp.concatenate([xy * z, z], axis=-1)


def _broadcast_weight(weight, like):
    return jnp.broadcast_to(jnp.asarray(weight, like.dtype), like.shape)


def reprojection_loss(points_cam, intrinsics9, keypoints_2d, *, weight, min_depth=0.1):
    """Eq. 3.2 per joint: ``|| proj_v(P_v) - x_v ||`` (screen units).

    Args:
      points_cam: ``(..., J, 3)`` camera-frame joints ``Y_v + r_v``, metres.
      intrinsics9: ``(..., 9)`` screen-unit intrinsics of the same view (leading axes of
        ``points_cam`` without ``J``).
      keypoints_2d: ``(..., J, 2)`` the view's 2D detections, screen units.
      weight: ``(..., J)`` (broadcastable): confidences times example weights.

      min_depth: metres; nearer points are behind the camera.

    Returns:
      ``(error (..., J), weight (..., J))``. Where the projection is invalid (depth below
      ``min_depth``, or ``|X / Z|`` or ``|Y / Z|`` above 1, where
      :func:`projection.project_to_2d` clips), the error is the clipped projection's plus
      a barrier ``relu(min_depth - Z) + sum relu(|(X, Y) / Z| - 1)`` that pulls the
      joint back in view; the weight is kept, so no joint escapes the loss by leaving
      the view.
    """
    points = jnp.asarray(points_cam)
    uv, valid = projection.project_to_2d(points, jnp.asarray(intrinsics9)[..., None, :],
                                         min_depth=min_depth)
    err = _distance(uv, keypoints_2d)
    # Behind the camera or clipped: the clipped projection's error has no gradient
    # towards validity, so add a barrier that has one (metres in front of min_depth,
    # plus how far X/Z, Y/Z leave [-1, 1]); the weight is NOT zeroed there, or a network
    # could escape the loss by moving joints behind a camera.
    z = points[..., 2]
    ratio = points[..., :2] / jnp.maximum(jnp.abs(z), min_depth)[..., None]
    barrier = jax.nn.relu(min_depth - z) + jnp.sum(jax.nn.relu(jnp.abs(ratio) - 1.0), -1)
    err = jnp.where(valid, err, err + barrier)
    return err, _broadcast_weight(weight, err)


def transform_reprojection_loss(points_cam_1, extrinsics_1, extrinsics_2, intrinsics9_2,
                                keypoints_2d_2, *, weight_1, min_depth=0.1):
    """Eq. 3.5 per joint: ``|| proj_2(tau_{1->2}(P_1)) - x_2 ||`` (screen units).

    Args:
      points_cam_1: ``(..., J, 3)`` view 1's camera-frame joints, metres.
      extrinsics_1, extrinsics_2: ``(..., 12)`` the two views' extrinsics.
      intrinsics9_2: ``(..., 9)`` view 2's intrinsics; keypoints_2d_2 ``(..., J, 2)`` its 2D.
      weight_1: ``(..., J)``: the SOURCE view's (view 1's) confidences times example
        weights.

    Returns:
      ``(error (..., J), weight (..., J))`` as :func:`reprojection_loss`.
    """
    rotation, translation = relative_transform(extrinsics_1, extrinsics_2)
    moved = transform_points(points_cam_1, rotation, translation)
    return reprojection_loss(moved, intrinsics9_2, keypoints_2d_2, weight=weight_1,
                             min_depth=min_depth)


def pretraining_loss(pose, root, intrinsics9, keypoints_2d, *, weight, min_depth=0.1):
    """Eq. 3.6 (jpose's reading) per joint: ``|| f (Y_xy + r_xy) / r_z + c - x ||``.

    The weak-perspective projection at the root's depth: the pose's own depth ``Y_z`` is
    not used, so pre-training shapes the image-plane layout and the root without
    committing the depth. ``pose (..., J, 3)`` root-relative metres, ``root (..., 3)``
    camera-frame metres (``r_z`` clamped below at ``min_depth``), the rest as
    :func:`reprojection_loss` (no lens distortion). Returns ``(error, weight)``.
    """
    k = jnp.asarray(intrinsics9)[..., None, :]
    r = jnp.asarray(root)[..., None, :]
    z = jnp.maximum(r[..., 2:3], min_depth)
    uv = k[..., 0:2] * (jnp.asarray(pose)[..., :2] + r[..., :2]) / z + k[..., 2:4]
    err = _distance(uv, keypoints_2d)
    valid = (r[..., 2] > min_depth)
    return err, _broadcast_weight(weight, err) * valid.astype(err.dtype)


def weighted_mean(error, weight):
    """``(sum(error * weight), sum(weight))``: a metric's (sum, count) pair."""
    return jnp.sum(error * weight), jnp.sum(weight)


def total_loss(reproj_mean, t_reproj_mean, *, lam):
    """``L_T = L_reproj + lambda L_t-reproj`` (thesis Eq. 3.7) from the two weighted means."""
    return reproj_mean + lam * t_reproj_mean
