"""Stacked hourglass (Newell et al. 2016) and the coarse-to-fine volumetric hourglass
(Pavlakos et al. 2017) on top of it.

2D stacked hourglass
--------------------
* Residual module: pre-activation bottleneck ``BN-ReLU-conv1x1(C/2) -> BN-ReLU-conv3x3(C/2)
  -> BN-ReLU-conv1x1(C)`` plus the input (a 1x1 conv when the widths differ), as in
  Newell et al.'s Torch code.
* Stem: conv 7x7 stride 2 (64) + BN + ReLU, residual (128), 2x2 max pool, residual (128),
  residual (C = 256): 256x256 -> 64x64.
* Hourglass of ``num_downsamplings`` (4) levels: at each level a skip branch of residuals
  and a 2x2 max pool -> residuals -> (next level | residuals) -> residuals -> nearest x2
  upsampling, added to the skip. ``num_residual`` modules at each place (1, as the
  published model).
* Each stack: hourglass -> residuals -> 1x1 conv + BN + ReLU -> 1x1 conv to the heatmaps;
  a stack that is not last re-injects ``input + conv1x1(features) + conv1x1(heatmaps)``
  as the next stack's input. Every stack's heatmaps are outputs (intermediate
  supervision: the same target and loss for every stack).

Volumetric hourglass (``depth_resolutions`` non-empty)
-----------------------------------------------------
The first ``num_stacks`` 2D stacks above (with their re-injection; the same parameter
names, so their weights transfer from a 2D model with more stacks, :func:`transfer_2d`)
produce the **feature tensor** (``"features"``, ``(B, 64, 64, C)``), on which one further
stack per entry of ``depth_resolutions`` predicts volumetric heatmaps with ``J3 * D_k``
channels (Pavlakos et al.'s coarse-to-fine supervision: e.g. D = 1, 2, 4, 64). Channel
``d * J3 + j`` is depth bin ``d`` of joint ``j``; outputs are reshaped to ``(B, H, W, D_k,
J3)``. With ``freeze_2d`` the 2D part runs in inference mode (running batch-norm
statistics, not updated) and its outputs are ``stop_gradient``-ed; freeze its parameters
in the optimiser too (``FROZEN_2D_PATTERN`` as an ``optimizer.param_groups`` pattern), or
weight decay would still change them.

Inputs and outputs
------------------
* ``images``: ``(B, H, W, 3)`` RGB in [0, 1], no mean subtraction (Newell et al.'s Torch
  code feeds [0, 1] crops); H and W multiples of ``4 * 2 ** num_downsamplings`` (64).
* :func:`apply` returns a dict: ``heatmaps_stack{i}`` ``(B, H/4, W/4, J)`` per 2D stack,
  ``features`` (2D: the input of stack ``feature_stack``; volumetric: the input of the
  first volumetric stack), and for the volumetric model ``volumes_stack{k}`` ``(B, H/4,
  W/4, D_k, J3)``. The :class:`~jpose.nets.network.Network` form adds ``heatmaps`` /
  ``volumes`` (the last stack) and ``pose``, ``score``: the argmax ``(B, J, 2)`` of the
  last 2D heatmaps, or the soft peak ``(B, J3, 3)`` (``(x, y, z)`` voxels) of the last
  volume (:mod:`jpose.objectives.heatmaps`).

Initialisation is PyTorch's default for convolutions (Kaiming-uniform, a = sqrt(5)).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

import jax
import jax.numpy as jnp
from flax import linen as nn

from jpose.nets import _layers, resnet
from jpose.objectives import heatmaps as heatmap_ops  # decoding only; no cycle

__all__ = ["FROZEN_2D_PATTERN", "VARIANTS", "Hourglass", "HourglassConfig", "Residual",
           "apply", "init", "network_apply", "network_predict", "transfer_2d", "variant"]

#: Parameter-group pattern (``re.search`` on '/'-joined paths) of the 2D part.
FROZEN_2D_PATTERN = r"(^|/)(stem|stack\d+)/"


@dataclasses.dataclass(frozen=True, kw_only=True)
class HourglassConfig:
    """Hyper-parameters (hashable, static under jit).

    Attributes:
      num_joints: J of the 2D heatmaps (MPII 16).
      channels: C, the width of the hourglasses (256).
      stem_widths: widths of the stem's conv and first residuals (64, 128).
      num_stacks: 2D stacks (Newell et al.: 8; the volumetric model's feature part: 2).
      num_downsamplings: levels of each hourglass (4).
      num_residual: residual modules at each place (1).
      feature_stack: 2D model: ``"features"`` is the input of this stack (1 ..
        num_stacks - 1); volumetric: must equal ``num_stacks``.
      depth_resolutions: volumetric stacks' depth bins, e.g. (1, 2, 4, 64); () = 2D only.
      num_joints_3d: J3 of the volumetric heatmaps (Human3.6M 17).
      freeze_2d: run the 2D part frozen (module doc).
      soft_peak_half_size: cube half-size (voxels) of the decoded ``pose``.
      bn_eps: batch-norm epsilon.
    """

    num_joints: int = 16
    channels: int = 256
    stem_widths: tuple[int, int] = (64, 128)
    num_stacks: int = 8
    num_downsamplings: int = 4
    num_residual: int = 1
    feature_stack: int = 2
    depth_resolutions: tuple[int, ...] = ()
    num_joints_3d: int = 17
    freeze_2d: bool = False
    soft_peak_half_size: int = 2
    bn_eps: float = 1e-5

    def __post_init__(self):
        for name in ("stem_widths", "depth_resolutions"):
            if isinstance(getattr(self, name), list):
                object.__setattr__(self, name, tuple(getattr(self, name)))
        for name in ("num_joints", "channels", "num_stacks", "num_downsamplings",
                     "num_residual", "num_joints_3d"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ValueError(f"{name}: expected a positive int, got {v!r}")
        if len(self.stem_widths) != 2 or min(self.stem_widths) < 1:
            raise ValueError(f"stem_widths: expected 2 positive ints, got {self.stem_widths!r}")
        if not all(isinstance(d, int) and d >= 1 for d in self.depth_resolutions):
            raise ValueError(f"depth_resolutions: expected positive ints, got "
                             f"{self.depth_resolutions!r}")
        if self.volumetric and self.feature_stack != self.num_stacks:
            raise ValueError(f"feature_stack: the volumetric model's features are the "
                             f"input of its first volumetric stack, feature_stack must be "
                             f"num_stacks = {self.num_stacks}, got {self.feature_stack}")
        if not self.volumetric and not 1 <= self.feature_stack < self.num_stacks:
            raise ValueError(f"feature_stack: expected 1 .. num_stacks - 1 = "
                             f"{self.num_stacks - 1} (the last stack has no re-injection), "
                             f"got {self.feature_stack}")
        if self.freeze_2d and not self.volumetric:
            raise ValueError("freeze_2d: only for a volumetric model (depth_resolutions)")

    @property
    def volumetric(self) -> bool:
        return bool(self.depth_resolutions)

    @property
    def stride(self) -> int:
        """Input pixels per heatmap pixel."""
        return 4

    @property
    def input_multiple(self) -> int:
        """H and W must be multiples of this."""
        return 4 * 2 ** self.num_downsamplings


_TINY = {"channels": 16, "stem_widths": (8, 16), "num_downsamplings": 2}

VARIANTS: Mapping[str, Mapping[str, Any]] = MappingProxyType({
    "stacked_hourglass_8": MappingProxyType({}),
    "stacked_hourglass_2": MappingProxyType({"num_stacks": 2, "feature_stack": 1}),
    # Pavlakos et al.'s coarse-to-fine depth resolutions, on 2 transferred 2D stacks.
    "volumetric_hourglass_c2f": MappingProxyType(
        {"num_stacks": 2, "depth_resolutions": (1, 2, 4, 64)}),
    "volumetric_hourglass_c2f_frozen": MappingProxyType(
        {"num_stacks": 2, "depth_resolutions": (1, 2, 4, 64), "freeze_2d": True}),
    # Tiny variants for tests and CI smoke runs (2 levels: 32x32 inputs suffice); the
    # volumetric one's single 2D stack transfers from tiny_hourglass.
    "tiny_hourglass": MappingProxyType({**_TINY, "num_stacks": 2, "feature_stack": 1}),
    "tiny_volumetric_hourglass": MappingProxyType(
        {**_TINY, "num_stacks": 1, "feature_stack": 1, "depth_resolutions": (1, 4)}),
})


def variant(name: str, **overrides: Any) -> HourglassConfig:
    if name not in VARIANTS:
        raise ValueError(f"name: unknown hourglass variant {name!r}; known: {sorted(VARIANTS)}")
    return HourglassConfig(**{**VARIANTS[name], **overrides})


def _conv(features: int, kernel: int, fan_in: int, name: str, stride: int = 1):
    p = (kernel - 1) // 2
    return nn.Conv(features, (kernel, kernel), strides=(stride, stride),
                   padding=((p, p), (p, p)), kernel_init=_layers.torch_kernel_init,
                   bias_init=_layers.torch_bias_init(fan_in * kernel * kernel), name=name)


def _bn_relu(x, name: str, *, eps: float, train: bool, bn_momentum):
    """BN + ReLU; call inside a compact method (the BN becomes its submodule ``name``)."""
    return nn.relu(resnet.BatchNorm(eps=eps, name=name)(x, train=train, momentum=bn_momentum))


class Residual(nn.Module):
    """Pre-activation bottleneck residual module (module doc)."""

    features: int
    bn_eps: float = 1e-5

    @nn.compact
    def __call__(self, x, *, train: bool, bn_momentum):
        mid, cin = self.features // 2, x.shape[-1]
        bn_relu = lambda h, name: _bn_relu(h, name, eps=self.bn_eps,  # noqa: E731
                                           train=train, bn_momentum=bn_momentum)
        h = _conv(mid, 1, cin, "conv0")(bn_relu(x, "bn0"))
        h = _conv(mid, 3, mid, "conv1")(bn_relu(h, "bn1"))
        h = _conv(self.features, 1, mid, "conv2")(bn_relu(h, "bn2"))
        skip = x if cin == self.features else _conv(self.features, 1, cin, "skip")(x)
        return h + skip


class _Hourglass(nn.Module):
    levels: int
    features: int
    num_residual: int
    bn_eps: float

    @nn.compact
    def __call__(self, x, *, train: bool, bn_momentum):
        def res(h, prefix):
            for j in range(self.num_residual):
                h = Residual(self.features, self.bn_eps, name=f"{prefix}{j}")(
                    h, train=train, bn_momentum=bn_momentum)
            return h

        up1 = res(x, "up1_")
        low = res(nn.max_pool(x, (2, 2), strides=(2, 2)), "low1_")
        if self.levels > 1:
            low = _Hourglass(self.levels - 1, self.features, self.num_residual, self.bn_eps,
                             name="inner")(low, train=train, bn_momentum=bn_momentum)
        else:
            low = res(low, "low2_")
        low = res(low, "low3_")
        return up1 + jnp.repeat(jnp.repeat(low, 2, axis=1), 2, axis=2)


class _Stack(nn.Module):
    out_channels: int
    reinject: bool
    config: HourglassConfig

    @nn.compact
    def __call__(self, x, *, train: bool, bn_momentum):
        cfg = self.config
        c = cfg.channels
        h = _Hourglass(cfg.num_downsamplings, c, cfg.num_residual, cfg.bn_eps,
                       name="hourglass")(x, train=train, bn_momentum=bn_momentum)
        for j in range(cfg.num_residual):
            h = Residual(c, cfg.bn_eps, name=f"res{j}")(h, train=train, bn_momentum=bn_momentum)
        h = _bn_relu(_conv(c, 1, c, "lin")(h), "lin_bn", eps=cfg.bn_eps, train=train,
                     bn_momentum=bn_momentum)
        heat = _conv(self.out_channels, 1, c, "head")(h)
        if not self.reinject:
            return heat, None
        nxt = (x + _conv(c, 1, c, "reinject_features")(h)
               + _conv(c, 1, self.out_channels, "reinject_heatmaps")(heat))
        return heat, nxt


class Hourglass(nn.Module):
    """The 2D or volumetric network on ``(B, H, W, 3)`` -> the output dict of
    :func:`apply`. Parameter names: ``stem``, ``stack{i}`` (2D), ``vstack{k}``
    (volumetric), each stack with ``hourglass``, ``res{j}``, ``lin(_bn)``, ``head``,
    ``reinject_features``, ``reinject_heatmaps``."""

    config: HourglassConfig

    @nn.compact
    def __call__(self, x, *, train: bool, bn_momentum):
        cfg = self.config
        train_2d = train and not cfg.freeze_2d
        kw2d = {"train": train_2d, "bn_momentum": bn_momentum}
        h = _Stem(cfg, name="stem")(x, **kw2d)
        out: dict[str, jax.Array] = {}
        for i in range(cfg.num_stacks):
            reinject = cfg.volumetric or i < cfg.num_stacks - 1
            heat, h = _Stack(cfg.num_joints, reinject, cfg, name=f"stack{i}")(h, **kw2d)
            out[f"heatmaps_stack{i}"] = heat
            if i + 1 == cfg.feature_stack:
                out["features"] = h
        if cfg.freeze_2d:
            out = jax.tree.map(jax.lax.stop_gradient, out)
            h = out["features"]
        j3 = cfg.num_joints_3d
        for k, d in enumerate(cfg.depth_resolutions):
            last = k == len(cfg.depth_resolutions) - 1
            vol, h = _Stack(j3 * d, not last, cfg, name=f"vstack{k}")(
                h, train=train, bn_momentum=bn_momentum)
            out[f"volumes_stack{k}"] = vol.reshape(vol.shape[:-1] + (d, j3))
        return out


class _Stem(nn.Module):
    config: HourglassConfig

    @nn.compact
    def __call__(self, x, *, train: bool, bn_momentum):
        cfg = self.config
        s0, s1 = cfg.stem_widths
        kw = {"train": train, "bn_momentum": bn_momentum}
        h = _bn_relu(_conv(s0, 7, 3, "conv", stride=2)(x), "conv_bn", eps=cfg.bn_eps, **kw)
        h = Residual(s1, cfg.bn_eps, name="res0")(h, **kw)
        h = nn.max_pool(h, (2, 2), strides=(2, 2))
        h = Residual(s1, cfg.bn_eps, name="res1")(h, **kw)
        return Residual(cfg.channels, cfg.bn_eps, name="res2")(h, **kw)


def _check(images, config: HourglassConfig):
    shape = resnet.check_images(images)
    m = config.input_multiple
    if len(shape) != 4 or shape[1] % m or shape[2] % m:
        raise ValueError(f"images: expected (B, H, W, 3) with H, W multiples of {m}, got "
                         f"{shape}")


def init(rng: jax.Array, config: HourglassConfig) -> dict[str, Any]:
    """Fresh ``{'params', 'batch_stats'}``; works under eval_shape."""
    m = config.input_multiple
    x = jnp.zeros((1, m, m, 3), jnp.float32)
    v = Hourglass(config).init({"params": rng}, x, train=False, bn_momentum=0.1)
    return {"params": v["params"], "batch_stats": v["batch_stats"]}


def apply(variables, images, *, config: HourglassConfig, train: bool,
          bn_momentum: jax.Array | float = 0.1):
    """``(outputs, batch_stats)`` for images ``(B, H, W, 3)`` (module doc)."""
    _check(images, config)
    out, state = Hourglass(config).apply(
        {"params": variables["params"], "batch_stats": variables["batch_stats"]},
        jnp.asarray(images, jnp.float32), train=train, bn_momentum=bn_momentum,
        mutable=["batch_stats"] if train else [])
    return out, (state["batch_stats"] if train else variables["batch_stats"])


def network_apply(variables, inputs, *, config, train, rng=None, bn_momentum=0.0):
    """:meth:`jpose.nets.network.Network.apply`: :func:`apply`'s dict plus ``heatmaps``
    or ``volumes`` (last stack), ``pose`` and ``score`` (module doc)."""
    del rng  # no dropout
    out, stats = apply(variables, inputs, config=config, train=train, bn_momentum=bn_momentum)
    out = dict(out)
    if config.volumetric:
        out["volumes"] = out[f"volumes_stack{len(config.depth_resolutions) - 1}"]
        peak = heatmap_ops.soft_peak(out["volumes"], half_size=config.soft_peak_half_size)
        out["pose"], out["score"] = peak.coords, peak.score
    else:
        out["heatmaps"] = out[f"heatmaps_stack{config.num_stacks - 1}"]
        out["pose"], out["score"] = heatmap_ops.argmax(out["heatmaps"], num_spatial=2)
    return out, stats


def network_predict(variables, images, *, config):
    """Eval-mode ``pose``: ``(B, J, 2)`` argmax or ``(B, J3, 3)`` soft peak, heatmap
    pixels (voxels)."""
    return network_apply(variables, images, config=config, train=False)[0]["pose"]


def transfer_2d(source: Mapping[str, Any], target: Mapping[str, Any], *,
                config: HourglassConfig) -> dict[str, Any]:
    """``target`` variables with the 2D part (``stem``, ``stack0`` .. ``stack{n-1}``, n =
    ``config.num_stacks``) copied from a 2D hourglass's ``source`` variables.

    The source needs at least n stacks with re-injection, i.e. more than n stacks (an
    MPII-trained 8-stack model for the 2-stack feature part). Raises ``ValueError`` on a
    missing subtree or a shape mismatch. Returns a new dict; nothing is modified.
    """
    out = {col: dict(target[col]) for col in ("params", "batch_stats")}
    names = ["stem"] + [f"stack{i}" for i in range(config.num_stacks)]
    for col in ("params", "batch_stats"):
        for name in names:
            if name not in source[col]:
                raise ValueError(f"source: no {col}/{name} (a 2D hourglass with more than "
                                 f"{config.num_stacks} stacks is needed)")
            src, dst = source[col][name], target[col][name]
            s_struct, d_struct = jax.tree.structure(src), jax.tree.structure(dst)
            if s_struct != d_struct:
                raise ValueError(f"source: {col}/{name} has another structure than the "
                                 f"target's (a stack without re-injection? The source "
                                 f"needs more than {config.num_stacks} stacks)")
            for a, b in zip(jax.tree.leaves(src), jax.tree.leaves(dst)):
                if a.shape != b.shape:
                    raise ValueError(f"source: {col}/{name} shapes differ from the target's "
                                     f"({a.shape} vs {b.shape}): other widths?")
            out[col][name] = src
    return out
