"""Layers shared by the jpose networks (private; the public surface is ``jpose.nets``).

Both networks are ports of PyTorch originals (VideoPose3D, the PyTorch port of Martinez et
al.), so the layers here follow PyTorch's conventions where they differ from Flax's:

* Batch norm momentum is PyTorch's: the weight of the *new* batch statistic
  (``running = (1 - m) * running + m * batch``; Flax's ``momentum`` is ``1 - m``). It is a
  call argument, not a module attribute, so a training loop can decay it (VideoPose3D decays
  0.1 -> 0.001) by passing a traced scalar: the schedule costs no recompilation.
* The running variance is updated with the *unbiased* batch variance, as PyTorch does
  (normalisation itself uses the biased one). Converted VideoPose3D checkpoints therefore
  continue training exactly as they would in PyTorch.
* Weights are initialised like PyTorch's ``Conv1d``/``Linear`` defaults:
  ``U(-1/sqrt(fan_in), 1/sqrt(fan_in))`` for kernels and biases.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import linen as nn

__all__ = ["BatchNorm", "check_rng", "count_params", "torch_bias_init", "torch_kernel_init"]


# Kernel shape (..., fan_in, fan_out) with any leading receptive-field axes: variance
# scaling with scale 1/3 in "uniform" mode gives U(+-sqrt(3 * (1/3) / fan_in)), which is
# PyTorch's kaiming_uniform(a=sqrt(5)) default.
torch_kernel_init = nn.initializers.variance_scaling(1.0 / 3.0, "fan_in", "uniform")


def torch_bias_init(fan_in: int):
    """PyTorch's default bias init, ``U(-1/sqrt(fan_in), 1/sqrt(fan_in))``."""
    bound = 1.0 / math.sqrt(fan_in)

    def init(key, shape, dtype=jnp.float32):
        return jax.random.uniform(key, shape, dtype, -bound, bound)

    return init


def _count_as_float(shape: tuple[Any, ...]) -> jax.Array:
    """Number of elements of ``shape`` as a float32 scalar; works for symbolic dims too."""
    n = 1
    for d in shape:
        n = n * d
    if isinstance(n, int):
        return jnp.float32(n)
    # A symbolic dimension (jax.export): jnp.asarray turns a dimension expression into a
    # traced value computed from the actual shapes at run time.
    return jnp.asarray(n).astype(jnp.float32)


class BatchNorm(nn.Module):
    """Batch norm over all axes but the last (channels), with PyTorch-convention momentum.

    Attributes:
      eps: added to the variance, as in ``torch.nn.BatchNorm1d`` (default there 1e-5).

    Variables: ``params/{scale, bias}`` (PyTorch ``weight``/``bias``) and
    ``batch_stats/{mean, var}`` (PyTorch ``running_mean``/``running_var``).
    """

    eps: float = 1e-5

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool, momentum: jax.Array | float) -> jax.Array:
        """Normalise ``x`` (..., C).

        Args:
          x: activations, channels last.
          train: use batch statistics and update the running ones; else running ones.
          momentum: PyTorch convention, weight of the new batch statistic in the running
            average; may be a traced scalar. Ignored when ``train`` is False.
        """
        c = x.shape[-1]
        bshape = (1,) * (x.ndim - 1) + (c,)  # explicit broadcasting (rank promotion raises)
        scale = self.param("scale", nn.initializers.ones, (c,), jnp.float32)
        bias = self.param("bias", nn.initializers.zeros, (c,), jnp.float32)
        ra_mean = self.variable("batch_stats", "mean", lambda: jnp.zeros((c,), jnp.float32))
        ra_var = self.variable("batch_stats", "var", lambda: jnp.ones((c,), jnp.float32))
        if train:
            axes = tuple(range(x.ndim - 1))
            mean = jnp.mean(x, axis=axes)
            # Two-pass variance: the one-pass E[x^2]-E[x]^2 loses precision in float32 for
            # post-ReLU activations with large means.
            var = jnp.mean(jnp.square(x - mean.reshape(bshape)), axis=axes)
            if not self.is_initializing():
                n = _count_as_float(x.shape[:-1])
                # PyTorch stores the unbiased variance; with n == 1 it would divide by zero
                # (PyTorch raises for a single value per channel in training mode).
                unbiased = var * (n / jnp.maximum(n - 1.0, 1.0))
                m = jnp.asarray(momentum, jnp.float32)
                ra_mean.value = (1.0 - m) * ra_mean.value + m * mean
                ra_var.value = (1.0 - m) * ra_var.value + m * unbiased
        else:
            mean, var = ra_mean.value, ra_var.value
        mul = scale * jax.lax.rsqrt(var + jnp.float32(self.eps))
        return x * mul.reshape(bshape) + (bias - mean * mul).reshape(bshape)


def count_params(params: Mapping[str, Any]) -> int:
    """Number of scalar entries in a parameter tree (arrays or ``jax.ShapeDtypeStruct``).

    Pass ``variables['params']`` to count trainable parameters only (batch-norm running
    statistics live in ``variables['batch_stats']`` and are not counted, as in the
    VideoPose3D repository's ``model_params`` count).
    """
    return int(sum(math.prod(leaf.shape) for leaf in jax.tree_util.tree_leaves(params)))


def check_rng(rng, *, train: bool, dropout: float) -> dict[str, jax.Array]:
    """The ``rngs`` dict for ``Module.apply``; raises if training with dropout but no key."""
    if train and dropout > 0.0:
        if rng is None:
            raise ValueError(
                f"rng: a PRNG key is required when train=True and dropout={dropout} > 0 "
                "(pass rng=jax.random.key(...), or dropout=0.0 in the config)."
            )
        return {"dropout": rng}
    return {}


def check_finite_host(x, *, name: str) -> None:
    """Raise ValueError if a concrete (host-readable) array has NaN or inf entries."""
    a = np.asarray(x)
    finite = np.isfinite(a)
    if not finite.all():
        bad = int(a.size - np.count_nonzero(finite))
        first = tuple(int(i) for i in np.argwhere(~finite)[0])
        raise ValueError(
            f"{name}: {bad} non-finite value(s) (NaN/inf), first at index {first}. Missing "
            "keypoints must be filled (e.g. interpolated) or the frames dropped before the "
            "network: one NaN frame spreads to every output frame whose receptive field "
            "contains it, and in training to the whole batch through batch norm."
        )
