"""Bone-length terms on predicted poses (metres), per-element.

* :func:`mean_bone_length_gap` -- VideoPose3D's semi-supervised soft constraint (seed
  001 §4, ``run.py``): the batch-mean length of every bone predicted on the unlabelled
  batch should match the batch-mean predicted on the labelled batch,
  ``|mean_b(len_unlab) - mean_b(len_lab)|`` per bone (VideoPose3D averages it over bones).
* :func:`bone_length_consistency` -- Li et al. ICCV 2019 Eq. 5's ``U``: the squared gap
  between each predicted bone length and the video's (pseudo-label) length,
  ``(b_hat - b)^2`` per bone, over the 11 length-invariant bones by default.

Bones are ``(child, parent)`` index pairs of a :mod:`jpose.skeleton` layout.
"""

from __future__ import annotations

import jax.numpy as jnp

from jpose import metrics, skeleton

__all__ = ["bone_lengths", "mean_bone_length_gap", "bone_length_consistency"]


def _bones(layout: str, subset: str | None):
    skel = skeleton.get(layout)
    bones = skel.bones if subset is None else skel.bone_subset(subset)
    return (jnp.asarray([c for c, _ in bones], jnp.int32),
            jnp.asarray([p for _, p in bones], jnp.int32))


def bone_lengths(poses, *, layout: str, subset: str | None = None):
    """``(..., num_bones)`` lengths of ``poses`` ``(..., J, 3)`` (all tree edges, or the
    named ``subset`` such as ``"length_invariant"``), with a finite gradient everywhere."""
    child, parent = _bones(layout, subset)
    return metrics.mpjpe(poses[..., child, :], poses[..., parent, :])


def _weighted_mean(lengths, weight):
    """Mean over the leading (example) axis, examples weighted by ``weight`` (B,);
    frames within an example count equally."""
    w = weight.astype(lengths.dtype).reshape(weight.shape + (1,) * (lengths.ndim - 1))
    w = jnp.broadcast_to(w, lengths.shape)
    axes = tuple(range(lengths.ndim - 1))
    return jnp.sum(lengths * w, axis=axes) / jnp.maximum(jnp.sum(w, axis=axes), 1e-12)


def mean_bone_length_gap(pred_unlabelled, pred_labelled, *, layout: str, weight_unlabelled,
                         weight_labelled, subset: str | None = None):
    """Per-bone ``|mean len(pred_unlabelled) - mean len(pred_labelled)|`` ``(num_bones,)``,
    metres; the means run over examples (weighted, 0 for padding) and frames."""
    lu = _weighted_mean(bone_lengths(pred_unlabelled, layout=layout, subset=subset),
                        weight_unlabelled)
    ll = _weighted_mean(bone_lengths(pred_labelled, layout=layout, subset=subset),
                        weight_labelled)
    return jnp.abs(lu - ll)


def bone_length_consistency(poses, target_lengths, *, layout: str,
                            subset: str | None = "length_invariant"):
    """Li et al.'s ``U`` per bone: ``(len(poses) - target_lengths)^2`` ``(..., K)``,
    square metres; ``target_lengths`` ``(..., K)`` (the video's bone lengths)."""
    lengths = bone_lengths(poses, layout=layout, subset=subset)
    return (lengths - jnp.asarray(target_lengths, lengths.dtype)) ** 2
