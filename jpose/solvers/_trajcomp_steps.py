"""The linear algebra of the trajectory-completion ALM (private; see
:mod:`jpose.solvers.trajectory_completion` for the derivation and the public API).

Everything here works on one video (``n = 3P`` rows, ``F`` frames) and is pure ``jnp``;
callers ``vmap`` over videos. ``F x F`` matrices are never formed: ``B`` and ``C`` are
kept in factored form (:class:`Factored`), which is what makes a 3,000-frame solve cheap.

Two ways to get singular values (``method``):

* ``"gram"``: eigen-decomposition of a small Gram matrix (``M M^T`` of the short side,
  or ``R_L (R^T R) R_L^T`` for a product ``L R^T``). Cheapest on CPU, but it squares the
  singular values, so values near the threshold are resolved only to about
  ``eps * s_max^2``: fine in float64 (thresholds go down to ~1e-5 of ``s_max``), not in
  float32.
* ``"qr"``: Householder QR of both factors and an SVD of the small core. About twice the
  cost; accurate to ``eps * s_max`` in any precision (the float32 default).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import jax.scipy.linalg as jsl

# ----------------------------------------------------------------------------- LAPACK
#
# jaxlib 0.10's CPU LAPACK kernels spread a *batched* call over XLA's intra-op thread pool
# and block waiting for it (``jax::ParallelBatchMap``). When as many batched calls as
# there are pool threads run at once (two on a 2-core machine: e.g. the C-step's eigh and
# the X-step's Cholesky of a vmapped solve), every pool thread waits and the process
# deadlocks. jaxlib 0.11 compiles that path out. So on CPU with jaxlib < 0.11 every
# factorisation here is called on single matrices only: batches (our own joint axis, or
# a caller's vmap, via ``custom_vmap``) are looped with ``lax.map``. Other platforms keep
# the batched kernels.


def _jaxlib_version() -> tuple[int, int]:
    try:
        import jaxlib

        major, minor = jaxlib.__version__.split(".")[:2]
        return int(major), int(minor)
    except (ImportError, ValueError):  # pragma: no cover - unknown build: be safe
        return (0, 0)


_SERIAL_CPU_BATCHES = _jaxlib_version() < (0, 11)


def _serial_batching(fn):
    """``fn`` (on single matrices) whose vmap loops over the batch on CPU."""
    if not _SERIAL_CPU_BATCHES:
        return fn
    wrapped = jax.custom_batching.custom_vmap(fn)

    @wrapped.def_vmap
    def _rule(axis_size, in_batched, *args):
        args = tuple(a if b else jnp.broadcast_to(a, (axis_size,) + jnp.shape(a))
                     for a, b in zip(args, in_batched))
        out = jax.lax.platform_dependent(
            *args,
            cpu=lambda *xs: jax.lax.map(lambda t: wrapped(*t), xs),
            default=lambda *xs: jax.vmap(fn)(*xs))
        return out, jax.tree.map(lambda _: True, out)

    return wrapped


cholesky = _serial_batching(lambda a: jnp.linalg.cholesky(a))
eigh = _serial_batching(lambda a: jnp.linalg.eigh(a))
eigvalsh = _serial_batching(lambda a: jnp.linalg.eigvalsh(a))
qr = _serial_batching(lambda a: jnp.linalg.qr(a))
svd_thin = _serial_batching(lambda a: jnp.linalg.svd(a, full_matrices=False))
singular_values = _serial_batching(lambda a: jnp.linalg.svd(a, compute_uv=False))
cho_solve = _serial_batching(lambda c, b: jsl.cho_solve((c, True), b))


class Factored(NamedTuple):
    """``M = scale * diag(valid) + left @ right.T`` for an ``F x F`` matrix.

    ``scale`` is only non-zero at initialisation (``B = C = I``) and for a ``B`` frozen
    at the identity; every iterate after the first C-step is purely low rank.
    """

    scale: jax.Array  # () float: coefficient of diag(valid)
    left: jax.Array  # (F, K) float
    right: jax.Array  # (F, K) float


class Spectral(NamedTuple):
    """``C = scale * diag(valid) + u @ diag(s) @ v.T`` (the output of a C-step)."""

    scale: jax.Array  # () float
    u: jax.Array  # (F, k) float, orthonormal columns where s > 0
    s: jax.Array  # (k,) float, non-negative, descending
    v: jax.Array  # (F, k) float


# ----------------------------------------------------------------------------- products


def times_b(x, b: Factored, valid):
    """``x @ B`` for ``x`` of shape (m, F)."""
    return b.scale * x * valid[None, :] + (x @ b.left) @ b.right.T


def times_bt(x, b: Factored, valid):
    """``x @ B^T`` for ``x`` of shape (m, F)."""
    return b.scale * x * valid[None, :] + (x @ b.right) @ b.left.T


def times_laplacian(x, edge):
    """``x @ L`` with ``L = D D^T`` the path Laplacian over the ``edge`` (F-1,) links
    (``edge[f]``: frames f and f+1 are both valid, so they are linked)."""
    if x.shape[-1] < 2:
        return jnp.zeros_like(x)
    diff = (x[:, 1:] - x[:, :-1]) * edge.astype(x.dtype)[None, :]  # (m, F-1): x D on links
    zero = jnp.zeros_like(x[:, :1])
    # (x D) D^T: column f gets -diff[f] (edge f, f+1) and +diff[f-1] (edge f-1, f).
    return jnp.concatenate([zero, diff], axis=1) - jnp.concatenate([diff, zero], axis=1)


def smoothness(x, edge):
    """``||X D||_F^2`` over the linked frames."""
    if x.shape[-1] < 2:
        return jnp.zeros((), x.dtype)
    diff = (x[:, 1:] - x[:, :-1]) * edge.astype(x.dtype)[None, :]
    return jnp.sum(diff * diff)


# ----------------------------------------------------------------------------- spectra


def _descending_eigh(gram):
    w, z = eigh(gram)
    return jnp.maximum(w[::-1], 0), z[:, ::-1]


def svt_rows(m, threshold, *, method: str):
    """Singular value thresholding ``U max(S - t, 0) V^T`` of a short-and-wide (or
    tall) matrix ``m`` (n, F); also returns ``sum(S)``, the nuclear norm of ``m``."""
    n, f = m.shape
    if method == "qr":
        u, s, vt = svd_thin(m)
        shrunk = jnp.maximum(s - threshold, 0)
        return (u * shrunk[None, :]) @ vt, jnp.sum(s)
    # Gram of the short side: m m^T = U S^2 U^T. Then SVT(m) = U diag(max(s-t,0)/s) U^T m.
    if n <= f:
        w, z = _descending_eigh(m @ m.T)
    else:
        w, z = _descending_eigh(m.T @ m)
    s = jnp.sqrt(w)
    keep = s > threshold
    ratio = jnp.where(keep, (s - threshold) / jnp.where(keep, s, 1), 0)
    if n <= f:
        return (z * ratio[None, :]) @ (z.T @ m), jnp.sum(s)
    return (m @ z) * ratio[None, :] @ z.T, jnp.sum(s)


def nuclear_norm_rows(m, *, method: str):
    if method == "qr":
        return jnp.sum(singular_values(m))
    n, f = m.shape
    gram = m @ m.T if n <= f else m.T @ m
    return jnp.sum(jnp.sqrt(jnp.maximum(eigvalsh(gram), 0)))


def lowrank_svd(left, right, *, method: str):
    """Thin SVD of ``left @ right.T`` (both (F, K)) without forming the F x F product.

    Returns ``u (F, k), s (k,), v (F, k)`` with ``k = min(F, K)``, ``s`` descending.
    Cost ``O(F K^2 + K^3)``.
    """
    f, k = left.shape
    if f <= k:
        # Short video (F <= K): the F x F product is the cheaper form. (It also keeps
        # wide QRs out of the program.)
        a = left @ right.T
        if method == "qr":
            u, s, vt = svd_thin(a)
            return u, s, vt.T
        w, u = _descending_eigh(a @ a.T)
        s = jnp.sqrt(w)
        pos = s > 0
        v = (a.T @ u) / jnp.where(pos, s, 1)[None, :]
        return u, s, jnp.where(pos[None, :], v, 0)
    q_l, r_l = qr(left)  # (F, k), (k, K)
    if method == "qr":
        q_r, r_r = qr(right)
        uc, s, vct = svd_thin(r_l @ r_r.T)
        return q_l @ uc, s, q_r @ vct.T
    # M = R_L right^T (k x F) has the singular values of left right^T; M M^T is k x k.
    core = r_l @ (right.T @ right) @ r_l.T
    w, z = _descending_eigh(0.5 * (core + core.T))
    s = jnp.sqrt(w)
    # Right vectors v = M^T z / s, with M^T z = right (R_L^T z).
    pos = s > 0
    v = (right @ (r_l.T @ z)) / jnp.where(pos, s, 1)[None, :]
    return q_l @ z, s, jnp.where(pos[None, :], v, 0)


def svt_lowrank(left, right, threshold, *, rank: int, method: str):
    """``SVT_t(left @ right.T)`` truncated to ``rank`` singular triples.

    Returns ``(u, shrunk_s, v, count)``: ``count`` is the number of singular values above
    the threshold; ``count > rank`` means the truncation dropped some (reported to the
    caller, never silent).
    """
    u, s, v = lowrank_svd(left, right, method=method)
    count = jnp.sum(s > threshold).astype(jnp.int32)
    k = min(rank, s.shape[0])
    shrunk = jnp.maximum(s[:k] - threshold, 0)
    on = shrunk > 0
    return (jnp.where(on[None, :], u[:, :k], 0), shrunk,
            jnp.where(on[None, :], v[:, :k], 0), count)


def lowrank_fro(left, right, *, method: str):
    """``||left @ right.T||_F``. The Gram form ``sqrt(tr(L^T L R^T R))`` cancels
    catastrophically in float32 for small differences, so "qr" goes through QR."""
    if method == "qr":
        if left.shape[0] <= left.shape[1]:
            return jnp.linalg.norm(left @ right.T)
        _, r_l = qr(left)
        return jnp.linalg.norm(r_l @ right.T)
    val = jnp.sum((left.T @ left) * (right.T @ right))
    return jnp.sqrt(jnp.maximum(val, 0))


def factored_fro(m: Factored, valid, *, method: str):
    """``||scale diag(valid) + L R^T||_F``."""
    low = lowrank_fro(m.left, m.right, method=method) ** 2
    cross = jnp.sum(jnp.sum(m.left * m.right, axis=1) * valid)  # tr(diag(valid) L R^T)
    val = m.scale ** 2 * jnp.sum(valid) + 2 * m.scale * cross + low
    return jnp.sqrt(jnp.maximum(val, 0))


def factored_inner(m1: Factored, m2: Factored, valid):
    """Frobenius inner product ``<M1, M2>`` from ``K x K`` Gram matrices, ``O(F K^2)``."""
    low = jnp.sum((m1.left.T @ m2.left) * (m1.right.T @ m2.right))
    cross12 = jnp.sum(jnp.sum(m2.left * m2.right, axis=1) * valid)  # tr(diag(valid) M2_low)
    cross21 = jnp.sum(jnp.sum(m1.left * m1.right, axis=1) * valid)
    return (m1.scale * m2.scale * jnp.sum(valid) + m1.scale * cross12 + m2.scale * cross21
            + low)


def factored_nuclear(m: Factored, valid, *, method: str):
    """``||M||_*`` when ``M`` is either ``scale * diag(valid)`` or purely low rank (the
    only two cases the solver produces)."""
    _, s, _ = lowrank_svd(m.left, m.right, method=method)
    return jnp.abs(m.scale) * jnp.sum(valid) + jnp.sum(s)


def dense(m: Factored, valid):
    """The F x F matrix (for tests and small problems)."""
    return m.scale * jnp.diag(valid) + m.left @ m.right.T


# ----------------------------------------------------------------------------- X-step


class FreeIndex(NamedTuple):
    """Per row group (joint), the free (unobserved, valid) frames, gathered."""

    idx: jax.Array  # (g, K) int32 frame indices: the free frames first, in order
    slot: jax.Array  # (g, K) bool: slot holds a free frame (False: padding)
    count: jax.Array  # (g,) int32 number of free frames


def free_index(free, size: int) -> FreeIndex:
    """Gathers the free frames of each group (``free`` (g, F) bool) into ``size`` slots."""
    g, f = free.shape
    frames = jnp.arange(f, dtype=jnp.int32)
    order = jnp.argsort(jnp.where(free, frames[None, :], frames[None, :] + f), axis=1)
    idx = order[:, :size].astype(jnp.int32)
    count = jnp.sum(free, axis=1).astype(jnp.int32)
    slot = jnp.arange(size, dtype=jnp.int32)[None, :] < count[:, None]
    return FreeIndex(idx, slot, count)


def x_step(x_obs, rhs_r, b: Factored, alpha, c, edge, deg, fi: FreeIndex):
    """The equality-constrained least-squares X-step.

    Minimises ``lam_d tr(X L X^T) + mu/2||X A - E + Y1/mu||^2 + mu/2||X - X# + Y4/mu||^2``
    over ``X`` with the observed entries pinned to ``x_obs`` (zero on free entries). The
    gradient is ``mu (X G - R)`` with ``G = c L + A A^T + I``, ``c = 2 lam_d/mu``,
    ``A = I - B = diag(alpha) - left right^T``; on the free frames ``Fr`` of each joint,
    ``x_Fr G_FrFr = (R - x_obs G)_Fr``, one Cholesky per joint of the gathered block.

    Args:
      x_obs: (n, F) observed values, zero where free.
      rhs_r: (n, F) ``R``.
      b: the current ``B``; alpha: (F,) diagonal of ``I - scale diag(valid)``.
      c: ``2 lam_d / mu``; edge: (F-1,) links; deg: (F,) number of links per frame.
      fi: gathered free frames of the g joints (n = g * rows).
    """
    n, f = x_obs.shape
    g, size = fi.idx.shape
    rows = n // g
    # x_obs G = x_obs (I + c L) + (x_obs A) A^T, all in factored form: O(n F K).
    xa = x_obs * alpha[None, :] - (x_obs @ b.left) @ b.right.T
    xaat = xa * alpha[None, :] - (xa @ b.right) @ b.left.T
    xg = x_obs + c * times_laplacian(x_obs, edge) + xaat
    target = (rhs_r - xg).reshape(g, rows, f)
    target = jnp.take_along_axis(target, fi.idx[:, None, :], axis=2)  # (g, rows, K)
    target = jnp.where(fi.slot[:, None, :], target, 0)

    # Gathered G_FrFr = diag(1 + alpha^2 + c deg) - c adj + Ls Grb Ls^T - Rs Ls^T - Ls Rs^T.
    ls = b.left[fi.idx]  # (g, K, Kb)
    grb = b.right.T @ b.right
    # Formed for all F frames, then gathered: F Kb^2 flops instead of g K Kb^2.
    half = (b.left @ (0.5 * grb) - alpha[:, None] * b.right)[fi.idx]
    prod = jnp.einsum("gkb,glb->gkl", half, ls)
    low = prod + jnp.swapaxes(prod, 1, 2)
    fa = fi.idx[:, :, None]
    fb = fi.idx[:, None, :]
    if f > 1:
        linked = (jnp.abs(fa - fb) == 1) & edge[jnp.minimum(fa, fb).clip(0, f - 2)]
    else:
        linked = jnp.zeros(fa.shape[:1] + (size, size), bool)
    diag = 1 + alpha[fi.idx] ** 2 + c * deg[fi.idx]  # (g, K)
    eye = jnp.eye(size, dtype=x_obs.dtype)
    gsub = low - c * linked.astype(x_obs.dtype) + diag[:, :, None] * eye[None]
    both = fi.slot[:, :, None] & fi.slot[:, None, :]
    # Padding slots: identity rows/columns (their right-hand side is zero).
    gsub = jnp.where(both, gsub, 0) + jnp.where(fi.slot, 0, 1).astype(x_obs.dtype)[:, :, None] * eye[None]
    chol = jax.vmap(cholesky)(gsub)
    sol = jax.vmap(cho_solve)(chol, jnp.swapaxes(target, 1, 2))  # (g, K, rows)
    sol = jnp.where(fi.slot[:, :, None], sol, 0)
    free_vals = jnp.zeros((g, rows, f), x_obs.dtype)
    groups = jnp.arange(g)[:, None]
    free_vals = free_vals.at[groups, :, fi.idx].add(sol)  # (g, K) index -> (g, K, rows)
    return x_obs + free_vals.reshape(n, f)


# ----------------------------------------------------------------------------- B-step


def b_step(x, x_old, e, y1_old, cmat: Spectral, mu, valid):
    """``(I + X^T X) B = X^T (X - E + Y1/mu) + C - Y3/mu`` with ``Y3 = X_old^T Y1_old``.

    Subtracting ``(I + X^T X) C`` from both sides and using ``(I + X^T X)^{-1} X^T =
    X^T K`` with ``K = (I + X X^T)^{-1}`` (Woodbury / push-through) gives
    ``B = C + X^T W1 + X_old^T W2`` with ``W2 = -Y1_old/mu`` and
    ``W1 = K (V + X X_old^T Y1_old/mu)``, ``V = X - X C - E + Y1_old/mu``: one n x n
    eigen-decomposition. This form never subtracts the large ``X^T X``-sized terms (``V`` is small
    near convergence and ``||K|| <= 1``), which the textbook ``RHS - X^T K X RHS`` does;
    in float32 that cancellation alone stalled ``||B - C||`` at ~1e-3.
    Returns ``B`` as :class:`Factored` with ``left = [u s, X^T, X_old^T]``,
    ``right = [v, W1^T, W2^T]`` (this layout is what the next C-step relies on).
    """
    n = x.shape[0]
    w2 = -y1_old / mu
    xc = cmat.scale * x * valid[None, :] + ((x @ cmat.u) * cmat.s[None, :]) @ cmat.v.T
    v = x - xc - e + y1_old / mu
    # K = (I + X X^T)^{-1} from the eigen-decomposition of X X^T: XLA matmuls instead of
    # LAPACK triangular solves with F right-hand sides (OpenBLAS threads them, and on a
    # busy 2-core host a threaded trsm was measured 100-500x slower than this).
    w, z = eigh(x @ x.T)
    inv = 1 / (1 + jnp.maximum(w, 0))
    w1 = (z * inv[None, :]) @ (z.T @ (v - (x @ x_old.T) @ w2))
    left = jnp.concatenate([cmat.u * cmat.s[None, :], x.T, x_old.T], axis=1)
    right = jnp.concatenate([cmat.v, w1.T, w2.T], axis=1)
    return Factored(cmat.scale, left, right)
