"""Li et al. ICCV 2019 stage C: fine-tuning on completed pseudo-labels (seed 000 §3.3).

``L = S + S_w + gamma U`` over two streams, the network started from the stage-A
baseline (``config.init_from``):

* ``labelled`` -- the labelled set, ``S = ||p_hat - p||^2`` per joint (the ground truth
  is fully trusted: ``W = 1``);
* ``pseudo`` -- the unlabelled videos with their completed poses
  (``source = "pseudo_labels"``): ``S_w = W(s) ||p_hat - p||^2`` with ``W(s) = 1 if s >
  tau else s`` (:func:`jpose.objectives.pseudo_labels.weighted_fidelity`; ``fidelity =
  "plain"`` sets ``W = 1``: the paper's "optimised supervision" row), and ``U = (b_hat -
  b)^2`` over the 11 length-invariant bones against the video's median bone lengths
  (:func:`jpose.objectives.bones.bone_length_consistency`), weight ``gamma``.

Each term is a mean over its joints (or bones) and examples; poses in metres. The
network is any lifter (``hp.model``; the sample uses the single-frame form).
Predictors: ``pose``.
"""

from __future__ import annotations

import jax.numpy as jnp

from jpose import metrics as metrics_lib
from jpose.nets import network
from jpose.objectives import bones, pseudo_labels
from jpose.recipes.base import Recipe
from jpose.recipes.supervised import masked_mean, pose_network_spec, predictors

__all__ = ["RECIPE", "networks", "loss"]


def networks(hp, meta) -> dict:
    return {"pose": network.build(pose_network_spec(hp, meta))}


def loss(params, batch_stats, batch, step, *, nets, hp):
    r = hp.recipe
    lab, pseudo = batch["labelled"], batch["pseudo"]
    n_lab = lab["inputs"].shape[0]
    both = jnp.concatenate([lab["inputs"], pseudo["inputs"]], axis=0)
    out, stats = nets["pose"].apply(
        {"params": params["pose"], "batch_stats": batch_stats["pose"]}, both, train=True,
        rng=step.rng, bn_momentum=step.bn_momentum)
    pred_l, pred_u = out["pose"][:n_lab], out["pose"][n_lab:]
    diff = pred_l - lab["poses_3d"]
    s_total, s_count = masked_mean(jnp.sum(diff * diff, axis=-1), lab["weight"])
    scores = pseudo["confidence"]
    if r.get("fidelity", "weighted") == "plain":
        scores = jnp.ones_like(scores)
    per_joint = pseudo_labels.weighted_fidelity(pred_u, pseudo["poses_3d"], scores,
                                                tau=float(r.tau))
    w_total, w_count = masked_mean(per_joint, pseudo["weight"])
    target = pseudo["bone_lengths"].reshape(
        pseudo["bone_lengths"].shape[:1] + (1,) * (pred_u.ndim - 3)
        + pseudo["bone_lengths"].shape[1:])
    per_bone = bones.bone_length_consistency(pred_u, target, layout=hp.data.layout)
    u_total, u_count = masked_mean(per_bone, pseudo["weight"])
    value = (s_total / jnp.maximum(s_count, 1.0) + w_total / jnp.maximum(w_count, 1.0)
             + float(r.get("gamma", 0.0)) * u_total / jnp.maximum(u_count, 1.0))
    mpjpe = metrics_lib.mpjpe(pred_l, lab["poses_3d"])
    m_total, m_count = masked_mean(mpjpe, lab["weight"])
    return value, ({**batch_stats, "pose": stats}, {
        "mpjpe_mm": (metrics_lib.to_millimetres(m_total), m_count),
        "fidelity": (s_total, s_count), "weighted_fidelity": (w_total, w_count),
        "bone_consistency": (u_total, u_count)})


RECIPE = Recipe(name="li_boosting", networks=networks, loss=loss, predictors=predictors,
                streams=("labelled", "pseudo"))
