"""VideoPose3D temporal convolutional model (Pavllo et al., CVPR 2019).

Dilated temporal 1D convolutions lift a sequence of 2D keypoints to 3D poses
(facebookresearch/VideoPose3D, ``common/model.py``); the paper's "w/o dilation" ablation
(``dilated=False``, VideoPose3D's ``dense=True``) uses the same blocks without dilation.
Callers see pure functions of ``(variables, inputs)``; the Flax linen module
:class:`TemporalModel` underneath is public only for composition.

Inputs and outputs
------------------
* ``keypoints``: ``(..., T, J_in, C_in)`` float. ``C_in = 2`` normalised screen
  coordinates (``camera.pixels_to_screen``: x in [-1, 1], y scaled by the same factor);
  extra features (e.g. detector confidence) go after them and raise ``in_features``.
  Joints in the dataset's skeleton order. Leading axes ``...`` are batch axes (zero or
  more); in training, batch norm pools statistics over all of them and over time.
* Output of the pose model: ``(..., T_out, J_out, 3)`` in **metres**, camera frame (x right,
  y down, z forward), root-relative: VideoPose3D trains it against poses whose root joint
  was set to zero, so the root slot carries no information and callers put the trajectory
  there (from the trajectory model or ground truth).
* The **trajectory model** is the same network with ``num_joints_out=1`` (variants
  ``trajectory_*``): its single "joint" is the absolute root position in camera coordinates,
  metres (VideoPose3D's semi-supervised ``model_traj``). Nothing in the network differs;
  only the training target does, so there is no root-relative convention for it.

Two forms, one parameter tree
-----------------------------
* :func:`apply` -- the *sequence form*, for inference on whole sequences (and VideoPose3D's
  ``TemporalModel``): valid dilated convolutions; by default the input is padded at both
  borders by replicating the edge frames (``receptive_field // 2`` on each side; causal:
  ``receptive_field - 1`` on the left) so that ``T_out == T``. Works under ``jax.jit`` and
  ``jax.export`` with symbolic batch and time sizes.
* :func:`apply_strided` -- the *strided single-frame form*, for training
  (``TemporalModelOptimized1f``): each conv has stride = width and no dilation, the input
  is one window of exactly ``receptive_field`` frames and the output is the one frame at its
  centre (causal: its last frame). It skips the work the sequence form spends on frames
  that a single output does not need. The stride trick needs each layer's dilation to equal
  the product of the widths before it, so for a dense model (``dilated=False``) this form
  runs the sequence form's valid convolutions over the window instead (VideoPose3D has no
  optimised training model for ``dense`` either); the window still gives one output frame.

Both forms give the same output for the same window (tested).

Causal variant
--------------
With ``causal=True`` the residual slices are shifted as in VideoPose3D so that output frame
``t`` of the sequence form depends only on input frames ``<= t`` (for real-time use).

Batch-norm momentum schedule
----------------------------
``bn_momentum`` is a call argument in PyTorch's convention (weight of the new batch
statistic; default 0.1). VideoPose3D decays it from 0.1 to 0.001 over training:
``m = 0.1 * (0.001 / 0.1) ** (epoch / (num_epochs - 1))``; pass it as a traced ``jnp``
scalar to a jitted train step and the schedule causes no recompilation.

Bad inputs
----------
Shapes are checked at trace time (``ValueError`` naming the argument). NaN/inf keypoints
cannot be checked inside ``jit``: eager calls check concrete inputs automatically; jitted
callers should run :func:`check_inputs` on the host batch (the data pipeline does). A NaN
frame would otherwise spread to every output frame whose receptive field contains it, and
in training through batch norm to the whole batch and the running statistics.

CPU performance note: every layer is a single ``lax.conv_general_dilated`` (dilated conv in
the sequence form, strided conv in the training form, width-1 conv for the pointwise
layers). On XLA:CPU this measured 1.3-2x faster than expressing the conv as shifted slices
and one matmul, and faster than ``dot`` even for the 1x1 layers (see
``benchmarks/temporal_inference.py``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import linen as nn
from jax import lax

from jpose.nets import _layers

__all__ = [
    "VARIANTS",
    "TemporalConfig",
    "TemporalModel",
    "apply",
    "apply_strided",
    "check_inputs",
    "count_params",
    "flops_per_frame",
    "from_videopose3d",
    "init",
    "variant",
]

# Variables: {"params": ..., "batch_stats": ...}
Variables = Mapping[str, Any]

_CONV_DIMS = ("NWC", "WIO", "NWC")  # (batch, time, channels); kernel (width, in, out)


@dataclasses.dataclass(frozen=True, kw_only=True)
class TemporalConfig:
    """Hyperparameters of the temporal model (hashable: usable as a static jit argument).

    Attributes:
      filter_widths: temporal kernel width of each layer: the first is the expand conv, each
        further one opens a residual block (a width-w conv, then a 1x1 conv). Must be odd
        (VideoPose3D's residual slicing needs a centre frame). With ``dilated`` each block's
        conv is dilated by the product of the previous widths and
        ``receptive_field = prod(filter_widths)``: (3, 3, 3) -> 27, (3, 3, 3, 3) -> 81,
        (3, 3, 3, 3, 3) -> 243; all widths 1 -> a single-frame model.
      dilated: True (VideoPose3D's default): dilation as above. False: every conv has
        dilation 1 (the paper's "w/o dilation" ablation) and
        ``receptive_field = 1 + sum(w - 1 for w in filter_widths)``. Here
        ``filter_widths`` are always the real kernel widths: VideoPose3D's
        ``TemporalModel(filter_widths=[3, 3, 3], dense=True)`` widens its block kernels to
        ``(w - 1) * dilation + 1`` and so is ``filter_widths=(3, 7, 19), dilated=False``.
      num_joints_in: J_in of the 2D input.
      in_features: C_in, features per input joint (2 = normalised screen x, y).
      num_joints_out: J_out of the 3D output (1 for the trajectory model).
      channels: width of every hidden layer (VideoPose3D: 1024).
      dropout: drop probability after every hidden ReLU (VideoPose3D: 0.25).
      causal: output frame t uses input frames <= t only.
      bn_eps: batch-norm epsilon (PyTorch default 1e-5).
      centre_joints: input joints whose mean is each frame's body centre; non-empty turns
        on the **body-frame input features** (:func:`body_frame_features`): per frame the
        2D is centred on it and divided by its RMS spread, and the centre (2) and the log
        of the spread (1) are appended to every joint's features, so the network sees the
        pose's shape at one scale whatever the person's distance and place in the image,
        and still knows both (they set the viewing ray and perspective). For models
        trained over many cameras (``jpose.datasets.wild``); () is VideoPose3D's raw input.
    """

    filter_widths: tuple[int, ...] = (3, 3, 3)
    num_joints_in: int = 17
    in_features: int = 2
    num_joints_out: int = 17
    channels: int = 1024
    dropout: float = 0.25
    causal: bool = False
    dilated: bool = True
    bn_eps: float = 1e-5
    centre_joints: tuple[int, ...] = ()

    def __post_init__(self):
        if isinstance(self.centre_joints, list):
            object.__setattr__(self, "centre_joints", tuple(self.centre_joints))
        if not all(isinstance(j, int) and 0 <= j < self.num_joints_in
                   for j in self.centre_joints):
            raise ValueError(f"centre_joints: expected joint indices in [0, "
                             f"{self.num_joints_in}), got {self.centre_joints!r}")
        fw = self.filter_widths
        if isinstance(fw, list):  # accept lists, store a hashable tuple
            fw = tuple(fw)
            object.__setattr__(self, "filter_widths", fw)
        if (
            not isinstance(fw, tuple)
            or not fw
            or not all(isinstance(w, int) and not isinstance(w, bool) and w >= 1 for w in fw)
        ):
            raise ValueError(
                f"filter_widths: expected a non-empty tuple of positive ints, got {fw!r}"
            )
        if any(w % 2 == 0 for w in fw):
            raise ValueError(
                f"filter_widths: only odd widths are supported (as in VideoPose3D: the "
                f"residual of each block is the centre frame of its window), got {fw}"
            )
        for name in ("num_joints_in", "in_features", "num_joints_out", "channels"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ValueError(f"{name}: expected a positive int, got {v!r}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout: expected a probability in [0, 1), got {self.dropout}")
        if not isinstance(self.dilated, bool):
            raise ValueError(f"dilated: expected a bool, got {self.dilated!r}")
        if not self.bn_eps > 0.0:
            raise ValueError(f"bn_eps: expected > 0, got {self.bn_eps}")

    @property
    def network_features(self) -> int:
        """Features per joint the first layer sees (``in_features`` + 3 with
        ``centre_joints``)."""
        return self.in_features + (BODY_FRAME_EXTRA if self.centre_joints else 0)

    @property
    def dilations(self) -> tuple[int, ...]:
        """Dilation of each layer's width-w conv (expand conv first; 1x1 convs have none)."""
        if not self.dilated:
            return (1,) * len(self.filter_widths)
        out, d = [], 1
        for w in self.filter_widths:
            out.append(d)
            d *= w
        return tuple(out)

    @property
    def receptive_field(self) -> int:
        """Number of input frames that one output frame depends on.

        ``1 + sum((w - 1) * dilation)`` over the layers; with dilation this telescopes to
        ``prod(filter_widths)``.
        """
        return 1 + sum((w - 1) * d for w, d in zip(self.filter_widths, self.dilations))

    @property
    def padding(self) -> tuple[int, int]:
        """(left, right) frames of edge padding the sequence form adds so T_out == T."""
        rf = self.receptive_field
        if self.causal:
            return (rf - 1, 0)
        return (rf // 2, rf // 2)


# STYLE habit 6: variant string -> hyperparameters; tiny test variants next to the real ones.
VARIANTS: Mapping[str, Mapping[str, Any]] = MappingProxyType(
    {
        # Single-frame baseline of VideoPose3D §6.1 (8.49M parameters): the B = 4 block
        # architecture of the 243-frame model with every filter width 1.
        "videopose_1f": MappingProxyType({"filter_widths": (1, 1, 1, 1, 1)}),
        "videopose_27f": MappingProxyType({"filter_widths": (3, 3, 3)}),
        # "27f w/o dilation" ablation (29.53M parameters): what VideoPose3D's dense=True
        # builds from filter_widths (3, 3, 3), block kernels (w - 1) * dilation + 1 = 7, 19.
        "videopose_27f_dense": MappingProxyType({"filter_widths": (3, 7, 19), "dilated": False}),
        "videopose_81f": MappingProxyType({"filter_widths": (3, 3, 3, 3)}),
        "videopose_243f": MappingProxyType({"filter_widths": (3, 3, 3, 3, 3)}),
        "videopose_27f_causal": MappingProxyType({"filter_widths": (3, 3, 3), "causal": True}),
        "videopose_81f_causal": MappingProxyType({"filter_widths": (3, 3, 3, 3), "causal": True}),
        "videopose_243f_causal": MappingProxyType(
            {"filter_widths": (3, 3, 3, 3, 3), "causal": True}
        ),
        "trajectory_27f": MappingProxyType({"filter_widths": (3, 3, 3), "num_joints_out": 1}),
        "trajectory_81f": MappingProxyType({"filter_widths": (3, 3, 3, 3), "num_joints_out": 1}),
        "trajectory_243f": MappingProxyType(
            {"filter_widths": (3, 3, 3, 3, 3), "num_joints_out": 1}
        ),
        # Tiny variants for tests and CI smoke runs.
        "tiny_1f": MappingProxyType({"filter_widths": (1,), "channels": 16}),
        "tiny_9f": MappingProxyType({"filter_widths": (3, 3), "channels": 16}),
        "tiny_27f": MappingProxyType({"filter_widths": (3, 3, 3), "channels": 16}),
        "tiny_27f_dense": MappingProxyType(
            {"filter_widths": (3, 7, 19), "dilated": False, "channels": 16}
        ),
        "tiny_9f_causal": MappingProxyType(
            {"filter_widths": (3, 3), "channels": 16, "causal": True}
        ),
        "tiny_trajectory_9f": MappingProxyType(
            {"filter_widths": (3, 3), "channels": 16, "num_joints_out": 1}
        ),
    }
)


def variant(name: str, **overrides: Any) -> TemporalConfig:
    """Config of a named variant, with optional field overrides.

    Example: ``variant("videopose_243f", num_joints_in=16, dropout=0.0)``.
    """
    if name not in VARIANTS:
        raise ValueError(
            f"name: unknown temporal model variant {name!r}; known: {sorted(VARIANTS)}"
        )
    return TemporalConfig(**{**VARIANTS[name], **overrides})


def flops_per_frame(config: TemporalConfig) -> int:
    """2 x multiply-accumulates of the convolutions per output frame of the sequence form.

    This is the analytic cost of one output frame of a long sequence, where every layer's
    work is shared between neighbouring output frames (border frames add a little). The
    strided training form shares nothing between windows and executes 2.1x (27 frames),
    4.5x (81) or 10.4x (243) more per output frame; see
    ``benchmarks/training_throughput.py:strided_flops_per_clip`` (dilated models only; a
    dense model's training form is the sequence form on one window). Batch norm, ReLU and
    residual adds are not counted. Dilation does not change the count: only the widths do.
    """
    c, fw = config.channels, config.filter_widths
    macs = config.num_joints_in * config.network_features * c * fw[0]  # expand conv
    for w in fw[1:]:
        macs += c * c * w + c * c  # dilated conv + 1x1 conv of each block
    macs += c * config.num_joints_out * 3  # shrink conv (bias adds not counted)
    return 2 * macs


class _TemporalConv(nn.Module):
    """Conv over time with kernel (width, in, out), applied in either form."""

    features: int
    width: int
    use_bias: bool

    @nn.compact
    def __call__(self, x: jax.Array, *, dilation: int, strided: bool) -> jax.Array:
        cin = x.shape[-1]
        kernel = self.param(
            "kernel", _layers.torch_kernel_init, (self.width, cin, self.features), jnp.float32
        )
        if strided:
            # Training form: non-overlapping windows of `width` frames, one output each.
            y = lax.conv_general_dilated(
                x, kernel, (self.width,), "VALID", dimension_numbers=_CONV_DIMS
            )
        else:
            y = lax.conv_general_dilated(
                x, kernel, (1,), "VALID", rhs_dilation=(dilation,), dimension_numbers=_CONV_DIMS
            )
        if self.use_bias:
            bias = self.param(
                "bias", _layers.torch_bias_init(self.width * cin), (self.features,), jnp.float32
            )
            y = y + bias.reshape(1, 1, self.features)
        return y


class TemporalModel(nn.Module):
    """The VideoPose3D network on flattened features (N, T, J_in * C_in) -> (N, T', J_out * 3).

    Prefer the pure functions :func:`init`, :func:`apply` and :func:`apply_strided`.
    Parameter names (kernel layout (width, in, out)): ``expand_conv``, ``expand_bn``, and for
    block i ``block{i}_conv``, ``block{i}_conv_bn``, ``block{i}_pointwise``,
    ``block{i}_pointwise_bn``, then ``shrink_conv`` (with bias).
    Intermediates sown into the ``intermediates`` collection: ``expand`` and ``block{i}``
    (each after its ReLU/dropout and residual add), shape (N, T_i, channels).
    """

    config: TemporalConfig

    @nn.compact
    def __call__(
        self, x: jax.Array, *, strided: bool, train: bool, bn_momentum: jax.Array | float
    ) -> jax.Array:
        cfg = self.config
        # Stride = width equals the dilated layers only when dilation = product of the
        # previous widths; a dense model runs its valid convs on the window instead (a
        # window of receptive_field frames then shrinks to exactly one output frame).
        strided = strided and cfg.dilated

        def bn_relu_dropout(h, name):
            h = _layers.BatchNorm(eps=cfg.bn_eps, name=name)(h, train=train, momentum=bn_momentum)
            h = nn.relu(h)
            if cfg.dropout > 0.0:
                h = nn.Dropout(rate=cfg.dropout)(h, deterministic=not train)
            return h

        w0 = cfg.filter_widths[0]
        h = _TemporalConv(cfg.channels, w0, use_bias=False, name="expand_conv")(
            x, dilation=1, strided=strided
        )
        h = bn_relu_dropout(h, "expand_bn")
        self.sow("intermediates", "expand", h)
        for i, (w, dilation) in enumerate(zip(cfg.filter_widths[1:], cfg.dilations[1:])):
            # Residual = the input frame aligned with each output frame: the centre of its
            # window, or (causal) the last one, as in VideoPose3D's causal_shift.
            if strided:
                k = w - 1 if cfg.causal else w // 2
                res = h[:, k::w]
            else:
                pad = (w - 1) * dilation // 2
                start = 2 * pad if cfg.causal else pad
                # Length written as T - 2 * pad so it stays symbolic under jax.export.
                res = lax.slice_in_dim(h, start, start + (h.shape[1] - 2 * pad), axis=1)
            h = _TemporalConv(cfg.channels, w, use_bias=False, name=f"block{i}_conv")(
                h, dilation=dilation, strided=strided
            )
            h = bn_relu_dropout(h, f"block{i}_conv_bn")
            h = _TemporalConv(cfg.channels, 1, use_bias=False, name=f"block{i}_pointwise")(
                h, dilation=1, strided=strided
            )
            h = res + bn_relu_dropout(h, f"block{i}_pointwise_bn")
            self.sow("intermediates", f"block{i}", h)
        return _TemporalConv(cfg.num_joints_out * 3, 1, use_bias=True, name="shrink_conv")(
            h, dilation=1, strided=strided
        )


# ----------------------------------------------------------------------------- checks


def _check_shape(x, config: TemporalConfig, name: str) -> tuple[Any, ...]:
    """Validate (..., T, J_in, C_in) and return the shape (entries may be symbolic)."""
    shape = tuple(getattr(x, "shape", ()))
    if len(shape) < 3:
        raise ValueError(
            f"{name}: expected shape (..., T, J_in={config.num_joints_in}, "
            f"C_in={config.in_features}), got rank {len(shape)} shape {shape}"
        )
    if shape[-2:] != (config.num_joints_in, config.in_features):
        raise ValueError(
            f"{name}: expected the last two axes (J_in, C_in) = "
            f"({config.num_joints_in}, {config.in_features}), got shape {shape}"
        )
    dtype = getattr(x, "dtype", None)
    if dtype is None or not jnp.issubdtype(dtype, jnp.floating):
        raise ValueError(f"{name}: expected a floating-point array, got dtype {dtype}")
    return shape


def _is_concrete(x) -> bool:
    return not isinstance(x, jax.core.Tracer)


def check_inputs(
    keypoints,
    *,
    config: TemporalConfig,
    strided: bool = False,
    pad: bool = True,
    name: str = "keypoints",
) -> None:
    """Host-side validation of a concrete input batch; raises ``ValueError``.

    Checks the shape (as :func:`apply` / :func:`apply_strided` do at trace time) and that
    every value is finite. Call it on host data before a jitted step: NaNs cannot raise
    inside ``jit``.
    """
    shape = _check_shape(keypoints, config, name)
    t = shape[-3]
    rf = config.receptive_field
    if strided and t != rf:
        raise ValueError(
            f"{name}: the strided form takes windows of exactly receptive_field={rf} frames, "
            f"got {t} (shape {shape})"
        )
    if not strided and not pad and t < rf:
        raise ValueError(
            f"{name}: with pad=False the sequence needs at least receptive_field={rf} "
            f"frames, got {t} (shape {shape})"
        )
    if not strided and t < 1:
        raise ValueError(f"{name}: the sequence has no frames (shape {shape})")
    _layers.check_finite_host(keypoints, name=name)


# ----------------------------------------------------------------------------- pure API


def init(rng: jax.Array, config: TemporalConfig) -> dict[str, Any]:
    """Fresh variables ``{'params', 'batch_stats'}`` (PyTorch default init).

    Works under ``jax.eval_shape`` (shapes only, no compute) and ``jax.jit``.
    """
    x = jnp.zeros((1, config.receptive_field, config.num_joints_in * config.network_features))
    variables = TemporalModel(config).init(
        {"params": rng}, x, strided=True, train=False, bn_momentum=0.1
    )
    return {"params": variables["params"], "batch_stats": variables["batch_stats"]}


def count_params(variables_or_params: Mapping[str, Any]) -> int:
    """Trainable parameter count (``params`` only; batch-norm running stats excluded)."""
    tree = variables_or_params
    if "params" in tree:
        tree = tree["params"]
    return _layers.count_params(tree)


def _edge_pad(x: jax.Array, left: int, right: int) -> jax.Array:
    """Replicate the first/last frame of (N, T, F) ``left``/``right`` times along T."""
    parts = []
    n, _, f = x.shape
    if left:
        parts.append(jnp.broadcast_to(x[:, :1], (n, left, f)))
    parts.append(x)
    if right:
        # Slice written as [T-1, T) so it stays valid for a symbolic T.
        last = lax.slice_in_dim(x, x.shape[1] - 1, x.shape[1], axis=1)
        parts.append(jnp.broadcast_to(last, (n, right, f)))
    return jnp.concatenate(parts, axis=1) if len(parts) > 1 else x


def _run(variables, x, lead, config, *, strided, train, rng, bn_momentum, with_intermediates):
    if (
        not isinstance(variables, Mapping)
        or "params" not in variables
        or "batch_stats" not in variables
    ):
        keys = list(variables) if isinstance(variables, Mapping) else None
        raise ValueError(
            "variables: expected a mapping with 'params' and 'batch_stats' (from init), "
            f"got {type(variables).__name__} with keys {keys}"
        )
    rngs = _layers.check_rng(rng, train=train, dropout=config.dropout)
    mutable = (["batch_stats"] if train else []) + (["intermediates"] if with_intermediates else [])
    y, state = TemporalModel(config).apply(
        {"params": variables["params"], "batch_stats": variables["batch_stats"]},
        x,
        strided=strided,
        train=train,
        bn_momentum=bn_momentum,
        rngs=rngs,
        mutable=mutable,
    )
    poses = y.reshape(lead + (y.shape[1], config.num_joints_out, 3))
    batch_stats = state["batch_stats"] if train else variables["batch_stats"]
    if not with_intermediates:
        return poses, batch_stats
    inter = {k: v[0].reshape(lead + v[0].shape[1:]) for k, v in state["intermediates"].items()}
    return poses, batch_stats, inter


#: Features :func:`body_frame_features` appends per joint: centre x, y and log spread.
BODY_FRAME_EXTRA = 3


def body_frame_features(keypoints, centre_joints) -> jax.Array:
    """Per-frame body-frame features ``(..., J, C + 3)`` of ``keypoints (..., J, C)``.

    With ``uv = keypoints[..., :2]``, ``c`` the mean of ``uv`` over ``centre_joints`` and
    ``s = sqrt(mean_j |uv_j - c|^2)`` (the RMS spread; ``+ 1e-6``):
    ``[(uv - c) / s, keypoints[..., 2:], c, log s]``, the last three the same for every
    joint. A horizontal flip (negated x) negates the first and the centre's x, so flip
    augmentation of the raw inputs stays a flip here.
    """
    x = jnp.asarray(keypoints, jnp.float32)
    uv, rest = x[..., :2], x[..., 2:]
    idx = jnp.asarray(centre_joints, jnp.int32)
    centre = jnp.mean(jnp.take(uv, idx, axis=-2), axis=-2, keepdims=True)
    rel = uv - centre
    spread = jnp.sqrt(jnp.mean(jnp.sum(rel * rel, axis=-1), axis=-1))[..., None, None] + 1e-6
    joints = uv.shape[-2]
    extra = jnp.concatenate([centre, jnp.log(spread)], axis=-1)
    extra = jnp.broadcast_to(extra, extra.shape[:-2] + (joints, BODY_FRAME_EXTRA))
    return jnp.concatenate([rel / spread, rest, extra], axis=-1)


def _flatten(keypoints, shape, config: TemporalConfig | None = None):
    lead = shape[:-3]
    n = 1
    for d in lead:
        n = n * d  # may be symbolic
    x = jnp.asarray(keypoints, jnp.float32)
    features = shape[-1]
    if config is not None and config.centre_joints:
        x = body_frame_features(x, config.centre_joints)
        features = config.network_features
    return x.reshape((n, shape[-3], shape[-2] * features)), lead


def apply(
    variables: Variables,
    keypoints: jax.Array,
    *,
    config: TemporalConfig,
    train: bool,
    rng: jax.Array | None = None,
    bn_momentum: jax.Array | float = 0.1,
    pad: bool = True,
    with_intermediates: bool = False,
):
    """Sequence form: 3D poses for every frame of whole sequences.

    Args:
      variables: ``{'params', 'batch_stats'}`` from :func:`init` or a converted checkpoint.
      keypoints: (..., T, J_in, C_in) normalised screen coordinates (+ extra features).
        Cast to float32. T and the leading axes may be symbolic under ``jax.export``.
      config: the model's :class:`TemporalConfig`.
      train: dropout on and batch statistics (updated) instead of running ones.
      rng: PRNG key for dropout; required when ``train`` and ``config.dropout > 0``.
      bn_momentum: PyTorch-convention batch-norm momentum, may be traced (see module doc).
      pad: replicate the edge frames (``config.padding``) so T_out == T. With
        ``pad=False`` the valid part only: T_out = T - receptive_field + 1, and output
        frame i is aligned with input frame i + receptive_field // 2 (causal:
        i + receptive_field - 1).
      with_intermediates: also return the dict of named hidden activations
        (``expand``, ``block{i}``: (..., T_i, channels); T_i shrinks layer by layer).

    Returns:
      ``(poses, batch_stats)`` or, with ``with_intermediates``, ``(poses, batch_stats,
      intermediates)``. ``poses``: (..., T_out, J_out, 3) metres, root-relative for the pose
      model, absolute root position for the trajectory model. ``batch_stats``: updated when
      ``train``, else the input ones.
    """
    shape = _check_shape(keypoints, config, "keypoints")
    t = shape[-3]
    if isinstance(t, int):  # a symbolic T (jax.export) is assumed long enough
        if pad and t < 1:
            raise ValueError(f"keypoints: the sequence has no frames (shape {shape})")
        if not pad and t < config.receptive_field:
            raise ValueError(
                f"keypoints: with pad=False the sequence needs at least receptive_field="
                f"{config.receptive_field} frames, got T={t} (shape {shape}); use pad=True"
            )
    if _is_concrete(keypoints):
        _layers.check_finite_host(keypoints, name="keypoints")
    x, lead = _flatten(keypoints, shape, config)
    if pad:
        x = _edge_pad(x, *config.padding)
    return _run(
        variables,
        x,
        lead,
        config,
        strided=False,
        train=train,
        rng=rng,
        bn_momentum=bn_momentum,
        with_intermediates=with_intermediates,
    )


def apply_strided(
    variables: Variables,
    windows: jax.Array,
    *,
    config: TemporalConfig,
    train: bool,
    rng: jax.Array | None = None,
    bn_momentum: jax.Array | float = 0.1,
    with_intermediates: bool = False,
):
    """Strided single-frame form (training): one output frame per receptive-field window.

    Dilated models use stride = width convolutions; dense models (``dilated=False``) run
    the sequence form's valid convolutions over the window (module docstring). Either way
    the result equals :func:`apply` with ``pad=False`` on the same window.

    Args:
      windows: (..., receptive_field, J_in, C_in); the window length must be static.
      Others as in :func:`apply`.

    Returns:
      As :func:`apply`, with poses of shape (..., 1, J_out, 3): the pose at the window's
      centre frame (causal: its last frame).
    """
    shape = _check_shape(windows, config, "windows")
    rf = config.receptive_field
    if not isinstance(shape[-3], int) or shape[-3] != rf:
        raise ValueError(
            f"windows: the strided form takes windows of exactly receptive_field={rf} "
            f"frames (static), got {shape[-3]} (shape {shape})"
        )
    if _is_concrete(windows):
        _layers.check_finite_host(windows, name="windows")
    x, lead = _flatten(windows, shape, config)
    return _run(
        variables,
        x,
        lead,
        config,
        strided=True,
        train=train,
        rng=rng,
        bn_momentum=bn_momentum,
        with_intermediates=with_intermediates,
    )


# ----------------------------------------------------------------------------- weights


def from_videopose3d(state_dict: Mapping[str, Any], *, config: TemporalConfig) -> dict[str, Any]:
    """Convert a VideoPose3D PyTorch state dict to jpose variables.

    Args:
      state_dict: parameter name -> array for ``TemporalModel`` or
        ``TemporalModelOptimized1f`` (they share names), e.g.
        ``{k: v.numpy() for k, v in torch.load(path)['model_pos'].items()}`` (or
        ``'model_traj'``); a ``module.`` prefix (DataParallel) is stripped and
        ``num_batches_tracked`` ignored. A ``dense=True`` checkpoint needs the config with
        its real kernel widths and ``dilated=False`` (see :class:`TemporalConfig`).
      config: the matching config (filter widths, dilated, joints, channels, causal).

    Returns:
      ``{'params', 'batch_stats'}`` as float32 numpy arrays.
    """
    sd = {}
    for k, v in state_dict.items():
        k = k.removeprefix("module.")
        if k.endswith("num_batches_tracked"):
            continue
        sd[k] = np.asarray(v, dtype=np.float32)

    expected = jax.eval_shape(lambda: init(jax.random.key(0), config))
    params: dict[str, Any] = {}
    stats: dict[str, Any] = {}
    used: set[str] = set()

    def take(key, shape):
        if key not in sd:
            raise ValueError(f"state_dict: missing key {key!r} for config {config}")
        a = sd[key]
        if a.shape != tuple(shape):
            raise ValueError(
                f"state_dict: {key!r} has shape {a.shape}, expected {tuple(shape)} for {config}"
            )
        used.add(key)
        return a

    def conv(torch_name, name):
        kshape = expected["params"][name]["kernel"].shape  # (w, in, out); torch (out, in, w)
        w = take(f"{torch_name}.weight", (kshape[2], kshape[1], kshape[0]))
        params[name] = {"kernel": np.ascontiguousarray(w.transpose(2, 1, 0))}
        if "bias" in expected["params"][name]:
            params[name]["bias"] = take(f"{torch_name}.bias", (kshape[2],))

    def bn(torch_name, name):
        c = expected["params"][name]["scale"].shape
        params[name] = {
            "scale": take(f"{torch_name}.weight", c),
            "bias": take(f"{torch_name}.bias", c),
        }
        stats[name] = {
            "mean": take(f"{torch_name}.running_mean", c),
            "var": take(f"{torch_name}.running_var", c),
        }

    conv("expand_conv", "expand_conv")
    bn("expand_bn", "expand_bn")
    for i in range(len(config.filter_widths) - 1):
        conv(f"layers_conv.{2 * i}", f"block{i}_conv")
        bn(f"layers_bn.{2 * i}", f"block{i}_conv_bn")
        conv(f"layers_conv.{2 * i + 1}", f"block{i}_pointwise")
        bn(f"layers_bn.{2 * i + 1}", f"block{i}_pointwise_bn")
    conv("shrink", "shrink_conv")
    unused = sorted(set(sd) - used)
    if unused:
        raise ValueError(f"state_dict: unexpected keys {unused} for config {config}")
    return {"params": params, "batch_stats": stats}
