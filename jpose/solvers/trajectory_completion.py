r"""Trajectory completion (Li et al., ICCV 2019, Eq. 1) by the augmented Lagrangian method.

Problem
-------
For one video of ``F`` frames and ``P`` joints, stack the predicted 3D joints as
``S`` (``n = 3P`` rows: x, y, z of joint 0, then of joint 1, ...; column ``f`` is frame
``f``), keep the entries whose confidence exceeds ``tau`` (the set Omega) and solve::

    min  ||X#||_* + lam_d ||X D||_F^2 + lam_c ||C||_* + lam_e ||E||_1
    s.t. X = X B + E,  P_Omega(X) = P_Omega(S),  B = C,  X# = X

``D`` is the ``F x (F-1)`` first-difference matrix (``L = D D^T`` is the path Laplacian,
``||XD||^2 = tr(X L X^T)``), ``B, C`` are ``F x F``. The entries in Omega are pinned to the
predictions (noise included): only the low-confidence entries are filled in, by a
trajectory that is smooth (``lam_d``), low-rank over time (``||X||_*``) and
self-expressive (``X ~ X B`` with ``B`` low-rank, the LRR term of Liu et al.).

**Not convex, bi-convex.** ``X = XB + E`` is bilinear in the two variables. Eliminating
``E, C, X#`` leaves ``f(X, B) = ||X||_* + lam_d||XD||^2 + lam_c||B||_* + lam_e||X - XB||_1``
(:func:`objective`); for fixed ``B`` it is convex in ``X`` (block O1) and for fixed
``X`` convex in ``B`` (block O2, the LRR problem), but jointly it is not (the inner
minimum over ``B`` of a scalar instance is the capped-l1 ``min(lam_e|x|, lam_c)``). The
ALM finds a point that is block-optimal in both blocks (a KKT point), not a certified
global optimum. The tests check it against independent convex solves of each block.

The ALM (one penalty ``mu``; Gauss-Seidel over the blocks in this order)
-----------------------------------------------------------------------
Multipliers ``Y1`` (``X - XB - E``), ``Y3`` (``B - C``), ``Y4`` (``X - X#``). The Omega
constraint has *no* multiplier: ``X`` stays in the affine set ``{P_Omega X = P_Omega S}``
at every iterate (exactly: the observed entries are copied, never solved for). Using
``<Y, R> + mu/2||R||^2 = mu/2||R + Y/mu||^2 - const``, each block minimisation is:

1. ``X# = SVT_{1/mu}(X + Y4/mu)`` (singular value thresholding, ``n x F``).
2. ``C = SVT_{lam_c/mu}(B + Y3/mu)``.
3. ``E = shrink_{lam_e/mu}(X - XB + Y1/mu)`` (soft threshold).
4. ``X``: with ``A = I - B``, the gradient of
   ``lam_d tr(XLX^T) + mu/2||XA - E + Y1/mu||^2 + mu/2||X - X# + Y4/mu||^2`` is
   ``mu (X G - R)``, ``G = (2 lam_d/mu) L + A A^T + I`` (SPD, ``G >= I``),
   ``R = (E - Y1/mu) A^T + X# - Y4/mu``. Over the affine set only the free entries move:
   per row with free frames ``Fr`` and observed ``Ob``,
   ``x_Fr G_FrFr = r_Fr - s_Ob G_ObFr`` -- a principal submatrix of an SPD matrix, so one
   Cholesky per *joint* (its three rows share ``Fr``).
5. ``B``: ``(I + X^T X) B = X^T (X - E + Y1/mu) + C - Y3/mu``; Woodbury turns the
   ``F x F`` solve into an ``n x n`` one, ``(I + X^TX)^{-1} = I - X^T (I + XX^T)^{-1} X``.
6. ``Y1 += mu (X - XB - E)``, ``Y3 += mu (B - C)``, ``Y4 += mu (X - X#)``.
7. ``mu <- min(rho mu, mu_max)``.

Stopping, after at least ``min_iterations`` (``nS = ||P_Omega S||_F``):
``max(||X-XB-E||/nS, ||B-C||/sqrt(F), ||X-X#||/nS) < tol`` and
``max(||dX||/nS, ||dE||/nS, ||dB||/sqrt(F)) < tol`` (changes over the last iteration).

Structure this implementation exploits
--------------------------------------
* **The invariant ``Y3 = X^T Y1``** after every iteration. From step 5,
  ``B - C + Y3_old/mu = X^T (X - XB - E + Y1_old/mu)``; with step 6 this is
  ``Y3_new = X^T (Y1_old + mu (X - XB - E)) = X^T Y1_new``, whatever ``Y3_old`` was.
  So ``Y3`` is never stored: it is ``X^T Y1`` of the state (the B-step uses
  ``Y3_old = X_old^T Y1_old``). The tests rebuild ``Y3`` by step 6 from dense ``B, C``
  and check the identity.
* **Low rank of B and C.** Starting from ``B = C = I``, the first C-step thresholds the
  identity by ``lam_c/mu0``; when that is ``>= 1``, ``C = 0``. From then on
  ``B = C + X^T W1 + X_old^T W2`` (step 5) and the C-step input is
  ``B + X^T Y1/mu``: rank at most ``rank(C) + 2n``. ``B`` and ``C`` are therefore kept as
  factors ``F x K`` (``K = c_rank + 2n``), the SVT of step 2 is a QR of an ``F x K``
  factor plus an eigen/SVD of a ``K x K`` core, and no ``F x F`` matrix is ever formed.
  To guarantee the first C-step zeroes ``C``, ``mu0`` is capped at ``lam_c`` (the usual
  rule ``mu0 = 1.25/||P_Omega S||_2`` is unchanged whenever
  ``lam_c >= 1.25/||P_Omega S||_2``, i.e. for the defaults on any real motion). The
  number of singular values above the threshold is counted exactly; a C-step needing
  more than ``c_rank`` is reported (``state.c_overflow``), never silently truncated.
  With ``lam_c = 0`` the identity is an optimal ``B`` (it zeroes the LRR term), so ``B``
  is frozen there and steps 2 and 5 are skipped.
* **The X-step** needs the free frames only: per joint, the ``k x k`` block of ``G`` on
  its ``k`` free frames is assembled from the factors of ``B`` (``O(k^2 K)``), then
  Cholesky-factorised. ``max_free`` (static) bounds ``k``; :func:`complete_trajectories`
  sets it from the concrete mask.

**Cost per iteration**: ``O(F K^2 + K^3)`` for the C-step, ``O(P (k^2 K + k^3))`` for the
X-step, ``O(n^2 F + n F K)`` for the rest -- linear in ``F`` for a fixed rank budget and
fraction of missing entries (a dense implementation is ``O(F^3)``: the ``F x F`` SVD).

Units
-----
The lambdas are not scale-free (the smoothness term is quadratic in lengths, the others
linear; ``B`` is dimensionless). They are **defined for metres**; with
``units="mm"`` the data are divided by 1000 inside the solver and the result multiplied
back, so the same lambdas give the same completion in either unit. (Posing the problem
directly in mm needs ``lam_d/1000, 1000 lam_c, lam_e``; :func:`objective` with
``units="mm"`` evaluates that, ``= 1000 x`` the metre objective. Running the single-penalty
ALM on mm data is *not* equivalent -- the dimensionless ``B = C`` constraint makes the
C threshold scale with the square of the unit -- which is why the solver always works in
metres.)

Batches, padding, long videos
-----------------------------
Every function is per video and ``vmap``-able; :func:`complete_trajectories` vmaps over
leading axes. Videos of different lengths are padded and given a ``frame_mask``: padded
frames are zero columns of every iterate, start and stay decoupled (``B = C = diag(valid)``
initially, no smoothness link touches them, they count in no norm or in ``sqrt(F)``), so
a padded video gives the completion of the unpadded one. (A hole *inside* the mask cuts
the smoothness term there.) Long videos can be solved in overlapping windows
(``CompletionConfig.window``): one vmapped batch, blended by a linear cross-fade.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import warnings
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jpose import skeleton as _skeleton
from jpose.solvers import _loop
from jpose.solvers import _trajcomp_steps as _steps
from jpose.solvers._trajcomp_steps import Factored, FreeIndex, Spectral

__all__ = [
    "CompletionConfig",
    "CompletionState",
    "Problem",
    "SolveResult",
    "CompletionResult",
    "UNIT_SCALE",
    "make_problem",
    "init_state",
    "update",
    "solve",
    "complete_trajectories",
    "poses_to_matrix",
    "matrix_to_poses",
    "objective",
    "dense_b",
    "dense_c",
    "window_starts",
    "confidence_from_heatmaps",
    "confidence_from_scores",
    "observation_mask",
    "video_bone_lengths",
]

#: Metres per data unit.
UNIT_SCALE = {"m": 1.0, "mm": 1e-3}


@dataclasses.dataclass(frozen=True)
class CompletionConfig:
    """Static settings (hashable; a jit static argument).

    Attributes:
      lambda_d, lambda_c, lambda_e: weights of smoothness, ``||B||_*`` and
        ``||X - XB||_1``, **for poses in metres** whatever ``units`` is.
      units: ``"m"`` or ``"mm"``, the unit of the poses given and returned.
      tau: confidence threshold: entries with ``confidence > tau`` are observed (Omega).
      rho: penalty growth factor per iteration.
      mu0_scale: ``mu0 = mu0_scale / ||P_Omega S||_2`` (data in metres), capped at
        ``lambda_c`` (see the module docstring).
      mu_max_ratio: ``mu_max = mu_max_ratio * mu0``.
      tol: tolerance of the stopping rule (relative residuals and changes). float32 needs
        ``tol >= 1e-5``.
      max_iterations, min_iterations: iteration budget and minimum.
      c_rank: rank budget of ``C`` (static), or ``None``: ``min(64, max(16, F // 8))``.
        Exceeding it is reported (``state.c_overflow``, and a warning from
        :func:`complete_trajectories`). On walking data rank(C) peaked at ~4, 16 and 48
        for F = 100, 300 and 1000-3000.
      max_free: static bound on the free (unobserved) frames of one joint; ``None``: all
        ``F`` frames when the mask is traced, or the exact maximum (rounded up to a
        multiple of 16) when it is concrete.
      method: ``"gram"`` (eigh of Gram matrices; fastest; float64), ``"qr"`` (QR + SVD;
        float32-safe) or ``"auto"`` (``"gram"`` in float64, ``"qr"`` otherwise).
      freeze: ``None``; ``"b"`` keeps ``B`` fixed (``b0``; block O1 of the oracle);
        ``"x"`` keeps ``X = S`` fixed (block O2, the LRR problem).
      window: ``None`` (one solve per video) or the window length in frames for
        :func:`complete_trajectories` on long videos.
      overlap: frames shared by consecutive windows (cross-faded).
    """

    lambda_d: float = 2.0
    lambda_c: float = 0.5
    lambda_e: float = 0.05
    units: str = "m"
    tau: float = 0.5
    rho: float = 1.1
    mu0_scale: float = 1.25
    mu_max_ratio: float = 1e5
    tol: float = 1e-5
    max_iterations: int = 1000
    min_iterations: int = 10
    c_rank: int | None = None
    max_free: int | None = None
    method: str = "auto"
    freeze: str | None = None
    window: int | None = None
    overlap: int = 50

    def __post_init__(self):
        for name in ("lambda_d", "lambda_c", "lambda_e"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v >= 0):
                raise ValueError(f"{name}: expected a finite number >= 0, got {v!r}")
        if self.units not in UNIT_SCALE:
            raise ValueError(f"units: expected one of {sorted(UNIT_SCALE)}, got {self.units!r}")
        if not (self.rho >= 1.0 and math.isfinite(self.rho)):
            raise ValueError(f"rho: expected a finite number >= 1, got {self.rho!r}")
        if not (self.mu0_scale > 0 and self.mu_max_ratio >= 1):
            raise ValueError("mu0_scale must be > 0 and mu_max_ratio >= 1, got "
                             f"{self.mu0_scale!r}, {self.mu_max_ratio!r}")
        if not self.tol > 0:
            raise ValueError(f"tol: expected > 0, got {self.tol!r}")
        if int(self.max_iterations) < 0 or int(self.min_iterations) < 0:
            raise ValueError("max_iterations and min_iterations must be >= 0")
        if self.c_rank is not None and int(self.c_rank) < 1:
            raise ValueError(f"c_rank: expected None or >= 1, got {self.c_rank!r}")
        if self.max_free is not None and int(self.max_free) < 1:
            raise ValueError(f"max_free: expected None or >= 1, got {self.max_free!r}")
        if self.method not in ("auto", "gram", "qr"):
            raise ValueError(f"method: expected 'auto', 'gram' or 'qr', got {self.method!r}")
        if self.freeze not in (None, "b", "x"):
            raise ValueError(f"freeze: expected None, 'b' or 'x', got {self.freeze!r}")
        if self.window is not None:
            if int(self.window) < 2:
                raise ValueError(f"window: expected None or >= 2 frames, got {self.window!r}")
            if not 0 <= int(self.overlap) <= int(self.window) // 2:
                raise ValueError(f"overlap: expected 0 <= overlap <= window/2 = "
                                 f"{int(self.window) // 2}, got {self.overlap!r}")

    @property
    def lambdas(self) -> tuple[float, float, float]:
        return (float(self.lambda_d), float(self.lambda_c), float(self.lambda_e))


class Problem(NamedTuple):
    """One video's data, in metres, prepared for the iterations (see :func:`make_problem`)."""

    s_obs: jax.Array  # (n, F) float: P_Omega(S), zero on free entries and padded frames
    valid: jax.Array  # (F,) float 0/1: frame mask
    edge: jax.Array  # (max(F-1, 0),) bool: frames f, f+1 both valid (smoothness links)
    degree: jax.Array  # (F,) float: links per frame (diagonal of L)
    free: FreeIndex  # per joint: gathered free frames (idx (g, k), slot (g, k), count (g,))
    norm_s: jax.Array  # () float: ||P_Omega S||_F (1 when zero, to keep ratios finite)
    sqrt_f: jax.Array  # () float: sqrt(number of valid frames) (>= 1)
    mu0: jax.Array  # () float
    mu_max: jax.Array  # () float
    free_overflow: jax.Array  # () bool: some joint has more free frames than max_free


class CompletionState(NamedTuple):
    """ALM iterate (``Y3`` is implicit: ``X^T Y1``). Shapes for one video."""

    x: jax.Array  # (n, F) float: the completion X (metres)
    e: jax.Array  # (n, F) float: E
    y1: jax.Array  # (n, F) float: multiplier of X - XB - E
    y4: jax.Array  # (n, F) float: multiplier of X - X#
    b: Factored  # B = scale diag(valid) + left right^T; left/right (F, c_rank + 2n)
    c: Spectral  # C = scale diag(valid) + u diag(s) v^T; u, v (F, c_rank), s (c_rank,)
    mu: jax.Array  # () float: current penalty
    primal: jax.Array  # () float: primal residual of the last iteration (max float at init)
    change: jax.Array  # () float: change over the last iteration (max float at init)
    c_count: jax.Array  # () int32: singular values above threshold in the last C-step
    c_overflow: jax.Array  # () bool: some C-step needed more than c_rank
    b_sqnorm: jax.Array  # () float: ||B||_F^2 (reused by the next change test)


class SolveResult(NamedTuple):
    """Output of :func:`solve` (matrix form)."""

    x: jax.Array  # (n, F) completion, in the config's units
    status: jax.Array  # () int32 _loop.Status
    iterations: jax.Array  # () int32
    objective: jax.Array  # () float: f(X, B) of the metre problem (metre lambdas)
    state: CompletionState  # final iterate (metres)


class CompletionResult(NamedTuple):
    """Output of :func:`complete_trajectories`."""

    poses: jax.Array  # (..., F, P, 3) completed poses, input units; zeros at padded frames
    status: jax.Array  # (...) int32 _loop.Status (windowed: the worst over windows)
    iterations: jax.Array  # (...) int32 (windowed: the most over windows)
    objective: jax.Array  # (...) float, metre problem (windowed: sum over windows)
    state: CompletionState | None  # (..., ...) final iterates; None when windowed


# ----------------------------------------------------------------------------- helpers


def _method(config: CompletionConfig, dtype) -> str:
    if config.method != "auto":
        return config.method
    return "gram" if jnp.dtype(dtype) == jnp.float64 else "qr"


def poses_to_matrix(poses):
    """``(..., F, P, 3)`` -> ``(..., 3P, F)``: rows x, y, z of joint 0, then joint 1, ..."""
    *lead, f, p, d = poses.shape
    return jnp.moveaxis(poses, -3, -1).reshape(*lead, p * d, f)


def matrix_to_poses(x, num_joints: int):
    """Inverse of :func:`poses_to_matrix`."""
    *lead, n, f = x.shape
    return jnp.moveaxis(x.reshape(*lead, num_joints, n // num_joints, f), -1, -3)


def _bucket(k: int, f: int) -> int:
    return int(min(f, max(16, -(-k // 16) * 16)))


def _max_free_of(mask, frame_mask, groups: int) -> int | None:
    """The exact free-frame maximum of a concrete mask (None if traced)."""
    if not (_loop.is_concrete(mask) and (frame_mask is None or _loop.is_concrete(frame_mask))):
        return None
    m = np.asarray(mask, bool)
    m = m.reshape(m.shape[:-2] + (groups, -1, m.shape[-1])).all(axis=-2) if m.shape[-2] != groups else m
    free = ~m
    if frame_mask is not None:
        free = free & np.asarray(frame_mask, bool)[..., None, :]
    return int(free.sum(axis=-1).max()) if free.size else 0


# ----------------------------------------------------------------------------- problem


def make_problem(s, mask, *, config: CompletionConfig, frame_mask=None,
                 max_free: int | None = None) -> Problem:
    """Prepares one video (metres) for :func:`init_state` / :func:`update`.

    Args:
      s: ``(n, F)`` predictions in metres (rows x, y, z per joint).
      mask: ``(n, F)`` or ``(g, F)`` bool, True = observed (Omega). With ``g`` rows, each
        mask row covers ``n / g`` consecutive rows of ``s`` (a joint's x, y, z).
      frame_mask: ``(F,)`` bool, False for padded frames (default: all valid).
      max_free: static bound on free frames per group (default: ``config.max_free`` or
        ``F``).
    """
    s = jnp.asarray(s)
    n, f = s.shape
    mask = jnp.asarray(mask, bool)
    if mask.ndim != 2 or mask.shape[1] != f or n % mask.shape[0]:
        raise ValueError(f"mask: expected shape (n, F) = {(n, f)} or (g, F) with g dividing n, "
                         f"got {mask.shape}")
    g = mask.shape[0]
    rows = n // g
    valid = jnp.ones((f,), bool) if frame_mask is None else jnp.asarray(frame_mask, bool)
    if valid.shape != (f,):
        raise ValueError(f"frame_mask: expected shape (F,) = ({f},), got {valid.shape}")
    observed_rows = jnp.repeat(mask, rows, axis=0) & valid[None, :]
    s_obs = jnp.where(observed_rows, s, 0)
    free = ~mask & valid[None, :]
    size = config.max_free if max_free is None else max_free
    size = f if size is None else int(min(size, f))
    size = max(size, 1)
    fi = _steps.free_index(free, size)
    dtype = s.dtype
    validf = valid.astype(dtype)
    edge = valid[1:] & valid[:-1]
    edgef = edge.astype(dtype)
    zero = jnp.zeros((1,), dtype)
    degree = jnp.concatenate([zero, edgef]) + jnp.concatenate([edgef, zero])
    norm_s = jnp.sqrt(jnp.sum(s_obs * s_obs))
    gram = s_obs @ s_obs.T if n <= f else s_obs.T @ s_obs
    spec = jnp.sqrt(jnp.maximum(jnp.max(_steps.eigvalsh(gram)), 0))
    has_data = spec > 0
    mu0 = config.mu0_scale / jnp.where(has_data, spec, 1)
    if not _frozen_b(config):
        # The first C-step thresholds C = I by lam_c/mu0: >= 1 zeroes it (low rank after).
        mu0 = jnp.minimum(mu0, config.lambda_c)
    mu0 = mu0.astype(dtype)
    return Problem(
        s_obs=s_obs,
        valid=validf,
        edge=edge,
        degree=degree,
        free=fi,
        norm_s=jnp.where(norm_s > 0, norm_s, 1).astype(dtype),
        sqrt_f=jnp.sqrt(jnp.maximum(jnp.sum(validf), 1)),
        mu0=mu0,
        mu_max=(config.mu_max_ratio * mu0).astype(dtype),
        free_overflow=jnp.any(fi.count > size),
    )


def _c_rank(config: CompletionConfig, f: int) -> int:
    rank = min(64, max(16, f // 8)) if config.c_rank is None else int(config.c_rank)
    return int(min(rank, f))


def _frozen_b(config: CompletionConfig) -> bool:
    return config.freeze == "b" or (config.freeze is None and config.lambda_c == 0)


def init_state(problem: Problem, *, config: CompletionConfig, b0=None) -> CompletionState:
    """The paper's initialisation: ``X = P_Omega S``, ``B = C = I``, ``E = Y = 0``.

    ``b0``: with ``freeze="b"``, the fixed ``B`` (``(F, F)`` dense, or a
    :class:`~jpose.solvers._trajcomp_steps.Factored`); default the identity.
    """
    x = problem.s_obs
    n, f = x.shape
    dtype = x.dtype
    kc = _c_rank(config, f)
    zeros_nf = jnp.zeros_like(x)
    one = jnp.ones((), dtype)
    if _frozen_b(config) and b0 is not None:
        if isinstance(b0, Factored):
            b = Factored(jnp.asarray(b0.scale, dtype), jnp.asarray(b0.left, dtype),
                         jnp.asarray(b0.right, dtype))
        else:
            b0 = jnp.asarray(b0, dtype)
            if b0.shape != (f, f):
                raise ValueError(f"b0: expected shape (F, F) = {(f, f)}, got {b0.shape}")
            b = Factored(jnp.zeros((), dtype), b0 * problem.valid[:, None] * problem.valid[None, :],
                         jnp.eye(f, dtype=dtype))
    elif _frozen_b(config):
        b = Factored(one, jnp.zeros((f, 1), dtype), jnp.zeros((f, 1), dtype))
    else:
        # Layout [C part (kc) | X^T (n) | X_old^T (n)], see _trajcomp_steps.b_step.
        b = Factored(one, jnp.concatenate([jnp.zeros((f, kc), dtype), x.T, x.T], axis=1),
                     jnp.zeros((f, kc + 2 * n), dtype))
    c = Spectral(one, jnp.zeros((f, kc), dtype), jnp.zeros((kc,), dtype),
                 jnp.zeros((f, kc), dtype))
    # Largest finite value, not inf: the loop driver treats non-finite state as failure.
    inf = jnp.asarray(jnp.finfo(dtype).max, dtype)
    return CompletionState(
        x=jnp.where(problem.free_overflow, jnp.asarray(jnp.nan, dtype), x),
        e=zeros_nf, y1=zeros_nf, y4=zeros_nf, b=b, c=c,
        mu=problem.mu0, primal=inf, change=inf,
        c_count=jnp.zeros((), jnp.int32), c_overflow=jnp.zeros((), bool),
        # ||B||^2 is used only when B is not frozen, and then B = diag(valid) here.
        b_sqnorm=jnp.sum(problem.valid).astype(dtype))


def update(state: CompletionState, problem: Problem, *,
           config: CompletionConfig) -> tuple[CompletionState, jax.Array]:
    """One ALM iteration (steps 1-7 of the module docstring); returns (state, converged)."""
    lam_d, lam_c, lam_e = config.lambdas
    x, e, y1, y4, b, mu = state.x, state.e, state.y1, state.y4, state.b, state.mu
    n, f = x.shape
    dtype = x.dtype
    method = _method(config, dtype)
    valid = problem.valid
    kc = _c_rank(config, f)
    frozen_b = _frozen_b(config)
    frozen_x = config.freeze == "x"

    # 1. X#.
    if frozen_x:
        xs = x
    else:
        xs, _ = _steps.svt_rows(x + y4 / mu, 1 / mu, method=method)

    # 2. C = SVT(B + Y3/mu), Y3 = X^T Y1 (the invariant): the X^T block of B's right factor
    # gets Y1^T/mu. B's identity part (only at init) is thresholded on its own: it is
    # zeroed since lam_c/mu0 >= 1, and the low-rank part is then zero (Y1 = 0).
    if frozen_b:
        c, c_count = state.c, state.c_count
    else:
        t = lam_c / mu
        right_in = b.right.at[:, kc:kc + n].add(y1.T / mu)
        u, s, v, c_count = _steps.svt_lowrank(b.left, right_in, t, rank=kc, method=method)
        c = Spectral(jnp.maximum(b.scale - t, 0).astype(dtype), u * valid[:, None], s,
                     v * valid[:, None])

    # 3. E.
    q = x - _steps.times_b(x, b, valid) + y1 / mu
    e_new = jnp.sign(q) * jnp.maximum(jnp.abs(q) - lam_e / mu, 0)

    # 4. X (observed entries pinned).
    if frozen_x:
        x_new = x
    else:
        alpha = 1 - b.scale * valid
        e_shift = e_new - y1 / mu
        rhs = e_shift * alpha[None, :] - (e_shift @ b.right) @ b.left.T + xs - y4 / mu
        x_new = _steps.x_step(problem.s_obs, rhs, b, alpha, 2 * lam_d / mu, problem.edge,
                              problem.degree, problem.free)

    # 5. B.
    if frozen_b:
        b_new = b
    else:
        b_new = _steps.b_step(x_new, x, e_new, y1, c, mu, valid)

    # 6. Multipliers (Y3 implicit).
    r1 = x_new - _steps.times_b(x_new, b_new, valid) - e_new
    r4 = x_new - xs
    y1_new = y1 + mu * r1
    y4_new = y4 + mu * r4
    # 7. Penalty.
    mu_new = jnp.minimum(config.rho * mu, problem.mu_max).astype(dtype)

    ns, sf = problem.norm_s, problem.sqrt_f
    primal = jnp.linalg.norm(r1) / ns
    change = jnp.linalg.norm(e_new - e) / ns
    if not frozen_x:
        primal = jnp.maximum(primal, jnp.linalg.norm(r4) / ns)
        change = jnp.maximum(change, jnp.linalg.norm(x_new - x) / ns)
    if not frozen_b:
        # B - C = X^T W1 + X_old^T W2 (the identity and C parts cancel).
        b_minus_c = _steps.lowrank_fro(b_new.left[:, kc:], b_new.right[:, kc:], method=method)
        if method == "qr":  # Exact in any precision, ~2x the cost.
            d_b = Factored(b_new.scale - b.scale, jnp.concatenate([b_new.left, -b.left], axis=1),
                           jnp.concatenate([b_new.right, b.right], axis=1))
            norm_db = _steps.factored_fro(d_b, valid, method=method)
            b_sqnorm = state.b_sqnorm
        else:  # ||dB||^2 = ||B'||^2 + ||B||^2 - 2<B', B>: 4 F K^2 flops, fine in float64.
            b_sqnorm = _steps.factored_inner(b_new, b_new, valid)
            cross = _steps.factored_inner(b_new, b, valid)
            norm_db = jnp.sqrt(jnp.maximum(b_sqnorm + state.b_sqnorm - 2 * cross, 0))
        primal = jnp.maximum(primal, b_minus_c / sf)
        change = jnp.maximum(change, norm_db / sf)
    else:
        b_sqnorm = state.b_sqnorm
    converged = (primal < config.tol) & (change < config.tol)
    new = CompletionState(
        x=x_new, e=e_new, y1=y1_new, y4=y4_new, b=b_new, c=c, mu=mu_new,
        primal=primal.astype(dtype), change=change.astype(dtype),
        c_count=jnp.asarray(c_count, jnp.int32),
        c_overflow=state.c_overflow | (jnp.asarray(c_count, jnp.int32) > kc),
        b_sqnorm=jnp.asarray(b_sqnorm, dtype))
    return new, converged


def _state_objective(state: CompletionState, problem: Problem, *,
                     config: CompletionConfig) -> jax.Array:
    lam_d, lam_c, lam_e = config.lambdas
    method = "qr"  # Once per solve: the accurate SVD route (Gram sqrt's rounding noise).
    x = state.x
    nuc_x = _steps.nuclear_norm_rows(x, method=method)
    nuc_b = _steps.factored_nuclear(state.b, problem.valid, method=method)
    resid = x - _steps.times_b(x, state.b, problem.valid)
    return (nuc_x + lam_d * _steps.smoothness(x, problem.edge) + lam_c * nuc_b
            + lam_e * jnp.sum(jnp.abs(resid)))


def _check_inputs(s, mask, frame_mask):
    s = jnp.asarray(s)
    if s.ndim != 2 or s.shape[1] < 1 or s.shape[0] < 1:
        raise ValueError(f"s: expected a (3P, F) matrix with F >= 1, got shape {s.shape}")
    if not jnp.issubdtype(s.dtype, jnp.floating):
        s = s.astype(_loop.float_dtype(0.0))
    _loop.check_finite("s", s)
    mask = jnp.asarray(mask)
    if mask.dtype != bool:
        raise ValueError(f"mask: expected a bool array, got dtype {mask.dtype}")
    return s, mask, frame_mask


def _solve_one(s, mask, frame_mask, b0, max_iterations, *, config: CompletionConfig,
               max_free: int | None) -> SolveResult:
    """Traceable solve of one video (metres in, metres out)."""
    problem = make_problem(s, mask, config=config, frame_mask=frame_mask, max_free=max_free)
    state = init_state(problem, config=config, b0=b0)
    budget = config.max_iterations if max_iterations is None else max_iterations
    out = _loop.iterate(state, functools.partial(update, problem=problem, config=config),
                        max_iterations=budget, min_iterations=config.min_iterations)
    obj = _state_objective(out.state, problem, config=config)
    return SolveResult(out.state.x, out.status, out.iterations, obj, out.state)


_solve_jit = jax.jit(_solve_one, static_argnames=("config", "max_free"))


def _core(config: CompletionConfig) -> CompletionConfig:
    """The fields the compiled solver depends on (units/tau/windows are handled outside),
    so that e.g. m and mm inputs share one compilation."""
    return dataclasses.replace(config, units="m", tau=0.5, window=None, overlap=50,
                               max_free=None)


def solve(s, mask, *, config: CompletionConfig = CompletionConfig(), frame_mask=None,
          b0=None, max_iterations=None) -> SolveResult:
    """Matrix form: completes ``s`` (3P, F) given ``mask`` (True = observed).

    Args:
      s: ``(3P, F)`` predictions in ``config.units`` (unobserved entries are ignored).
      mask: ``(3P, F)`` or ``(P, F)`` bool (a joint's x, y, z share a row).
      config: see :class:`CompletionConfig`.
      frame_mask: ``(F,)`` bool, False for padded frames.
      b0: fixed ``B`` for ``config.freeze == "b"`` (default identity).
      max_iterations: overrides ``config.max_iterations`` (may be traced; 0 allowed).

    Returns:
      :class:`SolveResult`; ``x`` in ``config.units`` with ``x == s`` on observed entries.
      Under ``jit``/``vmap`` call this inside the transformation (config is static).

    Raises:
      ValueError: bad shapes, non-finite ``s``, or (concrete mask) no observed entries or
        more free frames than ``config.max_free``. Under tracing these cannot be checked:
        non-finite observed entries, or more free frames than ``max_free``, give status
        ``NON_FINITE``; a video without observed entries completes to zeros.
    """
    s, mask, frame_mask = _check_inputs(s, mask, frame_mask)
    scale = UNIT_SCALE[config.units]
    n = s.shape[0]
    groups = mask.shape[0] if mask.ndim == 2 else n
    max_free = config.max_free
    exact = _max_free_of(mask, frame_mask, groups) if mask.ndim == 2 and n % max(groups, 1) == 0 else None
    if exact is not None:
        if max_free is not None and exact > max_free:
            raise ValueError(f"mask: a joint has {exact} free frames, more than "
                             f"config.max_free={max_free}")
        if max_free is None:
            max_free = _bucket(exact, s.shape[1])
        _check_observed(mask, frame_mask)
    out = _solve_jit(s * scale if scale != 1.0 else s, mask, frame_mask, b0, max_iterations,
                     config=_core(config), max_free=max_free)
    x = out.x / scale if scale != 1.0 else out.x
    return out._replace(x=x)


def _check_observed(mask, frame_mask):
    m = np.asarray(mask, bool)
    if frame_mask is not None:
        m = m & np.asarray(frame_mask, bool)[..., None, :]
    if not m.any(axis=(-2, -1)).all():
        raise ValueError("mask: a video has no observed (confident) entries; nothing to "
                         "complete from (lower tau or drop the video)")


# ----------------------------------------------------------------------------- objective


def objective(x, b, *, lambdas=(2.0, 0.5, 0.05), frame_mask=None, units: str = "m"):
    """``f(X, B) = ||X||_* + lam_d ||XD||^2 + lam_c ||B||_* + lam_e ||X - XB||_1``.

    Dense reference (``B`` is ``F x F``). ``lambdas`` are for metres; with ``units="mm"``
    ``x`` is in mm and the problem is posed in mm (``lam_d/1000, 1000 lam_c, lam_e``), so
    the value is 1000 times the metre objective of ``x/1000``. ``frame_mask`` drops the
    smoothness links touching padded frames.
    """
    lam_d, lam_c, lam_e = (float(v) for v in lambdas)
    s = UNIT_SCALE[units]
    lam_d, lam_c = lam_d * s, lam_c / s
    x = jnp.asarray(x)
    b = jnp.asarray(b, x.dtype)
    f = x.shape[-1]
    valid = jnp.ones((f,), bool) if frame_mask is None else jnp.asarray(frame_mask, bool)
    edge = valid[1:] & valid[:-1]
    return (jnp.sum(_steps.singular_values(x))
            + lam_d * _steps.smoothness(x, edge)
            + lam_c * jnp.sum(_steps.singular_values(b))
            + lam_e * jnp.sum(jnp.abs(x - x @ b)))


def dense_b(state: CompletionState, valid) -> jax.Array:
    """``B`` of a state as an ``F x F`` matrix (small F; ``valid`` = ``problem.valid``)."""
    return _steps.dense(state.b, valid)


def dense_c(state: CompletionState, valid) -> jax.Array:
    """``C`` of a state as an ``F x F`` matrix."""
    c = state.c
    return c.scale * jnp.diag(valid) + (c.u * c.s[None, :]) @ c.v.T


# ----------------------------------------------------------------------------- videos


def window_starts(num_frames: int, window: int, overlap: int) -> tuple[int, ...]:
    """Start frames of overlapping windows covering ``num_frames`` (static).

    Consecutive windows share at least ``overlap`` frames; the last one ends at the last
    frame. One window when ``num_frames <= window``.
    """
    if num_frames <= window:
        return (0,)
    stride = window - overlap
    count = -(-(num_frames - overlap) // stride)
    count = max(count, 2)
    return tuple(int(round(v)) for v in np.linspace(0, num_frames - window, count))


def _window_weights(num_frames: int, starts: tuple[int, ...], window: int) -> np.ndarray:
    """Linear cross-fade weights (num_windows, window) summing to 1 over each frame."""
    w = np.ones((len(starts), window))
    frames = np.arange(window, dtype=np.float64)
    for i, s in enumerate(starts):
        if i > 0:
            ov = starts[i - 1] + window - s
            if ov > 0:
                w[i] *= np.clip((frames + 0.5) / ov, 0, 1)
        if i + 1 < len(starts):
            ov = s + window - starts[i + 1]
            if ov > 0:
                w[i] *= np.clip((window - frames - 0.5) / ov, 0, 1)
    total = np.zeros(num_frames)
    for i, s in enumerate(starts):
        total[s:s + window] += w[i]
    for i, s in enumerate(starts):
        w[i] /= total[s:s + window]
    return w


@functools.partial(jax.jit, static_argnames=("config", "max_free"))
def _solve_videos(s, mask, frame_mask, *, config: CompletionConfig, max_free: int | None):
    """Batched (leading axis) metre solve: the one compiled function per shape."""
    one = functools.partial(_solve_one, b0=None, max_iterations=None, config=config,
                            max_free=max_free)
    return jax.vmap(lambda a, m, v: one(a, m, v))(s, mask, frame_mask)


def _solve_batch(s, mask, frame_mask, *, config: CompletionConfig, max_free: int | None,
                 devices=None):
    """:func:`_solve_videos`, optionally split over ``devices`` with ``shard_map`` (each
    device solves its share of the batch; the batch is padded with repeats to a multiple
    of the device count and trimmed after)."""
    core = _core(config)
    if devices is None or len(devices) < 2:
        return _solve_videos(s, mask, frame_mask, config=core, max_free=max_free)
    num, ndev = s.shape[0], len(devices)
    pad = -num % ndev
    idx = np.minimum(np.arange(num + pad), num - 1)
    mesh = jax.sharding.Mesh(np.asarray(devices), ("videos",))
    spec = jax.sharding.PartitionSpec("videos")
    # check_vma=False: the initial state's constants become per-device values in the
    # loop; the devices never communicate.
    fn = jax.shard_map(functools.partial(_solve_videos, config=core, max_free=max_free),
                       mesh=mesh, in_specs=(spec, spec, spec), out_specs=spec,
                       check_vma=False)
    out = jax.jit(fn)(s[idx], mask[idx], frame_mask[idx])
    return jax.tree.map(lambda a: a[:num], out)


def _solve_windowed(s, mask, frame_mask, *, config, max_free, devices=None):
    """Windowed solve of videos (N, n, F): all windows of all videos in one vmapped batch."""
    num, n, f = s.shape
    window = int(config.window)
    starts = window_starts(f, window, int(config.overlap))
    idx = np.asarray(starts)[:, None] + np.arange(window)[None, :]  # (W, window)
    nw = len(starts)
    ws = jnp.moveaxis(s[:, :, idx], 2, 1).reshape(num * nw, n, window)
    wm = jnp.moveaxis(mask[:, :, idx], 2, 1).reshape(num * nw, mask.shape[1], window)
    wv = frame_mask[:, idx].reshape(num * nw, window)
    out = _solve_batch(ws, wm, wv, config=config, max_free=max_free, devices=devices)
    weights = jnp.asarray(_window_weights(f, starts, window), s.dtype)  # (W, window)
    xw = out.x.reshape(num, nw, n, window) * weights[None, :, None, :]
    x = jnp.zeros((num, n, f), s.dtype).at[:, :, idx].add(jnp.moveaxis(xw, 1, 2))
    # The cross-fade weights sum to 1 only up to rounding: re-pin Omega exactly.
    observed = jnp.repeat(mask, n // mask.shape[1], axis=1) & frame_mask[:, None, :]
    x = jnp.where(observed, s, x)
    status = jnp.max(out.status.reshape(num, nw), axis=1)
    iterations = jnp.max(out.iterations.reshape(num, nw), axis=1)
    obj = jnp.sum(out.objective.reshape(num, nw), axis=1)
    return x, status, iterations, obj, jnp.any(out.state.c_overflow)


def complete_trajectories(poses, confidence, *, config: CompletionConfig = CompletionConfig(),
                          frame_mask=None, devices=None) -> CompletionResult:
    """Completes the low-confidence joints of one or many videos.

    Args:
      poses: ``(..., F, P, 3)`` predicted 3D poses in ``config.units`` (any joint order;
        root-relative or not).
      confidence: ``(..., F, P)`` per-joint confidence; ``confidence > config.tau`` is
        observed (kept exactly), the rest is filled in.
      config: :class:`CompletionConfig` (lambdas for metres whatever ``units``).
      frame_mask: ``(..., F)`` bool, False for padded frames (videos of different lengths
        padded to one ``F``); padded frames do not influence the result and come back 0.
      devices: optional sequence of devices: the batch of videos (or of windows) is split
        over them with ``shard_map``, each device solving its share (e.g. the host's CPU
        devices with ``--xla_force_host_platform_device_count``). Same results.

    Returns:
      :class:`CompletionResult` with ``poses`` of the input shape and units.

    Raises:
      ValueError: shapes, non-finite values, a video with no confident joint, or (in
        windowed mode) a window without one.
    """
    poses = jnp.asarray(poses)
    if not jnp.issubdtype(poses.dtype, jnp.floating):
        poses = poses.astype(_loop.float_dtype(0.0))
    if poses.ndim < 3 or poses.shape[-1] != 3 or poses.shape[-3] < 1:
        raise ValueError(f"poses: expected shape (..., F, P, 3), got {poses.shape}")
    confidence = jnp.asarray(confidence)
    if confidence.shape != poses.shape[:-1]:
        raise ValueError(f"confidence: expected shape {poses.shape[:-1]} (poses without the "
                         f"last axis), got {confidence.shape}")
    _loop.check_finite("poses", poses)
    *lead, f, p, _ = poses.shape
    if frame_mask is None:
        frame_mask = jnp.ones(tuple(lead) + (f,), bool)
    frame_mask = jnp.asarray(frame_mask, bool)
    if frame_mask.shape != tuple(lead) + (f,):
        raise ValueError(f"frame_mask: expected shape {tuple(lead) + (f,)}, got {frame_mask.shape}")
    observed = observation_mask(confidence, tau=config.tau)  # (..., F, P)
    num = int(np.prod(lead)) if lead else 1
    s = poses_to_matrix(poses).reshape(num, 3 * p, f) * UNIT_SCALE[config.units]
    s = s.astype(poses.dtype)
    mask = jnp.swapaxes(observed, -1, -2).reshape(num, p, f)
    vmask = frame_mask.reshape(num, f)
    max_free = config.max_free
    window = config.window if config.window is not None and f > int(config.window) else None
    exact = _max_free_of(mask, vmask, p)
    if exact is not None:
        if window is not None:
            starts = window_starts(f, int(window), int(config.overlap))
            idx = np.asarray(starts)[:, None] + np.arange(int(window))[None, :]
            wm = np.moveaxis(np.asarray(mask)[:, :, idx], 2, 1)
            wv = np.asarray(vmask)[:, idx]
            exact = _max_free_of(wm, wv, p)
            if max_free is None:
                max_free = _bucket(exact, int(window))
            obs = (wm & wv[:, :, None, :]).any(axis=(-2, -1))
            has_frames = wv.any(axis=-1)
            if np.any(has_frames & ~obs):
                raise ValueError("confidence: a window has no confident joint; use a longer "
                                 "window or lower tau")
        else:
            _check_observed(mask, vmask)
            if max_free is None:
                max_free = _bucket(exact, f)
        if config.max_free is not None and exact > config.max_free:
            raise ValueError(f"confidence: a joint has {exact} low-confidence frames, more than "
                             f"config.max_free={config.max_free}")
    if window is not None:
        x, status, iterations, obj, overflow = _solve_windowed(
            s, mask, vmask, config=config, max_free=max_free, devices=devices)
        state = None
    else:
        out = _solve_batch(s, mask, vmask, config=config, max_free=max_free, devices=devices)
        x, status, iterations, obj, state = out.x, out.status, out.iterations, out.objective, out.state
        overflow = jnp.any(state.c_overflow)
        state = jax.tree.map(lambda a: a.reshape(tuple(lead) + a.shape[1:]), state)
    if _loop.is_concrete(overflow) and bool(overflow):
        warnings.warn("trajectory completion: a C-step had more singular values above the "
                      "threshold than config.c_rank; the result is approximate. Raise c_rank.",
                      RuntimeWarning, stacklevel=2)
    x = x / UNIT_SCALE[config.units]
    x = x * vmask[:, None, :].astype(x.dtype)
    out_poses = matrix_to_poses(x, p).reshape(poses.shape).astype(poses.dtype)
    shape = tuple(lead)
    return CompletionResult(out_poses, status.reshape(shape), iterations.reshape(shape),
                            obj.reshape(shape), state)


# ----------------------------------------------------------------------------- pipeline


def confidence_from_heatmaps(heatmaps, *, temperature: float = 1.0):
    """Per-joint confidence from heatmap peaks: ``max softmax(h / temperature)``.

    Args:
      heatmaps: ``(..., P, H, W)`` raw heatmap scores (logits) of a 2D detector.
      temperature: softmax temperature (> 0).
    Returns:
      ``(..., P)`` in (0, 1]: the probability mass at the peak; a sharp single peak gives
      ~1, a flat or multi-modal map ~1/(H W).
    """
    h = jnp.asarray(heatmaps)
    if h.ndim < 3:
        raise ValueError(f"heatmaps: expected shape (..., P, H, W), got {h.shape}")
    if not temperature > 0:
        raise ValueError(f"temperature: expected > 0, got {temperature!r}")
    flat = h.reshape(h.shape[:-2] + (-1,)) / temperature
    return jnp.max(jax.nn.softmax(flat, axis=-1), axis=-1)


def confidence_from_scores(scores, *, low: float = 0.0, high: float = 1.0):
    """Detector keypoint scores mapped linearly to [0, 1] (``low`` -> 0, ``high`` -> 1)."""
    if not high > low:
        raise ValueError(f"high must exceed low, got low={low!r}, high={high!r}")
    s = jnp.asarray(scores)
    return jnp.clip((s - low) / (high - low), 0, 1)


def observation_mask(confidence, *, tau: float):
    """Omega: ``confidence > tau`` (True = observed, kept exactly by the solver)."""
    return jnp.asarray(confidence) > tau


def video_bone_lengths(poses, *, layout="h36m_17", subset: str | None = "length_invariant",
                       frame_mask=None):
    """Per-video bone lengths: the median over (valid) frames, robust to outlier frames.

    Args:
      poses: ``(..., F, J, 3)`` completed poses (any unit; the result has the same).
      layout: joint layout of ``poses`` (:func:`jpose.skeleton.get`).
      subset: a named bone subset (default the 11 bones Li et al. keep constant), or
        ``None`` for all tree edges.
      frame_mask: ``(..., F)`` bool; False frames are ignored.
    Returns:
      ``(..., num_bones)`` median lengths (NaN for a video without valid frames).
    """
    skel = _skeleton.get(layout)
    bones = skel.bones if subset is None else skel.bone_subset(subset)
    poses = jnp.asarray(poses)
    if poses.ndim < 3:
        raise ValueError(f"poses: expected shape (..., F, J, 3), got {poses.shape}")
    lengths = _skeleton.bone_lengths(poses, skel, bones)  # (..., F, nb)
    if frame_mask is not None:
        fm = jnp.asarray(frame_mask, bool)
        if fm.shape != poses.shape[:-2]:
            raise ValueError(f"frame_mask: expected shape {poses.shape[:-2]}, got {fm.shape}")
        lengths = jnp.where(fm[..., None], lengths, jnp.nan)
    return jnp.nanmedian(lengths, axis=-2)
