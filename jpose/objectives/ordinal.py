"""Relative-depth (ordinal) weak supervision: Ronchi et al., BMVC 2018, "It's all
Relative" (seed 003 §3.2), keypoint-input form.

A network maps 2D keypoints to a root-relative 3D pose; instead of 3D targets it gets,
per image, a few joint pairs ``(j, k)`` with a label saying which of the two is farther
from the camera. The per-element terms (no hidden reduction; the recipe reduces them
with explicit weights, :func:`jpose.metrics.masked_sum_count`):

* :func:`relative_depth_loss` -- ``L_rel``: with ``d = lam (z_j - z_k) / mean|z_j' -
  z_k'|`` (the mean over the batch's weighted pairs), ``log(1 + exp(-r d))`` for ``r !=
  0`` and ``d^2`` for ``r = 0``;
* :func:`root_loss` -- ``L_root = ||p_root||^2``: the root joint stays at the origin;
* :func:`scaled_orthographic_loss` / :func:`perspective_loss` -- ``L_proj``: the squared
  2D error of the projected pose on the visible joints (a predicted or least-squares
  scale, or a known focal length with a least-squares translation); the recipe divides
  it by :func:`keypoint_spread`, the 2D pose's size, so it is relative;
* :func:`bone_ratio_loss` -- ``L_skel``: the squared gap between the pose's bone-length
  *ratios* (each bone over the pose's mean bone length) and a reference skeleton's;
* the recipe (:mod:`jpose.recipes.relative_depth`) combines them as ``L = mean(L_root +
  alpha L_rel + beta L_proj + gamma L_skel)``.

Sign convention (one for all of jpose's relative depth)
-------------------------------------------------------
Camera frame, **z forward** (depth grows away from the camera), metres. A label ``r`` of
the ordered pair ``(j, k)`` is ``sign(z_j - z_k)`` with ties inside a tolerance:

* ``r = +1``: joint ``j`` is **farther** than ``k`` (``z_j > z_k``; ``k`` is closer);
* ``r = -1``: joint ``j`` is **closer** than ``k`` (``z_j < z_k``);
* ``r = 0``: about the same depth (``|z_j - z_k| <`` tolerance).

So ``L_rel = log(1 + exp(-r lam (z_j - z_k) / s))`` is small when the predicted
difference has the label's sign. The LSP builder's ``depth_closer[k]`` (Ronchi et al.'s
label: the index, 0 or 1, into ``depth_pairs[k]`` of the joint **closer** to the camera)
is this convention as ``r = 2 * depth_closer - 1`` (:func:`labels_from_closer`):
``depth_closer = 1`` says the second joint is closer, i.e. the first is farther, ``r =
+1``.

Units: poses in metres; 2D keypoints in normalised screen units
(:func:`jpose.camera.pixels_to_screen`: ``x = u / w * 2 - 1``, y down), so a
scaled-orthographic scale is in screen units per metre and ``L_proj`` in square screen
units (divided by :func:`keypoint_spread`: dimensionless); ``L_root`` is in square
metres; ``L_rel`` and ``L_skel`` are dimensionless.
Joints follow the pose's layout (``h36m_17`` on the sample and Human3.6M: pelvis root
at index 0).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jpose import skeleton

__all__ = ["labels_from_closer", "pair_depth_differences", "batch_depth_scale",
           "relative_depth_loss", "root_loss", "least_squares_scale", "keypoint_spread",
           "scaled_orthographic_loss", "perspective_translation", "perspective_loss",
           "bone_ratios", "bone_ratio_loss", "relative_depth_errors"]


def labels_from_closer(depth_closer):
    """``r`` of :mod:`this module's <jpose.objectives.ordinal>` convention from the LSP
    builder's ``depth_closer`` (0: the pair's first joint is closer -> ``r = -1``; 1: the
    second is closer -> ``r = +1``). Works on NumPy and jnp arrays."""
    return 2 * depth_closer - 1


def pair_depth_differences(z, pairs):
    """``z_j - z_k`` ``(..., K)`` for depths ``z`` ``(..., J)`` (metres) and joint pairs
    ``pairs`` ``(..., K, 2)`` or ``(K, 2)`` (int indices ``(j, k)``)."""
    z = jnp.asarray(z)
    pairs = jnp.asarray(pairs, jnp.int32)
    if pairs.ndim == 2:  # one pair list for every example
        return z[..., pairs[:, 0]] - z[..., pairs[:, 1]]
    zj = jnp.take_along_axis(z, pairs[..., 0], axis=-1)
    zk = jnp.take_along_axis(z, pairs[..., 1], axis=-1)
    return zj - zk


def batch_depth_scale(dz, weight, *, eps: float = 1e-6):
    """The normaliser ``s = sum(w |dz|) / sum(w) + eps`` over *all* axes (the batch's
    pairs; padding and absent pairs have weight 0). Differentiable (no stop-gradient): the
    relative term is then invariant to the pose's overall scale."""
    dz = jnp.asarray(dz)
    w = jnp.broadcast_to(jnp.asarray(weight, dz.dtype), dz.shape)
    total = jnp.sum(jnp.where(w != 0, w * jnp.abs(dz), 0.0))
    return total / jnp.maximum(jnp.sum(w), 1e-12) + eps


def relative_depth_loss(z, pairs, labels, weight, *, lam: float = 1.0, eps: float = 1e-6):
    """Ronchi et al.'s ``L_rel`` per pair ``(..., K)`` (dimensionless).

    ``d = lam (z_j - z_k) / s`` with ``s`` = :func:`batch_depth_scale` (the weighted batch
    mean of ``|z_j - z_k|``); ``log(1 + exp(-r d))`` where ``r != 0`` (a logistic ranking
    loss, computed as ``softplus``), ``d^2`` where ``r = 0``.

    Args:
      z: ``(..., J)`` predicted depths (camera z, metres; root-relative is fine).
      pairs: ``(..., K, 2)`` or ``(K, 2)`` joint indices ``(j, k)``.
      labels: ``(..., K)`` ``r`` in {-1, 0, +1}, +1 = ``j`` farther (module doc).
      weight: ``(..., K)`` (or broadcastable) pair weights, 0 for padding; they define
        the normaliser only. The returned values are **not** multiplied by them: reduce
        with ``masked_sum_count(loss, weight)``.
      lam: ``lambda``, the sharpness of the ranking loss.
      eps: added to the normaliser (a collapsed prediction stays finite).
    """
    dz = pair_depth_differences(z, pairs)
    r = jnp.asarray(labels).astype(dz.dtype)
    d = lam * dz / batch_depth_scale(dz, weight, eps=eps)
    return jnp.where(r != 0, jax.nn.softplus(-r * d), d * d)


def root_loss(pose, *, root_index: int = 0):
    """``L_root = ||p_root||^2`` ``(...,)`` square metres for poses ``(..., J, 3)``."""
    root = jnp.asarray(pose)[..., root_index, :]
    return jnp.sum(root * root, axis=-1)


def _centre(points, visible):
    """Visibility-weighted mean over joints ``(..., 1, C)`` of ``points`` ``(..., J, C)``."""
    v = visible[..., None]
    return jnp.sum(points * v, axis=-2, keepdims=True) / jnp.maximum(
        jnp.sum(v, axis=-2, keepdims=True), 1e-12)


def least_squares_scale(pose, keypoints_2d, visible):
    """The scale ``s`` ``(...,)`` minimising ``sum_j v_j |s (x_j, y_j) - u_j|^2`` after
    centring both on their visible joints' mean (screen units per metre): ``s =
    sum v <xy_c, u_c> / sum v |xy_c|^2``; 1 where the pose has no spread."""
    pose = jnp.asarray(pose)
    v = jnp.asarray(visible, pose.dtype)
    xy = pose[..., :2]
    u = jnp.asarray(keypoints_2d, pose.dtype)
    xy_c, u_c = xy - _centre(xy, v), u - _centre(u, v)
    num = jnp.sum(v * jnp.sum(xy_c * u_c, axis=-1), axis=-1)
    den = jnp.sum(v * jnp.sum(xy_c * xy_c, axis=-1), axis=-1)
    ok = den > 0
    return jnp.where(ok, num / jnp.where(ok, den, 1.0), 1.0)


def keypoint_spread(keypoints_2d, visible, *, eps: float = 1e-8):
    """The 2D pose's size ``(...,)``: the mean over visible joints of ``|u_j - c|^2``,
    ``c`` their mean (square screen units, plus ``eps``). Dividing ``L_proj`` by it makes
    the term dimensionless (relative to the person's size in the image), so one weight
    suits near and far people and any screen normalisation."""
    u = jnp.asarray(keypoints_2d)
    v = jnp.asarray(visible, u.dtype)
    d = u - _centre(u, v)
    return (jnp.sum(v * jnp.sum(d * d, axis=-1), axis=-1)
            / jnp.maximum(jnp.sum(v, axis=-1), 1e-12) + eps)


def scaled_orthographic_loss(pose, keypoints_2d, visible, *, scale):
    """``L_proj`` per joint ``(..., J)``, square screen units: ``v_j |s (x_j, y_j) + t -
    u_j|^2`` with the least-squares translation ``t = mean_v(u - s xy)`` (the visible
    joints' mean residual; a root-relative pose has no position of its own).

    Args:
      pose: ``(..., J, 3)`` metres, camera frame (x right, y down as the screen).
      keypoints_2d: ``(..., J, 2)`` normalised screen coordinates.
      visible: ``(..., J)`` visibility (bool or 0/1 weight); invisible joints neither
        fit ``t`` nor count.
      scale: ``(...,)`` or ``(..., 1)`` the (predicted) scale, screen units per metre.
    """
    pose = jnp.asarray(pose)
    v = jnp.asarray(visible, pose.dtype)
    s = jnp.asarray(scale, pose.dtype)
    s = s.reshape(pose.shape[:-2] + (1, 1))
    proj = s * pose[..., :2]
    u = jnp.asarray(keypoints_2d, pose.dtype)
    t = _centre(u - proj, v)
    diff = proj + t - u
    return v * jnp.sum(diff * diff, axis=-1)


def perspective_translation(pose, keypoints_2d, visible, focal, principal, *,
                            ridge: float = 1e-6):
    """The camera-frame translation ``T`` ``(..., 3)`` placing the root-relative ``pose``
    where its perspective projection best fits ``keypoints_2d`` (the *algebraic* least
    squares of the linearised projection, so one 3x3 solve): with ``a = (u - c) / f``,
    each visible joint gives ``T_x - a_x T_z = a_x Z_j - X_j`` and ``T_y - a_y T_z = a_y
    Z_j - Y_j``. ``focal``, ``principal``: ``(..., 2)`` in the keypoints' units (screen:
    the 9-vector's ``fx, fy`` and ``cx, cy``); ``ridge`` keeps the solve regular."""
    pose = jnp.asarray(pose)
    v = jnp.asarray(visible, pose.dtype)[..., None]  # (..., J, 1)
    f = jnp.asarray(focal, pose.dtype)[..., None, :]
    c = jnp.asarray(principal, pose.dtype)[..., None, :]
    a = (jnp.asarray(keypoints_2d, pose.dtype) - c) / f  # (..., J, 2)
    # Rows [1, 0, -a_x] and [0, 1, -a_y] per joint: A^T A and A^T b in closed form.
    b = a * pose[..., 2:3] - pose[..., :2]  # (..., J, 2)
    sv = jnp.sum(v, axis=-2)[..., 0]
    sax, say = (jnp.sum(v * a, axis=-2)[..., i] for i in (0, 1))
    saa = jnp.sum(v * a * a, axis=(-2, -1))
    zero = jnp.zeros_like(sv)
    ata = jnp.stack([jnp.stack([sv, zero, -sax], -1), jnp.stack([zero, sv, -say], -1),
                     jnp.stack([-sax, -say, saa], -1)], -2)
    atb = jnp.stack([jnp.sum(v[..., 0] * b[..., 0], -1), jnp.sum(v[..., 0] * b[..., 1], -1),
                     -jnp.sum(v * a * b, axis=(-2, -1))], -1)
    eye = jnp.broadcast_to(jnp.eye(3, dtype=pose.dtype), ata.shape)
    return jnp.linalg.solve(ata + ridge * eye, atb[..., None])[..., 0]


def perspective_loss(pose, keypoints_2d, visible, focal, principal, *,
                     min_depth: float = 1e-3):
    """``L_proj`` per joint ``(..., J)`` for a known camera (no distortion): ``v_j
    |pi(p_j + T) - u_j|^2`` with ``pi(X) = f (X, Y) / Z + c`` and ``T`` =
    :func:`perspective_translation`; joints behind ``min_depth`` (metres) count 0 (their
    mask is the second return value: ``(loss, valid)``)."""
    pose = jnp.asarray(pose)
    t = perspective_translation(pose, keypoints_2d, visible, focal, principal)
    points = pose + t[..., None, :]
    z = points[..., 2:3]
    front = z > min_depth
    f = jnp.asarray(focal, pose.dtype)[..., None, :]
    c = jnp.asarray(principal, pose.dtype)[..., None, :]
    uv = f * points[..., :2] / jnp.where(front, z, 1.0) + c
    diff = uv - jnp.asarray(keypoints_2d, pose.dtype)
    valid = front[..., 0]
    v = jnp.asarray(visible, pose.dtype) * valid.astype(pose.dtype)
    return v * jnp.sum(diff * diff, axis=-1), valid


def bone_ratios(lengths, *, eps: float = 1e-9):
    """Each bone's length over the mean bone length of its pose: ``(..., B)`` (scale-free)."""
    lengths = jnp.asarray(lengths)
    return lengths / (jnp.mean(lengths, axis=-1, keepdims=True) + eps)


def bone_ratio_loss(pose, reference_lengths, *, layout: str):
    """``L_skel`` per bone ``(..., B)``: ``(ratio_b(pose) - ratio_b(reference))^2`` with
    :func:`bone_ratios` over the ``layout``'s bones (:attr:`jpose.skeleton.Skeleton.bones`
    order); ``reference_lengths`` ``(B,)`` metres (any scale: only ratios matter)."""
    skel = skeleton.get(layout)
    child = jnp.asarray([c for c, _ in skel.bones], jnp.int32)
    parent = jnp.asarray([p for _, p in skel.bones], jnp.int32)
    pose = jnp.asarray(pose)
    diff = pose[..., child, :] - pose[..., parent, :]
    sq = jnp.sum(diff * diff, axis=-1)
    safe = sq > 0  # a finite gradient for a collapsed bone
    lengths = jnp.where(safe, jnp.sqrt(jnp.where(safe, sq, 1.0)), 0.0)
    ref = jnp.asarray(reference_lengths, pose.dtype)
    if ref.shape != (len(skel.bones),):
        raise ValueError(f"reference_lengths: expected {len(skel.bones)} bone lengths of "
                         f"{layout!r}, got shape {ref.shape}")
    gap = bone_ratios(lengths) - jnp.broadcast_to(bone_ratios(ref), lengths.shape)
    return gap * gap


def relative_depth_errors(z, pairs, labels):
    """The paper's metric per pair: ``(wrong (..., K) bool, valid (..., K) bool)``.

    A pair is *wrong* when the predicted ``z_j - z_k`` does not have the label's sign (an
    exact tie counts wrong); ``valid`` is ``labels != 0`` -- ordered pairs only, as LSP's
    crowd labels (ties have no "wrong side"). "% wrong" is ``100 * sum(wrong & valid) /
    sum(valid)``: reduce with ``masked_sum_count(wrong, valid & weight)``.
    """
    dz = pair_depth_differences(z, pairs)
    r = jnp.asarray(labels)
    valid = r != 0
    return valid & (jnp.sign(dz) != jnp.sign(r).astype(dz.dtype)), valid
