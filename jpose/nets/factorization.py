r"""Consistent factorization network (CFN), keypoint-input form (Yang Li, thesis 2020, ch. 4).

A single-frame network that factorises a 2D pose into a camera rotation and a 3D shape
drawn from a hierarchical (NRSfM) pose dictionary:

    w_hat = normalise(keypoints)                         (J_in, 2), unit-free
    h     = backbone(w_hat)                              residual MLP (Martinez et al.)
    phi_n = relu(code_head(h))                           (K_n,)  last dictionary level
    omega = omega_head(h)                                (3,)    rotation vector
    R     = expm([omega]_x)                              (3, 3)  Rodrigues' formula
    Y     = reshape(D_1 relu(D_2 ... relu(D_n phi_n)), (J, 3)) - root     canonical shape
    X     = Y R^T                                        camera-frame pose (root-relative)

and the orthographic projection of ``X`` (its x, y) should reproduce ``w_hat``
(:mod:`jpose.objectives.factorization`).

**Normalisation** (:func:`normalise_keypoints`). The 2D input (normalised screen
coordinates, any scale) is centred on the root joint (the pelvis, ``root_index``) and
divided by the mean distance of the other joints to it. Outputs therefore carry this
*unit* (one mean 2D joint-to-pelvis distance), not metres: orthographic factorisation
cannot recover scale. :func:`network_predict` multiplies the output by
``config.output_scale`` (a fixed body-size prior in metres per unit, default 0.4: the
mean projected joint-to-pelvis distance of an adult seen from the side or front); the
scale-free comparisons (N-MPJPE, P-MPJPE) do not depend on it. Align the scale to the
ground truth (``jpose.metrics.n_mpjpe``) to report the thesis's "MPJPE after scale
restoration".

**Dictionary and decoder.** ``D_1`` is ``(3 J, K_1)`` with row ``3 p + c`` = joint ``p``,
axis ``c`` (the layout of :mod:`jpose.solvers.nrsfm`), ``D_l`` ``(K_{l-1}, K_l)``; the
intermediate codes are ``psi_{l-1} = relu(D_l psi_l)`` (Kong & Lucey's ReLU codes; for
a dictionary learned by :func:`jpose.solvers.nrsfm.learn_dictionary`, whose deeper levels
are non-negative, the ReLU is the identity and the decoder is exactly its
``D_1 ... D_n psi_n``). The decoded shape is made root-relative (its root joint
subtracted), so a dictionary centred on the joint centroid decodes to the same pose.
The dictionary lives at ``params/dictionary/level{l}`` (``l`` = 0 for ``D_1``): give it
its own learning rate with ``optimizer.param_groups`` (pattern ``/dictionary/``).
Initialise it from :func:`jpose.solvers.nrsfm.learn_dictionary` or from
:func:`deep_nrsfm_pretrain` (:func:`with_dictionary`); without one it starts random.

**Baseline** (``decoder = "direct"``): no dictionary; a linear head regresses the
canonical shape ``Y`` (``J_out * 3``) directly, the rest unchanged (the thesis's
baseline, Table 4.x: 144.6 mm P-MPJPE on Human3.6M).

**Frames.** Camera frame x right, y down, z forward (VideoPose3D's); ``R`` maps the
canonical frame to the camera frame and is a proper rotation (det +1). Orthographic
factorisation leaves one global reflection (negating every depth) undetermined; the
dictionary fixes it (it is chiral), the direct baseline does not.

**Deep-NRSfM pre-training** (:func:`deep_nrsfm_pretrain`, thesis Eq. 4.5-4.7; Kong &
Lucey ICCV 2019): an encoder-decoder on 2D poses alone whose encoder uses the
dictionary's transposes (shared weights) with ReLU (block-norm) codes, trained with Adam
on the re-projection error; it returns dictionaries in the same format.

Same pure-function surface as :mod:`jpose.nets.mlp`: :func:`variant`, :func:`init`,
:func:`apply`, plus the :class:`jpose.nets.network.Network` hooks :func:`network_apply`
and :func:`network_predict`.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import linen as nn

from jpose import camera as camera_lib
from jpose.nets import _layers, mlp

__all__ = ["DECODERS", "VARIANTS", "FactorizationConfig", "FactorizationOutputs",
           "FactorizationNet", "variant", "init", "apply", "network_apply", "network_predict",
           "normalise_keypoints", "decode", "with_dictionary", "dictionaries_of",
           "load_dictionary", "random_dictionaries", "deep_nrsfm_pretrain",
           "DeepNRSfMResult", "deep_nrsfm_loss"]

DECODERS = ("dictionary", "direct")


@dataclasses.dataclass(frozen=True, kw_only=True)
class FactorizationConfig:
    """Hyperparameters of the CFN (hashable: a static argument).

    Attributes:
      num_joints_in, in_features, num_joints_out: data shapes (only the first 2 input
        features, the coordinates, are used).
      hidden, num_blocks, dropout, bn_eps: the residual MLP backbone (Martinez et al.).
      dictionary_sizes: ``(K_1, ..., K_n)`` atoms per level (thesis: 125 ... 10).
      decoder: ``"dictionary"`` (the CFN) or ``"direct"`` (the baseline).
      root_index: the root joint (pelvis) of the input and output layouts.
      output_scale: metres per normalised unit in :func:`network_predict` (a prior).
    """

    num_joints_in: int = 17
    in_features: int = 2
    num_joints_out: int = 17
    hidden: int = 1024
    num_blocks: int = 2
    dropout: float = 0.0
    dictionary_sizes: tuple[int, ...] = (125, 10)
    decoder: str = "dictionary"
    root_index: int = 0
    output_scale: float = 0.4
    bn_eps: float = 1e-5

    def __post_init__(self):
        sizes = tuple(int(k) for k in self.dictionary_sizes)
        object.__setattr__(self, "dictionary_sizes", sizes)
        if not sizes or min(sizes) < 1:
            raise ValueError(f"dictionary_sizes: expected positive ints, got {sizes!r}")
        if self.decoder not in DECODERS:
            raise ValueError(f"decoder: expected one of {DECODERS}, got {self.decoder!r}")
        mlp.check_trunk_fields(self)
        if self.in_features < 2:
            raise ValueError(f"in_features: needs the 2 coordinates, got {self.in_features}")
        if not 0 <= self.root_index < min(self.num_joints_in, self.num_joints_out):
            raise ValueError(f"root_index: {self.root_index} is not a joint")
        if not self.output_scale > 0:
            raise ValueError(f"output_scale: expected > 0, got {self.output_scale}")

    @property
    def receptive_field(self) -> int:
        return 1

    @property
    def padding(self) -> tuple[int, int]:
        return (0, 0)


VARIANTS: Mapping[str, Mapping[str, Any]] = MappingProxyType({
    # Thesis ch. 4: residual backbone, dictionary 125 ... 10 (two levels by default;
    # `dictionary_sizes` sets more, e.g. (125, 64, 32, 10)).
    "cfn": MappingProxyType({}),
    "cfn_baseline": MappingProxyType({"decoder": "direct"}),
    # Tiny variants for tests and CI.
    "tiny_cfn": MappingProxyType({"hidden": 16, "num_blocks": 1, "dictionary_sizes": (8, 4)}),
    "tiny_cfn_baseline": MappingProxyType({"hidden": 16, "num_blocks": 1,
                                           "decoder": "direct"}),
})


def variant(name: str, **overrides: Any) -> FactorizationConfig:
    """Config of a named variant, with optional field overrides."""
    if name not in VARIANTS:
        raise ValueError(f"name: unknown factorization variant {name!r}; known: "
                         f"{sorted(VARIANTS)}")
    fields = {**VARIANTS[name], **overrides}
    if "dictionary_sizes" in fields:  # ml_collections and JSON give lists
        fields["dictionary_sizes"] = tuple(int(k) for k in fields["dictionary_sizes"])
    return FactorizationConfig(**fields)


class FactorizationOutputs(NamedTuple):
    pose: jax.Array  # (..., J_out, 3) camera frame, root-relative, normalised units
    canonical: jax.Array  # (..., J_out, 3) Y, root-relative, normalised units
    rotation: jax.Array  # (..., 3, 3) R, canonical -> camera, det +1
    omega: jax.Array  # (..., 3) rotation vector
    code: jax.Array | None  # (..., K_n) >= 0 (None for the direct baseline)
    scale: jax.Array  # (..., 1) the input's normalising scale (its units)


def normalise_keypoints(keypoints, *, root_index: int = 0):
    """Root-centred 2D divided by the mean joint distance to the root.

    Args:
      keypoints: ``(..., J, C)``; the first two features are the coordinates.
      root_index: the root (pelvis) joint.

    Returns:
      ``(normalised (..., J, 2), scale (..., 1))`` with ``scale`` the mean over the
      ``J - 1`` non-root joints of ``||x_j - x_root||`` (1 where that is 0, so an
      all-collapsed pose stays finite), ``normalised = (x - x_root) / scale``.
    """
    x = jnp.asarray(keypoints)[..., :2]
    centred = x - x[..., root_index:root_index + 1, :]
    sq = jnp.sum(centred * centred, axis=-1)
    zero = sq == 0
    dist = jnp.where(zero, 0.0, jnp.sqrt(jnp.where(zero, 1.0, sq)))  # finite gradient
    scale = jnp.sum(dist, axis=-1, keepdims=True) / (x.shape[-2] - 1)
    scale = jnp.where(scale > 0, scale, jnp.ones_like(scale))
    return centred / scale[..., None], scale


def decode(dictionaries: Sequence[jax.Array], code, *, root_index: int = 0):
    """The canonical shape ``(..., J, 3)`` of last-level codes ``(..., K_n)``.

    ``psi_{l-1} = relu(D_l psi_l)`` for ``l = n ... 2``, then ``reshape(D_1 psi_1)``,
    minus its root joint (module doc).
    """
    psi = code
    for d in dictionaries[:0:-1]:  # D_n, ..., D_2
        psi = jax.nn.relu(psi @ d.T)
    flat = psi @ dictionaries[0].T
    shape = flat.reshape(flat.shape[:-1] + (flat.shape[-1] // 3, 3))
    return shape - shape[..., root_index:root_index + 1, :]


def random_dictionaries(rng, sizes: Sequence[int], num_joints: int, dtype=jnp.float32):
    """Random start: ``D_1`` Gaussian, deeper levels uniform >= 0, unit columns."""
    keys = jax.random.split(rng, len(sizes))
    rows = (3 * num_joints,) + tuple(sizes[:-1])
    out = []
    for i, (r, k) in enumerate(zip(rows, sizes)):
        if i == 0:
            d = jax.random.normal(keys[i], (r, k), dtype)
        else:
            d = jax.random.uniform(keys[i], (r, k), dtype)
        out.append(d / jnp.maximum(jnp.linalg.norm(d, axis=0, keepdims=True), 1e-12))
    return tuple(out)


class _Dictionary(nn.Module):
    sizes: tuple[int, ...]
    num_joints: int

    @nn.compact
    def __call__(self):
        rows = (3 * self.num_joints,) + tuple(self.sizes[:-1])
        out = []
        for i, (r, k) in enumerate(zip(rows, self.sizes)):
            def init_level(key, shape, dtype=jnp.float32, i=i):
                d = (jax.random.normal(key, shape, dtype) if i == 0
                     else jax.random.uniform(key, shape, dtype))
                return d / jnp.maximum(jnp.linalg.norm(d, axis=0, keepdims=True), 1e-12)
            out.append(self.param(f"level{i}", init_level, (r, k), jnp.float32))
        return tuple(out)


class FactorizationNet(nn.Module):
    """Backbone + code and omega heads + dictionary decoder on ``(N, J_in, 2)``.

    Parameter names: ``input_dense``/``input_bn``, ``block{i}_dense{0,1}``/``_bn{0,1}``,
    ``code_head`` (or ``shape_head`` for the direct decoder), ``omega_head``,
    ``dictionary/level{l}``.
    """

    config: FactorizationConfig

    @nn.compact
    def __call__(self, w, *, train: bool, bn_momentum):
        cfg = self.config
        n = w.shape[0]
        h, _ = mlp.residual_trunk(w.reshape(n, -1), hidden=cfg.hidden,
                                  num_blocks=cfg.num_blocks, dropout=cfg.dropout,
                                  bn_eps=cfg.bn_eps, train=train, bn_momentum=bn_momentum)
        # Small rotation-head weights: training starts near R = I for every pose.
        omega = mlp.dense(3, cfg.hidden, "omega_head", scale=0.1)(h)
        if cfg.decoder == "dictionary":
            code = nn.relu(mlp.dense(cfg.dictionary_sizes[-1], cfg.hidden, "code_head")(h))
            dictionaries = _Dictionary(cfg.dictionary_sizes, cfg.num_joints_out,
                                       name="dictionary")()
            canonical = decode(dictionaries, code, root_index=cfg.root_index)
        else:
            code = None
            flat = mlp.dense(cfg.num_joints_out * 3, cfg.hidden, "shape_head")(h)
            canonical = flat.reshape(n, cfg.num_joints_out, 3)
            canonical = canonical - canonical[:, cfg.root_index:cfg.root_index + 1]
        rotation = camera_lib.axis_angle_to_matrix(omega)
        pose = jnp.einsum("njc,nac->nja", canonical, rotation)
        return pose, canonical, rotation, omega, code


def init(rng: jax.Array, config: FactorizationConfig) -> dict[str, Any]:
    """Fresh variables ``{'params', 'batch_stats'}`` (random dictionary)."""
    x = jnp.zeros((2, config.num_joints_in, 2))
    v = FactorizationNet(config).init({"params": rng}, x, train=False, bn_momentum=0.1)
    return {"params": v["params"], "batch_stats": v["batch_stats"]}


def apply(variables, keypoints, *, config: FactorizationConfig, train: bool, rng=None,
          bn_momentum=0.1) -> tuple[FactorizationOutputs, Any]:
    """``(FactorizationOutputs, batch_stats)`` for keypoints ``(..., J_in, C)``.

    The keypoints are normalised here (:func:`normalise_keypoints`); outputs are in the
    normalised unit (module doc).
    """
    shape = tuple(keypoints.shape)
    if len(shape) < 2 or shape[-2:] != (config.num_joints_in, config.in_features):
        raise ValueError(f"keypoints: expected shape (..., J_in={config.num_joints_in}, "
                         f"C_in={config.in_features}), got {shape}")
    if not isinstance(keypoints, jax.core.Tracer):
        _layers.check_finite_host(keypoints, name="keypoints")
    lead = shape[:-2]
    w, scale = normalise_keypoints(jnp.asarray(keypoints, jnp.float32),
                                   root_index=config.root_index)
    n = math.prod(lead) if lead else 1
    rngs = _layers.check_rng(rng, train=train, dropout=config.dropout)
    out, state = FactorizationNet(config).apply(
        {"params": variables["params"], "batch_stats": variables["batch_stats"]},
        w.reshape(n, config.num_joints_in, 2), train=train, bn_momentum=bn_momentum,
        rngs=rngs, mutable=["batch_stats"] if train else [])
    pose, canonical, rotation, omega, code = out
    j = config.num_joints_out
    outputs = FactorizationOutputs(
        pose=pose.reshape(lead + (j, 3)), canonical=canonical.reshape(lead + (j, 3)),
        rotation=rotation.reshape(lead + (3, 3)), omega=omega.reshape(lead + (3,)),
        code=None if code is None else code.reshape(lead + code.shape[-1:]),
        scale=scale.reshape(lead + (1,)))
    stats = state["batch_stats"] if train else variables["batch_stats"]
    return outputs, stats


def network_apply(variables, inputs, *, config, train, rng=None, bn_momentum=0.0):
    """:meth:`jpose.nets.network.Network.apply`: ``({"pose", "canonical", "rotation",
    "omega", "scale"[, "code"]}, batch_stats)``, normalised units."""
    out, stats = apply(variables, inputs, config=config, train=train, rng=rng,
                       bn_momentum=bn_momentum)
    named = {k: v for k, v in out._asdict().items() if v is not None}
    return named, stats


def network_predict(variables, keypoints, *, config):
    """:meth:`jpose.nets.network.Network.predict`: eval-mode camera-frame root-relative
    poses ``(..., J_out, 3)`` times ``config.output_scale`` (metres under the prior)."""
    out, _ = apply(variables, keypoints, config=config, train=False)
    return out.pose * jnp.float32(config.output_scale)


# ----------------------------------------------------------------------- dictionaries


def dictionaries_of(params) -> tuple:
    """``(D_1, ..., D_n)`` of a CFN's params."""
    d = params["dictionary"]
    return tuple(d[f"level{i}"] for i in range(len(d)))


def with_dictionary(params, dictionaries: Sequence[Any]):
    """``params`` with its dictionary replaced (shapes must match)."""
    have = dictionaries_of(params)
    if len(have) != len(dictionaries) or any(
            tuple(a.shape) != tuple(np.shape(b)) for a, b in zip(have, dictionaries)):
        raise ValueError(
            f"dictionary: shapes {[tuple(np.shape(b)) for b in dictionaries]} do not match "
            f"the network's {[tuple(a.shape) for a in have]} (set "
            "model.overrides.dictionary_sizes to the learned sizes)")
    new = dict(params)
    new["dictionary"] = {f"level{i}": jnp.asarray(d, jnp.float32)
                         for i, d in enumerate(dictionaries)}
    return new


def load_dictionary(path: str) -> tuple[np.ndarray, ...]:
    """``(D_1, ..., D_n)`` from an ``.npz`` with ``dictionary_0``, ``dictionary_1``, ...
    (the format of ``launch/learn_dictionary.py`` and ``launch/pretrain_dictionary.py``)."""
    from jpose import io

    arrays = io.load_npz(path, what="recipe.dictionary_path")
    out, i = [], 0
    while f"dictionary_{i}" in arrays:
        out.append(np.asarray(arrays[f"dictionary_{i}"], np.float32))
        i += 1
    if not out:
        raise ValueError(f"recipe.dictionary_path {path!r}: no `dictionary_0` array "
                         f"(found {sorted(arrays)})")
    return tuple(out)


# -------------------------------------------------------------- Deep-NRSfM pre-training


def _block_relu(blocks, bias):
    """ReLU on each atom's block norm: ``b * relu(|b| - bias) / |b|`` (a group soft
    threshold; the blocks carry the camera's signed entries, so the code's ReLU acts on
    their norm)."""
    sq = jnp.sum(blocks * blocks, axis=(-2, -1), keepdims=True)
    zero = sq == 0
    norm = jnp.where(zero, 1.0, jnp.sqrt(jnp.where(zero, 1.0, sq)))
    bias = bias.reshape((1,) * (blocks.ndim - 3) + (bias.shape[-1], 1, 1))
    return blocks * (jax.nn.relu(norm - bias) / norm)


def _deep_nrsfm_forward(params, w):
    """Encoder (transposed, shared dictionaries) and decoder of Deep NRSfM.

    ``w`` ``(N, P, 2)`` normalised 2D. Encoder: ``Psi_1 = block_relu(D_1^T [w])`` with
    the blocks ``(K_1, 3, 2)`` estimating ``psi_1 M^T`` (``M`` the camera's two rows),
    ``Psi_l = block_relu(D_l^T Psi_{l-1})``; the last ``(K_n, 3, 2)`` is factorised
    rank-1 (principal singular pair of its ``(K_n, 6)`` reshape) into the code ``psi_n
    >= 0`` and the camera rows, made orthonormal (polar factor) with their scale moved
    into the code. Decoder: :func:`decode` and the orthographic projection.
    Returns ``(projection (N, P, 2), shapes (N, P, 3), rotations (N, 3, 3), code)``.
    """
    ds, biases = params["dictionaries"], params["biases"]
    n, p, _ = w.shape
    d1 = ds[0].reshape(p, 3, -1)  # (P, 3, K_1)
    blocks = _block_relu(jnp.einsum("pck,npa->nkca", d1, w), biases[0])
    for d, b in zip(ds[1:], biases[1:]):
        blocks = _block_relu(jnp.einsum("kl,nkca->nlca", d, blocks), b)
    k = blocks.shape[1]
    flat = blocks.reshape(n, k, 6)
    u, s, vt = jnp.linalg.svd(flat, full_matrices=False)
    u1, v1 = u[:, :, 0], vt[:, 0, :]
    sign = jnp.where(jnp.sum(u1, axis=-1, keepdims=True) >= 0, 1.0, -1.0)
    code = jax.nn.relu(sign * u1 * s[:, :1])
    m = (sign * v1).reshape(n, 3, 2)  # columns: the camera's two rows
    um, sm, vmt = jnp.linalg.svd(m, full_matrices=False)
    rows = jnp.swapaxes(um @ vmt, -1, -2)  # (N, 2, 3) orthonormal
    code = code * jnp.mean(sm, axis=-1, keepdims=True)
    third = jnp.cross(rows[:, 0], rows[:, 1])
    rotations = jnp.concatenate([rows, third[:, None, :]], axis=1)
    shapes = decode(ds, code)
    projection = jnp.einsum("npc,nac->npa", shapes, rotations[:, :2])
    return projection, shapes, rotations, code


def deep_nrsfm_loss(params, w):
    """Mean squared re-projection error (per coordinate) of :func:`_deep_nrsfm_forward`
    on root-centred normalised 2D ``w`` ``(N, P, 2)``."""
    projection, *_ = _deep_nrsfm_forward(params, w)
    return jnp.mean((projection - w) ** 2)


class DeepNRSfMResult(NamedTuple):
    dictionaries: tuple  # (D_1 (3P, K_1), ..., D_n (K_{n-1}, K_n)) float32
    biases: tuple  # per-level block-ReLU thresholds (K_l,)
    loss_history: np.ndarray  # (epochs + 1,) mean squared re-projection error, per epoch


def deep_nrsfm_pretrain(poses_2d, *, sizes: Sequence[int], epochs: int = 40,
                        batch_size: int = 1024, learning_rate: float = 1e-3, rng,
                        root_index: int = 0, init_dictionaries=None) -> DeepNRSfMResult:
    """Deep-NRSfM encoder-decoder pre-training of the CFN's dictionary (Eq. 4.5-4.7).

    Args:
      poses_2d: ``(N, P, 2)`` 2D poses (any units; normalised here as the CFN's input).
      sizes: ``(K_1, ..., K_n)``.
      epochs, batch_size, learning_rate: Adam on mini-batches (thesis: 40 epochs).
      rng: a JAX key (or int): initial dictionaries and the shuffles.
      init_dictionaries: optional start (e.g. an NRSfM dictionary).

    Returns:
      :class:`DeepNRSfMResult`; ``loss_history[0]`` is the loss at the start and
      ``loss_history[e]`` after ``e`` epochs, over all samples.
    """
    rng = jax.random.key(rng) if isinstance(rng, int) else rng
    w, _ = normalise_keypoints(jnp.asarray(poses_2d, jnp.float32), root_index=root_index)
    n, p, _ = w.shape
    k_init, k_order = jax.random.split(rng)
    ds = (random_dictionaries(k_init, sizes, p) if init_dictionaries is None
          else tuple(jnp.asarray(d, jnp.float32) for d in init_dictionaries))
    params = {"dictionaries": ds,
              "biases": tuple(jnp.zeros((int(k),), jnp.float32) for k in sizes)}
    tx = optax.adam(learning_rate)
    opt_state = tx.init(params)
    size = max(1, min(int(batch_size), n))
    steps = n // size

    @jax.jit
    def epoch(params, opt_state, key):
        perm = jax.random.permutation(key, n)[:steps * size].reshape(steps, size)

        def body(carry, idx):
            params, opt_state = carry
            grads = jax.grad(deep_nrsfm_loss)(params, w[idx])
            with jax.numpy_dtype_promotion("standard"):
                updates, opt_state = tx.update(grads, opt_state, params)
            params = optax.apply_updates(params, updates)
            # Thresholds stay >= 0 (a shrinkage, as a ReLU's negative bias).
            params["biases"] = tuple(jnp.maximum(b, 0) for b in params["biases"])
            return (params, opt_state), None

        (params, opt_state), _ = jax.lax.scan(body, (params, opt_state), perm)
        return params, opt_state

    full_loss = jax.jit(deep_nrsfm_loss)
    history = [float(full_loss(params, w))]
    for e in range(int(epochs)):
        params, opt_state = epoch(params, opt_state, jax.random.fold_in(k_order, e))
        history.append(float(full_loss(params, w)))
    return DeepNRSfMResult(tuple(params["dictionaries"]), tuple(params["biases"]),
                           np.asarray(history, np.float32))
