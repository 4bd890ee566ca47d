r"""Consistent factorization network (CFN; Yang Li, thesis 2020, ch. 4), self-supervised.

No 3D labels: one network (``pose``, kind ``factorization``,
:mod:`jpose.nets.factorization`) factorises each view's normalised 2D pose into a camera
rotation ``R = expm([omega]_x)`` and a canonical shape ``Y`` decoded from the last
dictionary level's code, and is trained on a **multi-view** stream (``hp.recipe.stream``,
default ``views``; ``streams.views = {"source": "multiview", "views": 2, ...}``) with

    L = reprojection_weight * mean_{b,v,j} ||w_{bvj} - (Y_bv R_bv^T)_{j,xy}||^2
        + consistency_weight * mean_{b,(u<v),j} ||Y_bu/s_bu - Y_bv/s_bv||^2

(Eq. 4.3, 4.4 and 4.8; :mod:`jpose.objectives.factorization`): the orthographic
re-projection of every view and the cross-view consistency of the canonical shapes of the
views of one instant (all pairs of the ``V`` views; compared after RMS normalisation,
since each view carries its own 2D scale). Examples are weighted by the stream's
``weight`` (0 for padding). ``consistency_weight = 0`` is the thesis's "+dictionary"
ablation; with the ``direct`` decoder it is the baseline.

Batch contract (single-frame nets): ``inputs (B, V, J_in, C)`` normalised screen
coordinates, ``weight (B,)``; ``poses_3d (B, V, J, 3)`` is read only for the logged
``n_mpjpe_mm`` (scale-aligned, no gradient). All views pass through the network as one
batch (batch-norm statistics over all of them).

Dictionary: ``hp.recipe.dictionary_path`` (an ``.npz`` with ``dictionary_0, ...``: from
``launch/learn_dictionary.py`` -- NRSfM -- or ``launch/pretrain_dictionary.py`` --
NRSfM or Deep-NRSfM on the config's training 2D) replaces the random start at
initialisation; fine-tune it with its own learning rate through
``optimizer.param_groups.dictionary = {"pattern": "/dictionary/", "lr_mult": 0.1}``
(thesis: 1e-4 for the dictionary, 1e-3 for the backbone).

Predictor ``pose``: root-relative camera-frame 3D ``(Y R^T)`` times the network's
``output_scale`` prior (metres per normalised unit). Orthographic factorisation has no
scale, so report **N-MPJPE** (the MPJPE after restoring each pose's scale to the ground
truth by least squares, ``jpose.metrics.n_mpjpe``; the ``h36m_protocols`` evaluator's
``n_mpjpe_mm``) and **P-MPJPE** (Protocol #2); Protocol #1 depends on the prior.
"""

from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp

from jpose import metrics as metrics_lib
from jpose.nets import factorization as cfn
from jpose.nets import network
from jpose.objectives import factorization as objectives
from jpose.recipes.base import Predictor, Recipe, init_networks, network_variables

__all__ = ["RECIPE", "networks", "init", "loss", "predictors", "view_terms"]


def _r(hp):
    return hp.get("recipe", {}) or {}


def networks(hp, meta) -> dict:
    if meta.get("input_layout", meta.get("layout")) != meta.get("layout"):
        raise ValueError(
            f"recipe factorization: the 2D inputs are in {meta['input_layout']!r} but the "
            f"3D poses in {meta['layout']!r}; the re-projection compares them joint by "
            "joint, so use 2D in the 3D layout")
    spec = network.with_data_shapes(
        dict(hp.model), num_joints_in=meta["num_joints_in"],
        num_joints_out=meta["num_joints_out"], in_features=meta["in_features"])
    net = network.build(spec)
    if net.kind != "factorization":
        raise ValueError(f"model.kind: the factorization recipe needs a 'factorization' "
                         f"network, got {net.kind!r}")
    return {"pose": net}


def init(rng, nets, hp) -> dict:
    """:func:`jpose.recipes.base.init_networks`, then the dictionary from
    ``hp.recipe.dictionary_path`` (if set and the decoder has one)."""
    variables = init_networks(rng, nets, hp)
    path = str(_r(hp).get("dictionary_path", "") or "")
    if path and nets["pose"].config.decoder == "dictionary":
        params = dict(variables["params"])
        params["pose"] = cfn.with_dictionary(params["pose"], cfn.load_dictionary(path))
        variables = {**variables, "params": params}
    return variables


def _masked(values, weight):
    """``(sum, count)`` of ``values`` ``(B, ...)`` over examples weighted ``(B,)``."""
    w = weight.astype(values.dtype).reshape(weight.shape + (1,) * (values.ndim - 1))
    total, count = metrics_lib.masked_sum_count(values, jnp.broadcast_to(w, values.shape))
    return total, count.astype(total.dtype)


def view_terms(pose, canonical, keypoints_2d, weight):
    """The per-example terms of one multi-view batch as ``(sum, count)`` pairs.

    Args:
      pose, canonical: ``(B, V, J, 3)`` the network's camera-frame and canonical shapes.
      keypoints_2d: ``(B, V, J, 2)`` normalised 2D inputs.
      weight: ``(B,)`` example weights.

    Returns:
      ``{"reprojection": (sum, count), "consistency": (sum, count)}`` over
      ``(B, V, J)`` and ``(B, pairs, J)`` elements (``consistency`` is ``(0, 0)`` with one
      view).
    """
    reproj = objectives.orthographic_reprojection(pose, keypoints_2d)  # (B, V, J)
    out = {"reprojection": _masked(reproj, weight)}
    pairs = list(itertools.combinations(range(pose.shape[1]), 2))
    if pairs:
        a = jnp.stack([canonical[:, i] for i, _ in pairs], axis=1)
        b = jnp.stack([canonical[:, j] for _, j in pairs], axis=1)
        out["consistency"] = _masked(objectives.cross_view_consistency(a, b), weight)
    else:
        zero = jnp.zeros((), reproj.dtype)
        out["consistency"] = (zero, zero)
    return out


def loss(params, batch_stats, batch, step, *, nets, hp):
    r = _r(hp)
    b = batch[r.get("stream", "views")]
    net = nets["pose"]
    inputs = b["inputs"]
    if inputs.ndim != 4:
        raise ValueError(f"recipe factorization: expected multi-view single-frame inputs "
                         f"(B, V, J_in, C), got {inputs.shape}")
    nb, nv = inputs.shape[:2]
    out, stats = net.apply(
        {"params": params["pose"], "batch_stats": batch_stats["pose"]},
        inputs.reshape((nb * nv,) + inputs.shape[2:]), train=True, rng=step.rng,
        bn_momentum=step.bn_momentum)
    j = net.num_joints_out
    pose = out["pose"].reshape(nb, nv, j, 3)
    canonical = out["canonical"].reshape(nb, nv, j, 3)
    w2d, _ = cfn.normalise_keypoints(inputs, root_index=net.config.root_index)
    terms = view_terms(pose, canonical, w2d, b["weight"])
    (r_sum, r_cnt), (c_sum, c_cnt) = terms["reprojection"], terms["consistency"]
    value = (float(r.get("reprojection_weight", 1.0)) * r_sum / jnp.maximum(r_cnt, 1.0)
             + float(r.get("consistency_weight", 1.0)) * c_sum / jnp.maximum(c_cnt, 1.0))
    metrics = dict(terms)
    if "poses_3d" in b:  # logged only: scale-aligned error against the ground truth
        target = b["poses_3d"]
        root = net.config.root_index
        target = target - target[..., root:root + 1, :]
        err = metrics_lib.n_mpjpe(jax.lax.stop_gradient(pose), target)
        total, count = _masked(err, b["weight"])
        metrics["n_mpjpe_mm"] = (metrics_lib.to_millimetres(total), count)
    return value, ({**batch_stats, "pose": stats}, metrics)


def predictors(nets) -> dict:
    def pose(variables, keypoints):
        return nets["pose"].predict(network_variables(variables, "pose"), keypoints)

    return {"pose": Predictor(pose, "pose", "pose")}


RECIPE = Recipe(name="factorization", networks=networks, loss=loss, predictors=predictors,
                streams=("views",), init=init)
