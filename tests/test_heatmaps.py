"""Tests for jpose.objectives.heatmaps: Gaussian targets, the weighted L2 loss, argmax and
the 3D soft peak, against NumPy and analytic references."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jpose.objectives import heatmaps as hm


def test_gaussian_heatmaps_2d_and_3d_match_numpy():
    pts2 = np.array([[[2.0, 3.5], [0.25, 6.0]]], np.float32)  # (1, J=2, 2) (x, y)
    got = np.asarray(hm.gaussian_heatmaps(pts2, shape=(7, 5), sigma=1.5))
    assert got.shape == (1, 7, 5, 2)
    y, x = np.mgrid[0:7, 0:5]
    for j in range(2):
        ref = np.exp(-((x - pts2[0, j, 0]) ** 2 + (y - pts2[0, j, 1]) ** 2) / (2 * 1.5**2))
        np.testing.assert_allclose(got[0, :, :, j], ref, rtol=1e-5, atol=1e-7)
    pts3 = np.array([[1.0, 2.0, 3.0]], np.float32)  # (J=1, 3), no batch axis
    got3 = np.asarray(hm.gaussian_heatmaps(pts3, shape=(4, 3, 5), sigma=1.0))
    assert got3.shape == (4, 3, 5, 1)
    assert got3[2, 1, 3, 0] == pytest.approx(1.0)  # [y, x, z]
    y, x, z = np.mgrid[0:4, 0:3, 0:5]
    ref3 = np.exp(-((x - 1.0) ** 2 + (y - 2.0) ** 2 + (z - 3.0) ** 2) / 2.0)
    np.testing.assert_allclose(got3[..., 0], ref3, rtol=1e-5, atol=1e-7)


def test_heatmap_l2_is_weighted_per_element():
    pred = jnp.asarray(np.arange(12, dtype=np.float32).reshape(1, 2, 3, 2))
    target = jnp.ones((1, 2, 3, 2), jnp.float32)
    weights = jnp.asarray([[1.0, 0.0]])  # joint 1 invisible
    got = np.asarray(hm.heatmap_l2(pred, target, weights=weights))
    ref = (np.arange(12).reshape(1, 2, 3, 2) - 1.0) ** 2 * np.array([1.0, 0.0])
    np.testing.assert_allclose(got, ref)
    with pytest.raises(ValueError, match="weights"):
        hm.heatmap_l2(pred, target, weights=jnp.ones((1, 3)))


@pytest.mark.parametrize("num_spatial", [2, 3])
def test_argmax_matches_numpy(num_spatial):
    rng = np.random.default_rng(0)
    spatial = (5, 7) if num_spatial == 2 else (4, 6, 3)
    x = rng.normal(size=(2, 3) + spatial + (4,)).astype(np.float32)
    coords, score = hm.argmax(jnp.asarray(x), num_spatial=num_spatial)
    assert coords.shape == (2, 3, 4, num_spatial) and coords.dtype == jnp.float32
    for idx in np.ndindex(2, 3, 4):
        v = x[idx[0], idx[1], ..., idx[2]]
        yxz = np.unravel_index(np.argmax(v), spatial)
        expected = (yxz[1], yxz[0]) + tuple(yxz[2:])  # (x, y[, z])
        np.testing.assert_array_equal(np.asarray(coords[idx]), expected)
        assert float(score[idx]) == pytest.approx(v.max())


def test_soft_peak_recovers_subvoxel_centres_of_gaussians():
    rng = np.random.default_rng(1)
    shape = (12, 14, 10)  # (H, W, D)
    centres = np.stack([rng.uniform(4, 9, 5), rng.uniform(4, 7, 5), rng.uniform(4, 5, 5)],
                       -1).astype(np.float32)  # (J=5, (x, y, z)), the cube fits inside
    vol = hm.gaussian_heatmaps(centres[None], shape=shape, sigma=1.0)  # (1, H, W, D, J)
    peak = hm.soft_peak(0.8 * vol, half_size=3)
    assert peak.coords.shape == (1, 5, 3)
    np.testing.assert_allclose(np.asarray(peak.coords[0]), centres, atol=0.02)
    coarse, _ = hm.argmax(vol, num_spatial=3)
    assert np.abs(np.asarray(coarse[0]) - centres).max() > 0.1  # the argmax alone is coarse
    # Confidence: the score at the coarse peak, on the network's (unit-peak) scale.
    np.testing.assert_allclose(np.asarray(peak.score), 0.8 * np.asarray(jnp.max(vol, (1, 2, 3))))
    assert bool(jnp.all(peak.inside))
    # Differentiable: gradients reach the scores inside the cube only.
    g = jax.grad(lambda v: jnp.sum(hm.soft_peak(v, half_size=1).coords))(vol)
    assert bool(jnp.all(jnp.isfinite(g)))
    c = np.asarray(coarse[0, 0]).astype(int)
    g0 = np.asarray(g[0, ..., 0])
    outside = np.ones(shape, bool)
    outside[c[1] - 1:c[1] + 2, c[0] - 1:c[0] + 2, c[2] - 1:c[2] + 2] = False
    assert np.all(g0[outside] == 0) and np.any(g0[~outside] != 0)


def test_soft_peak_border_and_2d():
    vol = hm.gaussian_heatmaps(jnp.asarray([[0.0, 3.0, 2.0]]), shape=(6, 6, 6), sigma=1.0)
    peak = hm.soft_peak(vol, half_size=2)
    assert not bool(peak.inside[0])  # x = 0: the cube is cut by the border
    # Non-positive maps fall back to the argmax.
    neg = hm.soft_peak(-jnp.ones((4, 4, 4, 1)), half_size=1)
    np.testing.assert_array_equal(np.asarray(neg.coords), [[0.0, 0.0, 0.0]])
    # 2D: a symmetric pair of equal values -> their midpoint.
    m = jnp.zeros((5, 5, 1)).at[2, 1, 0].set(1.0).at[2, 2, 0].set(1.0)
    np.testing.assert_allclose(np.asarray(hm.soft_peak(m, half_size=1, num_spatial=2).coords),
                               [[1.5, 2.0]])


def test_heatmap_to_image():
    np.testing.assert_allclose(np.asarray(hm.heatmap_to_image(jnp.asarray([0.0, 63.0]),
                                                              stride=4)), [1.5, 253.5])
