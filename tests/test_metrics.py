"""Tests for jpose.metrics: hand-computed cases and independent NumPy references."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jpose import metrics

f32 = np.float32


# ----------------------------------------------------------------------------- references


def _videopose3d_p_mpjpe(predicted, target):
    """NumPy re-implementation of VideoPose3D's published P-MPJPE, per joint.

    Centre, normalise by the Frobenius norm, SVD of H = X0^T Y0, fix the sign of the last
    singular vector so that det R = +1, scale a = tr * |X0| / |Y0|.
    """
    predicted = predicted.astype(np.float64)
    target = target.astype(np.float64)
    mu_x = target.mean(axis=1, keepdims=True)
    mu_y = predicted.mean(axis=1, keepdims=True)
    x0 = target - mu_x
    y0 = predicted - mu_y
    norm_x = np.sqrt(np.sum(x0**2, axis=(1, 2), keepdims=True))
    norm_y = np.sqrt(np.sum(y0**2, axis=(1, 2), keepdims=True))
    x0 /= norm_x
    y0 /= norm_y
    h = np.matmul(x0.transpose(0, 2, 1), y0)
    u, s, vt = np.linalg.svd(h)
    v = vt.transpose(0, 2, 1)
    r = np.matmul(v, u.transpose(0, 2, 1))
    sign_det_r = np.sign(np.expand_dims(np.linalg.det(r), axis=1))
    v[:, :, -1] *= sign_det_r
    s[:, -1] *= sign_det_r.flatten()
    r = np.matmul(v, u.transpose(0, 2, 1))
    tr = np.expand_dims(np.sum(s, axis=1, keepdims=True), axis=2)
    a = tr * norm_x / norm_y
    t = mu_x - a * np.matmul(mu_y, r)
    aligned = a * np.matmul(predicted, r) + t
    return np.linalg.norm(aligned - target, axis=-1)


def _videopose3d_n_mpjpe(predicted, target):
    norm_pred = np.mean(np.sum(predicted**2, axis=-1, keepdims=True), axis=-2, keepdims=True)
    norm_tgt = np.mean(np.sum(target * predicted, axis=-1, keepdims=True), axis=-2, keepdims=True)
    return np.linalg.norm(norm_tgt / norm_pred * predicted - target, axis=-1)


# ----------------------------------------------------------------------------- 3D errors


def test_mpjpe_hand_computed():
    pred = np.array([[0, 0, 0], [1, 2, 2], [1, 1, 1]], f32)
    target = np.array([[3, 4, 0], [1, 2, 2], [0, 0, 0]], f32)
    np.testing.assert_allclose(metrics.mpjpe(pred, target), [5.0, 0.0, np.sqrt(3.0)], rtol=1e-6)


def test_p_mpjpe_hand_computed():
    # Cross-covariance diag(2, 4, 0) -> R = I, s = (2 + 4) / 10 = 0.6; aligned prediction
    # (±0.6, 0, 0), (0, ±1.2, 0) against (±1, 0, 0), (0, ±1, 0).
    target = np.array([[1, 0, 0], [-1, 0, 0], [0, 1, 0], [0, -1, 0]], f32)
    pred = np.array([[1, 0, 0], [-1, 0, 0], [0, 2, 0], [0, -2, 0]], f32)
    np.testing.assert_allclose(metrics.p_mpjpe(pred, target), [0.4, 0.4, 0.2, 0.2], atol=1e-6)
    # A similarity-transformed copy has zero error (rotation by 90 deg about z, scale 2).
    rot = np.array([[0, -1, 0], [1, 0, 0], [0, 0, 1]], f32)
    moved = 2.0 * target @ rot.T + np.array([5, 6, 7], f32)
    np.testing.assert_allclose(metrics.p_mpjpe(moved, target), np.zeros(4), atol=1e-6)


def test_p_mpjpe_matches_videopose3d_reference():
    rng = np.random.default_rng(0)
    target = rng.normal(size=(16, 17, 3)).astype(f32)
    pred = (target + 0.3 * rng.normal(size=target.shape)).astype(f32)
    # Mirror half of the predictions: this exercises the det(R) sign fix.
    pred[::2, :, 0] *= -1
    ours = metrics.p_mpjpe(pred, target)
    assert ours.shape == (16, 17)
    np.testing.assert_allclose(ours, _videopose3d_p_mpjpe(pred, target), atol=2e-5)
    # Allowing reflections can only lower the error, and does so for the mirrored ones.
    free = np.asarray(metrics.p_mpjpe(pred, target, allow_reflection=True))
    assert np.all(free.mean(-1) <= np.asarray(ours).mean(-1) + 1e-6)
    assert np.all(free[::2].mean(-1) < np.asarray(ours)[::2].mean(-1) - 1e-3)


def test_p_mpjpe_weights_equal_dropping_joints():
    rng = np.random.default_rng(1)
    target = rng.normal(size=(3, 8, 3)).astype(f32)
    pred = rng.normal(size=(3, 8, 3)).astype(f32)
    keep = np.array([1, 0, 1, 1, 1, 0, 1, 1], bool)
    poisoned = target.copy()
    poisoned[:, ~keep] = np.nan
    weighted = np.asarray(metrics.p_mpjpe(pred, poisoned, weights=keep.astype(f32)))
    dropped = np.asarray(metrics.p_mpjpe(pred[:, keep], target[:, keep]))
    np.testing.assert_allclose(weighted[:, keep], dropped, atol=1e-5)
    assert np.all(np.isnan(weighted[:, ~keep]))  # NaN targets propagate unless masked
    total, count = metrics.masked_sum_count(weighted, np.broadcast_to(keep, (3, 8)))
    np.testing.assert_allclose(total, dropped.sum(), rtol=1e-5)
    assert int(count) == 3 * 6


def test_n_mpjpe_hand_computed_and_reference():
    # s = (3 + 1) / (1 + 1) = 2 -> scaled prediction (2,0,0), (0,2,0).
    pred = np.array([[1, 0, 0], [0, 1, 0]], f32)
    target = np.array([[3, 0, 0], [0, 1, 0]], f32)
    np.testing.assert_allclose(metrics.least_squares_scale(pred, target), 2.0)
    np.testing.assert_allclose(metrics.n_mpjpe(pred, target), [1.0, 1.0], atol=1e-6)

    rng = np.random.default_rng(2)
    target = rng.normal(size=(4, 5, 17, 3)).astype(f32)
    pred = (1.3 * target + 0.2 * rng.normal(size=target.shape)).astype(f32)
    np.testing.assert_allclose(
        metrics.n_mpjpe(pred, target), _videopose3d_n_mpjpe(pred, target), atol=1e-5
    )
    # Zero-weight joints are ignored by the scale fit (and may be NaN).
    keep = np.arange(17) % 3 != 0
    poisoned = pred.copy()
    poisoned[..., ~keep, :] = np.nan
    weighted = np.asarray(metrics.n_mpjpe(poisoned, target, weights=keep.astype(f32)))
    np.testing.assert_allclose(
        weighted[..., keep], _videopose3d_n_mpjpe(pred[..., keep, :], target[..., keep, :]),
        atol=1e-5,
    )


def test_mpjve_hand_computed_and_axis():
    # One joint moving along x: prediction 0, 1, 3; target still -> velocity errors 1, 2.
    pred = np.zeros((3, 1, 3), f32)
    pred[:, 0, 0] = [0, 1, 3]
    target = np.zeros((3, 1, 3), f32)
    np.testing.assert_allclose(metrics.mpjve(pred, target), [[1.0], [2.0]])

    rng = np.random.default_rng(3)
    pred = rng.normal(size=(6, 2, 4, 3)).astype(f32)  # (T, B, J, 3)
    target = rng.normal(size=(6, 2, 4, 3)).astype(f32)
    ref = np.linalg.norm(np.diff(pred, axis=0) - np.diff(target, axis=0), axis=-1)
    np.testing.assert_allclose(metrics.mpjve(pred, target, axis=0), ref, atol=1e-5)
    moved = metrics.mpjve(np.moveaxis(pred, 0, 1), np.moveaxis(target, 0, 1))  # default -3
    np.testing.assert_allclose(moved, np.moveaxis(ref, 0, 1), atol=1e-5)
    with pytest.raises(ValueError, match="axis"):
        metrics.mpjve(pred, target, axis=-2)
    with pytest.raises(ValueError, match="frames"):
        metrics.mpjve(pred[:1], target[:1], axis=0)


def test_root_relative_and_millimetres():
    poses = np.array([[[1, 2, 3], [2, 2, 2], [0, 0, 0]]], f32)
    np.testing.assert_allclose(
        metrics.root_relative(poses), [[[0, 0, 0], [1, 0, -1], [-1, -2, -3]]]
    )
    np.testing.assert_allclose(
        metrics.root_relative(poses, root_index=-1), poses
    )
    with pytest.raises(ValueError, match="root_index"):
        metrics.root_relative(poses, root_index=3)
    np.testing.assert_allclose(metrics.to_millimetres(np.array([0.0525], f32)), [52.5])


# ----------------------------------------------------------------------------- PCK / AUC


def test_pck_hand_computed():
    # bbox (width 100, height 50) -> threshold 0.2 * 100 = 20 px.
    target = np.zeros((4, 2), f32)
    pred = np.array([[6, 8], [12, 16], [15, 20], [0, 0]], f32)  # distances 10, 20, 25, 0
    visible = np.array([True, True, True, False])
    hits, valid = metrics.pck(pred, target, visible=visible, bbox_size=np.array([100, 50], f32))
    np.testing.assert_array_equal(hits, [1.0, 1.0, 0.0, 0.0])
    np.testing.assert_array_equal(valid, visible)
    assert float(metrics.mean_from(*metrics.masked_sum_count(hits, valid))) == pytest.approx(2 / 3)
    # The larger side is used whichever it is: box (50, 100) gives the same.
    hits2, _ = metrics.pck(pred, target, visible=visible, bbox_size=np.array([50, 100], f32))
    np.testing.assert_array_equal(hits2, hits)
    hits3, _ = metrics.pck(pred, target, visible=visible, bbox_size=np.array([100, 50], f32),
                           alpha=0.1)
    np.testing.assert_array_equal(hits3, [1.0, 0.0, 0.0, 0.0])


def test_pck_batched_against_loop():
    rng = np.random.default_rng(4)
    pred = rng.uniform(0, 100, size=(3, 5, 13, 2)).astype(f32)
    target = rng.uniform(0, 100, size=(3, 5, 13, 2)).astype(f32)
    visible = rng.uniform(size=(3, 5, 13)) > 0.3
    bbox = rng.uniform(20, 200, size=(3, 5, 2)).astype(f32)
    hits, valid = metrics.pck(pred, target, visible=visible, bbox_size=bbox)
    for i, j, k in np.ndindex(3, 5, 13):
        d = np.hypot(*(pred[i, j, k] - target[i, j, k]))
        expect = visible[i, j, k] and d <= 0.2 * bbox[i, j].max()
        assert hits[i, j, k] == float(expect)
        assert valid[i, j, k] == visible[i, j, k]


def test_pck3d_hand_computed():
    # Millimetre inputs, threshold 150: distances 149, 150 (exact), 151 -> strict '<'.
    target = np.zeros((3, 3), f32)
    pred = np.array([[149, 0, 0], [0, 90, 120], [0, 0, 151]], f32)
    np.testing.assert_array_equal(metrics.pck3d(pred, target, threshold=150.0), [1, 0, 0])
    np.testing.assert_array_equal(metrics.pck3d(pred / 1000, target), [1, 0, 0])  # metres


def test_auc_hand_computed_and_loop():
    # Thresholds 0, 5, ..., 150 mm. Distance 0 scores at 30 of 31 (not at 0), distance 7
    # at 10..150 (29), distances 150 and 200 never.
    target = np.zeros((4, 3), f32)
    pred = np.array([[0, 0, 0], [7, 0, 0], [0, 150, 0], [0, 0, 200]], f32)
    np.testing.assert_allclose(
        metrics.auc(pred, target, max_threshold=150.0), [30 / 31, 29 / 31, 0.0, 0.0], rtol=1e-6
    )
    np.testing.assert_allclose(
        metrics.auc(pred / 1000, target), [30 / 31, 29 / 31, 0.0, 0.0], rtol=1e-6
    )

    rng = np.random.default_rng(5)
    target = rng.normal(size=(20, 17, 3)).astype(f32) * 0.1
    pred = (target + 0.06 * rng.normal(size=target.shape)).astype(f32)
    dist = np.linalg.norm(pred.astype(np.float64) - target, axis=-1)
    manual = np.mean([np.mean(dist < t) for t in np.linspace(0, 0.150, 31)])
    values = metrics.auc(pred, target)
    assert values.shape == (20, 17)
    assert float(jnp.mean(values)) == pytest.approx(manual, abs=1e-6)
    # And the 150 mm 3DPCK against the same manual loop.
    assert float(jnp.mean(metrics.pck3d(pred, target))) == pytest.approx(np.mean(dist < 0.15))


# ----------------------------------------------------------------------------- aggregation


def test_masked_sum_count_hand_computed():
    values = np.array([[1, 2, np.nan], [4, 5, 6]], f32)
    mask = np.array([[True, True, False], [True, False, True]])
    total, count = metrics.masked_sum_count(values, mask)
    assert float(total) == 13.0 and int(count) == 4  # 1 + 2 + 4 + 6
    total, count = metrics.masked_sum_count(values, mask, axis=0)
    np.testing.assert_array_equal(total, [5, 2, 6])
    np.testing.assert_array_equal(count, [2, 1, 1])
    assert count.dtype == jnp.int32
    total, count = metrics.masked_sum_count(values[1], None)
    assert float(total) == 15.0 and int(count) == 3
    # Float weights: weighted sum and sum of weights; weight 0 excludes the NaN.
    weights = np.array([[0.5, 1, 0], [2, 0, 1]], f32)
    total, count = metrics.masked_sum_count(values, weights)
    assert float(total) == pytest.approx(0.5 + 2 + 8 + 6) and float(count) == pytest.approx(4.5)
    np.testing.assert_array_equal(metrics.mean_from(np.array([3.0, 0.0], f32), np.array([2, 0])),
                                  [1.5, np.nan])


def test_sum_count_additive_across_splits():
    rng = np.random.default_rng(6)
    values = rng.uniform(size=(10, 17)).astype(f32)
    mask = rng.uniform(size=(10, 17)) > 0.2
    groups = rng.integers(0, 4, size=10)
    for fn in (
        lambda v, m, g: metrics.masked_sum_count(v, m),
        lambda v, m, g: metrics.per_joint_sum_count(v, m),
        lambda v, m, g: metrics.per_group_sum_count(v, g, 4, m),
    ):
        whole = fn(values, mask, groups)
        first = fn(values[:3], mask[:3], groups[:3])
        second = fn(values[3:], mask[3:], groups[3:])
        np.testing.assert_allclose(first[0] + second[0], whole[0], rtol=1e-6)
        np.testing.assert_array_equal(first[1] + second[1], whole[1])


def test_per_group_and_action_wise_against_loop():
    rng = np.random.default_rng(7)
    values = rng.uniform(size=(30, 5)).astype(f32)
    mask = rng.uniform(size=(30, 5)) > 0.3
    groups = rng.integers(-1, 5, size=30)  # -1: padding, dropped; group 5 stays empty
    sums, counts = metrics.per_group_sum_count(values, groups, 6, mask)
    assert sums.shape == counts.shape == (6,)
    ref_sums = np.zeros(6)
    ref_counts = np.zeros(6, int)
    for i in range(30):
        if groups[i] >= 0:
            ref_sums[groups[i]] += values[i][mask[i]].sum()
            ref_counts[groups[i]] += mask[i].sum()
    np.testing.assert_allclose(sums, ref_sums, rtol=1e-6)
    np.testing.assert_array_equal(counts, ref_counts)
    means = metrics.mean_from(sums, counts)
    assert np.isnan(means[5])
    ref_action = np.mean(ref_sums[:5] / ref_counts[:5])
    assert float(metrics.action_wise_mean(sums, counts)) == pytest.approx(ref_action, rel=1e-6)
    assert float(metrics.frame_wise_mean(sums, counts)) == pytest.approx(
        ref_sums.sum() / ref_counts.sum(), rel=1e-6
    )


def test_action_wise_vs_frame_wise_hand_computed():
    sums = np.array([10.0, 0.0, 6.0], f32)
    counts = np.array([5, 0, 1], np.int32)
    assert float(metrics.action_wise_mean(sums, counts)) == pytest.approx(4.0)  # (2 + 6) / 2
    assert float(metrics.frame_wise_mean(sums, counts)) == pytest.approx(16 / 6)
    assert np.isnan(metrics.action_wise_mean(np.zeros(2, f32), np.zeros(2, np.int32)))


# ----------------------------------------------------------------------------- API contracts


def test_batch_polymorphism_and_jit():
    rng = np.random.default_rng(8)
    pred = rng.normal(size=(2, 3, 6, 3)).astype(f32)
    target = rng.normal(size=(2, 3, 6, 3)).astype(f32)
    for fn in (metrics.mpjpe, metrics.p_mpjpe, metrics.n_mpjpe, metrics.pck3d, metrics.auc):
        batched = fn(pred, target)
        assert batched.shape == (2, 3, 6)
        np.testing.assert_allclose(jax.jit(fn)(pred, target), batched, atol=1e-5)
        np.testing.assert_allclose(fn(pred[1, 2], target[1, 2]), batched[1, 2], atol=1e-5)


def test_gradients_finite_at_zero_error():
    pose = np.random.default_rng(9).normal(size=(2, 5, 3)).astype(f32)
    for fn, exactly_zero in (
        (metrics.mpjpe, True),
        (lambda p, t: metrics.mpjve(p, t, axis=0), True),
        # After alignment the residual is rounding noise, not exactly 0, so the norm's
        # gradient is a unit vector there: only finiteness is guaranteed.
        (metrics.p_mpjpe, False),
        (metrics.n_mpjpe, False),
    ):
        grad = jax.grad(lambda p: jnp.sum(fn(p, pose)))(pose)
        assert np.all(np.isfinite(grad))
        if exactly_zero:
            np.testing.assert_array_equal(grad, 0.0)


def test_input_validation():
    a = np.zeros((4, 3), f32)
    with pytest.raises(ValueError, match="target"):
        metrics.mpjpe(a, np.zeros((5, 3), f32))
    with pytest.raises(ValueError, match="pred"):
        metrics.p_mpjpe(np.zeros((4, 2), f32), np.zeros((4, 2), f32))
    with pytest.raises(ValueError, match="pred_2d"):
        metrics.pck(a, a, visible=np.ones(4, bool), bbox_size=np.ones(2, f32))
    b = np.zeros((4, 2), f32)
    with pytest.raises(ValueError, match="visible"):
        metrics.pck(b, b, visible=np.ones(5, bool), bbox_size=np.ones(2, f32))
    with pytest.raises(ValueError, match="bbox_size"):
        metrics.pck(b, b, visible=np.ones(4, bool), bbox_size=np.ones(3, f32))
    with pytest.raises(ValueError, match="mask"):
        metrics.masked_sum_count(np.zeros(4, f32), np.ones(3, bool))
    with pytest.raises(ValueError, match="group_ids"):
        metrics.per_group_sum_count(np.zeros((4, 2), f32), np.zeros(3, np.int32), 2)
    with pytest.raises(ValueError, match="group_ids"):
        metrics.per_group_sum_count(np.zeros((4, 2), f32), np.zeros(4, f32), 2)
    with pytest.raises(ValueError, match="num_thresholds"):
        metrics.auc(a, a, num_thresholds=0)
