"""Pseudo-label fine-tuning terms of Li et al. ICCV 2019 (seed 000 §3.3, Eq. 4).

``S_w = sum_i sum_j W(s_ij) ||p_hat_ij - p_ij||^2`` with ``W(s) = 1 if s > tau else s``:
joints the network was confident about (and that trajectory completion therefore kept)
count fully, the completed ones by their confidence. Poses in metres, so ``S_w`` is in
square metres per joint; the bone term ``U`` is
:func:`jpose.objectives.bones.bone_length_consistency`.
"""

from __future__ import annotations

import jax.numpy as jnp

__all__ = ["confidence_weight", "weighted_fidelity"]


def confidence_weight(scores, *, tau: float):
    """``W(s)`` per joint: 1 where ``s > tau``, else ``s`` (scores in [0, 1])."""
    scores = jnp.asarray(scores)
    return jnp.where(scores > tau, jnp.ones_like(scores), scores)


def weighted_fidelity(pred, pseudo, scores, *, tau: float):
    """Per-joint ``W(s) ||pred - pseudo||^2`` ``(..., J)`` (square metres).

    Args:
      pred, pseudo: ``(..., J, 3)`` the network's poses and the completed pseudo-labels.
      scores: ``(..., J)`` per-joint confidences of the predictions the pseudo-labels were
        completed from.
      tau: the confidence threshold of the completion (0.7 Human3.6M, 0.5 MPI-INF-3DHP).
    """
    diff = jnp.asarray(pred) - jnp.asarray(pseudo)
    return confidence_weight(scores, tau=tau) * jnp.sum(diff * diff, axis=-1)
