"""Per-joint scores of a lifter's predictions (jpose.confidence), by hand."""

import numpy as np
import pytest

from jpose import confidence


def test_flip_consistency_is_a_gaussian_of_the_disagreement():
    poses = np.zeros((2, 3, 3))
    other = np.zeros((2, 3, 3))
    other[0, 1] = [0.03, 0.04, 0.0]  # 5 cm apart
    s = confidence.flip_consistency(poses, other, sigma=0.05)
    assert s[0, 1] == pytest.approx(np.exp(-0.5))
    np.testing.assert_allclose(np.delete(s.ravel(), 1), 1.0)
    with pytest.raises(ValueError, match=r"\(F, J, 3\)"):
        confidence.flip_consistency(poses, other[:1], sigma=0.05)
    with pytest.raises(ValueError, match="sigma"):
        confidence.flip_consistency(poses, other, sigma=0.0)


def test_temporal_consistency_scores_acceleration_not_velocity():
    t = np.arange(6, dtype=np.float64)
    poses = np.zeros((6, 2, 3))
    poses[:, 0, 0] = 0.1 * t  # constant velocity: zero acceleration inside
    poses[3, 1, 2] = 0.02  # a 2 cm jump on one frame of joint 1
    s = confidence.temporal_consistency(poses, sigma=0.02)
    np.testing.assert_allclose(s[1:-1, 0], 1.0, atol=1e-6)
    # Ends repeat: frame 0 sees p1 - 2 p0 + p0 = 0.1 m of "acceleration".
    assert s[0, 0] == pytest.approx(np.exp(-0.5 * (0.1 / 0.02) ** 2), abs=1e-7)
    # The jump: a = |-2 * 0.02| at frame 3, 0.02 at frames 2 and 4.
    assert s[3, 1] == pytest.approx(np.exp(-0.5 * 4.0))
    assert s[2, 1] == pytest.approx(np.exp(-0.5)) and s[4, 1] == pytest.approx(np.exp(-0.5))
    assert s[0, 1] == pytest.approx(1.0)
    assert confidence.temporal_consistency(np.ones((1, 2, 3)), sigma=0.1).tolist() == [[1, 1]]


def test_combine_and_detector():
    a, b = np.array([[0.5, 1.0]]), np.array([[0.5, 0.2]])
    np.testing.assert_allclose(confidence.combine(a, b), [[0.25, 0.2]])
    np.testing.assert_array_equal(confidence.detector(np.array([[-1.0, 2.0]])), [[0.0, 1.0]])


def test_ranking_report_by_hand():
    scores = np.array([0.9, 0.8, 0.1, 0.3])
    errors = np.array([0.01, 0.02, 0.10, 0.08])
    r = confidence.ranking_report(scores, errors, tau=0.7)
    assert r["fraction_confident"] == 0.5
    assert r["mpjpe_confident_mm"] == pytest.approx(15.0)
    assert r["mpjpe_rest_mm"] == pytest.approx(90.0)
    assert r["spearman"] == pytest.approx(-1.0)  # a perfect ranking
    flat = confidence.ranking_report(np.ones(4), errors, tau=0.7)
    assert np.isnan(flat["spearman"]) and np.isnan(flat["mpjpe_rest_mm"])
    with pytest.raises(ValueError, match="shape"):
        confidence.ranking_report(scores, errors[:3], tau=0.7)
