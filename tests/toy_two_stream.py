r"""A two-stream toy recipe and its config, for the training system's own tests.

The pose network learns from a labelled stream (MPJPE) and an unlabelled one: the mean
bone lengths of its predictions on the unlabelled batch are pulled towards those on the
labelled batch (the shape of VideoPose3D's bone-length term), so both streams' batches
reach the gradient. Run it as a user would::

  python launch/train.py --config=tests/toy_two_stream.py --workdir=/tmp/toy
"""

import jax.numpy as jnp

from jpose import skeleton
from jpose.recipes import Recipe, supervised
from launch.configs import common


def _bone_lengths(poses, layout: str):
    bones = skeleton.get(layout).bones
    child = jnp.asarray([c for c, _ in bones])
    parent = jnp.asarray([p for _, p in bones])
    return jnp.linalg.norm(poses[..., child, :] - poses[..., parent, :], axis=-1)


def loss(params, batch_stats, batch, step, *, nets, hp):
    sup, stats, metrics = supervised.supervised_terms(params, batch_stats, batch["labelled"],
                                                      step, nets=nets)
    out, stats_u = nets["pose"].apply(
        {"params": params["pose"], "batch_stats": stats["pose"]}, batch["unlabelled"]["inputs"],
        train=True, rng=step.rng, bn_momentum=step.bn_momentum)
    layout = hp.data.layout
    lab = _bone_lengths(batch["labelled"]["poses_3d"], layout).mean(axis=tuple(range(2)))
    unl = _bone_lengths(out["pose"], layout).mean(axis=tuple(range(2)))
    bone = jnp.mean((lab - unl) ** 2)
    metrics["bone"] = (bone, jnp.float32(1.0))
    return sup + hp.recipe.bone_weight * bone, ({"pose": stats_u}, metrics)


RECIPE = Recipe(name="toy_two_stream", networks=supervised.networks, loss=loss,
                predictors=supervised.predictors, streams=("labelled", "unlabelled"))


def get_config(arg: str = ""):
    del arg
    c = common.apply_tiny(common.base_config())
    c.recipe = {"name": "tests.toy_two_stream:RECIPE", "stream": "labelled",
                "trajectory": False, "bone_weight": 0.1}
    c.data.protocol = "subjects"
    c.data.labelled_subjects = ("S1",)
    c.streams = {"labelled": {"split": "labelled"},
                 "unlabelled": {"split": "unlabelled", "global_batch_size": 4}}
    c.model.variant = "tiny_9f"
    return c
