"""NRSfM dictionary learning (jpose.solvers.nrsfm) against independent references.

* Sparse coding: scipy's NNLS on the explicitly built (NumPy) design matrix, via the exact
  reduction of a non-negative lasso with full-column-rank A to an NNLS problem.
* Learning: data generated from a known hierarchical dictionary under random rotations
  is recovered up to one global rotation and one global reflection (orthographic NRSfM
  cannot tell a scene from its depth-reversed mirror image: S -> S Z, R -> Z R Z with
  Z = diag(1, 1, -1) leaves every projection unchanged). We therefore pick the better of
  the two reflections *once for the whole data set*, and also report per-pose P-MPJPE
  with ``allow_reflection=True``.
* The objective history never increases (full batch, and mini-batches in float64).
* Sample mocap (DeepMimic clips, h36m_17, random orthographic views): P-MPJPE of the
  reconstructions against a flat-depth baseline.

Compiles dominate the run time: tests share configs and shapes so that ``jit`` caches hit.
"""

import importlib.util
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.optimize import nnls
from scipy.spatial.transform import Rotation

from jpose import metrics, skeleton
from jpose.datasets import samples
from jpose.solvers import _nrsfm_ops as ops
from jpose.solvers import nrsfm
from jpose.solvers._loop import Status

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_spec = importlib.util.spec_from_file_location(
    "learn_dictionary_launch", os.path.join(REPO, "launch", "learn_dictionary.py"))
launch = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(launch)

SYN_CONFIG = nrsfm.DictionaryLearningConfig(sizes=(20, 5), sparsity=1e-4, maxiter=200)


# ---------------------------------------------------------------------------------------
# Data.
# ---------------------------------------------------------------------------------------


def hierarchical_data(n, *, joints=17, sizes=(20, 5), seed=0, dictionaries=None):
    """Shapes from a known D_1 (signed, centred atoms near a base shape) and D_2 >= 0."""
    rng = np.random.default_rng(seed)
    if dictionaries is None:
        base = rng.normal(size=(joints, 3)) * np.array([0.3, 0.3, 0.8])
        base -= base.mean(0)
        d1 = base.reshape(-1)[:, None] + 0.5 * np.linalg.norm(base) / np.sqrt(
            3 * joints) * rng.normal(size=(3 * joints, sizes[0]))
        d1 = d1.reshape(joints, 3, -1)
        d1 = (d1 - d1.mean(0, keepdims=True)).reshape(3 * joints, -1)
        d1 /= np.linalg.norm(d1, axis=0)
        mask = rng.uniform(size=sizes) < 0.3
        mask[rng.integers(0, sizes[0], sizes[1]), np.arange(sizes[1])] = True
        d2 = rng.uniform(0.1, 1.0, size=sizes) * mask
        d2 /= np.linalg.norm(d2, axis=0)
        dictionaries = (d1, d2)
    d1, d2 = dictionaries
    codes = rng.uniform(0.5, 1.5, (n, sizes[1])) * (rng.uniform(size=(n, sizes[1])) < 0.5)
    codes[np.arange(n), rng.integers(0, sizes[1], n)] += 1.0
    shapes = (codes @ (d1 @ d2).T).reshape(n, joints, 3)
    rotations = Rotation.random(n, random_state=seed + 1).as_matrix()
    camera = np.einsum("npc,nac->npa", shapes, rotations)
    return dict(poses_2d=camera[..., :2].astype(np.float32), shapes=shapes.astype(np.float32),
                camera=camera.astype(np.float32), dictionaries=dictionaries)


def camera_frame_error(poses_3d, rotations, camera):
    """Mean centred camera-frame joint error for both global depth signs: (+1, -1)."""
    rec = np.asarray(nrsfm.to_camera_frame(poses_3d, rotations))
    rec = rec - rec.mean(1, keepdims=True)
    truth = camera - camera.mean(1, keepdims=True)
    return [float(np.linalg.norm(rec * np.array([1, 1, s]) - truth, axis=-1).mean())
            for s in (1, -1)]


def globally_reflected_p_mpjpe(pred, target):
    """P-MPJPE (no per-pose reflection) of ``pred`` and of its one global mirror image."""
    return [float(metrics.p_mpjpe(pred * np.array([1, 1, s], pred.dtype), target).mean())
            for s in (1, -1)]


@pytest.fixture(scope="module")
def synthetic():
    data = hierarchical_data(200)
    result = nrsfm.learn_dictionary(data["poses_2d"], config=SYN_CONFIG, rng=0)
    return data, result


# ---------------------------------------------------------------------------------------
# Learning.
# ---------------------------------------------------------------------------------------


def test_known_dictionary_recovered_up_to_global_rotation_and_reflection(synthetic):
    data, result = synthetic
    rms = float(np.sqrt(np.mean(data["camera"] ** 2)))
    # Camera-frame poses need no rotation alignment at all, only the global depth sign.
    errors = camera_frame_error(result.poses_3d, result.rotations, data["camera"])
    assert min(errors) < 0.01 * rms, errors
    assert max(errors) > 0.3 * rms, errors  # the other reflection is a different scene
    # Canonical shapes: P-MPJPE after the one global reflection, and per pose.
    p = globally_reflected_p_mpjpe(np.asarray(result.poses_3d), data["shapes"])
    assert min(p) < 0.01 * rms, p
    assert float(metrics.p_mpjpe(result.poses_3d, data["shapes"],
                                 allow_reflection=True).mean()) < 0.01 * rms
    # Reprojection, cameras and the constraints of the model.
    centred = data["poses_2d"] - data["poses_2d"].mean(1, keepdims=True)
    residual = np.asarray(nrsfm.project(result.poses_3d, result.rotations)) - centred
    assert np.sqrt(np.mean(residual ** 2)) < 0.005 * rms
    r = np.asarray(result.rotations, np.float64)
    np.testing.assert_allclose(r @ np.swapaxes(r, 1, 2), np.broadcast_to(np.eye(3), r.shape),
                               atol=1e-5)
    np.testing.assert_allclose(np.linalg.det(r), 1.0, atol=1e-5)
    d1, d2 = (np.asarray(d) for d in result.dictionaries)
    assert d1.shape == (51, 20) and d2.shape == (20, 5)
    assert np.all(np.linalg.norm(d1, axis=0) <= 1 + 1e-5)
    assert np.all(np.linalg.norm(d2, axis=0) <= 1 + 1e-5) and np.all(d2 >= 0)
    np.testing.assert_allclose(d1.reshape(17, 3, 20).mean(0), 0, atol=1e-6)
    assert np.all(np.asarray(result.codes) >= 0)
    np.testing.assert_allclose(nrsfm.shapes_from_codes(result.dictionaries, result.codes),
                               result.poses_3d, atol=1e-5 * rms)


def test_objective_never_increases(synthetic):
    _, result = synthetic
    iterations = int(result.iterations)
    assert int(result.status) in (Status.CONVERGED, Status.MAX_ITERATIONS)
    history = np.asarray(result.objective_history)
    assert history.shape == (SYN_CONFIG.maxiter + 1,)
    run, rest = history[:iterations + 1], history[iterations + 1:]
    assert np.all(np.isfinite(run)) and np.all(np.isnan(rest))
    assert np.all(np.diff(run) <= 0), np.max(np.diff(run))
    assert run[-1] < 1e-3 * run[0]
    assert float(result.objective) == run[-1]


def test_objective_value_matches_numpy(synthetic):
    data, result = synthetic
    d1, d2 = (np.asarray(d, np.float64) for d in result.dictionaries)
    scale = float(result.scale)
    w = data["poses_2d"].astype(np.float64)
    w = w - w.mean(1, keepdims=True)
    assert scale == pytest.approx(np.sqrt(np.mean(w * w)), rel=1e-5)  # the RMS coordinate
    w = w / scale
    codes = np.asarray(result.codes, np.float64) / scale
    r = np.asarray(result.rotations, np.float64)
    shapes = (codes @ (d1 @ d2).T).reshape(-1, 17, 3)
    reprojection = 0.5 * np.sum((w - np.einsum("npc,nac->npa", shapes, r[:, :2])) ** 2,
                                axis=(1, 2))
    penalty = 1e-4 * (np.abs(codes @ d2.T).sum(1) + np.abs(codes).sum(1))
    assert float(result.objective) == pytest.approx(np.mean(reprojection + penalty), rel=1e-4)


def test_budget_zero_and_traced_budget_reuse_one_compile(synthetic):
    data, result = synthetic
    zero = nrsfm.learn_dictionary(data["poses_2d"], config=SYN_CONFIG, rng=0,
                                  max_iterations=jnp.int32(0))
    assert int(zero.iterations) == 0 and int(zero.status) == Status.MAX_ITERATIONS
    # Iteration 0 is the initialisation: rigid-factorisation cameras, zero codes.
    np.testing.assert_array_equal(zero.codes, 0)
    assert np.isnan(zero.objective_history[1]) and np.isfinite(zero.objective_history[0])
    three = nrsfm.learn_dictionary(data["poses_2d"], config=SYN_CONFIG, rng=0,
                                   max_iterations=3)
    assert int(three.iterations) == 3
    np.testing.assert_allclose(three.objective_history[:4], result.objective_history[:4],
                               rtol=1e-6)
    # Same key, same result: the run is deterministic.
    np.testing.assert_array_equal(zero.objective_history[0], result.objective_history[0])


def test_minibatches_float64_vmapped_monotone_and_dtype_stable():
    # Two data sets learned at once under vmap (each keeps its own status and count),
    # mini-batches that do not divide N, float64.
    data = [hierarchical_data(70, joints=8, sizes=(6, 3), seed=s) for s in (3, 4)]
    config = nrsfm.DictionaryLearningConfig(sizes=(6, 3), sparsity=(1e-3, 2e-3), maxiter=25,
                                            batch_size=30, dictionary_steps=3,
                                            reseed_every=4, code_maxiter=10, tol=1e-3)
    poses_2d = np.stack([d["poses_2d"] for d in data]).astype(np.float64)
    with jax.enable_x64(True):
        result = jax.vmap(lambda w, key: nrsfm.learn_dictionary(w, config=config, rng=key))(
            jnp.asarray(poses_2d), jax.random.split(jax.random.key(1), 2))
        assert result.poses_3d.dtype == jnp.float64 and result.poses_3d.shape == (2, 70, 8, 3)
        assert all(d.dtype == jnp.float64 for d in result.dictionaries)
        assert result.rotations.dtype == jnp.float64 and result.codes.dtype == jnp.float64
        assert result.status.shape == (2,) and result.iterations.shape == (2,)
        for i in range(2):
            history = np.asarray(result.objective_history[i])[:int(result.iterations[i]) + 1]
            assert np.all(np.diff(history) <= 0) and history[-1] < 0.1 * history[0]
            if int(result.status[i]) == Status.CONVERGED:
                # Converged = relative decrease over one epoch (3 batches) below tol.
                assert history[-4] - history[-1] <= 1e-3 * history[-4]
            else:
                assert int(result.iterations[i]) == 25


def test_sample_mocap_beats_flat_depth_baseline():
    poses = []
    for name in ("walk", "run", "punch", "kick", "dance_a", "jump"):
        x = skeleton.convert(samples.load_deepmimic_clip(name).positions, "deepmimic_16",
                             "h36m_17")
        poses.append(x - x[:, :1])  # root-centred, metres
    poses = np.concatenate(poses).astype(np.float32)
    rotations = Rotation.random(len(poses), random_state=1).as_matrix()
    poses_2d = np.einsum("npc,nac->npa", poses, rotations)[..., :2].astype(np.float32)
    config = nrsfm.DictionaryLearningConfig(maxiter=100)  # default sizes (125, 10)
    result = nrsfm.learn_dictionary(poses_2d, config=config, rng=0)
    flat = np.concatenate([poses_2d, np.zeros_like(poses_2d[..., :1])], axis=-1)
    flat_error = float(metrics.p_mpjpe(flat, poses).mean())
    learned = min(globally_reflected_p_mpjpe(np.asarray(result.poses_3d), poses))
    per_pose = float(metrics.p_mpjpe(result.poses_3d, poses, allow_reflection=True).mean())
    print(f"\nsample mocap, N={len(poses)}: P-MPJPE flat depth {1000 * flat_error:.1f} mm, "
          f"learned (one global reflection) {1000 * learned:.1f} mm, per-pose "
          f"reflection {1000 * per_pose:.1f} mm")
    assert learned < 0.6 * flat_error
    history = np.asarray(result.objective_history)[:int(result.iterations) + 1]
    assert np.all(np.diff(history) <= 0)


def test_reconstruct_new_samples_with_learned_dictionary(synthetic):
    data, result = synthetic
    new = hierarchical_data(40, seed=7, dictionaries=data["dictionaries"])
    rec = nrsfm.reconstruct(new["poses_2d"], result.dictionaries, config=SYN_CONFIG,
                            scale=result.scale)
    rms = float(np.sqrt(np.mean(new["camera"] ** 2)))
    train_sign = int(np.argmin(camera_frame_error(result.poses_3d, result.rotations,
                                                  data["camera"])))
    errors = camera_frame_error(rec.poses_3d, rec.rotations, new["camera"])
    # The learned dictionary fixes the handedness: new samples share the training sign.
    assert errors[train_sign] < 0.02 * rms, errors
    history = np.asarray(rec.objective_history)[:int(rec.iterations) + 1]
    assert np.all(np.diff(history) <= 0)


# ---------------------------------------------------------------------------------------
# Sparse coding.
# ---------------------------------------------------------------------------------------


def tiny_problem(seed=0, n=3, joints=6, sizes=(7, 4)):
    rng = np.random.default_rng(seed)
    d1 = rng.normal(size=(3 * joints, sizes[0]))
    d2 = rng.uniform(size=sizes)
    rotations = Rotation.random(n, random_state=seed).as_matrix()
    codes = rng.uniform(size=(n, sizes[1]))
    shapes = (codes @ (d1 @ d2).T).reshape(n, joints, 3)
    poses_2d = np.einsum("npc,nac->npa", shapes, rotations)[..., :2]
    poses_2d = poses_2d + 0.3 * rng.normal(size=poses_2d.shape) + 5.0  # noise, offset
    return poses_2d, (d1, d2), rotations


def numpy_design(poses_2d, dictionaries, rotation):
    """The centred design matrix and target of one sample, built joint by joint."""
    d1, d2 = dictionaries
    joints = poses_2d.shape[0]
    composite = d1 @ d2
    a = np.zeros((2 * joints, composite.shape[1]))
    for p in range(joints):
        a[2 * p:2 * p + 2] = rotation[:2] @ composite[3 * p:3 * p + 3]
    centre = np.kron(np.eye(joints) - np.full((joints, joints), 1.0 / joints), np.eye(2))
    return centre @ a, centre @ poses_2d.reshape(-1)


def nnls_reference(poses_2d, dictionaries, rotation, sparsity):
    """``min_{x>=0} 1/2||Ax - w||^2 + c^T x`` = ``NNLS(A, w - A (A^T A)^-1 c)`` + const."""
    a, w = numpy_design(poses_2d, dictionaries, rotation)
    c = sparsity[0] * dictionaries[1].sum(0) + sparsity[1]
    u = a @ np.linalg.solve(a.T @ a, c)
    x, _ = nnls(a, w - u)
    layer1 = dictionaries[1] @ x
    objective = (0.5 * np.sum((a @ x - w) ** 2) + sparsity[0] * np.abs(layer1).sum()
                 + sparsity[1] * np.abs(x).sum())
    return x, objective


@pytest.mark.parametrize("sparsity", [(0.0, 0.0), (0.5, 0.2)])
def test_sparse_codes_match_scipy_nnls_float64(sparsity):
    poses_2d, dictionaries, rotations = tiny_problem()
    config = nrsfm.SparseCodingConfig(sparsity=sparsity, maxiter=5000, tol=1e-12)
    with jax.enable_x64(True):
        out = nrsfm.sparse_codes(poses_2d, dictionaries, rotations, config=config)
        assert out.codes.dtype == jnp.float64
        assert int(out.status) == Status.CONVERGED
        for i in range(len(poses_2d)):
            x, objective = nnls_reference(poses_2d[i], dictionaries, rotations[i], sparsity)
            np.testing.assert_allclose(out.codes[i], x, atol=1e-7)
            assert float(out.objective[i]) == pytest.approx(objective, rel=1e-9)
        # The shapes reproject as the docstring says (centred).
        shapes = (np.asarray(out.codes) @ (dictionaries[0] @ dictionaries[1]).T).reshape(
            -1, 6, 3)
        np.testing.assert_allclose(out.poses_3d, shapes - shapes.mean(1, keepdims=True),
                                   atol=1e-9)
    # At least one code is exactly zero with the penalty (the constraint is active).
    if sparsity[1] > 0:
        assert np.any(np.asarray(out.codes) == 0)


def test_sparse_codes_float32_close_to_float64_reference():
    poses_2d, dictionaries, rotations = tiny_problem(seed=1)
    config = nrsfm.SparseCodingConfig(sparsity=(0.5, 0.2), maxiter=2000, tol=1e-5)
    out = nrsfm.sparse_codes(poses_2d.astype(np.float32),
                             tuple(d.astype(np.float32) for d in dictionaries),
                             rotations.astype(np.float32), config=config)
    assert out.codes.dtype == jnp.float32 and int(out.status) == Status.CONVERGED
    for i in range(len(poses_2d)):
        x, objective = nnls_reference(poses_2d[i], dictionaries, rotations[i], (0.5, 0.2))
        np.testing.assert_allclose(out.codes[i], x, atol=2e-3 * max(1.0, np.abs(x).max()))
        assert float(out.objective[i]) == pytest.approx(objective, rel=1e-4)


def test_sparse_codes_leading_axes_jit_vmap_agree():
    poses_2d, dictionaries, rotations = tiny_problem(seed=2, n=6)
    poses_2d, rotations = poses_2d.astype(np.float32), rotations.astype(np.float32)
    dictionaries = tuple(d.astype(np.float32) for d in dictionaries)
    config = nrsfm.SparseCodingConfig(sparsity=0.1, maxiter=300, tol=1e-6)
    flat = nrsfm.sparse_codes(poses_2d, dictionaries, rotations, config=config)
    grid = nrsfm.sparse_codes(poses_2d.reshape(2, 3, 6, 2), dictionaries,
                              rotations.reshape(2, 3, 3, 3), config=config)
    assert grid.codes.shape == (2, 3, 4) and grid.poses_3d.shape == (2, 3, 6, 3)
    np.testing.assert_allclose(grid.codes.reshape(6, 4), flat.codes, rtol=1e-6, atol=1e-6)

    def run(w, r):
        return nrsfm.sparse_codes(w, dictionaries, r, config=config)

    jitted = jax.jit(run)(poses_2d, rotations)
    np.testing.assert_allclose(jitted.codes, flat.codes, rtol=1e-4, atol=1e-4)
    mapped = jax.jit(jax.vmap(run))(poses_2d.reshape(2, 3, 6, 2),
                                    rotations.reshape(2, 3, 3, 3))
    np.testing.assert_allclose(mapped.codes.reshape(6, 4), flat.codes, rtol=1e-4, atol=1e-4)
    assert mapped.status.shape == (2,)


def test_sparse_codes_carry_is_stable_and_budget_zero():
    poses_2d, dictionaries, rotations = tiny_problem(seed=3)
    poses_2d, rotations = poses_2d.astype(np.float32), rotations.astype(np.float32)
    dictionaries = tuple(d.astype(np.float32) for d in dictionaries)
    w = ops.centre_joints(jnp.asarray(poses_2d), axis=1)
    block = ops.centre_joints(ops.basis(dictionaries), axis=0)
    weights = ops.penalty_weights(dictionaries, (0.1, 0.1))
    problem = ops.code_problem(w, block, jnp.asarray(rotations), weights)
    state = ops.init_code_state(problem, jnp.zeros((3, 4), jnp.float32))
    update = ops.code_update(problem, 1e-6)
    once, _ = update(state)
    twice, converged = update(once)
    for a, b in ((state, once), (state, twice)):
        assert jax.tree.structure(a) == jax.tree.structure(b)
        for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
            assert x.shape == y.shape and x.dtype == y.dtype
    assert converged.shape == () and converged.dtype == jnp.bool_
    # Also inside lax.cond (both branches must agree on the carry type).
    jax.jit(lambda s, p: jax.lax.cond(p, lambda t: update(t)[0], lambda t: t, s))(
        state, True)
    config = nrsfm.SparseCodingConfig(sparsity=0.1, maxiter=50)
    init = np.full((3, 4), 0.25, np.float32)
    static = nrsfm.sparse_codes(poses_2d, dictionaries, rotations, config=config,
                                init_codes=init, max_iterations=0)
    traced = jax.jit(lambda m: nrsfm.sparse_codes(
        poses_2d, dictionaries, rotations, config=config, init_codes=init,
        max_iterations=m))(jnp.int32(0))
    for out in (static, traced):
        assert int(out.iterations) == 0 and int(out.status) == Status.MAX_ITERATIONS
        np.testing.assert_array_equal(out.codes, init)
    zero_config = nrsfm.sparse_codes(poses_2d, dictionaries, rotations, init_codes=init,
                                     config=nrsfm.SparseCodingConfig(maxiter=0))
    assert int(zero_config.iterations) == 0


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64])
@pytest.mark.parametrize("blocks", [None, np.array([[0, 3, 1], [2, 4, 0]], np.int32)])
def test_learning_carry_is_stable(dtype, blocks):
    # eval_shape traces the update without compiling it: cheap, and exactly what the
    # while_loop requires (same tree, shapes and dtypes after every step).
    config = nrsfm.DictionaryLearningConfig(sizes=(4, 2), maxiter=5, reseed_every=2)
    rng = np.random.default_rng(0)
    with jax.enable_x64(True):
        w = jnp.asarray(rng.normal(size=(5, 3, 2)), dtype)
        dictionaries = (jnp.asarray(rng.normal(size=(9, 4)), dtype),
                        jnp.asarray(rng.uniform(size=(4, 2)), dtype))
        state = nrsfm._initial_state(config, (0.1, 0.1), w, dictionaries,
                                     jnp.zeros((5, 2), dtype),
                                     jnp.broadcast_to(jnp.eye(3, dtype=dtype), (5, 3, 3)))
        update = nrsfm._make_update(config, (0.1, 0.1), w,
                                    None if blocks is None else jnp.asarray(blocks), True,
                                    1 if blocks is None else 2)
        once, converged = jax.eval_shape(update, state)
        twice, _ = jax.eval_shape(lambda s: update(update(s)[0]), state)
        for new in (once, twice):
            assert jax.tree.structure(new) == jax.tree.structure(state)
            for a, b in zip(jax.tree.leaves(state), jax.tree.leaves(new)):
                assert a.shape == b.shape and a.dtype == b.dtype
        assert converged.shape == () and converged.dtype == jnp.bool_
        assert state.history.dtype == dtype and state.step.dtype == jnp.int32


def test_non_finite_inputs():
    poses_2d, dictionaries, rotations = tiny_problem(seed=4)
    bad = poses_2d.astype(np.float32).copy()
    bad[1, 2, 0] = np.nan
    with pytest.raises(ValueError, match="poses_2d"):
        nrsfm.sparse_codes(bad, dictionaries, rotations)
    with pytest.raises(ValueError, match="poses_2d"):
        nrsfm.learn_dictionary(bad, config=SYN_CONFIG, rng=0)
    with pytest.raises(ValueError, match="poses_2d"):
        nrsfm.reconstruct(bad, dictionaries)
    bad_d = (dictionaries[0].copy(), dictionaries[1])
    bad_d[0][0, 0] = np.inf
    with pytest.raises(ValueError, match=r"dictionaries\[0\]"):
        nrsfm.sparse_codes(poses_2d, bad_d, rotations)
    # Traced NaN: no error possible at trace time, so the status says it.
    d32 = tuple(d.astype(np.float32) for d in dictionaries)
    status = jax.jit(lambda w: nrsfm.sparse_codes(w, d32, rotations.astype(np.float32)
                                                  ).status)(bad)
    assert int(status) == Status.NON_FINITE


def test_bad_inputs_raise_clear_errors():
    poses_2d, dictionaries, rotations = tiny_problem(seed=5)
    with pytest.raises(ValueError, match=r"poses_2d.*\(N, P, 2\)"):
        nrsfm.learn_dictionary(np.zeros((4, 6, 3)), config=SYN_CONFIG, rng=0)
    with pytest.raises(ValueError, match="at least 2 samples"):
        nrsfm.learn_dictionary(np.zeros((1, 6, 2)), config=SYN_CONFIG, rng=0)
    with pytest.raises(ValueError, match=r"dictionaries\[0\].*\(18, K_1\)"):
        nrsfm.sparse_codes(poses_2d, (dictionaries[0][:-1],) + dictionaries[1:], rotations)
    with pytest.raises(ValueError, match=r"dictionaries\[1\]"):
        nrsfm.sparse_codes(poses_2d, (dictionaries[0], dictionaries[1][:-1]), rotations)
    with pytest.raises(ValueError, match="non-negative"):
        nrsfm.sparse_codes(poses_2d, (dictionaries[0], -dictionaries[1]), rotations)
    with pytest.raises(ValueError, match="rotations"):
        nrsfm.sparse_codes(poses_2d, dictionaries, rotations[:2])
    with pytest.raises(ValueError, match="sparsity"):
        nrsfm.sparse_codes(poses_2d, dictionaries, rotations,
                           config=nrsfm.SparseCodingConfig(sparsity=(0.1, 0.1, 0.1)))
    with pytest.raises(ValueError, match="sparsity"):
        nrsfm.DictionaryLearningConfig(sizes=(5, 3), sparsity=(0.1,))
    with pytest.raises(ValueError, match="sizes"):
        nrsfm.DictionaryLearningConfig(sizes=())
    with pytest.raises(ValueError, match="batch_size"):
        nrsfm.DictionaryLearningConfig(batch_size=0)
    with pytest.raises(ValueError, match="scale"):
        nrsfm.reconstruct(poses_2d, dictionaries, scale=-1.0)


# ---------------------------------------------------------------------------------------
# Blocks.
# ---------------------------------------------------------------------------------------


def test_rigid_factorisation_and_camera_steps_on_a_rigid_body():
    rng = np.random.default_rng(0)
    shape = rng.normal(size=(9, 3)) * np.array([1.0, 0.6, 0.3])
    shape -= shape.mean(0)
    n = 30
    truth = Rotation.random(n, random_state=2).as_matrix()
    poses_2d = np.einsum("pc,nac->npa", shape, truth)[..., :2]
    with jax.enable_x64(True):
        rotations, recovered = jax.jit(ops.rigid_factorisation)(jnp.asarray(poses_2d))
        # Exact up to one global rotation/reflection, i.e. the Gram matrix S S^T (which
        # is invariant to exactly those) is recovered.
        recovered_np = np.asarray(recovered)
        np.testing.assert_allclose(recovered_np @ recovered_np.T, shape @ shape.T, atol=1e-9)
        shapes = jnp.broadcast_to(recovered, (n, 9, 3))
        np.testing.assert_allclose(ops.project(shapes, rotations), poses_2d, atol=1e-8)
        np.testing.assert_allclose(np.linalg.det(np.asarray(rotations)), 1.0, atol=1e-12)
        # Camera MM steps from perturbed cameras: the error never rises and vanishes.
        true_shapes = jnp.broadcast_to(jnp.asarray(shape), (n, 9, 3))
        noise = Rotation.from_rotvec(0.3 * rng.normal(size=(n, 3))).as_matrix()
        r = jnp.asarray(noise @ truth)
        def step(r, _):
            return (ops.camera_step(jnp.asarray(poses_2d), true_shapes, r),
                    ops.reprojection_terms(jnp.asarray(poses_2d), true_shapes, r))

        _, errors = jax.jit(lambda r: jax.lax.scan(step, r, length=200))(r)
        errors = np.stack(errors)
        assert np.all(np.diff(errors, axis=0) <= 1e-15)
        # Linear convergence whose rate depends on the view: all but slow samples reach
        # rounding level; every sample is far below where it started.
        assert float(np.median(errors[-1])) < 1e-12 * float(errors[0].max())
        assert np.all(errors[-1] < 1e-5 * errors[0])


def test_dictionary_lipschitz_bounds_the_exact_hessian():
    rng = np.random.default_rng(1)
    n, joints, sizes = 12, 4, (5, 4, 3)
    dictionaries = (rng.normal(size=(3 * joints, 5)), rng.uniform(size=(5, 4)),
                    rng.uniform(size=(4, 3)))
    codes = rng.uniform(size=(n, 3))
    rotations = Rotation.random(n, random_state=3).as_matrix()
    w = rng.normal(size=(n, joints, 2))
    with jax.enable_x64(True):
        dictionaries = tuple(jnp.asarray(d) for d in dictionaries)
        for layer in range(3):
            def data_term(flat):
                d = flat.reshape(dictionaries[layer].shape)
                dicts = dictionaries[:layer] + (d,) + dictionaries[layer + 1:]
                return jnp.mean(ops.reprojection_terms(
                    jnp.asarray(w), ops.shapes_from_codes(dicts, jnp.asarray(codes)),
                    jnp.asarray(rotations)))
            hessian = jax.jit(jax.hessian(data_term))(dictionaries[layer].reshape(-1))
            exact = np.linalg.eigvalsh(np.asarray(hessian))[-1]
            bound = float(ops.dictionary_lipschitz(dictionaries, jnp.asarray(codes), layer, n))
            # Independent evaluation of the documented formula.
            d = [np.asarray(x) for x in dictionaries]
            below = np.eye(sizes[layer]) if layer == 2 else np.linalg.multi_dot(
                [np.eye(sizes[layer])] + d[layer + 1:])
            psi = codes @ below.T
            above = np.eye(3 * joints) if layer == 0 else np.linalg.multi_dot(
                [np.eye(3 * joints)] + d[:layer])
            formula = (np.linalg.norm(above, 2) ** 2 * np.linalg.norm(psi, 2) ** 2 / n
                       * ops.LIPSCHITZ_SAFETY)
            assert bound == pytest.approx(formula, rel=1e-9)
            assert exact <= bound * (1 + 1e-9)
            assert exact >= 0.2 * bound  # not uselessly loose


def test_penalty_weights_equal_layerwise_l1_norms():
    rng = np.random.default_rng(2)
    dictionaries = (rng.normal(size=(9, 5)), rng.uniform(size=(5, 4)),
                    rng.uniform(size=(4, 3)))
    codes = rng.uniform(size=(7, 3))
    lam = (0.3, 0.2, 0.1)
    with jax.enable_x64(True):
        weights = ops.penalty_weights(tuple(jnp.asarray(d) for d in dictionaries), lam)
        got = np.asarray(codes @ np.asarray(weights))
    psi2 = codes @ dictionaries[2].T
    psi1 = psi2 @ dictionaries[1].T
    want = lam[0] * np.abs(psi1).sum(1) + lam[1] * np.abs(psi2).sum(1) + lam[2] * np.abs(
        codes).sum(1)
    np.testing.assert_allclose(got, want, rtol=1e-12)


def test_dictionary_projection():
    rng = np.random.default_rng(3)
    d = jnp.asarray(rng.normal(size=(12, 6)) * 3, jnp.float32)
    first = np.asarray(ops.project_dictionary(d, 0))
    np.testing.assert_allclose(first.reshape(4, 3, 6).mean(0), 0, atol=1e-6)
    assert np.all(np.linalg.norm(first, axis=0) <= 1 + 1e-6)
    deeper = np.asarray(ops.project_dictionary(d, 1))
    assert np.all(deeper >= 0) and np.all(np.linalg.norm(deeper, axis=0) <= 1 + 1e-6)
    # A feasible column is left alone (it is its own projection).
    small = jnp.abs(d) / 100
    np.testing.assert_allclose(ops.project_dictionary(small, 1), small, rtol=1e-6)


# ---------------------------------------------------------------------------------------
# Launch script.
# ---------------------------------------------------------------------------------------


def test_launch_script_writes_outputs_atomically(tmp_path, synthetic):
    data, result = synthetic
    path = tmp_path / "in.npz"
    np.savez(path, poses_2d=data["poses_2d"])
    config = launch.make_config(sizes=["20", "5"], sparsity=["1e-4"], maxiter=200,
                                tol=1e-6, batch_size=0)
    assert config == SYN_CONFIG  # same static config: the compiled solver is reused
    out = tmp_path / "out" / "dictionary.npz"
    launch.run(str(path), str(out), config, seed=0)
    assert sorted(os.listdir(out.parent)) == ["dictionary.npz"]
    with np.load(out, allow_pickle=False) as saved:
        assert saved["dictionary_0"].shape == (51, 20) and saved["dictionary_1"].shape == (
            20, 5)
        assert saved["poses_3d"].shape == (200, 17, 3)
        assert saved["rotations"].shape == (200, 3, 3) and saved["codes"].shape == (200, 5)
        np.testing.assert_array_equal(saved["sizes"], [20, 5])
        np.testing.assert_allclose(saved["poses_3d"], result.poses_3d, rtol=1e-6, atol=1e-6)
    bad = tmp_path / "bad.npz"
    np.savez(bad, poses=data["poses_2d"])
    with pytest.raises(ValueError, match="no `poses_2d`"):
        launch.run(str(bad), str(tmp_path / "x.npz"), config)
    np.savez(bad, poses_2d=data["poses_2d"][..., :1])
    with pytest.raises(ValueError, match=r"\(N, P, 2\)"):
        launch.run(str(bad), str(tmp_path / "x.npz"), config)
    nan = data["poses_2d"].copy()
    nan[0, 0, 0] = np.nan
    np.savez(bad, poses_2d=nan)
    with pytest.raises(ValueError, match="NaN"):
        launch.run(str(bad), str(tmp_path / "x.npz"), config)
    assert not (tmp_path / "x.npz").exists()


def _main_error(*args):
    """Runs the script's main on ``args``; returns its SystemExit message (one line)."""
    from absl import flags

    fv = flags.FlagValues()
    launch.define_flags(fv)
    fv(["learn_dictionary.py", *args])
    with pytest.raises(SystemExit) as e:
        launch.main(["learn_dictionary.py"], flag_values=fv)
    message = str(e.value.code)
    assert message.startswith("learn_dictionary.py: error: ") and "\n" not in message
    return message


def test_launch_script_input_errors_are_one_line(tmp_path):
    """Every input error exits through main with one line naming the file/field or flag,
    before any learning (no compile) and without writing anything."""
    poses = hierarchical_data(30, sizes=(20, 5))["poses_2d"]
    out = tmp_path / "out.npz"

    def error(name, *flags, **arrays):
        path = tmp_path / name
        if arrays:
            np.savez(path, **arrays)
        return _main_error(f"--input={path}", f"--output={out}", "--sizes=20,5", *flags)

    assert "does not exist" in error("absent.npz")
    (tmp_path / "empty.npz").write_bytes(b"")
    assert f"--input '{tmp_path / 'empty.npz'}' is empty (0 bytes)" in error("empty.npz")
    np.savez(tmp_path / "trunc.npz", poses_2d=poses)
    whole = (tmp_path / "trunc.npz").read_bytes()
    (tmp_path / "trunc.npz").write_bytes(whole[: len(whole) // 2])  # e.g. a cut-off copy
    assert "is not a valid .npz (truncated" in error("trunc.npz")
    ragged = np.asarray([np.zeros(2), np.zeros(3)], dtype=object)
    assert "holds object arrays ('poses_2d'), which need pickle; refused" in error(
        "obj.npz", poses_2d=ragged)
    assert f"--input '{tmp_path / 'key.npz'}' has no `poses_2d` array (found ['poses'])" in (
        error("key.npz", poses=poses))
    assert "must have shape (N, P, 2)" in error("shape.npz", poses_2d=poses[..., :1])
    assert "must be real numbers; got dtype <U1" in error(
        "str.npz", poses_2d=np.full(poses.shape, "a"))
    assert "got dtype complex" in error("cplx.npz", poses_2d=poses.astype(np.complex64))
    bad = poses.copy()
    bad[7, 2, 1] = np.inf
    assert "holds 1 NaN or infinite values (first in sample 7)" in error(
        "inf.npz", poses_2d=bad)
    assert ("has 10 samples, fewer than the 20 atoms of the first layer (--sizes=20,5)"
            in error("few.npz", poses_2d=poses[:10]))
    np.savez(tmp_path / "ok.npz", poses_2d=poses)
    for sizes in ("a,5", "0,5", "2.5,5", ""):
        assert (f"--sizes: expected comma-separated positive integers K_1,...,K_L (e.g. "
                f"125,10); got {sizes!r}") in error("ok.npz", f"--sizes={sizes}")
    assert "--sparsity: expected 1 or 2 values" in error("ok.npz", "--sparsity=0.1,0.1,0.1")
    assert "--sparsity: expected comma-separated finite values >= 0" in error(
        "ok.npz", "--sparsity=-1")
    assert "--batch_size: expected >= 0" in error("ok.npz", "--batch_size=-2")
    assert "`maxiter` must be >= 0" in error("ok.npz", "--maxiter=-1")
    assert not out.exists()


def test_launch_script_main_writes_and_never_writes_non_finite(tmp_path, monkeypatch):
    poses = hierarchical_data(30, sizes=(20, 5))["poses_2d"]
    np.savez(tmp_path / "in.npz", poses_2d=poses)
    out = tmp_path / "out.npz"

    def fake_learn(poses_2d, config, seed, value=1.0, status=Status.CONVERGED):
        # Stands in for the solver (the real one is tested above): no compile here.
        n, p, _ = poses_2d.shape
        return {"dictionary_0": np.full((3 * p, 20), value, np.float32),
                "dictionary_1": np.ones((20, 5), np.float32), "sizes": np.asarray([20, 5]),
                "codes": np.ones((n, 5), np.float32), "rotations": np.ones((n, 3, 3)),
                "poses_3d": np.ones((n, p, 3)), "scale": np.asarray(1.0),
                "objective_history": np.asarray([2.0, 1.0, np.nan]),
                "status": np.asarray(status, np.int32), "iterations": np.asarray(1)}

    from absl import flags

    fv = flags.FlagValues()
    launch.define_flags(fv)
    fv(["learn_dictionary.py", f"--input={tmp_path / 'in.npz'}", f"--output={out}",
        "--sizes=20,5", "--maxiter=2"])
    monkeypatch.setattr(launch, "learn", fake_learn)
    launch.main(["learn_dictionary.py"], flag_values=fv)  # NaN padding of the history is fine
    with np.load(out, allow_pickle=False) as saved:
        np.testing.assert_array_equal(saved["dictionary_0"], 1.0)
    before = out.read_bytes()
    monkeypatch.setattr(launch, "learn", lambda *a: fake_learn(*a, value=np.nan,
                                                               status=Status.NON_FINITE))
    message = _main_error(f"--input={tmp_path / 'in.npz'}", f"--output={out}", "--sizes=20,5")
    assert "learning gave a non-finite result (status non_finite; non-finite: dictionary_0)" in (
        message) and "nothing written" in message
    assert out.read_bytes() == before and sorted(os.listdir(tmp_path)) == ["in.npz", "out.npz"]
