"""Per-action protocol accumulation and the trivial baselines, on hand-built cases."""

import importlib.util
import json
import os

import numpy as np
import pytest

from jpose import baselines, evaluation


def _pose(rng, frames=4, joints=5):
    return rng.normal(size=(frames, joints, 3)).astype(np.float32) * 0.3


def test_action_wise_and_frame_wise_means_by_hand():
    rng = np.random.default_rng(0)
    acc = evaluation.ProtocolAccumulator()
    # Action "a": every joint off by 10 mm along x, 2 sequences of 4 frames.
    # Action "b": every joint off by 40 mm along y, 1 sequence of 8 frames.
    for _ in range(2):
        t = _pose(rng)
        acc.add("a", t + np.array([0.010, 0, 0], np.float32), t)
    t = _pose(rng, frames=8)
    acc.add("b", t + np.array([0, 0.040, 0], np.float32), t)
    assert acc.per_action_mm("mpjpe") == pytest.approx({"a": 10.0, "b": 40.0}, rel=1e-4)
    assert acc.action_wise_mm("mpjpe") == pytest.approx(25.0, rel=1e-4)
    # Frame-wise: (8 frames x 10 + 8 frames x 40) / 16 frames.
    assert acc.frame_wise_mm("mpjpe") == pytest.approx(25.0, rel=1e-4)
    # A translation is removed by Procrustes alignment; a constant offset has no
    # velocity error.
    assert acc.action_wise_mm("p_mpjpe") == pytest.approx(0.0, abs=1e-3)
    assert acc.action_wise_mm("mpjve") == pytest.approx(0.0, abs=1e-3)
    assert acc.counts["mpjve"]["b"] == 7 * 5  # F - 1 frame steps, 5 joints.
    # Uneven frame counts make the two averages differ.
    acc.add("b", t[:2] + np.array([0, 0.040, 0], np.float32), t[:2])
    assert acc.frame_wise_mm("mpjpe") == pytest.approx((8 * 10 + 10 * 40) / 18, rel=1e-4)
    assert acc.action_wise_mm("mpjpe") == pytest.approx(25.0, rel=1e-4)
    table = evaluation.format_table({"m": acc})
    assert "average (action-wise)" in table and "25.0" in table


def test_accumulator_sums_add_across_shards():
    rng = np.random.default_rng(1)
    pred, target = _pose(rng, 6), _pose(rng, 6)
    whole, parts = evaluation.ProtocolAccumulator(), evaluation.ProtocolAccumulator()
    whole.add("x", pred, target)
    parts.add("x", pred[:3], target[:3])
    parts.add("x", pred[3:], target[3:])
    assert parts.counts["mpjpe"] == whole.counts["mpjpe"]
    assert parts.sums["mpjpe"]["x"] == pytest.approx(whole.sums["mpjpe"]["x"], rel=1e-5)


def test_sequence_errors_rejects_bad_shapes():
    with pytest.raises(ValueError, match=r"\(F, J, 3\)"):
        evaluation.sequence_errors(np.zeros((4, 5, 2)), np.zeros((4, 5, 2)))
    with pytest.raises(ValueError, match="at least 2 frames"):
        evaluation.sequence_errors(np.zeros((1, 5, 3)), np.zeros((1, 5, 3)))


def test_linear_lifter_recovers_an_exact_linear_map():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(200, 4, 2))
    a = rng.normal(size=(8, 12))
    y = (x.reshape(200, 8) @ a + 0.5).reshape(200, 4, 3)
    lifter = baselines.fit_linear_lifter(x, y, ridge=0.0)
    np.testing.assert_allclose(lifter.weights[:-1], a, atol=1e-8)
    np.testing.assert_allclose(lifter.weights[-1], 0.5, atol=1e-8)
    np.testing.assert_allclose(baselines.apply_linear_lifter(lifter, x), y, atol=1e-5)
    np.testing.assert_allclose(baselines.fit_mean_pose(y), y.mean(0), atol=1e-6)
    with pytest.raises(ValueError, match="NaN"):
        baselines.fit_mean_pose(np.full((2, 4, 3), np.nan))
    with pytest.raises(ValueError, match="fitted on 4"):
        baselines.apply_linear_lifter(lifter, x[:, :3])


def test_main_job_end_to_end_in_tiny_mode(tmp_path, monkeypatch):
    root = os.path.join(os.path.dirname(__file__), "..")
    monkeypatch.syspath_prepend(os.path.join(root, "launch"))
    spec = importlib.util.spec_from_file_location(
        "jpose_launch_main", os.path.join(root, "launch", "main.py"))
    main = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(main)
    cfg_spec = importlib.util.spec_from_file_location(
        "cfg_sample", os.path.join(root, "launch", "configs", "sample_videopose.py"))
    cfg = importlib.util.module_from_spec(cfg_spec)
    cfg_spec.loader.exec_module(cfg)
    config = cfg.get_config("tiny")
    config.num_steps = 40
    config.optimizer.learning_rate = 3e-3
    summary = main.run(config, str(tmp_path))
    assert set(summary) == {"VideoPose3D", "mean pose", "linear lifter"}
    # Baselines on hand-checkable terms: the linear lifter reads depth off 2D far better
    # than predicting the mean pose.
    assert (summary["linear lifter"]["mpjpe"]["action_wise"]
            < 0.8 * summary["mean pose"]["mpjpe"]["action_wise"])
    with open(tmp_path / "main.json") as f:
        assert json.load(f)["results"] == summary  # JSON round-trips floats exactly.
    assert (tmp_path / "poses.png").stat().st_size > 10_000
    assert (tmp_path / "curves.png").exists()
