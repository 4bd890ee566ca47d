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


# ------------------------------------------------------------------ MPI-INF-3DHP test set

def _pose_with_errors(rng, errors_mm, *, root=evaluation.MPI_INF_3DHP_ROOT):
    """(target, pred) of 17 joints: pred = target + a global shift + per-joint offsets of
    the given lengths (mm) in random directions; the root's own offset must be 0, so the
    root-relative joint errors are exactly ``errors_mm``."""
    errors_mm = np.asarray(errors_mm, np.float64)
    assert errors_mm.shape == (17,) and errors_mm[root] == 0
    target = rng.normal(size=(17, 3)) * 0.3 + np.array([0.0, 0.0, 4.0])
    directions = rng.normal(size=(17, 3))
    directions /= np.linalg.norm(directions, axis=-1, keepdims=True)
    pred = target + np.array([0.7, -0.2, 1.0]) + directions * errors_mm[:, None] / 1000.0
    return target.astype(np.float32), pred.astype(np.float32)


def _errors(pattern):
    e = np.zeros(17)
    others = [j for j in range(17) if j != evaluation.MPI_INF_3DHP_ROOT]
    if pattern == "A":    # 8 joints just inside 150 mm, 8 just outside.
        e[others[:8]], e[others[8:]] = 149.0, 151.0
    elif pattern == "B":  # every joint well inside.
        e[others] = 42.0
    elif pattern == "C":  # every joint far outside.
        e[others] = 300.0
    return e


def _sequence(rng, patterns):
    poses = [_pose_with_errors(rng, _errors(p)) for p in patterns]
    return (np.stack([p for _, p in poses]), np.stack([t for t, _ in poses]))


def test_mpi_inf_3dhp_pck_auc_mpjpe_by_hand():
    rng = np.random.default_rng(3)
    acc = evaluation.PCKAccumulator()
    # TS1 (Studio GS): A and B valid (activity 1), then an invalid frame with a huge error
    # and a NaN joint (activity 2) that must not count anywhere.
    pred, target = _sequence(rng, "AB")
    bad_target = target[:1]
    bad_pred = bad_target + 10.0
    bad_pred[0, 3] = np.nan
    acc.add("TS1", np.concatenate([pred, bad_pred]), np.concatenate([target, bad_target]),
            valid=np.array([True, True, False]), activity=np.array([1, 1, 2]))
    # TS5 (Outdoor): C (activity 2) and A (activity 7).
    pred, target = _sequence(rng, "CA")
    acc.add("TS5", pred, target, valid=np.array([True, True]), activity=np.array([2, 7]))
    # A sequence outside TS1..TS6: total and activity rows only.
    pred, target = _sequence(rng, "B")
    acc.add("my_clip", pred, target, valid=np.array([True]), activity=np.array([3]))

    # Per frame, over 17 joints (root error 0): PCK hits, AUC (joint, threshold) hits on
    # 0, 5, ..., 150 mm, MPJPE sum in mm.
    #   A: hits 1 + 8 = 9;  AUC 30 (root: all t > 0) + 8 x 1 (149 < 150 only) = 38;  2400
    #   B: hits 17;         AUC 30 + 16 x 22 (42 < 45..150) = 382;                  672
    #   C: hits 1;          AUC 30;                                                 4800
    def expect(frames):
        n = len(frames)
        hits = {"A": 9, "B": 17, "C": 1}
        auc = {"A": 38, "B": 382, "C": 30}
        err = {"A": 2400.0, "B": 16 * 42.0, "C": 4800.0}
        return (100 * sum(hits[f] for f in frames) / (17 * n),
                100 * sum(auc[f] for f in frames) / (17 * 31 * n),
                sum(err[f] for f in frames) / (17 * n), n)

    expected = {"total": expect("ABCAB"), "Studio GS": expect("AB"), "Outdoor": expect("CA"),
                "Stand/Walk": expect("AB"), "Exercise": expect("C"),
                "Sit on Chair": expect("B"), "Misc": expect("A")}
    summary = acc.summary()
    assert set(summary) == {"pck3d_150mm", "auc", "mpjpe_mm", "num_frames"}
    assert acc.groups == tuple(expected)  # reporting order; empty groups left out
    for group, (pck, auc, mpjpe, frames) in expected.items():
        assert summary["pck3d_150mm"][group] == pytest.approx(pck, abs=1e-9), group
        assert summary["auc"][group] == pytest.approx(auc, abs=1e-9), group
        assert summary["mpjpe_mm"][group] == pytest.approx(mpjpe, rel=1e-4), group
        assert summary["num_frames"][group] == frames, group
    assert summary["pck3d_150mm"]["total"] == pytest.approx(100 * 53 / 85)
    assert summary["mpjpe_mm"]["total"] == pytest.approx((2 * 2400 + 2 * 672 + 4800) / 85, rel=1e-4)
    # PCK and AUC are integer hit counts: exact.
    assert acc.sums["pck3d"]["total"] == 53 and acc.counts["pck3d"]["total"] == 85
    assert acc.sums["auc"]["total"] == 870 and acc.counts["auc"]["total"] == 85 * 31
    assert json.loads(json.dumps(summary)) == summary
    table = acc.table()
    assert "Studio no GS" in table and "Outdoor" in table and "Misc" in table
    studio_no_gs = next(r for r in table.splitlines() if r.startswith("Studio no GS"))
    assert studio_no_gs.split()[-1] == "-"
    total_row = next(r for r in table.splitlines() if r.startswith("total"))
    assert total_row.split()[1:3] == ["5", f"{100 * 53 / 85:.1f}"]


def test_mpi_inf_3dhp_auc_matches_the_definition_and_chunks_add_exactly():
    rng = np.random.default_rng(4)
    frames = 40
    target = rng.normal(size=(frames, 17, 3)).astype(np.float32) * 0.3
    pred = (target + rng.normal(size=target.shape) * 0.07).astype(np.float32)
    valid = rng.random(frames) < 0.8
    activity = rng.integers(1, 8, size=frames)
    for joints in (None, evaluation.MPI_INF_3DHP_JOINTS_14):
        whole = evaluation.PCKAccumulator(joints=joints)
        whole.add("TS3", pred, target, valid=valid, activity=activity)
        parts = evaluation.PCKAccumulator(joints=joints)
        for chunk in (slice(0, 13), slice(13, 40)):
            parts.add("TS3", pred[chunk], target[chunk], valid=valid[chunk],
                      activity=activity[chunk])
        assert parts.counts == whole.counts
        assert parts.sums["pck3d"] == whole.sums["pck3d"]
        assert parts.sums["auc"] == whole.sums["auc"]
        # Direct NumPy: root-relative errors (mm) of the valid frames, selected joints.
        rel = lambda x: x.astype(np.float64) - x[:, 14:15].astype(np.float64)
        err = 1000 * np.linalg.norm(rel(pred) - rel(target), axis=-1)
        err = err[:, list(joints or range(17))]
        thresholds = np.arange(0, 151, 5)
        assert thresholds.size == 31
        for group, frame_mask in (("total", valid), ("Studio no GS", valid),
                                  ("Sports", valid & (activity == 6))):
            e = err[frame_mask]
            curve = [(e < t).mean() for t in thresholds]
            summary = whole.summary()
            assert summary["auc"][group] == pytest.approx(100 * np.mean(curve), abs=1e-9)
            assert summary["pck3d_150mm"][group] == pytest.approx(100 * (e < 150).mean(),
                                                                  abs=1e-9)
            assert summary["mpjpe_mm"][group] == pytest.approx(e.mean(), rel=1e-4)
            assert summary["num_frames"][group] == int(frame_mask.sum())
        assert "Studio GS" not in whole.summary()["auc"]


def test_mpi_inf_3dhp_groups_and_layout_constants():
    from jpose import skeleton
    from jpose.datasets.mpi_inf_3dhp import raw

    assert evaluation.MPI_INF_3DHP_ACTIVITIES == raw.ACTIVITY_NAMES
    scenes = {f"TS{k}": evaluation.mpi_inf_3dhp_scene(f"TS{k}") for k in range(1, 7)}
    assert scenes == {"TS1": "Studio GS", "TS2": "Studio GS", "TS3": "Studio no GS",
                      "TS4": "Studio no GS", "TS5": "Outdoor", "TS6": "Outdoor"}
    for name in ("TS7", "ts1", "S1", "TS1/", ""):
        assert evaluation.mpi_inf_3dhp_scene(name) is None
    layout = skeleton.MPI_INF_3DHP_17
    assert layout.root == evaluation.MPI_INF_3DHP_ROOT == layout.index("pelvis")
    left_out = set(layout.joint_names) - {layout.joint_names[j]
                                          for j in evaluation.MPI_INF_3DHP_JOINTS_14}
    assert left_out == {"pelvis", "spine", "head"}


def test_mpi_inf_3dhp_accumulator_rejects_bad_inputs():
    acc = evaluation.PCKAccumulator()
    x = np.zeros((3, 17, 3), np.float32)
    ok = dict(valid=np.array([True, True, False]), activity=np.array([1, 7, 0]))
    acc.add("TS2", x, x, **ok)  # activity 0 on an invalid frame is ignored
    assert acc.summary()["num_frames"] == {"total": 2, "Studio GS": 2, "Stand/Walk": 1,
                                           "Misc": 1}
    with pytest.raises(ValueError, match="1..7"):
        acc.add("TS2", x, x, valid=np.ones(3, bool), activity=np.array([0, 1, 2]))
    with pytest.raises(ValueError, match=r"\(F, J, 3\)"):
        acc.add("TS2", x, x[:, :, :2], **ok)
    with pytest.raises(ValueError, match=r"shape \(3,\)"):
        acc.add("TS2", x, x, valid=np.ones(2, bool), activity=np.ones(3, int))
    with pytest.raises(ValueError, match="bool"):
        acc.add("TS2", x, x, valid=np.full(3, 0.5), activity=np.ones(3, int))
    with pytest.raises(ValueError, match="distinct indices"):
        evaluation.PCKAccumulator(joints=(0, 0)).add("TS2", x, x, **ok)
    assert acc.summary()["num_frames"]["total"] == 2  # failed adds changed nothing
