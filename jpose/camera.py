"""Cameras: rotations, extrinsics, the Human3.6M projection model and virtual cameras.

Everything here is a pure ``jax.numpy`` function: differentiable, usable under ``jit`` and
``vmap``, and polymorphic over leading ("batch") axes.

Conventions
-----------
* **Units.** 3D points and camera centres in **metres**; focal lengths, principal points,
  image sizes and 2D keypoints in **pixels**; rotation angles in **radians**.
* **Camera frame.** x right, y down, z forward (OpenCV / Human3.6M). A point is in front of
  the camera when its camera-frame ``z > 0``.
* **World frame.** Z-up with the ground at ``z = 0`` (the Human3.6M world), unless a
  function takes an ``up_axis``.
* **Extrinsics.** Human3.6M convention ``x_cam = R (x_world - c)``: ``R`` (..., 3, 3) is the
  *world-to-camera* rotation (its rows are the camera axes written in world coordinates)
  and ``c`` (..., 3) is the camera centre in world coordinates.
  VideoPose3D stores instead a camera-to-world quaternion ``orientation`` and calls the
  centre ``translation`` (in millimetres in its table, metres after loading); convert with
  ``rotation = quat_to_matrix(quat_conjugate(orientation))``, ``centre = translation``.
* **Quaternions.** Scalar first, ``(w, x, y, z)``, Hamilton product. (scipy's
  ``Rotation.as_quat`` is scalar *last*.)
* **Rotation vectors** ("axis-angle") ``r = angle * unit_axis``, shape (..., 3).

Broadcasting rule for cameras
-----------------------------
Functions that take points ``(..., 3)`` (or pixels ``(..., 2)``) together with camera arrays
(``rotation (..., 3, 3)``, ``centre (..., 3)``, ``focal (..., 2)``, ``image_size (..., 2)``
...) line up the camera's leading axes with the **first** leading axes of the points --
not the last, as NumPy broadcasting would. Whatever axes the points have beyond the
camera's (time, joints, ...) share that camera. Axes of size 1 broadcast either way. So
with points ``(V, T, J, 3)``:

* a single camera (``rotation (3, 3)``) is used for every view, frame and joint;
* cameras with leading axis ``(V,)`` give one camera per view, shared over ``T`` and ``J``;
* cameras ``(V, T)`` give one camera per view and frame.

A camera array with more leading axes than the points, or with an axis that differs from
the points' and is not 1, raises ``ValueError`` at trace time naming both arguments. This
is the layout ``jax.vmap`` over a :class:`CameraParams` produces, so a vmapped call and the
batched call agree.

Points behind the camera
------------------------
Perspective projection divides by the depth ``z``. :func:`project_perspective` and
:func:`project_camera` apply the formula as published and never clamp: points with
``z <= 0`` give mirrored or infinite pixels. The ``*_masked`` variants return
``(uv, valid)`` with ``valid = z > min_depth``; invalid points are mapped to the principal
point with zero gradient with respect to the point, so ``valid``-weighted losses stay
finite.
"""

from __future__ import annotations

import math
import types
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

__all__ = [
    # Rotations.
    "quat_normalize",
    "quat_multiply",
    "quat_conjugate",
    "quat_rotate",
    "quat_to_matrix",
    "matrix_to_quat",
    "axis_angle_to_matrix",
    "matrix_to_axis_angle",
    "axis_angle_to_quat",
    "quat_to_axis_angle",
    "look_at",
    # Extrinsics.
    "world_to_camera",
    "camera_to_world",
    # Intrinsics and projection.
    "CameraParams",
    "CAMERA_FIELD_SHAPES",
    "camera_batch_shape",
    "intrinsics9",
    "from_intrinsics9",
    "project_perspective",
    "project_perspective_masked",
    "project_camera",
    "project_camera_masked",
    "project_orthographic",
    "project_scaled_orthographic",
    "weak_perspective_scale",
    "weak_perspective",
    "pixels_to_screen",
    "pixels_to_focal_units",
    "focal_units_intrinsics9",
    "screen_to_pixels",
    "backproject",
    # Virtual cameras.
    "virtual_cameras",
    "augment_views",
    "optical_axes_target",
]

Array = jax.Array


# --------------------------------------------------------------------------------------
# Private helpers: dtype, shape validation and the camera broadcasting rule.
# --------------------------------------------------------------------------------------


def _as_float(x, name: str) -> Array:
    """``x`` as a floating jnp array; integer/bool input is cast to the default float."""
    x = jnp.asarray(x)
    if jnp.issubdtype(x.dtype, jnp.complexfloating):
        raise ValueError(f"{name} must be real, got dtype {x.dtype}")
    if not jnp.issubdtype(x.dtype, jnp.floating):
        x = x.astype(jax.dtypes.canonicalize_dtype(jnp.float64))
    return x


def _check_trailing(x: Array, name: str, trailing: tuple[int, ...]) -> None:
    k = len(trailing)
    if x.ndim < k or tuple(x.shape[x.ndim - k :]) != trailing:
        dims = ", ".join(str(d) for d in trailing)
        raise ValueError(f"{name} must have shape (..., {dims}), got shape {tuple(x.shape)}")


def _float_with_trailing(x, name: str, trailing: tuple[int, ...]) -> Array:
    x = _as_float(x, name)
    _check_trailing(x, name, trailing)
    return x


def _align_prefix(
    x: Array, name: str, core_ndim: int, target_batch: tuple[int, ...], target_name: str
) -> Array:
    """Reshape a camera array so its leading axes line up with the *first* target axes.

    ``x`` has shape ``batch + core`` with ``len(core) == core_ndim``. The result has shape
    ``batch + (1,) * (len(target_batch) - len(batch)) + core``, i.e. the same rank as
    ``target_batch + core``, so that ordinary broadcasting (with rank promotion disabled)
    shares the camera over the target's trailing axes.
    """
    batch = tuple(x.shape[: x.ndim - core_ndim])
    core = tuple(x.shape[x.ndim - core_ndim :])
    target_batch = tuple(target_batch)
    if len(batch) > len(target_batch):
        raise ValueError(
            f"{name} has leading axes {batch} but {target_name} has only leading axes "
            f"{target_batch}; camera leading axes must line up with the first leading "
            f"axes of {target_name} (add axes to {target_name} or drop them from {name})"
        )
    for i, (a, b) in enumerate(zip(batch, target_batch)):
        if a != b and a != 1 and b != 1:
            raise ValueError(
                f"{name} leading axes {batch} do not match the first leading axes of "
                f"{target_name} {target_batch[: len(batch)]} (axis {i}: {a} vs {b}); "
                f"camera leading axes line up with the first axes of {target_name}"
            )
    return x.reshape(batch + (1,) * (len(target_batch) - len(batch)) + core)


def _prefix_broadcast_shapes(named: dict[str, tuple[int, ...]]) -> tuple[int, ...]:
    """Broadcast batch shapes aligned at their first axis (the camera rule)."""
    out: list[int] = []
    owner: list[str] = []
    for name, shape in named.items():
        for i, d in enumerate(shape):
            if i >= len(out):
                out.append(d)
                owner.append(name)
            elif out[i] == 1:
                out[i] = d
                owner.append(name)
            elif d != 1 and d != out[i]:
                raise ValueError(
                    f"{name} leading axes {shape} are incompatible with those of "
                    f"{owner[i]} (axis {i}: {d} vs {out[i]}); camera arrays line up at "
                    "their first axis"
                )
    return tuple(out)


def _taylor_threshold_sq(dtype) -> float:
    """Squared-angle threshold below which truncated Taylor series are used.

    The series below keep terms up to ``t**4``; the first dropped term is at most
    ``t**6`` (times a coefficient <= 1), so below ``t**2 < eps**(1/3)`` the series is exact
    to working precision, while the closed forms above it are far from their 0/0 point.
    """
    return float(np.finfo(np.dtype(dtype)).eps) ** (1.0 / 3.0)


def _normalize(v: Array) -> Array:
    # No epsilon on purpose: a zero vector has no direction, and a NaN says so loudly.
    return v / jnp.linalg.norm(v, axis=-1, keepdims=True)


def _skew(v: Array) -> Array:
    """(..., 3) -> (..., 3, 3) with ``skew(a) @ b == cross(a, b)``."""
    x, y, z = v[..., 0], v[..., 1], v[..., 2]
    zero = jnp.zeros_like(x)
    return jnp.stack(
        [
            jnp.stack([zero, -z, y], axis=-1),
            jnp.stack([z, zero, -x], axis=-1),
            jnp.stack([-y, x, zero], axis=-1),
        ],
        axis=-2,
    )


def _eye_like(batch: tuple[int, ...], dtype) -> Array:
    return jnp.broadcast_to(jnp.eye(3, dtype=dtype), tuple(batch) + (3, 3))


def _matvec(matrix: Array, vec: Array) -> Array:
    """``matrix @ vec`` over same-rank leading axes, as an exact elementwise sum.

    Written without ``dot`` so that float32 on GPU/TPU is not silently computed in
    TF32/bfloat16 passes (default matmul precision): pixel errors of that size matter.
    """
    return jnp.sum(matrix * vec[..., None, :], axis=-1)


def _matvec_transposed(matrix: Array, vec: Array) -> Array:
    """``matrix.T @ vec`` over same-rank leading axes (see :func:`_matvec`)."""
    return jnp.sum(matrix * vec[..., :, None], axis=-2)


# --------------------------------------------------------------------------------------
# Rotations.
# --------------------------------------------------------------------------------------


def quat_normalize(q) -> Array:
    """Unit quaternion ``q / |q|``; q (..., 4) scalar-first. A zero quaternion gives NaN."""
    q = _float_with_trailing(q, "q", (4,))
    return _normalize(q)


def quat_multiply(a, b) -> Array:
    """Hamilton product ``a * b`` (apply ``b`` first, then ``a``); (..., 4) scalar-first.

    Leading axes broadcast by NumPy rules (equal ranks under strict rank promotion).
    """
    a = _float_with_trailing(a, "a", (4,))
    b = _float_with_trailing(b, "b", (4,))
    aw, ax, ay, az = a[..., 0], a[..., 1], a[..., 2], a[..., 3]
    bw, bx, by, bz = b[..., 0], b[..., 1], b[..., 2], b[..., 3]
    return jnp.stack(
        [
            aw * bw - ax * bx - ay * by - az * bz,
            aw * bx + ax * bw + ay * bz - az * by,
            aw * by - ax * bz + ay * bw + az * bx,
            aw * bz + ax * by - ay * bx + az * bw,
        ],
        axis=-1,
    )


def quat_conjugate(q) -> Array:
    """``(w, -x, -y, -z)``: the inverse rotation for a unit quaternion; q (..., 4)."""
    q = _float_with_trailing(q, "q", (4,))
    return jnp.concatenate([q[..., :1], -q[..., 1:]], axis=-1)


def quat_rotate(q, v) -> Array:
    """Rotate vectors: ``quat_to_matrix(q) @ v``; q (..., 4), v (..., 3) -> (..., 3).

    ``q`` is normalised first (as in :func:`quat_to_matrix`). Leading axes broadcast by
    NumPy rules with equal ranks: to rotate joints (..., J, 3) by one quaternion per pose
    (..., 4), pass ``q[..., None, :]``.
    """
    q = quat_normalize(q)
    v = _float_with_trailing(v, "v", (3,))
    w, u = q[..., :1], q[..., 1:]
    # v' = v + w t + u x t with t = 2 u x v: the expanded form of q v q*, 2 cross products.
    t = 2 * jnp.cross(u, v)
    return v + w * t + jnp.cross(u, t)


def quat_to_matrix(q) -> Array:
    """Rotation matrix (..., 3, 3) of the quaternion q (..., 4), normalised first."""
    q = quat_normalize(q)
    w, x, y, z = q[..., 0], q[..., 1], q[..., 2], q[..., 3]
    return jnp.stack(
        [
            jnp.stack([1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)], -1),
            jnp.stack([2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)], -1),
            jnp.stack([2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)], -1),
        ],
        axis=-2,
    )


def matrix_to_quat(rotation) -> Array:
    """Unit quaternion (..., 4), scalar first with ``w >= 0``, of rotation (..., 3, 3).

    Shepperd's method: of the four quaternion components, the one with the largest
    magnitude is computed from the diagonal (a square root of a number >= 1) and the
    other three from off-diagonal sums/differences divided by it, so no branch divides by
    a small number. All four candidates are computed and one is selected with ``where``;
    square-root arguments are floored at 1/4 (the selected one is >= 1, so unaffected) so
    that the discarded candidates' values and gradients stay finite. The result is renormalised, which also
    absorbs small non-orthogonality of the input.
    """
    m = _float_with_trailing(rotation, "rotation", (3, 3))
    m00, m01, m02 = m[..., 0, 0], m[..., 0, 1], m[..., 0, 2]
    m10, m11, m12 = m[..., 1, 0], m[..., 1, 1], m[..., 1, 2]
    m20, m21, m22 = m[..., 2, 0], m[..., 2, 1], m[..., 2, 2]
    # 4 w^2, 4 x^2, 4 y^2, 4 z^2; they sum to 4, so the largest is >= 1.
    d = jnp.stack(
        [
            1 + m00 + m11 + m22,
            1 + m00 - m11 - m22,
            1 - m00 + m11 - m22,
            1 - m00 - m11 + m22,
        ],
        axis=-1,
    )
    s = 2 * jnp.sqrt(jnp.maximum(d, 0.25))  # = 4 |pivot component| for the selected one
    s0, s1, s2, s3 = s[..., 0], s[..., 1], s[..., 2], s[..., 3]
    candidates = jnp.stack(
        [
            jnp.stack([s0 / 4, (m21 - m12) / s0, (m02 - m20) / s0, (m10 - m01) / s0], -1),
            jnp.stack([(m21 - m12) / s1, s1 / 4, (m10 + m01) / s1, (m02 + m20) / s1], -1),
            jnp.stack([(m02 - m20) / s2, (m10 + m01) / s2, s2 / 4, (m21 + m12) / s2], -1),
            jnp.stack([(m10 - m01) / s3, (m02 + m20) / s3, (m21 + m12) / s3, s3 / 4], -1),
        ],
        axis=-2,
    )
    pick = jnp.argmax(d, axis=-1)
    onehot = pick[..., None] == jnp.arange(4).reshape((1,) * pick.ndim + (4,))
    q = jnp.sum(jnp.where(onehot[..., None], candidates, jnp.zeros_like(candidates)), axis=-2)
    q = _normalize(q)
    return jnp.where(q[..., :1] < 0, -q, q)


def axis_angle_to_matrix(rotvec) -> Array:
    """Rodrigues' formula: rotation matrix (..., 3, 3) of the rotation vector (..., 3).

    ``R = I + A(t) K + B(t) K^2`` with ``K = skew(r)``, ``t = |r|``, ``A = sin(t)/t`` and
    ``B = (1 - cos t)/t^2`` (evaluated as ``2 sin^2(t/2)/t^2`` to avoid cancellation).
    Below a small dtype-dependent angle, ``A`` and ``B`` use their Taylor series in
    ``t^2``; the "double where" (the closed forms see ``t^2 = 1`` there) keeps values and
    gradients finite and exact at ``r = 0``, where ``dR/dr_i = skew(e_i)``.
    """
    r = _float_with_trailing(rotvec, "rotvec", (3,))
    t2 = jnp.sum(r * r, axis=-1)
    small = t2 < _taylor_threshold_sq(r.dtype)
    t2_safe = jnp.where(small, jnp.ones_like(t2), t2)
    t = jnp.sqrt(t2_safe)
    half_sinc = jnp.sin(0.5 * t) / (0.5 * t)
    a = jnp.where(small, 1 - t2 / 6 + t2 * t2 / 120, jnp.sin(t) / t)
    b = jnp.where(small, 0.5 - t2 / 24 + t2 * t2 / 720, 0.5 * half_sinc * half_sinc)
    k = _skew(r)
    batch = tuple(r.shape[:-1])
    eye = _eye_like(batch, r.dtype)
    # K^2 = r r^T - |r|^2 I for a skew matrix: cheaper and exact compared with K @ K.
    k2 = r[..., :, None] * r[..., None, :] - t2[..., None, None] * eye
    return eye + a[..., None, None] * k + b[..., None, None] * k2


def axis_angle_to_quat(rotvec) -> Array:
    """Unit quaternion (..., 4), scalar first, of the rotation vector (..., 3).

    ``(cos(t/2), sin(t/2)/t * r)``; Taylor series below a small angle (see
    :func:`axis_angle_to_matrix`) so gradients at ``r = 0`` are finite and exact. ``w >= 0``
    for angles up to pi.
    """
    r = _float_with_trailing(rotvec, "rotvec", (3,))
    t2 = jnp.sum(r * r, axis=-1)
    small = t2 < _taylor_threshold_sq(r.dtype)
    t = jnp.sqrt(jnp.where(small, jnp.ones_like(t2), t2))
    w = jnp.where(small, 1 - t2 / 8 + t2 * t2 / 384, jnp.cos(0.5 * t))
    s = jnp.where(small, 0.5 - t2 / 48 + t2 * t2 / 3840, jnp.sin(0.5 * t) / t)
    return jnp.concatenate([w[..., None], s[..., None] * r], axis=-1)


def quat_to_axis_angle(q) -> Array:
    """Rotation vector (..., 3) with angle in [0, pi] of the quaternion q (..., 4).

    ``q`` is normalised and its sign chosen so that ``w >= 0``; then
    ``angle = 2 atan2(|v|, w)`` (well conditioned at 0 and at pi, unlike ``acos``) and
    ``r = angle / |v| * v``. Below a small ``|v|`` the factor uses its Taylor series
    ``(2/w)(1 - s^2/(3w^2) + s^4/(5w^4))`` with the double-``where`` trick. At exactly pi
    the axis sign is arbitrary (both are correct).
    """
    q = quat_normalize(q)
    q = jnp.where(q[..., :1] < 0, -q, q)
    w, v = q[..., 0], q[..., 1:]
    s2 = jnp.sum(v * v, axis=-1)
    small = s2 < _taylor_threshold_sq(q.dtype)
    s = jnp.sqrt(jnp.where(small, jnp.ones_like(s2), s2))
    # In the small branch w >= sqrt(1 - threshold) ~ 1; elsewhere w may be 0 (angle pi),
    # so the series sees a safe w to keep the discarded branch's gradient finite.
    w_safe = jnp.where(small, w, jnp.ones_like(w))
    x2 = s2 / (w_safe * w_safe)
    series = (2 / w_safe) * (1 - x2 / 3 + x2 * x2 / 5)
    factor = jnp.where(small, series, 2 * jnp.arctan2(s, w) / s)
    return factor[..., None] * v


def matrix_to_axis_angle(rotation) -> Array:
    """Log map: rotation vector (..., 3), angle in [0, pi], of rotation (..., 3, 3).

    Goes through :func:`matrix_to_quat` (Shepperd pivoting, robust near pi where the
    trace formula ``acos((tr R - 1)/2)`` loses all precision) and
    :func:`quat_to_axis_angle` (``atan2``, Taylor series near 0).
    """
    return quat_to_axis_angle(matrix_to_quat(rotation))


def look_at(eye, target, up=(0.0, 0.0, 1.0)) -> Array:
    """World-to-camera rotation (..., 3, 3) of a camera at ``eye`` looking at ``target``.

    Camera axes: z forward (``target - eye``), x right (``forward x up``), y down
    (``forward x right``), so that world ``up`` maps to image up (negative y). Rows of the
    result are these axes in world coordinates, i.e. ``x_cam = R (x_world - eye)``.

    Args:
      eye: camera centre (..., 3), metres, world frame.
      target: point to look at (..., 3); it lands on the optical axis (projects to the
        principal point).
      up: world up direction (..., 3); default Z-up (Human3.6M world).

    Leading axes broadcast by NumPy rules. The result is NaN where ``eye == target`` or the
    viewing direction is parallel to ``up`` (no unique camera roll): no silent fallback.
    """
    eye = _float_with_trailing(eye, "eye", (3,))
    target = _float_with_trailing(target, "target", (3,))
    up = _float_with_trailing(up, "up", (3,))
    if up.dtype != eye.dtype:  # The default `up` is built at the default float dtype.
        up = up.astype(eye.dtype)
    try:
        batch = jnp.broadcast_shapes(eye.shape[:-1], target.shape[:-1], up.shape[:-1])
    except ValueError as err:
        raise ValueError(
            f"eye {tuple(eye.shape)}, target {tuple(target.shape)} and up "
            f"{tuple(up.shape)} have incompatible leading axes"
        ) from err
    # Explicit broadcast: implicit rank promotion is disabled library-wide.
    eye, target, up = (jnp.broadcast_to(a, batch + (3,)) for a in (eye, target, up))
    forward = _normalize(target - eye)
    right = _normalize(jnp.cross(forward, up))
    down = jnp.cross(forward, right)
    return jnp.stack([right, down, forward], axis=-2)


# --------------------------------------------------------------------------------------
# Extrinsics.
# --------------------------------------------------------------------------------------


def world_to_camera(points, rotation, centre) -> Array:
    """``x_cam = R (x_world - c)`` (Human3.6M convention).

    Args:
      points: (..., 3) world points, metres (typically (..., J, 3)).
      rotation: (..., 3, 3) world-to-camera rotation.
      centre: (..., 3) camera centre in world coordinates, metres.

    Camera leading axes line up with the *first* leading axes of ``points`` (module
    docstring, "Broadcasting rule"). Returns camera-frame points (..., 3), metres.
    """
    points = _float_with_trailing(points, "points", (3,))
    batch = tuple(points.shape[:-1])
    rotation = _align_prefix(
        _float_with_trailing(rotation, "rotation", (3, 3)), "rotation", 2, batch, "points"
    )
    centre = _align_prefix(
        _float_with_trailing(centre, "centre", (3,)), "centre", 1, batch, "points"
    )
    return _matvec(rotation, points - centre)


def camera_to_world(points, rotation, centre) -> Array:
    """Inverse of :func:`world_to_camera`: ``x_world = R^T x_cam + c``.

    Same shapes and broadcasting rule as :func:`world_to_camera`; ``points`` are
    camera-frame points (..., 3) in metres.
    """
    points = _float_with_trailing(points, "points", (3,))
    batch = tuple(points.shape[:-1])
    rotation = _align_prefix(
        _float_with_trailing(rotation, "rotation", (3, 3)), "rotation", 2, batch, "points"
    )
    centre = _align_prefix(
        _float_with_trailing(centre, "centre", (3,)), "centre", 1, batch, "points"
    )
    return _matvec_transposed(rotation, points) + centre


# --------------------------------------------------------------------------------------
# Intrinsics and projection.
# --------------------------------------------------------------------------------------


class CameraParams(NamedTuple):
    """A calibrated camera (or a batch of them); a pytree, so it jits and vmaps.

    All fields are arrays with the same leading axes (or fewer: they line up at the first
    axis, see the module docstring); e.g. ``rotation (V, 3, 3)`` for ``V`` views.

    Fields:
      rotation: (..., 3, 3) world-to-camera rotation, ``x_cam = R (x_world - centre)``.
      centre: (..., 3) camera centre in world coordinates, metres.
      focal: (..., 2) focal lengths ``(fx, fy)``, pixels.
      principal: (..., 2) principal point ``(cx, cy)``, pixels.
      radial: (..., 3) radial distortion ``(k1, k2, k3)``, Human3.6M model.
      tangential: (..., 2) tangential distortion ``(p1, p2)`` in **Human3.6M order** (as in
        the official ``ProjectPointRadial.m`` and the H36M metadata). VideoPose3D's
        ``tangential_distortion`` lists the same two numbers reversed; use
        :func:`from_intrinsics9` / :func:`intrinsics9` to convert.
      image_size: (..., 2) ``(width, height)``, pixels, as a float array (so it mixes with
        float pixel arrays under strict dtype promotion).
    """

    rotation: Array
    centre: Array
    focal: Array
    principal: Array
    radial: Array
    tangential: Array
    image_size: Array


#: Trailing shape of each :class:`CameraParams` field (leading axes are batch axes).
CAMERA_FIELD_SHAPES = types.MappingProxyType({
    "rotation": (3, 3),
    "centre": (3,),
    "focal": (2,),
    "principal": (2,),
    "radial": (3,),
    "tangential": (2,),
    "image_size": (2,),
})


def _checked_camera(cam: CameraParams) -> tuple[CameraParams, tuple[int, ...]]:
    if not isinstance(cam, CameraParams):
        raise ValueError(f"cam must be a CameraParams, got {type(cam).__name__}")
    fields = {}
    shapes = {}
    for name, trailing in CAMERA_FIELD_SHAPES.items():
        x = _float_with_trailing(getattr(cam, name), f"cam.{name}", trailing)
        fields[name] = x
        shapes[f"cam.{name}"] = tuple(x.shape[: x.ndim - len(trailing)])
    return CameraParams(**fields), _prefix_broadcast_shapes(shapes)


def camera_batch_shape(cam: CameraParams) -> tuple[int, ...]:
    """Validate every field's trailing shape; return the cameras' common leading axes."""
    return _checked_camera(cam)[1]


def _broadcast_camera_field(x: Array, name: str, core_ndim: int, batch) -> Array:
    x = _align_prefix(x, name, core_ndim, batch, "the camera batch")
    return jnp.broadcast_to(x, tuple(batch) + tuple(x.shape[x.ndim - core_ndim :]))


def intrinsics9(cam: CameraParams, *, screen: bool = False) -> Array:
    """VideoPose3D's intrinsics 9-vector (..., 9): ``[fx, fy, cx, cy, k1, k2, k3, t0, t1]``.

    ``(t0, t1) = (p2, p1)``: VideoPose3D's ``project_to_2d`` evaluates
    ``tan = t0 x + t1 y`` and adds ``t r^2``, which is the Human3.6M formula with the
    tangential vector reversed; its ``tangential_distortion`` table stores the H36M
    ``(p1, p2)`` reversed accordingly. Feeding this vector to VideoPose3D's
    ``project_to_2d`` reproduces :func:`project_camera` exactly.

    Args:
      cam: cameras; fields in pixels.
      screen: False: focal and principal point in pixels (output of ``project_to_2d`` in
        pixels). True: in VideoPose3D's normalised screen units, as its
        ``h36m_dataset.py`` stores them (``f * 2 / width`` and
        :func:`pixels_to_screen` of the principal point); ``project_to_2d`` then returns
        :func:`pixels_to_screen` of the pixels.
    """
    cam, batch = _checked_camera(cam)
    focal = _broadcast_camera_field(cam.focal, "cam.focal", 1, batch)
    principal = _broadcast_camera_field(cam.principal, "cam.principal", 1, batch)
    radial = _broadcast_camera_field(cam.radial, "cam.radial", 1, batch)
    tangential = _broadcast_camera_field(cam.tangential, "cam.tangential", 1, batch)
    if screen:
        size = _broadcast_camera_field(cam.image_size, "cam.image_size", 1, batch)
        focal = focal * 2 / size[..., :1]
        principal = pixels_to_screen(principal, size)
    return jnp.concatenate([focal, principal, radial, tangential[..., ::-1]], axis=-1)


def from_intrinsics9(
    intrinsics, *, image_size, rotation=None, centre=None, screen: bool = False
) -> CameraParams:
    """Inverse of :func:`intrinsics9`: a :class:`CameraParams` from VideoPose3D's 9-vector.

    Args:
      intrinsics: (..., 9) ``[fx, fy, cx, cy, k1, k2, k3, t0, t1]`` in VideoPose3D's layout;
        the tangential pair is reversed into Human3.6M ``(p1, p2) = (t1, t0)``.
      image_size: (..., 2) ``(width, height)`` in pixels (ints accepted).
      rotation: (..., 3, 3) world-to-camera rotation; default identity.
      centre: (..., 3) camera centre, metres; default the origin.
      screen: whether ``f`` and ``c`` are in normalised screen units (VideoPose3D's
        ``cam['intrinsic']``) rather than pixels; they are converted to pixels.
    """
    v = _float_with_trailing(intrinsics, "intrinsics", (9,))
    batch = tuple(v.shape[:-1])
    size = _float_with_trailing(image_size, "image_size", (2,)).astype(v.dtype)
    size = _broadcast_camera_field(size, "image_size", 1, batch)
    focal, principal = v[..., 0:2], v[..., 2:4]
    if screen:
        focal = focal * size[..., :1] / 2
        principal = screen_to_pixels(principal, size)
    if rotation is None:
        rotation = _eye_like(batch, v.dtype)
    if centre is None:
        centre = jnp.zeros(batch + (3,), v.dtype)
    rotation = _float_with_trailing(rotation, "rotation", (3, 3))
    centre = _float_with_trailing(centre, "centre", (3,))
    return CameraParams(
        rotation=rotation,
        centre=centre,
        focal=focal,
        principal=principal,
        radial=v[..., 4:7],
        tangential=v[..., 8:6:-1],
        image_size=size,
    )


def _intrinsics_aligned(points, focal, principal, radial, tangential, batch, target_name):
    focal = _align_prefix(
        _float_with_trailing(focal, "focal", (2,)), "focal", 1, batch, target_name
    )
    principal = _align_prefix(
        _float_with_trailing(principal, "principal", (2,)), "principal", 1, batch, target_name
    )
    if radial is not None:
        radial = _align_prefix(
            _float_with_trailing(radial, "radial", (3,)), "radial", 1, batch, target_name
        )
    if tangential is not None:
        tangential = _align_prefix(
            _float_with_trailing(tangential, "tangential", (2,)),
            "tangential",
            1,
            batch,
            target_name,
        )
    return focal, principal, radial, tangential


def _distort_to_pixels(xx: Array, focal, principal, radial, tangential) -> Array:
    """Human3.6M ``ProjectPointRadial`` after the division by depth."""
    x, y = xx[..., 0], xx[..., 1]
    r2 = x * x + y * y
    scale = jnp.ones_like(r2)
    if radial is not None:
        k1, k2, k3 = radial[..., 0], radial[..., 1], radial[..., 2]
        scale = scale + k1 * r2 + k2 * r2 * r2 + k3 * r2 * r2 * r2
    if tangential is not None:
        p1, p2 = tangential[..., 0], tangential[..., 1]
        scale = scale + (p1 * y + p2 * x)
        xxx = xx * scale[..., None] + jnp.stack([p2, p1], axis=-1) * r2[..., None]
    else:
        xxx = xx * scale[..., None]
    return focal * xxx + principal


def project_perspective(points_cam, focal, principal, radial=None, tangential=None) -> Array:
    """Perspective projection with Human3.6M distortion: camera points -> pixels.

    Exactly the official Human3.6M ``ProjectPointRadial.m`` (also Martinez et al.'s
    ``cameras.py``)::

        xx  = (X, Y) / Z
        r2  = |xx|^2
        rad = 1 + k1 r2 + k2 r2^2 + k3 r2^3
        tan = p1 * y + p2 * x                        # (x, y) = xx
        xxx = xx * (rad + tan) + (p2, p1) * r2
        uv  = (fx, fy) * xxx + (cx, cy)

    Coefficient order: ``radial = (k1, k2, k3)``, ``tangential = (p1, p2)`` as in the H36M
    metadata. VideoPose3D's ``project_to_2d`` computes ``tan = t0 x + t1 y`` and adds
    ``t r2``: its tangential vector is ``t = (p2, p1)``, the H36M one reversed (see
    :func:`intrinsics9`). VideoPose3D also clamps ``xx`` to [-1, 1]; this does not.

    Args:
      points_cam: (..., 3) camera-frame points (metres; any unit works, only ratios enter).
      focal: (..., 2) ``(fx, fy)``, pixels.
      principal: (..., 2) ``(cx, cy)``, pixels.
      radial: (..., 3) or None (no radial distortion).
      tangential: (..., 2) or None (no tangential distortion).

    Camera arrays line up with the first leading axes of ``points_cam``. Returns pixels
    (..., 2). No clamping: points with ``Z <= 0`` give meaningless (mirrored or infinite)
    pixels; use :func:`project_perspective_masked` to get a validity mask.
    """
    points = _float_with_trailing(points_cam, "points_cam", (3,))
    batch = tuple(points.shape[:-1])
    f, c, k, p = _intrinsics_aligned(
        points, focal, principal, radial, tangential, batch, "points_cam"
    )
    xx = points[..., :2] / points[..., 2:3]
    return _distort_to_pixels(xx, f, c, k, p)


def project_perspective_masked(
    points_cam, focal, principal, radial=None, tangential=None, *, min_depth: float = 0.0
) -> tuple[Array, Array]:
    """:func:`project_perspective` plus a validity mask; returns ``(uv, valid)``.

    ``valid`` (...,) bool is ``Z > min_depth`` (``min_depth`` in the units of
    ``points_cam``, metres; the default 0 marks exactly the points behind the camera
    plane; a near plane such as 0.1 m also guards against huge pixels). Invalid points
    are projected as if at the principal point (``uv = (cx, cy)``), computed with a safe
    depth so that values and gradients are finite; their gradient with respect to
    ``points_cam`` is zero. Weight losses by ``valid``.
    """
    points = _float_with_trailing(points_cam, "points_cam", (3,))
    batch = tuple(points.shape[:-1])
    f, c, k, p = _intrinsics_aligned(
        points, focal, principal, radial, tangential, batch, "points_cam"
    )
    z = points[..., 2]
    valid = z > min_depth
    z_safe = jnp.where(valid, z, jnp.ones_like(z))
    xx = jnp.where(
        valid[..., None], points[..., :2] / z_safe[..., None], jnp.zeros_like(points[..., :2])
    )
    return _distort_to_pixels(xx, f, c, k, p), valid


def project_camera(points_world, cam: CameraParams) -> Array:
    """World points (..., 3), metres -> pixels (..., 2) through ``cam`` (with distortion).

    :func:`world_to_camera` then :func:`project_perspective`; camera leading axes line up
    with the first leading axes of ``points_world``. No clamping (see
    :func:`project_camera_masked`).
    """
    cam, _ = _checked_camera(cam)
    points_cam = world_to_camera(points_world, cam.rotation, cam.centre)
    return project_perspective(points_cam, cam.focal, cam.principal, cam.radial, cam.tangential)


def project_camera_masked(
    points_world, cam: CameraParams, *, min_depth: float = 0.0
) -> tuple[Array, Array]:
    """:func:`project_camera` returning ``(uv, valid)``; see :func:`project_perspective_masked`."""
    cam, _ = _checked_camera(cam)
    points_cam = world_to_camera(points_world, cam.rotation, cam.centre)
    return project_perspective_masked(
        points_cam, cam.focal, cam.principal, cam.radial, cam.tangential, min_depth=min_depth
    )


def project_orthographic(points) -> Array:
    """Orthographic projection: drop z. (..., 3) -> (..., 2), same units as the input."""
    points = _float_with_trailing(points, "points", (3,))
    return points[..., :2]


def project_scaled_orthographic(points, scale, offset) -> Array:
    """Scaled orthographic projection ``s * (x, y) + offset``.

    Args:
      points: (..., 3) camera-frame points.
      scale: (...,) scale ``s`` (e.g. pixels per metre).
      offset: (..., 2) offset (e.g. pixels).

    ``scale`` and ``offset`` line up with the first leading axes of ``points`` (camera
    rule); e.g. one scale per pose for points (B, J, 3) is ``scale`` (B,).
    """
    points = _float_with_trailing(points, "points", (3,))
    batch = tuple(points.shape[:-1])
    scale = _align_prefix(_as_float(scale, "scale"), "scale", 0, batch, "points")
    offset = _align_prefix(
        _float_with_trailing(offset, "offset", (2,)), "offset", 1, batch, "points"
    )
    return scale[..., None] * points[..., :2] + offset


def _reference_depth(points: Array, weights, name: str) -> Array:
    if points.ndim < 2:
        raise ValueError(f"{name} must have shape (..., J, 3), got shape {tuple(points.shape)}")
    z = points[..., 2]
    if weights is None:
        return jnp.mean(z, axis=-1)
    weights = _as_float(weights, "weights")
    if tuple(weights.shape) != tuple(z.shape):
        raise ValueError(
            f"weights must have shape {tuple(z.shape)} (points without the coordinate "
            f"axis), got {tuple(weights.shape)}"
        )
    return jnp.sum(weights * z, axis=-1) / jnp.sum(weights, axis=-1)


def weak_perspective_scale(points_cam, focal, *, weights=None) -> Array:
    """Weak-perspective scale ``f / z_ref`` (..., 2), pixels per metre.

    Args:
      points_cam: (..., J, 3) camera-frame points, metres.
      focal: (..., 2) ``(fx, fy)`` pixels; lines up with the leading axes of
        ``points_cam`` without the joint axis.
      weights: optional (..., J) joint weights; ``z_ref`` is the (weighted) mean depth
        over the joint axis (unweighted mean when None).
    """
    points = _float_with_trailing(points_cam, "points_cam", (3,))
    z_ref = _reference_depth(points, weights, "points_cam")
    batch = tuple(points.shape[:-2])
    focal = _align_prefix(
        _float_with_trailing(focal, "focal", (2,)), "focal", 1, batch, "points_cam[..., 0, :]"
    )
    return focal / z_ref[..., None]


def weak_perspective(points_cam, focal, principal, *, weights=None) -> Array:
    """Weak-perspective projection: every joint divided by the pose's reference depth.

    ``uv = f * (X, Y) / z_ref + c`` with ``z_ref`` the (weighted) mean depth over the joint
    axis (see :func:`weak_perspective_scale`); equals :func:`project_perspective` (without
    distortion) when all joints share one depth.

    Args:
      points_cam: (..., J, 3) camera-frame points, metres.
      focal, principal: (..., 2) pixels; line up with the leading axes of ``points_cam``
        without the joint axis.
      weights: optional (..., J) joint weights for ``z_ref``.

    Returns pixels (..., J, 2).
    """
    points = _float_with_trailing(points_cam, "points_cam", (3,))
    scale = weak_perspective_scale(points, focal, weights=weights)
    batch = tuple(points.shape[:-2])
    principal = _align_prefix(
        _float_with_trailing(principal, "principal", (2,)),
        "principal",
        1,
        batch,
        "points_cam[..., 0, :]",
    )
    return scale[..., None, :] * points[..., :2] + principal[..., None, :]


def _screen_terms(pixels_like: Array, image_size, name: str):
    size = _float_with_trailing(image_size, "image_size", (2,))
    if size.dtype != pixels_like.dtype:
        size = size.astype(pixels_like.dtype)
    size = _align_prefix(size, "image_size", 1, tuple(pixels_like.shape[:-1]), name)
    width, height = size[..., :1], size[..., 1:]
    offset = jnp.concatenate([jnp.ones_like(width), height / width], axis=-1)
    return width, offset


def pixels_to_screen(uv, image_size) -> Array:
    """Pixels -> VideoPose3D normalised screen coordinates: ``uv / w * 2 - (1, h / w)``.

    x spans [-1, 1] over the image width and y is scaled by the same factor, so the
    aspect ratio is preserved (y spans [-h/w, h/w]). Directions are unchanged (y down).

    Args:
      uv: (..., 2) pixels.
      image_size: (..., 2) ``(width, height)`` pixels, lining up with the first leading
        axes of ``uv`` (camera rule); ints accepted.
    """
    uv = _float_with_trailing(uv, "uv", (2,))
    width, offset = _screen_terms(uv, image_size, "uv")
    return uv / width * 2 - offset


def pixels_to_focal_units(uv, focal, principal, screen_focal) -> Array:
    """Pixels -> camera-independent normalised coordinates ``(uv - c) / f * screen_focal``.

    ``(uv - c) / f`` is the pinhole ray ``(X / Z, Y / Z)``: the same for a person filmed
    by any undistorted camera from the same pose, whatever its focal length, principal
    point, image size or aspect ratio. ``screen_focal`` (a constant) puts it on the scale
    of :func:`pixels_to_screen` for a camera with ``2 f / w = screen_focal``: for
    Human3.6M-like cameras (``2 f / w`` ~ 2.3) both give nearly the same numbers.
    Models trained on many cameras take this (``data.input_normalisation = "focal"``);
    ``launch/lift.py`` applies it with the user's camera.

    Args:
      uv: (..., 2) pixels (a lens's distortion stays in them; :func:`focal_units_intrinsics9`
        keeps it in the projection).
      focal, principal: (..., 2) pixels, lining up with the first leading axes of ``uv``.
      screen_focal: the constant scale (a float).
    """
    uv = _float_with_trailing(uv, "uv", (2,))
    batch = tuple(uv.shape[:-1])
    focal = _align_prefix(_float_with_trailing(focal, "focal", (2,)).astype(uv.dtype),
                          "focal", 1, batch, "uv")
    principal = _align_prefix(
        _float_with_trailing(principal, "principal", (2,)).astype(uv.dtype), "principal", 1,
        batch, "uv")
    return (uv - principal) / focal * jnp.asarray(screen_focal, uv.dtype)


def focal_units_intrinsics9(cam: CameraParams, screen_focal: float) -> Array:
    """:func:`intrinsics9` of ``cam`` in the units of :func:`pixels_to_focal_units`:
    ``[s, s, 0, 0, k1, k2, k3, t0, t1]`` with ``s = screen_focal`` (the distortion acts on
    ``X / Z`` before the focal length, so it is unchanged); projecting with it gives
    :func:`pixels_to_focal_units` of the pixels."""
    nine = intrinsics9(cam)
    s = jnp.full(nine.shape[:-1] + (2,), screen_focal, nine.dtype)
    return jnp.concatenate([s, jnp.zeros_like(s), nine[..., 4:]], axis=-1)


def screen_to_pixels(xy, image_size) -> Array:
    """Inverse of :func:`pixels_to_screen`: ``(xy + (1, h / w)) * w / 2``; (..., 2)."""
    xy = _float_with_trailing(xy, "xy", (2,))
    width, offset = _screen_terms(xy, image_size, "xy")
    return (xy + offset) * width / 2


def backproject(uv, depth, focal, principal) -> Array:
    """Undistorted pinhole back-projection: pixels and depth -> camera-frame points.

    ``X = (u - cx) / fx * Z``, ``Y = (v - cy) / fy * Z``. Inverse of
    :func:`project_perspective` without distortion.

    Args:
      uv: (..., 2) pixels.
      depth: (...,) camera-frame ``Z`` (metres); same rank as ``uv`` without its last axis,
        broadcasting by NumPy rules.
      focal, principal: (..., 2) pixels, lining up with the first leading axes of ``uv``.

    Returns (..., 3) camera-frame points, in the units of ``depth``.
    """
    uv = _float_with_trailing(uv, "uv", (2,))
    depth = _as_float(depth, "depth")
    if depth.ndim != uv.ndim - 1:
        raise ValueError(
            f"depth must have shape uv.shape[:-1] = {tuple(uv.shape[:-1])} (or broadcast "
            f"to it with the same rank), got {tuple(depth.shape)}"
        )
    try:
        batch = jnp.broadcast_shapes(tuple(uv.shape[:-1]), tuple(depth.shape))
    except ValueError as err:
        raise ValueError(
            f"depth shape {tuple(depth.shape)} does not broadcast with uv.shape[:-1] "
            f"{tuple(uv.shape[:-1])}"
        ) from err
    focal, principal, _, _ = _intrinsics_aligned(
        uv, focal, principal, None, None, batch, "uv"
    )
    xy = (uv - principal) / focal * depth[..., None]
    z = jnp.broadcast_to(depth[..., None], xy.shape[:-1] + (1,))
    return jnp.concatenate([xy, z], axis=-1)


# --------------------------------------------------------------------------------------
# Virtual cameras.
# --------------------------------------------------------------------------------------


def _check_up_axis(up_axis) -> int:
    if up_axis not in (0, 1, 2) or isinstance(up_axis, bool):
        raise ValueError(f"up_axis must be 0, 1 or 2 (world axis index), got {up_axis!r}")
    return int(up_axis)


def _ring_basis(up_axis: int, dtype):
    """Unit vectors (e1, e2, up): azimuth is measured from e1 towards e2.

    ``(e1, e2, up)`` is a cyclic permutation of the world axes, hence right-handed; for a
    Z-up world it is (x, y, z): azimuth counter-clockwise from +x seen from above.
    """
    eye = jnp.eye(3, dtype=dtype)
    return eye[(up_axis + 1) % 3], eye[(up_axis + 2) % 3], eye[up_axis]


def _ring_cameras(
    azimuth: Array,
    radius: Array,
    height: Array,
    target: Array,
    *,
    focal: Array,
    principal: Array,
    radial: Array,
    tangential: Array,
    image_size: Array,
    up_axis: int,
) -> CameraParams:
    """Cameras (V,) on a horizontal circle around ``target`` looking at it.

    azimuth, height: (V,); radius: () or (V,); target (3,); intrinsics (2,)/(3,)/(2,) or
    with a leading (V,) axis.
    """
    dtype = azimuth.dtype
    num = azimuth.shape[0]
    e1, e2, up = _ring_basis(up_axis, dtype)
    radius = jnp.broadcast_to(radius, (num,))
    horizontal = (jnp.cos(azimuth) * radius)[:, None] * e1[None] + (
        jnp.sin(azimuth) * radius
    )[:, None] * e2[None]
    target_ground = target - jnp.sum(target * up) * up  # target with its height removed
    centre = target_ground[None] + horizontal + height[:, None] * up[None]
    rotation = look_at(centre, jnp.broadcast_to(target, (num, 3)), jnp.broadcast_to(up, (num, 3)))

    def per_view(x, size):
        return jnp.broadcast_to(x.astype(dtype), (num, size))

    return CameraParams(
        rotation=rotation,
        centre=centre,
        focal=per_view(focal, 2),
        principal=per_view(principal, 2),
        radial=per_view(radial, 3),
        tangential=per_view(tangential, 2),
        image_size=per_view(image_size, 2),
    )


def _jitter(rng, num: int, azimuth_jitter: float, height_jitter: float, dtype):
    azimuth_jitter = float(azimuth_jitter)
    height_jitter = float(height_jitter)
    if azimuth_jitter < 0 or height_jitter < 0:
        raise ValueError(
            "azimuth_jitter and height_jitter must be >= 0, got "
            f"{azimuth_jitter} and {height_jitter}"
        )
    if rng is None:
        if azimuth_jitter or height_jitter:
            raise ValueError("rng is required when azimuth_jitter or height_jitter is nonzero")
        zeros = jnp.zeros((num,), dtype)
        return zeros, zeros
    key_az, key_h = jax.random.split(rng)
    d_az = azimuth_jitter * jax.random.uniform(key_az, (num,), dtype, -1.0, 1.0)
    d_h = height_jitter * jax.random.uniform(key_h, (num,), dtype, -1.0, 1.0)
    return d_az, d_h


def _check_num_views(num_views, name: str = "num_views") -> int:
    if isinstance(num_views, bool) or not isinstance(num_views, (int, np.integer)):
        raise ValueError(f"{name} must be a Python int, got {num_views!r}")
    if num_views < 1:
        raise ValueError(f"{name} must be >= 1, got {num_views}")
    return int(num_views)


def virtual_cameras(
    num_views: int,
    *,
    distance: float = 5.0,
    height: float = 1.5,
    target=(0.0, 0.0, 1.0),
    focal=1150.0,
    image_size=(1000.0, 1000.0),
    principal=None,
    radial=(0.0, 0.0, 0.0),
    tangential=(0.0, 0.0),
    azimuth_offset: float = 0.0,
    azimuth_jitter: float = 0.0,
    height_jitter: float = 0.0,
    rng=None,
    up_axis: int = 2,
    dtype=jnp.float32,
) -> CameraParams:
    """Calibrated cameras evenly spaced in azimuth around a subject, looking at it.

    Human3.6M-like defaults: H36M's four cameras stand about 4-6 m from the subject and
    1.5-1.6 m above the ground, with focal lengths of ~1145-1150 px, 1000 x 1000 (or
    1000 x 1002) images and small distortion (zero here by default).

    Camera ``i`` stands at azimuth ``azimuth_offset + 2 pi i / num_views`` (+ jitter),
    ``distance`` from the target's vertical axis measured horizontally, at ``height``
    above the ground (+ jitter), and looks at ``target`` (:func:`look_at`, no roll).

    Args:
      num_views: number of cameras ``V`` (Python int).
      distance: horizontal distance to the target's vertical axis, metres (> 0: at 0 the
        view direction is parallel to up and :func:`look_at` returns NaN).
      height: camera centre height above the ground (world ``up_axis`` coordinate), metres.
      target: (3,) world point the cameras look at, metres (default: 1 m above the origin,
        about the pelvis of a standing adult).
      focal: scalar or (2,) ``(fx, fy)``, pixels.
      image_size: (2,) ``(width, height)``, pixels.
      principal: (2,) pixels; default the image centre ``image_size / 2``.
      radial, tangential: (3,) ``(k1, k2, k3)`` and (2,) ``(p1, p2)`` (Human3.6M order).
      azimuth_offset: azimuth of camera 0, radians, measured around ``up_axis`` from the
        next world axis towards the one after (Z-up: from +x towards +y).
      azimuth_jitter: radians; adds ``U(-1, 1) * azimuth_jitter`` per camera (needs rng).
      height_jitter: metres; adds ``U(-1, 1) * height_jitter`` per camera (needs rng).
      rng: PRNG key for the jitters; None means deterministic (jitters must be 0).
      up_axis: index of the world's up axis (2 for the Z-up Human3.6M world); the ground is
        the plane where that coordinate is 0.
      dtype: floating dtype of every field.

    Returns:
      :class:`CameraParams` with leading axis ``(num_views,)``.
    """
    num = _check_num_views(num_views)
    up_axis = _check_up_axis(up_axis)
    dtype = jnp.dtype(dtype)
    if not jnp.issubdtype(dtype, jnp.floating):
        raise ValueError(f"dtype must be a floating dtype, got {dtype}")
    target = _float_with_trailing(target, "target", (3,)).astype(dtype)
    if target.ndim != 1:
        raise ValueError(f"target must have shape (3,), got {tuple(target.shape)}")
    image_size = _float_with_trailing(image_size, "image_size", (2,)).astype(dtype)
    if image_size.ndim != 1:
        raise ValueError(f"image_size must have shape (2,), got {tuple(image_size.shape)}")
    focal = _as_float(focal, "focal").astype(dtype)
    if focal.shape not in ((), (2,)):
        raise ValueError(f"focal must be a scalar or have shape (2,), got {tuple(focal.shape)}")
    focal = jnp.broadcast_to(focal, (2,))
    principal = image_size / 2 if principal is None else principal
    principal = _float_with_trailing(principal, "principal", (2,)).astype(dtype)
    radial = _float_with_trailing(radial, "radial", (3,)).astype(dtype)
    tangential = _float_with_trailing(tangential, "tangential", (2,)).astype(dtype)
    for name, value in (("principal", principal), ("radial", radial), ("tangential", tangential)):
        if value.ndim != 1:
            raise ValueError(f"{name} must be 1-D, got shape {tuple(value.shape)}")
    distance = jnp.asarray(distance, dtype)
    if distance.ndim != 0:
        raise ValueError(f"distance must be a scalar, got shape {tuple(distance.shape)}")
    height = jnp.asarray(height, dtype)
    if height.ndim != 0:
        raise ValueError(f"height must be a scalar, got shape {tuple(height.shape)}")

    d_az, d_h = _jitter(rng, num, azimuth_jitter, height_jitter, dtype)
    azimuth = (
        jnp.asarray(azimuth_offset, dtype)
        + jnp.arange(num, dtype=dtype) * jnp.asarray(2 * math.pi / num, dtype)
        + d_az
    )
    return _ring_cameras(
        azimuth,
        distance,
        height + d_h,
        target,
        focal=focal,
        principal=principal,
        radial=radial,
        tangential=tangential,
        image_size=image_size,
        up_axis=up_axis,
    )


def optical_axes_target(cams: CameraParams) -> Array:
    """Least-squares meeting point (3,) of the cameras' optical axes, world metres.

    Minimises the summed squared distance to the lines ``centre + s * forward``; needs at
    least two non-parallel axes (otherwise the 3x3 system is singular and the result is
    inf/NaN). ``cams`` has one leading axis (V,).
    """
    cams, batch = _checked_camera(cams)
    if len(batch) != 1 or cams.rotation.ndim != 3 or cams.centre.ndim != 2:
        raise ValueError(
            "cams must have exactly one leading axis (V,) on rotation and centre, got "
            f"rotation {tuple(cams.rotation.shape)}, centre {tuple(cams.centre.shape)}"
        )
    forward = cams.rotation[:, 2, :]  # third row: the camera z axis in world coordinates
    eye = jnp.eye(3, dtype=forward.dtype)
    projector = eye[None] - forward[:, :, None] * forward[:, None, :]  # (V, 3, 3)
    lhs = jnp.sum(projector, axis=0)
    rhs = jnp.sum(_matvec(projector, cams.centre), axis=0)
    return jnp.linalg.solve(lhs, rhs)


def _allocate_to_gaps(gaps: Array, num_new: int) -> Array:
    """Share ``num_new`` cameras among angular gaps, minimising the widest resulting spacing.

    Greedy (D'Hondt-style): each new camera goes to the gap whose current spacing
    ``gap / (count + 1)`` is widest; this is optimal for min-max spacing. Returns (R,) int32
    counts summing to ``num_new``. Ties go to the first gap in sorted-azimuth order.
    """

    def add_one(_, counts):
        widest = jnp.argmax(gaps / (counts + 1).astype(gaps.dtype))
        return counts.at[widest].add(1)

    return jax.lax.fori_loop(0, num_new, add_one, jnp.zeros(gaps.shape, jnp.int32))


def augment_views(
    cams: CameraParams,
    num_views: int,
    *,
    target=None,
    rng=None,
    azimuth_jitter: float = 0.0,
    height_jitter: float = 0.0,
    up_axis: int = 2,
) -> CameraParams:
    """Add virtual cameras interleaved in azimuth with real ones (e.g. 4 H36M views -> 12).

    The virtual cameras stand on the circle around ``target`` at the real cameras' mean
    horizontal distance and mean height, with the real cameras' mean intrinsics (focal,
    principal point, distortion, image size), and look at ``target``. The ``num_views - R``
    new azimuths are shared among the angular gaps between consecutive real cameras so
    that the widest spacing between neighbouring cameras is as small as possible (each new
    camera goes to the currently widest gap), and spread evenly inside each gap. E.g.
    real cameras at 0, 90, 180, 270 degrees and ``num_views=12`` give a camera every 30
    degrees; H36M's four cameras (gaps of ~40, 135, 45, 140 degrees) get 1, 3, 1, 3 new
    ones.

    Args:
      cams: the R real cameras, leading axis (R,).
      num_views: total number of views (>= R; Python int).
      target: (3,) world point the virtual cameras look at and around which distance and
        azimuth are measured; default :func:`optical_axes_target` of the real cameras.
      rng: PRNG key for the jitters; None means deterministic.
      azimuth_jitter: radians, ``U(-1, 1) * azimuth_jitter`` added to virtual azimuths.
      height_jitter: metres, ``U(-1, 1) * height_jitter`` added to virtual heights.
      up_axis: world up axis index (2: Z-up, as Human3.6M).

    Returns:
      :class:`CameraParams` with leading axis (num_views,): the real cameras first,
      unchanged and in their original order, then the virtual ones in increasing azimuth
      order within each gap, gaps in increasing azimuth (in (-pi, pi]) of the real camera
      that opens them. Under ``jit``, ``num_views`` and the jitters must be static.
    """
    cams, batch = _checked_camera(cams)
    up_axis = _check_up_axis(up_axis)
    if len(batch) != 1:
        raise ValueError(f"cams must have exactly one leading axis (R,), got {batch}")
    num_real = batch[0]
    # Every field must carry the (R,) axis so real and virtual cameras concatenate.
    cams = CameraParams(
        **{
            name: _broadcast_camera_field(
                getattr(cams, name), f"cams.{name}", len(trailing), batch
            )
            for name, trailing in CAMERA_FIELD_SHAPES.items()
        }
    )
    total = _check_num_views(num_views)
    if total < num_real:
        raise ValueError(f"num_views ({total}) must be >= the number of cameras ({num_real})")
    if total == num_real:
        return cams
    num_new = total - num_real
    dtype = cams.rotation.dtype
    if target is None:
        target = optical_axes_target(cams)
    target = _float_with_trailing(target, "target", (3,)).astype(dtype)
    if target.ndim != 1:
        raise ValueError(f"target must have shape (3,), got {tuple(target.shape)}")

    e1, e2, up = _ring_basis(up_axis, dtype)
    offset = cams.centre - target[None]
    h1, h2 = jnp.sum(offset * e1[None], -1), jnp.sum(offset * e2[None], -1)
    azimuth = jnp.arctan2(h2, h1)
    radius = jnp.mean(jnp.sqrt(h1 * h1 + h2 * h2))
    height = jnp.mean(jnp.sum(cams.centre * up[None], -1))

    start = jnp.sort(azimuth)
    two_pi = jnp.asarray(2 * math.pi, dtype)
    gaps = jnp.concatenate([start[1:], start[:1] + two_pi]) - start  # (R,) sums to 2 pi
    counts = _allocate_to_gaps(gaps, num_new)  # (R,) int, sums to num_new
    ends = jnp.cumsum(counts)
    index = jnp.arange(num_new, dtype=jnp.int32)
    gap = jnp.searchsorted(ends, index, side="right")  # gap of each new camera
    within = index - (ends[gap] - counts[gap]) + 1  # 1..counts[gap]
    fraction = within.astype(dtype) / (counts[gap] + 1).astype(dtype)
    new_azimuth = start[gap] + gaps[gap] * fraction

    d_az, d_h = _jitter(rng, num_new, azimuth_jitter, height_jitter, dtype)
    virtual = _ring_cameras(
        new_azimuth + d_az,
        radius,
        jnp.broadcast_to(height, (num_new,)) + d_h,
        target,
        focal=jnp.mean(cams.focal, axis=0),
        principal=jnp.mean(cams.principal, axis=0),
        radial=jnp.mean(cams.radial, axis=0),
        tangential=jnp.mean(cams.tangential, axis=0),
        image_size=jnp.mean(cams.image_size, axis=0),
        up_axis=up_axis,
    )
    return jax.tree.map(lambda a, b: jnp.concatenate([a, b], axis=0), cams, virtual)
