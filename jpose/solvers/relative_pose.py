"""Relative pose of two calibrated cameras from corresponding 2D joints.

The fallback when extrinsics are unknown: the same joints, seen by two calibrated
cameras over many frames, are correspondences; the essential matrix between the views
gives the second camera's rotation and the direction of its translation, and a known
baseline (the distance between the camera centres, metres) fixes the scale.

Convention
----------
Camera 1 is at the origin with the identity orientation; a point with camera-1
coordinates ``x1`` has camera-2 coordinates

    x_cam2 = R x_cam1 + t,          E = [t]_x R,          x̂2^T E x̂1 = 0,

(Hartley & Zisserman's ``P1 = [I | 0]``, ``P2 = [R | t]``) where ``x̂ = K^{-1} (u, v, 1)``
are the undistorted normalised image coordinates of pixel ``(u, v)``. In jpose's
extrinsics ``x_cam = R_i (x_world - c_i)`` (:class:`jpose.camera.CameraParams`) this is
``R = R2 R1^T`` and ``t = R2 (c1 - c2)``, so ``|t| = |c2 - c1|`` is the baseline;
:func:`relative_pose_from_cameras` and :func:`camera_from_relative_pose` convert both ways.
Camera frames are x right, y down, z forward; a point is in front of a camera when its
depth ``z > 0``.

Pixels are assumed **undistorted** (the pinhole model ``K``; remove lens distortion
first). Intrinsics are 3x3 matrices ``K = [[fx, s, cx], [0, fy, cy], [0, 0, 1]]`` in pixels
(:func:`intrinsic_matrix` builds them from ``CameraParams.focal`` / ``.principal``).

Algorithm
---------
1. **Normalised eight-point algorithm** (Hartley 1997; Hartley & Zisserman, *Multiple View
   Geometry*, 2nd ed., Alg. 11.1 with the essential-matrix projection of Result 9.17 /
   Sec. 11.7.3), in a weighted least-squares form: pixels are mapped to normalised
   coordinates with ``K^{-1}``, then each image's points are translated to their
   (weighted) centroid and scaled to a (weighted) mean distance of ``sqrt(2)`` (``T1``,
   ``T2``); ``e`` minimises ``sum_i w_i (y2_i^T Ê y1_i)^2`` with ``|e| = 1`` (the last
   right singular vector of the rows ``sqrt(w_i) kron(y2_i, y1_i)``); ``E = T2^T Ê T1`` is
   then projected onto the essential matrices, ``E = U diag(1, 1, 0) V^T`` (the nearest one
   in the Frobenius norm, up to scale). Essential matrices are returned with singular
   values ``(1, 1, 0)`` (so ``|E|_F = sqrt(2)``) and the sign that makes the entry of
   largest magnitude positive (E is only defined up to sign).
2. **RANSAC under jit** (:func:`ransac_hypotheses`). Not a loop: ``num_hypotheses``
   minimal samples of 8 distinct included correspondences are drawn at once with
   ``jax.random`` (Gumbel top-k, i.e. uniform sampling without replacement among points
   with positive weight), the eight-point algorithm runs on all of them in one batch, and
   every hypothesis is scored on every correspondence in parallel by the MSAC cost (Torr
   & Zisserman 2000) ``sum_i w_i min(d_i^2, tau^2)``, where ``d_i`` is the **Sampson
   distance in pixels** (first-order geometric error of the pair, both images together;
   H&Z eq. 11.9 with ``F = K2^{-T} E K1^{-1}``). Inliers are ``d_i < tau``. A fixed batch
   has a fixed cost and shape, which is what jit, vmap over camera pairs and
   accelerators need; memory is ``O(num_hypotheses * N)``.

   Why a coarse threshold and several starts: the eight-point estimate is very sensitive
   to noise. On human joints seen by Human3.6M-like cameras (the subject spans ~1/3 of
   the image), a clean 8-point sample with 1 px noise typically misses the other points
   by 10-60 px, and even the eight-point fit on *all* true inliers can leave half of them
   beyond a 4 px threshold. So hypotheses are scored at ``coarse_threshold`` (20 px by
   default), and the ``num_starts`` best ones (plus the eight-point fit on all included
   pairs) are each refined (step 4), in parallel; the refined pose with the lowest MSAC
   cost at the final ``threshold`` wins. On the test scenes (320 pairs, 30% gross
   outliers, 1 px noise) a single start finds the right basin about half the time and
   eight starts every time.
3. **Cheirality.** ``E = U diag(1, 1, 0) V^T`` (with ``det U = det V = +1``) gives four
   candidates ``(U W V^T, ±u3)``, ``(U W^T V^T, ±u3)`` (H&Z Result 9.19); each inlier is
   triangulated (closest points of the two rays) and the candidate with the most points
   in front of both cameras is the start.
4. **Refinement** (a loop per start, run by :func:`jpose.solvers._loop.iterate`, vmapped
   over the starts): Levenberg-Marquardt on the MSAC cost over the 5 degrees of freedom
   of ``(R, t)``, ``R <- exp([w]_x) R`` and ``t <- normalise(t + B b)`` (``B`` a basis of
   the plane orthogonal to ``t``), with the signed Sampson distances of the current
   inliers as residuals, and a **graduated threshold**: it starts at
   ``coarse_threshold`` and is halved each time LM settles, down to ``threshold``.
   Steps are accepted only when the MSAC cost decreases; the refined ``E = [t]_x R`` is
   exactly essential. At the final threshold this is the "gold standard" Sampson fit
   (H&Z Sec. 11.4.3) on the inliers. ``maxiter = 0`` returns the best start unrefined.
   ``t`` has unit norm times ``baseline``.

RANSAC itself is not a loop (a fixed batch of hypotheses), so it has no status; the
status and iteration count reported are those of the winning start's refinement.

Degeneracies: the eight-point algorithm needs points that are not all coplanar and not
all on a critical surface, and a non-zero baseline (a pure rotation has ``E = 0``). Joints
of a person over frames with varied poses and positions work (the tests use 2 s of
walking); a near-static subject (0.2 s of video: ~16 distinct points) or a near-planar
motion (a jumping jack in the frontal plane) makes the eight-point starts too poor under
noise and the result can be a wrong local minimum -- check ``num_inliers``. Not differentiable (sampling and
inlier selection are discrete); use the result as an initialiser, e.g. for bundle
adjustment.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jpose.camera import CameraParams, axis_angle_to_matrix
from jpose.procrustes import broadcast_weights
from jpose.solvers import _loop

__all__ = [
    "RelativePoseConfig",
    "Correspondences",
    "RefineState",
    "RelativePose",
    "MIN_CORRESPONDENCES",
    "intrinsic_matrix",
    "correspondences",
    "essential_eight_point",
    "fundamental_from_essential",
    "sampson_distance",
    "ransac_hypotheses",
    "decompose_essential",
    "triangulate_midpoint",
    "init_state",
    "update",
    "relative_pose",
    "relative_pose_from_cameras",
    "camera_from_relative_pose",
]

MIN_CORRESPONDENCES = 8  # the eight-point algorithm's minimal sample


@dataclasses.dataclass(frozen=True)
class RelativePoseConfig:
    """Static hyperparameters of :func:`relative_pose` (hashable: pass it as a static arg).

    Attributes:
      num_hypotheses: RANSAC minimal samples evaluated in parallel; 0 disables RANSAC (the
        refinement then starts from the eight-point fit on all included points only).
      num_starts: how many of the best RANSAC hypotheses are refined in parallel (>= 1),
        in addition to the eight-point fit on all included points.
      threshold: final inlier threshold on the Sampson distance, **pixels** (> 0). About
        2-3 times the keypoint noise standard deviation.
      coarse_threshold: threshold for scoring the RANSAC hypotheses and for the first
        refinement stage, pixels (>= threshold); halved per stage down to ``threshold``.
      maxiter: budget of Levenberg-Marquardt iterations per start, over all stages (>= 0;
        may be overridden by a traced ``maxiter`` argument of :func:`relative_pose`).
      tol: convergence tolerance: a stage ends when a step lowers the cost by at most
        ``tol`` times its value and either moves the pose by at most ``tol`` radians
        (rotation vector and translation-direction step, 2-norm) or was predicted by the
        linearised model to gain at most ``tol`` times the cost.
    """

    num_hypotheses: int = 512
    num_starts: int = 8
    threshold: float = 4.0
    coarse_threshold: float = 20.0
    maxiter: int = 100
    tol: float = 1e-6

    def __post_init__(self):
        if int(self.num_hypotheses) != self.num_hypotheses or self.num_hypotheses < 0:
            raise ValueError(
                f"num_hypotheses must be a non-negative int; got {self.num_hypotheses!r}.")
        if int(self.num_starts) != self.num_starts or self.num_starts < 1:
            raise ValueError(f"num_starts must be a positive int; got {self.num_starts!r}.")
        if not (math.isfinite(self.threshold) and self.threshold > 0):
            raise ValueError(f"threshold must be a positive number of pixels; got {self.threshold!r}.")
        if not (math.isfinite(self.coarse_threshold) and self.coarse_threshold >= self.threshold):
            raise ValueError(
                f"coarse_threshold must be >= threshold ({self.threshold!r}) pixels; got "
                f"{self.coarse_threshold!r}.")
        if int(self.maxiter) != self.maxiter or self.maxiter < 0:
            raise ValueError(f"maxiter must be a non-negative int; got {self.maxiter!r}.")
        if not (math.isfinite(self.tol) and self.tol >= 0):
            raise ValueError(f"tol must be a non-negative number; got {self.tol!r}.")


class Correspondences(NamedTuple):
    """Validated correspondences in normalised coordinates (the solver's data)."""

    x1: jax.Array  # (N, 2) float: camera-1 normalised coords K1^-1 (u, v, 1); 0 if excluded
    x2: jax.Array  # (N, 2) float: camera-2 normalised coords; 0 if excluded
    weights: jax.Array  # (N,) float >= 0; 0 marks an excluded (invisible/padded) pair
    jacobian1: jax.Array  # (2, 2) float: d(normalised x1) / d(pixels) = K1^-1[:2, :2]
    jacobian2: jax.Array  # (2, 2) float: the same for camera 2


class RefineState(NamedTuple):
    """Carry of the Levenberg-Marquardt refinement (shapes/dtypes fixed across iterations)."""

    rotation: jax.Array  # (3, 3) float, det +1: x_cam2 = R x_cam1 + t
    translation: jax.Array  # (3,) float, unit norm (the baseline is applied afterwards)
    inliers: jax.Array  # (N,) bool: included and Sampson distance < `threshold`
    cost: jax.Array  # () float, MSAC cost sum_i w_i min(d_i^2, tau^2) at `threshold`, px^2
    threshold: jax.Array  # () float, current inlier threshold tau, pixels (coarse -> final)
    damping: jax.Array  # () float, LM damping (relative to diag(J^T J)), in [1e-12, 1e12]
    step: jax.Array  # () float, norm of the last proposed step, radians (finfo.max at
    #   init: finite, because the loop driver stops on any non-finite leaf)


class RelativePose(NamedTuple):
    """Result of :func:`relative_pose` (``x_cam2 = rotation @ x_cam1 + translation``)."""

    rotation: jax.Array  # (3, 3) float, det +1
    translation: jax.Array  # (3,) float, metres (the baseline's unit), |t| = baseline
    essential: jax.Array  # (3, 3) float, [t/|t|]_x R up to sign, singular values (1, 1, 0)
    inliers: jax.Array  # x1.shape[:-1] bool, Sampson distance < config.threshold
    num_inliers: jax.Array  # () int32
    num_in_front: jax.Array  # () int32 inliers triangulated in front of both cameras
    status: jax.Array  # () int32 _loop.Status of the refinement (NON_FINITE: see relative_pose)
    iterations: jax.Array  # () int32 refinement iterations applied (winning start)
    cost: jax.Array  # () float MSAC cost at config.threshold, pixels^2
    state: RefineState  # final refinement state of the winning start


# --------------------------------------------------------------------------------------
# Input handling.
# --------------------------------------------------------------------------------------


# Pixels are sensitive to rounding at the 1e-4 level: request full float32 precision for
# every product (accelerators otherwise default to TF32/bfloat16 passes for float32).
_PRECISION = jax.lax.Precision.HIGHEST
_mm = functools.partial(jnp.matmul, precision=_PRECISION)
_einsum = functools.partial(jnp.einsum, precision=_PRECISION)


def _skew(v):
    """``(..., 3) -> (..., 3, 3)`` with ``skew(a) @ b == cross(a, b)``."""
    x, y, z = v[..., 0], v[..., 1], v[..., 2]
    zero = jnp.zeros_like(x)
    return jnp.stack([jnp.stack([zero, -z, y], axis=-1),
                      jnp.stack([z, zero, -x], axis=-1),
                      jnp.stack([-y, x, zero], axis=-1)], axis=-2)


def intrinsic_matrix(focal, principal, *, skew=0.0) -> jax.Array:
    """``K (..., 3, 3) = [[fx, skew, cx], [0, fy, cy], [0, 0, 1]]`` from pixels.

    ``focal (..., 2)`` and ``principal (..., 2)`` as in :class:`jpose.camera.CameraParams`
    (same leading axes).
    """
    focal = jnp.asarray(focal)
    principal = jnp.asarray(principal)
    if focal.ndim < 1 or focal.shape[-1] != 2 or principal.shape != focal.shape:
        raise ValueError(
            f"`focal` and `principal` must both have shape (..., 2); got {focal.shape} and "
            f"{principal.shape}.")
    dtype = _loop.float_dtype(focal, principal)
    focal, principal = focal.astype(dtype), principal.astype(dtype)
    zero = jnp.zeros(focal.shape[:-1], dtype)
    skew = jnp.broadcast_to(jnp.asarray(skew, dtype), zero.shape)
    rows = [
        jnp.stack([focal[..., 0], skew, principal[..., 0]], axis=-1),
        jnp.stack([zero, focal[..., 1], principal[..., 1]], axis=-1),
        jnp.stack([zero, zero, jnp.ones_like(zero)], axis=-1),
    ]
    return jnp.stack(rows, axis=-2)


def _check_intrinsics(k, name: str, dtype) -> jax.Array:
    k = jnp.asarray(k)
    if k.shape != (3, 3):
        raise ValueError(
            f"`{name}` must be a (3, 3) intrinsic matrix [[fx, s, cx], [0, fy, cy], [0, 0, 1]] "
            f"in pixels; got shape {k.shape} (vmap over camera pairs for batches).")
    if _loop.is_concrete(k):
        kn = np.asarray(k, dtype=np.float64)
        if not np.isfinite(kn).all():
            raise ValueError(f"`{name}` contains NaN or infinite values.")
        if kn[1, 0] != 0 or kn[2, 0] != 0 or kn[2, 1] != 0 or kn[2, 2] != 1:
            raise ValueError(
                f"`{name}` must be upper triangular with last row (0, 0, 1); got {kn.tolist()}.")
        if kn[0, 0] == 0 or kn[1, 1] == 0:
            raise ValueError(f"`{name}` has a zero focal length: {kn.tolist()}.")
    return k.astype(dtype)


def _check_pixels(x1, x2):
    x1 = jnp.asarray(x1)
    x2 = jnp.asarray(x2)
    if x1.ndim < 2 or x1.shape[-1] != 2:
        raise ValueError(
            f"`x1` must have shape (..., 2) with at least one leading (correspondence) axis, "
            f"pixels; got {x1.shape}.")
    if x2.shape != x1.shape:
        raise ValueError(f"`x2` must have the same shape as `x1` {x1.shape}; got {x2.shape}.")
    num = int(np.prod(x1.shape[:-1]))
    if num < MIN_CORRESPONDENCES:
        raise ValueError(
            f"`x1`/`x2` hold {num} correspondences; the eight-point algorithm needs at least "
            f"{MIN_CORRESPONDENCES}.")
    return x1, x2


def correspondences(x1, x2, k1, k2, *, weights=None) -> Correspondences:
    """Validate pixel correspondences and map them to normalised coordinates.

    Args:
      x1: ``(..., 2)`` undistorted pixels in camera 1; every leading axis indexes
        correspondences (e.g. ``(F, J, 2)`` for J joints over F frames).
      x2: same shape, the corresponding pixels in camera 2.
      k1, k2: ``(3, 3)`` intrinsic matrices (pixels), see :func:`intrinsic_matrix`.
      weights: optional ``x1.shape[:-1]`` (or broadcastable) non-negative confidences; a
        pair with weight ``<= 0`` (invisible joint, padding) is excluded and its pixels may
        be NaN. Default: all ones.

    Returns:
      :class:`Correspondences` with the leading axes flattened to ``N``.

    Raises:
      ValueError: wrong shapes, fewer than 8 correspondences, or (for concrete inputs)
        NaN/inf in included pixels or in the weights, or fewer than 8 positive weights.
    """
    x1, x2 = _check_pixels(x1, x2)
    lead = x1.shape[:-1]
    dtype = _loop.float_dtype(x1, x2)
    k1 = _check_intrinsics(k1, "k1", dtype)
    k2 = _check_intrinsics(k2, "k2", dtype)
    w = broadcast_weights(weights, lead, dtype)
    if _loop.is_concrete(w):
        wn = np.asarray(w)
        if not np.isfinite(wn).all():
            raise ValueError("`weights` contains NaN or infinite values.")
        included = wn > 0
        if included.sum() < MIN_CORRESPONDENCES:
            raise ValueError(
                f"`weights` includes {int(included.sum())} correspondences (weight > 0); the "
                f"eight-point algorithm needs at least {MIN_CORRESPONDENCES}.")
        for name, x in (("x1", x1), ("x2", x2)):
            if _loop.is_concrete(x):
                bad = ~np.isfinite(np.asarray(x)[included]).all(axis=-1)
                if bad.any():
                    raise ValueError(
                        f"`{name}` has {int(bad.sum())} included correspondences with NaN or "
                        "infinite pixels; give them weight 0 instead.")
    num = int(np.prod(lead))
    w = w.reshape(num)
    include = w > 0
    w = jnp.where(include, w, 0)

    def normalise(x, k):
        x = x.astype(dtype).reshape(num, 2)
        # Masked before any arithmetic so NaN in an excluded pair cannot propagate.
        x = jnp.where(include[:, None], x, 0)
        k_inv = jnp.linalg.inv(k)
        jac = k_inv[:2, :2]
        return _mm(x, jnp.swapaxes(jac, 0, 1)) + k_inv[None, :2, 2], jac

    y1, jac1 = normalise(x1, k1)
    y2, jac2 = normalise(x2, k2)
    y1 = jnp.where(include[:, None], y1, 0)
    y2 = jnp.where(include[:, None], y2, 0)
    return Correspondences(x1=y1, x2=y2, weights=w, jacobian1=jac1, jacobian2=jac2)


# --------------------------------------------------------------------------------------
# Eight-point algorithm, Sampson distance, decomposition.
# --------------------------------------------------------------------------------------


def _homogeneous(x):
    return jnp.concatenate([x, jnp.ones(x.shape[:-1] + (1,), x.dtype)], axis=-1)


def _hartley_transform(x, w):
    """``T (..., 3, 3)``: move the weighted centroid to 0, weighted mean distance sqrt 2."""
    total = jnp.sum(w, axis=-1)
    safe_total = jnp.where(total > 0, total, 1)
    centroid = jnp.sum(w[..., None] * x, axis=-2) / safe_total[..., None]
    offset = x - centroid[..., None, :]
    dist = jnp.sqrt(jnp.sum(offset * offset, axis=-1))
    mean = jnp.sum(w * dist, axis=-1) / safe_total
    scale = math.sqrt(2.0) / jnp.where(mean > 0, mean, 1)
    zero = jnp.zeros_like(scale)
    one = jnp.ones_like(scale)
    rows = [
        jnp.stack([scale, zero, -scale * centroid[..., 0]], axis=-1),
        jnp.stack([zero, scale, -scale * centroid[..., 1]], axis=-1),
        jnp.stack([zero, zero, one], axis=-1),
    ]
    return jnp.stack(rows, axis=-2)


def _canonical_sign(e):
    """Flip ``e`` so its entry of largest magnitude is positive (E is defined up to sign)."""
    flat = e.reshape(e.shape[:-2] + (9,))
    idx = jnp.argmax(jnp.abs(flat), axis=-1)
    pivot = jnp.take_along_axis(flat, idx[..., None], axis=-1)[..., 0]
    sign = jnp.where(pivot < 0, -jnp.ones_like(pivot), jnp.ones_like(pivot))
    return e * sign[..., None, None]


def _project_essential(e):
    """Nearest essential matrix up to scale: ``U diag(1, 1, 0) V^T`` (H&Z Result 9.17)."""
    u, _, vt = jnp.linalg.svd(e)
    return _canonical_sign(_mm(u[..., :, :2], vt[..., :2, :]))


def _eight_point(y1, y2, w):
    """Weighted normalised eight-point on normalised coords ``(..., M, 2)``, ``w (..., M)``."""
    t1 = _hartley_transform(y1, w)
    t2 = _hartley_transform(y2, w)
    z1 = _mm(_homogeneous(y1), jnp.swapaxes(t1, -1, -2))  # rows T1 y1
    z2 = _mm(_homogeneous(y2), jnp.swapaxes(t2, -1, -2))
    m = y1.shape[-2]
    # Row i: kron(z2_i, z1_i), so that row . vec(E) = z2_i^T E z1_i (row-major vec).
    rows = (z2[..., :, :, None] * z1[..., :, None, :]).reshape(y1.shape[:-2] + (m, 9))
    rows = jnp.sqrt(w)[..., None] * rows
    if m < 9:  # A zero row keeps the SVD's V square (9 x 9) for a minimal sample.
        pad = jnp.zeros(rows.shape[:-2] + (9 - m, 9), rows.dtype)
        rows = jnp.concatenate([rows, pad], axis=-2)
    _, _, vt = jnp.linalg.svd(rows, full_matrices=False)
    e_hat = vt[..., -1, :].reshape(y1.shape[:-2] + (3, 3))
    e = _mm(_mm(jnp.swapaxes(t2, -1, -2), e_hat), t1)  # undo the Hartley normalisation
    # Project after denormalising: T1, T2 are not rotations and would break the (1, 1, 0)
    # structure if applied afterwards.
    return _project_essential(e)


def essential_eight_point(x1, x2, k1, k2, *, weights=None) -> jax.Array:
    """Essential matrix ``(3, 3)`` by the weighted normalised eight-point algorithm.

    No RANSAC: every included correspondence counts with its weight (integer weights act
    as repeated points). Arguments as in :func:`correspondences`. The result has singular
    values ``(1, 1, 0)`` and satisfies ``x̂2^T E x̂1 ≈ 0`` in normalised coordinates
    (convention ``x_cam2 = R x_cam1 + t``, ``E = [t]_x R`` up to sign).
    """
    c = correspondences(x1, x2, k1, k2, weights=weights)
    return _eight_point(c.x1, c.x2, c.weights)


def fundamental_from_essential(essential, k1, k2) -> jax.Array:
    """``F = K2^{-T} E K1^{-1}`` (pixels): ``(u2, v2, 1) F (u1, v1, 1)^T = 0``."""
    essential = jnp.asarray(essential)
    k1 = _check_intrinsics(k1, "k1", essential.dtype)
    k2 = _check_intrinsics(k2, "k2", essential.dtype)
    return _mm(_mm(jnp.swapaxes(jnp.linalg.inv(k2), -1, -2), essential), jnp.linalg.inv(k1))


def _sampson_parts(e, c: Correspondences):
    """Residuals ``r (..., N)`` and Sampson denominators ``g (..., N)`` (pixels^-2 scale).

    ``r = x̂2^T E x̂1 = (u2, v2, 1) F (u1, v1, 1)^T`` and ``g = |dr/d(u1, v1)|^2 +
    |dr/d(u2, v2)|^2``, computed in normalised coordinates (numbers of order 1, which
    keeps float32 accurate) with the chain rule through ``K^{-1}``.
    """
    h1 = _homogeneous(c.x1)
    h2 = _homogeneous(c.x2)
    e_x1 = _einsum("...ij,nj->...ni", e, h1)  # E x̂1
    et_x2 = _einsum("...ji,nj->...ni", e, h2)  # E^T x̂2
    r = _einsum("...ni,ni->...n", e_x1, h2)
    grad1 = _mm(et_x2[..., :2], c.jacobian1)  # dr/d(u1, v1) = (E^T x̂2)[:2]^T K1^-1[:2, :2]
    grad2 = _mm(e_x1[..., :2], c.jacobian2)
    g = jnp.sum(grad1 * grad1, axis=-1) + jnp.sum(grad2 * grad2, axis=-1)
    return r, g


def _sampson_sq(e, c: Correspondences):
    r, g = _sampson_parts(e, c)
    ok = g > 0
    # g = 0 only where both epipolar lines vanish; then the point is an inlier iff r = 0.
    return jnp.where(ok, r * r / jnp.where(ok, g, 1), jnp.where(r == 0, 0, jnp.inf))


def sampson_distance(essential, x1, x2, k1, k2) -> jax.Array:
    """Sampson distance (pixels) of each correspondence to ``essential``.

    ``d = |x2^T F x1| / sqrt((F x1)_1^2 + (F x1)_2^2 + (F^T x2)_1^2 + (F^T x2)_2^2)`` with
    ``F = K2^{-T} E K1^{-1}`` (H&Z eq. 11.9): the first-order distance, in pixels, by which
    the pair ``(x1, x2)`` must move (both images together) to satisfy the epipolar
    constraint. ``x1, x2 (..., 2)`` pixels; returns ``x1.shape[:-1]``.
    """
    c = correspondences(x1, x2, k1, k2)
    essential = jnp.asarray(essential).astype(c.x1.dtype)
    if essential.shape != (3, 3):
        raise ValueError(f"`essential` must have shape (3, 3); got {essential.shape}.")
    return jnp.sqrt(_sampson_sq(essential, c)).reshape(jnp.shape(x1)[:-1])


def decompose_essential(essential):
    """The four ``(R, t)`` candidates of an essential matrix (H&Z Result 9.19).

    Args:
      essential: ``(..., 3, 3)``, ideally with singular values ``(s, s, 0)``.
    Returns:
      ``rotations (..., 4, 3, 3)`` (det +1) and unit ``translations (..., 4, 3)``, in the
      order ``(Ra, t), (Ra, -t), (Rb, t), (Rb, -t)`` with ``Ra = U W V^T``,
      ``Rb = U W^T V^T``, ``t = u3``; each satisfies ``[t]_x R ∝ ±E``.
    """
    essential = jnp.asarray(essential)
    if essential.ndim < 2 or essential.shape[-2:] != (3, 3):
        raise ValueError(f"`essential` must have shape (..., 3, 3); got {essential.shape}.")
    u, _, vt = jnp.linalg.svd(essential)
    # E does not depend on the third singular vectors (singular value 0), so their signs
    # can be chosen to make U and V proper rotations.
    sign_u = jnp.sign(jnp.linalg.det(u))
    sign_v = jnp.sign(jnp.linalg.det(vt))
    u = jnp.concatenate([u[..., :, :2], sign_u[..., None, None] * u[..., :, 2:]], axis=-1)
    vt = jnp.concatenate([vt[..., :2, :], sign_v[..., None, None] * vt[..., 2:, :]], axis=-2)
    w = jnp.asarray([[0, -1, 0], [1, 0, 0], [0, 0, 1]], essential.dtype)
    ra = _mm(_mm(u, w), vt)
    rb = _mm(_mm(u, w.T), vt)
    t = u[..., :, 2]
    rotations = jnp.stack([ra, ra, rb, rb], axis=-3)
    translations = jnp.stack([t, -t, t, -t], axis=-2)
    return rotations, translations


def _ray_depths(rotation, translation, y1, y2):
    """Depths ``(lam1, lam2)`` times ``det >= 0`` and ``det`` for the rays' closest points.

    Minimises ``|lam1 R x̂1 + t - lam2 x̂2|`` (x̂ homogeneous with z = 1, so ``lam`` is the
    depth in each camera). Returned unnormalised so the signs are usable even when the
    rays are (nearly) parallel.
    """
    a = _mm(_homogeneous(y1), jnp.swapaxes(rotation, -1, -2))  # R x̂1, (..., N, 3)
    b = _homogeneous(y2)
    aa = jnp.sum(a * a, axis=-1)
    bb = jnp.sum(b * b, axis=-1)
    ab = jnp.sum(a * b, axis=-1)
    at = jnp.sum(a * translation[..., None, :], axis=-1)
    bt = jnp.sum(b * translation[..., None, :], axis=-1)
    det = aa * bb - ab * ab
    return ab * bt - at * bb, aa * bt - ab * at, det


def triangulate_midpoint(x1, x2, k1, k2, rotation, translation) -> jax.Array:
    """Camera-1 coordinates ``(..., 3)`` of correspondences by the midpoint method.

    The midpoint of the shortest segment between the two viewing rays, for cameras with
    ``x_cam2 = rotation @ x_cam1 + translation``; units of ``translation`` (metres when it
    was scaled by the baseline). Pixels ``(..., 2)`` as in :func:`correspondences`. Parallel
    rays (points at infinity) give inf/NaN.
    """
    c = correspondences(x1, x2, k1, k2)
    dtype = c.x1.dtype
    rotation = jnp.asarray(rotation).astype(dtype)
    translation = jnp.asarray(translation).astype(dtype)
    if rotation.shape != (3, 3) or translation.shape != (3,):
        raise ValueError(
            f"`rotation` must be (3, 3) and `translation` (3,); got {rotation.shape} and "
            f"{translation.shape}.")
    n1, n2, det = _ray_depths(rotation, translation, c.x1, c.x2)
    lam1, lam2 = n1 / det, n2 / det
    p1 = lam1[:, None] * _homogeneous(c.x1)
    # Camera-2 point lam2 x̂2 back in camera 1: R^T (p - t).
    p2 = _mm(lam2[:, None] * _homogeneous(c.x2) - translation[None, :], rotation)
    return (0.5 * (p1 + p2)).reshape(jnp.shape(x1)[:-1] + (3,))


# --------------------------------------------------------------------------------------
# RANSAC, candidate selection and refinement.
# --------------------------------------------------------------------------------------


def _msac(d2, c: Correspondences, threshold):
    """MSAC cost ``sum_i w_i min(d_i^2, tau^2)`` (..., pixels^2) and inliers ``d < tau``."""
    tau2 = jnp.asarray(threshold, d2.dtype) ** 2
    # Weights (N,) lined up with d2 (..., N) explicitly (rank promotion is an error).
    w = c.weights.reshape((1,) * (d2.ndim - 1) + c.weights.shape)
    included = w > 0
    cost = jnp.sum(jnp.where(included, w * jnp.minimum(d2, tau2), 0), axis=-1)
    inliers = jnp.logical_and(included, d2 < tau2)
    return cost, inliers


def ransac_hypotheses(c: Correspondences, key, *,
                      config: RelativePoseConfig = RelativePoseConfig()):
    """The ``config.num_starts`` best of ``config.num_hypotheses`` eight-point hypotheses.

    Samples are 8 distinct included correspondences, uniform without replacement (Gumbel
    top-k over the included ones); each gives an eight-point essential matrix, and every
    hypothesis is scored on every correspondence in parallel by the MSAC cost at
    ``config.coarse_threshold`` (pixels). A fixed batch, so it runs under jit and vmap.

    Returns:
      ``essentials (K, 3, 3)`` and their coarse MSAC costs ``(K,)`` (pixels^2), best
      first, ``K = min(num_starts, num_hypotheses)``. With fewer than 8 included points
      the samples contain excluded ones and the hypotheses are meaningless
      (:func:`relative_pose` reports NON_FINITE then).
    """
    num_h = int(config.num_hypotheses)
    if num_h < 1:
        raise ValueError("config.num_hypotheses must be >= 1 for RANSAC.")
    dtype = c.x1.dtype
    included = c.weights > 0
    n = c.weights.shape[0]
    gumbel = jax.random.gumbel(key, (num_h, n), dtype)
    gumbel = jnp.where(included[None, :], gumbel, -jnp.inf)
    _, idx = jax.lax.top_k(gumbel, MIN_CORRESPONDENCES)  # (H, 8) distinct indices
    sample_w = included[idx].astype(dtype)  # minimal samples are unweighted
    hypotheses = _eight_point(c.x1[idx], c.x2[idx], sample_w)  # (H, 3, 3)
    cost, _ = _msac(_sampson_sq(hypotheses, c), c, config.coarse_threshold)
    cost = jnp.where(jnp.isnan(cost), jnp.inf, cost)  # a degenerate sample never wins
    neg_cost, best = jax.lax.top_k(-cost, min(int(config.num_starts), num_h))
    return hypotheses[best], -neg_cost


def _in_front(rotation, translation, c: Correspondences, inliers):
    """``(..., N)`` bool: inliers whose rays meet in front of both cameras."""
    n1, n2, _ = _ray_depths(rotation, translation, c.x1, c.x2)
    mask = inliers.reshape((1,) * (n1.ndim - 1) + inliers.shape)
    return jnp.logical_and(jnp.logical_and(n1 > 0, n2 > 0), mask)


def _select_candidate(essential, c: Correspondences, inliers):
    """The (R, unit t) of ``essential`` with the most inliers in front of both cameras."""
    rotations, translations = decompose_essential(essential)
    counts = jax.vmap(lambda r, t: jnp.sum(_in_front(r, t, c, inliers)))(rotations, translations)
    best = jnp.argmax(counts)
    return rotations[best], translations[best]


def _tangent_basis(t):
    """``(3, 2)`` orthonormal basis of the plane orthogonal to the unit vector ``t``."""
    # Cross with the axis least aligned with t: never (nearly) parallel to it.
    axis = jax.nn.one_hot(jnp.argmin(jnp.abs(t)), 3, dtype=t.dtype)
    b1 = jnp.cross(t, axis)
    b1 = b1 / jnp.linalg.norm(b1)
    b2 = jnp.cross(t, b1)
    return jnp.stack([b1, b2], axis=-1)


def _retract(rotation, translation, delta):
    """Move ``(R, t)`` by ``delta (5,)``: ``R <- exp([w]_x) R``, ``t <- normalise(t + B b)``."""
    rotation = _mm(axis_angle_to_matrix(delta[:3]), rotation)
    translation = translation + _mm(_tangent_basis(translation), delta[3:])
    return rotation, translation / jnp.linalg.norm(translation)


def _essential(rotation, translation):
    return _mm(_skew(translation), rotation)


def _signed_sampson(rotation, translation, c: Correspondences):
    """Signed Sampson distances ``r_i / sqrt(g_i)`` (N,), pixels; 0 where ``g_i = 0``."""
    r, g = _sampson_parts(_essential(rotation, translation), c)
    ok = g > 0
    return jnp.where(ok, r / jnp.sqrt(jnp.where(ok, g, 1)), 0)


def _pose_msac(rotation, translation, c: Correspondences, threshold):
    return _msac(_sampson_sq(_essential(rotation, translation), c), c, threshold)


def init_state(c: Correspondences, rotation, translation, *,
               config: RelativePoseConfig) -> RefineState:
    """Refinement state at ``(rotation, translation)``, at the coarse threshold.

    ``translation`` is normalised to unit length.
    """
    dtype = c.x1.dtype
    rotation = jnp.asarray(rotation).astype(dtype)
    translation = jnp.asarray(translation).astype(dtype)
    translation = translation / jnp.linalg.norm(translation)
    threshold = jnp.asarray(config.coarse_threshold, dtype)
    cost, inliers = _pose_msac(rotation, translation, c, threshold)
    return RefineState(rotation=rotation, translation=translation, inliers=inliers, cost=cost,
                       threshold=threshold, damping=jnp.asarray(1e-3, dtype),
                       step=jnp.asarray(jnp.finfo(dtype).max, dtype))


def update(c: Correspondences, state: RefineState, *, config: RelativePoseConfig):
    """One Levenberg-Marquardt step on the MSAC cost; returns ``(state, converged)``.

    The residuals are the weighted signed Sampson distances of the current inliers (those
    beyond the threshold are truncated: zero gradient); a step is accepted only if it
    lowers the MSAC cost, and the damping (Marquardt scaling by ``diag(J^T J)``) is
    divided by 3 on success and multiplied by 4 on failure. The step has converged at the
    current threshold when the cost fell by at most ``config.tol`` times its value and
    either the step was at most ``config.tol`` (radians) or the linearised model predicted
    a decrease of at most ``config.tol`` times the cost; the threshold is then halved (not
    below ``config.threshold``) and the cost recomputed, and the refinement has converged
    when this happens at the final threshold. With fewer than 8 inliers nothing is fitted
    and the threshold moves on.
    """
    dtype = c.x1.dtype
    sqrt_w = jnp.sqrt(c.weights)

    def residuals(delta):
        rotation, translation = _retract(state.rotation, state.translation, delta)
        return sqrt_w * _signed_sampson(rotation, translation, c)

    zero = jnp.zeros((5,), dtype)
    res = residuals(zero)
    jac = jax.jacfwd(residuals)(zero)  # (N, 5): 5 forward passes, cheaper than reverse
    res = jnp.where(state.inliers, res, 0)
    jac = jnp.where(state.inliers[:, None], jac, 0)
    normal = _mm(jac.T, jac)
    grad = _mm(jac.T, res)
    diag = jnp.diagonal(normal)
    scaled = diag + jnp.finfo(dtype).eps * jnp.max(diag)
    enough = jnp.sum(state.inliers) >= MIN_CORRESPONDENCES
    lhs = normal + jnp.diag(state.damping * scaled)
    lhs = jnp.where(enough, lhs, jnp.eye(5, dtype=dtype))
    delta = jnp.where(enough, -jnp.linalg.solve(lhs, grad), 0)

    rotation, translation = _retract(state.rotation, state.translation, delta)
    cost, inliers = _pose_msac(rotation, translation, c, state.threshold)
    accept = jnp.logical_and(enough, cost < state.cost)
    decrease = jnp.where(accept, state.cost - cost, 0)
    damping = jnp.where(accept, state.damping / 3, state.damping * 4)
    damping = jnp.clip(damping, 1e-12, 1e12)  # bounded: the carry must stay finite
    step = jnp.linalg.norm(delta)
    rotation = jnp.where(accept, rotation, state.rotation)
    translation = jnp.where(accept, translation, state.translation)
    inliers = jnp.where(accept, inliers, state.inliers)
    cost = jnp.where(accept, cost, state.cost)

    tol = jnp.asarray(config.tol, dtype)
    # The decrease the linearised model predicts (>= 0): once it is negligible a rejected
    # step only means rounding (float32 stalls there), so waiting for the damping to
    # shrink the step below tol would waste iterations.
    predicted = -jnp.sum(grad * delta) - 0.5 * jnp.sum(delta * _mm(normal, delta))
    small_step = jnp.logical_or(step <= tol, predicted <= tol * state.cost)
    settled = jnp.logical_and(small_step, decrease <= tol * state.cost)
    settled = jnp.logical_or(settled, jnp.logical_not(enough))
    final = jnp.asarray(config.threshold, dtype)
    at_final = state.threshold <= final
    # Graduated threshold: the wide basin of a coarse threshold first, then tighten.
    shrink = jnp.logical_and(settled, jnp.logical_not(at_final))
    threshold = jnp.where(shrink, jnp.maximum(final, state.threshold / 2), state.threshold)
    cost_shrunk, inliers_shrunk = _pose_msac(rotation, translation, c, threshold)
    new = RefineState(
        rotation=rotation,
        translation=translation,
        inliers=jnp.where(shrink, inliers_shrunk, inliers),
        cost=jnp.where(shrink, cost_shrunk, cost),
        threshold=threshold,
        damping=jnp.where(shrink, jnp.asarray(1e-3, dtype), damping),
        step=step,
    )
    return new, jnp.logical_and(settled, at_final)


def relative_pose(
    x1,
    x2,
    k1,
    k2,
    *,
    weights=None,
    baseline=1.0,
    key=None,
    config: RelativePoseConfig = RelativePoseConfig(),
    maxiter=None,
) -> RelativePose:
    """Relative pose ``x_cam2 = R x_cam1 + t`` of two calibrated cameras from 2D joints.

    RANSAC eight-point hypotheses, cheirality, then a graduated Levenberg-Marquardt
    refinement of the MSAC cost from several starts in parallel (see the module
    docstring). Jit with ``config`` static (it is hashable); vmap over camera pairs with
    one key per pair.

    Args:
      x1, x2: ``(..., 2)`` undistorted pixels of the same joints in cameras 1 and 2; all
        leading axes index correspondences (e.g. ``(F, J, 2)``).
      k1, k2: ``(3, 3)`` intrinsic matrices, pixels (:func:`intrinsic_matrix`).
      weights: optional ``x1.shape[:-1]`` non-negative confidences / visibility; weight
        ``<= 0`` excludes a pair (its pixels may be NaN).
      baseline: distance between the camera centres, metres (> 0): ``|t| = baseline``.
      key: ``jax.random`` key for the RANSAC samples (required unless
        ``config.num_hypotheses == 0``).
      config: :class:`RelativePoseConfig` (static).
      maxiter: optional override of ``config.maxiter`` (per start); may be traced; 0 skips
        the refinement (the result is then the best starting hypothesis).

    Returns:
      :class:`RelativePose`. ``status``, ``iterations`` and ``state`` are those of the
      winning start's refinement (:class:`_loop.Status`); NON_FINITE also flags inputs
      that could only be checked under tracing (fewer than 8 positive weights, NaN in an
      included pair, a non-positive baseline), and then rotation, translation and
      essential are NaN.

    Raises:
      ValueError: (concrete inputs) bad shapes, fewer than 8 included correspondences,
        NaN/inf in included pixels or weights, ``baseline <= 0``, missing ``key``.
    """
    if not isinstance(config, RelativePoseConfig):
        raise ValueError(f"`config` must be a RelativePoseConfig; got {type(config).__name__}.")
    if config.num_hypotheses > 0 and key is None:
        raise ValueError("`key` (a jax.random key) is required for RANSAC; pass one or "
                         "set config.num_hypotheses=0.")
    baseline = jnp.asarray(baseline)
    if baseline.shape != ():
        raise ValueError(f"`baseline` must be a scalar (metres); got shape {baseline.shape}.")
    if _loop.is_concrete(baseline) and not (np.isfinite(baseline) and float(baseline) > 0):
        raise ValueError(f"`baseline` must be a positive distance in metres; got {baseline}.")
    c = correspondences(x1, x2, k1, k2, weights=weights)
    dtype = c.x1.dtype
    baseline = baseline.astype(dtype)
    # Start 0 is the eight-point fit on every included pair (good without outliers).
    starts = _eight_point(c.x1, c.x2, c.weights)[None]
    if config.num_hypotheses > 0:
        hypotheses, _ = ransac_hypotheses(c, key, config=config)
        starts = jnp.concatenate([starts, hypotheses], axis=0)
    budget = config.maxiter if maxiter is None else maxiter

    def refine(essential):
        _, inliers = _msac(_sampson_sq(essential, c), c, config.coarse_threshold)
        rotation, translation = _select_candidate(essential, c, inliers)
        state = init_state(c, rotation, translation, config=config)
        out = _loop.iterate(state, functools.partial(update, c, config=config),
                            max_iterations=budget)
        # Compare the starts at the final threshold (a start that ran out of iterations
        # may still be at a coarser one).
        cost, inliers = _pose_msac(out.state.rotation, out.state.translation, c,
                                   config.threshold)
        return out, cost, inliers

    outs, costs, inliers_all = jax.vmap(refine)(starts)
    costs = jnp.where(jnp.isnan(costs), jnp.inf, costs)
    best = jnp.argmin(costs)
    out = jax.tree.map(lambda x: x[best], outs)
    inliers = inliers_all[best]
    rotation = out.state.rotation
    unit_t = out.state.translation
    essential = _canonical_sign(_essential(rotation, unit_t))
    num_in_front = jnp.sum(_in_front(rotation, unit_t, c, inliers)).astype(jnp.int32)
    translation = baseline * unit_t

    num_included = jnp.sum(c.weights > 0)
    ok = jnp.logical_and(num_included >= MIN_CORRESPONDENCES, baseline > 0)
    # Traced NaN/inf in an included pair (excluded ones are zeroed in `c`): report it
    # rather than let the pair quietly become an outlier.
    ok = jnp.logical_and(ok, _loop.all_finite((c.x1, c.x2, c.jacobian1, c.jacobian2)))
    ok = jnp.logical_and(ok, _loop.all_finite((rotation, translation, essential)))
    status = jnp.where(ok, out.status, jnp.int32(_loop.Status.NON_FINITE))
    nan = jnp.asarray(jnp.nan, dtype)
    return RelativePose(
        rotation=jnp.where(ok, rotation, nan),
        translation=jnp.where(ok, translation, nan),
        essential=jnp.where(ok, essential, nan),
        inliers=inliers.reshape(jnp.shape(x1)[:-1]),
        num_inliers=jnp.sum(inliers).astype(jnp.int32),
        num_in_front=num_in_front,
        status=status,
        iterations=out.iterations,
        cost=costs[best],
        state=out.state,
    )


# --------------------------------------------------------------------------------------
# Conversion to and from jpose's world-to-camera extrinsics.
# --------------------------------------------------------------------------------------


def relative_pose_from_cameras(camera1: CameraParams, camera2: CameraParams):
    """``(R, t)`` with ``x_cam2 = R x_cam1 + t`` for two :class:`CameraParams`.

    From ``x_cam_i = R_i (x_world - c_i)``: ``R = R2 R1^T`` and ``t = R2 (c1 - c2)``
    (metres). Leading axes of the two cameras must match.
    """
    r1, r2 = jnp.asarray(camera1.rotation), jnp.asarray(camera2.rotation)
    c1, c2 = jnp.asarray(camera1.centre), jnp.asarray(camera2.centre)
    if r1.shape != r2.shape or r1.shape[-2:] != (3, 3) or c1.shape != c2.shape \
            or c1.shape != r1.shape[:-1]:
        raise ValueError(
            "camera1 and camera2 must have matching rotation (..., 3, 3) and centre (..., 3); "
            f"got {r1.shape}, {c1.shape} and {r2.shape}, {c2.shape}.")
    rotation = _mm(r2, jnp.swapaxes(r1, -1, -2))
    translation = jnp.sum(r2 * (c1 - c2)[..., None, :], axis=-1)
    return rotation, translation


def camera_from_relative_pose(camera1: CameraParams, rotation, translation, *,
                              intrinsics: CameraParams | None = None) -> CameraParams:
    """Camera 2 as :class:`CameraParams`, given camera 1 and ``x_cam2 = R x_cam1 + t``.

    ``R2 = R R1`` and ``c2 = c1 - R2^T t`` (so ``|c2 - c1| = |t|``, metres). The intrinsic
    fields (focal, principal, distortion, image size) are taken from ``intrinsics``
    (camera 2's calibration), default camera 1's. ``camera1`` has rotation ``(..., 3, 3)``
    with the same leading axes as ``rotation`` and ``translation``.
    """
    r1 = jnp.asarray(camera1.rotation)
    c1 = jnp.asarray(camera1.centre)
    rotation = jnp.asarray(rotation)
    translation = jnp.asarray(translation)
    if rotation.shape != r1.shape or translation.shape != c1.shape or r1.shape[-2:] != (3, 3):
        raise ValueError(
            f"`rotation` {rotation.shape} and `translation` {translation.shape} must match "
            f"camera1's rotation {r1.shape} and centre {c1.shape}.")
    dtype = r1.dtype
    rotation = rotation.astype(dtype)
    translation = translation.astype(dtype)
    r2 = _mm(rotation, r1)
    # c2 = c1 - R2^T t, written as a row-vector product to keep ranks equal.
    c2 = c1 - jnp.sum(r2 * translation[..., :, None], axis=-2)
    source = camera1 if intrinsics is None else intrinsics
    return source._replace(rotation=r2, centre=c2)
