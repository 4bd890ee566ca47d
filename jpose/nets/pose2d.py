"""Image 2D pose network with optional Temporal Consistency Exploration (thesis ch. 2).

Single frame (``tce="none"``)::

  ResNet-50 stages 1-4 (stride 32, 2048 channels: 8x8 at 256x256)
  -> dilated spatial pyramid: 1x1 reduce (2048 -> 512) + BN + ReLU; parallel branches
     [1x1; 3x3 dilation 1; 3x3 dilation 2; 3x3 dilation 4] (512 each) + BN + ReLU;
     concatenate (4 x 512 = 2048); add the backbone features (residual)
  -> 3 x [4x4 stride-2 deconvolution (256, no bias) + BN + ReLU]   (8 -> 16 -> 32 -> 64)
  -> 1x1 conv to J heatmaps                                         (64x64 from 256x256)

Video (``tce="sum"`` TCE-S, ``"convlstm"`` TCE-C; ``bidirectional=True`` TCE-BC): the same
network, with the multi-scale TCE in the pyramid: every frame of the window goes through
the backbone, the 1x1 reduce and the four branches; each branch has its own
:class:`jpose.nets.tce.TCE` (hidden = the branch width, 512), whose output for the centre
frame replaces that branch's features before the concatenation (back to 2048), the
residual (the centre frame's backbone features) and the decoder.

Widths are configurable (``pyramid_dilations``, ``deconv_width``, ``num_deconv``, the
backbone variant); the branch width is the backbone's output channels divided by the
number of branches, so that the concatenation matches the residual.

Inputs and outputs
------------------
* ``images``: ``(B, H, W, 3)`` for ``tce="none"``; ``(B, T, H, W, 3)`` windows for TCE
  with ``T = config.window`` (``N + 1``: the N preceding frames and the current one, last;
  bidirectional ``2N + 1``, the current frame at the centre ``config.centre = N``). RGB in
  [0, 1]; the backbone applies the ImageNet normalisation (:mod:`jpose.nets.resnet`).
  H and W must be multiples of 32.
* Outputs (:func:`apply`): ``heatmaps (B, H/4, W/4, J)`` for the (centre) frame; the
  :class:`~jpose.nets.network.Network` form adds ``"pose"`` ``(B, J, 2)`` (argmax ``(x,
  y)`` in heatmap pixels, :func:`jpose.objectives.heatmaps.argmax`) and ``"score"`` (the
  heatmap value there).

Initialisation: the backbone as torchvision; deconvolutions and the heatmap conv normal
with std 0.001, zero bias (Xiao et al. 2018's simple baseline); the other convs Kaiming;
TCE offsets zero (identity deformation). Load ImageNet weights into the backbone with
:func:`jpose.nets.torch_weights.resnet_from_torchvision` and :func:`with_backbone`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

import jax
import jax.numpy as jnp
from flax import linen as nn

from jpose.nets import resnet, tce as tce_ops
from jpose.objectives import heatmaps as heatmap_ops  # decoding only; no cycle

__all__ = ["TCE_MODES", "VARIANTS", "Pose2DConfig", "Pose2DNet", "apply", "init",
           "network_apply", "network_predict", "variant", "with_backbone"]

TCE_MODES = ("none",) + tce_ops.AGGREGATIONS


@dataclasses.dataclass(frozen=True, kw_only=True)
class Pose2DConfig:
    """Hyper-parameters (hashable, static under jit).

    Attributes:
      backbone: a :data:`jpose.nets.resnet.VARIANTS` name; its four stages are used
        undilated (stride 32).
      bn_affine: batch-norm affine parameters in the backbone.
      num_joints: J heatmaps (MPII 16).
      pyramid_dilations: dilations of the 3x3 pyramid branches (a 1x1 branch is always
        first).
      deconv_width, num_deconv: the decoder (256, 3: output stride 4).
      tce: "none" (single frame), "sum" (TCE-S) or "convlstm" (TCE-C).
      bidirectional: also the succeeding frames, ``H = H^p + H^s`` (with "convlstm":
        TCE-BC).
      num_neighbours: N frames on each used side (6).
      tce_offsets_from: input of the offsets conv, see :mod:`jpose.nets.tce`.
      bn_eps: batch-norm epsilon.
    """

    backbone: str = "resnet50"
    bn_affine: bool = True
    num_joints: int = 16
    pyramid_dilations: tuple[int, ...] = (1, 2, 4)
    deconv_width: int = 256
    num_deconv: int = 3
    tce: str = "none"
    bidirectional: bool = False
    num_neighbours: int = 6
    tce_offsets_from: str = "state_and_neighbour"
    bn_eps: float = 1e-5

    def __post_init__(self):
        if isinstance(self.pyramid_dilations, list):
            object.__setattr__(self, "pyramid_dilations", tuple(self.pyramid_dilations))
        if not all(isinstance(d, int) and d >= 1 for d in self.pyramid_dilations):
            raise ValueError(f"pyramid_dilations: expected positive ints, got "
                             f"{self.pyramid_dilations!r}")
        if self.backbone not in resnet.VARIANTS:
            raise ValueError(f"backbone: expected one of {sorted(resnet.VARIANTS)}, got "
                             f"{self.backbone!r}")
        if self.tce not in TCE_MODES:
            raise ValueError(f"tce: expected one of {TCE_MODES}, got {self.tce!r}")
        if self.bidirectional and self.tce == "none":
            raise ValueError("bidirectional: needs a TCE (tce='sum' or 'convlstm')")
        if self.tce_offsets_from not in tce_ops.OFFSETS_FROM:
            raise ValueError(f"tce_offsets_from: expected one of {tce_ops.OFFSETS_FROM}, "
                             f"got {self.tce_offsets_from!r}")
        for name in ("num_joints", "deconv_width", "num_neighbours"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ValueError(f"{name}: expected a positive int, got {v!r}")
        if not isinstance(self.num_deconv, int) or self.num_deconv < 0:
            raise ValueError(f"num_deconv: expected an int >= 0, got {self.num_deconv!r}")
        c, n = self.backbone_config.out_channels, 1 + len(self.pyramid_dilations)
        if c % n:
            raise ValueError(f"pyramid_dilations: {n} branches do not divide the backbone's "
                             f"{c} channels (the concatenation must match the residual)")

    @property
    def backbone_config(self) -> resnet.ResNetConfig:
        return resnet.variant(self.backbone, num_stages=4, bn_affine=self.bn_affine,
                              bn_eps=self.bn_eps)

    @property
    def branch_width(self) -> int:
        """Channels of each pyramid branch (and TCE hidden size): 2048 / 4 = 512."""
        return self.backbone_config.out_channels // (1 + len(self.pyramid_dilations))

    @property
    def window(self) -> int:
        """Frames per input window: 1, N + 1 or (bidirectional) 2N + 1."""
        if self.tce == "none":
            return 1
        return (2 if self.bidirectional else 1) * self.num_neighbours + 1

    @property
    def centre(self) -> int:
        """Index of the current frame in the window."""
        return 0 if self.tce == "none" else self.num_neighbours

    @property
    def stride(self) -> int:
        """Input pixels per heatmap pixel (32 / 2^num_deconv = 4)."""
        return self.backbone_config.stride // 2 ** self.num_deconv


_TINY = {"backbone": "tiny_resnet50", "deconv_width": 8}

VARIANTS: Mapping[str, Mapping[str, Any]] = MappingProxyType({
    "pose2d_resnet50": MappingProxyType({}),
    "pose2d_tce_s": MappingProxyType({"tce": "sum"}),
    "pose2d_tce_c": MappingProxyType({"tce": "convlstm"}),
    "pose2d_tce_bc": MappingProxyType({"tce": "convlstm", "bidirectional": True}),
    # Tiny variants for tests and CI smoke runs (2 neighbours).
    "tiny_pose2d": MappingProxyType(_TINY),
    "tiny_pose2d_tce_s": MappingProxyType({**_TINY, "tce": "sum", "num_neighbours": 2}),
    "tiny_pose2d_tce_c": MappingProxyType({**_TINY, "tce": "convlstm", "num_neighbours": 2}),
    "tiny_pose2d_tce_bc": MappingProxyType({**_TINY, "tce": "convlstm", "bidirectional": True,
                                            "num_neighbours": 2}),
})


def variant(name: str, **overrides: Any) -> Pose2DConfig:
    if name not in VARIANTS:
        raise ValueError(f"name: unknown pose2d variant {name!r}; known: {sorted(VARIANTS)}")
    return Pose2DConfig(**{**VARIANTS[name], **overrides})


_small_normal = nn.initializers.normal(0.001)


class Pose2DNet(nn.Module):
    """The network on ``(B, T, H, W, 3)`` (T = 1 without TCE) -> heatmaps ``(B, H/4, W/4,
    J)``. Parameter names: ``backbone`` (:class:`jpose.nets.resnet.ResNet`),
    ``pyramid_reduce(_bn)``, ``pyramid_branch{i}(_bn)``, ``tce{i}`` (per branch),
    ``deconv{i}(_bn)``, ``heatmaps``."""

    config: Pose2DConfig

    @nn.compact
    def __call__(self, x, *, train: bool, bn_momentum):
        cfg = self.config
        b, t = x.shape[:2]

        def bn_relu(h, name):
            return nn.relu(resnet.BatchNorm(affine=True, eps=cfg.bn_eps, name=name)(
                h, train=train, momentum=bn_momentum))

        feats = resnet.ResNet(cfg.backbone_config, name="backbone")(
            x.reshape((b * t,) + x.shape[2:]), train=train, bn_momentum=bn_momentum)["stage4"]
        residual = feats.reshape((b, t) + feats.shape[1:])[:, cfg.centre]
        if cfg.tce == "none":
            feats = residual
        width = cfg.branch_width
        reduced = bn_relu(resnet.conv(width, 1, name="pyramid_reduce")(feats),
                          "pyramid_reduce_bn")
        branches = []
        for i, d in enumerate((0,) + cfg.pyramid_dilations):
            k = 1 if d == 0 else 3
            y = resnet.conv(width, k, dilation=max(d, 1), name=f"pyramid_branch{i}")(reduced)
            y = bn_relu(y, f"pyramid_branch{i}_bn")
            if cfg.tce != "none":
                y = tce_ops.TCE(cfg.tce, cfg.bidirectional, cfg.tce_offsets_from,
                                name=f"tce{i}")(y.reshape((b, t) + y.shape[1:]),
                                                centre=cfg.centre)
            branches.append(y)
        h = jnp.concatenate(branches, axis=-1) + residual
        for i in range(cfg.num_deconv):
            h = nn.ConvTranspose(cfg.deconv_width, (4, 4), strides=(2, 2),
                                 padding=((2, 2), (2, 2)), use_bias=False,
                                 kernel_init=_small_normal, name=f"deconv{i}")(h)
            h = bn_relu(h, f"deconv{i}_bn")
        return nn.Conv(cfg.num_joints, (1, 1), kernel_init=_small_normal,
                       name="heatmaps")(h)


def _check(images, config: Pose2DConfig):
    shape = resnet.check_images(images)
    if config.tce == "none":
        if len(shape) != 4:
            raise ValueError(f"images: expected (B, H, W, 3) for tce='none', got {shape}")
    elif len(shape) != 5 or shape[1] != config.window:
        raise ValueError(f"images: expected (B, T={config.window}, H, W, 3) windows for "
                         f"tce={config.tce!r} (bidirectional={config.bidirectional}, "
                         f"N={config.num_neighbours}), got {shape}")
    if shape[-3] % 32 or shape[-2] % 32:
        raise ValueError(f"images: H and W must be multiples of 32, got {shape}")
    return shape


def init(rng: jax.Array, config: Pose2DConfig) -> dict[str, Any]:
    """Fresh ``{'params', 'batch_stats'}``; works under eval_shape."""
    x = jnp.zeros((1, config.window, 32, 32, 3), jnp.float32)
    v = Pose2DNet(config).init({"params": rng}, x, train=False, bn_momentum=0.1)
    return {"params": v["params"], "batch_stats": v["batch_stats"]}


def apply(variables, images, *, config: Pose2DConfig, train: bool,
          bn_momentum: jax.Array | float = 0.1):
    """``(heatmaps (B, H/4, W/4, J), batch_stats)`` (module doc). In training, batch norm
    pools the statistics of every frame of every window."""
    _check(images, config)
    x = jnp.asarray(images, jnp.float32)
    if config.tce == "none":
        x = x[:, None]
    out, state = Pose2DNet(config).apply(
        {"params": variables["params"], "batch_stats": variables["batch_stats"]}, x,
        train=train, bn_momentum=bn_momentum, mutable=["batch_stats"] if train else [])
    return out, (state["batch_stats"] if train else variables["batch_stats"])


def with_backbone(variables, backbone_variables) -> dict[str, Any]:
    """``variables`` with the backbone's params and batch stats replaced (e.g. converted
    torchvision ImageNet weights); a new dict."""
    out = {"params": dict(variables["params"]), "batch_stats": dict(variables["batch_stats"])}
    out["params"]["backbone"] = backbone_variables["params"]
    out["batch_stats"]["backbone"] = backbone_variables["batch_stats"]
    return out


def network_apply(variables, inputs, *, config, train, rng=None, bn_momentum=0.0):
    """:meth:`jpose.nets.network.Network.apply`: ``{"heatmaps", "pose", "score"}``."""
    del rng  # no dropout
    out, stats = apply(variables, inputs, config=config, train=train, bn_momentum=bn_momentum)
    pose, score = heatmap_ops.argmax(out, num_spatial=2)
    return {"heatmaps": out, "pose": pose, "score": score}, stats


def network_predict(variables, images, *, config):
    """Eval-mode argmax joints ``(B, J, 2)`` in heatmap pixels (x, y)."""
    return network_apply(variables, images, config=config, train=False)[0]["pose"]
