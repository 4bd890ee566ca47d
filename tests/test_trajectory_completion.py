"""Trajectory completion (Li et al. ICCV 2019, Eq. 1): ALM steps, oracle optima, limits.

References, all independent of the JAX code: the stored oracle instances
(``tests/data/trajcomp_cases.npz``, a copy of the shared oracle set: a NumPy ALM and
cvxpy solves of each convex block, see ``tests/data/README.md``), dense NumPy closed forms of each step written here, and
linear interpolation / np.interp for the smoothness limit.
"""

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jpose.solvers import _loop
from jpose.solvers import _trajcomp_data as td
from jpose.solvers import _trajcomp_steps as steps
from jpose.solvers import trajectory_completion as tc

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ORACLE = os.path.join(REPO, "tests", "data", "trajcomp_cases.npz")
X64 = jax.enable_x64  # context manager (jax >= 0.7); jax.experimental.enable_x64 is gone


@pytest.fixture(scope="module", autouse=True)
def _single_threaded_lapack():
    """jaxlib's CPU LAPACK calls OpenBLAS, whose threads thrash on a busy 2-core host
    (10-100x slower); run this module's solves with one BLAS thread (restored after)."""
    with td.single_threaded_lapack():
        yield


@pytest.fixture(scope="module")
def cases():
    with np.load(ORACLE) as data:
        return {k: data[k] for k in data.files}


def _case(cases, c):
    return {k[len(c) + 1:]: v for k, v in cases.items() if k.startswith(c + "_")}


def _laplacian(f):
    d = np.zeros((f, f - 1))
    d[np.arange(f - 1), np.arange(f - 1)] = -1
    d[np.arange(1, f), np.arange(f - 1)] = 1
    return d @ d.T


def _np_objective(x, b, lams):
    ld, lc, le = lams
    return (np.linalg.svd(x, compute_uv=False).sum() + ld * (np.diff(x, axis=1) ** 2).sum()
            + lc * np.linalg.svd(b, compute_uv=False).sum() + le * np.abs(x - x @ b).sum())


def _pad(a, before, after, axis=-1):
    width = [(0, 0)] * a.ndim
    width[axis] = (before, after)
    return np.pad(a, width)


def _mm(a):
    return 1000.0 * a


# ----------------------------------------------------------------------------- unit steps


def test_svt_and_lowrank_svd_match_numpy():
    rng = np.random.default_rng(0)
    with X64(True):
        m = rng.normal(size=(7, 20))
        u, s, vt = np.linalg.svd(m, full_matrices=False)
        expected = (u * np.maximum(s - 1.5, 0)) @ vt
        for method in ("gram", "qr"):
            got, nuc = steps.svt_rows(jnp.asarray(m), 1.5, method=method)
            np.testing.assert_allclose(got, expected, atol=1e-12)
            np.testing.assert_allclose(nuc, s.sum(), rtol=1e-12)
            got_t, _ = steps.svt_rows(jnp.asarray(m.T), 1.5, method=method)  # tall: F < n
            np.testing.assert_allclose(got_t, expected.T, atol=1e-12)
        for f, k in ((40, 9), (6, 9)):  # tall factors (QR route) and short video (dense)
            left, right = rng.normal(size=(f, k)), rng.normal(size=(f, k))
            a = left @ right.T
            ua, sa, va = np.linalg.svd(a)
            t = 0.5 * (sa[2] + sa[3])
            dense_svt = (ua * np.maximum(sa - t, 0)) @ va
            for method in ("gram", "qr"):
                uu, ss, vv, count = steps.svt_lowrank(jnp.asarray(left), jnp.asarray(right), t,
                                                      rank=4, method=method)
                assert int(count) == 3
                np.testing.assert_allclose((uu * ss[None, :]) @ vv.T, dense_svt, atol=1e-10)
                np.testing.assert_allclose(
                    steps.lowrank_fro(jnp.asarray(left), jnp.asarray(right), method=method),
                    np.linalg.norm(a), rtol=1e-10)
            # The budget is reported when exceeded, never silent.
            _, _, _, count = steps.svt_lowrank(jnp.asarray(left), jnp.asarray(right), 0.0,
                                               rank=2, method="qr")
            assert int(count) == min(f, k)


def test_x_step_zero_gradient_on_free_entries_and_pinned_observed():
    """[X G - R] = 0 on the free entries, X = S on Omega exactly (dense NumPy G)."""
    rng = np.random.default_rng(1)
    p, f, kb = 4, 15, 5
    n = 3 * p
    with X64(True):
        observed = rng.random((p, f)) > 0.35
        valid = np.ones(f)
        valid[-2:] = 0  # two padded frames: pinned at zero, no smoothness link
        observed[:, -2:] = True
        s = rng.normal(size=(n, f)) * np.repeat(observed, 3, axis=0) * valid
        left, right = rng.normal(size=(f, kb)) * 0.3, rng.normal(size=(f, kb)) * 0.3
        left[-2:] = 0
        right[-2:] = 0
        b = steps.Factored(jnp.asarray(0.0), jnp.asarray(left), jnp.asarray(right))
        r = rng.normal(size=(n, f)) * valid
        c = 0.7
        edge = (valid[1:] * valid[:-1]) > 0
        degree = np.r_[0, edge] + np.r_[edge, 0]
        free = ~observed & (valid[None] > 0)
        fi = steps.free_index(jnp.asarray(free), f)
        x = np.asarray(steps.x_step(jnp.asarray(s), jnp.asarray(r), b, jnp.ones(f), c,
                                    jnp.asarray(edge), jnp.asarray(degree, np.float64), fi))
        bd = left @ right.T
        a = np.eye(f) - bd
        lap = np.diag(degree) - np.diag(edge.astype(float), 1) - np.diag(edge.astype(float), -1)
        g = c * lap + a @ a.T + np.eye(f)
        grad = x @ g - r
        rows_free = np.repeat(free, 3, axis=0)
        assert np.abs(grad[rows_free]).max() < 1e-11
        assert np.array_equal(x[~rows_free], s[~rows_free])  # exactly, not approximately


def test_b_step_solves_the_normal_equations():
    rng = np.random.default_rng(2)
    n, f, k = 6, 12, 3
    with X64(True):
        x, x_old, e, y1 = (rng.normal(size=(n, f)) for _ in range(4))
        u, _ = np.linalg.qr(rng.normal(size=(f, k)))
        v, _ = np.linalg.qr(rng.normal(size=(f, k)))
        sv = np.array([2.0, 1.0, 0.5])
        cmat = steps.Spectral(jnp.asarray(0.0), jnp.asarray(u), jnp.asarray(sv), jnp.asarray(v))
        mu = 0.37
        b = steps.b_step(jnp.asarray(x), jnp.asarray(x_old), jnp.asarray(e), jnp.asarray(y1),
                         cmat, mu, jnp.ones(f))
        bd = np.asarray(steps.dense(b, jnp.ones(f)))
        c = (u * sv) @ v.T
        rhs = x.T @ (x - e + y1 / mu) + c - (x_old.T @ y1) / mu  # Y3 = X_old^T Y1_old
        np.testing.assert_allclose((np.eye(f) + x.T @ x) @ bd, rhs, atol=1e-11)


# ----------------------------------------------------------------------------- iterations


def test_invariants_every_iteration_and_carry_is_stable(cases):
    """X = S on Omega exactly and the explicit Y3 update equals X^T Y1 (the invariant)."""
    c = _case(cases, "c0")
    with X64(True):
        cfg = tc.CompletionConfig(tol=1e-7)
        prob = tc.make_problem(jnp.asarray(c["S"]), jnp.asarray(c["mask"]), config=cfg)
        state = tc.init_state(prob, config=cfg)
        step = jax.jit(lambda st: tc.update(st, prob, config=cfg))
        f = c["S"].shape[1]
        y3 = np.zeros((f, f))
        ref_tree = jax.tree.map(lambda a: (a.shape, a.dtype), state)
        deviations = []
        for it in range(40):
            mu = float(state.mu)
            state, _ = step(state)
            b = np.asarray(tc.dense_b(state, prob.valid))
            cm = np.asarray(tc.dense_c(state, prob.valid))
            y3 = y3 + mu * (b - cm)  # step 6, applied to dense matrices
            x = np.asarray(state.x)
            assert np.array_equal(x[c["mask"]], c["S"][c["mask"]])
            deviations.append(np.abs(y3 - x.T @ np.asarray(state.y1)).max())
        assert max(deviations) < 1e-8
        assert jax.tree.map(lambda a: (a.shape, a.dtype), state) == ref_tree
        # C is low rank (the oracle's B* has rank 2) and its rank is counted exactly.
        assert np.linalg.matrix_rank(cm, 1e-9) == int(state.c_count) <= 3


def _kkt(x, b, y1, y4, mask, lams, e):
    """Relative KKT residuals (see oracles README): all ~1 or ~0 at a solution."""
    ld, lc, le = lams
    f = x.shape[1]
    y3 = x.T @ y1
    stat = 2 * ld * x @ _laplacian(f) + y1 @ (np.eye(f) - b).T + y4
    return dict(y4=np.linalg.norm(y4, 2), y4_dual=np.sum(y4 * x) / np.linalg.svd(x, compute_uv=False).sum(),
                y3=np.linalg.norm(y3, 2) / lc,
                y3_dual=np.sum(y3 * b) / (lc * np.linalg.svd(b, compute_uv=False).sum()),
                y1=np.abs(y1).max() / le,
                # Y1 = lam_e sign(E) where E is clearly non-zero (tiny E: finite-mu noise).
                y1_sign=np.abs(y1[np.abs(e) > 1e-4] / le - np.sign(e[np.abs(e) > 1e-4])).max(),
                stationarity=np.abs(stat[~mask]).max())


@pytest.fixture(scope="module")
def full_solutions(cases):
    """c0 (F=30) padded to 50 frames (10 before, 10 after) and c1 (F=50), one vmapped solve;
    a third video is c1 with every entry observed."""
    c0, c1 = _case(cases, "c0"), _case(cases, "c1")
    with X64(True):
        cfg = tc.CompletionConfig(tol=1e-7, max_iterations=5000)
        s = np.stack([_pad(c0["S"], 10, 10), c1["S"], c1["pred"]])
        m = np.stack([_pad(c0["mask"], 10, 10), c1["mask"], np.ones_like(c1["mask"])])
        v = np.stack([_pad(np.ones(30, bool), 10, 10), np.ones(50, bool), np.ones(50, bool)])
        solve = jax.jit(jax.vmap(lambda a, b_, c_: tc.solve(a, b_, config=cfg, frame_mask=c_)))
        out = jax.tree.map(np.asarray, solve(s, m, v))
    return out


def test_full_problem_matches_oracle_float64(cases, full_solutions):
    out = full_solutions
    for i, (c, sl) in enumerate((("c0", slice(10, 40)), ("c1", slice(0, 50)))):
        ref = _case(cases, c)
        x = out.x[i][:, sl]
        assert out.status[i] == _loop.Status.CONVERGED
        assert np.array_equal(x[ref["mask"]], ref["S"][ref["mask"]])  # Omega exactly
        b = np.asarray(out.state.b.left[i] @ out.state.b.right[i].T)[sl, sl]
        obj = _np_objective(x, b, ref["lams"])
        assert obj <= ref["obj_best"] * (1 + 1e-4)
        np.testing.assert_allclose(out.objective[i], obj, rtol=1e-9)
        diff = _mm(x - ref["X_best"])
        assert np.sqrt(np.mean(diff ** 2)) < 0.5 and np.abs(diff).max() < 10
        # Same algorithm as the oracle's NumPy ALM (default settings, tol 1e-7): same
        # iterations, the same iterate -- also for the padded video.
        assert out.iterations[i] == {"c0": 135, "c1": 165}[c]
        np.testing.assert_allclose(x, ref["X_alm"], atol=1e-9)
        if c == "c0":  # padded frames: zero and decoupled
            assert np.all(out.x[i][:, :10] == 0) and np.all(out.x[i][:, 40:] == 0)
        # KKT at finite mu: ~5% (README: 1.0002-1.001, 1.0003-1.0007, 1.03-1.05, 1e-3).
        e = np.asarray(out.state.e[i])[:, sl]
        k = _kkt(x, b, out.state.y1[i][:, sl], out.state.y4[i][:, sl], ref["mask"], ref["lams"], e)
        assert abs(k["y4"] - 1) < 0.05 and abs(k["y4_dual"] - 1) < 0.05
        assert abs(k["y3"] - 1) < 0.05 and abs(k["y3_dual"] - 1) < 0.05
        assert k["y1"] < 1.06 and k["y1_sign"] < 0.08, k
        assert k["stationarity"] < 5e-3


def test_all_observed_returns_s_exactly(cases, full_solutions):
    c1 = _case(cases, "c1")
    assert np.array_equal(full_solutions.x[2], c1["pred"])


def test_full_problem_float32(cases):
    c = _case(cases, "c1")
    cfg = tc.CompletionConfig(tol=1e-5, max_iterations=3000)
    out = jax.jit(lambda a, b_: tc.solve(a, b_, config=cfg))(
        jnp.asarray(c["S"], jnp.float32), jnp.asarray(c["mask"]))
    x = np.asarray(out.x, np.float64)
    assert out.x.dtype == jnp.float32 and int(out.status) == _loop.Status.CONVERGED
    assert np.array_equal(np.asarray(out.x)[c["mask"]], c["S"].astype(np.float32)[c["mask"]])
    assert float(out.objective) <= c["obj_best"] * (1 + 1e-3)
    diff = _mm(x - c["X_best"])
    assert np.sqrt(np.mean(diff ** 2)) < 1.0 and np.abs(diff).max() < 15


# ----------------------------------------------------------------------------- blocks


def test_block_o1_b_frozen(cases):
    c = _case(cases, "c0")
    with X64(True):
        cfg = tc.CompletionConfig(freeze="b", tol=1e-7, max_iterations=5000)
        out = jax.jit(lambda a, m, b0: tc.solve(a, m, config=cfg, b0=b0))(c["S"], c["mask"], c["B0"])
        x = np.asarray(out.x)
        obj = _np_objective(x, c["B0"], c["lams"])
        assert int(out.status) == _loop.Status.CONVERGED
        assert abs(obj - c["obj_O1"]) / c["obj_O1"] < 1e-6
        assert np.abs(_mm(x - c["X_O1"])).max() < 0.5


def test_block_o2_x_frozen_is_the_lrr_problem(cases):
    c = _case(cases, "c0")
    with X64(True):
        cfg = tc.CompletionConfig(freeze="x", tol=1e-7, max_iterations=5000)
        x0 = c["X0_O2"]
        out = jax.jit(lambda a, m: tc.solve(a, m, config=cfg))(x0, np.ones(x0.shape, bool))
        assert np.array_equal(np.asarray(out.x), x0)
        f = x0.shape[1]
        b = np.asarray(tc.dense_b(out.state, jnp.ones(f)))
        obj = _np_objective(x0, b, c["lams"])
        assert abs(obj - c["obj_O2"]) / c["obj_O2"] < 1e-5
        np.testing.assert_allclose(float(out.objective), obj, rtol=1e-9)


def test_block_o3_and_interpolation_limit(cases):
    """lam_c = lam_e = 0 is convex (O3); with lam_d = 1e3 it is linear interpolation."""
    with X64(True):
        ref = _case(cases, "c1")
        cfg = tc.CompletionConfig(lambda_c=0.0, lambda_e=0.0, tol=1e-8, max_iterations=20000)
        out = tc.solve(ref["S"], ref["mask"], config=cfg)
        x = np.asarray(out.x)
        obj = _np_objective(x, np.eye(x.shape[1]), (2.0, 0.0, 0.0))
        assert abs(obj - ref["obj_O3"]) / ref["obj_O3"] < 1e-6
        assert np.abs(_mm(x - ref["X_O3"])).max() < 0.5
        cfg = tc.CompletionConfig(lambda_d=1e3, lambda_c=0.0, lambda_e=0.0, tol=1e-8,
                                  max_iterations=20000)
        x = np.asarray(tc.solve(ref["S"], ref["mask"], config=cfg).x)
        interp = ref["S"].copy()
        frames = np.arange(x.shape[1])
        for r in range(x.shape[0]):
            ob = ref["mask"][r]
            interp[r, ~ob] = np.interp(frames[~ob], frames[ob], ref["S"][r, ob])
        low = ~ref["mask"][::3]  # (P, F)
        err = lambda y: np.linalg.norm((y - ref["truth"]).reshape(17, 3, -1), axis=1)[low].mean()
        assert abs(_mm(err(x) - err(interp))) < 0.1
        assert np.abs(_mm(x - interp)).max() < 1.0


def test_units_equivariance(cases):
    """The same (metre) lambdas on mm data give X_mm = 1000 X_m and obj_mm = 1000 obj_m."""
    c = _case(cases, "c0")
    with X64(True):
        poses = np.asarray(tc.matrix_to_poses(jnp.asarray(c["S"]), 17))
        conf = np.where(c["mask"][::3].T, 0.9, 0.1)
        out_m = tc.complete_trajectories(poses, conf, config=tc.CompletionConfig(tol=1e-7))
        out_mm = tc.complete_trajectories(1000 * poses, conf,
                                          config=tc.CompletionConfig(tol=1e-7, units="mm"))
        assert np.abs(np.asarray(out_mm.poses) - 1000 * np.asarray(out_m.poses)).max() < 1e-6
        x_m = np.asarray(tc.poses_to_matrix(out_m.poses))
        b = np.asarray(tc.dense_b(out_m.state, jnp.ones(30)))
        obj_m = float(tc.objective(x_m, b))
        obj_mm = float(tc.objective(1000 * x_m, b, units="mm"))
        np.testing.assert_allclose(obj_mm, 1000 * obj_m, rtol=1e-12)
        np.testing.assert_allclose(obj_m, _np_objective(x_m, b, c["lams"]), rtol=1e-10)


# ----------------------------------------------------------------------------- solver contract


def test_rank_budget_overflow_is_reported(cases):
    c = _case(cases, "c0")  # rank(C) reaches 2 on this case
    poses = np.asarray(tc.matrix_to_poses(jnp.asarray(c["S"], jnp.float32), 17))
    conf = np.where(c["mask"][::3].T, 0.9, 0.1)
    with pytest.warns(RuntimeWarning, match="c_rank"):
        out = tc.complete_trajectories(poses, conf, config=tc.CompletionConfig(c_rank=1))
    assert bool(out.state.c_overflow) and int(out.state.c_count) >= 2


def test_budget_traced_zero_and_non_finite_status(cases):
    c = _case(cases, "c0")
    with X64(True):
        cfg = tc.CompletionConfig()
        run = jax.jit(lambda a, m, k: tc.solve(a, m, config=cfg, max_iterations=k))
        out = run(c["S"], c["mask"], jnp.int32(0))
        assert int(out.status) == _loop.Status.MAX_ITERATIONS and int(out.iterations) == 0
        assert np.array_equal(np.asarray(out.x), np.where(c["mask"], c["S"], 0))
        out = run(c["S"], c["mask"], jnp.int32(7))
        assert int(out.status) == _loop.Status.MAX_ITERATIONS and int(out.iterations) == 7
        bad = c["S"].copy()
        bad[3, 4] = np.nan  # traced input: reported, not silently propagated
        assert c["mask"][3, 4]
        out = run(bad, c["mask"], jnp.int32(50))
        assert int(out.status) == _loop.Status.NON_FINITE
    with pytest.raises(ValueError, match="s contains 1 NaN"):
        tc.solve(bad, c["mask"])
    with pytest.raises(ValueError, match="no observed"):
        tc.solve(c["S"], np.zeros_like(c["mask"]))
    with pytest.raises(ValueError, match="mask: expected shape"):
        tc.solve(c["S"], c["mask"][:, :5])
    with pytest.raises(ValueError, match="units"):
        tc.CompletionConfig(units="cm")
    with pytest.raises(ValueError, match="confidence: expected shape"):
        tc.complete_trajectories(np.zeros((5, 17, 3)), np.zeros((5, 16)))


# ----------------------------------------------------------------------------- quality


@pytest.fixture(scope="module")
def walking_solutions():
    """Corrupted walks (oracle README 3) of 100 and 300 frames, seeds 11-13, solved in one
    vmapped batch per length."""
    out = {}
    for frames in (100, 300):
        data = [td.corrupt(td.walking(frames, s), s) for s in (11, 12, 13)]
        with X64(True):
            res = tc.complete_trajectories(np.stack([d.poses for d in data]),
                                           np.stack([d.confidence for d in data]),
                                           config=tc.CompletionConfig(tol=1e-5))
        out[frames] = (data, jax.tree.map(np.asarray, res))
    return out


@pytest.mark.parametrize("frames", [100, 300])
def test_quality_beats_linear_interpolation(frames, walking_solutions):
    """Oracle README 5.6: >= 5 mm better than interpolation on every seed, >= 8 mm mean."""
    data, out = walking_solutions[frames]
    gains = []
    for i, d in enumerate(data):
        low = d.confidence <= 0.5
        ours = td.mpjpe(out.poses[i], d.truth, low)
        interp = td.mpjpe(td.interpolate(d.poses, ~low), d.truth, low)
        gains.append(_mm(interp - ours))
    assert np.all(out.status == _loop.Status.CONVERGED)
    assert np.all((out.iterations > 50) & (out.iterations < 130))  # README: ~80-90
    assert min(gains) >= 5 and np.mean(gains) >= 8, gains


def test_windowed_close_to_full(walking_solutions):
    data, full = walking_solutions[300]
    d = data[1]
    low = d.confidence <= 0.5
    with X64(True):
        win = tc.complete_trajectories(d.poses, d.confidence,
                                       config=tc.CompletionConfig(window=120, overlap=40))
    full_err = _mm(td.mpjpe(full.poses[1], d.truth, low))
    win_err = _mm(td.mpjpe(np.asarray(win.poses), d.truth, low))
    interp_err = _mm(td.mpjpe(td.interpolate(d.poses, ~low), d.truth, low))
    # Windows of 120 frames see less context than 300: a little worse, still far better
    # than interpolation; the completions differ by a few mm RMS on the filled entries.
    assert win_err < full_err + 3 and win_err < interp_err - 5, (full_err, win_err, interp_err)
    diff = np.linalg.norm(np.asarray(win.poses) - full.poses[1], axis=-1)[low]
    assert _mm(np.sqrt(np.mean(diff ** 2))) < 15
    np.testing.assert_array_equal(np.asarray(win.poses)[~low], d.poses[~low])  # Omega exact
    assert int(win.status) == _loop.Status.CONVERGED


def test_window_layout():
    assert tc.window_starts(100, 120, 40) == (0,)  # one window: the full solve
    for f, w, o in ((300, 120, 40), (10_000, 250, 50), (121, 120, 10)):
        starts = tc.window_starts(f, w, o)
        assert starts[0] == 0 and starts[-1] == f - w
        assert all(b - a <= w - o for a, b in zip(starts, starts[1:]))  # overlap >= o
        weights = tc._window_weights(f, starts, w)
        total = np.zeros(f)
        for s0, wt in zip(starts, weights):
            total[s0:s0 + w] += wt
        np.testing.assert_allclose(total, 1.0, atol=1e-12)
        assert np.all(weights >= 0)


def test_sample_motions_completion_reduces_mpjpe():
    """DeepMimic clips (walk looped x3, dance_a, punch, kick) padded into one batch."""
    samples = pytest.importorskip("jpose.datasets.samples")
    try:
        clips = [np.concatenate([td.sample_clip("walk")] * 3)] + [
            td.sample_clip(n) for n in ("dance_a", "punch", "kick")]
    except samples.SampleDataMissingError:
        pytest.skip("pybullet sample data not installed")
    f = max(len(c) for c in clips)
    data = [td.corrupt(c, 20 + i) for i, c in enumerate(clips)]
    pad = lambda a: np.concatenate([a, np.zeros((f - len(a),) + a.shape[1:])])
    poses = np.stack([pad(d.poses) for d in data])
    conf = np.stack([pad(d.confidence) for d in data])
    valid = np.stack([np.arange(f) < len(c) for c in clips])
    with X64(True):
        out = tc.complete_trajectories(poses, conf, frame_mask=valid)
    errs = []
    for i, d in enumerate(data):
        low = d.confidence <= 0.5
        got = np.asarray(out.poses[i][: len(d.poses)])
        raw, ours = td.mpjpe(d.poses, d.truth, low), td.mpjpe(got, d.truth, low)
        interp = td.mpjpe(td.interpolate(d.poses, ~low), d.truth, low)
        errs.append((raw, interp, ours))
        # The filled-in joints: from ~180 mm (gross errors) to ~25-35 mm; all joints too.
        assert ours < 0.25 * raw, (i, raw, interp, ours)
        assert td.mpjpe(got, d.truth) < td.mpjpe(d.poses, d.truth)
        assert np.all(np.asarray(out.poses[i][len(d.poses):]) == 0)
    raw, interp, ours = np.mean(errs, axis=0)
    # On average over the clips it also beats linear interpolation (not on every clip:
    # on the fast 65-frame punch the two are within 1 mm).
    assert ours < interp, errs


# ----------------------------------------------------------------------------- helpers


def test_confidence_helpers_and_mask():
    h = np.full((2, 5, 4), -30.0)
    h[0, 2, 1] = 30.0  # sharp peak
    h[1] = 0.0  # flat map
    conf = np.asarray(tc.confidence_from_heatmaps(jnp.asarray(h, jnp.float32)))
    np.testing.assert_allclose(conf, [1.0, 1 / 20], rtol=1e-5)
    np.testing.assert_allclose(tc.confidence_from_scores(np.array([-1.0, 0.5, 3.0]), low=0.0,
                                                         high=2.0), [0.0, 0.25, 1.0])
    np.testing.assert_array_equal(tc.observation_mask(np.array([0.2, 0.5, 0.7]), tau=0.5),
                                  [False, False, True])
    with pytest.raises(ValueError, match="heatmaps"):
        tc.confidence_from_heatmaps(np.zeros((4, 4)))


def test_video_bone_lengths_median_ignores_outliers_and_padding():
    truth = td.walking(40, 3)
    true_len = np.linalg.norm(truth[:, 12] - truth[:, 11], axis=-1)  # left upper arm
    assert np.ptp(true_len) < 1e-5  # constant bones: the reference value is exact
    poses = truth.copy()
    poses[5, 12] += 0.5  # gross outlier frames
    poses[17, 12] -= 0.3
    poses = np.concatenate([poses, np.full((5, 17, 3), 9.0)])  # padded garbage
    valid = np.arange(45) < 40
    with X64(True):
        lengths = np.asarray(tc.video_bone_lengths(poses[None], frame_mask=valid[None]))
    names = [b for b in tc._skeleton.get("h36m_17").bone_subset("length_invariant")]
    assert lengths.shape == (1, len(names))
    k = names.index((12, 11))
    np.testing.assert_allclose(lengths[0, k], true_len[0], atol=1e-6)


# ----------------------------------------------------------------------------- launch script


def _launch_module():
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "complete_trajectories", os.path.join(REPO, "launch", "complete_trajectories.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_launch_run_batches_units_and_errors(tmp_path):
    launch = _launch_module()
    data = [td.corrupt(td.walking(40, s), s) for s in (1, 2, 3)]
    poses = np.stack([d.poses for d in data]).astype(np.float32)
    conf = np.stack([d.confidence for d in data]).astype(np.float32)
    np.savez(tmp_path / "in_mm.npz", poses=1000 * poses, confidence=conf)
    cfg = tc.CompletionConfig(units="mm")
    out = launch.run(str(tmp_path / "in_mm.npz"), str(tmp_path / "out.npz"), config=cfg,
                     batch_size=2, progress=False)  # 3 videos in batches of 2 (padded)
    with np.load(tmp_path / "out.npz") as saved:
        assert saved["poses"].shape == poses.shape and saved["poses"].dtype == np.float32
        np.testing.assert_array_equal(saved["status"], out["status"])
        assert saved["iterations"].shape == (3,) and str(saved["units"]) == "mm"
    direct = tc.complete_trajectories(poses[1:], conf[1:])  # metres; same compiled batch
    np.testing.assert_allclose(out["poses"][1:] / 1000, np.asarray(direct.poses), atol=2e-5)
    np.testing.assert_array_equal(out["status"], np.zeros(3))
    # Bad files: clear errors naming the problem; no output written.
    np.savez(tmp_path / "nokey.npz", poses=poses)
    with pytest.raises(ValueError, match="missing key 'confidence'"):
        launch.run(str(tmp_path / "nokey.npz"), str(tmp_path / "x.npz"), progress=False)
    np.savez(tmp_path / "shape.npz", poses=poses[..., :2], confidence=conf)
    with pytest.raises(ValueError, match=r"'poses' must have shape \(F, P, 3\)"):
        launch.run(str(tmp_path / "shape.npz"), str(tmp_path / "x.npz"), progress=False)
    np.savez(tmp_path / "conf.npz", poses=poses, confidence=conf[:, :5])
    with pytest.raises(ValueError, match="'confidence' must have shape"):
        launch.run(str(tmp_path / "conf.npz"), str(tmp_path / "x.npz"), progress=False)
    with pytest.raises(FileNotFoundError):
        launch.run(str(tmp_path / "absent.npz"), str(tmp_path / "x.npz"), progress=False)
    assert not (tmp_path / "x.npz").exists()


def test_launch_refuses_implausible_units_with_a_hint(tmp_path):
    launch = _launch_module()
    d = td.corrupt(td.walking(20, 4), 4)
    spread = launch.joint_spread(d.poses[None], d.confidence[None], np.ones((1, 20), bool),
                                 tau=0.5)
    assert 0.1 < spread < 1.0  # a human in metres
    np.savez(tmp_path / "mm.npz", poses=1000 * d.poses, confidence=d.confidence)
    np.savez(tmp_path / "m.npz", poses=d.poses, confidence=d.confidence)
    np.savez(tmp_path / "km.npz", poses=1e6 * d.poses, confidence=d.confidence)
    out = tmp_path / "out.npz"
    with pytest.raises(ValueError, match=r"mm\.npz: 'poses' have a median joint distance .* "
                                         r"m, implausible .* pass --units=mm$"):
        launch.run(str(tmp_path / "mm.npz"), str(out), progress=False)
    with pytest.raises(ValueError, match=r"m\.npz: .* mm, implausible .* pass --units=m$"):
        launch.run(str(tmp_path / "m.npz"), str(out),
                   config=tc.CompletionConfig(units="mm"), progress=False)
    with pytest.raises(ValueError, match="neither metres nor millimetres fit"):
        launch.run(str(tmp_path / "km.npz"), str(out), progress=False)
    assert not out.exists()
    # Through main (what the command line runs): one line, no traceback.
    from absl import flags

    fv = flags.FlagValues()
    launch.define_flags(fv)
    fv(["complete_trajectories.py", f"--input={tmp_path / 'mm.npz'}", f"--output={out}"])
    with pytest.raises(SystemExit) as e:
        launch.main(["complete_trajectories.py"], flag_values=fv)
    message = str(e.value.code)
    assert message.startswith("complete_trajectories.py: error: ") and "\n" not in message
    assert "mm.npz" in message and message.endswith("pass --units=mm")
    (tmp_path / "empty.npz").write_bytes(b"")
    fv.input = str(tmp_path / "empty.npz")
    with pytest.raises(SystemExit, match=r"^complete_trajectories\.py: error: input '.*empty"
                                         r"\.npz' is empty \(0 bytes\)$"):
        launch.main(["complete_trajectories.py"], flag_values=fv)
    assert not out.exists()


def test_launch_never_writes_non_finite_poses(tmp_path, monkeypatch):
    launch = _launch_module()
    data = [td.corrupt(td.walking(12, s), s) for s in (1, 2, 3)]
    np.savez(tmp_path / "in.npz", poses=np.stack([d.poses for d in data]),
             confidence=np.stack([d.confidence for d in data]))
    out = tmp_path / "out.npz"
    out.write_bytes(b"previous output")

    def diverged(poses, confidence, *, config, frame_mask):  # the second video blows up
        poses = np.array(poses)
        status = np.zeros(poses.shape[0], np.int32)
        poses[1, 3] = np.nan
        status[1] = _loop.Status.NON_FINITE
        return tc.CompletionResult(poses, status, np.ones_like(status),
                                   np.zeros(poses.shape[0]), None)

    monkeypatch.setattr(tc, "complete_trajectories", diverged)
    with pytest.raises(ValueError, match=r"^1 of 3 video\(s\) gave non-finite poses \(status "
                                         r"non-finite; video index 1\); nothing written"):
        launch.run(str(tmp_path / "in.npz"), str(out), batch_size=3, progress=False)
    assert out.read_bytes() == b"previous output"
    assert sorted(os.listdir(tmp_path)) == ["in.npz", "out.npz"]  # no temp file left


def test_launch_script_end_to_end(tmp_path):
    import subprocess
    import sys

    d = td.corrupt(td.walking(30, 5), 5)  # one video (F, P, 3): scalar status
    np.savez(tmp_path / "in.npz", poses=d.poses, confidence=d.confidence)
    proc = subprocess.run(
        [sys.executable, os.path.join(REPO, "launch", "complete_trajectories.py"),
         f"--input={tmp_path / 'in.npz'}", f"--output={tmp_path / 'out.npz'}", "--tau=0.5"],
        capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    with np.load(tmp_path / "out.npz") as out:
        assert out["poses"].shape == d.poses.shape and out["status"].shape == ()
        low = d.confidence <= 0.5
        assert td.mpjpe(out["poses"], d.truth, low) < 0.3 * td.mpjpe(d.poses, d.truth, low)
    proc = subprocess.run(
        [sys.executable, os.path.join(REPO, "launch", "complete_trajectories.py"),
         f"--input={tmp_path / 'missing.npz'}", f"--output={tmp_path / 'o.npz'}"],
        capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0 and "does not exist" in proc.stderr
