"""Residual MLP lifter (Martinez et al., ICCV 2017, "A simple yet effective baseline").

A single-frame 2D -> 3D lifter: the flattened 2D pose goes through
``Linear(hidden) + BN + ReLU + dropout``, then ``num_blocks`` residual blocks of two
``[Linear + BN + ReLU + dropout]`` layers, then a linear layer to ``J_out * 3``.

Inputs and outputs
------------------
* ``keypoints``: ``(..., J_in, C_in)`` float, normalised screen coordinates (C_in = 2, plus
  optional extra features), joints in the dataset's skeleton order. Leading axes are batch
  axes; in training batch norm pools statistics over all of them.
* ``LifterOutputs.pose``: ``(..., J_out, 3)`` **metres**, camera frame, root-relative (as
  the temporal model).
* Optional heads (``config.heads``), for objectives that need them:
  ``root``: ``(..., 3)`` root position (metres, camera frame; its z is the depth);
  ``scale``: ``(..., 1)`` positive scale factor (softplus; dimensionless).
  Heads that are not configured are ``None`` in the output. ``heads=()`` (the default)
  gives a pose-only network; a root/trajectory estimator that must share no weights with
  the pose network is then a second, separate network (its own config and variables).

Variants: ``martinez_mlp`` (2 residual blocks, as the paper) and ``thesis_mlp`` (the same
lifter with 4 residual blocks; Yang Li, thesis 2020, §3.4.1).

Same pure-function surface as :mod:`jpose.nets.temporal`: :func:`variant`, :func:`init`,
:func:`apply` (with PyTorch-convention, runtime ``bn_momentum``; see
``jpose/nets/_layers.py``). Differences from the original paper, on purpose: PyTorch
default init instead of Kaiming-normal, and no max-norm weight constraint (use an optax
transform if wanted).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from flax import linen as nn

from jpose.nets import _layers

__all__ = [
    "HEADS",
    "VARIANTS",
    "LifterOutputs",
    "MLPConfig",
    "MLPLifter",
    "apply",
    "check_inputs",
    "check_trunk_fields",
    "count_params",
    "dense",
    "init",
    "residual_trunk",
    "variant",
]

HEADS = ("root", "scale")


@dataclasses.dataclass(frozen=True, kw_only=True)
class MLPConfig:
    """Hyperparameters of the residual MLP lifter (hashable: usable as a static argument).

    Attributes:
      num_joints_in: J_in of the 2D input.
      in_features: C_in per input joint (2 = normalised screen x, y).
      num_joints_out: J_out of the 3D pose output.
      hidden: width of every hidden layer (paper: 1024).
      num_blocks: residual blocks (paper: 2).
      dropout: drop probability after every hidden ReLU (paper: 0.5).
      heads: extra output heads, a subset of ``HEADS`` = ("root", "scale"); ``()`` for a
        pose-only network (no head parameters at all).
      bn_eps: batch-norm epsilon.
    """

    num_joints_in: int = 17
    in_features: int = 2
    num_joints_out: int = 17
    hidden: int = 1024
    num_blocks: int = 2
    dropout: float = 0.5
    heads: tuple[str, ...] = ()
    bn_eps: float = 1e-5

    def __post_init__(self):
        heads = self.heads
        if isinstance(heads, (list, str)):
            heads = (heads,) if isinstance(heads, str) else tuple(heads)
            object.__setattr__(self, "heads", heads)
        if (
            not isinstance(heads, tuple)
            or any(h not in HEADS for h in heads)
            or len(set(heads)) != len(heads)
        ):
            raise ValueError(f"heads: expected distinct names from {HEADS}, got {heads!r}")
        check_trunk_fields(self)


def check_trunk_fields(config, *, positive: tuple[str, ...] = ()) -> None:
    """The field checks of every config with a :func:`residual_trunk` (ValueError naming
    the field): ``num_joints_in``, ``in_features``, ``num_joints_out``, ``hidden`` and
    the ``positive`` fields are positive ints, ``num_blocks >= 0``, ``dropout`` in
    ``[0, 1)``, ``bn_eps > 0``."""
    for name in ("num_joints_in", "in_features", "num_joints_out", "hidden") + positive:
        v = getattr(config, name)
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            raise ValueError(f"{name}: expected a positive int, got {v!r}")
    if not isinstance(config.num_blocks, int) or config.num_blocks < 0:
        raise ValueError(f"num_blocks: expected an int >= 0, got {config.num_blocks!r}")
    if not 0.0 <= config.dropout < 1.0:
        raise ValueError(f"dropout: expected a probability in [0, 1), got {config.dropout}")
    if not config.bn_eps > 0.0:
        raise ValueError(f"bn_eps: expected > 0, got {config.bn_eps}")


VARIANTS: Mapping[str, Mapping[str, Any]] = MappingProxyType(
    {
        "martinez_mlp": MappingProxyType({}),
        "martinez_mlp_heads": MappingProxyType({"heads": ("root", "scale")}),
        # Yang Li's thesis (2020) §3.4.1: the Martinez residual MLP with 4 residual blocks
        # instead of 2; pose output only (the root/trajectory network is a separate one).
        "thesis_mlp": MappingProxyType({"num_blocks": 4}),
        # Tiny variants for tests and CI smoke runs.
        "tiny_mlp": MappingProxyType({"hidden": 16}),
        "tiny_mlp_heads": MappingProxyType({"hidden": 16, "heads": ("root", "scale")}),
        "tiny_thesis_mlp": MappingProxyType({"hidden": 16, "num_blocks": 4}),
    }
)


def variant(name: str, **overrides: Any) -> MLPConfig:
    """Config of a named variant, with optional field overrides."""
    if name not in VARIANTS:
        raise ValueError(f"name: unknown MLP lifter variant {name!r}; known: {sorted(VARIANTS)}")
    return MLPConfig(**{**VARIANTS[name], **overrides})


class LifterOutputs(NamedTuple):
    """Outputs of :func:`apply`; heads not in ``config.heads`` are None."""

    pose: jax.Array  # (..., J_out, 3) float32, metres, root-relative
    root: jax.Array | None = None  # (..., 3) float32, metres, camera frame
    scale: jax.Array | None = None  # (..., 1) float32, > 0


def dense(features: int, fan_in: int, name: str, *, scale: float = 1.0) -> nn.Dense:
    """A ``Dense`` layer with PyTorch's default ``Linear`` init (``fan_in`` inputs), its
    kernel times ``scale`` (e.g. a small head that starts near zero)."""
    kernel = _layers.torch_kernel_init
    if scale != 1.0:
        def kernel(key, shape, dtype=jnp.float32):
            return scale * _layers.torch_kernel_init(key, shape, dtype)
    return nn.Dense(features, kernel_init=kernel, bias_init=_layers.torch_bias_init(fan_in),
                    name=name)


def residual_trunk(
    x: jax.Array,
    *,
    hidden: int,
    num_blocks: int,
    dropout: float,
    bn_eps: float,
    train: bool,
    bn_momentum: jax.Array | float,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """The Martinez trunk on ``x`` (N, F): ``[Dense + BN + ReLU + dropout]`` to ``hidden``,
    then ``num_blocks`` residual blocks of two such layers.

    Call it inside a compact module's ``__call__``: its layers become that module's own
    (``input_dense``, ``input_bn``, ``block{i}_dense{0,1}``, ``block{i}_bn{0,1}``), so
    every network built on it has the MLP lifter's parameter names for its trunk.

    Returns ``(h (N, hidden), stages)``, ``stages`` the activations after the input
    layer (``"input"``) and after each residual add (``"block{i}"``).
    """

    def layer(h, name_dense, name_bn):
        h = dense(hidden, h.shape[-1], name_dense)(h)
        h = _layers.BatchNorm(eps=bn_eps, name=name_bn)(h, train=train, momentum=bn_momentum)
        h = nn.relu(h)
        if dropout > 0.0:
            h = nn.Dropout(rate=dropout)(h, deterministic=not train)
        return h

    h = layer(x, "input_dense", "input_bn")
    stages = {"input": h}
    for i in range(num_blocks):
        y = layer(h, f"block{i}_dense0", f"block{i}_bn0")
        y = layer(y, f"block{i}_dense1", f"block{i}_bn1")
        h = h + y
        stages[f"block{i}"] = h
    return h, stages


class MLPLifter(nn.Module):
    """The Martinez lifter on flattened features (N, J_in * C_in).

    Parameter names: ``input_dense``, ``input_bn``; ``block{i}_dense{0,1}``,
    ``block{i}_bn{0,1}``; ``pose_head``, ``root_head``, ``scale_head``. Intermediates sown:
    ``input`` and ``block{i}`` (after the residual add), (N, hidden).
    """

    config: MLPConfig

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool, bn_momentum: jax.Array | float):
        cfg = self.config
        h, stages = residual_trunk(x, hidden=cfg.hidden, num_blocks=cfg.num_blocks,
                                   dropout=cfg.dropout, bn_eps=cfg.bn_eps, train=train,
                                   bn_momentum=bn_momentum)
        for name, value in stages.items():
            self.sow("intermediates", name, value)
        pose = dense(cfg.num_joints_out * 3, cfg.hidden, "pose_head")(h)
        root = dense(3, cfg.hidden, "root_head")(h) if "root" in cfg.heads else None
        scale = (
            nn.softplus(dense(1, cfg.hidden, "scale_head")(h)) if "scale" in cfg.heads else None
        )
        return pose, root, scale


def _check_shape(x, config: MLPConfig, name: str) -> tuple[Any, ...]:
    shape = tuple(getattr(x, "shape", ()))
    if len(shape) < 2 or shape[-2:] != (config.num_joints_in, config.in_features):
        raise ValueError(
            f"{name}: expected shape (..., J_in={config.num_joints_in}, "
            f"C_in={config.in_features}), got shape {shape}"
        )
    dtype = getattr(x, "dtype", None)
    if dtype is None or not jnp.issubdtype(dtype, jnp.floating):
        raise ValueError(f"{name}: expected a floating-point array, got dtype {dtype}")
    return shape


def check_inputs(keypoints, *, config: MLPConfig, name: str = "keypoints") -> None:
    """Host-side validation of a concrete batch: shape and finiteness (ValueError)."""
    _check_shape(keypoints, config, name)
    _layers.check_finite_host(keypoints, name=name)


def init(rng: jax.Array, config: MLPConfig) -> dict[str, Any]:
    """Fresh variables ``{'params', 'batch_stats'}`` (PyTorch default init)."""
    x = jnp.zeros((1, config.num_joints_in * config.in_features))
    variables = MLPLifter(config).init({"params": rng}, x, train=False, bn_momentum=0.1)
    return {"params": variables["params"], "batch_stats": variables["batch_stats"]}


def count_params(variables_or_params: Mapping[str, Any]) -> int:
    """Trainable parameter count (``params`` only; batch-norm running stats excluded)."""
    tree = variables_or_params
    if "params" in tree:
        tree = tree["params"]
    return _layers.count_params(tree)


def apply(
    variables: Mapping[str, Any],
    keypoints: jax.Array,
    *,
    config: MLPConfig,
    train: bool,
    rng: jax.Array | None = None,
    bn_momentum: jax.Array | float = 0.1,
    with_intermediates: bool = False,
):
    """Lift single-frame 2D poses to 3D.

    Args:
      variables: ``{'params', 'batch_stats'}`` from :func:`init`.
      keypoints: (..., J_in, C_in) normalised screen coordinates; cast to float32.
      config: the model's :class:`MLPConfig`.
      train: dropout on and batch statistics (updated) instead of running ones.
      rng: PRNG key for dropout; required when ``train`` and ``config.dropout > 0``.
      bn_momentum: PyTorch-convention batch-norm momentum; may be traced.
      with_intermediates: also return ``{'input', 'block{i}'}`` hidden activations
        (..., hidden).

    Returns:
      ``(LifterOutputs, batch_stats)`` or ``(LifterOutputs, batch_stats, intermediates)``;
      ``batch_stats`` updated when ``train``, else the input ones. NaN inputs raise when
      ``keypoints`` is concrete; under ``jit`` call :func:`check_inputs` on the host batch.
    """
    shape = _check_shape(keypoints, config, "keypoints")
    if not isinstance(keypoints, jax.core.Tracer):
        _layers.check_finite_host(keypoints, name="keypoints")
    if (
        not isinstance(variables, Mapping)
        or "params" not in variables
        or "batch_stats" not in variables
    ):
        raise ValueError(
            "variables: expected a mapping with 'params' and 'batch_stats' (from init)"
        )
    lead = shape[:-2]
    n = 1
    for d in lead:
        n = n * d  # may be symbolic under jax.export
    x = jnp.asarray(keypoints, jnp.float32).reshape((n, shape[-2] * shape[-1]))
    rngs = _layers.check_rng(rng, train=train, dropout=config.dropout)
    mutable = (["batch_stats"] if train else []) + (["intermediates"] if with_intermediates else [])
    (pose, root, scale), state = MLPLifter(config).apply(
        {"params": variables["params"], "batch_stats": variables["batch_stats"]},
        x,
        train=train,
        bn_momentum=bn_momentum,
        rngs=rngs,
        mutable=mutable,
    )
    outputs = LifterOutputs(
        pose=pose.reshape(lead + (config.num_joints_out, 3)),
        root=None if root is None else root.reshape(lead + (3,)),
        scale=None if scale is None else scale.reshape(lead + (1,)),
    )
    batch_stats = state["batch_stats"] if train else variables["batch_stats"]
    if not with_intermediates:
        return outputs, batch_stats
    inter = {k: v[0].reshape(lead + v[0].shape[1:]) for k, v in state["intermediates"].items()}
    return outputs, batch_stats, inter
