"""Tests for jpose.procrustes against known transforms, scipy's Kabsch and finite differences."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from jpose import procrustes


def _random_similarity(rng, batch, dim):
    """Random proper rotations (..., D, D), scales (...,), translations (..., D)."""
    n = int(np.prod(batch))
    if dim == 3:
        rot = Rotation.random(n, random_state=int(rng.integers(1 << 31))).as_matrix()
    else:
        ang = rng.uniform(-np.pi, np.pi, size=n)
        cos, sin = np.cos(ang), np.sin(ang)
        rot = np.stack([np.stack([cos, -sin], -1), np.stack([sin, cos], -1)], axis=-2)
    rot = rot.reshape(batch + (dim, dim))
    scale = rng.uniform(0.5, 2.0, size=batch)
    trans = rng.normal(size=batch + (dim,))
    return scale, rot, trans


def _transform_np(points, scale, rot, trans):
    # target_j = s R x_j + t, written independently of the library with einsum.
    return scale[..., None, None] * np.einsum("...ij,...kj->...ki", rot, points) + trans[..., None, :]


@pytest.mark.parametrize("dim", [3, 2])
def test_recovers_known_similarity(dim):
    rng = np.random.default_rng(0)
    batch = (2, 3)
    source = rng.normal(size=batch + (17, dim))
    scale, rot, trans = _random_similarity(rng, batch, dim)
    target = _transform_np(source, scale, rot, trans)

    result = procrustes.similarity_transform(source.astype(np.float32), target.astype(np.float32))
    assert result.scale.shape == batch
    assert result.rotation.shape == batch + (dim, dim)
    assert result.translation.shape == batch + (dim,)
    np.testing.assert_allclose(result.scale, scale, atol=2e-5)
    np.testing.assert_allclose(result.rotation, rot, atol=2e-5)
    np.testing.assert_allclose(result.translation, trans, atol=5e-5)
    assert bool(jnp.all(result.valid))
    aligned = procrustes.align(source.astype(np.float32), target.astype(np.float32))
    np.testing.assert_allclose(aligned, target, atol=1e-4)


def test_rigid_matches_scipy_kabsch_with_weights():
    # allow_scale=False: weighted orthogonal Procrustes. scipy's align_vectors solves the
    # same weighted rotation problem (on centred points), independently of our code.
    rng = np.random.default_rng(1)
    source = rng.normal(size=(10, 3))
    target = rng.normal(size=(10, 3))  # no exact transform: a genuine least-squares fit
    weights = rng.uniform(0.1, 2.0, size=10)
    result = procrustes.similarity_transform(
        source.astype(np.float32), target.astype(np.float32),
        weights=weights.astype(np.float32), allow_scale=False,
    )
    w = weights / weights.sum()
    mu_s, mu_t = w @ source, w @ target
    ref_rot, _ = Rotation.align_vectors(target - mu_t, source - mu_s, weights=weights)
    ref = ref_rot.as_matrix()
    np.testing.assert_allclose(result.rotation, ref, atol=2e-5)
    np.testing.assert_allclose(result.scale, 1.0)
    np.testing.assert_allclose(result.translation, mu_t - ref @ mu_s, atol=2e-5)
    assert np.linalg.det(np.asarray(result.rotation)) == pytest.approx(1.0, abs=1e-5)


def test_reflection():
    rng = np.random.default_rng(2)
    source = rng.normal(size=(12, 3))
    scale, rot, trans = _random_similarity(rng, (), 3)
    mirror = np.diag([-1.0, 1.0, 1.0])
    improper = rot @ mirror  # det -1
    target = _transform_np(source, scale, improper, trans)
    src, tgt = source.astype(np.float32), target.astype(np.float32)

    proper = procrustes.similarity_transform(src, tgt)
    assert np.linalg.det(np.asarray(proper.rotation)) == pytest.approx(1.0, abs=1e-5)
    residual = np.linalg.norm(procrustes.apply_alignment(src, proper) - target, axis=-1)
    assert residual.mean() > 0.1

    free = procrustes.similarity_transform(src, tgt, allow_reflection=True)
    assert np.linalg.det(np.asarray(free.rotation)) == pytest.approx(-1.0, abs=1e-5)
    np.testing.assert_allclose(free.rotation, improper, atol=2e-5)
    np.testing.assert_allclose(free.scale, scale, atol=2e-5)
    np.testing.assert_allclose(free.translation, trans, atol=5e-5)
    np.testing.assert_allclose(procrustes.apply_alignment(src, free), target, atol=1e-4)


def test_zero_weights_equal_dropping_joints_and_ignore_nan():
    rng = np.random.default_rng(3)
    source = rng.normal(size=(2, 9, 3)).astype(np.float32)
    target = rng.normal(size=(2, 9, 3)).astype(np.float32)
    keep = np.array([1, 1, 0, 1, 1, 0, 1, 1, 1], bool)
    weights = np.broadcast_to(keep.astype(np.float32), (2, 9))
    poisoned = target.copy()
    poisoned[:, ~keep] = np.nan  # excluded joints may hold garbage
    poisoned_src = source.copy()
    poisoned_src[:, ~keep] = np.inf

    full = procrustes.similarity_transform(poisoned_src, poisoned, weights=weights)
    dropped = procrustes.similarity_transform(source[:, keep], target[:, keep])
    for a, b in zip(full, dropped):
        np.testing.assert_allclose(a, b, atol=1e-5)

    # A (J,) weight vector broadcasts over the batch.
    shared = procrustes.similarity_transform(source, target, weights=keep.astype(np.float32))
    np.testing.assert_allclose(shared.rotation, dropped.rotation, atol=1e-5)


def test_degenerate_inputs_are_finite():
    source = np.ones((5, 3), np.float32) * np.array([0.3, -2.0, 7.0], np.float32)
    target = np.arange(15, dtype=np.float32).reshape(5, 3)

    collapsed = procrustes.similarity_transform(source, target)
    assert not bool(collapsed.valid)
    np.testing.assert_allclose(collapsed.scale, 1.0)
    np.testing.assert_allclose(collapsed.rotation, np.eye(3))
    np.testing.assert_allclose(collapsed.translation, target.mean(0) - source[0], atol=1e-5)

    empty = procrustes.similarity_transform(target, target[::-1], weights=np.zeros(5, np.float32))
    assert not bool(empty.valid)
    np.testing.assert_allclose(empty.scale, 1.0)
    np.testing.assert_allclose(empty.rotation, np.eye(3))
    np.testing.assert_allclose(empty.translation, np.zeros(3))

    # Target collapsed: the least-squares scale is exactly 0.
    to_point = procrustes.similarity_transform(target, source)
    assert bool(to_point.valid)
    np.testing.assert_allclose(to_point.scale, 0.0, atol=1e-6)
    np.testing.assert_allclose(to_point.translation, source[0], atol=1e-5)

    def loss(src, tgt, w):
        return jnp.sum(procrustes.align(src, tgt, weights=w) ** 2)

    grad_fn = jax.jit(jax.grad(loss, argnums=(0, 1, 2)))
    for src, tgt, w in [
        (source, target, np.ones(5, np.float32)),
        (target, target[::-1], np.zeros(5, np.float32)),
        (target, source, np.ones(5, np.float32)),
        (np.zeros((5, 3), np.float32), np.zeros((5, 3), np.float32), np.ones(5, np.float32)),
    ]:
        grads = grad_fn(src, tgt, w)
        for g in grads:
            assert np.all(np.isfinite(g))


def _central_fd(f, x, eps):
    grad = np.zeros_like(x)
    for idx in np.ndindex(x.shape):
        step = np.zeros_like(x)
        step[idx] = eps
        grad[idx] = (f(x + step) - f(x - step)) / (2 * eps)
    return grad


@pytest.mark.parametrize("case", ["generic", "repeated_singular_values"])
def test_gradient_matches_finite_differences(case):
    with jax.enable_x64(True):
        rng = np.random.default_rng(4)
        if case == "generic":
            source = rng.normal(size=(7, 3))
            target = rng.normal(size=(7, 3))
        else:
            # ±e_i: the cross-covariance with a rotated copy has three equal singular
            # values, where the plain SVD derivative is infinite but R is smooth.
            source = np.concatenate([np.eye(3), -np.eye(3)])
            _, rot, _ = _random_similarity(rng, (), 3)
            target = source @ rot.T
        coeffs = rng.normal(size=(7, 3))[: source.shape[0]]

        def loss(src):
            a = procrustes.similarity_transform(src, target)
            return jnp.sum(coeffs * procrustes.apply_alignment(src, a)) + jnp.sum(
                a.rotation * np.arange(9.0).reshape(3, 3)
            ) + a.scale

        grad = np.asarray(jax.grad(loss)(source))
        jit_loss = jax.jit(loss)
        ref = _central_fd(lambda s: float(jit_loss(s)), source, 1e-6)
        assert np.all(np.isfinite(grad))
        np.testing.assert_allclose(grad, ref, atol=1e-6, rtol=1e-5)


def test_batch_polymorphism_jit_and_vmap_agree():
    rng = np.random.default_rng(5)
    source = rng.normal(size=(2, 3, 6, 3)).astype(np.float32)
    target = rng.normal(size=(2, 3, 6, 3)).astype(np.float32)
    eager = procrustes.similarity_transform(source, target)
    jitted = jax.jit(procrustes.similarity_transform)(source, target)
    vmapped = jax.vmap(jax.vmap(procrustes.similarity_transform))(source, target)
    single = procrustes.similarity_transform(source[1, 2], target[1, 2])
    for e, j, v, s in zip(eager, jitted, vmapped, single):
        np.testing.assert_allclose(j, e, atol=1e-5)
        np.testing.assert_allclose(v, e, atol=1e-5)
        np.testing.assert_allclose(e[1, 2], s, atol=1e-5)


def test_shape_validation():
    x = np.zeros((4, 3), np.float32)
    with pytest.raises(ValueError, match="target"):
        procrustes.similarity_transform(x, np.zeros((5, 3), np.float32))
    with pytest.raises(ValueError, match="weights"):
        procrustes.similarity_transform(x, x, weights=np.ones(3, np.float32))
    with pytest.raises(ValueError, match="source"):
        procrustes.similarity_transform(np.zeros(3, np.float32), np.zeros(3, np.float32))
    alignment = procrustes.similarity_transform(x, x)
    with pytest.raises(ValueError, match="points"):
        procrustes.apply_alignment(np.zeros((2, 4, 3), np.float32), alignment)
    with pytest.raises(ValueError, match="points"):
        procrustes.apply_alignment(np.zeros((4, 2), np.float32), alignment)
