"""Tests for jpose.triangulation against references.

References: jpose.camera's projection (the undistortion must invert it), exact synthetic
geometry (known world points), and a NumPy port of Pose2Sim's ``weighted_triangulation``
(pixel-space DLT with ``P = K [R | t]``, rows scaled by the likelihood).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jpose import calibration as cal
from jpose import camera as C
from jpose import triangulation as tri


def x64():
    return jax.enable_x64(True)


RADIAL = ((-0.20, 0.05, 0.01), (-0.12, 0.02, 0.0), (0.05, -0.01, 0.0), (-0.25, 0.08, -0.01))
TANGENTIAL = ((1e-3, -2e-3), (0.0, 5e-4), (-8e-4, 0.0), (2e-3, 1e-3))


def cameras(dtype=np.float64):
    """Four cameras 4 m around a subject, each with its own (Human3.6M-like) distortion.

    Built in NumPy (look-at rotations by hand): eager jpose calls would compile op by op.
    """
    target = np.array([0.0, 0.0, 1.0])
    azimuth = 0.3 + np.arange(4) * np.pi / 2
    centre = np.stack([4 * np.cos(azimuth), 4 * np.sin(azimuth), np.full(4, 1.4)], -1)
    forward = target - centre
    forward /= np.linalg.norm(forward, axis=-1, keepdims=True)
    right = np.cross(forward, [0.0, 0.0, 1.0])
    right /= np.linalg.norm(right, axis=-1, keepdims=True)
    rotation = np.stack([right, np.cross(forward, right), forward], axis=-2)
    return C.CameraParams(
        rotation=rotation.astype(dtype), centre=centre.astype(dtype),
        focal=np.tile([1150.0, 1145.0], (4, 1)).astype(dtype),
        principal=np.tile([503.0, 498.0], (4, 1)).astype(dtype),
        radial=np.asarray(RADIAL, dtype), tangential=np.asarray(TANGENTIAL, dtype),
        image_size=np.tile([1000.0, 1000.0], (4, 1)).astype(dtype))


project_camera = jax.jit(C.project_camera)
project_opencv = jax.jit(cal.project_opencv)


def points(shape=(3, 5), seed=0, dtype=np.float64):
    """World points (shape + (3,)) around the cameras' target, metres."""
    rng = np.random.default_rng(seed)
    return (np.array([0.0, 0.0, 1.0]) + rng.uniform(-0.8, 0.8, shape + (3,))).astype(dtype)


def project_views(world, cams):
    """(V, *P, 2) distorted pixels of world points (*P, 3) in each camera."""
    return project_camera(np.broadcast_to(world, (4,) + world.shape), cams)


def image_grid_points(cams, depth=3.0, n=9):
    """(V, n*n, 3) world points whose ideal projections cover each camera's whole image."""
    out = []
    for v in range(C.camera_batch_shape(cams)[0]):
        (w, h), (fx, fy), (cx, cy) = (np.asarray(getattr(cams, f)[v])
                                      for f in ("image_size", "focal", "principal"))
        u, vv = np.meshgrid(np.linspace(0, w, n), np.linspace(0, h, n))
        ray = np.stack([(u.ravel() - cx) / fx, (vv.ravel() - cy) / fy, np.ones(u.size)], -1)
        out.append(depth * ray @ cams.rotation[v] + cams.centre[v])  # R^T x + c
    return np.stack(out)


def test_undistort_inverts_jpose_distortion():
    with x64():
        cams = cameras()
        world = image_grid_points(cams)
        distorted = project_camera(world, cams)
        ideal = project_camera(world, cams._replace(radial=np.zeros((4, 3)),
                                                      tangential=np.zeros((4, 2))))
        # The grid reaches the image corners, where the distortion is strongest.
        assert float(np.max(np.abs(distorted - ideal))) > 20
        out = tri.undistort_points(distorted, cams)
        np.testing.assert_allclose(np.asarray(out.uv), np.asarray(ideal), rtol=0, atol=1e-8)
        assert float(np.max(out.residual)) < 1e-8
        # float32: at float32 pixel precision.
        out32 = tri.undistort_points(np.asarray(distorted, np.float32), cameras(np.float32))
        assert out32.uv.dtype == jnp.float32
        np.testing.assert_allclose(np.asarray(out32.uv), np.asarray(ideal), atol=2e-3)


def test_undistort_inverts_opencv_distortion():
    with x64():
        cams = cameras()
        dist = np.array([[-0.2, 0.05, 1e-3, -2e-3, 0.01]] * 4)
        world = image_grid_points(cams)
        distorted = project_opencv(world, cams, dist)
        ideal = project_opencv(world, cams, np.zeros((4, 5)))
        assert float(np.max(np.abs(distorted - ideal))) > 20
        out = tri.undistort_points(distorted, cams, distortions=dist)
        np.testing.assert_allclose(np.asarray(out.uv), np.asarray(ideal), rtol=0, atol=1e-8)


def test_exact_recovery_float64_and_float32():
    with x64():
        cams = cameras()
        world = points((3, 5))
        uv = project_views(world, cams)
        out = tri.triangulate(uv, cams)
        assert out.points.shape == (3, 5, 3) and out.reprojection_error.shape == (4, 3, 5)
        np.testing.assert_allclose(np.asarray(out.points), world, rtol=0, atol=1e-6)
        assert float(np.max(out.reprojection_error)) < 1e-6
        np.testing.assert_array_equal(np.asarray(out.num_views), np.full((3, 5), 4))
        jitted = jax.jit(tri.triangulate)(uv, cams)
        np.testing.assert_allclose(np.asarray(jitted.points), np.asarray(out.points),
                                   atol=1e-9)
    out32 = tri.triangulate(np.asarray(uv, np.float32), cameras(np.float32))
    assert out32.points.dtype == jnp.float32
    np.testing.assert_allclose(np.asarray(out32.points), world, atol=1e-5)
    # float32 with the rig far from the world origin: the normalised frame keeps it exact
    # to the float32 spacing at 300 m (3e-5 m), where the raw DLT is off by ~1 cm.
    offset = np.array([300.0, -200.0, 0.0])
    far = cameras(np.float32)
    far = far._replace(centre=(np.asarray(far.centre, np.float64) + offset).astype(np.float32))
    out_far = tri.triangulate(np.asarray(uv, np.float32), far)
    np.testing.assert_allclose(np.asarray(out_far.points, np.float64), world + offset,
                               atol=1e-4)


def pose2sim_weighted_triangulation(uv_undistorted, cams, likelihood, *, normalise=False):
    """Pose2Sim's ``weighted_triangulation`` for one point, NumPy (P = K [R | t]).

    ``normalise``: in the world frame shifted to the mean camera centre and scaled by the
    mean distance to it, the frame jpose documents solving in.
    """
    centres = np.asarray(cams.centre)
    origin, scale = np.zeros(3), 1.0
    if normalise:
        origin = centres.mean(axis=0)
        scale = np.linalg.norm(centres - origin, axis=-1).mean()
    rows = []
    for v in range(len(uv_undistorted)):
        rot = np.asarray(cams.rotation[v])
        t = -rot @ ((centres[v] - origin) / scale)
        (fx, fy), (cx, cy) = np.asarray(cams.focal[v]), np.asarray(cams.principal[v])
        k = np.array([[fx, 0, cx], [0, fy, cy], [0, 0, 1]])
        p = k @ np.concatenate([rot, t[:, None]], axis=1)
        x, y = uv_undistorted[v]
        rows.append((p[0] - x * p[2]) * likelihood[v])
        rows.append((p[1] - y * p[2]) * likelihood[v])
    _, _, vt = np.linalg.svd(np.array(rows))
    return origin + scale * vt[-1, :3] / vt[-1, 3]


def test_weighting_matches_pose2sim_and_helps():
    with x64():
        cams = cameras()
        # Equal focal lengths, so that Pose2Sim's pixel rows and ours weigh views alike.
        cams = cams._replace(focal=np.full((4, 2), 1150.0))
        world = points((12,), seed=5)
        uv = np.array(project_views(world, cams))
        rng = np.random.default_rng(0)
        uv[0] += rng.normal(0, 25.0, uv[0].shape)  # one badly detected view
        uv[1:] += rng.normal(0, 0.5, uv[1:].shape)
        conf = np.ones((4, 12))
        conf[0] = 0.05
        weighted = tri.triangulate(uv, cams, conf)
        plain = tri.triangulate(uv, cams)
        err_w = np.linalg.norm(np.asarray(weighted.points) - world, axis=-1)
        err_p = np.linalg.norm(np.asarray(plain.points) - world, axis=-1)
        assert err_w.mean() < 0.3 * err_p.mean()
        # The bad view shows in the per-view reprojection error.
        assert np.all(np.asarray(weighted.reprojection_error)[0] > np.asarray(
            weighted.reprojection_error)[1:].max(axis=0))
        # Pose2Sim's formula on undistorted pixels: the same solution in the normalised
        # frame, and within micrometres of it in the raw one.
        ideal = np.asarray(tri.undistort_points(uv, cams).uv)
        for j in range(12):
            ref = pose2sim_weighted_triangulation(ideal[:, j], cams, conf[:, j],
                                                  normalise=True)
            np.testing.assert_allclose(np.asarray(weighted.points[j]), ref, rtol=0, atol=1e-9)
            raw = pose2sim_weighted_triangulation(ideal[:, j], cams, conf[:, j])
            np.testing.assert_allclose(np.asarray(weighted.points[j]), raw, rtol=0, atol=1e-4)


def test_missing_views_and_nan():
    with x64():
        cams = cameras()
        world = points((6,), seed=2)
        uv = np.array(project_views(world, cams))
        conf = np.ones((4, 6))
        uv[1:, 0] = np.nan  # point 0: seen by one view only
        conf[2, 1], conf[3, 1] = 0.0, np.nan  # point 1: two views ignored, two left
        uv[0, 2] = np.nan
        conf[1, 2] = 0.0  # point 2: NaN keypoint and zero confidence -> two views left
        conf[:, 3] = 0.0  # point 3: no view
        uv[2, 4] = [1e4, -1e4]  # point 4: one wild keypoint, ignored below
        conf[2, 4] = 0.0
        out = tri.triangulate(uv, cams, conf)
        np.testing.assert_array_equal(np.asarray(out.num_views), [1, 2, 2, 0, 3, 4])
        pts = np.asarray(out.points)
        assert np.all(np.isnan(pts[[0, 3]]))
        np.testing.assert_allclose(pts[[1, 2, 4, 5]], world[[1, 2, 4, 5]], atol=1e-6)
        err = np.asarray(out.reprojection_error)
        assert np.all(np.isnan(err[:, 0])) and np.all(np.isnan(err[:, 3]))
        assert np.isnan(err[0, 2]) and err[1, 2] < 1e-6  # ignored view still reported
        assert err[2, 4] > 1e3
        with pytest.raises(ValueError, match="min_views must be a Python int >= 2"):
            tri.triangulate(uv, cams, conf, min_views=1)
        strict = tri.triangulate(uv, cams, conf, min_views=3)
        assert np.all(np.isnan(np.asarray(strict.points)[[0, 1, 2, 3]]))


def test_opencv_calibration_exact():
    with x64():
        cams = cameras()
        dist = np.array([[-0.1, 0.02, 1e-3, -1e-3, 0.0], [-0.2, 0.05, 0.0, 2e-3, 0.01],
                            [0.03, 0.0, -1e-3, 0.0, 0.0], [-0.05, 0.0, 0.0, 0.0, 0.0]])
        world = points((2, 4), seed=7)
        uv = project_opencv(np.broadcast_to(world, (4, 2, 4, 3)), cams, dist)
        out = tri.triangulate(uv, cams, distortions=dist)
        np.testing.assert_allclose(np.asarray(out.points), world, rtol=0, atol=1e-6)
        assert float(np.max(out.reprojection_error)) < 1e-6


def test_shape_errors():
    cams = cameras(np.float32)
    uv = np.zeros((4, 3, 2), np.float32)
    with pytest.raises(ValueError, match=r"cams must have leading axis \(3,\)"):
        tri.triangulate(uv[:3], cams)
    with pytest.raises(ValueError, match=r"confidence must have shape \(4, 3\)"):
        tri.triangulate(uv, cams, np.ones((4, 2), np.float32))
    with pytest.raises(ValueError, match=r"keypoints_2d must have shape \(..., 2\)"):
        tri.triangulate(np.zeros((4, 3, 3), np.float32), cams)
