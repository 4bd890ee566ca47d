"""Fully supervised lifting: VideoPose3D (Pavllo et al. CVPR 2019) and Martinez et al.

Networks (``hp.model`` is the pose network's spec ``{kind, variant, overrides}``):

* ``pose``: 2D keypoints -> root-relative 3D pose, trained with MPJPE (Protocol #1 as a
  loss, over all joints including the zero root, as VideoPose3D's ``run.py``);
* ``trajectory`` (``hp.recipe.trajectory = True``): a *separate* network of the same
  architecture with one output joint and no shared weights (VideoPose3D ``model_traj``,
  seed 001 §4; thesis §3.4.1), predicting the root's camera-frame position, trained with
  the depth-weighted MPJPE ``mean(1 / z * ||p - p_gt||)`` (seed 001 Eq. 1, WMPJPE).

Reads one stream, ``hp.recipe.stream`` (default ``labelled``): ``inputs``, ``poses_3d``,
``trajectory``, ``weight``. Predictors: ``pose`` and, with the trajectory network,
``trajectory``. Units: metres in, the logged ``mpjpe_mm`` in millimetres.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jpose import metrics as metrics_lib
from jpose.nets import network
from jpose.objectives import supervised as objectives
from jpose.recipes.base import Predictor, Recipe, network_variables

__all__ = ["RECIPE", "networks", "loss", "predictors", "pose_network_spec",
           "trajectory_network_spec", "masked_mean", "labelled_losses", "supervised_terms"]


def pose_network_spec(hp, meta) -> dict:
    return network.with_data_shapes(
        dict(hp.model), num_joints_in=meta["num_joints_in"],
        num_joints_out=meta["num_joints_out"], in_features=meta["in_features"])


def trajectory_network_spec(hp, meta) -> dict:
    """The pose network's architecture with one output joint (the root position)."""
    spec = dict(hp.model)
    spec["overrides"] = {**dict(spec.get("overrides", {}) or {}), "num_joints_out": 1}
    return network.with_data_shapes(
        spec, num_joints_in=meta["num_joints_in"], num_joints_out=1,
        in_features=meta["in_features"])


def _recipe_hp(hp):
    return hp.get("recipe", {}) or {}


def networks(hp, meta) -> dict:
    nets = {"pose": network.build(pose_network_spec(hp, meta))}
    if _recipe_hp(hp).get("trajectory", False):
        nets["trajectory"] = network.build(trajectory_network_spec(hp, meta))
    return nets


def masked_mean(per_element, weight):
    """``(sum, count)`` of ``per_element`` (B, ...) over examples with ``weight`` (B,)."""
    w = weight.astype(per_element.dtype)
    mask = jnp.broadcast_to(w.reshape(w.shape + (1,) * (per_element.ndim - 1)),
                            per_element.shape)
    total, count = metrics_lib.masked_sum_count(per_element, mask)
    return total, count.astype(total.dtype)


def labelled_losses(pose, trajectory, batch):
    """The pose MPJPE and (``trajectory`` not None) the trajectory WMPJPE of predictions
    on a labelled batch: ``(loss, metrics)``.

    ``pose`` is shaped like ``batch["poses_3d"]``; ``trajectory`` holds one "joint" per
    example (``(B, [1,] 1, 3)``), the target ``batch["trajectory"]`` weighted by ``1 / z``.
    """
    weight = batch["weight"]
    total, count = masked_mean(objectives.mpjpe_loss(pose, batch["poses_3d"]), weight)
    loss = total / jnp.maximum(count, 1.0)
    metrics = {"mpjpe_mm": (metrics_lib.to_millimetres(total), count)}
    if trajectory is not None:
        target = batch["trajectory"][..., None, :]  # one "joint": (B, [1,] 1, 3)
        per_root = objectives.weighted_mpjpe_loss(trajectory.reshape(target.shape), target,
                                                  depth=target[..., 2])
        t_total, t_count = masked_mean(per_root, weight)
        loss = loss + t_total / jnp.maximum(t_count, 1.0)
        metrics["trajectory_wmpjpe"] = (t_total, t_count)
    return loss, metrics


def supervised_terms(params, batch_stats, batch, step, *, nets):
    """The pose (and trajectory) losses on one labelled batch.

    Returns ``(loss, new batch_stats for the networks used, metrics)``; shared with the
    recipes that add terms on other streams.
    """
    outputs, pose_stats = nets["pose"].apply(
        {"params": params["pose"], "batch_stats": batch_stats["pose"]}, batch["inputs"],
        train=True, rng=step.rng, bn_momentum=step.bn_momentum)
    new_stats = {"pose": pose_stats}
    trajectory = None
    if "trajectory" in nets:
        traj_out, new_stats["trajectory"] = nets["trajectory"].apply(
            {"params": params["trajectory"], "batch_stats": batch_stats["trajectory"]},
            batch["inputs"], train=True, rng=jax.random.fold_in(step.rng, 1),
            bn_momentum=step.bn_momentum)  # its own dropout masks
        trajectory = traj_out["pose"]
    loss, metrics = labelled_losses(outputs["pose"], trajectory, batch)
    return loss, new_stats, metrics


def loss(params, batch_stats, batch, step, *, nets, hp):
    stream = _recipe_hp(hp).get("stream", "labelled")
    value, stats, metrics = supervised_terms(params, batch_stats, batch[stream], step, nets=nets)
    return value, ({**batch_stats, **stats}, metrics)


def _predict(nets, name):
    def predict(variables, keypoints):
        return nets[name].predict(network_variables(variables, name), keypoints)

    return predict


def predictors(nets) -> dict:
    out = {"pose": Predictor(_predict(nets, "pose"), "pose", "pose")}
    if "trajectory" in nets:
        out["trajectory"] = Predictor(_predict(nets, "trajectory"), "trajectory", "trajectory")
    return out


RECIPE = Recipe(name="supervised", networks=networks, loss=loss, predictors=predictors,
                streams=("labelled",))
