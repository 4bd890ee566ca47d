"""ResNet backbones in torchvision's layout (He et al. 2016; torchvision ``resnet.py``, v1.5).

``conv1`` 7x7 stride 2 -> ``bn1`` -> ReLU -> 3x3 max pool stride 2, then four stages
(``layer1`` .. ``layer4``) of BasicBlocks (ResNet-18/34) or Bottlenecks (ResNet-50/101/152).
As in torchvision ("ResNet v1.5") a Bottleneck downsamples on its 3x3 conv, not on its first
1x1 conv. Converted torchvision weights (:mod:`jpose.nets.torch_weights`) reproduce
torchvision's features.

Inputs and outputs
------------------
* ``images``: ``(..., H, W, 3)`` float RGB **in [0, 1]**, channels last; leading axes are
  batch axes (pooled by batch norm in training). With ``imagenet_normalise=True`` (the
  default) the network subtracts torchvision's ImageNet mean ``(0.485, 0.456, 0.406)`` and
  divides by its std ``(0.229, 0.224, 0.225)`` itself, so callers never normalise and
  converted torchvision weights see what they were trained on. Set it False to feed
  already normalised images.
* Features (:func:`apply`): ``{"stem": (..., H/4, W/4, stem_width), "stage{s}": (...,
  H/2^(s+1), W/2^(s+1), C_s)}`` for s = 1 .. ``num_stages`` (``C_s = widths[s-1]`` times 1
  for BasicBlocks, 4 for Bottlenecks; a ``dilate``d stage keeps its input's resolution).
  ResNet-50 at 64x64: stem 16x16x64, stage1 16x16x256, stage2 8x8x512, stage3 4x4x1024,
  stage4 2x2x2048.

Options
-------
* ``bn_affine=False``: batch norm without the affine ``scale``/``bias`` (MCSS, Mitra et al.
  2020, trains its image embedding network so); torchvision's ``affine=False`` state dicts
  have no ``weight``/``bias`` for those layers.
* ``dilate``: torchvision's ``replace_stride_with_dilation`` for stages 2, 3, 4: the stage's
  stride becomes a dilation of its 3x3 convs (its first block keeps the previous dilation,
  as torchvision does). Unlike torchvision, BasicBlocks accept dilation too.

Batch norm follows :mod:`jpose.nets._layers` (PyTorch-convention runtime momentum, unbiased
running variance). Initialisation is torchvision's: Kaiming-normal (fan_out, ReLU) conv
kernels, unit BN scale, zero BN bias.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

import jax
import jax.numpy as jnp
from flax import linen as nn

from jpose.nets import _layers

__all__ = ["DEPTHS", "IMAGENET_MEAN", "IMAGENET_STD", "VARIANTS", "BatchNorm", "ResNet",
           "ResNetConfig", "apply", "check_images", "init", "network_apply",
           "network_predict", "normalise_images", "variant"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

#: depth -> (bottleneck?, blocks per stage), torchvision's table.
DEPTHS: Mapping[int, tuple[bool, tuple[int, ...]]] = MappingProxyType({
    18: (False, (2, 2, 2, 2)),
    34: (False, (3, 4, 6, 3)),
    50: (True, (3, 4, 6, 3)),
    101: (True, (3, 4, 23, 3)),
    152: (True, (3, 8, 36, 3)),
})

# torchvision: kaiming_normal_(mode="fan_out", nonlinearity="relu"), untruncated.
kaiming_fan_out = nn.initializers.variance_scaling(2.0, "fan_out", "normal")


def _int_tuple(value, name: str) -> tuple[int, ...]:
    if isinstance(value, list):
        value = tuple(value)
    if not isinstance(value, tuple) or not all(
            isinstance(v, int) and not isinstance(v, bool) for v in value):
        raise ValueError(f"{name}: expected a tuple of ints, got {value!r}")
    return value


@dataclasses.dataclass(frozen=True, kw_only=True)
class ResNetConfig:
    """Hyper-parameters of a ResNet backbone (hashable: static under jit).

    Attributes:
      depth: a key of :data:`DEPTHS` (18, 34: BasicBlock; 50, 101, 152: Bottleneck).
      blocks: blocks per stage; ``()`` takes torchvision's for ``depth``.
      widths: per-stage base width (torchvision's ``planes``: 64, 128, 256, 512); a
        Bottleneck stage outputs 4x this.
      stem_width: channels of ``conv1`` (64).
      num_stages: stages built (1..4); features of later stages are absent.
      dilate: per stage 2, 3, 4: replace the stride by dilation (torchvision's
        ``replace_stride_with_dilation``).
      bn_affine: batch norm with learned scale and bias (False: MCSS).
      bn_eps: batch-norm epsilon (torchvision 1e-5).
      imagenet_normalise: inputs are RGB in [0, 1] and the network applies the ImageNet
        mean/std (module doc); False: inputs are already normalised.
    """

    depth: int = 50
    blocks: tuple[int, ...] = ()
    widths: tuple[int, ...] = (64, 128, 256, 512)
    stem_width: int = 64
    num_stages: int = 4
    dilate: tuple[bool, ...] = (False, False, False)
    bn_affine: bool = True
    bn_eps: float = 1e-5
    imagenet_normalise: bool = True

    def __post_init__(self):
        if self.depth not in DEPTHS:
            raise ValueError(f"depth: expected one of {sorted(DEPTHS)}, got {self.depth!r}")
        blocks = _int_tuple(self.blocks, "blocks") or DEPTHS[self.depth][1]
        object.__setattr__(self, "blocks", blocks)
        object.__setattr__(self, "widths", _int_tuple(self.widths, "widths"))
        dilate = tuple(self.dilate) if isinstance(self.dilate, list) else self.dilate
        if not (isinstance(dilate, tuple) and len(dilate) == 3
                and all(isinstance(d, bool) for d in dilate)):
            raise ValueError(f"dilate: expected 3 bools (stages 2, 3, 4), got {self.dilate!r}")
        object.__setattr__(self, "dilate", dilate)
        if len(blocks) != 4 or min(blocks) < 1:
            raise ValueError(f"blocks: expected 4 positive ints, got {blocks!r}")
        if len(self.widths) != 4 or min(self.widths) < 1:
            raise ValueError(f"widths: expected 4 positive ints, got {self.widths!r}")
        if not isinstance(self.num_stages, int) or not 1 <= self.num_stages <= 4:
            raise ValueError(f"num_stages: expected 1..4, got {self.num_stages!r}")
        if not isinstance(self.stem_width, int) or self.stem_width < 1:
            raise ValueError(f"stem_width: expected a positive int, got {self.stem_width!r}")
        if not self.bn_eps > 0.0:
            raise ValueError(f"bn_eps: expected > 0, got {self.bn_eps}")

    @property
    def bottleneck(self) -> bool:
        return DEPTHS[self.depth][0]

    @property
    def expansion(self) -> int:
        return 4 if self.bottleneck else 1

    def stage_channels(self, stage: int) -> int:
        """Output channels of ``stage{stage}`` (1-based)."""
        return self.widths[stage - 1] * self.expansion

    @property
    def out_channels(self) -> int:
        """Channels of the last built stage."""
        return self.stage_channels(self.num_stages)

    @property
    def stride(self) -> int:
        """Output stride of the last built stage (32 for 4 undilated stages)."""
        s = 4
        for i in range(1, self.num_stages):
            s *= 1 if self.dilate[i - 1] else 2
        return s


_TINY = {"widths": (4, 8, 8, 16), "stem_width": 8, "blocks": (1, 1, 1, 1)}

VARIANTS: Mapping[str, Mapping[str, Any]] = MappingProxyType({
    "resnet18": MappingProxyType({"depth": 18}),
    "resnet34": MappingProxyType({"depth": 34}),
    "resnet50": MappingProxyType({"depth": 50}),
    "resnet101": MappingProxyType({"depth": 101}),
    "resnet152": MappingProxyType({"depth": 152}),
    # Tiny variants for tests and CI smoke runs (the real block types, 1 block per stage).
    "tiny_resnet18": MappingProxyType({"depth": 18, **_TINY}),
    "tiny_resnet50": MappingProxyType({"depth": 50, **_TINY}),
})


def variant(name: str, **overrides: Any) -> ResNetConfig:
    """Config of a named variant, e.g. ``variant("resnet50", bn_affine=False)``."""
    if name not in VARIANTS:
        raise ValueError(f"name: unknown ResNet variant {name!r}; known: {sorted(VARIANTS)}")
    return ResNetConfig(**{**VARIANTS[name], **overrides})


# ----------------------------------------------------------------------------- layers


class BatchNorm(nn.Module):
    """:class:`jpose.nets._layers.BatchNorm` with optional affine parameters.

    Same conventions and variable names (channels last, statistics over all other axes,
    PyTorch-convention runtime momentum, unbiased running variance; ``params/{scale,
    bias}``, ``batch_stats/{mean, var}``); ``affine=False`` has no ``scale``/``bias``
    (PyTorch ``BatchNorm2d(affine=False)``).
    """

    affine: bool = True
    eps: float = 1e-5

    @nn.compact
    def __call__(self, x, *, train: bool, momentum):
        c = x.shape[-1]
        bshape = (1,) * (x.ndim - 1) + (c,)
        if self.affine:
            scale = self.param("scale", nn.initializers.ones, (c,), jnp.float32)
            bias = self.param("bias", nn.initializers.zeros, (c,), jnp.float32)
        ra_mean = self.variable("batch_stats", "mean", lambda: jnp.zeros((c,), jnp.float32))
        ra_var = self.variable("batch_stats", "var", lambda: jnp.ones((c,), jnp.float32))
        if train:
            axes = tuple(range(x.ndim - 1))
            mean = jnp.mean(x, axis=axes)
            var = jnp.mean(jnp.square(x - mean.reshape(bshape)), axis=axes)
            if not self.is_initializing():
                n = _layers._count_as_float(x.shape[:-1])
                unbiased = var * (n / jnp.maximum(n - 1.0, 1.0))
                m = jnp.asarray(momentum, jnp.float32)
                ra_mean.value = (1.0 - m) * ra_mean.value + m * mean
                ra_var.value = (1.0 - m) * ra_var.value + m * unbiased
        else:
            mean, var = ra_mean.value, ra_var.value
        mul = jax.lax.rsqrt(var + jnp.float32(self.eps))
        shift = -mean * mul
        if self.affine:
            mul, shift = scale * mul, bias + scale * shift
        return x * mul.reshape(bshape) + shift.reshape(bshape)


def conv(features: int, kernel: int, *, name: str, stride: int = 1, dilation: int = 1,
         padding: int | None = None, use_bias: bool = False, kernel_init=kaiming_fan_out,
         bias_init=nn.initializers.zeros) -> nn.Conv:
    """2D conv, PyTorch's symmetric padding (default ``dilation * (kernel - 1) // 2``);
    kernel layout HWIO."""
    p = dilation * (kernel - 1) // 2 if padding is None else padding
    return nn.Conv(features, (kernel, kernel), strides=(stride, stride),
                   padding=((p, p), (p, p)), kernel_dilation=(dilation, dilation),
                   use_bias=use_bias, kernel_init=kernel_init, bias_init=bias_init, name=name)


def normalise_images(images: jax.Array) -> jax.Array:
    """ImageNet normalisation of RGB in [0, 1], channels last."""
    shape = (1,) * (images.ndim - 1) + (3,)
    mean = jnp.asarray(IMAGENET_MEAN, jnp.float32).reshape(shape)
    std = jnp.asarray(IMAGENET_STD, jnp.float32).reshape(shape)
    return (images - mean) / std


class Block(nn.Module):
    """A BasicBlock or (v1.5) Bottleneck; submodule names are torchvision's
    (``conv1``, ``bn1``, ..., ``downsample_conv``, ``downsample_bn``)."""

    planes: int
    stride: int
    dilation: int
    bottleneck: bool
    downsample: bool
    bn_affine: bool
    bn_eps: float

    @nn.compact
    def __call__(self, x, *, train: bool, bn_momentum):
        def bn(h, name):
            return BatchNorm(affine=self.bn_affine, eps=self.bn_eps, name=name)(
                h, train=train, momentum=bn_momentum)

        if self.bottleneck:
            h = nn.relu(bn(conv(self.planes, 1, name="conv1")(x), "bn1"))
            h = conv(self.planes, 3, stride=self.stride, dilation=self.dilation, name="conv2")(h)
            h = nn.relu(bn(h, "bn2"))
            h = bn(conv(self.planes * 4, 1, name="conv3")(h), "bn3")
            out = self.planes * 4
        else:
            h = conv(self.planes, 3, stride=self.stride, dilation=self.dilation, name="conv1")(x)
            h = nn.relu(bn(h, "bn1"))
            h = bn(conv(self.planes, 3, dilation=self.dilation, name="conv2")(h), "bn2")
            out = self.planes
        identity = x
        if self.downsample:
            identity = bn(conv(out, 1, stride=self.stride, name="downsample_conv")(x),
                          "downsample_bn")
        return nn.relu(h + identity)


class ResNet(nn.Module):
    """The backbone on ``(N, H, W, 3)``; returns the feature dict of the module doc.

    Parameter names: ``conv1``, ``bn1``, ``layer{s}_{b}`` (stage s = 1..4, block b) with the
    :class:`Block` names inside.
    """

    config: ResNetConfig

    @nn.compact
    def __call__(self, x, *, train: bool, bn_momentum) -> dict[str, jax.Array]:
        cfg = self.config
        if cfg.imagenet_normalise:
            x = normalise_images(x)
        h = conv(cfg.stem_width, 7, stride=2, name="conv1")(x)
        h = BatchNorm(affine=cfg.bn_affine, eps=cfg.bn_eps, name="bn1")(
            h, train=train, momentum=bn_momentum)
        h = nn.max_pool(nn.relu(h), (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)))
        features = {"stem": h}
        inplanes, dilation = cfg.stem_width, 1
        for s in range(cfg.num_stages):
            stride, previous = (1 if s == 0 else 2), dilation
            if s > 0 and cfg.dilate[s - 1]:
                dilation, stride = dilation * stride, 1
            planes = cfg.widths[s]
            for b in range(cfg.blocks[s]):
                h = Block(planes=planes, stride=stride if b == 0 else 1,
                          dilation=previous if b == 0 else dilation,
                          bottleneck=cfg.bottleneck,
                          downsample=b == 0 and (stride != 1
                                                 or inplanes != planes * cfg.expansion),
                          bn_affine=cfg.bn_affine, bn_eps=cfg.bn_eps,
                          name=f"layer{s + 1}_{b}")(h, train=train, bn_momentum=bn_momentum)
                inplanes = planes * cfg.expansion
            features[f"stage{s + 1}"] = h
        return features


# ----------------------------------------------------------------------------- pure API


def check_images(images, name: str = "images") -> tuple[Any, ...]:
    """Validate ``(..., H, W, 3)`` floating images; returns the shape."""
    shape = tuple(getattr(images, "shape", ()))
    if len(shape) < 4 or shape[-1] != 3:
        raise ValueError(f"{name}: expected shape (..., H, W, 3) with at least one batch "
                         f"axis, got {shape}")
    dtype = getattr(images, "dtype", None)
    if dtype is None or not jnp.issubdtype(dtype, jnp.floating):
        raise ValueError(f"{name}: expected a floating-point array (RGB in [0, 1]), got "
                         f"dtype {dtype}")
    return shape


def _check_variables(variables) -> None:
    if (not isinstance(variables, Mapping) or "params" not in variables
            or "batch_stats" not in variables):
        raise ValueError("variables: expected a mapping with 'params' and 'batch_stats' "
                         "(from init)")


def init(rng: jax.Array, config: ResNetConfig) -> dict[str, Any]:
    """Fresh ``{'params', 'batch_stats'}`` (torchvision init); works under eval_shape."""
    x = jnp.zeros((1, 32, 32, 3), jnp.float32)
    v = ResNet(config).init({"params": rng}, x, train=False, bn_momentum=0.1)
    return {"params": v["params"], "batch_stats": v["batch_stats"]}


def apply(variables, images, *, config: ResNetConfig, train: bool,
          bn_momentum: jax.Array | float = 0.1):
    """``(features, batch_stats)`` of images ``(..., H, W, 3)`` (module doc); every leading
    axis is a batch axis. ``batch_stats`` are updated when ``train``, else the input ones."""
    shape = check_images(images)
    _check_variables(variables)
    lead = shape[:-3]
    x = jnp.asarray(images, jnp.float32).reshape((-1,) + shape[-3:])
    feats, state = ResNet(config).apply(
        {"params": variables["params"], "batch_stats": variables["batch_stats"]}, x,
        train=train, bn_momentum=bn_momentum, mutable=["batch_stats"] if train else [])
    feats = {k: v.reshape(lead + v.shape[1:]) for k, v in feats.items()}
    return feats, (state["batch_stats"] if train else variables["batch_stats"])


def network_apply(variables, inputs, *, config, train, rng=None, bn_momentum=0.0):
    """:meth:`jpose.nets.network.Network.apply` for the ``resnet`` kind: the feature dict
    plus ``"pooled"`` (global average of the last stage, ``(..., C)``). A backbone has no
    ``"pose"`` output."""
    del rng  # no dropout
    feats, stats = apply(variables, inputs, config=config, train=train,
                         bn_momentum=bn_momentum)
    last = feats[f"stage{config.num_stages}"]
    return {**feats, "pooled": jnp.mean(last, axis=(-3, -2))}, stats


def network_predict(variables, images, *, config):
    """:meth:`jpose.nets.network.Network.predict`: pooled features ``(..., C)``, eval mode."""
    return network_apply(variables, images, config=config, train=False)[0]["pooled"]
