"""Relative-depth weak supervision (Ronchi et al. BMVC 2018): objectives, simulated
labels, the metric and evaluator, and the recipe end to end."""

import importlib.util
import math
import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from jpose import evaluators, recipes, skeleton
from jpose.datasets import depth_pairs
from jpose.evaluators import relative_depth as rd_eval
from jpose.objectives import ordinal
from jpose.recipes import Predictor, Step
from jpose.recipes import relative_depth
from jpose.training import loop

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _softplus(x):
    return math.log1p(math.exp(x))


# ----------------------------------------------------------------------- objectives


def test_relative_depth_loss_equals_hand_values_and_ignores_padding_in_the_normaliser():
    z = np.array([[0.0, 0.3, 0.1]], np.float32)
    # pairs (1, 0): dz 0.3, r +1 (right); (0, 2): dz -0.1, r +1 (wrong); (2, 0): dz 0.1,
    # r 0 (a tie); (1, 2): dz 0.2 padding with weight 0 and a wrong label.
    pairs = np.array([[[1, 0], [0, 2], [2, 0], [1, 2]]], np.int32)
    labels = np.array([[1, 1, 0, -1]], np.int32)
    weight = np.array([[1, 1, 1, 0]], np.float32)
    loss = np.asarray(ordinal.relative_depth_loss(z, pairs, labels, weight, lam=2.0, eps=0.0))
    s = (0.3 + 0.1 + 0.1) / 3  # mean |dz| over the weighted pairs only
    expected = [_softplus(-2 * 0.3 / s), _softplus(2 * 0.1 / s), (2 * 0.1 / s) ** 2]
    np.testing.assert_allclose(loss[0, :3], expected, rtol=1e-5)
    # A shared (K, 2) pair list gives the same values.
    shared = ordinal.relative_depth_loss(z, pairs[0], labels, weight, lam=2.0, eps=0.0)
    np.testing.assert_allclose(np.asarray(shared), loss, rtol=1e-6)
    # Scale invariance: the normaliser makes the loss independent of the pose's size.
    np.testing.assert_allclose(
        np.asarray(ordinal.relative_depth_loss(7 * z, pairs, labels, weight, lam=2.0,
                                               eps=0.0)), loss, rtol=1e-5)


def test_root_scaled_orthographic_and_least_squares_scale_hand_values():
    pose = np.zeros((1, 3, 3), np.float32)
    pose[0, :, :2] = [[0, 0], [1, 0], [0, 1]]
    pose[0, 0, 2] = 0.5
    root = np.array([[[0.1, -0.2, 0.3]]], np.float32)
    assert float(ordinal.root_loss(root)[0]) == pytest.approx(0.14, rel=1e-5)
    u = np.array([[[0.5, 0.5], [2.5, 0.5], [0.5, 2.8]]], np.float32)
    # t = mean(u - 2 xy) = (0.5, 0.6): residuals (0, 0.1), (0, 0.1), (0, -0.2).
    loss = ordinal.scaled_orthographic_loss(pose, u, np.ones((1, 3), np.float32),
                                            scale=np.array([2.0], np.float32))
    np.testing.assert_allclose(np.asarray(loss), [[0.01, 0.01, 0.04]], atol=1e-6)
    spread = ordinal.keypoint_spread(u, np.ones((1, 3), np.float32), eps=0.0)
    assert float(spread[0]) == pytest.approx((0.6667 ** 2 + 0.7667 ** 2 + 1.3333 ** 2
                                              + 0.7667 ** 2 + 0.6667 ** 2 + 1.5333 ** 2) / 3,
                                             rel=1e-3)
    # Joint 2 invisible: t = (0.5, 0.5) from joints 0-1, which then fit exactly; joint 2
    # does not count.
    loss = ordinal.scaled_orthographic_loss(pose, u, np.array([[1, 1, 0]], np.float32),
                                            scale=np.array([[2.0]], np.float32))
    np.testing.assert_allclose(np.asarray(loss), [[0, 0, 0]], atol=1e-6)
    exact = 3.0 * pose[..., :2] + np.array([0.2, -0.1], np.float32)
    s = ordinal.least_squares_scale(pose, exact, np.ones((1, 3), np.float32))
    assert float(s[0]) == pytest.approx(3.0, rel=1e-5)


def _np_perspective_loss(pose, u, f, c):
    """Reference: NumPy lstsq of the linearised projection, then the true projection."""
    a = (u - c) / f
    rows, rhs = [], []
    for j in range(len(pose)):
        rows += [[1, 0, -a[j, 0]], [0, 1, -a[j, 1]]]
        rhs += [a[j, 0] * pose[j, 2] - pose[j, 0], a[j, 1] * pose[j, 2] - pose[j, 1]]
    t = np.linalg.lstsq(np.array(rows), np.array(rhs), rcond=None)[0]
    p = pose + t
    return t, np.sum((f * p[:, :2] / p[:, 2:] + c - u) ** 2, axis=-1)


def test_perspective_loss_recovers_the_translation_and_matches_a_reference():
    rng = np.random.default_rng(0)
    pose = rng.normal(0, 0.3, (6, 3))
    t_true = np.array([0.2, -0.1, 4.0])
    f, c = np.array([2.3, 2.3]), np.array([0.05, -0.02])
    u = f * (pose + t_true)[:, :2] / (pose + t_true)[:, 2:] + c
    vis = np.ones(6)
    t = ordinal.perspective_translation(pose[None].astype(np.float32),
                                        u[None].astype(np.float32), vis[None].astype(np.float32),
                                        f[None].astype(np.float32), c[None].astype(np.float32))
    np.testing.assert_allclose(np.asarray(t[0]), t_true, atol=2e-3)
    u_noisy = u + rng.normal(0, 0.01, u.shape)
    loss, valid = ordinal.perspective_loss(*(x[None].astype(np.float32) for x in
                                             (pose, u_noisy, vis, f, c)))
    _, expected = _np_perspective_loss(pose, u_noisy, f, c)
    assert bool(np.all(valid))
    np.testing.assert_allclose(np.asarray(loss[0]), expected, rtol=2e-2, atol=1e-7)
    assert float(np.sum(expected)) > 1e-5  # the noise is seen


def test_bone_ratio_loss_hand_values():
    skel = skeleton.get("h36m_17")
    ref = np.linspace(0.1, 0.4, len(skel.bones))
    # A pose whose every bone points along x with the reference length (x 2: any scale).
    pose = np.zeros((17, 3))
    order = sorted(range(17), key=lambda j: len(_ancestors(skel, j)))
    for child in order:
        parent = skel.parents[child]
        if parent >= 0:
            b = [i for i, (ch, _) in enumerate(skel.bones) if ch == child][0]
            pose[child] = pose[parent] + [2 * ref[b], 0, 0]
    loss = ordinal.bone_ratio_loss(pose.astype(np.float32), ref, layout="h36m_17")
    np.testing.assert_allclose(np.asarray(loss), 0.0, atol=1e-10)
    # Bone 0 twice as long: ratios l_b / mean(l) by hand.
    lengths = ref.copy()
    lengths[0] *= 2
    pose2 = pose.copy()
    child0 = skel.bones[0][0]
    shift = np.array([2 * ref[0], 0, 0])  # move child 0's subtree
    for j in range(17):
        if child0 in _ancestors(skel, j) | {j}:
            pose2[j] += shift
    expected = (lengths / lengths.mean() - ref / ref.mean()) ** 2
    loss = ordinal.bone_ratio_loss(pose2.astype(np.float32), ref, layout="h36m_17")
    np.testing.assert_allclose(np.asarray(loss), expected, rtol=1e-4, atol=1e-7)


def _ancestors(skel, j):
    out = set()
    while skel.parents[j] >= 0:
        j = skel.parents[j]
        out.add(j)
    return out


def test_metric_hand_cases_and_the_lsp_convention():
    z = np.array([[1.0, 2.0, 2.0, 0.5]], np.float32)
    pairs = np.array([[[1, 0], [0, 1], [1, 2], [3, 0], [2, 3]]], np.int32)
    labels = np.array([[1, 1, 1, 0, -1]], np.int32)
    wrong, valid = ordinal.relative_depth_errors(z, pairs, labels)
    # (1,0): dz +1, r +1 right; (0,1): dz -1, r +1 wrong; (1,2): tie predicted, wrong;
    # (3,0): r 0 not scored; (2,3): dz +1.5, r -1 wrong.
    np.testing.assert_array_equal(np.asarray(wrong), [[False, True, True, False, True]])
    np.testing.assert_array_equal(np.asarray(valid), [[True, True, True, False, True]])
    # LSP: depth_closer 0 = the first joint is closer (smaller z) -> r = -1.
    closer = np.array([0, 1])
    r = ordinal.labels_from_closer(closer)
    np.testing.assert_array_equal(r, [-1, 1])
    z2 = np.array([1.0, 3.0], np.float32)  # joint 0 closer than joint 1
    w, _ = ordinal.relative_depth_errors(z2, np.array([[0, 1], [1, 0]]), r)
    # pair (0, 1) with closer 0: right; pair (1, 0) with closer 1 (joint 0 closer): right.
    np.testing.assert_array_equal(np.asarray(w), [False, False])


# ----------------------------------------------------------------------- labels


def test_all_pairs_and_tolerance():
    p = depth_pairs.all_pairs(17)
    assert p.shape == (136, 2) and bool(np.all(p[:, 0] < p[:, 1]))
    assert len({tuple(x) for x in p}) == 136
    dz = np.array([0.0999, 0.1001, -0.2, -0.05, 0.0])
    np.testing.assert_array_equal(depth_pairs.labels_from_depths(dz), [0, 1, -1, 0, 0])
    poses = np.zeros((2, 17, 3))
    poses[:, :, 2] = np.arange(17) * 0.06  # neighbours within 100 mm, others not
    pairs, labels = depth_pairs.make_labels(np.random.default_rng(0), poses, mode="all")
    assert pairs.shape == (2, 136, 2) and labels.shape == (2, 136)
    gap = (pairs[..., 0] - pairs[..., 1]) * 0.06
    np.testing.assert_array_equal(labels, np.where(np.abs(gap) < 0.1, 0, np.sign(gap)))
    jp, jl = depth_pairs.make_labels_jax(jax.random.key(0), jnp.asarray(poses, jnp.float32),
                                         mode="all")
    np.testing.assert_array_equal(np.asarray(jp), pairs)
    np.testing.assert_array_equal(np.asarray(jl), labels)


@pytest.mark.parametrize("impl", ["numpy", "jax"])
def test_random_pairs_and_the_noise_model(impl):
    n, j = 40000, 17
    rng = np.random.default_rng(1)
    poses = np.zeros((n, j, 3), np.float32)
    poses[:, :, 2] = rng.uniform(-0.5, 0.5, (n, j))
    kw = dict(mode="random", num_pairs=2, noise=True, flip_max=0.5, flip_scale=0.1)
    if impl == "numpy":
        pairs, labels = depth_pairs.make_labels(np.random.default_rng(2), poses, **kw)
    else:
        pairs, labels = jax.device_get(depth_pairs.make_labels_jax(
            jax.random.key(2), jnp.asarray(poses), **kw))
    assert pairs.shape == (n, 2, 2) and labels.shape == (n, 2)
    assert bool(np.all(pairs[..., 0] != pairs[..., 1]))
    # Each joint ~ uniform as j, and as k.
    for col in (0, 1):
        freq = np.bincount(pairs[..., col].ravel(), minlength=j) / pairs[..., col].size
        np.testing.assert_allclose(freq, 1 / j, atol=0.006)
    z = poses[..., 2]
    dz = (np.take_along_axis(z, pairs[..., 0], -1) - np.take_along_axis(z, pairs[..., 1], -1))
    clean = np.where(np.abs(dz) < 0.1, 0, np.sign(dz))
    assert bool(np.all(labels[clean == 0] == 0))  # ties are never flipped
    flipped = labels == -clean
    for lo, hi in [(0.1, 0.15), (0.15, 0.25), (0.25, 0.4), (0.4, 1.0)]:
        sel = (np.abs(dz) >= lo) & (np.abs(dz) < hi)
        expected = np.mean(0.5 * np.exp(-np.abs(dz[sel]) / 0.1))
        se = math.sqrt(expected * (1 - expected) / sel.sum())
        assert abs(flipped[sel].mean() - expected) < 4 * se + 1e-3, (lo, hi)
    # Without noise the labels are the clean ones.
    if impl == "numpy":
        _, quiet = depth_pairs.make_labels(np.random.default_rng(2), poses, mode="random",
                                           num_pairs=2)
        np.testing.assert_array_equal(quiet, clean)


# ----------------------------------------------------------------------- evaluator


def _fixed_predictor(outputs):
    """A predictor returning ``outputs[name]`` for the sequence it is given (by its first
    input value), whatever the variables."""
    def fn(variables, keypoints):
        del variables
        return outputs(keypoints)
    return Predictor(fn, "pose", "pose")


def test_evaluator_on_sequences_and_on_lsp_records():
    rng = np.random.default_rng(0)
    poses = rng.normal(0, 0.4, (5, 17, 3)).astype(np.float32)
    inputs = np.concatenate([poses[..., :2], np.zeros((5, 17, 0), np.float32)], -1)
    pairs, labels = depth_pairs.make_labels(np.random.default_rng([0, 0]), poses, mode="all")
    scored = int(np.sum(labels != 0))
    # A predictor that puts z = x (the input's x): its wrong pairs counted by hand.
    pred = _fixed_predictor(lambda k: jnp.concatenate([k, k[..., :1]], axis=-1))
    ev = evaluators.TYPES["relative_depth"](pred, [("a", inputs, poses)],
                                            layouts=("h36m_17", "h36m_17"), flip=False,
                                            bucket=8)
    acc, values = ev.run({})
    x = poses[..., 0]
    dzx = np.take_along_axis(x, pairs[..., 0], -1) - np.take_along_axis(x, pairs[..., 1], -1)
    hand = np.sum((labels != 0) & (np.sign(dzx) != labels))
    assert values["num_pairs"] == scored
    assert values["wrong_pct"] == pytest.approx(100 * hand / scored)
    assert values["wrong_pct/a"] == values["wrong_pct"]
    # LSP-style records: 2D pixels, lsp_14 pairs, closer index.
    head_top, r_ankle = 13, 0  # lsp_14 indices
    examples = [{"keypoints_2d": np.zeros((14, 2), np.float32), "image_size": (100, 80),
                 "depth_pairs": np.array([[head_top, r_ankle], [r_ankle, head_top]]),
                 "depth_closer": np.array([0, 0])},
                {"keypoints_2d": np.zeros((14, 2), np.float32), "image_size": (100, 80),
                 "depth_pairs": np.zeros((0, 2)), "depth_closer": np.zeros((0,))}]
    items = rd_eval.lsp_items(examples, input_layout="h36m_17", layout="h36m_17")
    assert len(items) == 1 and items[0]["inputs"].shape == (17, 2)
    h36m = skeleton.get("h36m_17")
    np.testing.assert_array_equal(items[0]["depth_pairs"],
                                  [[h36m.index("head_top"), h36m.index("right_ankle")],
                                   [h36m.index("right_ankle"), h36m.index("head_top")]])
    np.testing.assert_allclose(items[0]["inputs"][h36m.index("head_top")], [-1.0, -0.8])
    # The predictor puts the head 1 m closer than everything else: pair 0 (head closer,
    # closer = 0) is right, pair 1 (ankle said closer) is wrong -> 50 %.
    z = np.zeros(17, np.float32)
    z[h36m.index("head_top")] = -1.0
    pred = _fixed_predictor(lambda k: jnp.concatenate(
        [k, jnp.broadcast_to(jnp.asarray(z)[:, None], k.shape[:-1] + (1,))], axis=-1))
    ev = rd_eval.RelativeDepthEvaluator.from_records(pred, items,
                                                     layouts=("h36m_17", "h36m_17"), flip=False)
    acc, values = ev.run({})
    assert values["wrong_pct"] == pytest.approx(50.0) and values["num_pairs"] == 2
    assert "lsp" in acc.table()


# ----------------------------------------------------------------------- the recipe


def _hp(alpha=1.0, pairs="random", scale="head", projection="orthographic"):
    from launch.configs.relative_depth.sample import DEEPMIMIC_BONE_LENGTHS
    return ml_collections.ConfigDict({
        "model": {"kind": "mlp", "variant": "tiny_mlp", "overrides": {"dropout": 0.0}},
        "data": {"layout": "h36m_17"},
        "recipe": {"name": "relative_depth", "stream": "labelled", "pairs": pairs,
                   "num_pairs": 3, "alpha": alpha, "beta": 1.0, "gamma": 1.0,
                   "scale": scale, "projection": projection,
                   "reference_bone_lengths": DEEPMIMIC_BONE_LENGTHS}})


META = {"num_joints_in": 17, "num_joints_out": 17, "in_features": 2, "layout": "h36m_17",
        "input_layout": "h36m_17"}


def _batch(b=6, seed=0):
    rng = np.random.default_rng(seed)
    poses = rng.normal(0, 0.3, (b, 17, 3)).astype(np.float32)
    poses[:, 0] = 0
    cam = np.tile(np.array([2.3, 2.3, 0, 0, 0, 0, 0, 0, 0], np.float32), (b, 1))
    noise = rng.normal(0, 0.01, (b, 17, 2)).astype(np.float32)
    return {"labelled": {"inputs": 0.4 * poses[..., :2] + noise,
                         "poses_3d": poses, "camera": cam,
                         "weight": np.array([1] * (b - 1) + [0], np.float32)}}


def _step(seed=3):
    return Step(rng=jax.random.key(seed), step=jnp.int32(0), bn_momentum=jnp.float32(0.1))


@pytest.mark.parametrize("scale,projection", [("head", "orthographic"),
                                              ("least_squares", "orthographic"),
                                              ("head", "perspective")])
def test_gradients_reach_the_network_and_3d_enters_only_through_labels(scale, projection):
    hp = _hp(scale=scale, projection=projection)
    nets = relative_depth.networks(hp, META)
    assert recipes.get("relative_depth") is relative_depth.RECIPE
    assert ("scale" in nets["pose"].config.heads) == (scale == "head" and
                                                      projection == "orthographic")
    v = recipes.init_networks(jax.random.key(0), nets)
    batch = _batch()

    def loss_of(hp):
        def f(params, batch):
            value, (_, metrics) = relative_depth.loss(params, v["batch_stats"], batch,
                                                      _step(), nets=nets, hp=hp)
            return value, metrics
        return f

    f = loss_of(hp)
    f = jax.jit(f)
    (value, metrics), grads = jax.jit(jax.value_and_grad(f, has_aux=True))(v["params"], batch)
    assert np.isfinite(float(value))
    norms = {jax.tree_util.keystr(p): float(jnp.abs(g).sum())
             for p, g in jax.tree_util.tree_flatten_with_path(grads)[0]}
    assert all(n > 0 for k, n in norms.items() if "kernel" in k), norms
    # Moving the 3D in x and y (and stretching z, which keeps every order and, far from
    # the tolerance, every label) leaves the loss unchanged: no regression on the 3D.
    moved = jax.tree.map(np.copy, batch)
    moved["labelled"]["poses_3d"][..., :2] += 5.0
    same, _ = f(v["params"], moved)
    assert float(same) == float(value)
    # A flipped depth order changes it.
    moved["labelled"]["poses_3d"][..., 2] *= -1
    other, _ = f(v["params"], moved)
    assert float(other) != float(value)
    # The relative term alone has a gradient, and it is the only one alpha scales.
    v0, _ = jax.jit(loss_of(_hp(alpha=0.0, scale=scale, projection=projection)))(
        v["params"], batch)
    l_rel = metrics["l_rel"][0] / metrics["l_rel"][1]
    assert float(value - v0) == pytest.approx(float(l_rel), rel=1e-4, abs=1e-6 * float(value))


def test_relative_term_alone_learns_the_depth_order():
    """A few hundred steps of the ranking loss alone on a tiny lifter bring the
    training pairs' error well below chance (a behaviour, not a smoke test)."""
    import optax
    from jpose.training import step as step_lib
    hp = _hp(pairs="all")
    hp.recipe.beta = 0.0
    hp.recipe.gamma = 0.0
    hp.recipe.root_weight = 0.0
    hp.model.overrides = {"dropout": 0.0, "hidden": 64}
    nets = relative_depth.networks(hp, META)
    tx = optax.adam(3e-3)
    state = step_lib.init_state(relative_depth.RECIPE, nets, hp, tx, jax.random.key(0))
    train_step = jax.jit(step_lib.make_train_step(
        relative_depth.RECIPE, nets, hp, tx, learning_rate=lambda s: 3e-3,
        bn_momentum=lambda s: 0.1))
    batch = _batch(b=64, seed=1)
    batch["labelled"]["weight"][:] = 1
    first = None
    for i in range(150):
        state, m = train_step(state, batch, jax.random.key(i))
        first = first if first is not None else float(m["train_wrong_pct"])
    assert first > 30 and float(m["train_wrong_pct"]) < 10


def _load_config(arg):
    path = os.path.join(ROOT, "launch", "configs", "relative_depth", "sample.py")
    spec = importlib.util.spec_from_file_location("cfg_relative_depth_sample", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config(arg)


def test_config_switches():
    c = _load_config("")
    assert c.recipe.name == "relative_depth" and c.recipe.pairs == "random"
    assert c.data.use_clean_2d and c.recipe.alpha > 0 and not c.recipe.noise
    assert _load_config("all_pairs").recipe.pairs == "all"
    assert _load_config("noisy").recipe.noise
    assert _load_config("no_rel").recipe.alpha == 0.0
    assert _load_config("supervised").recipe.name == "supervised"
    assert not _load_config("detected_2d").data.use_clean_2d
    with pytest.raises(ValueError, match="unknown switches"):
        _load_config("nope")


def test_tiny_config_end_to_end(tmp_path):
    config = _load_config("tiny")
    result = loop.train_and_evaluate(config, str(tmp_path), progress=False)
    depth = result["evals"]["test_depth"]
    assert 0 <= depth["wrong_pct"] <= 100 and depth["num_pairs"] > 0
    assert np.isfinite(result["protocols_mm"]["p_mpjpe"]["action_wise"])
    assert os.path.exists(tmp_path / "eval.json")
