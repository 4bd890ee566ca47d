"""VideoPose3D semi-supervised training (Pavllo et al. CVPR 2019, seed 001 §4, §6.2).

Networks: ``pose`` (root-relative 3D) and ``trajectory`` (the root's camera-frame
position), the same architecture (``hp.model``) and no shared weights.

Streams: ``labelled`` (2D, 3D, trajectory) and ``unlabelled`` (2D and the camera
intrinsics only; ``poses_3d`` there is never read). Both feed the same networks, so
their windows have the same length.

Loss per step, as VideoPose3D's ``run.py``:

* labelled: MPJPE of the pose network + the trajectory network's WMPJPE, weight
  ``1 / z`` of the true root (Eq. 1);
* after ``hp.recipe.warmup_epochs`` epochs of the labelled stream alone (VideoPose3D:
  1 epoch for S1, more for smaller subsets), also the unlabelled batch: its pose plus its
  trajectory, projected through the batch's intrinsics with radial and tangential
  distortion (:func:`jpose.objectives.projection.project_to_2d`), against the 2D input of
  the window's centre frame: 2D MPJPE in normalised screen units, weight
  ``hp.recipe.reconstruction_weight`` (1 in the paper);
* with ``hp.recipe.bone_weight`` > 0 (1 in the paper; 0 ablates it), the bone-length
  soft constraint: the mean predicted bone lengths of the unlabelled batch match those
  predicted on the labelled batch (:func:`jpose.objectives.bones.mean_bone_length_gap`,
  averaged over bones).

Labelled and unlabelled windows go through each network in one batch, so batch-norm
statistics are those of the combined batch (VideoPose3D concatenates them too). The 2D
target and the projection must share a joint layout: the semi-supervised term needs
2D in the 3D layout (ground truth, CPN or converted detections).

Predictors: ``pose``, ``trajectory`` and ``camera_pose`` (pose + trajectory: absolute
camera-frame joints, metres).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jpose import metrics as metrics_lib
from jpose.objectives import bones, projection
from jpose.recipes.base import Predictor, Recipe, network_variables
from jpose.recipes.supervised import (labelled_losses, pose_network_spec,
                                      trajectory_network_spec)
from jpose.nets import network

__all__ = ["RECIPE", "networks", "loss", "predictors"]


def networks(hp, meta) -> dict:
    if meta.get("input_layout", meta.get("layout")) != meta.get("layout"):
        raise ValueError(
            f"recipe videopose_semi: the 2D inputs are in {meta['input_layout']!r} but the 3D "
            f"poses in {meta['layout']!r}; the back-projection term compares them joint by "
            "joint, so use 2D in the 3D layout")
    return {"pose": network.build(pose_network_spec(hp, meta)),
            "trajectory": network.build(trajectory_network_spec(hp, meta))}


def _centre_frame(nets, inputs):
    """The 2D keypoints of each window's target frame: ``(B, 1, J, 2)``."""
    net = nets["pose"]
    if net.kind != "temporal":
        return inputs[:, None, :, :2]
    left, _ = net.padding
    return inputs[:, left:left + 1, :, :2]


def _forward(nets, params, batch_stats, name, inputs, step, salt):
    out, stats = nets[name].apply(
        {"params": params[name], "batch_stats": batch_stats[name]}, inputs, train=True,
        rng=jax.random.fold_in(step.rng, salt), bn_momentum=step.bn_momentum)
    return out["pose"], stats


def loss(params, batch_stats, batch, step, *, nets, hp):
    r = hp.recipe
    lab, unl = batch["labelled"], batch["unlabelled"]
    n_lab = lab["inputs"].shape[0]

    def supervised_only(_):
        pose, pose_stats = _forward(nets, params, batch_stats, "pose", lab["inputs"], step, 0)
        traj, traj_stats = _forward(nets, params, batch_stats, "trajectory", lab["inputs"],
                                    step, 1)
        value, m = labelled_losses(pose, traj, lab)
        zero = jnp.zeros((), value.dtype)
        m.update(reconstruction_2d=(zero, zero), bone_gap_mm=(zero, zero))
        return value, {"pose": pose_stats, "trajectory": traj_stats}, m

    def semi_supervised(_):
        both = jnp.concatenate([lab["inputs"], unl["inputs"]], axis=0)
        pose, pose_stats = _forward(nets, params, batch_stats, "pose", both, step, 0)
        traj, traj_stats = _forward(nets, params, batch_stats, "trajectory", both, step, 1)
        value, m = labelled_losses(pose[:n_lab], traj[:n_lab], lab)
        pose_u, traj_u = pose[n_lab:], traj[n_lab:]
        # (B, 1, J, 3) root-relative + (B, 1, 1, 3) root = camera-frame joints.
        points = pose_u + traj_u.reshape(pose_u.shape[:-2] + (1, 3))
        intrinsics = unl["camera"].reshape(unl["camera"].shape[:1] + (1,) * 2 + (9,))
        err, valid = projection.reprojection_error(points, intrinsics,
                                                   _centre_frame(nets, unl["inputs"]))
        weight = unl["weight"].astype(err.dtype)[:, None, None] * valid.astype(err.dtype)
        r_total, r_count = metrics_lib.masked_sum_count(err, weight)
        r_count = r_count.astype(r_total.dtype)
        value = value + float(r.get("reconstruction_weight", 1.0)) * (
            r_total / jnp.maximum(r_count, 1.0))
        gap = bones.mean_bone_length_gap(pose_u, pose[:n_lab], layout=hp.data.layout,
                                         weight_unlabelled=unl["weight"],
                                         weight_labelled=lab["weight"])
        bone_weight = float(r.get("bone_weight", 1.0))
        if bone_weight > 0:
            value = value + bone_weight * jnp.mean(gap)
        m.update(reconstruction_2d=(r_total, r_count),
                 bone_gap_mm=(metrics_lib.to_millimetres(jnp.sum(gap)),
                              jnp.asarray(gap.size, gap.dtype)))
        return value, {"pose": pose_stats, "trajectory": traj_stats}, m

    # Phase 0 is the warm-up (when there is one): a separately compiled step.
    warming_up = int(r.get("warmup_epochs", 1)) > 0 and step.phase == 0
    value, stats, m = supervised_only(None) if warming_up else semi_supervised(None)
    return value, ({**batch_stats, **stats}, m)


def predictors(nets) -> dict:
    def run(name):
        def predict(variables, keypoints):
            return nets[name].predict(network_variables(variables, name), keypoints)
        return predict

    pose, traj = run("pose"), run("trajectory")

    def camera_pose(variables, keypoints):
        return pose(variables, keypoints) + traj(variables, keypoints)

    return {"pose": Predictor(pose, "pose", "pose"),
            "trajectory": Predictor(traj, "trajectory", "trajectory"),
            "camera_pose": Predictor(camera_pose, "pose", "camera_pose")}


def phases(hp) -> tuple[int, ...]:
    """Phase 0: the labelled warm-up; phase 1: joint training."""
    return (int(hp.recipe.get("warmup_epochs", 1)),)


RECIPE = Recipe(name="videopose_semi", networks=networks, loss=loss, predictors=predictors,
                streams=("labelled", "unlabelled"), phases=phases)
