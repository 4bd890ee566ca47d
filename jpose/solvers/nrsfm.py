r"""Non-rigid structure from motion by hierarchical sparse dictionary learning.

From 2D poses alone (orthographic cameras), learn a hierarchical pose dictionary, per-sample
cameras and non-negative sparse codes whose 3D shapes reproject onto the observations
(Yang Li's thesis, ch. 4; the multi-layer sparse-coding view of Kong & Lucey, "Deep
Non-Rigid Structure from Motion", ICCV 2019).

**Model.** For sample ``i`` with observed joints ``W_i`` ``(P, 2)`` (any joint order, the
same for all samples), the canonical 3D shape is

    S_i = reshape(D_1 D_2 ... D_L psi_i, (P, 3))        (row 3p + c of D_1 = joint p, axis c)

with ``D_1`` ``(3P, K_1)``, ``D_l`` ``(K_{l-1}, K_l)`` and the code ``psi_i = psi_L^i``
``(K_L,)``. The intermediate codes are ``psi_{l-1} = D_l psi_l``. The camera is a proper
rotation ``R_i`` ``(3, 3)`` mapping the canonical frame to the camera frame (x right,
y down, z forward) and the projection is orthographic:

    W_i ≈ (S_i R_i^T)[:, :2]          i.e. camera-frame pose X_i = S_i R_i^T, keep x, y.

Constraints: every code is non-negative at every layer; the columns of every ``D_l`` have
norm <= 1 (removing the scale trade-off between a dictionary and its codes); ``D_1``'s
columns are centred over joints (the model has no translation, see below); and
``D_2 ... D_L`` are **entrywise non-negative**. The last one is our choice: it makes every
intermediate code ``psi_l = D_{l+1} ... D_L psi_L`` non-negative automatically whenever
``psi_L >= 0``, so the multi-layer constraints hold *exactly* (Kong & Lucey only enforce
them approximately, through ReLUs of an unrolled network), and the multi-layer sparsity
penalty ``sum_l lambda_l ||psi_l||_1`` becomes the linear function ``c^T psi_L`` with
``c = sum_l lambda_l D_L^T ... D_{l+1}^T 1``. Each sample's coding problem is then a convex
non-negative weighted lasso, solved exactly by FISTA. ``D_1`` keeps signs: its columns are
3D shape atoms; deeper layers combine atoms into parts and poses.

**Objective** (per sample, averaged over samples):

    F = 1/N sum_i [ 1/2 ||W_i - (S_i R_i^T)[:, :2]||_F^2 + sum_l lambda_l ||psi_l^i||_1 ].

**Translation.** Inputs are centred on their joint centroid before fitting. For
orthographic cameras this eliminates the translation exactly (the least-squares
translation of a projection is the centroid difference), whatever centring the caller
used (root-centred is fine). Reconstructions are returned **centred on the joint
centroid** in the canonical frame; the camera-frame pose is ``poses_3d @ R^T``
(:func:`to_camera_frame`).

**Scale and units.** :func:`learn_dictionary` and :func:`reconstruct` divide the
observations by one global scale, the RMS centred coordinate over the whole input
(``scale`` in the result), so the penalties ``lambda_l`` are unit-free: the same defaults
work for metres, millimetres or pixels. Codes and ``poses_3d`` are returned in the input's
units; dictionaries are unit-free (column norm <= 1). :func:`sparse_codes`, the low-level
solver, does not rescale: its ``sparsity`` is in the units of ``poses_2d``.

**Ambiguities.** Orthographic NRSfM determines the reconstruction up to one global
rotation of the canonical frame *and one global reflection*: replacing every ``S_i`` by
``S_i Z`` and ``R_i`` by ``Z R_i Z`` with ``Z = diag(1, 1, -1)`` leaves every projection
unchanged (it negates the depth of every camera-frame pose). Compare reconstructions with
the truth after one global alignment, or per pose with P-MPJPE choosing the better of the
two reflections for the whole data set (see ``tests/test_nrsfm.py``).

**Algorithm** (:func:`learn_dictionary`). Block-coordinate descent on ``F``; each block
step can only lower ``F``, so **the objective never increases**:

1. dictionaries, layer by layer: monotone FISTA (Beck & Teboulle's MFISTA: projected
   gradient steps from an extrapolated point, the iterate moving only to a candidate with
   lower ``F``) with step ``1/L`` from the Lipschitz bound
   ``||D_1...D_{l-1}||_2^2 lambda_max(Psi_l^T Psi_l) / N`` (descent lemma);
2. codes: FISTA with adaptive restart on each sample's weighted lasso (step from the
   spectral norm of ``A_i^T A_i``), warm-started, accepted per sample if not worse;
3. cameras: majorise-minimise steps that fill in the unobserved depth with its current
   value and solve the resulting orthogonal Procrustes problem in closed form
   (:func:`jpose.procrustes.similarity_transform`, det +1); never an increase, and
   accepted per sample as a guard;
4. every ``reseed_every`` iterations, a per-sample multi-start over cameras (the sample's
   own shape aligned with its depth-reversed camera-frame pose, a generic pose aligned
   with the pose and with its mirror), each coded from scratch; a sample adopts the best
   start only if its objective drops. Alternation alone leaves some samples in the
   mirror-image (depth-reversed) interpretation of their 2D pose; on the sample mocap
   this step lowers P-MPJPE by about 15 mm.

Finally the whole iteration is reverted if (through rounding) ``F`` rose, so the recorded
``objective_history`` is non-increasing exactly. The loop stops when the relative decrease
``(F_prev - F) / F_prev`` drops to ``tol`` (over one epoch of mini-batches when
``batch_size`` is set). All of it is one ``lax.while_loop`` (:func:`jpose.solvers._loop.iterate`).

**Initialisation.** NRSfM is non-convex and sensitive to its start. Cameras and a mean
shape come from the Tomasi-Kanade rigid factorisation with the metric upgrade (treating
all samples as views of one rigid body: right on average for human poses, whose
variation about the mean is smaller than the mean). ``D_1``'s atoms start as that mean
shape plus Gaussian noise (``init_noise``, relative; it breaks the symmetry between atoms),
deeper dictionaries as uniform random non-negative matrices, all columns normalised; the
codes start at zero (entry 0 of ``objective_history``) and the first iteration codes and
reseeds every sample. The global reflection of the result is whichever the rigid
factorisation picked. ``max_iterations=0`` returns this initialisation.

**Mini-batches.** With ``batch_size``, each iteration updates the codes and cameras of one
block of a fixed random partition (a permutation from ``rng``, wrapped so that all blocks
have ``batch_size`` samples) and takes dictionary steps on that block's objective with its
own Lipschitz bound. Dictionary steps are still accepted only if the *full* objective does
not increase (one cheap forward pass over all samples), so the guarantee holds there too.

**Differentiation.** The solvers run ``lax.while_loop`` and are not reverse-differentiable;
they are fitting procedures, not layers.
"""

from __future__ import annotations

import dataclasses
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jpose import procrustes
from jpose.solvers import _loop
from jpose.solvers import _nrsfm_ops as ops

__all__ = [
    "SparseCodingConfig",
    "DictionaryLearningConfig",
    "SparseCodingResult",
    "DictionaryLearningState",
    "DictionaryLearningResult",
    "ReconstructionResult",
    "sparse_codes",
    "learn_dictionary",
    "reconstruct",
    "shapes_from_codes",
    "to_camera_frame",
    "project",
]


def _sparsity_tuple(sparsity, layers: int, name: str) -> tuple[float, ...]:
    if isinstance(sparsity, (int, float)):
        values = (float(sparsity),) * layers
    else:
        values = tuple(float(s) for s in sparsity)
        if len(values) != layers:
            raise ValueError(f"`{name}` must be one float or {layers} floats (one per "
                             f"dictionary layer); got {len(values)}.")
    if not all(math.isfinite(v) and v >= 0 for v in values):
        raise ValueError(f"`{name}` must be finite and >= 0; got {values}.")
    return values


@dataclasses.dataclass(frozen=True)
class SparseCodingConfig:
    """Static configuration of :func:`sparse_codes` (hashable, static under ``jit``).

    Attributes:
      sparsity: ``lambda_l`` per layer (one float for all layers, or a tuple of length L),
        in the **units of poses_2d** (the penalty is ``lambda_l ||psi_l||_1`` next to a
        squared reprojection error, and codes carry the data's units).
      maxiter: FISTA iteration budget.
      tol: stop when every sample's gradient-mapping norm, relative to the gradient at 0
        (``||A^T w||_inf + ||c||_inf``), is <= tol. 1e-5 is reachable in float32.
    """

    sparsity: float | tuple[float, ...] = 0.0
    maxiter: int = 500
    tol: float = 1e-5

    def __post_init__(self):
        if not isinstance(self.sparsity, (int, float)):
            # A tuple (hashable, static under jit); its length is checked against the
            # dictionaries when solving.
            object.__setattr__(self, "sparsity", tuple(float(s) for s in self.sparsity))
        _sparsity_tuple(self.sparsity, 1 if isinstance(self.sparsity, (int, float))
                        else len(self.sparsity), "sparsity")
        if int(self.maxiter) < 0:
            raise ValueError(f"`maxiter` must be >= 0; got {self.maxiter}.")
        if not self.tol >= 0:
            raise ValueError(f"`tol` must be >= 0; got {self.tol}.")


@dataclasses.dataclass(frozen=True)
class DictionaryLearningConfig:
    """Static configuration of :func:`learn_dictionary` and :func:`reconstruct`.

    Attributes:
      sizes: ``(K_1, ..., K_L)``, atoms per layer (the thesis: K_1 = 125, last 10).
      sparsity: ``lambda_l`` per layer (a float for all layers or a tuple of length L),
        for observations scaled to unit RMS coordinate (so unit-free). The default 0.03
        was the best of 1e-4 ... 0.1 on the sample mocap (P-MPJPE); on noise-free data
        from an exact dictionary a smaller value (1e-4) removes its shrinkage bias.
      maxiter: outer iteration budget (also the length - 1 of ``objective_history``).
      tol: stop when the relative decrease of the objective over one iteration (one epoch
        with ``batch_size``) is <= tol. Alternation creeps: expect ``maxiter`` to be
        reached at the default; 100-300 iterations capture most of the gain.
      code_maxiter, code_tol: FISTA budget and tolerance of each code step (warm-started,
        so a small budget suffices once the codes settle).
      camera_steps: majorise-minimise camera steps per iteration.
      dictionary_steps: (monotone FISTA) projected-gradient steps per dictionary layer
        per iteration.
      batch_size: None for full-batch iterations; otherwise samples per mini-batch.
      init_noise: relative Gaussian noise added to the mean shape in ``D_1``'s atoms.
      reseed_every: every this many iterations (from the first; 0 never) each sample of
        the block tries fresh cameras (see :func:`_reseed_block`) and keeps the best.
    """

    sizes: tuple[int, ...] = (125, 10)
    sparsity: float | tuple[float, ...] = 0.03
    maxiter: int = 300
    tol: float = 1e-6
    code_maxiter: int = 30
    code_tol: float = 1e-5
    camera_steps: int = 2
    dictionary_steps: int = 10
    batch_size: int | None = None
    init_noise: float = 0.3
    reseed_every: int = 10

    def __post_init__(self):
        sizes = tuple(int(k) for k in self.sizes)
        if not sizes or min(sizes) < 1:
            raise ValueError(f"`sizes` must be a non-empty tuple of positive ints; got "
                             f"{self.sizes}.")
        object.__setattr__(self, "sizes", sizes)
        if not isinstance(self.sparsity, (int, float)):
            object.__setattr__(self, "sparsity", tuple(float(s) for s in self.sparsity))
        _sparsity_tuple(self.sparsity, len(sizes), "sparsity")
        for name in ("maxiter", "code_maxiter", "camera_steps", "dictionary_steps",
                     "reseed_every"):
            if int(getattr(self, name)) < 0:
                raise ValueError(f"`{name}` must be >= 0; got {getattr(self, name)}.")
        if self.batch_size is not None and int(self.batch_size) < 1:
            raise ValueError(f"`batch_size` must be None or >= 1; got {self.batch_size}.")
        if not (self.tol >= 0 and self.code_tol >= 0 and self.init_noise >= 0):
            raise ValueError("`tol`, `code_tol` and `init_noise` must be >= 0.")


class SparseCodingResult(NamedTuple):
    """Output of :func:`sparse_codes` (leading axes ``...`` as in ``poses_2d``).

    Attributes:
      codes: ``(..., K_L)`` non-negative last-layer codes, in the units of ``poses_2d``.
      poses_3d: ``(..., P, 3)`` canonical shapes ``reshape(D_1...D_L codes)``, centred on
        the joint centroid, units of ``poses_2d``.
      objective: ``(...,)`` per-sample ``1/2 ||W - proj||^2 + sum_l lambda_l ||psi_l||_1``.
      residual: ``(...,)`` relative gradient-mapping norm (the stopping measure).
      status: int32 :class:`jpose.solvers._loop.Status` for the whole batch.
      iterations: int32 FISTA iterations.
      state: the final :class:`jpose.solvers._nrsfm_ops.CodeState` (flattened batch).
    """

    codes: jax.Array
    poses_3d: jax.Array
    objective: jax.Array
    residual: jax.Array
    status: jax.Array
    iterations: jax.Array
    state: ops.CodeState


class DictionaryLearningState(NamedTuple):
    """Loop carry of the alternation (all in normalised units: data / scale)."""

    dictionaries: tuple  # (D_1 (3P, K_1), ..., D_L (K_{L-1}, K_L)) float
    codes: jax.Array  # (N, K_L) float >= 0
    rotations: jax.Array  # (N, 3, 3) float, proper rotations
    objective: jax.Array  # () float: current mean objective F
    history: jax.Array  # (maxiter + 1,) float: F after k iterations (0 beyond `step`)
    step: jax.Array  # () int32: iterations done
    code_iterations: jax.Array  # () int32: FISTA iterations of the last code step


class DictionaryLearningResult(NamedTuple):
    """Output of :func:`learn_dictionary`.

    Attributes:
      dictionaries: ``(D_1 (3P, K_1), ..., D_L (K_{L-1}, K_L))``, unit-free.
      codes: ``(N, K_L)`` codes in input units (``poses_3d = reshape(D_1...D_L codes)``).
      rotations: ``(N, 3, 3)`` canonical -> camera rotations, det +1.
      poses_3d: ``(N, P, 3)`` canonical shapes, joint-centroid-centred, input units.
      objective: ``()`` final mean objective, normalised units (input / scale).
      objective_history: ``(maxiter + 1,)``: entry k is F after k iterations; NaN after
        the last iteration.
      status: int32 ``Status``; iterations: int32 outer iterations.
      scale: ``()`` the RMS centred input coordinate the data were divided by.
      state: the final :class:`DictionaryLearningState`.
    """

    dictionaries: tuple
    codes: jax.Array
    rotations: jax.Array
    poses_3d: jax.Array
    objective: jax.Array
    objective_history: jax.Array
    status: jax.Array
    iterations: jax.Array
    scale: jax.Array
    state: DictionaryLearningState


class ReconstructionResult(NamedTuple):
    """Output of :func:`reconstruct` (fields as in :class:`DictionaryLearningResult`)."""

    codes: jax.Array
    rotations: jax.Array
    poses_3d: jax.Array
    objective: jax.Array
    objective_history: jax.Array
    status: jax.Array
    iterations: jax.Array
    scale: jax.Array
    state: DictionaryLearningState


# ---------------------------------------------------------------------------------------
# Input checks (trace time, from static shapes; values only when concrete).
# ---------------------------------------------------------------------------------------


def _check_poses_2d(poses_2d, *, batched: bool):
    poses_2d = jnp.asarray(poses_2d)
    if batched and (poses_2d.ndim != 3 or poses_2d.shape[-1] != 2):
        raise ValueError(f"`poses_2d` must have shape (N, P, 2); got {poses_2d.shape}.")
    if poses_2d.ndim < 2 or poses_2d.shape[-1] != 2:
        raise ValueError(f"`poses_2d` must have shape (..., P, 2); got {poses_2d.shape}.")
    if poses_2d.shape[-2] < 3:
        raise ValueError(f"`poses_2d` needs at least 3 joints; got {poses_2d.shape}.")
    _loop.check_finite("poses_2d", poses_2d)
    return poses_2d.astype(_loop.float_dtype(poses_2d))


def _check_dictionaries(dictionaries, joints: int, dtype):
    if not isinstance(dictionaries, (tuple, list)) or not dictionaries:
        raise ValueError("`dictionaries` must be a non-empty tuple (D_1 (3P, K_1), "
                         "D_2 (K_1, K_2), ...).")
    out = []
    rows = 3 * joints
    for i, d in enumerate(dictionaries):
        d = jnp.asarray(d)
        if d.ndim != 2 or d.shape[0] != rows:
            raise ValueError(f"`dictionaries[{i}]` must have shape ({rows}, K_{i + 1}); got "
                             f"{d.shape}." + (" (3P rows for P joints)" if i == 0 else ""))
        _loop.check_finite(f"dictionaries[{i}]", d)
        if i > 0 and not isinstance(d, jax.core.Tracer) and np.any(np.asarray(d) < 0):
            raise ValueError(f"`dictionaries[{i}]` must be entrywise non-negative (layers "
                             "below the first keep every code non-negative).")
        rows = d.shape[1]
        out.append(d.astype(dtype))
    return tuple(out)


def _check_rotations(rotations, lead, dtype):
    rotations = jnp.asarray(rotations)
    if rotations.shape != tuple(lead) + (3, 3):
        raise ValueError(f"`rotations` must have shape {tuple(lead) + (3, 3)}; got "
                         f"{rotations.shape}.")
    _loop.check_finite("rotations", rotations)
    return rotations.astype(dtype)


def _budget(max_iterations, default: int):
    if max_iterations is None:
        return default
    if isinstance(max_iterations, int):
        return min(max_iterations, default)
    return jnp.minimum(jnp.asarray(max_iterations, jnp.int32), default)


# ---------------------------------------------------------------------------------------
# Public helpers.
# ---------------------------------------------------------------------------------------


def shapes_from_codes(dictionaries, codes):
    """3D shapes ``(..., P, 3)`` = ``reshape(D_1 ... D_L codes, (P, 3))`` (codes' units)."""
    codes = jnp.asarray(codes)
    dictionaries = tuple(jnp.asarray(d).astype(codes.dtype) for d in dictionaries)
    return ops.shapes_from_codes(dictionaries, codes)


def to_camera_frame(poses_3d, rotations):
    """Camera-frame poses ``poses_3d @ R^T`` ``(..., P, 3)``; depth is the last axis."""
    return jnp.einsum("...pc,...ac->...pa", poses_3d, rotations)


def project(poses_3d, rotations):
    """Orthographic projection ``(poses_3d @ R^T)[..., :2]`` ``(..., P, 2)``."""
    return to_camera_frame(poses_3d, rotations)[..., :2]


# ---------------------------------------------------------------------------------------
# Sparse coding.
# ---------------------------------------------------------------------------------------


def sparse_codes(poses_2d, dictionaries, rotations, *, config: SparseCodingConfig =
                 SparseCodingConfig(), init_codes=None, max_iterations=None
                 ) -> SparseCodingResult:
    """Multi-layer non-negative sparse codes for fixed dictionaries and cameras (FISTA).

    Solves, for every sample independently (all in one ``while_loop``),

        min_{psi >= 0} 1/2 ||W - (reshape(D_1...D_L psi) R^T)[:, :2]||^2
                       + sum_l lambda_l ||D_{l+1}...D_L psi||_1

    (a convex non-negative weighted lasso, see the module docstring) by FISTA with
    adaptive restart and per-sample step ``1 / lambda_max(A^T A)``. ``poses_2d`` and the
    shapes are centred on the joint centroid (exact translation elimination).

    Args:
      poses_2d: ``(..., P, 2)`` observations (any units; ``sparsity`` is in these units).
      dictionaries: ``(D_1 (3P, K_1), ..., D_L)``; ``D_2..D_L`` must be non-negative.
      rotations: ``(..., 3, 3)`` cameras (canonical -> camera).
      config: :class:`SparseCodingConfig` (its ``sparsity`` as a tuple must have L
        entries).
      init_codes: optional ``(..., K_L)`` warm start (clipped at 0); default zeros.
      max_iterations: optional budget (int or traced), capped at ``config.maxiter``.

    Returns:
      :class:`SparseCodingResult`. Non-finite inputs raise ``ValueError`` when concrete;
      traced ones give status ``NON_FINITE``.
    """
    poses_2d = _check_poses_2d(poses_2d, batched=False)
    dtype = poses_2d.dtype
    lead, joints = poses_2d.shape[:-2], poses_2d.shape[-2]
    dictionaries = _check_dictionaries(dictionaries, joints, dtype)
    rotations = _check_rotations(rotations, lead, dtype)
    sparsity = _sparsity_tuple(config.sparsity, len(dictionaries), "config.sparsity")
    k = dictionaries[-1].shape[1]
    count = math.prod(lead)
    w = ops.centre_joints(poses_2d.reshape(count, joints, 2), axis=1)
    r = rotations.reshape(count, 3, 3)
    if init_codes is None:
        codes0 = jnp.zeros((count, k), dtype)
    else:
        init_codes = jnp.asarray(init_codes)
        if init_codes.shape != tuple(lead) + (k,):
            raise ValueError(f"`init_codes` must have shape {tuple(lead) + (k,)}; got "
                             f"{init_codes.shape}.")
        _loop.check_finite("init_codes", init_codes)
        codes0 = init_codes.astype(dtype).reshape(count, k)
    block = ops.centre_joints(ops.basis(dictionaries), axis=0)
    weights = ops.penalty_weights(dictionaries, sparsity)
    problem = ops.code_problem(w, block, r, weights)
    out = ops.solve_codes(problem, codes0, tol=config.tol,
                          max_iterations=_budget(max_iterations, int(config.maxiter)))
    codes = out.state.codes
    shapes = jnp.einsum("pck,nk->npc", block, codes)
    objective = ops.reprojection_terms(w, shapes, r) + codes @ weights
    return SparseCodingResult(
        codes=codes.reshape(tuple(lead) + (k,)),
        poses_3d=shapes.reshape(tuple(lead) + (joints, 3)),
        objective=objective.reshape(lead),
        residual=out.state.residual.reshape(lead),
        status=out.status, iterations=out.iterations, state=out.state)


# ---------------------------------------------------------------------------------------
# The alternation.
# ---------------------------------------------------------------------------------------


def _mean_objective(poses_2d, dictionaries, codes, rotations, sparsity):
    return jnp.mean(ops.objective_terms(poses_2d, dictionaries, codes, rotations, sparsity))


def _replace(dictionaries, layer, value):
    return dictionaries[:layer] + (value,) + dictionaries[layer + 1:]


def _dictionary_block(config, sparsity, w_all, codes_all, r_all, w, codes, r,
                      dictionaries, objective, full_batch: bool):
    """Monotone FISTA (Beck & Teboulle 2009, MFISTA) on each layer in turn.

    Projected-gradient steps from an extrapolated point with step ``1 / L`` (the
    Lipschitz bound of :func:`ops.dictionary_lipschitz`); the iterate only moves to a
    candidate whose objective ``F`` is not larger, so ``F`` never increases, while the
    extrapolation keeps the O(1/k^2) rate that plain projected gradient lacks (the
    dictionary block is what limits the alternation's progress otherwise).
    """

    def full_objective(dicts):
        if full_batch:
            return _mean_objective(w, dicts, codes, r, sparsity)
        return _mean_objective(w_all, dicts, codes_all, r_all, sparsity)

    for layer in range(len(dictionaries)):
        lip = ops.dictionary_lipschitz(dictionaries, codes, layer, codes.shape[0])

        def batch_objective(value, dicts, layer=layer):
            return _mean_objective(w, _replace(dicts, layer, value), codes, r, sparsity)

        def body(_, carry, layer=layer, lip=lip, batch_objective=batch_objective):
            dicts, value, y, t = carry
            x = dicts[layer]
            gradient = jax.grad(batch_objective)(y, dicts)
            z = ops.project_dictionary(y - gradient / lip, layer)
            z_value = full_objective(_replace(dicts, layer, z))
            accept = z_value <= value
            x_new = jnp.where(accept, z, x)
            t_new = 0.5 * (1 + jnp.sqrt(1 + 4 * t * t))
            y_new = x_new + (t / t_new) * (z - x_new) + ((t - 1) / t_new) * (x_new - x)
            return (_replace(dicts, layer, x_new), jnp.where(accept, z_value, value), y_new,
                    t_new)

        one = jnp.ones((), dictionaries[layer].dtype)
        dictionaries, objective, _, _ = jax.lax.fori_loop(
            0, int(config.dictionary_steps), body,
            (dictionaries, objective, dictionaries[layer], one))
    return dictionaries, objective


def _code_block(config, sparsity, w, dictionaries, codes, r):
    """Warm-started FISTA on every sample; a sample keeps its old code if not improved."""
    weights = ops.penalty_weights(dictionaries, sparsity)
    problem = ops.code_problem(w, ops.basis(dictionaries), r, weights)
    out = ops.solve_codes(problem, codes, tol=config.code_tol,
                          max_iterations=int(config.code_maxiter))
    old = ops.objective_terms(w, dictionaries, codes, r, sparsity)
    new = ops.objective_terms(w, dictionaries, out.state.codes, r, sparsity)
    keep_new = new <= old
    return jnp.where(keep_new[:, None], out.state.codes, codes), out.iterations


def _reseed_block(config, sparsity, w, dictionaries, codes, r):
    """Per-sample multi-start over cameras; a sample moves only if its objective drops.

    Alternation gets stuck where a sample's camera and code settle on the mirror-image
    interpretation of its 2D pose (depth reversed) or on a poor view. Three starts, each
    a rotation from orthogonal Procrustes (det +1), coded from scratch and refined by
    camera steps: the sample's own shape aligned with its depth-reversed camera-frame
    pose ``X diag(1, 1, -1)`` (``X = S R^T``), and the sum of the composite atoms (a
    generic pose) aligned with ``X`` and with the mirror. vmapped: one compiled copy.
    (All K_L atoms as extra references cost 7x more and gained nothing on the sample
    mocap; the mirror start alone lost 10 mm P-MPJPE there.)
    """
    n, k = codes.shape
    block = ops.basis(dictionaries)
    weights = ops.penalty_weights(dictionaries, sparsity)
    posed = ops.shapes_from_codes(dictionaries, codes)
    camera = jnp.einsum("npc,nac->npa", posed, r)
    mirror = jnp.concatenate([camera[..., :2], -camera[..., 2:]], axis=-1)
    total = jnp.broadcast_to(ops.centre_joints(jnp.sum(block, axis=-1), axis=0), posed.shape)
    sources = jnp.stack([posed, total, total])
    targets = jnp.stack([mirror, camera, mirror])

    def start(source, target):
        rotations = procrustes.similarity_transform(source, target,
                                                    allow_scale=False).rotation
        problem = ops.code_problem(w, block, rotations, weights)
        new = ops.solve_codes(problem, jnp.zeros((n, k), codes.dtype), tol=config.code_tol,
                              max_iterations=int(config.code_maxiter)).state.codes
        rotations = ops.camera_steps(w, ops.shapes_from_codes(dictionaries, new), rotations,
                                     int(config.camera_steps))
        return new, rotations, ops.objective_terms(w, dictionaries, new, rotations, sparsity)

    cand_codes, cand_r, values = jax.vmap(start)(sources, targets)
    best = jnp.argmin(values, axis=0)
    samples = jnp.arange(n)
    current = ops.objective_terms(w, dictionaries, codes, r, sparsity)
    better = values[best, samples] < current
    codes = jnp.where(better[:, None], cand_codes[best, samples], codes)
    r = jnp.where(better[:, None, None], cand_r[best, samples], r)
    return codes, r


def _make_update(config, sparsity, w_all, blocks, learn: bool, window: int):
    full_batch = blocks is None

    def update(state: DictionaryLearningState):
        dictionaries, codes_all, r_all = state.dictionaries, state.codes, state.rotations
        if full_batch:
            index = None
            w, codes, r = w_all, codes_all, r_all
        else:
            index = blocks[state.step % blocks.shape[0]]
            w, codes, r = w_all[index], codes_all[index], r_all[index]
        objective = state.objective
        if learn:
            dictionaries, objective = _dictionary_block(
                config, sparsity, w_all, codes_all, r_all, w, codes, r, dictionaries,
                objective, full_batch)
        codes, code_iterations = _code_block(config, sparsity, w, dictionaries, codes, r)
        shapes = ops.shapes_from_codes(dictionaries, codes)
        r = ops.camera_steps(w, shapes, r, int(config.camera_steps))
        if int(config.reseed_every) > 0:
            codes, r = jax.lax.cond(
                state.step % int(config.reseed_every) == 0,
                lambda c, rr: _reseed_block(config, sparsity, w, dictionaries, c, rr),
                lambda c, rr: (c, rr), codes, r)
        if full_batch:
            codes_all, r_all = codes, r
        else:
            codes_all = codes_all.at[index].set(codes)
            r_all = r_all.at[index].set(r)
        value = _mean_objective(w_all, dictionaries, codes_all, r_all, sparsity)
        # The global acceptance check: rounding (the block checks evaluate F in other
        # places of the graph) must not let the recorded objective creep up.
        improved = value <= state.objective
        new = DictionaryLearningState(dictionaries, codes_all, r_all, value,
                                      state.history, state.step, code_iterations)
        old = state._replace(code_iterations=code_iterations)
        new = jax.tree.map(lambda a, b: jnp.where(improved, a, b), new, old)
        step = state.step + 1
        history = new.history.at[step].set(new.objective)
        previous = history[jnp.maximum(step - window, 0)]
        decrease = previous - new.objective
        converged = jnp.logical_and(step >= window,
                                    decrease <= config.tol * jnp.abs(previous))
        return new._replace(history=history, step=step), converged

    return update


def _normalise(poses_2d, scale):
    w = ops.centre_joints(poses_2d, axis=1)
    if scale is None:
        rms = jnp.sqrt(jnp.mean(w * w))
        scale = jnp.where(rms > 0, rms, jnp.ones_like(rms))
    else:
        scale = jnp.asarray(scale).astype(w.dtype)
    return w / scale, scale


def _initial_state(config, sparsity, w, dictionaries, codes, rotations):
    value = _mean_objective(w, dictionaries, codes, rotations, sparsity)
    history = jnp.zeros((int(config.maxiter) + 1,), w.dtype).at[0].set(value)
    return DictionaryLearningState(dictionaries, codes, rotations, value, history,
                                   jnp.zeros((), jnp.int32), jnp.zeros((), jnp.int32))


def _run(config, sparsity, w, state, blocks, learn, max_iterations):
    window = 1 if blocks is None else blocks.shape[0]
    update = _make_update(config, sparsity, w, blocks, learn, window)
    out = _loop.iterate(state, update, max_iterations=max_iterations)
    steps = jnp.arange(out.state.history.shape[0], dtype=jnp.int32)
    history = jnp.where(steps <= out.iterations, out.state.history,
                        jnp.full_like(out.state.history, jnp.nan))
    return out, history


def _learn_impl(poses_2d, rng, max_iterations, config):
    n, joints, _ = poses_2d.shape
    dtype = poses_2d.dtype
    sparsity = _sparsity_tuple(config.sparsity, len(config.sizes), "config.sparsity")
    w, scale = _normalise(poses_2d, None)
    rotations, mean_shape = ops.rigid_factorisation(w)
    keys = jax.random.split(rng, len(config.sizes) + 1)
    d0 = mean_shape.reshape(3 * joints)
    d0 = d0 / jnp.maximum(jnp.linalg.norm(d0), jnp.finfo(dtype).tiny)
    noise = jax.random.normal(keys[0], (3 * joints, config.sizes[0]), dtype)
    first = d0[:, None] + (config.init_noise / math.sqrt(3 * joints)) * noise
    dictionaries = [first]
    for i, (rows, cols) in enumerate(zip(config.sizes[:-1], config.sizes[1:])):
        dictionaries.append(jax.random.uniform(keys[i + 1], (rows, cols), dtype))
    # Unit columns (the projection would only shrink columns longer than 1).
    dictionaries = tuple(
        d / jnp.maximum(jnp.linalg.norm(d, axis=0, keepdims=True), jnp.finfo(dtype).tiny)
        for d in (ops.project_dictionary(d, i) for i, d in enumerate(dictionaries)))
    codes = jnp.zeros((n, config.sizes[-1]), dtype)
    state = _initial_state(config, sparsity, w, dictionaries, codes, rotations)
    blocks = None
    if config.batch_size is not None and int(config.batch_size) < n:
        size = int(config.batch_size)
        count = -(-n // size)
        perm = jax.random.permutation(keys[-1], n)
        blocks = jnp.concatenate([perm, perm[:count * size - n]]).reshape(count, size)
    out, history = _run(config, sparsity, w, state, blocks, True, max_iterations)
    final = out.state
    shapes = ops.shapes_from_codes(final.dictionaries, final.codes)
    return DictionaryLearningResult(
        dictionaries=final.dictionaries, codes=final.codes * scale,
        rotations=final.rotations, poses_3d=shapes * scale, objective=final.objective,
        objective_history=history, status=out.status, iterations=out.iterations,
        scale=scale, state=final)


_learn_jit = jax.jit(_learn_impl, static_argnames=("config",))


def _as_key(rng):
    if isinstance(rng, int):
        return jax.random.key(rng)
    return rng


def learn_dictionary(poses_2d, *, config: DictionaryLearningConfig =
                     DictionaryLearningConfig(), rng, max_iterations=None
                     ) -> DictionaryLearningResult:
    """Learns a hierarchical pose dictionary, cameras and codes from 2D poses alone.

    Args:
      poses_2d: ``(N, P, 2)`` orthographic observations (any units; e.g. metres of a
        projected pose, or pixels of a weak-perspective camera), any centring.
      config: :class:`DictionaryLearningConfig` (static).
      rng: a JAX PRNG key (or an int seed): initial atoms and the mini-batch partition.
      max_iterations: optional budget (int or traced int32, including 0), capped at
        ``config.maxiter``.

    Returns:
      :class:`DictionaryLearningResult`; see the module docstring for the model, the
      algorithm and the ambiguities. Jit-compiled internally (``config`` static); it can
      also be called under an outer ``jit``.

    Raises:
      ValueError: bad shapes, fewer than 2 samples or 3 joints, NaN or inf in a concrete
        ``poses_2d`` (traced non-finite inputs give status ``NON_FINITE``).
    """
    poses_2d = _check_poses_2d(poses_2d, batched=True)
    if poses_2d.shape[0] < 2:
        raise ValueError(f"`poses_2d` needs at least 2 samples; got {poses_2d.shape}.")
    budget = _budget(max_iterations, int(config.maxiter))
    return _learn_jit(poses_2d, _as_key(rng), jnp.asarray(budget, jnp.int32), config)


def _reconstruct_impl(poses_2d, dictionaries, scale, max_iterations, config):
    dtype = poses_2d.dtype
    n = poses_2d.shape[0]
    sparsity = _sparsity_tuple(config.sparsity, len(dictionaries), "config.sparsity")
    w, scale = _normalise(poses_2d, scale)
    # Centred atoms make the fit translation-free exactly (as in learning, where D_1 is
    # kept centred); learned dictionaries are unchanged by this.
    dictionaries = (ops.centre_atoms(dictionaries[0]),) + tuple(dictionaries[1:])
    block = ops.basis(dictionaries)  # (P, 3, K)
    k = block.shape[-1]
    weights = ops.penalty_weights(dictionaries, sparsity)
    # Multi-start: cameras fitted (affinely, then made orthonormal) to each atom and to the
    # sum of the atoms; keep, per sample, the start whose coded objective is lowest.
    references = jnp.concatenate([jnp.sum(block, axis=-1, keepdims=True), block], axis=-1)

    def start(reference):
        r = ops.affine_cameras(w, ops.centre_joints(reference, axis=0))
        problem = ops.code_problem(w, block, r, weights)
        codes = ops.solve_codes(problem, jnp.zeros((n, k), dtype), tol=config.code_tol,
                                max_iterations=int(config.code_maxiter)).state.codes
        r = ops.camera_steps(w, ops.shapes_from_codes(dictionaries, codes), r,
                             int(config.camera_steps))
        return codes, r, ops.objective_terms(w, dictionaries, codes, r, sparsity)

    # vmap, not a Python loop: one compiled copy of the code solver for all starts.
    codes, rs, values = jax.vmap(start, in_axes=-1)(references)
    best = jnp.argmin(values, axis=0)  # (N,)
    samples = jnp.arange(n)
    best_codes, best_r = codes[best, samples], rs[best, samples]
    state = _initial_state(config, sparsity, w, dictionaries, best_codes, best_r)
    out, history = _run(config, sparsity, w, state, None, False, max_iterations)
    final = out.state
    shapes = ops.shapes_from_codes(dictionaries, final.codes)
    return ReconstructionResult(
        codes=final.codes * scale, rotations=final.rotations, poses_3d=shapes * scale,
        objective=final.objective, objective_history=history, status=out.status,
        iterations=out.iterations, scale=scale, state=final)


_reconstruct_jit = jax.jit(_reconstruct_impl, static_argnames=("config",))


def reconstruct(poses_2d, dictionaries, *, config: DictionaryLearningConfig =
                DictionaryLearningConfig(), scale=None, max_iterations=None
                ) -> ReconstructionResult:
    """3D poses, cameras and codes for new 2D poses with fixed (learned) dictionaries.

    Alternates codes and cameras (the dictionary block is skipped) with the same
    monotone steps as :func:`learn_dictionary`. Cameras start from a multi-start: the
    affine camera fitted to each atom of ``D_1...D_L`` and to their sum, made
    orthonormal, keeping per sample the start with the lowest objective after coding.

    Args:
      poses_2d: ``(N, P, 2)`` observations, any units and centring.
      dictionaries: ``(D_1, ..., D_L)`` as returned by :func:`learn_dictionary`.
      config: :class:`DictionaryLearningConfig`; ``sparsity``, ``maxiter``, ``tol``,
        ``code_*`` and ``camera_steps`` are used (``sizes`` is taken from
        ``dictionaries``).
      scale: the normalising scale; pass the learning result's ``scale`` so that the
        penalties mean the same as in learning. Default: the RMS centred coordinate of
        ``poses_2d``.
      max_iterations: optional budget, capped at ``config.maxiter``.

    Returns:
      :class:`ReconstructionResult`.
    """
    poses_2d = _check_poses_2d(poses_2d, batched=True)
    dictionaries = _check_dictionaries(dictionaries, poses_2d.shape[1], poses_2d.dtype)
    budget = _budget(max_iterations, int(config.maxiter))
    if scale is not None:
        _loop.check_finite("scale", scale)
        if not isinstance(scale, jax.core.Tracer) and not float(scale) > 0:
            raise ValueError(f"`scale` must be > 0; got {scale}.")
        scale = jnp.asarray(scale).astype(poses_2d.dtype)
    return _reconstruct_jit(poses_2d, dictionaries, scale, jnp.asarray(budget, jnp.int32),
                            config)
