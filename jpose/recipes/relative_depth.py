"""Relative-depth weak supervision: Ronchi et al., BMVC 2018, "It's all Relative"
(seed 003 §3.2), keypoint-input form: 2D keypoints in, root-relative 3D out.

Network: ``pose`` (``hp.model``), 2D keypoints -> root-relative 3D in metres, camera
frame. For the scaled-orthographic projection (``hp.recipe.projection =
"orthographic"``) the scale ``s`` (screen units per metre) comes from

* ``hp.recipe.scale = "head"``: the network's ``scale`` head (the MLP lifter's softplus
  head, :mod:`jpose.nets.mlp`; ``"scale"`` is added to ``model.overrides.heads``), or
* ``"least_squares"``: the magnitude of the closed-form best scale of the prediction
  (:func:`jpose.objectives.ordinal.least_squares_scale`; any network kind; no extra
  parameters). Better conditioned: the fit error is then at most the 2D pose's size, and
  the scale cannot lag the pose's (arbitrary) size; on the sample it trains far better
  than the head (README).

``"perspective"`` uses the stream's known intrinsics (``camera``: focal and principal
point in screen units; distortion ignored) with a least-squares translation.

Stream ``hp.recipe.stream`` (default ``labelled``) gives ``inputs`` and ``weight`` and,
**only to make relative-depth labels**, ``poses_3d``: each step draws pairs ``(j, k)``
from the batch's 3D with ``fold_in(step.rng, 1)`` (:func:`jpose.datasets.depth_pairs.
make_labels_jax`: ``hp.recipe.pairs = "random"`` with ``num_pairs`` per example (the
paper: 1) or ``"all"`` 136 pairs of 17 joints; ``tolerance`` 0.1 m; annotator noise with
``noise``). The 3D is **never** a regression target: the loss depends on it only through
the labels ``r = sign(z_j - z_k)`` (so moving the 3D without changing any label leaves
the loss unchanged; tested). On LSP-style data the labels would be read instead.

Loss (the means over the batch's weighted examples, pairs, joints and bones):

``L = mean(L_root) + alpha mean(L_rel) + beta mean(L_proj) + gamma mean(L_skel)``

with ``L_root = ||p_root||^2``, ``L_rel`` the normalised logistic ranking loss
(``hp.recipe.lam``), ``L_proj`` the squared 2D error on the visible joints divided by
the 2D pose's size (:func:`jpose.objectives.ordinal.keypoint_spread`: dimensionless;
every joint is visible unless ``hp.recipe.all_visible`` is False, then ``confidence >
0``), and
``L_skel`` the bone-length *ratio* gap to ``hp.recipe.reference_bone_lengths`` (a fixed
reference skeleton, metres, in :attr:`jpose.skeleton.Skeleton.bones` order of
``hp.data.layout``). ``alpha = 0`` is the depth-ambiguous baseline (projection +
skeleton only). Sign conventions: :mod:`jpose.objectives.ordinal` (``r = +1``: ``j``
farther, z forward).

Predictor: ``pose``. Logged: the four terms, ``train_wrong_pct`` (the step's pairs
predicted wrong, %), ``scale`` and ``mean_bone_mm`` (the overall size is not fixed by
these terms: compare poses up to scale, P-MPJPE).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jpose import metrics as metrics_lib
from jpose.datasets import depth_pairs
from jpose.nets import network
from jpose.objectives import bones, ordinal
from jpose.recipes.base import Recipe
from jpose.recipes.supervised import pose_network_spec, predictors as _pose_predictors

__all__ = ["RECIPE", "networks", "loss", "predictors", "PROJECTIONS", "SCALES"]

PROJECTIONS = ("orthographic", "perspective")
SCALES = ("head", "least_squares")
# Salt of the label key: fold_in(step.rng, _LABEL_SALT) (step.rng itself is dropout's).
_LABEL_SALT = 1


def _r(hp):
    return hp.get("recipe", {}) or {}


def _uses_head(hp) -> bool:
    r = _r(hp)
    return (r.get("projection", "orthographic") == "orthographic"
            and r.get("scale", "head") == "head")


def networks(hp, meta) -> dict:
    r = _r(hp)
    if r.get("projection", "orthographic") not in PROJECTIONS:
        raise ValueError(f"recipe.projection: {r.get('projection')!r}; expected one of "
                         f"{PROJECTIONS}")
    if r.get("scale", "head") not in SCALES:
        raise ValueError(f"recipe.scale: {r.get('scale')!r}; expected one of {SCALES}")
    if meta.get("input_layout", meta.get("layout")) != meta.get("layout"):
        raise ValueError("recipe relative_depth: the projection term compares the pose with "
                         "its 2D input joint by joint, so use 2D in the 3D layout")
    spec = pose_network_spec(hp, meta)
    if _uses_head(hp):
        if spec["kind"] != "mlp":
            raise ValueError(f"recipe.scale='head' needs a network with a scale head (model."
                             f"kind='mlp'), not {spec['kind']!r}; use recipe.scale="
                             "'least_squares'")
        heads = tuple(spec["overrides"].get("heads", ()) or ())
        if "scale" not in heads:
            spec["overrides"] = {**spec["overrides"], "heads": heads + ("scale",)}
    return {"pose": network.build(spec)}


def _target_2d(net, inputs):
    """The 2D keypoints of each example's target frame, shaped like the pose's ``(..., J,
    2)``: single frames ``(B, J, 2)``, windows ``(B, 1, J, 2)`` (the centre frame)."""
    if net.kind != "temporal":
        return inputs[..., :2]
    left, _ = net.padding
    return inputs[:, left:left + 1, :, :2]


def _mean(values, weight):
    total, count = metrics_lib.masked_sum_count(values, weight)
    count = count.astype(total.dtype)
    return total / jnp.maximum(count, 1.0), (total, count)


def loss(params, batch_stats, batch, step, *, nets, hp):
    r = _r(hp)
    b = batch[r.get("stream", "labelled")]
    net = nets["pose"]
    out, pose_stats = net.apply({"params": params["pose"], "batch_stats": batch_stats["pose"]},
                                b["inputs"], train=True, rng=step.rng,
                                bn_momentum=step.bn_momentum)
    pose = out["pose"]  # (B, J, 3) single frames, (B, 1, J, 3) windows
    dtype = pose.dtype
    lead = pose.shape[:-2]
    w_ex = b["weight"].astype(dtype).reshape(b["weight"].shape + (1,) * (len(lead) - 1))
    w_ex = jnp.broadcast_to(w_ex, lead)
    u = _target_2d(net, b["inputs"])
    if "confidence" in b and not r.get("all_visible", True):
        conf = b["confidence"].reshape(lead + (pose.shape[-2],))
        visible = (conf > 0).astype(dtype)
    else:
        visible = jnp.ones(pose.shape[:-1], dtype)
    w_joint = visible * w_ex[..., None]

    # Labels from the 3D (the only use of poses_3d): data, no gradient.
    pairs, labels = depth_pairs.make_labels_jax(
        jax.random.fold_in(step.rng, _LABEL_SALT), b["poses_3d"].reshape(pose.shape),
        mode=r.get("pairs", "random"), num_pairs=int(r.get("num_pairs", 1)),
        tolerance=float(r.get("tolerance", depth_pairs.TOLERANCE_M)),
        noise=bool(r.get("noise", False)), flip_max=float(r.get("flip_max", 0.5)),
        flip_scale=float(r.get("flip_scale", 0.1)))
    w_pair = jnp.broadcast_to(w_ex[..., None], labels.shape)
    z = pose[..., 2]
    rel = ordinal.relative_depth_loss(z, pairs, labels, w_pair, lam=float(r.get("lam", 1.0)))
    root = ordinal.root_loss(pose)

    if r.get("projection", "orthographic") == "perspective":
        cam = b["camera"].reshape(lead + (9,))
        proj, valid = ordinal.perspective_loss(pose, u, w_joint, cam[..., 0:2], cam[..., 2:4])
        w_proj = w_joint * valid.astype(dtype)
        scale = jnp.zeros(lead, dtype)
    else:
        if _uses_head(hp):
            scale = out["scale"].reshape(lead)
        else:
            # |s|: a negative best scale is the pose turned 180 degrees about the optical
            # axis (upside down in the camera frame); |s| makes the fit push it upright.
            scale = jnp.abs(ordinal.least_squares_scale(pose, u, w_joint))
        proj = ordinal.scaled_orthographic_loss(pose, u, w_joint, scale=scale)
        w_proj = w_joint
    # Relative to the 2D pose's size: dimensionless, one beta for any person size.
    proj = proj / ordinal.keypoint_spread(u, w_joint)[..., None]
    reference = r.get("reference_bone_lengths", None)
    if not reference:
        raise ValueError("recipe.reference_bone_lengths: the relative_depth recipe needs the "
                         "reference skeleton's bone lengths (metres, the layout's bone order)")
    skel = ordinal.bone_ratio_loss(pose, tuple(float(x) for x in reference),
                                   layout=hp.data.layout)

    m_root, root_sc = _mean(root, w_ex)
    m_rel, rel_sc = _mean(rel, w_pair)
    m_proj, proj_sc = _mean(proj, w_proj)
    m_skel, skel_sc = _mean(skel, jnp.broadcast_to(w_ex[..., None], skel.shape))
    alpha = float(r.get("alpha", 1.0))
    value = (float(r.get("root_weight", 1.0)) * m_root + alpha * m_rel
             + float(r.get("beta", 1.0)) * m_proj + float(r.get("gamma", 1.0)) * m_skel)

    wrong, scored = ordinal.relative_depth_errors(z, pairs, labels)
    scored_w = scored.astype(dtype) * w_pair
    wrong_total, wrong_count = metrics_lib.masked_sum_count(wrong.astype(dtype), scored_w)
    lengths = jnp.mean(bones.bone_lengths(pose, layout=hp.data.layout), axis=-1)
    metrics = {"l_root": root_sc, "l_rel": rel_sc, "l_proj": proj_sc, "l_skel": skel_sc,
               "train_wrong_pct": (100.0 * wrong_total, wrong_count),
               "scale": metrics_lib.masked_sum_count(scale, w_ex),
               "mean_bone_mm": metrics_lib.masked_sum_count(
                   metrics_lib.to_millimetres(lengths), w_ex)}
    return value, ({**batch_stats, "pose": pose_stats}, metrics)


def predictors(nets) -> dict:
    return {"pose": _pose_predictors(nets)["pose"]}


RECIPE = Recipe(name="relative_depth", networks=networks, loss=loss, predictors=predictors,
                streams=("labelled",))
