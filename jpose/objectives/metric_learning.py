r"""MCSS metric learning (Mitra et al. CVPR 2020, seed 004), per-element jnp.

MCSS learns a pose embedding ``G`` in which two views of the same instant are close
and other poses far, from synchronised multi-view video without 3D labels, and
regresses a *canonical* 3D pose from it with a small labelled set.

**Distances.** Embeddings are L2-normalised (:mod:`jpose.nets.embedding`), ``D(i, j) =
||G(anchor_i) - G(positive_j)||^2`` (squared Euclidean, in ``[0, 4]``) between the
anchor of example ``i`` (view 1 of instant ``i``) and the positive of example ``j``
(view 2 of instant ``j``); :func:`pairwise_sq_distances`. ``D(i, i)`` is the positive
pair, ``D(i, j != i)`` are candidate negatives.

**Hard negatives (Eq. 1).** The paper writes the hardest negative of anchor ``i`` as
``argmin_j delta_ij D(i, j)`` with ``delta_ij`` in ``{0, 1}`` marking the admissible
negatives. Taken literally that product puts a *zero* into the minimum for every
inadmissible ``j`` (including the positive itself), so the "hardest negative" would
always be an excluded one at distance 0 and the hinge would be a constant ``alpha``.
jpose takes the intended meaning, a **masked minimum** (:func:`masked_min`):
``D_min(i) = min {D(i, j) : delta_ij = 1}``. ``delta_ij`` is

* ``j != i`` and ``j`` a real example (weight > 0), and
* not the same subject's temporally close frame (same subject and sequence,
  ``|frame_i - frame_j| < min_frame_gap``: nearby frames look alike and would be false
  negatives; :func:`temporal_negative_mask`), and
* ``D(i, j) > beta`` (``beta = 0.3``): candidates already closer than ``beta`` are
  treated as likely repeats of the anchor's pose (another subject or a periodic motion
  doing the same thing) and are not pushed away.

With no admissible negative in the batch the hinge of that anchor is 0 and it is
reported in ``has_negative``.

**Loss.** Per anchor ``L_i = D(i, i) + max(0, alpha - D_min(i))`` (``alpha = 0.6``);
the recipe averages it over anchors with weight (:func:`metric_loss`).

**Canonical pose.** :func:`canonical_pose` is the regression target of head ``H``:
the root-relative 3D pose turned about the **vertical** so that the body faces a fixed
direction. jpose's frames: camera ``x right, y down, z forward``; world (the multi-view
data, Human3.6M) **Z up**. The camera's ``y`` is *not* the vertical (cameras are
pitched), so camera-frame poses are first taken to world orientation with the
world-to-camera rotation ``R`` of the batch's ``extrinsics`` (``x_world - c = R^T
x_cam``; only the rotation matters for root-relative poses). Then, with the hip vector
``h = left_hip - right_hip`` (shoulders for layouts without hips), the pose is rotated
about world ``z`` by ``-atan2(h_y, h_x)``: afterwards ``h`` points along ``+x`` (``h_y =
0``, ``h_x > 0``), i.e. the body's left is ``+x`` and it faces ``-y`` (left = up x
forward). The result does not depend on the camera, nor on a rotation of the world
about the vertical: two views of one instant share one canonical pose.

Units: poses metres; :func:`l1_pose_loss` metres (sum of absolute coordinate errors
per joint); embedding distances dimensionless.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from jpose import skeleton

__all__ = ["pairwise_sq_distances", "masked_min", "temporal_negative_mask",
           "hard_negative_distance", "MetricTerms", "metric_loss", "yaw_of_hips",
           "hip_joints", "canonical_pose", "camera_to_world_rotation", "l1_pose_loss"]


def pairwise_sq_distances(anchor, positive):
    """``D (B_a, B_p)``: ``D[i, j] = ||anchor_i - positive_j||^2`` of ``(B, D)`` arrays
    (computed from differences: exact, and ``D[i, i] = 0`` for equal rows)."""
    diff = anchor[:, None, :] - positive[None, :, :]
    return jnp.sum(diff * diff, axis=-1)


def masked_min(values, mask, *, axis: int = -1):
    """``(min over the True entries of mask, whether there was one)`` along ``axis``.

    Masked-out entries never take part (not even as zeros, unlike ``min(mask *
    values)``); where a row has no True entry the minimum is reported as 0 with
    ``any = False``. The gradient reaches only the selected entry.
    """
    values = jnp.asarray(values)
    big = jnp.asarray(jnp.finfo(values.dtype).max, values.dtype)
    m = jnp.min(jnp.where(mask, values, big), axis=axis)
    any_ = jnp.any(mask, axis=axis)
    return jnp.where(any_, m, jnp.zeros_like(m)), any_


def temporal_negative_mask(subject, sequence_index, frame_index, *, min_frame_gap: int,
                           weight=None):
    """``(B, B)`` bool: may example ``j`` be a negative of anchor ``i``?

    False on the diagonal (the positive), for padding columns (``weight[j] == 0``), and
    for the same subject's temporally close frames: same ``subject`` and
    ``sequence_index`` with ``|frame_index_i - frame_index_j| < min_frame_gap`` (frames).
    Padding rows are left True (their anchor's loss has weight 0 anyway).
    """
    subject = jnp.asarray(subject)
    seq = jnp.asarray(sequence_index)
    frame = jnp.asarray(frame_index).astype(jnp.int32)
    b = subject.shape[0]
    same = (subject[:, None] == subject[None, :]) & (seq[:, None] == seq[None, :])
    close = jnp.abs(frame[:, None] - frame[None, :]) < jnp.int32(min_frame_gap)
    mask = ~(same & close) & ~jnp.eye(b, dtype=bool)
    if weight is not None:
        mask = mask & (jnp.asarray(weight) > 0)[None, :]
    return mask


def hard_negative_distance(distances, negative_mask, *, beta: float):
    """Eq. 1 as a masked minimum: ``(D_min (B,), has_negative (B,), index (B,))`` over
    ``j`` with ``negative_mask[i, j]`` and ``D[i, j] > beta`` (module doc)."""
    admissible = negative_mask & (distances > beta)
    d_min, has = masked_min(distances, admissible, axis=-1)
    big = jnp.asarray(jnp.finfo(distances.dtype).max, distances.dtype)
    index = jnp.argmin(jnp.where(admissible, distances, big), axis=-1).astype(jnp.int32)
    return d_min, has, jnp.where(has, index, -1)


class MetricTerms(NamedTuple):
    """Per-anchor parts of the MCSS loss (all ``(B,)``)."""

    loss: jax.Array  # float: D(i, i) + max(0, alpha - D_min(i)) (hinge 0 without negative)
    positive: jax.Array  # float: D(i, i)
    hinge: jax.Array  # float: max(0, alpha - D_min(i)), 0 where has_negative is False
    has_negative: jax.Array  # bool
    negative_index: jax.Array  # int32: the hard negative j, -1 if none


def metric_loss(anchor, positive, *, negative_mask, alpha: float, beta: float) -> MetricTerms:
    """MCSS's per-anchor loss ``D(i, i) + max(0, alpha - D_min(i))`` (module doc).

    Args:
      anchor, positive: ``(B, D)`` embeddings of the two views of each instant.
      negative_mask: ``(B, B)`` bool, the admissible negatives before the ``beta`` test
        (:func:`temporal_negative_mask`).
      alpha: the margin (MCSS: 0.6); beta: the near-duplicate threshold (MCSS: 0.3),
        both in squared-distance units.
    """
    dist = pairwise_sq_distances(anchor, positive)
    pos = jnp.diagonal(dist)
    d_min, has, index = hard_negative_distance(dist, negative_mask, beta=beta)
    hinge = jnp.where(has, jax.nn.relu(alpha - d_min), jnp.zeros_like(d_min))
    return MetricTerms(pos + hinge, pos, hinge, has, index)


# --------------------------------------------------------------------- canonical pose


def hip_joints(layout: str) -> tuple[int, int]:
    """``(left, right)`` joint indices that define the body's lateral axis: the hips,
    or the shoulders for a layout without hips."""
    skel = skeleton.get(layout)
    for left, right in (("left_hip", "right_hip"), ("left_shoulder", "right_shoulder")):
        if left in skel.joint_names and right in skel.joint_names:
            return skel.index(left), skel.index(right)
    raise ValueError(f"layout: {skel.name!r} has neither hips nor shoulders")


def camera_to_world_rotation(extrinsics):
    """``R^T (..., 3, 3)`` from ``extrinsics (..., 12)`` (``R`` row-major, then ``c``):
    it takes camera-frame directions to world ones (``x_world - c = R^T x_cam``).

    For a mirrored camera (``det R = -1``: the extrinsics of a flip-augmented example,
    ``diag(-1, 1, 1) R``, see :mod:`jpose.datasets.pipelines`) the proper rotation
    ``R`` is used, so the mirrored pose stays a (mirror-image) body with Z up rather
    than a left/right-relabelled one; the camera's x axis is horizontal for the
    roll-free rigs jpose generates, so the vertical is kept."""
    r = jnp.asarray(extrinsics)[..., :9].reshape(jnp.shape(extrinsics)[:-1] + (3, 3))
    # A flip-augmented example's camera is mirrored, diag(-1, 1, 1) R (det -1): undo the
    # reflection here, so its (mirrored) pose is turned by the proper rotation R.
    mirrored = jnp.linalg.det(r) < 0
    r = jnp.where(mirrored[..., None, None], r.at[..., 0, :].multiply(-1.0), r)
    return jnp.swapaxes(r, -1, -2)


def yaw_of_hips(poses, *, layout: str):
    """``atan2(h_y, h_x) (...,)`` of the hip vector ``h = left - right`` of Z-up poses
    ``(..., J, 3)`` (radians; 0 when ``h`` is vertical)."""
    left, right = hip_joints(layout)
    h = poses[..., left, :] - poses[..., right, :]
    return jnp.arctan2(h[..., 1], h[..., 0])


def canonical_pose(poses, *, layout: str, extrinsics=None):
    """The canonical pose ``(..., J, 3)`` of root-relative ``poses (..., J, 3)`` (metres).

    With ``extrinsics (..., 12)`` the poses are camera-frame and first rotated to world
    orientation (Z up); without, they must already be Z-up. Then the rotation about
    ``z`` that brings the hip vector onto ``+x`` (module doc). Not meant to be
    differentiated (a target; ``atan2`` has no gradient at a vertical hip vector).
    """
    poses = jnp.asarray(poses)
    if extrinsics is not None:
        rot = camera_to_world_rotation(extrinsics).astype(poses.dtype)
        poses = jnp.einsum("...ij,...kj->...ki", rot, poses)
    theta = yaw_of_hips(poses, layout=layout)
    c, s = jnp.cos(theta)[..., None], jnp.sin(theta)[..., None]
    x, y, z = poses[..., 0], poses[..., 1], poses[..., 2]
    # Rotation by -theta about z: (x, y) -> (c x + s y, -s x + c y).
    return jnp.stack([c * x + s * y, -s * x + c * y, z], axis=-1)


def l1_pose_loss(pred, target):
    """Per-joint L1 error ``sum_xyz |pred - target|`` ``(..., J)``, metres (H's loss)."""
    return jnp.sum(jnp.abs(jnp.asarray(pred) - jnp.asarray(target)), axis=-1)
