"""Temporal Consistency Exploration (TCE) ops (Yang Li's thesis, ch. 2).

Features of neighbouring frames are *deformed* towards the current frame and aggregated
with the current frame's features.

* Bilinear sampling (Dai et al. 2017, deformable convolution): the value of a feature map
  ``A`` at a fractional point ``p`` is ``A(p) = sum_q G(q, p) A(q)`` over the integer
  pixels ``q``, with ``G(q, p) = g(q_x, p_x) g(q_y, p_y)`` and ``g(a, b) = max(0, 1 - |a -
  b|)``: only the four pixels around ``p`` contribute. Pixels outside the map are zero
  (so are their contributions), as in deformable convolution. :func:`bilinear_sample`.
* Deformation: ``D(A, dP)(p) = A(p + dP(p))`` for an offset field ``dP`` (:func:`deform`).
  Zero offsets are the identity; an integer offset ``(dx, dy)`` shifts the map, zeros
  entering from the border.
* Offsets: ``dP = W_of * H``, a 3x3 convolution with 2 output channels ``(dx, dy)`` (in
  pixels of the feature map), zero-initialised so that training starts from the identity
  deformation (as deformable convolution does). ``H`` is the running aggregated state of
  the current frame (below); with ``offsets_from="state_and_neighbour"`` (the default)
  the conv reads the state *and* the neighbour's features, ``[H, A_{t-k}]``, so that the
  offsets can depend on where the neighbour's content is; ``"state"`` is the literal
  ``W_of * H``.
* Aggregation along one direction (preceding frames ``t-1, ..., t-N``, nearest first;
  the state lives in frame ``t``'s geometry throughout, starting from ``H_0 = A_t``):

  - ``"sum"`` (TCE-S): ``H_k = H_{k-1} + D(A_{t-k}, W_of * [H_{k-1}, A_{t-k}])``, so
    ``H_N = A_t + sum_k D(A_{t-k}, dP_k)``;
  - ``"convlstm"`` (TCE-C): ``(H_k, C_k) = ConvLSTM(D(A_{t-k}, dP_k), (H_{k-1}, C_{k-1}))``
    with ``C_0 = 0`` (:class:`ConvLSTMCell`).

* Bidirectional (TCE-BC): ``H_t = H_t^p + H_t^s``, the preceding and the succeeding chains
  (``t+1, ..., t+N``), each with its own offset conv and aggregation weights.

The offsets conv and the ConvLSTM are shared by the steps of one chain. The multi-scale
arrangement (a TCE per pyramid branch) is in :mod:`jpose.nets.pose2d`.

Coordinates are pixels of the feature map, ``x`` along W (axis -2), ``y`` along H (axis
-3); points and offsets are ``(x, y)`` pairs.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import linen as nn

__all__ = ["AGGREGATIONS", "OFFSETS_FROM", "TCE", "ConvLSTMCell", "bilinear_sample",
           "deform", "pixel_grid"]

AGGREGATIONS = ("sum", "convlstm")
OFFSETS_FROM = ("state_and_neighbour", "state")


def bilinear_sample(features: jax.Array, points: jax.Array) -> jax.Array:
    """``sum_q G(q, p) A(q)`` at fractional points (module doc); zero outside the map.

    Args:
      features: ``(B, H, W, C)``.
      points: ``(B, ..., 2)`` as ``(x, y)`` pixel coordinates (pixel ``(i, j)`` is the point
        ``x = j, y = i``).

    Returns:
      ``(B, ..., C)``; differentiable in both arguments (almost everywhere in ``points``).
    """
    b, h, w, c = features.shape
    lead = points.shape[:-1]
    pts = points.reshape(b, -1, 2)
    x, y = pts[..., 0], pts[..., 1]
    x0, y0 = jnp.floor(x), jnp.floor(y)
    fx, fy = x - x0, y - y0
    flat = features.reshape(b, h * w, c)
    gather = jax.vmap(lambda f, i: f[i])
    out = jnp.zeros((b, pts.shape[1], c), features.dtype)
    for dx, dy, weight in ((0, 0, (1 - fx) * (1 - fy)), (1, 0, fx * (1 - fy)),
                           (0, 1, (1 - fx) * fy), (1, 1, fx * fy)):
        xi = (x0 + dx).astype(jnp.int32)
        yi = (y0 + dy).astype(jnp.int32)
        inside = (xi >= 0) & (xi < w) & (yi >= 0) & (yi < h)
        idx = jnp.clip(yi, 0, h - 1) * w + jnp.clip(xi, 0, w - 1)
        weight = jnp.where(inside, weight, 0.0).astype(features.dtype)
        out = out + gather(flat, idx) * weight[..., None]
    return out.reshape(lead + (c,))


def pixel_grid(height: int, width: int) -> jax.Array:
    """``(H, W, 2)`` float32 ``(x, y)`` coordinates of every pixel."""
    ys, xs = jnp.meshgrid(jnp.arange(height, dtype=jnp.float32),
                          jnp.arange(width, dtype=jnp.float32), indexing="ij")
    return jnp.stack([xs, ys], axis=-1)


def deform(features: jax.Array, offsets: jax.Array) -> jax.Array:
    """``D(A, dP)(p) = A(p + dP(p))``: ``features (B, H, W, C)``, ``offsets (B, H, W, 2)``
    as ``(dx, dy)`` pixels -> ``(B, H, W, C)``."""
    b, h, w, _ = features.shape
    if offsets.shape != (b, h, w, 2):
        raise ValueError(f"offsets: expected shape {(b, h, w, 2)}, got {offsets.shape}")
    return bilinear_sample(features, pixel_grid(h, w)[None] + offsets)


class ConvLSTMCell(nn.Module):
    """Convolutional LSTM (Shi et al. 2015), no peepholes.

    ``[i, f, g, o] = W * [x, h] + b`` (one ``kernel`` x ``kernel`` conv named ``gates``,
    channel blocks in that order), ``c' = sigmoid(f) c + sigmoid(i) tanh(g)``,
    ``h' = sigmoid(o) tanh(c')``.
    """

    hidden: int
    kernel: int = 3

    @nn.compact
    def __call__(self, x, state):
        h, c = state
        p = self.kernel // 2
        z = nn.Conv(4 * self.hidden, (self.kernel, self.kernel), padding=((p, p), (p, p)),
                    name="gates")(jnp.concatenate([x, h], axis=-1))
        i, f, g, o = jnp.split(z, 4, axis=-1)
        c = nn.sigmoid(f) * c + nn.sigmoid(i) * jnp.tanh(g)
        return nn.sigmoid(o) * jnp.tanh(c), c


class _Chain(nn.Module):
    """One direction: aggregate ``neighbours`` (nearest first) into ``current``."""

    aggregation: str
    offsets_from: str

    @nn.compact
    def __call__(self, current, neighbours):
        offsets_conv = nn.Conv(2, (3, 3), padding=((1, 1), (1, 1)),
                               kernel_init=nn.initializers.zeros, name="offsets")
        cell = (ConvLSTMCell(current.shape[-1], name="convlstm")
                if self.aggregation == "convlstm" else None)
        h, c = current, jnp.zeros_like(current)
        for a in neighbours:
            inp = jnp.concatenate([h, a], axis=-1) if self.offsets_from != "state" else h
            warped = deform(a, offsets_conv(inp))
            if cell is None:
                h = h + warped
            else:
                h, c = cell(warped, (h, c))
        return h


class TCE(nn.Module):
    """TCE over a window of per-frame features ``(B, T, H, W, C)`` -> ``(B, H, W, C)``
    for the frame ``centre`` (module doc). Submodules ``preceding`` and (bidirectional)
    ``succeeding``, each with ``offsets`` and, for ConvLSTM, ``convlstm/gates``."""

    aggregation: str = "convlstm"
    bidirectional: bool = False
    offsets_from: str = "state_and_neighbour"

    @nn.compact
    def __call__(self, frames, *, centre: int):
        if self.aggregation not in AGGREGATIONS:
            raise ValueError(f"aggregation: expected one of {AGGREGATIONS}, got "
                             f"{self.aggregation!r}")
        if self.offsets_from not in OFFSETS_FROM:
            raise ValueError(f"offsets_from: expected one of {OFFSETS_FROM}, got "
                             f"{self.offsets_from!r}")
        t = frames.shape[1]
        if not 0 <= centre < t:
            raise ValueError(f"centre: expected a frame index in [0, {t}), got {centre}")
        current = frames[:, centre]
        chain = lambda name: _Chain(self.aggregation, self.offsets_from, name=name)
        out = chain("preceding")(current, [frames[:, centre - k] for k in range(1, centre + 1)])
        if self.bidirectional:
            out = out + chain("succeeding")(
                current, [frames[:, centre + k] for k in range(1, t - centre)])
        return out
