"""Multi-view triangulation: undistortion, then confidence-weighted DLT.

Everything here is ``jax.numpy``: jit-able (``num_iters`` and ``min_views`` static),
vmap-able and polymorphic over the point axes (typically frames and joints).

Pipeline of :func:`triangulate`
-------------------------------
1. **Undistort** every 2D keypoint with its view's distortion (:func:`undistort_points`):
   Newton's method on the distortion map, started at the distorted point, a fixed number
   of steps. Distortion models: jpose's (Human3.6M, ``cams.radial`` / ``cams.tangential``,
   :func:`jpose.camera.project_camera`) or, when ``distortions=`` is given, OpenCV's exact
   one (:func:`jpose.calibration.project_opencv`, e.g. ``Calibration.distortions``).
2. **DLT.** For view ``v`` with undistorted normalised coordinates ``(x, y)`` and
   ``P = [R | -R c]``, the point ``X`` satisfies ``(x P_3 - P_1) X = 0`` and
   ``(y P_3 - P_2) X = 0``. Both rows are multiplied by ``w_v * f_v`` with ``w_v`` the
   view's confidence and ``f_v = (fx + fy) / 2``: with the ``f_v`` factor the rows equal
   those of the pixel-space DLT with ``P = K [R | t]`` (on undistorted pixels): Pose2Sim's
   weighted triangulation (rows scaled by the detection likelihood; Anipose's
   ``triangulate_simple`` is the unweighted case, in normalised coordinates). The
   homogeneous least-squares solution is the last right singular vector of the stacked
   rows (SVD, not the normal equations, whose condition number is squared). The world
   frame is first shifted to the mean camera centre and scaled by the cameras' mean
   distance to it (Hartley's normalisation): in float32 with the rig 300 m from the world
   origin this is the difference between 2e-5 m and 1 cm. The homogeneous problem is not
   invariant to that change of frame, so with noisy keypoints the point differs slightly
   from Pose2Sim's (micrometres at pixel noise); noise-free, both are exact.
3. **Validity.** A view counts for a point when its confidence is finite and > 0, its
   keypoint is finite and its undistortion converged (residual below ``undistort_tol``
   pixels). Views that do not count get weight 0 (their NaNs cannot leak). A point
   counted by fewer than ``min_views`` (>= 2) views is NaN.

Weights scale residual rows, so the squared algebraic error of a view is weighted by its
confidence squared. A view's algebraic residual is about its pixel error times the point's
depth in that view, so views that see the point from further away weigh proportionally
more, as in every linear DLT; refine with a reprojection-error solver where that matters.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp

from jpose import calibration as calibration_lib
from jpose import camera as camera_lib

__all__ = ["Undistorted", "undistort_points", "Triangulation", "triangulate"]

Array = jax.Array


class Undistorted(NamedTuple):
    """Result of :func:`undistort_points`.

    Fields:
      uv: (..., 2) undistorted pixels: the distortion-free pinhole projection (same
        focal length and principal point) of the ray through each keypoint.
      residual: (...,) pixels, ``|distort(undistorted) - observed|`` after the last
        Newton step: ~0 where the iteration converged; large or NaN where it did not
        (e.g. beyond the radius where strong barrel distortion folds back).
    """

    uv: Array
    residual: Array


def _distort_jpose(x, y, radial, tangential):
    """Human3.6M distortion (:func:`jpose.camera.project_perspective`) of normalised (x, y)."""
    k1, k2, k3 = radial[..., 0], radial[..., 1], radial[..., 2]
    p1, p2 = tangential[..., 0], tangential[..., 1]
    r2 = x * x + y * y
    scale = 1 + r2 * (k1 + r2 * (k2 + r2 * k3)) + p1 * y + p2 * x
    return x * scale + p2 * r2, y * scale + p1 * r2


def _distort_opencv(x, y, d):
    xy = calibration_lib.opencv_distort(jnp.stack([x, y], axis=-1), d)
    return xy[..., 0], xy[..., 1]


def _undistort_normalized(xd, yd, distort, num_iters: int):
    """Solves ``distort(x, y) = (xd, yd)`` by Newton's method; returns x, y, |residual|."""
    ones = jnp.ones_like(xd)

    def step(_, xy):
        x, y = xy
        (fx, fy), (dfx_dx, dfy_dx) = jax.jvp(lambda a: distort(a, y), (x,), (ones,))
        _, (dfx_dy, dfy_dy) = jax.jvp(lambda b: distort(x, b), (y,), (ones,))
        rx, ry = fx - xd, fy - yd
        det = dfx_dx * dfy_dy - dfx_dy * dfy_dx
        # 2x2 solve by Cramer's rule: J (dx, dy) = -(rx, ry).
        dx = -(dfy_dy * rx - dfx_dy * ry) / det
        dy = -(dfx_dx * ry - dfy_dx * rx) / det
        return x + dx, y + dy

    x, y = jax.lax.fori_loop(0, num_iters, step, (xd, yd))
    fx, fy = distort(x, y)
    return x, y, jnp.sqrt((fx - xd) ** 2 + (fy - yd) ** 2)


def _check_iters(num_iters) -> int:
    if isinstance(num_iters, bool) or not isinstance(num_iters, int) or num_iters < 0:
        raise ValueError(f"num_iters must be a Python int >= 0, got {num_iters!r}")
    return num_iters


def _undistort_aligned(uv: Array, cams: camera_lib.CameraParams, distortions, num_iters):
    """Normalised undistorted (x, y) and residual (pixels); camera arrays already aligned."""
    xd = (uv[..., 0] - cams.principal[..., 0]) / cams.focal[..., 0]
    yd = (uv[..., 1] - cams.principal[..., 1]) / cams.focal[..., 1]
    if distortions is None:
        def distort(x, y):
            return _distort_jpose(x, y, cams.radial, cams.tangential)
    else:
        def distort(x, y):
            return _distort_opencv(x, y, distortions)
    x, y, res = _undistort_normalized(xd, yd, distort, num_iters)
    residual_px = res * jnp.sqrt(cams.focal[..., 0] * cams.focal[..., 1])
    return x, y, residual_px


def _aligned_cameras(cams, distortions, batch, target_name, dtype):
    cams, _ = camera_lib._checked_camera(cams)
    fields = {
        name: camera_lib._align_prefix(getattr(cams, name).astype(dtype), f"cams.{name}",
                                       len(trailing), batch, target_name)
        for name, trailing in camera_lib.CAMERA_FIELD_SHAPES.items()
    }
    if distortions is not None:
        distortions = camera_lib._float_with_trailing(distortions, "distortions", (5,))
        distortions = camera_lib._align_prefix(distortions.astype(dtype), "distortions", 1,
                                               batch, target_name)
    return camera_lib.CameraParams(**fields), distortions


# jit: one compiled program instead of hundreds of eagerly dispatched small ops (the
# Newton loop, the SVD); arguments are validated once per shape at trace time.
@functools.partial(jax.jit, static_argnames=("num_iters",))
def undistort_points(uv, cams: camera_lib.CameraParams, *, distortions=None,
                     num_iters: int = 10) -> Undistorted:
    """Removes lens distortion from pixels: the inverse of the distortion in projection.

    ``project_camera(X, cams)`` undistorted gives ``project_camera(X, cams without
    distortion)``. Newton's method (quadratic convergence; 10 steps from the distorted
    point reach float64 precision for Human3.6M-like and typical phone/webcam distortion).

    Args:
      uv: (..., 2) distorted pixels.
      cams: cameras whose leading axes line up with the first leading axes of ``uv``
        (the camera rule of :mod:`jpose.camera`); uses focal, principal and, unless
        ``distortions`` is given, radial and tangential (jpose's Human3.6M model).
      distortions: optional (..., 5) OpenCV ``(k1, k2, p1, p2, k3)`` (lining up like the
        cameras); then OpenCV's model is inverted instead.
      num_iters: Newton steps (static).

    Returns:
      :class:`Undistorted` ``(uv, residual)`` in ``uv``'s dtype.
    """
    num_iters = _check_iters(num_iters)
    uv = camera_lib._float_with_trailing(uv, "uv", (2,))
    cams, distortions = _aligned_cameras(cams, distortions, tuple(uv.shape[:-1]), "uv",
                                         uv.dtype)
    x, y, residual = _undistort_aligned(uv, cams, distortions, num_iters)
    out = jnp.stack([x, y], axis=-1) * cams.focal + cams.principal
    return Undistorted(uv=out, residual=residual)


class Triangulation(NamedTuple):
    """Result of :func:`triangulate`; ``P`` stands for the point axes (e.g. ``(T, J)``).

    Fields:
      points: (*P, 3) world points, metres (the cameras' world frame); NaN where fewer
        than ``min_views`` views count.
      reprojection_error: (V, *P) pixels, ``|project(point) - keypoint|`` through each
        view's camera with its distortion, for every view with a finite keypoint (views
        ignored for low confidence included, so outliers can be found); NaN where the
        keypoint or the point is not finite.
      num_views: (*P,) int32, the views that counted for each point.
    """

    points: Array
    reprojection_error: Array
    num_views: Array


@functools.partial(jax.jit, static_argnames=("min_views", "num_iters"))
def triangulate(keypoints_2d, cams: camera_lib.CameraParams, confidence=None, *,
                distortions=None, min_views: int = 2, num_iters: int = 10,
                undistort_tol: float = 1e-2) -> Triangulation:
    """Confidence-weighted DLT triangulation of V views (module docstring for the method).

    Args:
      keypoints_2d: (V, *P, 2) distorted pixels, view axis first (e.g. (V, T, J, 2));
        NaN marks a missing detection.
      cams: cameras with leading axis (V,) (fields may omit it to share a value);
        ``rotation`` and ``centre`` (metres) give the world frame of the result.
      confidence: (V, *P) per-view confidences >= 0, or None (all 1). 0 or NaN ignores
        the view for that point.
      distortions: optional (V, 5) OpenCV distortions (``Calibration.distortions``) to use
        exactly instead of ``cams.radial`` / ``cams.tangential``.
      min_views: fewest views (>= 2, static) a point needs; fewer gives NaN.
      num_iters: Newton steps of the undistortion (static).
      undistort_tol: pixels; a keypoint whose undistortion residual is larger (or NaN) is
        ignored.

    Returns:
      :class:`Triangulation` in ``keypoints_2d``'s floating dtype (cameras are cast to it:
      pass float64 keypoints with x64 enabled for full precision).
    """
    num_iters = _check_iters(num_iters)
    if isinstance(min_views, bool) or not isinstance(min_views, int) or min_views < 2:
        raise ValueError(f"min_views must be a Python int >= 2, got {min_views!r}")
    uv = camera_lib._float_with_trailing(keypoints_2d, "keypoints_2d", (2,))
    if uv.ndim < 2:
        raise ValueError(f"keypoints_2d must have shape (V, ..., 2), got {tuple(uv.shape)}")
    dtype = uv.dtype
    num_v = uv.shape[0]
    point_shape = tuple(uv.shape[1:-1])
    if confidence is None:
        confidence = jnp.ones(uv.shape[:-1], dtype)
    confidence = camera_lib._as_float(confidence, "confidence").astype(dtype)
    if tuple(confidence.shape) != tuple(uv.shape[:-1]):
        raise ValueError(f"confidence must have shape {tuple(uv.shape[:-1])} (keypoints_2d "
                         f"without its last axis), got {tuple(confidence.shape)}")
    batch = camera_lib.camera_batch_shape(cams)
    if len(batch) > 1 or (batch and batch[0] not in (1, num_v)):
        raise ValueError(f"cams must have leading axis ({num_v},) (one camera per view of "
                         f"keypoints_2d), got {batch}")
    if distortions is not None:
        d = camera_lib._float_with_trailing(distortions, "distortions", (5,))
        if d.shape[:-1] not in ((), (1,), (num_v,)):
            raise ValueError(f"distortions must have shape ({num_v}, 5), got {tuple(d.shape)}")
        distortions = jnp.broadcast_to(d.reshape((-1, 5)), (num_v, 5))

    # Flatten the point axes: views (V, N).
    flat = uv.reshape((num_v, -1, 2))
    conf = confidence.reshape((num_v, -1))
    cams_v, dist_v = _aligned_cameras(cams, distortions, (num_v, flat.shape[1]),
                                      "keypoints_2d", dtype)
    finite = jnp.all(jnp.isfinite(flat), axis=-1)
    safe_uv = jnp.where(finite[..., None], flat, cams_v.principal)
    x, y, residual = _undistort_aligned(safe_uv, cams_v, dist_v, num_iters)
    use = finite & jnp.isfinite(conf) & (conf > 0) & (residual <= undistort_tol)
    weight = jnp.where(use, conf, jnp.zeros_like(conf))
    x = jnp.where(use, x, jnp.zeros_like(x))
    y = jnp.where(use, y, jnp.zeros_like(y))

    # Projection matrices in a normalised world frame X = mean_centre + scale * X'.
    cams_flat, _ = camera_lib._checked_camera(cams)
    rotation = jnp.broadcast_to(cams_flat.rotation.astype(dtype).reshape((-1, 3, 3)),
                                (num_v, 3, 3))
    centre = jnp.broadcast_to(cams_flat.centre.astype(dtype).reshape((-1, 3)), (num_v, 3))
    focal = jnp.broadcast_to(cams_flat.focal.astype(dtype).reshape((-1, 2)), (num_v, 2))
    mean_centre = jnp.mean(centre, axis=0)
    spread = jnp.mean(jnp.linalg.norm(centre - mean_centre[None], axis=-1))
    scale = jnp.where(spread > 0, spread, jnp.ones_like(spread))
    offset = jnp.sum(rotation * ((mean_centre[None] - centre) / scale)[:, None, :], axis=-1)
    proj = jnp.concatenate([rotation, offset[:, :, None]], axis=-1)  # (V, 3, 4)

    row_scale = (weight * jnp.mean(focal, axis=-1)[:, None])[..., None]  # (V, N, 1)
    rows_x = (x[..., None] * proj[:, None, 2] - proj[:, None, 0]) * row_scale
    rows_y = (y[..., None] * proj[:, None, 2] - proj[:, None, 1]) * row_scale
    a = jnp.concatenate([rows_x, rows_y], axis=0)  # (2V, N, 4)
    a = jnp.moveaxis(a, 1, 0)  # (N, 2V, 4)
    _, _, vh = jnp.linalg.svd(a, full_matrices=False)
    h = vh[:, -1, :]  # (N, 4): right singular vector of the smallest singular value
    points = mean_centre[None] + scale * h[:, :3] / h[:, 3:]
    num_views = jnp.sum(use, axis=0).astype(jnp.int32)
    points = jnp.where((num_views >= min_views)[:, None], points,
                       jnp.full_like(points, jnp.nan))

    point_ok = jnp.all(jnp.isfinite(points), axis=-1)
    safe_points = jnp.where(point_ok[:, None], points, mean_centre[None])
    world = jnp.broadcast_to(safe_points[None], (num_v,) + safe_points.shape)
    if distortions is None:
        reproj = camera_lib.project_camera(world, cams_v)
    else:
        reproj = calibration_lib.project_opencv(world, cams_v, dist_v)
    error = jnp.linalg.norm(reproj - flat, axis=-1)
    error = jnp.where(finite & point_ok[None], error, jnp.full_like(error, jnp.nan))
    return Triangulation(
        points=points.reshape(point_shape + (3,)),
        reprojection_error=error.reshape((num_v,) + point_shape),
        num_views=num_views.reshape(point_shape),
    )
