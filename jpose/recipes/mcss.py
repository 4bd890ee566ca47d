"""MCSS: multiview-consistent metric learning of pose embeddings (Mitra et al. CVPR
2020, seed 004), keypoint-input form.

Network ``embedding`` (:mod:`jpose.nets.embedding`, ``hp.model.kind = "embedding"``): a
residual MLP over the 2D keypoints, head G (FC + L2 normalisation, 128-d) and head H
(FC 128 -> 3J, the canonical pose of
:func:`jpose.objectives.metric_learning.canonical_pose`).

Streams (the loss runs every network pass in ONE batch, so batch norm sees them all):

* ``hp.recipe.metric_stream`` (default ``metric``): a multi-view stream (``source =
  "multiview"``, ``views = 2``) of synchronised view pairs of one subject: ``inputs (B,
  V, J_in, C)``, ``subject``, ``sequence_index``, ``frame_index`` ``(B,)`` int32,
  ``weight (B,)``. View 0 is the anchor, view 1 the positive; no 3D is read, so this
  stream may be unlabelled.
* ``hp.recipe.pose_stream`` (default ``pose``): a single-view labelled stream for H:
  ``inputs (B, J_in, C)``, ``poses_3d (B, J, 3)`` (root-relative camera frame, metres),
  ``extrinsics (B, 12)`` (to turn them to the Z-up world before the yaw normalisation),
  ``weight``. The configs use a metric:pose batch ratio of 3:1.

Loss: ``metric_weight * mean_i [D(i, i) + max(0, alpha - D_min(i))]`` (Eq. 1 as a
masked minimum, ``alpha = 0.6``, ``beta = 0.3``, the same subject's frames closer than
``min_frame_gap`` frames in the same sequence are no negatives;
:func:`jpose.objectives.metric_learning.metric_loss`) ``+ regression_weight *`` the L1
error of H's canonical pose (metres, mean over joints and labelled examples).

:data:`REGRESSION_RECIPE` (``recipe.name = "jpose.recipes.mcss:REGRESSION_RECIPE"``) is
the baseline without metric learning: the same network trained by H's loss on the pose
stream alone (it reads no metric stream).

Predictors: ``embedding`` (``(B, T, D)`` unit vectors, output ``"embedding"``) and
``canonical_pose`` (``(B, T, J, 3)`` metres in the canonical frame, output
``"canonical_pose"``: not camera-frame, so the Human3.6M protocol evaluators refuse it;
the ``retrieval`` evaluator takes either).
"""

from __future__ import annotations

import jax.numpy as jnp

from jpose import metrics as metrics_lib
from jpose.nets import network
from jpose.objectives import metric_learning as ml
from jpose.recipes.base import Predictor, Recipe, network_variables
from jpose.recipes.supervised import masked_mean

__all__ = ["RECIPE", "REGRESSION_RECIPE", "networks", "loss", "predictors", "DEFAULTS"]

#: The recipe's hyper-parameters and their defaults (MCSS's alpha and beta).
DEFAULTS = {"metric_stream": "metric", "pose_stream": "pose", "alpha": 0.6, "beta": 0.3,
            "min_frame_gap": 10, "metric_weight": 1.0, "regression_weight": 1.0}


def _hp(hp, key):
    r = hp.get("recipe", {}) or {}
    return r.get(key, DEFAULTS[key])


def networks(hp, meta) -> dict:
    spec = network.with_data_shapes(dict(hp.model), num_joints_in=meta["num_joints_in"],
                                    num_joints_out=meta["num_joints_out"],
                                    in_features=meta["in_features"])
    if spec["kind"] != "embedding":
        raise ValueError(f"model.kind: the mcss recipe needs the 'embedding' network (G and "
                         f"H heads), got {spec['kind']!r}")
    return {"embedding": network.build(spec)}


def _metric_inputs(m):
    x = m["inputs"]
    if x.ndim != 4 or x.shape[1] < 2:
        raise ValueError(f"the mcss metric stream needs view pairs: inputs (B, V >= 2, J, C), "
                         f"got shape {tuple(x.shape)} (use a multiview stream, views = 2)")
    for key in ("subject", "sequence_index", "frame_index"):
        if key not in m:
            raise ValueError(f"the mcss metric stream needs {key!r} (B,) for the negative "
                             "mask; a multiview stream carries it")
    return x[:, 0], x[:, 1]


def _loss(params, batch_stats, batch, step, *, nets, hp, use_metric):
    pose_b = batch[_hp(hp, "pose_stream")]
    pieces = [pose_b["inputs"]]
    if use_metric:
        m = batch[_hp(hp, "metric_stream")]
        anchors, positives = _metric_inputs(m)
        pieces += [anchors, positives]
    inputs = jnp.concatenate(pieces, axis=0) if len(pieces) > 1 else pieces[0]
    out, stats = nets["embedding"].apply(
        {"params": params["embedding"], "batch_stats": batch_stats["embedding"]}, inputs,
        train=True, rng=step.rng, bn_momentum=step.bn_momentum)
    n_pose = pose_b["inputs"].shape[0]
    layout = hp.data.layout
    target = ml.canonical_pose(pose_b["poses_3d"], layout=layout,
                               extrinsics=pose_b["extrinsics"])
    pred = out["pose"][:n_pose]
    r_total, r_count = masked_mean(ml.l1_pose_loss(pred, target), pose_b["weight"])
    m_total, m_count = masked_mean(metrics_lib.mpjpe(pred, target), pose_b["weight"])
    value = float(_hp(hp, "regression_weight")) * r_total / jnp.maximum(r_count, 1.0)
    logged = {"regression_l1": (r_total, r_count),
              "canonical_mpjpe_mm": (metrics_lib.to_millimetres(m_total), m_count)}
    if use_metric:
        b = anchors.shape[0]
        emb = out["embedding"][n_pose:]
        mask = ml.temporal_negative_mask(m["subject"], m["sequence_index"], m["frame_index"],
                                         min_frame_gap=int(_hp(hp, "min_frame_gap")),
                                         weight=m["weight"])
        terms = ml.metric_loss(emb[:b], emb[b:], negative_mask=mask,
                               alpha=float(_hp(hp, "alpha")), beta=float(_hp(hp, "beta")))
        w = m["weight"].astype(emb.dtype)
        count = jnp.sum(w)

        def wsum(x):
            return jnp.sum(w * x.astype(w.dtype))

        value = value + float(_hp(hp, "metric_weight")) * wsum(terms.loss) / jnp.maximum(
            count, 1.0)
        logged.update(metric_loss=(wsum(terms.loss), count),
                      positive_distance=(wsum(terms.positive), count),
                      hinge=(wsum(terms.hinge), count),
                      has_negative=(wsum(terms.has_negative), count))
    return value, ({**batch_stats, "embedding": stats}, logged)


def loss(params, batch_stats, batch, step, *, nets, hp):
    use_metric = float(_hp(hp, "metric_weight")) > 0
    return _loss(params, batch_stats, batch, step, nets=nets, hp=hp, use_metric=use_metric)


def regression_loss(params, batch_stats, batch, step, *, nets, hp):
    """The baseline: H's canonical-pose L1 on the pose stream alone."""
    return _loss(params, batch_stats, batch, step, nets=nets, hp=hp, use_metric=False)


def predictors(nets) -> dict:
    net = nets["embedding"]

    def embedding(variables, keypoints):
        out, _ = net.apply(network_variables(variables, "embedding"), keypoints, train=False)
        return out["embedding"]

    def canonical_pose(variables, keypoints):
        return net.predict(network_variables(variables, "embedding"), keypoints)

    return {"embedding": Predictor(embedding, "embedding", "embedding"),
            "canonical_pose": Predictor(canonical_pose, "embedding", "canonical_pose")}


RECIPE = Recipe(name="mcss", networks=networks, loss=loss, predictors=predictors,
                streams=("metric", "pose"))
REGRESSION_RECIPE = Recipe(name="mcss_regression", networks=networks, loss=regression_loss,
                           predictors=predictors, streams=("pose",))
