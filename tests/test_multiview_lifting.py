"""Multi-view self-supervised lifting (thesis ch. 3): objectives, recipe, :tiny run."""

import importlib.util
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jpose import recipes
from jpose.objectives import multiview as mv
from jpose.recipes import Step, multiview_lifting
from jpose.solvers import relative_pose as rp
from jpose.training import loop, streams

ROOT = os.path.join(os.path.dirname(__file__), "..")


def _load(arg):
    path = os.path.join(ROOT, "launch", "configs", "multiview_lifting", "sample.py")
    spec = importlib.util.spec_from_file_location("cfg_multiview_lifting", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config(arg)


def _rotation(rng):
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    q = q * np.sign(np.diag(r))
    return q if np.linalg.det(q) > 0 else -q


def _ext(r, c):
    return np.concatenate([r.reshape(9), c]).astype(np.float32)


# ------------------------------------------------------------------------ objectives


def test_transform_matches_numpy_world_round_trip():
    rng = np.random.default_rng(0)
    r1, r2 = _rotation(rng), _rotation(rng)
    c1, c2 = rng.normal(size=3) * 4, rng.normal(size=3) * 4
    world = rng.normal(size=(5, 17, 3))
    cam1 = np.einsum("ab,fjb->fja", r1, world - c1)
    cam2 = np.einsum("ab,fjb->fja", r2, world - c2)
    rot, t = mv.relative_transform(_ext(r1, c1), _ext(r2, c2))
    np.testing.assert_allclose(rot, r2 @ r1.T, atol=1e-5)
    np.testing.assert_allclose(t, r1 @ (c2 - c1), atol=1e-5)  # camera 2's centre, frame 1
    got = mv.transform_points(jnp.asarray(cam1, jnp.float32), rot[None], t[None])
    np.testing.assert_allclose(got, cam2, atol=1e-4)
    # Same map as the solver's x2 = R x1 + t convention: t_solver = -R t_1to2.
    from jpose.camera import CameraParams
    z = np.zeros(2, np.float32)
    cam = lambda r, c: CameraParams(jnp.asarray(r, jnp.float32), jnp.asarray(c, jnp.float32),  # noqa: E731
                                    z, z, np.zeros(3, np.float32), z, z)
    r_s, t_s = rp.relative_pose_from_cameras(cam(r1, c1), cam(r2, c2))
    np.testing.assert_allclose(r_s, rot, atol=1e-5)
    np.testing.assert_allclose(t_s, -np.asarray(rot) @ np.asarray(t), atol=1e-4)


K = np.array([2.0, 2.0, 0.0, 0.0, 0, 0, 0, 0, 0], np.float32)  # f = 2, c = 0, no distortion


def test_reprojection_loss_hand_value():
    points = np.array([[0.1, 0.2, 2.0], [0.0, 0.0, -1.0]], np.float32)  # 2nd: behind
    target = np.array([[0.1 + 0.03, 0.2 - 0.04], [0.0, 0.0]], np.float32)
    err, w = mv.reprojection_loss(points, K, target, weight=np.array([0.5, 1.0], np.float32))
    # (0.1, 0.2) / 2 * 2 = (0.1, 0.2): off by (0.03, -0.04), i.e. 0.05.
    assert float(err[0]) == pytest.approx(0.05, rel=1e-5)
    # Behind the camera: the weight stays and a barrier of 0.1 - (-1) = 1.1 m is added to
    # the clipped projection's error (so no joint escapes the loss behind a camera).
    np.testing.assert_allclose(w, [0.5, 1.0])
    assert float(err[1]) > 1.1
    g = jax.grad(lambda p: mv.reprojection_loss(p, K, target, weight=np.ones(2, np.float32))[0][1])(
        jnp.asarray(points))
    assert float(g[1, 2]) < 0  # raising the depth lowers the error


def test_transform_reprojection_loss_hand_value_and_source_weights():
    e1 = _ext(np.eye(3), np.zeros(3))
    e2 = _ext(np.eye(3), np.array([1.0, 0.0, 0.0]))  # camera 2 one metre to the right
    p1 = np.array([[1.2, 0.0, 2.0]], np.float32)  # -> (0.2, 0, 2) in camera 2 -> u = 0.2
    err, w = mv.transform_reprojection_loss(p1, e1, e2, K, np.array([[0.2, 0.1]], np.float32),
                                            weight_1=np.array([0.7], np.float32))
    assert float(err[0]) == pytest.approx(0.1, rel=1e-5)
    assert float(w[0]) == pytest.approx(0.7)


def test_pretraining_loss_hand_value_ignores_the_pose_depth():
    pose = np.array([[0.1, 0.0, 0.5]], np.float32)
    root = np.array([0.0, 0.0, 2.0], np.float32)
    target = np.array([[0.1, 0.05]], np.float32)  # f (0.1 + 0) / 2 = 0.1
    err, w = mv.pretraining_loss(pose, root, K, target, weight=np.ones(1, np.float32))
    assert float(err[0]) == pytest.approx(0.05, rel=1e-5) and float(w[0]) == 1.0
    deeper = pose.copy()
    deeper[0, 2] = -3.0
    err2, _ = mv.pretraining_loss(deeper, root, K, target, weight=np.ones(1, np.float32))
    assert float(err2[0]) == float(err[0])


def test_root_from_depth_and_total_loss_hand_values():
    k = np.array([2.0, 2.0, 0.1, 0.0, 0, 0, 0, 0, 0], np.float32)
    r = mv.root_from_depth(np.array([0.2, -0.1], np.float32), np.float32(4.0), k)
    np.testing.assert_allclose(r, [0.2, -0.2, 4.0], atol=1e-6)
    assert float(mv.total_loss(0.2, 0.1, lam=mv.LAMBDA["mpi_inf_3dhp"])) == pytest.approx(0.35)
    assert mv.LAMBDA["h36m"] == 1.0


# -------------------------------------------------------- geometry on the real stream


def _clean_stream(views=3):
    c = _load("tiny")
    c.data.use_clean_2d = True
    c.data.num_cameras = 3
    c.streams.multiview.views = views
    c.global_batch_size = 16
    data = _tiny_data(c)
    run = loop.build_run(c, data=data)
    return c, run.streams.streams["multiview"].batches.batch(0)


def test_true_poses_have_zero_transform_reprojection_on_the_stream():
    """The stream's extrinsics and the objectives agree: ground-truth joints of view v,
    carried into view w, land on w's exact 2D (and a wrong camera pairing does not)."""
    _, b = _clean_stream()
    points = b["poses_3d"] + b["trajectory"][..., None, :]  # (B, V, J, 3) camera frames
    kp = b["inputs"][..., :2]
    w = b["confidence"]
    err, wt = mv.transform_reprojection_loss(points[:, 0], b["extrinsics"][:, 0],
                                             b["extrinsics"][:, 1], b["camera"][:, 1],
                                             kp[:, 1], weight_1=w[:, 0])
    px = 1000 / 2  # screen units -> pixels for 1000-pixel-wide images
    assert float(np.sum(err * wt) / np.sum(wt)) * px < 0.05
    wrong, _ = mv.transform_reprojection_loss(points[:, 0], b["extrinsics"][:, 0],
                                              b["extrinsics"][:, 2], b["camera"][:, 1],
                                              kp[:, 1], weight_1=w[:, 0])
    assert float(np.mean(wrong)) * px > 20


def test_reprojection_alone_leaves_depth_unconstrained():
    """The thesis' 468.5 mm failure, in miniature: fit free 3D joints to 2D from two
    calibrated views, from a flat start. Re-projection alone keeps the flat (wrong) depth;
    the total loss recovers the pose."""
    _, b = _clean_stream(views=2)
    truth = jnp.asarray(b["poses_3d"] + b["trajectory"][..., None, :])  # (B, 2, J, 3)
    kp, cams, ext = (jnp.asarray(b[k]) for k in ("inputs", "camera", "extrinsics"))
    kp = kp[..., :2]
    ones = jnp.ones(kp.shape[:-1])
    # Flat start: every joint at its root's depth, on its own camera ray (exact 2D).
    root_z = truth[..., :1, 2:3]
    start = truth * (root_z / truth[..., 2:3])

    def fit(mode):
        def objective(p):
            e, w = mv.reprojection_loss(p, cams, kp, weight=ones)
            value = jnp.sum(e * w) / jnp.sum(w)
            if mode == "total":
                t, tw = mv.transform_reprojection_loss(
                    p[:, jnp.array([0, 1])], ext[:, jnp.array([0, 1])],
                    ext[:, jnp.array([1, 0])], cams[:, jnp.array([1, 0])],
                    kp[:, jnp.array([1, 0])], weight_1=ones)
                value = mv.total_loss(value, jnp.sum(t * tw) / jnp.sum(tw), lam=1.0)
            return value

        @jax.jit
        def step(p, m, v, t):  # Adam, lr 1e-2 (written out: a strict-promotion-safe loop)
            g = jax.grad(objective)(p)
            m, v = 0.9 * m + 0.1 * g, 0.999 * v + 0.001 * g * g
            mh, vh = m / (1 - 0.9 ** t), v / (1 - 0.999 ** t)
            return p - 1e-2 * mh / (jnp.sqrt(vh) + 1e-8), m, v

        p, m, v = start, jnp.zeros_like(start), jnp.zeros_like(start)
        for t in range(1, 601):
            p, m, v = step(p, m, v, jnp.float32(t))
        rel = lambda q: q - q[..., :1, :]  # noqa: E731
        return float(jnp.mean(jnp.linalg.norm(rel(p) - rel(truth), axis=-1))) * 1000

    start_mm = float(jnp.mean(jnp.linalg.norm((start - start[..., :1, :]) -
                                              (truth - truth[..., :1, :]), axis=-1))) * 1000
    reproj_mm, total_mm = fit("reproj_only"), fit("total")
    assert start_mm > 40
    assert reproj_mm > 0.8 * start_mm  # nothing pulls the depth: the flat pose stays
    assert total_mm < 0.25 * reproj_mm


# ----------------------------------------------------------------------- the recipe


_TINY_DATA = {}


def _tiny_data(c):
    key = (c.data.use_clean_2d, c.data.num_cameras)
    if key not in _TINY_DATA:
        _TINY_DATA[key] = streams.load_data(c)
    return _TINY_DATA[key]


def _tiny_parts():
    c = _load("tiny")
    data = _tiny_data(c)
    run = loop.build_run(c, data=data)
    variables = recipes.init_networks(jax.random.key(0), run.nets)
    batch = {"multiview": {k: jnp.asarray(v) for k, v in
                           run.streams.batch(0)["multiview"].items()}}
    return c, run, variables, batch


def _grads(c, run, variables, batch, phase):
    step = Step(rng=jax.random.key(1), step=jnp.int32(0), bn_momentum=jnp.float32(0.1),
                phase=phase)

    def value(params):
        return run.recipe.loss(params, variables["batch_stats"], batch, step, nets=run.nets,
                               hp=c)[0]

    return jax.grad(value)(variables["params"])


def _norm(tree):
    return float(sum(jnp.sum(jnp.abs(x)) for x in jax.tree.leaves(tree)))


def test_gradients_reach_the_right_networks_and_no_3d_label_is_read():
    c, run, variables, batch = _tiny_parts()
    assert set(run.nets) == {"pose", "root"}
    assert run.recipe is recipes.get("multiview_lifting")
    g1 = _grads(c, run, variables, batch, phase=1)
    assert _norm(g1["pose"]) > 0 and _norm(g1["root"]) > 0
    g0 = _grads(c, run, variables, batch, phase=0)
    assert _norm(g0["pose"]) > 0 and _norm(g0["root"]) > 0
    # The root branch is used only through its depth output: its x, y outputs (the root's
    # x, y come from the 2D detection) get no gradient in either phase.
    for g in (g0, g1):
        head = g["root"]["pose_head"]["kernel"]  # (hidden, 1 joint * 3)
        assert float(jnp.abs(head[:, :2]).max()) == 0.0
        assert float(jnp.abs(head[:, 2]).max()) > 0.0
    # The ground truth never enters the loss: scrambling it changes no gradient.
    scrambled = {"multiview": {**batch["multiview"],
                               "poses_3d": batch["multiview"]["poses_3d"] * -3.0 + 1.0,
                               "trajectory": batch["multiview"]["trajectory"] * 7.0}}
    g_s = _grads(c, run, variables, scrambled, phase=1)
    for a, b in zip(jax.tree.leaves(g1), jax.tree.leaves(g_s)):
        np.testing.assert_array_equal(a, b)
    # Re-projection only: still both networks (the root sets the scale of the re-projection).
    c.recipe.mode = "reproj_only"
    g_r = _grads(c, run, variables, batch, phase=1)
    assert _norm(g_r["pose"]) > 0


def test_pose_predictor_uses_only_the_lifting_branch():
    c, run, variables, batch = _tiny_parts()
    pred = run.predictors["pose"]
    assert set(run.predictors) == {"pose"} and pred.network == "pose"
    keypoints = batch["multiview"]["inputs"][:2, 0][:, None]  # (2, T=1, J, C)
    out = pred.fn(variables, keypoints)
    other = jax.tree.map(lambda x: x + 1.0, variables)
    other = {"params": {**variables["params"], "root": other["params"]["root"]},
             "batch_stats": {**variables["batch_stats"], "root": other["batch_stats"]["root"]}}
    np.testing.assert_array_equal(pred.fn(other, keypoints), out)
    assert out.shape == (2, 1, 17, 3)


def test_loss_metrics_match_a_hand_computation():
    """The recipe's logged L_reproj and L_t-reproj equal the objectives applied by hand."""
    c, run, variables, batch = _tiny_parts()
    step = Step(rng=jax.random.key(1), step=jnp.int32(0), bn_momentum=jnp.float32(0.1),
                phase=1)
    value, (_, m) = run.recipe.loss(variables["params"], variables["batch_stats"], batch,
                                    step, nets=run.nets, hp=c)
    x = batch["multiview"]
    b, v = x["inputs"].shape[:2]
    flat = x["inputs"].reshape((b * v,) + x["inputs"].shape[2:])
    kw = dict(train=True, bn_momentum=jnp.float32(0.1))
    pose = run.nets["pose"].apply({"params": variables["params"]["pose"],
                                   "batch_stats": variables["batch_stats"]["pose"]}, flat,
                                  rng=jax.random.fold_in(step.rng, 0), **kw)[0]["pose"]
    depth = run.nets["root"].apply({"params": variables["params"]["root"],
                                    "batch_stats": variables["batch_stats"]["root"]}, flat,
                                   rng=jax.random.fold_in(step.rng, 1), **kw)[0]["pose"]
    pose = pose.reshape(b, v, 17, 3)
    z = 5.0 * jnp.exp(depth.reshape(b, v, 3)[..., 2])
    kp = x["inputs"][..., :2]
    k = x["camera"]
    root = jnp.stack([(kp[..., 0, 0] - k[..., 2]) / k[..., 0] * z,
                      (kp[..., 0, 1] - k[..., 3]) / k[..., 1] * z, z], axis=-1)
    p = pose - pose[..., :1, :] + root[..., None, :]
    w = x["confidence"] * x["weight"][:, None, None]
    e, ew = mv.reprojection_loss(p, k, kp, weight=w)
    np.testing.assert_allclose(m["reproj_2d"][0] / m["reproj_2d"][1],
                               jnp.sum(e * ew) / jnp.sum(ew), rtol=1e-5)
    pairs = [(i, j) for i in range(v) for j in range(v) if i != j]  # every ordered pair
    src, dst = np.array([s for s, _ in pairs]), np.array([d for _, d in pairs])
    t, tw = mv.transform_reprojection_loss(p[:, src], x["extrinsics"][:, src],
                                           x["extrinsics"][:, dst], k[:, dst], kp[:, dst],
                                           weight_1=w[:, src])
    t_mean = jnp.sum(t * tw) / jnp.sum(tw)
    np.testing.assert_allclose(m["t_reproj_2d"][0] / m["t_reproj_2d"][1], t_mean, rtol=1e-5)
    np.testing.assert_allclose(value, jnp.sum(e * ew) / jnp.sum(ew) + c.recipe.lam * t_mean,
                               rtol=1e-5)


def test_unknown_extrinsics_estimates_the_relative_poses():
    c = _load("tiny")
    c.data.use_clean_2d = True
    data = _tiny_data(c)
    seqs = data.splits["train"]
    est = streams.estimated_extrinsics(seqs, seed=0)
    by_cam = {}
    for q, e in zip(seqs, est):
        by_cam[q.camera_index] = (q.extrinsics, e.extrinsics)
    true_0, est_0 = by_cam[0]
    np.testing.assert_allclose(est_0, np.r_[np.eye(3).reshape(9), np.zeros(3)], atol=1e-6)
    for cam in (1, 2):
        true_c, est_c = by_cam[cam]
        r_true, t_true = mv.relative_transform(true_0, true_c)
        r_est, t_est = mv.relative_transform(est_0, est_c)
        angle = np.degrees(np.arccos(np.clip((np.trace(np.asarray(r_true).T @ r_est) - 1) / 2,
                                             -1, 1)))
        assert angle < 2.0
        np.testing.assert_allclose(np.linalg.norm(t_est), np.linalg.norm(t_true), rtol=1e-4)
        assert np.linalg.norm(np.asarray(t_est) - t_true) < 0.1 * np.linalg.norm(t_true)


def test_tiny_config_runs_end_to_end(tmp_path):
    for arg in ("reproj_only,tiny", "virtual_views,tiny"):
        _load(arg)  # every switch builds
    with pytest.raises(ValueError, match="virtual_views"):
        _load("virtual_views,unknown_extrinsics")
    c = _load("tiny")
    result = loop.train_and_evaluate(c, str(tmp_path / "w"), progress=False)
    assert result["step"] == 14
    mpjpe = result["protocols_mm"]["mpjpe"]["action_wise"]
    assert np.isfinite(mpjpe)
