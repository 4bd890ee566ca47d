"""Optimisers, schedules and parameter groups of the works jpose reimplements (optax).

* ``amsgrad_epoch_decay`` -- VideoPose3D: AMSGrad exactly as PyTorch's
  ``torch.optim.Adam(amsgrad=True)`` computes it (:func:`torch_amsgrad`), the learning
  rate multiplied by ``lr_decay`` (0.95) after every epoch.
* ``adam_steps`` -- Adam with a piecewise-constant schedule (learning rate times
  ``factor`` at given steps), as Martinez et al. and Li et al. use.
* optional clipping by global gradient norm (``clip_norm`` > 0).
* parameter groups (``optimizer.param_groups``): ``{name: {pattern, lr_mult, frozen}}``,
  a regular expression matched (``re.search``) against each parameter's '/'-joined path
  (``pose/expand_conv/kernel``: network name first); the first matching group wins,
  unmatched parameters train normally. A group either scales the learning rate by
  ``lr_mult`` or is ``frozen`` (no update at all), through ``optax.multi_transform``,
  as big_vision's ``optax.py`` does.

Schedules are functions of the step; epochs are ``step // steps_per_epoch``, so a resumed
run recomputes them from the restored step alone.

Why not ``optax.amsgrad``: it takes the running maximum of the *bias-corrected* second
moment, PyTorch the maximum of the *raw* one, divided by the *current* bias correction.
With gradients 10, 1, 1, ... the optax / PyTorch step ratio is 0.71 at step 2 and 0.10
at step 3000, so VideoPose3D's schedule would not reproduce with it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

__all__ = ["learning_rate_schedule", "bn_momentum_schedule", "make_optimizer",
           "torch_amsgrad", "TorchAMSGradState", "param_labels"]


class TorchAMSGradState(NamedTuple):
    count: jax.Array  # int32 scalar: updates applied
    mu: Any  # first moment (PyTorch exp_avg)
    nu: Any  # raw second moment (exp_avg_sq)
    nu_max: Any  # running max of the raw second moment (max_exp_avg_sq)


def torch_amsgrad(learning_rate: float | optax.Schedule, *, b1: float = 0.9,
                  b2: float = 0.999, eps: float = 1e-8) -> optax.GradientTransformation:
    """AMSGrad as ``torch.optim.Adam(amsgrad=True)`` (no weight decay).

    Per step ``t = 1, 2, ...``: ``m = b1 m + (1 - b1) g``, ``v = b2 v + (1 - b2) g^2``,
    ``v_max = max(v_max, v)``, update ``-lr / (1 - b1^t) * m / (sqrt(v_max) /
    sqrt(1 - b2^t) + eps)``. ``learning_rate`` may be a schedule of the update count
    before this step (0 for the first), as optax's schedules are.
    """

    def init(params):
        zeros = lambda: jax.tree.map(jnp.zeros_like, params)  # noqa: E731
        return TorchAMSGradState(jnp.zeros((), jnp.int32), zeros(), zeros(), zeros())

    def update(updates, state, params=None):
        del params
        count = state.count + 1
        mu = jax.tree.map(lambda m, g: b1 * m + (1 - b1) * g, state.mu, updates)
        nu = jax.tree.map(lambda v, g: b2 * v + (1 - b2) * g * g, state.nu, updates)
        nu_max = jax.tree.map(jnp.maximum, state.nu_max, nu)
        t = count.astype(jnp.float32)
        bc1 = 1 - jnp.power(jnp.float32(b1), t)
        bc2 = 1 - jnp.power(jnp.float32(b2), t)
        lr = learning_rate(state.count) if callable(learning_rate) else learning_rate
        step_size = jnp.asarray(lr, jnp.float32) / bc1

        def one(m, vmax):
            denom = jnp.sqrt(vmax) / jnp.sqrt(bc2) + eps
            return (-step_size * m / denom).astype(m.dtype)

        return jax.tree.map(one, mu, nu_max), TorchAMSGradState(count, mu, nu, nu_max)

    return optax.GradientTransformation(init, update)


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
    statistic): 0.1 -> 0.001 in VideoPose3D. After ``num_epochs`` (a run continued with
    ``num_steps`` beyond the schedule) it stays at ``final`` instead of decaying to 0.
    """
    ratio = jnp.log(initial / final)

    def schedule(step):
        epoch = (jnp.asarray(step) // steps_per_epoch).astype(jnp.float32)
        epoch = jnp.minimum(epoch, jnp.float32(num_epochs))
        return initial * jnp.exp(-epoch / num_epochs * ratio)

    return schedule


def _path_name(path) -> str:
    parts = []
    for k in path:
        key = getattr(k, "key", getattr(k, "name", getattr(k, "idx", k)))
        parts.append(str(key))
    return "/".join(parts)


def param_labels(params, groups: Mapping[str, Mapping[str, Any]]):
    """Each parameter's group name (first matching ``pattern``), or ``"default"``."""
    compiled = [(name, re.compile(str(g["pattern"]))) for name, g in groups.items()]

    def label(path, _):
        name = _path_name(path)
        for group, pattern in compiled:
            if pattern.search(name):
                return group
        return "default"

    return jax.tree_util.tree_map_with_path(label, params)


def _core(cfg: Mapping[str, Any], schedule: optax.Schedule) -> optax.GradientTransformation:
    if cfg["name"] == "amsgrad_epoch_decay":
        return torch_amsgrad(schedule)
    return optax.adam(schedule)


def make_optimizer(cfg: Mapping[str, Any], steps_per_epoch: int
                   ) -> tuple[optax.GradientTransformation, optax.Schedule]:
    """``(tx, learning_rate_schedule)`` from an optimiser config (see module doc)."""
    schedule = learning_rate_schedule(cfg, steps_per_epoch)
    groups = {k: dict(v) for k, v in dict(cfg.get("param_groups", {}) or {}).items()}
    if "default" in groups:
        raise ValueError("optimizer.param_groups: 'default' is reserved for the parameters "
                         "no group matches")
    for name, g in groups.items():
        if "pattern" not in g:
            raise ValueError(f"optimizer.param_groups.{name}: needs a 'pattern' (a regular "
                             "expression over parameter paths such as 'pose/expand_conv')")
        try:
            re.compile(str(g["pattern"]))
        except re.error as e:
            raise ValueError(f"optimizer.param_groups.{name}.pattern: {e}") from None
    if groups:
        transforms = {"default": _core(cfg, schedule)}
        for name, g in groups.items():
            if bool(g.get("frozen", False)):
                transforms[name] = optax.set_to_zero()
            else:
                mult = float(g.get("lr_mult", 1.0))
                transforms[name] = _core(cfg, lambda s, m=mult: m * schedule(s))
        core = optax.multi_transform(transforms, lambda p: param_labels(p, groups))
    else:
        core = _core(cfg, schedule)
    clip = float(cfg.get("clip_norm", 0.0) or 0.0)
    tx = optax.chain(optax.clip_by_global_norm(clip), core) if clip > 0 else core
    return tx, schedule
