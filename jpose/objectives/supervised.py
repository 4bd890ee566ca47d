"""Supervised 3D losses (VideoPose3D's), returning per-element values.

Each loss returns ``(..., J)`` per-joint values; the caller reduces with explicit masks
(``jpose.metrics.masked_sum_count``), so padded or unlabelled examples are excluded by
weight, not by slicing, and sums add exactly across devices.

Units: poses in metres, so losses are in metres (MPJPE) or dimensionless (weighted).
"""

from __future__ import annotations

import jax.numpy as jnp

from jpose import metrics

__all__ = ["mpjpe_loss", "weighted_mpjpe_loss"]


def mpjpe_loss(pred, target):
    """Per-joint Euclidean error ``(..., J)`` in metres (Protocol #1 as a loss).

    VideoPose3D trains the pose model with the mean of this over joints and batch, on
    root-relative poses.
    """
    return metrics.mpjpe(pred, target)


def weighted_mpjpe_loss(pred, target, *, depth):
    """Per-joint error weighted by inverse depth ``(..., J)`` (VideoPose3D's trajectory loss).

    VideoPose3D weights the trajectory model's error by ``1 / z`` of the true root, so far
    subjects (small in the image) do not dominate: ``w = 1 / depth``.

    Args:
      pred, target: ``(..., J, 3)`` metres (J = 1 for the trajectory model).
      depth: ``(..., J)`` positive depths in metres (the target's z).
    """
    return metrics.mpjpe(pred, target) / depth
