"""Multi-view self-supervised lifting by transform re-projection (Yang Li, thesis 2020, ch. 3).

No 3D label is used in training: the networks learn from synchronised, calibrated views
only (Li et al., "Geometry-driven self-supervised method for 3D human pose estimation",
AAAI 2020, the thesis' chapter 3).

Networks
--------
* ``pose`` (the lifting branch, ``hp.model``; the thesis: the residual MLP of Martinez et
  al. with 1024 channels and 4 residual blocks, ``thesis_mlp``): one view's 2D keypoints
  (normalised screen units, ``J_in`` joints of the input layout, plus the detector
  confidence as a feature when the data has it) -> its root-relative 3D pose ``Y``
  (metres, camera frame, the 3D layout's joint order). The only branch used at test time
  (predictor ``"pose"``).
* ``root`` (``hp.recipe.root_model``, a separate network, no shared weights; the
  thesis' second branch, which keeps the scale of the re-projected 2D): the root's depth
  ``z = root_depth_init * exp(o)`` (metres; ``o`` the z output of a one-joint network, so
  the depth stays positive and starts at ``root_depth_init``); the root's camera-frame
  position is then its 2D detection back-projected at that depth
  (:func:`jpose.objectives.multiview.root_from_depth`), and the camera-frame joints are
  ``P = (Y - Y_root) + r``.

Stream
------
The stream named ``multiview``, a ``source = "multiview"`` stream
(:mod:`jpose.training.streams`): ``V`` synchronised views of one instant with their
screen-unit intrinsics ``camera (B, V, 9)``, extrinsics ``(B, V, 12)`` (``x_cam = R
(x_world - c)``) and confidences. ``poses_3d`` is read only for the logged
``mpjpe_mm`` metric (never in the loss).

Loss (:mod:`jpose.objectives.multiview`, all terms in screen units, joints weighted by
their 2D confidences times the example weight, means over the weighted joints)
---------------------------------------------------------------------------------
* phase 0, the first ``hp.recipe.pretrain_epochs`` epochs (the thesis: 20, Adam 1e-3):
  ``L_pre`` (Eq. 3.6 as jpose reads it): the weak-perspective re-projection of every
  view with its root at the nominal depth ``root_depth_init`` (screen units), plus the
  mean ``|Y_z|`` (metres: a flat start for the depth) and the mean squared root output
  ``o^2`` (the root branch starts at ``root_depth_init``). Nothing fixes the metric scale
  before the transform term (re-projection is blind to a common scale of pose and
  root), so the pre-training anchors it at a nominal distance; ``L_T`` then learns the
  true depths from the known baselines;
* phase 1: ``L_T = L_reproj + lambda L_t-reproj`` (``hp.recipe.lam``; 1 for
  Human3.6M-like data, 1.5 for MPI-INF-3DHP): ``L_reproj`` (Eq. 3.2) over every view,
  ``L_t-reproj`` (Eq. 3.5) over every ordered pair of distinct views ``(v -> w)``,
  weighted by the source view ``v``'s confidences. ``hp.recipe.mode = "reproj_only"``
  drops ``L_t-reproj``: the thesis' ablation, in which depth is unconstrained (468.5 mm
  on Human3.6M) -- re-projection is blind to moving a joint along its camera ray.
* ``hp.recipe.virtual_views = N > 0`` (the thesis' 4 -> 12 views): per example,
  :func:`jpose.camera.augment_views` rings the drawn real cameras with ``N - V``
  virtual ones (mean intrinsics of the real views, looking at the point nearest their
  optical axes). Virtual cameras have no 2D, so jpose uses them as *sources*: view
  ``v``'s joints are carried into virtual camera ``k`` and projected there (the result
  is held fixed, ``stop_gradient``), lifted again by both networks, carried back into
  ``v`` and projected against ``v``'s 2D, weighted by ``v``'s confidences:
  ``L_virtual``, added with weight ``hp.recipe.virtual_weight``. This is a reading of
  the thesis' augmentation that needs no 3D label; it needs world extrinsics with
  ``Z`` up (not the estimated, reference-camera frame of ``unknown_extrinsics``).

Unknown extrinsics (``streams.<name>.extrinsics = "relative_pose"``, the config's
``:unknown_extrinsics``): the stream replaces the calibration by relative poses estimated
from the 2D detections with :func:`jpose.solvers.relative_pose.relative_pose`, scaled by
the known camera distance; the loss is unchanged (it uses relative transforms only).

Units: metres (3D), normalised screen units (2D and the logged ``*_2d`` terms;
multiply by ``width / 2`` for pixels), millimetres for the logged ``mpjpe_mm``.
"""

from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp

from jpose import camera as camera_lib
from jpose import metrics as metrics_lib
from jpose import skeleton
from jpose.nets import network
from jpose.objectives import multiview as mv
from jpose.recipes.base import Predictor, Recipe, network_variables

__all__ = ["RECIPE", "networks", "loss", "predictors", "phases", "MODES"]

#: ``hp.recipe.mode`` values: the thesis' total loss, or its re-projection-only ablation.
MODES = ("total", "reproj_only")


def _r(hp):
    return hp.get("recipe", {}) or {}


def networks(hp, meta) -> dict:
    r = _r(hp)
    shapes = dict(num_joints_in=meta["num_joints_in"], in_features=meta["in_features"])
    pose = network.with_data_shapes(dict(hp.model), num_joints_out=meta["num_joints_out"],
                                    **shapes)
    root_spec = dict(r.get("root_model", None) or hp.model)
    root_spec["overrides"] = {**dict(root_spec.get("overrides", {}) or {}),
                              "num_joints_out": 1}
    root = network.with_data_shapes(root_spec, num_joints_out=1, **shapes)
    mode = r.get("mode", "total")
    if mode not in MODES:
        raise ValueError(f"recipe.mode: {mode!r}; expected one of {MODES}")
    return {"pose": network.build(pose), "root": network.build(root)}


def _views_forward(net, variables, inputs, *, train, rng, bn_momentum):
    """``net`` on every view: inputs ``(B, V, ...)`` -> the target frame's output
    ``(B, V, J_out, 3)`` and the new batch statistics."""
    b, v = inputs.shape[:2]
    flat = inputs.reshape((b * v,) + inputs.shape[2:])
    out, stats = net.apply(variables, flat, train=train, rng=rng, bn_momentum=bn_momentum)
    pose = out["pose"]
    if net.kind == "temporal":
        pose = pose[:, 0]
    return pose.reshape((b, v) + pose.shape[1:]), stats


def _target_2d(net, inputs):
    """The target frame's 2D ``(B, V, J, 2)``."""
    if net.kind != "temporal":
        return inputs[..., :2]
    left, _ = net.padding
    return inputs[:, :, left, :, :2]


def _camera_joints(pose, depth_out, kp2d, intrinsics, *, root, depth_init):
    """``(P (..., J, 3), root (..., 3))``: root-centred pose plus the root back-projected at
    depth ``depth_init * exp(o)``."""
    centred = pose - pose[..., root:root + 1, :]
    depth = depth_init * jnp.exp(depth_out[..., 0, 2])
    r = mv.root_from_depth(kp2d[..., root, :], depth, intrinsics)
    return centred + r[..., None, :], r, centred


def _pairs(v):
    src, dst = zip(*itertools.permutations(range(v), 2)) if v > 1 else ((), ())
    return jnp.asarray(src, jnp.int32), jnp.asarray(dst, jnp.int32)


def _mean(err, w):
    total, count = mv.weighted_mean(err, w)
    return total / jnp.maximum(count, 1e-6), (total, count)


def _virtual_cameras(extrinsics, intrinsics, num_views):
    """World extrinsics ``(B, N - V, 12)`` and screen intrinsics ``(B, N - V, 9)`` of the
    virtual cameras that :func:`jpose.camera.augment_views` adds to each example's ``V``
    real ones (intrinsics: the real views' mean)."""
    b, v = extrinsics.shape[:2]
    rot, centre = mv.split_extrinsics(extrinsics)
    dummy = jnp.zeros((b, v, 2), extrinsics.dtype)
    cams = camera_lib.CameraParams(rot, centre, dummy + 1.0, dummy, jnp.zeros((b, v, 3)),
                                   dummy, dummy + 2.0)
    ring = jax.vmap(lambda c: camera_lib.augment_views(c, num_views))(cams)
    ext = jnp.concatenate([ring.rotation[:, v:].reshape(b, num_views - v, 9),
                           ring.centre[:, v:]], axis=-1)
    intr = jnp.broadcast_to(jnp.mean(intrinsics, axis=1, keepdims=True),
                            (b, num_views - v, 9))
    return jax.lax.stop_gradient(ext), jax.lax.stop_gradient(intr)


def loss(params, batch_stats, batch, step, *, nets, hp):
    r = _r(hp)
    x = batch["multiview"]
    root = skeleton.get(hp.data.layout).root
    depth_init = float(r.get("root_depth_init", 5.0))
    inputs, weight = x["inputs"], x["weight"]
    b, v = inputs.shape[:2]
    kw = dict(train=True, bn_momentum=step.bn_momentum)
    pose_vars = network_variables({"params": params, "batch_stats": batch_stats}, "pose")
    root_vars = network_variables({"params": params, "batch_stats": batch_stats}, "root")
    pose, pose_stats = _views_forward(nets["pose"], pose_vars, inputs,
                                      rng=jax.random.fold_in(step.rng, 0), **kw)
    depth_out, root_stats = _views_forward(nets["root"], root_vars, inputs,
                                           rng=jax.random.fold_in(step.rng, 1), **kw)
    kp2d = _target_2d(nets["pose"], inputs)
    conf = x["confidence"].reshape(kp2d.shape[:-1]).astype(kp2d.dtype)
    w = conf * weight.astype(kp2d.dtype)[:, None, None]
    cams, ext = x["camera"], x["extrinsics"]
    points, root_pos, centred = _camera_joints(pose, depth_out, kp2d, cams, root=root,
                                               depth_init=depth_init)
    zero = jnp.zeros((), kp2d.dtype)
    metrics = {}
    if step.phase == 0 and int(r.get("pretrain_epochs", 0)) > 0:
        # L_pre at the nominal depth: the lifting branch starts as the weak-perspective
        # back-projection of its input with a flat depth, the root branch at depth_init.
        nominal = mv.root_from_depth(kp2d[..., root, :], jnp.full(kp2d.shape[:2], depth_init,
                                                                  kp2d.dtype), cams)
        value, metrics["pretrain_2d"] = _mean(*mv.pretraining_loss(
            centred, nominal, cams, kp2d, weight=w))
        value = value + jnp.mean(jnp.abs(centred[..., 2])) + jnp.mean(depth_out[..., 0, 2] ** 2)
        metrics.update(reproj_2d=(zero, zero), t_reproj_2d=(zero, zero))
    else:
        value, metrics["reproj_2d"] = _mean(*mv.reprojection_loss(points, cams, kp2d,
                                                                   weight=w))
        metrics["pretrain_2d"] = (zero, zero)
        src, dst = _pairs(v)
        if v > 1:
            t_mean, metrics["t_reproj_2d"] = _mean(*mv.transform_reprojection_loss(
                points[:, src], ext[:, src], ext[:, dst], cams[:, dst], kp2d[:, dst],
                weight_1=w[:, src]))
        else:
            t_mean, metrics["t_reproj_2d"] = zero, (zero, zero)
        if r.get("mode", "total") == "total":
            value = mv.total_loss(value, t_mean, lam=float(r.get("lam", 1.0)))
            n_virtual = int(r.get("virtual_views", 0) or 0)
            if n_virtual > v:
                value_v, metrics["virtual_2d"] = _virtual_term(
                    params, batch_stats, nets, points, ext, cams, kp2d, w, n_virtual, step,
                    root=root, depth_init=depth_init, in_features=inputs.shape[-1])
                value = value + float(r.get("virtual_weight", 1.0)) * value_v
    # Logged only: the lifting branch's error against the (never trained on) ground truth.
    truth = x["poses_3d"].reshape(centred.shape)
    truth = truth - truth[..., root:root + 1, :]
    err = jnp.linalg.norm(centred - truth, axis=-1)
    mask = jnp.broadcast_to(weight.astype(err.dtype)[:, None, None], err.shape)
    total, count = metrics_lib.masked_sum_count(err, mask)
    metrics["mpjpe_mm"] = (metrics_lib.to_millimetres(total), count.astype(total.dtype))
    new_stats = {**batch_stats, "pose": pose_stats, "root": root_stats}
    return value, (new_stats, metrics)


def _virtual_term(params, batch_stats, nets, points, ext, cams, kp2d, w, num_views, step,
                  *, root, depth_init, in_features):
    """``L_virtual`` (module docstring): real view -> virtual camera -> lift -> back."""
    b, v = points.shape[:2]
    k = num_views - v
    v_ext, v_cams = _virtual_cameras(ext, cams, num_views)
    # Every (real view, virtual camera) pair: (B, V, K, ...).
    rot, trans = mv.relative_transform(ext[:, :, None], v_ext[:, None])
    moved = mv.transform_points(points[:, :, None], rot, trans)
    uv, valid = _project(moved, v_cams[:, None])
    uv = jax.lax.stop_gradient(uv)
    feats = [uv]
    if in_features == 3:
        feats.append(jnp.ones(uv.shape[:-1] + (1,), uv.dtype))  # exact synthetic 2D
    fake = jnp.concatenate(feats, axis=-1).reshape((b, v * k) + uv.shape[-2:-1] +
                                                   (in_features,))
    if nets["pose"].kind == "temporal":
        raise ValueError("recipe.virtual_views: needs single-frame (mlp) networks")
    kw = dict(train=True, bn_momentum=step.bn_momentum)
    pose_v, _ = _views_forward(nets["pose"], network_variables(
        {"params": params, "batch_stats": batch_stats}, "pose"), fake,
        rng=jax.random.fold_in(step.rng, 2), **kw)
    depth_v, _ = _views_forward(nets["root"], network_variables(
        {"params": params, "batch_stats": batch_stats}, "root"), fake,
        rng=jax.random.fold_in(step.rng, 3), **kw)
    cams_v = jnp.broadcast_to(v_cams[:, None], (b, v, k, 9)).reshape(b, v * k, 9)
    p_virtual, _, _ = _camera_joints(pose_v, depth_v, fake[..., :2], cams_v, root=root,
                                     depth_init=depth_init)
    p_virtual = p_virtual.reshape((b, v, k) + p_virtual.shape[-2:])
    back_rot, back_trans = mv.relative_transform(v_ext[:, None], ext[:, :, None])
    back = mv.transform_points(p_virtual, back_rot, back_trans)
    err, wv = mv.reprojection_loss(back, jnp.broadcast_to(cams[:, :, None], (b, v, k, 9)),
                                   jnp.broadcast_to(kp2d[:, :, None], back.shape[:-1] + (2,)),
                                   weight=w[:, :, None] * valid.astype(w.dtype))
    return _mean(err, wv)


def _project(points, intrinsics9):
    from jpose.objectives import projection

    return projection.project_to_2d(points, intrinsics9[..., None, :])


def predictors(nets) -> dict:
    def pose(variables, keypoints):
        return nets["pose"].predict(network_variables(variables, "pose"), keypoints)

    return {"pose": Predictor(pose, "pose", "pose")}


def phases(hp) -> tuple[int, ...]:
    """Phase 0: ``L_pre`` pre-training; phase 1: the total loss (or the ablation)."""
    return (int(_r(hp).get("pretrain_epochs", 0)),)


RECIPE = Recipe(name="multiview_lifting", networks=networks, loss=loss,
                predictors=predictors, streams=("multiview",), phases=phases)
