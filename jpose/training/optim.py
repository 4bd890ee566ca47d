"""Optimisers and schedules of the works jpose reimplements (optax).

* ``amsgrad_epoch_decay`` -- VideoPose3D: AMSGrad (PyTorch ``Adam(amsgrad=True)``), the
  learning rate multiplied by ``lr_decay`` (0.95) after every epoch.
* ``adam_steps`` -- Adam with a piecewise-constant schedule (learning rate times
  ``factor`` at given steps), as Martinez et al. and Li et al. use.
* optional clipping by global gradient norm.

Schedules are functions of the step; epochs are ``step // steps_per_epoch``, so a resumed
run recomputes them from the restored step alone.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax.numpy as jnp
import optax

__all__ = ["learning_rate_schedule", "bn_momentum_schedule", "make_optimizer"]


def learning_rate_schedule(cfg: Mapping[str, Any], steps_per_epoch: int) -> optax.Schedule:
    """Learning rate as a function of the step, from an optimiser config.

    Keys: ``name`` (``amsgrad_epoch_decay`` | ``adam_steps``), ``learning_rate``;
    ``lr_decay`` (per epoch) for the first; ``boundaries`` (steps) and ``factor`` for the
    second.
    """
    if steps_per_epoch < 1:
        raise ValueError(f"steps_per_epoch must be >= 1; got {steps_per_epoch}.")
    lr = float(cfg["learning_rate"])
    if cfg["name"] == "amsgrad_epoch_decay":
        decay = float(cfg["lr_decay"])
        return lambda step: lr * decay ** (jnp.asarray(step) // steps_per_epoch).astype(jnp.float32)
    if cfg["name"] == "adam_steps":
        boundaries = jnp.asarray(tuple(int(b) for b in cfg["boundaries"]), jnp.int32)
        factor = float(cfg["factor"])

        def steps(step):
            passed = jnp.sum(jnp.asarray(step, jnp.int32) >= boundaries).astype(jnp.float32)
            return lr * factor ** passed

        return steps
    raise ValueError(f"optimizer.name: unknown optimiser {cfg['name']!r}; expected "
                     "'amsgrad_epoch_decay' or 'adam_steps'.")


def bn_momentum_schedule(initial: float, final: float, num_epochs: int,
                         steps_per_epoch: int) -> optax.Schedule:
    """VideoPose3D's batch-norm momentum: ``initial`` decaying exponentially to ``final``.

    ``m(epoch) = initial * exp(-epoch / num_epochs * log(initial / final))`` with the
    epoch counted from 0, PyTorch's momentum convention (weight of the new batch
    statistic): 0.1 -> 0.001 in VideoPose3D.
    """
    ratio = jnp.log(initial / final)

    def schedule(step):
        epoch = (jnp.asarray(step) // steps_per_epoch).astype(jnp.float32)
        return initial * jnp.exp(-epoch / num_epochs * ratio)

    return schedule


def make_optimizer(cfg: Mapping[str, Any], steps_per_epoch: int
                   ) -> tuple[optax.GradientTransformation, optax.Schedule]:
    """``(tx, learning_rate_schedule)`` from an optimiser config (see module doc).

    ``clip_norm`` > 0 clips gradients by global norm first.
    """
    schedule = learning_rate_schedule(cfg, steps_per_epoch)
    if cfg["name"] == "amsgrad_epoch_decay":
        core = optax.amsgrad(schedule)
    else:
        core = optax.adam(schedule)
    clip = float(cfg.get("clip_norm", 0.0) or 0.0)
    tx = optax.chain(optax.clip_by_global_norm(clip), core) if clip > 0 else core
    return tx, schedule
