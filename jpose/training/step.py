"""The pure train step over any recipe, and its jitted, sharded form.

State is a plain dict pytree, networks nested by name::

    {"params": {net: ...}, "batch_stats": {net: ...}, "opt_state": ..., "step": int32}

``train_step(state, batch, rng) -> (state, metrics)`` is a pure function of the *global*
batch ``{stream: {key: array}}``. ``rng`` is the run's single key; the step folds its own
index in, so the loop keeps no RNG state and a resumed run draws the same dropout masks.
The recipe owns the forward pass and the loss (:mod:`jpose.recipes.base`); this module
only differentiates it, applies the optimiser and turns the recipe's ``(sum, count)``
metrics into logged means.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import optax
from jax.sharding import Mesh

from jpose.recipes.base import Recipe, Step, init_networks
from jpose.training import parallel

__all__ = ["init_state", "make_train_step", "state_shardings", "jit_train_step"]


def init_state(recipe: Recipe, nets: Mapping[str, Any], hp, tx: optax.GradientTransformation,
               rng: jax.Array) -> dict:
    variables = (recipe.init or init_networks)(rng, nets, hp)
    return {"params": variables["params"], "batch_stats": variables["batch_stats"],
            "opt_state": tx.init(variables["params"]), "step": jnp.zeros((), jnp.int32)}


def make_train_step(recipe: Recipe, nets: Mapping[str, Any], hp,
                    tx: optax.GradientTransformation, *, learning_rate: optax.Schedule,
                    bn_momentum: optax.Schedule, steps_per_epoch: int = 1,
                    phase: int = 0) -> Callable:
    """The pure ``train_step(state, batch, rng) -> (state, metrics)``.

    ``metrics``: ``loss``, ``learning_rate``, ``bn_momentum``, ``grad_norm`` and each of
    the recipe's ``(sum, count)`` metrics as ``sum / count``. ``steps_per_epoch`` (of the
    primary stream) gives the loss its :attr:`Step.epoch`; ``phase`` is the static
    :attr:`Step.phase` (one compiled step per phase of the recipe).
    """

    def train_step(state, batch, rng):
        step = state["step"]
        momentum = jnp.asarray(bn_momentum(step), jnp.float32)
        info = Step(rng=jax.random.fold_in(rng, step), step=step, bn_momentum=momentum,
                    epoch=step // steps_per_epoch, phase=int(phase))

        def objective(params):
            return recipe.loss(params, state["batch_stats"], batch, info, nets=nets, hp=hp)

        (loss, (batch_stats, aux)), grads = jax.value_and_grad(
            objective, has_aux=True)(state["params"])
        # optax's bias corrections compute float ** int32; keep them working when callers
        # (like our test suite) run with strict dtype promotion.
        with jax.numpy_dtype_promotion("standard"):
            updates, opt_state = tx.update(grads, state["opt_state"], state["params"])
        new_state = {"params": optax.apply_updates(state["params"], updates),
                     "batch_stats": batch_stats, "opt_state": opt_state, "step": step + 1}
        logged = {"loss": loss, "learning_rate": jnp.asarray(learning_rate(step), jnp.float32),
                  "bn_momentum": momentum, "grad_norm": optax.tree.norm(grads)}
        for name, (total, count) in aux.items():
            logged[name] = total / jnp.maximum(count, 1)
        return new_state, logged

    return train_step


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
