"""MCSS (seed 004): metric loss, masked hard negatives, canonical pose, retrieval, recipe."""

import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from jpose import skeleton
from jpose.evaluators import retrieval
from jpose.nets import network
from jpose.objectives import metric_learning as ml
from jpose.recipes import Step, mcss

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LAYOUT = "h36m_17"
LEFT_HIP, RIGHT_HIP = 4, 1  # h36m_17


def _step():
    return Step(rng=jax.random.key(0), step=jnp.int32(0), bn_momentum=jnp.float32(0.1))


# Hand case: anchors a_i, positives p_i (2-d), alpha 0.6, beta 0.3.
#   D = ||a_i - p_j||^2 = [[0.09, 1.00, 0.25],
#                          [1.09, 0.00, 1.25],
#                          [0.49, 2.00, 0.25]]
# Row 0: j=2 (0.25 <= beta) is not admissible -> D_min = 1.00, hinge 0, L = 0.09.
# Row 1: D_min = 1.09, hinge 0, L = 0.
# Row 2: D_min = 0.49, hinge 0.6 - 0.49 = 0.11, L = 0.25 + 0.11 = 0.36.  Mean 0.15.
A = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]], np.float32)
P = np.array([[0.0, 0.3], [1.0, 0.0], [0.0, 0.5]], np.float32)


def test_metric_loss_equals_the_hand_computed_value():
    mask = ml.temporal_negative_mask(jnp.array([0, 1, 2]), jnp.zeros(3, jnp.int32),
                                     jnp.zeros(3, jnp.int32), min_frame_gap=10)
    terms = ml.metric_loss(jnp.asarray(A), jnp.asarray(P), negative_mask=mask, alpha=0.6,
                           beta=0.3)
    np.testing.assert_allclose(terms.positive, [0.09, 0.0, 0.25], atol=1e-6)
    np.testing.assert_allclose(terms.hinge, [0.0, 0.0, 0.11], atol=1e-6)
    np.testing.assert_array_equal(terms.negative_index, [1, 0, 0])
    assert float(jnp.mean(terms.loss)) == pytest.approx(0.15, abs=1e-6)
    # The literal reading, min_j delta_ij D(i, j), picks an excluded zero in every row:
    # the hinge would be a constant alpha. The masked minimum does not.
    assert not np.allclose(terms.hinge, 0.6)
    # Anchor 2's only hinge-active negative is instant 0; make it the same subject's
    # nearby frame (same sequence, 3 frames apart): it is no negative any more, the next
    # one is D = 2.0 and the hinge vanishes.
    mask = ml.temporal_negative_mask(jnp.array([5, 1, 5]), jnp.array([7, 0, 7]),
                                     jnp.array([100, 0, 103]), min_frame_gap=10)
    terms = ml.metric_loss(jnp.asarray(A), jnp.asarray(P), negative_mask=mask, alpha=0.6,
                           beta=0.3)
    np.testing.assert_allclose(terms.loss, [0.09, 0.0, 0.25], atol=1e-6)
    assert int(terms.negative_index[2]) == 1
    # Far enough apart (>= min_frame_gap), the same subject's frame is a negative again.
    mask = ml.temporal_negative_mask(jnp.array([5, 1, 5]), jnp.array([7, 0, 7]),
                                     jnp.array([100, 0, 110]), min_frame_gap=10)
    assert bool(mask[2, 0]) and bool(mask[0, 2])


def test_masked_minimum_ignores_masked_entries_and_the_positive():
    values = jnp.array([[0.0, 5.0, 0.1, 3.0],
                        [2.0, 0.0, 4.0, 1.0],
                        [7.0, 8.0, 0.0, 9.0]])
    mask = ~jnp.eye(4, dtype=bool)[:3]  # never the positive (diagonal)
    mask = mask.at[0, 2].set(False).at[2].set(False)  # row 0: 0.1 masked; row 2: nothing
    m, has = ml.masked_min(values, mask)
    np.testing.assert_allclose(m, [3.0, 1.0, 0.0])
    np.testing.assert_array_equal(has, [True, True, False])
    grad = jax.grad(lambda v: jnp.sum(ml.masked_min(v, mask)[0]))(values)
    expected = np.zeros((3, 4), np.float32)
    expected[0, 3] = expected[1, 3] = 1.0
    np.testing.assert_array_equal(grad, expected)
    # Padding columns (weight 0) are never negatives, nor the diagonal.
    mask = ml.temporal_negative_mask(jnp.arange(4), jnp.arange(4), jnp.zeros(4, jnp.int32),
                                     min_frame_gap=1, weight=jnp.array([1.0, 1.0, 0.0, 1.0]))
    assert not bool(jnp.any(jnp.diagonal(mask))) and not bool(jnp.any(mask[:, 2]))


def _rot_z(psi):
    c, s = np.cos(psi), np.sin(psi)
    return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]], np.float64)


def _camera_rotation(yaw, pitch):
    """World-to-camera R of a roll-free camera (world Z up; camera x right, y down)."""
    base = np.array([[1, 0, 0], [0, 0, -1], [0, 1, 0]], np.float64)  # looks along +y
    c, s = np.cos(pitch), np.sin(pitch)
    tilt = np.array([[1, 0, 0], [0, c, -s], [0, s, c]], np.float64)
    return tilt @ base @ _rot_z(yaw)


def _world_pose(seed=0):
    rng = np.random.default_rng(seed)
    pose = rng.normal(0.0, 0.2, (17, 3))
    pose[LEFT_HIP] = pose[0] + np.array([0.05, 0.12, -0.02])
    pose[RIGHT_HIP] = pose[0] - np.array([0.05, 0.12, 0.02])
    return pose - pose[:1]


def test_canonical_pose_faces_a_fixed_direction_and_ignores_the_view():
    world = _world_pose()
    canon = np.asarray(ml.canonical_pose(jnp.asarray(world, jnp.float32), layout=LAYOUT))
    hip = canon[LEFT_HIP] - canon[RIGHT_HIP]
    assert abs(hip[1]) < 1e-6 and hip[0] > 0.1  # left hip towards +x: body faces -y
    np.testing.assert_allclose(hip[2], world[LEFT_HIP, 2] - world[RIGHT_HIP, 2], atol=1e-6)
    # A rigid motion (yaw about the vertical): same canonical pose; lengths kept.
    for psi in (0.7, -2.5, 3.1):
        turned = world @ _rot_z(psi).T
        np.testing.assert_allclose(
            ml.canonical_pose(jnp.asarray(turned, jnp.float32), layout=LAYOUT), canon,
            atol=1e-5)
    # Camera-frame poses of two pitched views + their extrinsics: the same canonical pose.
    for yaw, pitch in ((0.3, 0.2), (2.0, -0.1)):
        r = _camera_rotation(yaw, pitch)
        cam = world @ r.T
        ext = np.concatenate([r.reshape(9), [1.0, 2.0, 3.0]]).astype(np.float32)
        got = ml.canonical_pose(jnp.asarray(cam, jnp.float32), layout=LAYOUT,
                                extrinsics=jnp.asarray(ext))
        np.testing.assert_allclose(got, canon, atol=1e-5)
        # ...whereas the camera frame itself (y down, pitched) is not yaw-normalisable.
        assert not np.allclose(ml.canonical_pose(jnp.asarray(cam, jnp.float32),
                                                 layout=LAYOUT), canon, atol=1e-3)
        # A flip-augmented example (mirrored camera, x negated, left/right swapped) maps
        # to the canonical pose of the mirror-image body: still hips on +x, Z kept.
        perm = np.array(skeleton.get(LAYOUT).flip_permutation)
        flipped = (cam * np.array([-1.0, 1.0, 1.0]))[perm]
        ext_f = ext.copy()
        ext_f[:3] *= -1
        got_f = np.asarray(ml.canonical_pose(jnp.asarray(flipped, jnp.float32),
                                             layout=LAYOUT, extrinsics=jnp.asarray(ext_f)))
        hip_f = got_f[LEFT_HIP] - got_f[RIGHT_HIP]
        assert abs(hip_f[1]) < 1e-5 and hip_f[0] > 0.1
        np.testing.assert_allclose(got_f[:, 2], canon[perm, 2], atol=1e-5)


def _np_pa_mpjpe(pred, target):
    """Independent NumPy similarity Procrustes (no reflection), mean over joints."""
    mp, mt = pred.mean(0), target.mean(0)
    x, y = pred - mp, target - mt
    u, s, vt = np.linalg.svd(x.T @ y)
    d = np.sign(np.linalg.det(u @ vt))
    s = s * np.array([1, 1, d])
    rot = u @ np.diag([1, 1, d]) @ vt
    scale = s.sum() / (x * x).sum()
    aligned = scale * x @ rot + mt
    return np.linalg.norm(aligned - target, axis=-1).mean()


def _views():
    """2 subjects x 2 cameras x 3 instants; view 1 = a rigid transform of view 0."""
    rng = np.random.default_rng(1)
    views = []
    for s in range(2):
        poses = rng.normal(0, 0.25, (3, 17, 3))
        for cam in range(2):
            r = _camera_rotation(1.3 * cam, 0.1 * cam)
            p = poses @ r.T + np.array([0.0, 0.0, 4.0])
            inputs = rng.normal(0, 0.1, (3, 17, 2))
            views.append(retrieval.RetrievalView(f"S{s}", f"S{s}/take", cam, inputs,
                                                 p.astype(np.float32)))
    return views


def test_retrieval_metric_on_a_hand_case():
    views = _views()
    poses = np.concatenate([v.poses_3d for v in views])
    subjects = np.repeat([0, 0, 1, 1], 3)
    cameras = np.repeat([0, 1, 0, 1], 3)
    instant = np.tile(np.arange(3), 4)
    # A perfect view-invariant embedding (subject and instant one-hot): same-subject @1
    # retrieves the synchronous frame of the other view, P-MPJPE 0, as the oracle does.
    perfect = np.eye(6)[subjects * 3 + instant]
    res = retrieval.summarise(retrieval.retrieve(perfect, poses, subjects, cameras,
                                                 np.arange(12), ks=(1, 2)), ks=(1, 2))
    assert res["same_subject/mean_pa_mpjpe@1_mm"] == pytest.approx(0.0, abs=1e-3)
    assert res["same_subject/oracle@1_mm"] == pytest.approx(0.0, abs=1e-3)
    # A view-dependent embedding: camera 1 encodes instant t as camera 0 does t + 1, so
    # a camera-0 query of instant t retrieves instant t - 1, a camera-1 one t + 1.
    shifted = np.eye(6)[subjects * 3 + (instant + cameras) % 3]
    per_query = retrieval.retrieve(shifted, poses, subjects, cameras, np.arange(12), ks=(1,))
    res = retrieval.summarise(per_query, ks=(1,))
    ref = []
    for q in range(12):
        target = np.flatnonzero((subjects == subjects[q]) & (cameras != cameras[q])
                                & (instant == (instant[q] + 2 * cameras[q] - 1) % 3))
        ref.append(_np_pa_mpjpe(poses[target[0]], poses[q]))
    assert res["same_subject/mean_pa_mpjpe@1_mm"] == pytest.approx(1000 * np.mean(ref),
                                                                   rel=1e-4)
    assert res["same_subject/queries@1"] == 12
    # Cross-subject: other subjects' frames of the other camera only (3 of them).
    assert per_query["cross_subject"]["oracle_valid"].all()
    np.testing.assert_array_equal(res["cross_subject/queries@1"], 12)


def test_oracle_is_never_worse_than_an_embedding():
    views = _views()
    poses = np.concatenate([v.poses_3d for v in views])
    subjects, cameras = np.repeat([0, 0, 1, 1], 3), np.repeat([0, 1, 0, 1], 3)
    for seed in range(3):
        feats = np.random.default_rng(seed).normal(size=(12, 4))
        per_query = retrieval.retrieve(feats, poses, subjects, cameras, np.arange(12),
                                       ks=(1, 3), chunk=5)
        for mode, r in per_query.items():
            assert np.all(r["oracle"][:, :3].mean(1) <= r["embedding"][:, :3].mean(1) + 1e-7)
            assert np.all(r["oracle"][:, 0] <= r["embedding"][:, 0] + 1e-7)
        res = retrieval.summarise(per_query, ks=(1, 3))
        for mode in retrieval.MODES:
            assert res[f"{mode}/gap@3_mm"] >= -1e-4


def test_views_are_recovered_from_the_loop_sequences():
    views = _views()
    seqs = [("take", v.inputs, v.poses_3d) for v in views]
    got = retrieval.views_from_sequences(seqs, layout=LAYOUT)
    assert [(v.subject, v.camera) for v in got] == [("S0", 0), ("S0", 1), ("S1", 0),
                                                    ("S1", 1)]
    # The raw-2D baseline through the evaluator: root-centred 2D, every frame a query.
    ev = retrieval.RetrievalEvaluator(None, seqs, layouts=(LAYOUT, LAYOUT), flip=False,
                                      bucket=8, ks=(1, 2), frame_stride=1, query_stride=1)
    _, values = ev.run(None)
    feats = np.concatenate([v.inputs - v.inputs[:, :1] for v in views]).reshape(12, -1)
    want = retrieval.summarise(retrieval.retrieve(
        feats, np.concatenate([v.poses_3d for v in views]), np.repeat([0, 0, 1, 1], 3),
        np.repeat([0, 1, 0, 1], 3), np.arange(12), ks=(1, 2)), ks=(1, 2))
    assert values == pytest.approx(want)
    with pytest.raises(ValueError, match="flip=False"):
        retrieval.RetrievalEvaluator(None, seqs, layouts=(LAYOUT, LAYOUT), flip=True, bucket=8)


def _hp(**recipe):
    return ml_collections.ConfigDict({
        "model": {"kind": "embedding", "variant": "tiny_mcss_mlp", "overrides": {}},
        "data": {"layout": LAYOUT},
        "recipe": {"name": "mcss", **mcss.DEFAULTS, **recipe}})


META = {"num_joints_in": 17, "num_joints_out": 17, "in_features": 2}


class _EchoNetwork:
    """Embedding = the first joint's (x, y) of each input; pose = zeros (+ 0 * w)."""

    def apply(self, variables, inputs, *, train, rng=None, bn_momentum=0.0):
        w = variables["params"]["w"]
        return ({"embedding": inputs[:, 0, :2] + 0.0 * w,
                 "pose": jnp.zeros(inputs.shape[:1] + (17, 3)) + 0.0 * w},
                variables["batch_stats"])


def _multiview_batch(b=3):
    """A hand-built batch of the multi-view stream contract (views = 2)."""
    inputs = np.zeros((b, 2, 17, 2), np.float32)
    inputs[:, 0, 0], inputs[:, 1, 0] = A, P
    r = _camera_rotation(0.4, 0.1)
    ext = np.concatenate([r.reshape(9), [0.0, -5.0, 1.5]]).astype(np.float32)
    return {"inputs": inputs, "poses_3d": np.zeros((b, 2, 17, 3), np.float32),
            "trajectory": np.zeros((b, 2, 3), np.float32),
            "camera": np.zeros((b, 2, 9), np.float32),
            "extrinsics": np.broadcast_to(ext, (b, 2, 12)).copy(),
            "confidence": np.ones((b, 2, 17), np.float32),
            "subject": np.array([0, 1, 2], np.int32),
            "sequence_index": np.zeros(b, np.int32), "frame_index": np.zeros(b, np.int32),
            "weight": np.ones(b, np.float32)}


def _pose_batch(b=2, seed=0):
    world = np.stack([_world_pose(seed + i) for i in range(b)])
    r = _camera_rotation(0.4, 0.1)
    ext = np.concatenate([r.reshape(9), [0.0, -5.0, 1.5]]).astype(np.float32)
    rng = np.random.default_rng(seed)
    return {"inputs": rng.normal(0, 0.3, (b, 17, 2)).astype(np.float32),
            "poses_3d": (world @ r.T).astype(np.float32),
            "extrinsics": np.broadcast_to(ext, (b, 12)).copy(),
            "weight": np.ones(b, np.float32)}


def test_recipe_loss_on_a_multiview_batch_equals_the_hand_value():
    nets = {"embedding": _EchoNetwork()}
    params, stats = {"embedding": {"w": jnp.zeros(())}}, {"embedding": {}}
    pose_b = _pose_batch()
    pose_b["poses_3d"][:] = 0.0  # H predicts zeros: a zero target, a zero regression term
    batch = {"metric": _multiview_batch(), "pose": pose_b}
    value, (_, logged) = mcss.loss(params, stats, batch, _step(), nets=nets, hp=_hp())
    assert float(value) == pytest.approx(0.15, abs=1e-6)
    total, count = logged["metric_loss"]
    assert float(total / count) == pytest.approx(0.15, abs=1e-6) and float(count) == 3
    # A padding row (weight 0) neither counts as an anchor nor serves as a negative:
    # without instant 0, anchor 2's negatives are {1} (D = 2.0): hinge 0.
    batch["metric"]["weight"] = np.array([0.0, 1.0, 1.0], np.float32)
    _, (_, logged) = mcss.loss(params, stats, batch, _step(), nets=nets, hp=_hp())
    total, count = logged["metric_loss"]
    assert float(total / count) == pytest.approx((0.0 + 0.25) / 2, abs=1e-6)
    # The regression term: L1 of zeros against the canonical targets, mean over joints.
    pose_b = _pose_batch()
    target = ml.canonical_pose(pose_b["poses_3d"], layout=LAYOUT,
                               extrinsics=pose_b["extrinsics"])
    value, _ = mcss.regression_loss(params, stats, {"pose": pose_b}, _step(), nets=nets,
                                    hp=_hp())
    assert float(value) == pytest.approx(float(np.abs(target).sum(-1).mean()), rel=1e-5)


def test_embedding_network_and_gradients_reach_the_right_heads():
    hp = _hp()
    nets = mcss.networks(hp, META)
    net = nets["embedding"]
    assert net.kind == "embedding" and net.receptive_field == 1
    variables = jax.jit(net.init)(jax.random.key(0))
    params = {"embedding": variables["params"]}
    stats = {"embedding": variables["batch_stats"]}
    mv = _multiview_batch()
    mv["inputs"] = np.random.default_rng(0).normal(0, 0.3, mv["inputs"].shape).astype(np.float32)
    batch = {"metric": mv, "pose": _pose_batch()}
    out, _ = jax.jit(lambda v, x: net.apply(v, x, train=False))(variables,
                                                               batch["pose"]["inputs"])
    np.testing.assert_allclose(jnp.linalg.norm(out["embedding"], axis=-1), 1.0, rtol=1e-5)
    assert out["pose"].shape == (2, 17, 3)

    def terms(p):  # the metric and the regression term: one compile, two gradients
        _, (_, logged) = mcss.loss(p, stats, batch, _step(), nets=nets,
                                   hp=_hp(beta=0.0, alpha=4.0))
        (m, mc), (r, rc) = logged["metric_loss"], logged["regression_l1"]
        return jnp.stack([m / mc, r / rc])

    jac = jax.jit(jax.jacrev(terms))(params)["embedding"]

    def norm(row, layer):
        return float(sum(jnp.abs(x[row]).sum() for x in jax.tree.leaves(jac[layer])))

    assert norm(0, "pose_head") == 0.0  # H does not shape the embedding loss
    assert norm(0, "embedding_head") > 0 and norm(0, "input_dense") > 0
    assert norm(1, "pose_head") > 0
    assert norm(1, "embedding_head") > 0  # H reads G's output
    predictors = mcss.predictors(nets)
    seq = jnp.asarray(np.random.default_rng(1).normal(0, 0.3, (1, 5, 17, 2)), jnp.float32)
    v = {"params": params, "batch_stats": stats}
    assert jax.eval_shape(predictors["embedding"].fn, v, seq).shape == (1, 5, 8)
    assert jax.eval_shape(predictors["canonical_pose"].fn, v, seq).shape == (1, 5, 17, 3)
    with pytest.raises(ValueError, match="needs the 'embedding' network"):
        mcss.networks(ml_collections.ConfigDict(
            {"model": {"kind": "mlp", "variant": "tiny_mlp", "overrides": {}}}), META)
    assert network.build({"kind": "embedding", "variant": "mcss_mlp"}).config.embedding_dim == 128


def _load(arg):
    import importlib.util
    path = os.path.join(ROOT, "launch", "configs", "mcss", "sample.py")
    spec = importlib.util.spec_from_file_location("cfg_mcss_sample", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config(arg)


def test_configs_build():
    c = _load("tiny")
    assert c.recipe.name == "mcss" and set(c.streams) == {"metric", "pose"}
    assert c.streams.metric.global_batch_size == 3 * c.streams.pose.global_batch_size
    b = _load("tiny,no_metric")
    assert set(b.streams) == {"pose"} and b.evals.retrieval.predictor == "canonical_pose"
    full = _load("")
    assert full.streams.metric.global_batch_size == 3 * full.streams.pose.global_batch_size


def test_tiny_config_trains_end_to_end_and_retrieves(tmp_path):
    """The :tiny config through the real loop (multiview + pose streams), then
    launch/retrieve.py's run() on the workdir: the same numbers, oracle never worse."""
    import json
    import sys

    from jpose.training import loop

    result = loop.train_and_evaluate(_load("tiny"), str(tmp_path / "w"), progress=False)
    values = result["evals"]["retrieval"]
    assert "cross_subject" in result["accumulator"].table(title="test")  # launch/train.py
    for mode in retrieval.MODES:
        assert values[f"{mode}/queries@1"] > 0
        for k in retrieval.KS:
            assert np.isfinite(values[f"{mode}/mean_pa_mpjpe@{k}_mm"])
            assert values[f"{mode}/gap@{k}_mm"] >= -1e-3
    with open(tmp_path / "w" / "metrics.jsonl") as f:
        train = [json.loads(line) for line in f if '"train"' in line]
    assert train and all(np.isfinite(r["metric_loss"]) for r in train)
    assert 0 < train[-1]["has_negative"] <= 1
    sys.path.insert(0, os.path.join(ROOT, "launch"))
    from launch import retrieve

    summary, *_ = retrieve.run(str(tmp_path / "w"))
    assert summary == pytest.approx(values, rel=1e-5, abs=1e-4)
