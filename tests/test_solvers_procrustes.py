"""jpose.solvers.procrustes: the metrics' Procrustes re-exported, plus nearest rotation.

References: scipy.linalg.orthogonal_procrustes / polar and
scipy.spatial.transform.Rotation.align_vectors, and a brute-force optimality check.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.linalg
from scipy.spatial.transform import Rotation

from jpose import metrics
from jpose import procrustes as core
from jpose.solvers import procrustes


def test_one_implementation_shared_with_the_metrics(monkeypatch):
    # The very same function objects: a solver and P-MPJPE cannot drift apart.
    for name in ("similarity_transform", "align", "apply_alignment", "Alignment"):
        assert getattr(procrustes, name) is getattr(core, name)
    rng = np.random.default_rng(0)
    pred = rng.normal(size=(4, 17, 3)).astype(np.float32)
    target = rng.normal(size=(4, 17, 3)).astype(np.float32)
    via_solver = procrustes.align(pred, target)
    # P-MPJPE is the per-joint distance after this very alignment.
    expected = np.linalg.norm(np.asarray(via_solver) - target, axis=-1)
    np.testing.assert_allclose(np.asarray(metrics.p_mpjpe(pred, target)), expected, rtol=1e-6)
    # ... and it reaches it through the shared module: a spy on it sees the metric's call.
    calls = []

    def spy(*args, **kwargs):
        calls.append(kwargs)
        return via_solver

    monkeypatch.setattr(core, "align", spy)
    metrics.p_mpjpe(pred, target)
    assert len(calls) == 1 and calls[0]["allow_scale"] is True


@pytest.mark.parametrize("dim", [2, 3, 4])
def test_orthogonal_procrustes_matches_scipy(dim):
    rng = np.random.default_rng(dim)
    a = rng.normal(size=(6, 9, dim))
    b = rng.normal(size=(6, 9, dim))
    # With reflections allowed the problem is exactly scipy's.
    got = np.asarray(procrustes.orthogonal_procrustes(a.astype(np.float32), b.astype(np.float32),
                                                      allow_reflection=True))
    for i in range(6):
        ref, _ = scipy.linalg.orthogonal_procrustes(a[i], b[i])
        np.testing.assert_allclose(got[i], ref, atol=2e-5)
    # Without: det +1 always, equal to scipy where scipy's answer is already proper, and
    # never worse than any other rotation (checked against the sign-fixed Kabsch formula).
    proper = np.asarray(procrustes.orthogonal_procrustes(a.astype(np.float32), b.astype(np.float32)))
    np.testing.assert_allclose(np.linalg.det(proper), 1.0, atol=1e-5)
    saw_reflection = False
    for i in range(6):
        ref, _ = scipy.linalg.orthogonal_procrustes(a[i], b[i])
        if np.linalg.det(ref) > 0:
            np.testing.assert_allclose(proper[i], ref, atol=2e-5)
        else:
            saw_reflection = True
            u, _, vt = np.linalg.svd(a[i].T @ b[i])
            fix = np.ones(dim)
            fix[-1] = -1.0
            np.testing.assert_allclose(proper[i], (u * fix) @ vt, atol=2e-5)
    assert saw_reflection  # the det fix was exercised


def test_orthogonal_procrustes_matches_align_vectors_with_weights():
    rng = np.random.default_rng(1)
    truth = Rotation.random(5, random_state=2)
    b_vec = rng.normal(size=(5, 12, 3))
    a_vec = np.einsum("nij,nkj->nki", truth.as_matrix(), b_vec) + 0.05 * rng.normal(size=(5, 12, 3))
    w = rng.uniform(0.1, 2.0, size=(5, 12))
    # align_vectors finds C with a_i ≈ C b_i, minimising sum w |a_i - C b_i|^2; in the
    # row convention that is b @ R ≈ a with R = C^T.
    got = np.asarray(procrustes.orthogonal_procrustes(b_vec, a_vec, weights=w))
    for i in range(5):
        ref, _ = Rotation.align_vectors(a_vec[i], b_vec[i], weights=w[i])
        np.testing.assert_allclose(got[i], ref.as_matrix().T, atol=2e-5)


def test_orthogonal_procrustes_masks_excluded_rows():
    rng = np.random.default_rng(3)
    a = rng.normal(size=(10, 3))
    b = rng.normal(size=(10, 3))
    w = np.ones(10)
    w[[2, 7]] = 0.0
    a_nan = a.copy()
    a_nan[2] = np.nan
    got = procrustes.orthogonal_procrustes(a_nan, b, weights=w)
    keep = w > 0
    ref = procrustes.orthogonal_procrustes(a[keep], b[keep])
    np.testing.assert_allclose(np.asarray(got), np.asarray(ref), atol=1e-6)


def test_nearest_rotation_polar_and_det_fix():
    rng = np.random.default_rng(4)
    m = rng.normal(size=(8, 3, 3))
    got = np.asarray(procrustes.nearest_rotation(m.astype(np.float32)))
    np.testing.assert_allclose(got @ np.swapaxes(got, -1, -2), np.broadcast_to(np.eye(3), (8, 3, 3)),
                               atol=1e-5)
    np.testing.assert_allclose(np.linalg.det(got), 1.0, atol=1e-5)
    dets = np.linalg.det(m)
    assert (dets > 0).any() and (dets < 0).any()
    for i in range(8):
        polar, _ = scipy.linalg.polar(m[i])
        if dets[i] > 0:  # the polar factor is a rotation: it is the answer
            np.testing.assert_allclose(got[i], polar, atol=2e-5)
        # Optimality: no random rotation, nor small perturbations of the answer, is closer.
        best = np.linalg.norm(got[i] - m[i])
        others = Rotation.random(500, random_state=i).as_matrix()
        assert best <= np.linalg.norm(others - m[i], axis=(-2, -1)).min() + 1e-5
        bumps = Rotation.from_rotvec(1e-2 * rng.normal(size=(50, 3))).as_matrix() @ got[i]
        assert best <= np.linalg.norm(bumps - m[i], axis=(-2, -1)).min() + 1e-6
    reflected = np.asarray(procrustes.nearest_rotation(m, allow_reflection=True))
    for i in range(8):
        np.testing.assert_allclose(reflected[i], scipy.linalg.polar(m[i])[0], atol=2e-5)


def test_nearest_rotation_fixes_a_noisy_rotation_and_has_finite_gradients():
    truth = Rotation.random(3, random_state=5).as_matrix()
    rng = np.random.default_rng(5)
    noisy = truth + 1e-3 * rng.normal(size=truth.shape)
    got = np.asarray(procrustes.nearest_rotation(noisy))
    assert np.abs(got - truth).max() < 3e-3
    # The shared custom JVP: finite, and matching central differences.
    m = jnp.asarray(noisy[0], jnp.float32)
    direction = jnp.asarray(rng.normal(size=(3, 3)), jnp.float32)

    def f(s):
        return jnp.sum(procrustes.nearest_rotation(m + s * direction) * jnp.asarray(truth[1], jnp.float32))

    grad = float(jax.grad(f)(jnp.float32(0.0)))
    h = 1e-2
    values = jax.jit(jax.vmap(f))(jnp.asarray([h, -h], jnp.float32))
    fd = (float(values[0]) - float(values[1])) / (2 * h)
    assert np.isfinite(grad) and abs(grad - fd) < 1e-2 * max(1.0, abs(fd))


def test_errors_name_the_argument():
    with pytest.raises(ValueError, match="`m`"):
        procrustes.nearest_rotation(np.ones((3, 2)))
    with pytest.raises(ValueError, match="`target`"):
        procrustes.orthogonal_procrustes(np.ones((5, 3)), np.ones((4, 3)))
    with pytest.raises(ValueError, match="`weights`"):
        procrustes.orthogonal_procrustes(np.ones((5, 3)), np.ones((5, 3)), weights=np.ones(4))
