"""jpose.solvers.relative_pose against known cameras and independent references.

Scenes: Human3.6M-like cameras from ``jpose.camera.virtual_cameras`` (4 on a ring, 90°
apart, ~7 m baselines) looking at 20 frames of a synthetic walk (16 joints, 320
correspondences). Ground truth, projections, the Hartley-Zisserman eight-point algorithm
and the "gold standard" Sampson fit (scipy.optimize.least_squares) are written here in
NumPy/scipy, independently of the library.

Compile budget: every solver call goes through one jitted function with the same shapes
and a traced ``maxiter``, so the file compiles it once per dtype (plus once for vmap).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.optimize import least_squares
from scipy.spatial.transform import Rotation

from jpose import camera
from jpose.datasets.synthetic import synthetic_clip
from jpose.solvers import _loop
from jpose.solvers import relative_pose as rp
from jpose.solvers._loop import Status

_SOLVE = jax.jit(rp.relative_pose, static_argnames=("config",))
NUM_FRAMES = 20


# ----------------------------------------------------------------------------------------
# Independent NumPy references.
# ----------------------------------------------------------------------------------------


def _cameras_np():
    """(R (4, 3, 3), c (4, 3), K (4, 3, 3)) float64 of four ring cameras."""
    with jax.enable_x64(True):
        cams = camera.virtual_cameras(4, dtype=jnp.float64)
        rot, cen = np.asarray(cams.rotation), np.asarray(cams.centre)
        foc, pp = np.asarray(cams.focal), np.asarray(cams.principal)
    k = np.zeros((4, 3, 3))
    k[:, 0, 0], k[:, 1, 1] = foc[:, 0], foc[:, 1]
    k[:, 0, 2], k[:, 1, 2], k[:, 2, 2] = pp[:, 0], pp[:, 1], 1.0
    return rot, cen, k


ROT, CEN, KS = _cameras_np()
# Frames 0.1 s apart: the walker covers ~2.5 m and changes pose, giving a well spread,
# non-planar point set. (A near-static or near-planar subject -- 0.2 s of walking, or a
# jumping jack -- makes the eight-point estimate unstable under noise; see the module
# docstring.)
POINTS = synthetic_clip("walk", num_frames=NUM_FRAMES, fps=10.0, seed=3).positions.astype(np.float64)


def _project_np(points, rot, cen, k):
    cam = (points - cen) @ rot.T  # x_cam = R (x_world - c)
    uvw = cam @ k.T
    return uvw[..., :2] / uvw[..., 2:3]


def _truth(i, j):
    """x_cam_j = R x_cam_i + t from the world-to-camera extrinsics."""
    rot = ROT[j] @ ROT[i].T
    return rot, ROT[j] @ (CEN[i] - CEN[j])


def _angle_deg(r_a, r_b):
    # |Ra - Rb|_F = 2 sqrt(2) sin(angle / 2): accurate for small angles, unlike arccos of
    # the trace (which turns float32 rounding of the matrices into 0.02 deg).
    chord = np.linalg.norm(np.asarray(r_a, np.float64) - np.asarray(r_b, np.float64)) / np.sqrt(8)
    return np.degrees(2 * np.arcsin(min(chord, 1.0)))


def _direction_deg(a, b):
    a = np.asarray(a, np.float64) / np.linalg.norm(a)
    b = np.asarray(b, np.float64) / np.linalg.norm(b)
    return np.degrees(2 * np.arcsin(min(np.linalg.norm(a - b) / 2, 1.0)))


def _skew_np(t):
    return np.array([[0, -t[2], t[1]], [t[2], 0, -t[0]], [-t[1], t[0], 0]])


def _eight_point_hz(u1, u2, k1, k2):
    """Hartley & Zisserman Alg. 11.1 in normalised coordinates + Result 9.17 projection."""
    def calibrated(u, k):
        h = np.c_[u, np.ones(len(u))] @ np.linalg.inv(k).T
        return h / h[:, 2:3]

    def hartley(x):
        centre = x[:, :2].mean(axis=0)
        mean_dist = np.sqrt(((x[:, :2] - centre) ** 2).sum(axis=1)).mean()
        s = np.sqrt(2) / mean_dist
        t = np.array([[s, 0, -s * centre[0]], [0, s, -s * centre[1]], [0, 0, 1]])
        return x @ t.T, t

    x1, t1 = hartley(calibrated(u1, k1))
    x2, t2 = hartley(calibrated(u2, k2))
    # H&Z eq. (11.3): (x'x, x'y, x', y'x, y'y, y', x, y, 1) . f = 0.
    a = np.stack([x2[:, 0] * x1[:, 0], x2[:, 0] * x1[:, 1], x2[:, 0],
                  x2[:, 1] * x1[:, 0], x2[:, 1] * x1[:, 1], x2[:, 1],
                  x1[:, 0], x1[:, 1], np.ones(len(x1))], axis=1)
    e = np.linalg.svd(a)[2][-1].reshape(3, 3)
    e = t2.T @ e @ t1
    u, _, vt = np.linalg.svd(e)
    return u @ np.diag([1.0, 1.0, 0.0]) @ vt


def _sampson_np(e, u1, u2, k1, k2):
    """H&Z eq. (11.9) with F = K2^-T E K1^-1, in pixels."""
    f = np.linalg.inv(k2).T @ e @ np.linalg.inv(k1)
    h1, h2 = np.c_[u1, np.ones(len(u1))], np.c_[u2, np.ones(len(u2))]
    fx1, ftx2 = h1 @ f.T, h2 @ f
    num = np.sum(h2 * fx1, axis=1)
    return num / np.sqrt(fx1[:, 0] ** 2 + fx1[:, 1] ** 2 + ftx2[:, 0] ** 2 + ftx2[:, 1] ** 2)


def _gold_standard(u1, u2, k1, k2, rot0, t0):
    """scipy least_squares on the Sampson distances over (rotation vector, t on S^2)."""
    def unpack(p):
        t = np.array([np.sin(p[3]) * np.cos(p[4]), np.sin(p[3]) * np.sin(p[4]), np.cos(p[3])])
        return Rotation.from_rotvec(p[:3]).as_matrix(), t

    def residuals(p):
        r, t = unpack(p)
        return _sampson_np(_skew_np(t) @ r, u1, u2, k1, k2)

    t0 = t0 / np.linalg.norm(t0)
    p0 = np.r_[Rotation.from_matrix(rot0).as_rotvec(), np.arccos(t0[2]), np.arctan2(t0[1], t0[0])]
    sol = least_squares(residuals, p0, xtol=1e-15, ftol=1e-15, gtol=1e-15)
    return unpack(sol.x)


def _data(i, j, *, noise=0.0, outliers=0.0, seed=0):
    """Pixels (F, J, 2) float64 in cameras i and j, and the outlier mask (F, J)."""
    rng = np.random.default_rng(seed)
    u1 = _project_np(POINTS, ROT[i], CEN[i], KS[i])
    u2 = _project_np(POINTS, ROT[j], CEN[j], KS[j])
    u1 = u1 + noise * rng.normal(size=u1.shape)
    u2 = u2 + noise * rng.normal(size=u2.shape)
    bad = rng.random(u1.shape[:-1]) < outliers
    u2[bad] = rng.uniform(0, 1000, size=(int(bad.sum()), 2))  # gross: anywhere in the image
    return u1, u2, bad


def _solve(u1, u2, i, j, dtype, *, weights=None, seed=0, maxiter=50):
    weights = np.ones(u1.shape[:-1]) if weights is None else weights
    baseline = np.linalg.norm(CEN[i] - CEN[j])
    return _SOLVE(jnp.asarray(u1, dtype), jnp.asarray(u2, dtype), jnp.asarray(KS[i], dtype),
                  jnp.asarray(KS[j], dtype), weights=jnp.asarray(weights, dtype),
                  baseline=jnp.asarray(baseline, dtype), key=jax.random.key(seed),
                  maxiter=jnp.int32(maxiter))


def _x64(dtype):
    return jax.enable_x64(dtype == "float64")


# ----------------------------------------------------------------------------------------
# End-to-end recovery.
# ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype, rot_tol, t_tol", [("float32", 1e-3, 1e-5), ("float64", 1e-9, 1e-10)])
def test_exact_recovery_without_noise(dtype, rot_tol, t_tol):
    with _x64(dtype):
        u1, u2, _ = _data(0, 1)
        out = _solve(u1, u2, 0, 1, dtype)
        rot, t = _truth(0, 1)
        assert out.rotation.dtype == jnp.dtype(dtype)
        assert int(out.status) == Status.CONVERGED
        assert int(out.num_inliers) == u1.shape[0] * u1.shape[1] == int(out.num_in_front)
        # Degrees; translation to the true baseline in metres, sign included (cheirality).
        assert _angle_deg(np.asarray(out.rotation, np.float64), rot) < rot_tol
        np.testing.assert_allclose(np.asarray(out.translation), t, atol=t_tol * np.linalg.norm(t))
        # Essential matrix: (1, 1, 0) singular values, the epipolar constraint, [t]x R.
        e = np.asarray(out.essential, np.float64)
        np.testing.assert_allclose(np.linalg.svd(e)[1], [1, 1, 0], atol=5 * t_tol)
        x1 = np.c_[u1.reshape(-1, 2), np.ones(320)] @ np.linalg.inv(KS[0]).T
        x2 = np.c_[u2.reshape(-1, 2), np.ones(320)] @ np.linalg.inv(KS[1]).T
        assert np.abs(np.sum(x2 * (x1 @ e.T), axis=1)).max() < 10 * t_tol
        e_true = _skew_np(t / np.linalg.norm(t)) @ rot
        assert min(np.abs(e - e_true).max(), np.abs(e + e_true).max()) < 10 * t_tol


def test_noisy_matches_scipy_gold_standard_and_truth():
    # 1 px noise: the refined pose is the minimiser of the Sampson error (scipy agrees to
    # 1e-6 deg); against the truth it is within 1 deg (rotation and direction of t), the
    # accuracy this 320-point geometry allows (0.1-0.7 deg over seeds). float32 lands on
    # the same answer to 2e-3 deg.
    rot, t = _truth(0, 1)
    u1, u2, _ = _data(0, 1, noise=1.0, seed=1)
    with jax.enable_x64(True):
        out = _solve(u1, u2, 0, 1, "float64")
        assert int(out.status) == Status.CONVERGED
        inl = np.asarray(out.inliers).reshape(-1)
        assert inl.mean() > 0.98
        gold_r, gold_t = _gold_standard(u1.reshape(-1, 2)[inl], u2.reshape(-1, 2)[inl], KS[0], KS[1],
                                        rot, t)
        got_r, got_t = np.asarray(out.rotation), np.asarray(out.translation)
        assert _angle_deg(got_r, gold_r) < 1e-6
        assert _direction_deg(got_t, gold_t) < 1e-6
        assert _angle_deg(got_r, rot) < 1.0 and _direction_deg(got_t, t) < 1.0
        np.testing.assert_allclose(np.linalg.norm(got_t), np.linalg.norm(t), rtol=1e-12)
    out32 = _solve(u1, u2, 0, 1, "float32")
    assert int(out32.status) == Status.CONVERGED
    assert _angle_deg(np.asarray(out32.rotation, np.float64), got_r) < 2e-3
    assert _direction_deg(np.asarray(out32.translation, np.float64), got_t) < 5e-3


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_robust_to_30_percent_gross_outliers(dtype):
    # 30% of camera-2 pixels replaced by uniform random pixels, 1 px noise on the rest.
    # Tolerance as for noise alone (1 deg); over 12 seeds the errors were 0.1-0.7 deg,
    # every true inlier was found and at most 5 of ~95 outliers were accepted.
    with _x64(dtype):
        rot, t = _truth(0, 1)
        for seed in (2, 9):
            u1, u2, bad = _data(0, 1, noise=1.0, outliers=0.3, seed=seed)
            assert 0.25 < bad.mean() < 0.35
            out = _solve(u1, u2, 0, 1, dtype, seed=seed)
            assert int(out.status) == Status.CONVERGED
            inl = np.asarray(out.inliers)
            assert (inl & ~bad).sum() >= 0.97 * (~bad).sum()  # recall
            assert (inl & bad).sum() <= 0.05 * inl.sum()  # precision: a random pixel rarely fits
            assert int(out.num_inliers) == inl.sum() == int(out.num_in_front)
            assert _angle_deg(out.rotation, rot) < 1.0
            assert _direction_deg(out.translation, t) < 1.0
            # Close to the answer with the outliers masked out by hand (weight 0).
            clean = _solve(u1, u2, 0, 1, dtype, weights=(~bad).astype(np.float64), seed=seed)
            assert _angle_deg(out.rotation, np.asarray(clean.rotation, np.float64)) < 0.2


def test_vmap_over_camera_pairs_matches_single_pairs():
    pairs = [(0, 1), (1, 2), (3, 1)]
    data = [_data(i, j, noise=0.5, outliers=0.2, seed=k) for k, (i, j) in enumerate(pairs)]
    u1 = jnp.asarray(np.stack([d[0] for d in data]), jnp.float32)
    u2 = jnp.asarray(np.stack([d[1] for d in data]), jnp.float32)
    k1 = jnp.asarray(np.stack([KS[i] for i, _ in pairs]), jnp.float32)
    k2 = jnp.asarray(np.stack([KS[j] for _, j in pairs]), jnp.float32)
    base = jnp.asarray([np.linalg.norm(CEN[i] - CEN[j]) for i, j in pairs], jnp.float32)
    keys = jax.vmap(jax.random.key)(jnp.arange(3))

    def one(a, b, ka, kb, bl, key):
        return rp.relative_pose(a, b, ka, kb, baseline=bl, key=key)

    batched = jax.jit(jax.vmap(one))(u1, u2, k1, k2, base, keys)
    for n, (i, j) in enumerate(pairs):
        rot, t = _truth(i, j)
        single = _solve(data[n][0], data[n][1], i, j, "float32", seed=n)
        assert int(batched.status[n]) == Status.CONVERGED
        assert _angle_deg(batched.rotation[n], rot) < 1.0
        assert _direction_deg(batched.translation[n], t) < 1.0
        assert _angle_deg(np.asarray(batched.rotation[n], np.float64),
                          np.asarray(single.rotation, np.float64)) < 1e-2
        assert np.mean(np.asarray(batched.inliers[n]) == np.asarray(single.inliers)) > 0.98


def test_traced_maxiter_zero_returns_an_unrefined_start():
    u1, u2, _ = _data(0, 1, noise=1.0, seed=4)
    out = _solve(u1, u2, 0, 1, "float32", maxiter=0)
    assert int(out.iterations) == 0 and int(out.status) == Status.MAX_ITERATIONS
    e = np.asarray(out.essential, np.float64)
    np.testing.assert_allclose(np.linalg.svd(e)[1], [1, 1, 0], atol=1e-5)
    refined = _solve(u1, u2, 0, 1, "float32", maxiter=50)
    assert int(refined.status) == Status.CONVERGED and 0 < int(refined.iterations) < 50
    # The refinement only lowers the MSAC cost at the final threshold (pixels^2).
    assert float(refined.cost) < float(out.cost)
    d = np.abs(_sampson_np(np.asarray(refined.essential, np.float64), u1.reshape(-1, 2),
                           u2.reshape(-1, 2), KS[0], KS[1]))
    np.testing.assert_allclose(float(refined.cost), np.sum(np.minimum(d, 4.0) ** 2), rtol=1e-3)


def test_traced_bad_inputs_report_non_finite():
    u1, u2, _ = _data(0, 1)
    nan_u1 = u1.copy()
    nan_u1[0, 0] = np.nan
    out = _SOLVE(jnp.asarray(nan_u1, jnp.float32), jnp.asarray(u2, jnp.float32),
                 jnp.asarray(KS[0], jnp.float32), jnp.asarray(KS[1], jnp.float32),
                 weights=jnp.ones((NUM_FRAMES, 16), jnp.float32), baseline=jnp.float32(7.0),
                 key=jax.random.key(0), maxiter=jnp.int32(50))
    assert int(out.status) == Status.NON_FINITE and np.isnan(np.asarray(out.rotation)).all()
    # The same NaN with weight 0 is simply excluded (masked before any arithmetic).
    w = np.ones((NUM_FRAMES, 16))
    w[0, 0] = 0
    masked = _solve(nan_u1, u2, 0, 1, "float32", weights=w)
    assert int(masked.status) == Status.CONVERGED and not bool(masked.inliers[0, 0])
    # Fewer than 8 positive weights can only be seen at run time under jit.
    few = np.zeros((NUM_FRAMES, 16))
    few[0, :7] = 1
    out = _solve(u1, u2, 0, 1, "float32", weights=few)
    assert int(out.status) == Status.NON_FINITE and np.isnan(np.asarray(out.translation)).all()


# ----------------------------------------------------------------------------------------
# Building blocks.
# ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype, tol", [("float32", 2e-3), ("float64", 1e-9)])
def test_eight_point_matches_hartley_zisserman_numpy(dtype, tol):
    u1, u2, _ = _data(1, 2, noise=2.0, seed=5)
    u1, u2 = u1.reshape(-1, 2)[:40], u2.reshape(-1, 2)[:40]
    eight_point = jax.jit(rp.essential_eight_point)
    with _x64(dtype):
        k1, k2 = KS[1].astype(dtype), KS[2].astype(dtype)
        ref = _eight_point_hz(u1, u2, KS[1], KS[2])
        got = np.asarray(eight_point(u1.astype(dtype), u2.astype(dtype), k1, k2,
                                     weights=np.ones(40, dtype)))
        assert min(np.abs(got - ref).max(), np.abs(got + ref).max()) < tol
        # Integer weights are repeated points; weight 0 drops a point (its pixels may be NaN).
        w = np.tile([0.0, 1.0, 2.0, 3.0], 10)
        rep = np.repeat(np.arange(40), w.astype(int))
        ref_w = _eight_point_hz(u1[rep], u2[rep], KS[1], KS[2])
        u1_nan = u1.copy()
        u1_nan[w == 0] = np.nan
        got_w = np.asarray(eight_point(u1_nan.astype(dtype), u2.astype(dtype), k1, k2,
                                       weights=w.astype(dtype)))
        assert min(np.abs(got_w - ref_w).max(), np.abs(got_w + ref_w).max()) < tol


def test_sampson_distance_and_fundamental_match_numpy():
    rng = np.random.default_rng(6)
    e = _skew_np(rng.normal(size=3)) @ Rotation.random(random_state=6).as_matrix()
    u1, u2 = rng.uniform(0, 1000, size=(2, 30, 2))
    sampson = jax.jit(rp.sampson_distance)
    with jax.enable_x64(True):
        got = np.asarray(sampson(e, u1, u2, KS[0], KS[2]))
        np.testing.assert_allclose(got, np.abs(_sampson_np(e, u1, u2, KS[0], KS[2])), rtol=1e-10)
        f = np.asarray(rp.fundamental_from_essential(e, KS[0], KS[2]))
        np.testing.assert_allclose(f, np.linalg.inv(KS[2]).T @ e @ np.linalg.inv(KS[0]), rtol=1e-12)
    # float32 stays accurate in pixels (it works in normalised coordinates).
    f32 = [a.astype(np.float32) for a in (e, u1, u2, KS[0], KS[2])]
    np.testing.assert_allclose(np.asarray(sampson(*f32)), got, rtol=1e-3, atol=1e-3)


def test_decomposition_candidates_and_cheirality():
    rot, t = _truth(2, 3)
    e = _skew_np(t / np.linalg.norm(t)) @ rot
    with jax.enable_x64(True):
        rots, trans = map(np.asarray, rp.decompose_essential(e))
        u1, u2, _ = _data(2, 3)
        triangulate = jax.jit(rp.triangulate_midpoint)
        front = []
        for r_c, t_c in zip(rots, trans):
            np.testing.assert_allclose(np.linalg.det(r_c), 1.0, atol=1e-12)
            np.testing.assert_allclose(np.linalg.norm(t_c), 1.0, atol=1e-12)
            cand = _skew_np(t_c) @ r_c
            assert min(np.abs(cand - e).max(), np.abs(cand + e).max()) < 1e-12
            pts = np.asarray(triangulate(u1, u2, KS[2], KS[3], r_c, t_c)).reshape(-1, 3)
            depth2 = (pts @ r_c.T + t_c)[:, 2]
            front.append(int(np.sum((pts[:, 2] > 0) & (depth2 > 0))))
        # Exactly one candidate puts the walker in front of both cameras: the true one.
        assert sorted(front) == [0, 0, 0, 320]
        winner = int(np.argmax(front))
        assert _angle_deg(rots[winner], rot) < 1e-9
        np.testing.assert_allclose(trans[winner], t / np.linalg.norm(t), atol=1e-12)
        # Triangulation with the metric translation gives the true camera-1 points (metres).
        pts = np.asarray(triangulate(u1, u2, KS[2], KS[3], rot, t))
        np.testing.assert_allclose(pts, (POINTS - CEN[2]) @ ROT[2].T, atol=1e-9)


def test_camera_conversions_round_trip():
    with jax.enable_x64(True):
        cams = camera.virtual_cameras(4, dtype=jnp.float64)
        cam1 = jax.tree.map(lambda a: a[1], cams)
        cam3 = jax.tree.map(lambda a: a[3], cams)
        rot, t = rp.relative_pose_from_cameras(cam1, cam3)
        rot_np, t_np = _truth(1, 3)
        np.testing.assert_allclose(np.asarray(rot), rot_np, atol=1e-12)
        np.testing.assert_allclose(np.asarray(t), t_np, atol=1e-12)
        rebuilt = rp.camera_from_relative_pose(cam1, rot_np, t_np)
        np.testing.assert_allclose(np.asarray(rebuilt.rotation), ROT[3], atol=1e-12)
        np.testing.assert_allclose(np.asarray(rebuilt.centre), CEN[3], atol=1e-12)
        # The rebuilt camera reprojects the scene like the real one.
        np.testing.assert_allclose(np.asarray(camera.project_camera(jnp.asarray(POINTS), rebuilt)),
                                   _project_np(POINTS, ROT[3], CEN[3], KS[3]), atol=1e-8)
        k = rp.intrinsic_matrix(cams.focal, cams.principal)
        np.testing.assert_allclose(np.asarray(k), KS, atol=1e-12)


def test_refinement_carry_is_stable_and_budget_static_or_traced():
    u1, u2, _ = _data(0, 1, noise=1.0, outliers=0.2, seed=7)
    c = rp.correspondences(u1.astype(np.float32), u2.astype(np.float32),
                           KS[0].astype(np.float32), KS[1].astype(np.float32))
    config = rp.RelativePoseConfig()
    # Start 1 degree off the truth: the graduated loop must pull it back.
    rot, t = _truth(0, 1)
    start = Rotation.from_rotvec([0.01, -0.01, 0.005]).as_matrix() @ rot
    state = rp.init_state(c, start.astype(np.float32), t.astype(np.float32), config=config)
    assert float(state.threshold) == config.coarse_threshold

    def step(s):
        return rp.update(c, s, config=config)[0]

    # Shapes and dtypes after one and two steps, and under a cond, equal the initial ones.
    for fn in (step, lambda s: step(step(s)), lambda s: jax.lax.cond(True, step, lambda x: x, s)):
        shapes = jax.eval_shape(fn, state)
        assert jax.tree.structure(shapes) == jax.tree.structure(state)
        for a, b in zip(jax.tree.leaves(shapes), jax.tree.leaves(state)):
            assert a.shape == b.shape and a.dtype == b.dtype

    @jax.jit
    def run(budget):
        def update(s):
            return rp.update(c, s, config=config)
        # A static (Python int) budget of 0, as config.maxiter=0 gives, and a traced one;
        # one compile for both.
        return (_loop.iterate(state, update, max_iterations=0),
                _loop.iterate(state, update, max_iterations=budget))

    out_static, out0 = run(jnp.int32(0))
    for o in (out_static, out0):
        assert int(o.iterations) == 0 and int(o.status) == Status.MAX_ITERATIONS
        np.testing.assert_array_equal(np.asarray(o.state.rotation), np.asarray(state.rotation))
    _, out = run(jnp.int32(60))
    assert int(out.status) == Status.CONVERGED
    assert float(out.state.threshold) == config.threshold  # went through every stage
    assert _angle_deg(out.state.rotation, rot) < 1.0


def test_clear_errors():
    u1, u2, _ = _data(0, 1)
    k = KS[0]
    key = jax.random.key(0)
    with pytest.raises(ValueError, match="at least 8"):
        rp.relative_pose(u1[0, :7], u2[0, :7], k, k, key=key)
    with pytest.raises(ValueError, match="`x2`"):
        rp.relative_pose(u1, u2[:5], k, k, key=key)
    with pytest.raises(ValueError, match=r"`x1`.*\(\.\.\., 2\)"):
        rp.relative_pose(np.ones((20, 3)), np.ones((20, 3)), k, k, key=key)
    bad = u1.copy()
    bad[2, 3] = np.nan
    with pytest.raises(ValueError, match="`x1`.*NaN"):
        rp.relative_pose(bad, u2, k, k, key=key)
    few = np.zeros(u1.shape[:-1])
    few[0, :5] = 1
    with pytest.raises(ValueError, match="`weights`.*5"):
        rp.relative_pose(u1, u2, k, k, weights=few, key=key)
    with pytest.raises(ValueError, match="`weights`"):
        rp.relative_pose(u1, u2, k, k, weights=np.ones(7), key=key)
    with pytest.raises(ValueError, match="`k2`"):
        rp.relative_pose(u1, u2, k, np.eye(4), key=key)
    with pytest.raises(ValueError, match="`baseline`"):
        rp.relative_pose(u1, u2, k, k, baseline=-1.0, key=key)
    with pytest.raises(ValueError, match="`key`"):
        rp.relative_pose(u1, u2, k, k)
    with pytest.raises(ValueError, match="threshold"):
        rp.RelativePoseConfig(threshold=0.0)
    with pytest.raises(ValueError, match="coarse_threshold"):
        rp.RelativePoseConfig(threshold=5.0, coarse_threshold=4.0)
    with pytest.raises(ValueError, match="num_starts"):
        rp.RelativePoseConfig(num_starts=0)
