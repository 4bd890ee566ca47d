"""Building blocks of :mod:`jpose.solvers.nrsfm` (private; see that module for the model).

Shapes used throughout (N samples, P joints, L layers, sizes K_1 ... K_L):

* ``poses_2d`` ``(N, P, 2)``: joint-centroid-centred orthographic observations;
* ``dictionaries``: tuple ``(D_1 (3P, K_1), D_2 (K_1, K_2), ..., D_L (K_{L-1}, K_L))``;
  the rows of ``D_1`` are joint-major ``(p, c)`` pairs, ``row = 3 p + c``;
* ``codes`` ``(N, K_L)`` non-negative last-layer codes;
* ``rotations`` ``(N, 3, 3)`` proper rotations, canonical frame -> camera frame.

Everything is pure ``jax.numpy``, batch-first, and traceable.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp

from jpose import procrustes
from jpose.solvers import _loop

# Lipschitz constants from eigvalsh are inflated by this factor so that their rounding
# error (relative ~1e-6 in float32) can never make a step longer than 1 / L.
LIPSCHITZ_SAFETY = 1.0 + 1e-4


def compose(dictionaries):
    """The composite dictionary ``D_1 D_2 ... D_L`` ``(3P, K_L)``."""
    return functools.reduce(jnp.matmul, dictionaries)


def basis(dictionaries):
    """The composite dictionary as ``(P, 3, K_L)`` (one 3 x K block per joint)."""
    composite = compose(dictionaries)
    return composite.reshape(composite.shape[0] // 3, 3, composite.shape[1])


def centre_joints(x, axis):
    """Subtracts the mean over the joint axis ``axis`` (translation elimination)."""
    return x - jnp.mean(x, axis=axis, keepdims=True)


def centre_atoms(d1):
    """``D_1`` ``(3P, K)`` with every atom (column) centred on its joint centroid."""
    p3, k = d1.shape
    return centre_joints(d1.reshape(p3 // 3, 3, k), axis=0).reshape(p3, k)


def layer_codes(dictionaries, codes):
    """``[psi_1, ..., psi_L]`` with ``psi_L = codes`` and ``psi_{l-1} = D_l psi_l``."""
    out = [codes]
    for d in dictionaries[:0:-1]:  # D_L, ..., D_2
        out.append(out[-1] @ d.T)
    return out[::-1]


def penalty_weights(dictionaries, sparsity):
    """``c`` ``(K_L,)`` with ``sum_l lambda_l ||psi_l||_1 = c^T psi_L`` for ``psi_L >= 0``.

    Exact because ``D_2 ... D_L >= 0`` keeps every intermediate code non-negative, so its
    l1 norm is the linear function ``1^T D_{l+1} ... D_L psi_L``.
    """
    dtype = dictionaries[0].dtype
    weights = jnp.full((dictionaries[0].shape[1],), sparsity[0], dtype)
    for d, lam in zip(dictionaries[1:], sparsity[1:]):
        weights = weights @ d + jnp.full((d.shape[1],), lam, dtype)
    return weights


def shapes_from_codes(dictionaries, codes):
    """Canonical 3D shapes ``(N, P, 3)`` = ``reshape(D_1 ... D_L psi_L, (P, 3))``."""
    composite = compose(dictionaries)
    flat = codes @ composite.T
    return flat.reshape(codes.shape[:-1] + (composite.shape[0] // 3, 3))


def project(shapes, rotations):
    """Orthographic projection ``(S R^T)[:, :2]`` ``(N, P, 2)`` of canonical shapes."""
    return jnp.einsum("npc,nac->npa", shapes, rotations[:, :2, :])


def reprojection_terms(poses_2d, shapes, rotations):
    """Per-sample ``0.5 ||W_i - (S_i R_i^T)[:, :2]||_F^2`` ``(N,)``."""
    residual = poses_2d - project(shapes, rotations)
    return 0.5 * jnp.sum(residual * residual, axis=(-2, -1))


def objective_terms(poses_2d, dictionaries, codes, rotations, sparsity):
    """Per-sample objective ``(N,)``: reprojection plus ``sum_l lambda_l ||psi_l||_1``.

    Computed from the residual (not the expanded quadratic) so that small objectives
    keep their relative precision, which the acceptance checks rely on.
    """
    shapes = shapes_from_codes(dictionaries, codes)
    penalty = codes @ penalty_weights(dictionaries, sparsity)
    return reprojection_terms(poses_2d, shapes, rotations) + penalty


# ---------------------------------------------------------------------------------------
# Sparse coding: per sample, min_{psi >= 0} 0.5 ||A_i psi - w_i||^2 + c^T psi, with
# A_i = (I_P kron M_i) B, M_i = R_i[:2]. Only A_i^T A_i (K x K) and A_i^T w_i are needed.
# ---------------------------------------------------------------------------------------


class CodeProblem(NamedTuple):
    gram: jax.Array  # (N, K, K) float: A_i^T A_i
    linear: jax.Array  # (N, K) float: A_i^T w_i
    weights: jax.Array  # (K,) float: l1 weights c >= 0
    lipschitz: jax.Array  # (N,) float: lambda_max(A_i^T A_i) (inflated, > 0)
    gradient_scale: jax.Array  # (N,) float: ||A_i^T w_i||_inf + ||c||_inf (> 0)


class CodeState(NamedTuple):
    codes: jax.Array  # (N, K) float, >= 0: current iterate psi_k
    momentum: jax.Array  # (N, K) float: extrapolated point y_k
    t: jax.Array  # (N,) float: FISTA momentum parameter t_k >= 1
    residual: jax.Array  # (N,) float: relative gradient-mapping norm at ``codes``


def code_problem(poses_2d, block_basis, rotations, weights) -> CodeProblem:
    """Normal-equation form of the per-sample non-negative weighted lasso.

    ``A_i^T A_i = sum_p B_p^T M_i^T M_i B_p = sum_{c,d} (M_i^T M_i)_{cd} H_{cd}`` with
    ``H_{cd} = sum_p B_p[c]^T B_p[d]`` shared by all samples, so the cost is O(N K^2).
    """
    m = rotations[:, :2, :]
    q = jnp.einsum("nac,nad->ncd", m, m)
    h = jnp.einsum("pck,pdl->cdkl", block_basis, block_basis)
    gram = jnp.einsum("ncd,cdkl->nkl", q, h)
    linear = jnp.einsum("pck,nac,npa->nk", block_basis, m, poses_2d)
    lipschitz = jnp.linalg.eigvalsh(gram)[..., -1] * LIPSCHITZ_SAFETY
    # A_i = 0 (no shape at all): any step is fine; 1 avoids 0 / 0.
    lipschitz = jnp.where(lipschitz > 0, lipschitz, jnp.ones_like(lipschitz))
    scale = jnp.max(jnp.abs(linear), axis=-1) + jnp.max(jnp.abs(weights))
    tiny = jnp.finfo(linear.dtype).tiny
    scale = jnp.where(scale > tiny, scale, jnp.ones_like(scale))
    return CodeProblem(gram, linear, weights, lipschitz, scale)


def _code_gradient(problem: CodeProblem, psi):
    return (jnp.einsum("nkl,nl->nk", problem.gram, psi) - problem.linear
            + problem.weights[None, :])


def _code_residual(problem: CodeProblem, psi):
    """``||L (psi - prox(psi - grad / L))||_inf / scale``: 0 exactly at the optimum.

    The gradient mapping (Beck & Teboulle) is the first-order optimality measure of a
    constrained/composite problem; scaling by the gradient at 0 makes it unit-free.
    """
    lip = problem.lipschitz[:, None]
    step = psi - jnp.maximum(psi - _code_gradient(problem, psi) / lip, 0)
    return jnp.max(jnp.abs(lip * step), axis=-1) / problem.gradient_scale


def init_code_state(problem: CodeProblem, codes) -> CodeState:
    codes = jnp.maximum(codes, 0)
    t = jnp.ones(codes.shape[:1], codes.dtype)
    return CodeState(codes, codes, t, _code_residual(problem, codes))


def code_update(problem: CodeProblem, tol: float):
    """One FISTA step with gradient-based adaptive restart (O'Donoghue & Candes 2015).

    The restart resets the momentum whenever it points against the proximal step, which
    removes FISTA's oscillations on these small, often well-conditioned problems.
    """

    def update(state: CodeState):
        lip = problem.lipschitz[:, None]
        y = state.momentum
        new = jnp.maximum(y - _code_gradient(problem, y) / lip, 0)
        t_next = 0.5 * (1 + jnp.sqrt(1 + 4 * state.t * state.t))
        restart = jnp.sum((y - new) * (new - state.codes), axis=-1) > 0
        beta = jnp.where(restart, jnp.zeros_like(t_next), (state.t - 1) / t_next)
        momentum = new + beta[:, None] * (new - state.codes)
        t_next = jnp.where(restart, jnp.ones_like(t_next), t_next)
        residual = _code_residual(problem, new)
        return CodeState(new, momentum, t_next, residual), jnp.all(residual <= tol)

    return update


def solve_codes(problem: CodeProblem, codes, *, tol, max_iterations) -> _loop.LoopOutput:
    """FISTA from ``codes`` (warm start) in one ``while_loop``."""
    return _loop.iterate(init_code_state(problem, codes), code_update(problem, tol),
                         max_iterations=max_iterations)


# ---------------------------------------------------------------------------------------
# Cameras.
# ---------------------------------------------------------------------------------------


def complete_rotation(rows):
    """``(N, 2, 3)`` orthonormal rows -> ``(N, 3, 3)`` rotation (third row r1 x r2)."""
    third = jnp.cross(rows[:, 0], rows[:, 1])
    return jnp.concatenate([rows, third[:, None, :]], axis=1)


def nearest_orthonormal_rows(m):
    """Polar factor ``U V^T`` of ``(N, 2, 3)`` matrices: the nearest orthonormal rows."""
    u, _, vt = jnp.linalg.svd(m, full_matrices=False)
    return u @ vt


def camera_step(poses_2d, shapes, rotations):
    """One majorise-minimise step of ``min_R ||W - (S R^T)[:, :2]||^2`` per sample.

    The orthographic (Stiefel) Procrustes problem has no closed form. Filling in the
    unobserved depth with its current value ``z = S r_3`` gives the majoriser
    ``g(R) = ||[W, z] - S R^T||^2 >= f(R)`` with ``g(R_old) = f(R_old)``, and ``g`` *is*
    an orthogonal Procrustes problem (closed form, :mod:`jpose.procrustes`, det +1).
    Hence ``f(R_new) <= g(R_new) <= g(R_old) = f(R_old)``: never an increase. A per-sample
    acceptance check also guards against rounding and the degenerate (S = 0) fallback.
    """
    depth = jnp.einsum("npc,nc->np", shapes, rotations[:, 2, :])
    target = jnp.concatenate([poses_2d, depth[..., None]], axis=-1)
    fit = procrustes.similarity_transform(shapes, target, allow_scale=False)
    old = reprojection_terms(poses_2d, shapes, rotations)
    new = reprojection_terms(poses_2d, shapes, fit.rotation)
    keep = jnp.logical_and(new <= old, fit.valid)
    return jnp.where(keep[:, None, None], fit.rotation, rotations)


def camera_steps(poses_2d, shapes, rotations, steps: int):
    return jax.lax.fori_loop(
        0, steps, lambda _, r: camera_step(poses_2d, shapes, r), rotations)


def rigid_factorisation(poses_2d):
    """Tomasi-Kanade rigid factorisation with the metric upgrade (orthographic).

    Stack the centred observations as ``X (2N, P)``, take its rank-3 factorisation
    ``X = M_hat S_hat`` (from the eigenvectors of the P x P matrix ``X^T X``), then find
    the symmetric ``G = Q Q^T`` for which every camera's two rows ``m_1, m_2`` satisfy
    ``m_1 G m_1 = m_2 G m_2 = 1, m_1 G m_2 = 0`` (linear least squares in 6 unknowns),
    clip ``G`` to positive definite, and set cameras = nearest orthonormal rows of
    ``M_hat_i Q`` and the shape ``Q^{-1} S_hat``. Defined up to one global rotation *and
    reflection* (``Q`` is determined up to an orthogonal matrix): the reflection
    ambiguity of orthographic NRSfM.

    Returns:
      rotations ``(N, 3, 3)``, det +1; shape ``(P, 3)`` (centred, same units as input).
    """
    n, p, _ = poses_2d.shape
    dtype = poses_2d.dtype
    x = jnp.swapaxes(poses_2d, 1, 2).reshape(2 * n, p)
    evals, evecs = jnp.linalg.eigh(x.T @ x)
    evals, evecs = evals[-3:], evecs[:, -3:]
    tiny = jnp.finfo(dtype).eps * jnp.maximum(evals[-1], jnp.finfo(dtype).tiny)
    sigma = jnp.sqrt(jnp.maximum(evals, tiny))
    m_hat = (x @ evecs) / jnp.sqrt(sigma)[None, :]  # (2N, 3) = U Sigma^1/2
    s_hat = jnp.sqrt(sigma)[:, None] * evecs.T  # (3, P) = Sigma^1/2 V^T
    m = m_hat.reshape(n, 2, 3)

    def sym_row(a, b):
        return jnp.stack([a[..., 0] * b[..., 0], a[..., 0] * b[..., 1] + a[..., 1] * b[..., 0],
                          a[..., 0] * b[..., 2] + a[..., 2] * b[..., 0], a[..., 1] * b[..., 1],
                          a[..., 1] * b[..., 2] + a[..., 2] * b[..., 1], a[..., 2] * b[..., 2]],
                         axis=-1)

    rows = jnp.concatenate([sym_row(m[:, 0], m[:, 0]), sym_row(m[:, 1], m[:, 1]),
                            sym_row(m[:, 0], m[:, 1])], axis=0)  # (3N, 6)
    rhs = jnp.concatenate([jnp.ones((2 * n,), dtype), jnp.zeros((n,), dtype)])
    normal = rows.T @ rows
    # A whisper of ridge keeps the 6 x 6 solve defined when the cameras do not span
    # enough directions (e.g. all views alike); it does not bias a well-posed upgrade.
    ridge = jnp.finfo(dtype).eps * 10 * jnp.trace(normal) + jnp.finfo(dtype).tiny
    g = jnp.linalg.solve(normal + ridge * jnp.eye(6, dtype=dtype), rows.T @ rhs)
    gram = jnp.stack([jnp.stack([g[0], g[1], g[2]]), jnp.stack([g[1], g[3], g[4]]),
                      jnp.stack([g[2], g[4], g[5]])])
    gvals, gvecs = jnp.linalg.eigh(gram)
    floor = 1e-3 * jnp.maximum(jnp.max(jnp.abs(gvals)), jnp.finfo(dtype).tiny)
    gvals = jnp.maximum(gvals, floor)
    q = gvecs * jnp.sqrt(gvals)[None, :]
    q_inv = (gvecs / jnp.sqrt(gvals)[None, :]).T
    cams = nearest_orthonormal_rows(jnp.einsum("nac,cd->nad", m, q))
    shape = (q_inv @ s_hat).T
    return complete_rotation(cams), centre_joints(shape, axis=0)


def affine_cameras(poses_2d, reference):
    """Cameras for ``reference`` ``(P, 3)``: nearest orthonormal rows of the affine fit.

    ``M_i = argmin ||W_i - S M^T||`` unconstrained is ``W_i^T S (S^T S)^+``; its polar
    factor is a rotation's first two rows. Used to start :func:`reconstruct`.
    """
    pinv = jnp.linalg.pinv(reference)  # (3, P)
    affine = jnp.einsum("cp,npa->nac", pinv, poses_2d)  # (N, 2, 3)
    return complete_rotation(nearest_orthonormal_rows(affine))


# ---------------------------------------------------------------------------------------
# Dictionaries.
# ---------------------------------------------------------------------------------------


def project_dictionary(d, layer: int):
    """Projection onto the feasible set of layer ``layer`` (0-based).

    Layer 0 (``D_1``): columns centred over joints (the model has no translation) and of
    norm <= 1. Deeper layers: entries >= 0 and column norm <= 1. Each set is a convex
    cone (a subspace or the orthant) intersected with the unit ball, for which the
    projection is exactly "project onto the cone, then rescale into the ball".
    """
    if layer == 0:
        d = centre_atoms(d)
    else:
        d = jnp.maximum(d, 0)
    norms = jnp.sqrt(jnp.sum(d * d, axis=0, keepdims=True))
    return d / jnp.maximum(norms, jnp.ones_like(norms))


def _spectral_sq(a):
    """``||a||_2^2`` via the eigenvalues of the smaller Gram matrix."""
    g = a.T @ a if a.shape[0] >= a.shape[1] else a @ a.T
    return jnp.linalg.eigvalsh(g)[-1]


def _psd_sqrt(g):
    evals, evecs = jnp.linalg.eigh(g)
    return (evecs * jnp.sqrt(jnp.maximum(evals, 0))[None, :]) @ evecs.T


def dictionary_lipschitz(dictionaries, codes, layer: int, count):
    """Lipschitz constant of the data term's gradient in ``dictionaries[layer]`` (mean).

    For ``D = dictionaries[layer]`` the data term is
    ``f(D) = 1/(2N) sum_i ||proj_i(E D psi^i) - w_i||^2`` with ``E`` the product of the
    layers above (identity for the first) and ``psi^i`` the codes entering ``D``. The
    projection has norm 1, so ``L <= ||E||_2^2 lambda_max(Psi^T Psi) / N``. The penalty is
    linear in ``D`` and adds nothing.

    Only small matrices are decomposed (large dense eigensolvers are slow on CPU):
    ``Psi = Psi_L T^T`` with ``T`` the product of the layers below, so
    ``lambda_max(Psi^T Psi) = lambda_max(G^1/2 T^T T G^1/2)`` with ``G = Psi_L^T Psi_L``
    (K_L x K_L); ``||E||_2^2`` uses the smaller of ``E``'s two Gram matrices.
    """
    gram = codes.T @ codes
    if layer + 1 < len(dictionaries):
        below = compose(dictionaries[layer + 1:])
        root = _psd_sqrt(gram)
        gram = root @ (below.T @ below) @ root
    lip = jnp.linalg.eigvalsh(gram)[-1] / count
    if layer > 0:
        lip = lip * _spectral_sq(compose(dictionaries[:layer]))
    lip = lip * LIPSCHITZ_SAFETY
    return jnp.where(lip > 0, lip, jnp.ones_like(lip))
