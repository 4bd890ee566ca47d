"""Pose-embedding network of MCSS (Mitra et al. CVPR 2020), keypoint-input form.

The residual MLP backbone of :mod:`jpose.nets.mlp` (Martinez et al.) over the flattened
2D keypoints, then two heads:

* **G** (embedding): ``Dense(embedding_dim)`` then L2 normalisation, so embeddings lie
  on the unit sphere and squared distances between them are in ``[0, 4]`` (the units of
  MCSS's margin ``alpha = 0.6`` and threshold ``beta = 0.3``);
* **H** (regression): ``Dense(3 J_out)`` of the *normalised* embedding (FC 128 -> 3J):
  the canonical pose (metres, root-relative, yaw-normalised world frame; see
  :func:`jpose.objectives.metric_learning.canonical_pose`). H reads G's output, so the
  pose is decodable from what retrieval compares, and the regression loss also shapes
  the embedding (as in the paper, where the two are trained jointly).

Inputs and outputs
------------------
* ``keypoints``: ``(..., J_in, C_in)`` float, normalised screen coordinates.
* ``EmbeddingOutputs.embedding``: ``(..., embedding_dim)``, unit L2 norm (dimensionless).
* ``EmbeddingOutputs.pose``: ``(..., J_out, 3)`` metres, the canonical pose.

Same pure-function surface as the other kinds (:func:`variant`, :func:`init`,
:func:`apply`), plus :func:`network_apply` / :func:`network_predict`, which
:class:`jpose.nets.network.Network` calls for this kind (named outputs ``"pose"`` and
``"embedding"``; ``predict`` returns the canonical pose). Parameter names are the MLP
lifter's for the backbone (``input_dense``, ``block{i}_dense{0,1}``, ...), then
``embedding_head`` (G) and ``pose_head`` (H).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from flax import linen as nn

from jpose.nets import _layers, mlp

__all__ = ["VARIANTS", "EmbeddingConfig", "EmbeddingOutputs", "EmbeddingNet", "variant",
           "init", "apply", "network_apply", "network_predict", "l2_normalise"]


@dataclasses.dataclass(frozen=True, kw_only=True)
class EmbeddingConfig:
    """Hyper-parameters of the embedding network (hashable, static under jit).

    Attributes:
      num_joints_in, in_features: the 2D input ``(J_in, C_in)``.
      num_joints_out: J of the canonical pose H regresses.
      hidden, num_blocks, dropout, bn_eps: the residual MLP backbone (:mod:`jpose.nets.mlp`).
      embedding_dim: size of G's output (MCSS: 128).
    """

    num_joints_in: int = 17
    in_features: int = 2
    num_joints_out: int = 17
    hidden: int = 1024
    num_blocks: int = 2
    dropout: float = 0.5
    embedding_dim: int = 128
    bn_eps: float = 1e-5

    def __post_init__(self):
        mlp.check_trunk_fields(self, positive=("embedding_dim",))


VARIANTS: Mapping[str, Mapping[str, Any]] = MappingProxyType({
    # MCSS's keypoint form: the Martinez backbone, a 128-d embedding.
    "mcss_mlp": MappingProxyType({}),
    # Tiny variant for tests and CI smoke runs.
    "tiny_mcss_mlp": MappingProxyType({"hidden": 16, "embedding_dim": 8}),
})


def variant(name: str, **overrides: Any) -> EmbeddingConfig:
    if name not in VARIANTS:
        raise ValueError(f"name: unknown embedding variant {name!r}; known: {sorted(VARIANTS)}")
    fields = {**VARIANTS[name], **overrides}
    fields.pop("heads", None)  # the MLP lifter's field; this kind's heads are fixed
    return EmbeddingConfig(**fields)


class EmbeddingOutputs(NamedTuple):
    embedding: jax.Array  # (..., D) float32, unit norm
    pose: jax.Array  # (..., J_out, 3) float32 metres, canonical frame


def l2_normalise(x, *, axis: int = -1, eps: float = 1e-12):
    """``x / max(||x||, eps)`` along ``axis`` (finite gradient at 0)."""
    sq = jnp.sum(x * x, axis=axis, keepdims=True)
    return x * jax.lax.rsqrt(jnp.maximum(sq, jnp.asarray(eps * eps, x.dtype)))


class EmbeddingNet(nn.Module):
    """Backbone ``(N, J_in * C_in) -> (N, hidden)``, then G and H (module doc)."""

    config: EmbeddingConfig

    @nn.compact
    def __call__(self, x, *, train: bool, bn_momentum):
        cfg = self.config
        h, _ = mlp.residual_trunk(x, hidden=cfg.hidden, num_blocks=cfg.num_blocks,
                                  dropout=cfg.dropout, bn_eps=cfg.bn_eps, train=train,
                                  bn_momentum=bn_momentum)
        embedding = l2_normalise(mlp.dense(cfg.embedding_dim, cfg.hidden, "embedding_head")(h))
        pose = mlp.dense(cfg.num_joints_out * 3, cfg.embedding_dim, "pose_head")(embedding)
        return embedding, pose


def _check_shape(x, config: EmbeddingConfig):
    shape = tuple(getattr(x, "shape", ()))
    if len(shape) < 2 or shape[-2:] != (config.num_joints_in, config.in_features):
        raise ValueError(f"keypoints: expected shape (..., J_in={config.num_joints_in}, "
                         f"C_in={config.in_features}), got shape {shape}")
    return shape


def init(rng: jax.Array, config: EmbeddingConfig) -> dict[str, Any]:
    """Fresh ``{'params', 'batch_stats'}`` (PyTorch default init)."""
    x = jnp.zeros((1, config.num_joints_in * config.in_features))
    v = EmbeddingNet(config).init({"params": rng}, x, train=False, bn_momentum=0.1)
    return {"params": v["params"], "batch_stats": v["batch_stats"]}


def apply(variables, keypoints, *, config: EmbeddingConfig, train: bool,
          rng: jax.Array | None = None, bn_momentum: jax.Array | float = 0.1):
    """``(EmbeddingOutputs, batch_stats)`` of keypoints ``(..., J_in, C_in)``; all
    leading axes are batch axes (pooled by batch norm in training)."""
    shape = _check_shape(keypoints, config)
    if not isinstance(keypoints, jax.core.Tracer):
        _layers.check_finite_host(keypoints, name="keypoints")
    lead = shape[:-2]
    n = 1
    for d in lead:
        n = n * d
    x = jnp.asarray(keypoints, jnp.float32).reshape((n, shape[-2] * shape[-1]))
    rngs = _layers.check_rng(rng, train=train, dropout=config.dropout)
    (embedding, pose), state = EmbeddingNet(config).apply(
        {"params": variables["params"], "batch_stats": variables["batch_stats"]}, x,
        train=train, bn_momentum=bn_momentum, rngs=rngs,
        mutable=["batch_stats"] if train else [])
    outputs = EmbeddingOutputs(embedding=embedding.reshape(lead + (config.embedding_dim,)),
                               pose=pose.reshape(lead + (config.num_joints_out, 3)))
    return outputs, (state["batch_stats"] if train else variables["batch_stats"])


def network_apply(variables, inputs, *, config, train, rng=None, bn_momentum=0.0):
    """:meth:`jpose.nets.network.Network.apply` for this kind: named outputs."""
    out, stats = apply(variables, inputs, config=config, train=train, rng=rng,
                       bn_momentum=bn_momentum)
    return {"pose": out.pose, "embedding": out.embedding}, stats


def network_predict(variables, keypoints, *, config):
    """:meth:`jpose.nets.network.Network.predict` for this kind: the canonical pose."""
    return apply(variables, keypoints, config=config, train=False)[0].pose
