"""The pure train and eval steps, and their jitted, sharded forms.

State is a plain dict pytree::

    {"params": ..., "batch_stats": ..., "opt_state": ..., "step": int32 scalar}

``train_step(state, batch, rng) -> (state, metrics)`` is a pure function of the *global*
batch. ``rng`` is the run's single key; the step folds its own index in, so the loop keeps
no RNG state and a resumed run draws the same dropout masks.

A loss function plugs in without touching the loop: ``loss_fn(predictions, batch) ->
(sum, count, metrics)`` with ``sum`` and ``count`` scalars (the loss is ``sum / count``)
and ``metrics`` a dict of scalars to log. :func:`supervised_loss` is VideoPose3D's.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import optax
from jax.sharding import Mesh

from jpose import metrics as metrics_lib
from jpose.objectives import supervised
from jpose.training import parallel
from jpose.training.models import Lifter

__all__ = ["LossFn", "supervised_loss", "init_state", "make_train_step", "make_eval_step",
           "jit_train_step", "jit_eval_step", "state_shardings"]

LossFn = Callable[[jax.Array, Mapping[str, jax.Array]],
                  tuple[jax.Array, jax.Array, dict[str, jax.Array]]]


def supervised_loss(predictions, batch):
    """MPJPE on root-relative poses (VideoPose3D's supervised loss), metres.

    ``batch["poses_3d"]`` is the target, shaped like ``predictions``; an optional
    ``batch["weight"]`` ``(B,)`` excludes (0) or weights examples.
    """
    per_joint = supervised.mpjpe_loss(predictions, batch["poses_3d"])
    mask = None
    if "weight" in batch:
        w = batch["weight"].astype(per_joint.dtype)
        mask = jnp.broadcast_to(w.reshape(w.shape + (1,) * (per_joint.ndim - 1)),
                                per_joint.shape)
    total, count = metrics_lib.masked_sum_count(per_joint, mask)
    count = count.astype(total.dtype)
    return total, count, {"mpjpe_mm": metrics_lib.to_millimetres(total / count)}


def init_state(model: Lifter, tx: optax.GradientTransformation, rng: jax.Array) -> dict:
    variables = model.init(rng)
    return {"params": variables["params"], "batch_stats": variables["batch_stats"],
            "opt_state": tx.init(variables["params"]), "step": jnp.zeros((), jnp.int32)}


def make_train_step(model: Lifter, tx: optax.GradientTransformation, loss_fn: LossFn, *,
                    learning_rate: optax.Schedule,
                    bn_momentum: optax.Schedule) -> Callable:
    """The pure ``train_step(state, batch, rng) -> (state, metrics)``."""

    def train_step(state, batch, rng):
        step = state["step"]
        step_rng = jax.random.fold_in(rng, step)
        momentum = bn_momentum(step)

        def objective(params):
            variables = {"params": params, "batch_stats": state["batch_stats"]}
            predictions, batch_stats = model.apply_train(
                variables, batch["inputs"], rng=step_rng, bn_momentum=momentum)
            total, count, aux = loss_fn(predictions, batch)
            return total / count, (batch_stats, aux)

        (loss, (batch_stats, aux)), grads = jax.value_and_grad(
            objective, has_aux=True)(state["params"])
        # optax's bias correction computes float ** int32; keep it working when callers
        # (like our test suite) run with strict dtype promotion.
        with jax.numpy_dtype_promotion("standard"):
            updates, opt_state = tx.update(grads, state["opt_state"], state["params"])
        new_state = {"params": optax.apply_updates(state["params"], updates),
                     "batch_stats": batch_stats, "opt_state": opt_state, "step": step + 1}
        logged = {"loss": loss, "learning_rate": jnp.asarray(learning_rate(step), jnp.float32),
                  "bn_momentum": jnp.asarray(momentum, jnp.float32),
                  "grad_norm": optax.tree.norm(grads), **aux}
        return new_state, logged

    return train_step


def make_eval_step(model: Lifter, loss_fn: LossFn) -> Callable:
    """The pure ``eval_step(state, batch) -> metrics`` (eval mode: running statistics).

    Returns ``{"loss_sum", "loss_count", ...}`` so results add exactly across batches.
    """

    def eval_step(state, batch):
        variables = {"params": state["params"], "batch_stats": state["batch_stats"]}
        predictions, _ = model.apply_train(variables, batch["inputs"], rng=None,
                                           bn_momentum=0.0, train=False)
        total, count, _ = loss_fn(predictions, batch)
        return {"loss_sum": total, "loss_count": count}

    return eval_step


def state_shardings(abstract_state, mesh: Mesh):
    """Every state leaf replicated (pure data parallelism)."""
    return jax.tree.map(lambda _: parallel.replicated(mesh), abstract_state)


def jit_train_step(train_step: Callable, abstract_state, mesh: Mesh) -> Callable:
    """``train_step`` jitted with shardings: batch on ``data``, state replicated, donated."""
    state_sh = state_shardings(abstract_state, mesh)
    return jax.jit(
        train_step,
        in_shardings=(state_sh, parallel.batch_sharded(mesh), parallel.replicated(mesh)),
        out_shardings=(state_sh, parallel.replicated(mesh)),
        donate_argnums=(0,),
    )


def jit_eval_step(eval_step: Callable, abstract_state, mesh: Mesh) -> Callable:
    return jax.jit(eval_step,
                   in_shardings=(state_shardings(abstract_state, mesh),
                                 parallel.batch_sharded(mesh)),
                   out_shardings=parallel.replicated(mesh))
