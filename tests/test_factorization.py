"""Consistent factorization network (thesis ch. 4): network, objectives, recipe, stages."""

import os
import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from jpose import camera
from jpose.nets import factorization as cfn
from jpose.nets import network
from jpose.objectives import factorization as obj
from jpose.recipes import Step
from jpose.recipes import factorization as recipe
from jpose.training import optim, step as step_lib

META = {"num_joints_in": 17, "num_joints_out": 17, "in_features": 2, "layout": "h36m_17",
        "input_layout": "h36m_17"}


def _hp(variant="tiny_cfn", consistency=1.0, reprojection=1.0, path="", groups=None,
        lr=1e-3):
    import ml_collections
    return ml_collections.ConfigDict({
        "model": {"kind": "factorization", "variant": variant, "overrides": {}},
        "recipe": {"name": "factorization", "stream": "views", "dictionary_path": path,
                   "consistency_weight": consistency, "reprojection_weight": reprojection},
        "optimizer": {"name": "adam_steps", "learning_rate": lr, "boundaries": (),
                      "factor": 0.1, "param_groups": groups or {}}})


def _step():
    return Step(rng=jax.random.key(0), step=jnp.int32(0), bn_momentum=jnp.float32(0.1))


def _batch(b=6, v=2, seed=0):
    rng = np.random.default_rng(seed)
    return {"views": {
        "inputs": rng.normal(size=(b, v, 17, 2)).astype(np.float32),
        "poses_3d": rng.normal(size=(b, v, 17, 3)).astype(np.float32),
        "weight": np.ones(b, np.float32)}}


# ------------------------------------------------------------------ network pieces


def test_normalisation_equals_hand_computed_values():
    x = np.array([[1.0, 1.0], [4.0, 5.0], [1.0, -1.0]], np.float32)  # root, d=5, d=2
    w, scale = cfn.normalise_keypoints(x[None], root_index=0)
    assert float(scale[0, 0]) == pytest.approx(3.5)
    np.testing.assert_allclose(w[0], [[0, 0], [3 / 3.5, 4 / 3.5], [0, -2 / 3.5]], rtol=1e-6)
    # Another root, extra features ignored, leading axes kept; a collapsed pose is finite.
    x3 = np.concatenate([x, np.ones((3, 1), np.float32)], axis=-1)
    w, scale = cfn.normalise_keypoints(np.stack([x3, np.zeros_like(x3)])[None], root_index=2)
    assert w.shape == (1, 2, 3, 2) and float(scale[0, 0, 0]) == pytest.approx((np.hypot(3, 6) + 2) / 2)
    assert float(scale[0, 1, 0]) == 1.0 and np.all(np.asarray(w[0, 1]) == 0)


def test_objectives_equal_hand_computed_values():
    pose = np.zeros((1, 3, 3), np.float32)
    pose[0, 1] = [1.0, 2.0, 9.0]  # depth is not projected
    pose[0, 2] = [0.0, -1.0, -4.0]
    w = np.array([[[0, 0], [1.5, 2.0], [1.0, 1.0]]], np.float32)
    np.testing.assert_allclose(obj.orthographic_reprojection(pose, w), [[0, 0.25, 1 + 4]])
    # Consistency compares RMS-normalised shapes: a scaled copy agrees exactly.
    y = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 1]], np.float32)
    np.testing.assert_allclose(obj.cross_view_consistency(y, 3 * y), 0, atol=1e-10)
    z = np.array([[0, 0, 0], [0, 1, 0], [1, 0, 1]], np.float32)
    # rms of both = sqrt((0 + 1 + 2) / 3) = 1 (up to eps): per-joint squared differences.
    np.testing.assert_allclose(obj.cross_view_consistency(y, z), [0, 2, 2], rtol=1e-5)


def test_expm_head_gives_orthonormal_rotations_matching_scipy():
    rng = np.random.default_rng(0)
    omega = np.concatenate([rng.normal(size=(20, 3)) * 1.5, np.zeros((1, 3)),
                            [[1e-9, 0, 0]]]).astype(np.float32)
    r = np.asarray(camera.axis_angle_to_matrix(omega))
    np.testing.assert_allclose(r, Rotation.from_rotvec(omega.astype(np.float64)).as_matrix(),
                               atol=2e-6)
    np.testing.assert_allclose(r @ np.swapaxes(r, -1, -2), np.broadcast_to(np.eye(3), r.shape),
                               atol=2e-6)
    # The network's R is that of its own omega head: orthonormal, det +1.
    net = network.build({"kind": "factorization", "variant": "tiny_cfn"})
    variables = net.init(jax.random.key(0))
    variables["params"]["omega_head"]["bias"] = jnp.asarray([0.4, -1.2, 2.0])
    out, _ = net.apply(variables, _batch()["views"]["inputs"][:, 0], train=False)
    expected = Rotation.from_rotvec(np.asarray(out["omega"], np.float64)).as_matrix()
    np.testing.assert_allclose(out["rotation"], expected, atol=2e-6)
    np.testing.assert_allclose(np.linalg.det(out["rotation"]), 1, atol=1e-5)
    np.testing.assert_allclose(out["pose"], np.einsum("njc,nac->nja", out["canonical"],
                                                      out["rotation"]), atol=1e-5)


def test_decoder_reproduces_a_hand_computed_shape():
    # J = 2 joints, K_1 = 2, K_2 = 2. D_2 gives one negative intermediate code (ReLU'd).
    d1 = np.array([[1, 0], [0, 1], [0, 0], [2, 1], [0, 3], [1, -1]], np.float32)  # (6, 2)
    d2 = np.array([[1.0, 0.5], [-2.0, 0.0]], np.float32)
    code = np.array([2.0, 2.0], np.float32)
    # psi_1 = relu(d2 @ code) = relu([3, -4]) = [3, 0]; flat = 3 * d1[:, 0].
    flat = 3 * d1[:, 0]
    shape = flat.reshape(2, 3)
    np.testing.assert_allclose(cfn.decode((d1, d2), code), shape - shape[0], rtol=1e-6)
    np.testing.assert_allclose(cfn.decode((d1, d2), code, root_index=1), shape - shape[1])
    # And through the network: a known dictionary and a fixed code head.
    net = network.build({"kind": "factorization", "variant": "tiny_cfn",
                         "overrides": {"num_joints_in": 2, "num_joints_out": 2,
                                       "dictionary_sizes": (2, 2)}})
    v = net.init(jax.random.key(0))
    params = cfn.with_dictionary(v["params"], (d1, d2))
    params["code_head"] = {"kernel": jnp.zeros_like(params["code_head"]["kernel"]),
                           "bias": jnp.asarray(code)}
    out, _ = net.apply({"params": params, "batch_stats": v["batch_stats"]},
                       np.random.default_rng(0).normal(size=(3, 2, 2)).astype(np.float32),
                       train=False)
    np.testing.assert_allclose(out["canonical"], np.broadcast_to(shape - shape[0], (3, 2, 3)),
                               rtol=1e-6)
    with pytest.raises(ValueError, match="do not match"):
        cfn.with_dictionary(v["params"], (d1,))


# ------------------------------------------------------------------ recipe loss


class _FakeNet:
    """A 'factorization' network returning fixed camera-frame and canonical shapes."""

    num_joints_out = 3
    config = types.SimpleNamespace(root_index=0)

    def __init__(self, pose, canonical):
        self.pose, self.canonical = pose, canonical

    def apply(self, variables, inputs, *, train, rng=None, bn_momentum=0.0):
        zero = 0.0 * variables["params"]["w"]
        return {"pose": self.pose + zero, "canonical": self.canonical + zero}, {}


def test_recipe_loss_equals_hand_computed_values_on_a_multiview_batch():
    b, v, j = 2, 2, 3
    # 2D inputs: root at (1, 1), the other joints 2 units away -> scale 2.
    inputs = np.zeros((b, v, j, 2), np.float32)
    inputs[..., :, :] = [1.0, 1.0]
    inputs[..., 1, :] = [3.0, 1.0]  # normalised (1, 0)
    inputs[..., 2, :] = [1.0, -1.0]  # normalised (0, -1)
    pose = np.zeros((b * v, j, 3), np.float32)
    pose[:, 1] = [1.0, 0.0, 5.0]  # exact
    pose[:, 2] = [0.0, -0.5, 0.0]  # 0.25 squared error at joint 2
    pose[2:] += 100.0  # example 1 is padding (weight 0): must not count
    canonical = np.zeros((b * v, j, 3), np.float32)
    canonical[0] = [[0, 0, 0], [1, 0, 0], [0, 1, 1]]
    canonical[1] = [[0, 0, 0], [0, 1, 0], [1, 0, 1]]  # per-joint gaps [0, 2, 2] (above)
    canonical[2:] = np.random.default_rng(0).normal(size=(2, j, 3))
    nets = {"pose": _FakeNet(jnp.asarray(pose), jnp.asarray(canonical))}
    batch = {"views": {"inputs": inputs, "weight": np.array([1, 0], np.float32)}}
    params, stats = {"pose": {"w": jnp.zeros(())}}, {"pose": {}}
    value, (_, m) = recipe.loss(params, stats, batch, _step(), nets=nets,
                                hp=_hp(consistency=0.5, reprojection=2.0))
    reproj = 0.25 * 2 / (v * j)  # two views of one example, 3 joints
    consist = (0 + 2 + 2) / j  # one pair
    assert float(value) == pytest.approx(2.0 * reproj + 0.5 * consist, rel=1e-5)
    assert float(m["reprojection"][0] / m["reprojection"][1]) == pytest.approx(reproj, rel=1e-5)
    assert float(m["consistency"][1]) == j


def test_gradients_reach_only_the_intended_parameters():
    hp = _hp()
    nets = recipe.networks(hp, META)
    variables = recipe.init(jax.random.key(0), nets, hp)
    batch = _batch()

    def grads(consistency, reprojection, poses_3d=None):
        b = {"views": dict(batch["views"])}
        if poses_3d is not None:
            b["views"]["poses_3d"] = poses_3d
        return jax.grad(lambda p: recipe.loss(
            p, variables["batch_stats"], b, _step(), nets=nets,
            hp=_hp(consistency=consistency, reprojection=reprojection))[0])(
            variables["params"])["pose"]

    def norm(tree):
        return float(sum(jnp.abs(x).sum() for x in jax.tree.leaves(tree)))

    full = grads(1.0, 1.0)
    for name in ("dictionary", "code_head", "omega_head", "input_dense", "block0_dense0"):
        assert norm(full[name]) > 0, name
    # The consistency term compares canonical shapes: the rotation head gets nothing.
    consistency_only = grads(1.0, 0.0)
    assert norm(consistency_only["omega_head"]) == 0
    assert norm(consistency_only["dictionary"]) > 0
    # No 3D labels: the ground truth changes nothing (it is only logged).
    other = grads(1.0, 1.0, np.zeros_like(batch["views"]["poses_3d"]))
    jax.tree.map(np.testing.assert_array_equal, full, other)
    # The baseline has no dictionary and no code head.
    base = recipe.networks(_hp("tiny_cfn_baseline"), META)
    params = recipe.init(jax.random.key(0), base, _hp("tiny_cfn_baseline"))["params"]
    assert "dictionary" not in params["pose"] and "shape_head" in params["pose"]


def test_dictionary_gets_its_own_learning_rate():
    groups = {"dictionary": {"pattern": "/dictionary/", "lr_mult": 0.1}}
    hp = _hp(groups=groups, lr=1e-3)
    nets = recipe.networks(hp, META)
    tx, lr = optim.make_optimizer(hp.optimizer, steps_per_epoch=1)
    state = step_lib.init_state(recipe.RECIPE, nets, hp, tx, jax.random.key(0))
    before = jax.device_get(state["params"]["pose"])
    train_step = jax.jit(step_lib.make_train_step(recipe.RECIPE, nets, hp, tx,
                                                  learning_rate=lr, bn_momentum=lambda s: 0.1))
    state, _ = train_step(state, _batch(), jax.random.key(1))
    after = jax.device_get(state["params"]["pose"])
    delta = jax.tree.map(lambda a, b: np.abs(a - b), after, before)
    # Adam's first step moves every coordinate with a non-zero gradient by ~lr.
    dict_step = max(float(d.max()) for d in jax.tree.leaves(delta["dictionary"]))
    net_step = max(float(d.max()) for k, d in delta.items() if k != "dictionary"
                   for d in jax.tree.leaves(d))
    assert dict_step == pytest.approx(1e-4, rel=0.05)
    assert net_step == pytest.approx(1e-3, rel=0.05)


def test_dictionary_loaded_from_file_at_init(tmp_path):
    hp0 = _hp()
    nets = recipe.networks(hp0, META)
    sizes = nets["pose"].config.dictionary_sizes
    ds = cfn.random_dictionaries(jax.random.key(5), sizes, 17)
    path = str(tmp_path / "dictionary.npz")
    np.savez(path, **{f"dictionary_{i}": np.asarray(d) for i, d in enumerate(ds)})
    variables = recipe.init(jax.random.key(0), nets, _hp(path=path))
    for got, want in zip(cfn.dictionaries_of(variables["params"]["pose"]), ds):
        np.testing.assert_array_equal(got, want)
    fresh = recipe.init(jax.random.key(0), nets, hp0)["params"]["pose"]["dictionary"]
    assert not np.allclose(fresh["level0"], ds[0])


# ------------------------------------------------------------------ pre-training


def test_deep_nrsfm_pretraining_reduces_its_reconstruction_loss():
    """A tiny low-rank problem: 8 joints, shapes from a 2-level dictionary (6, 3)."""
    rng = np.random.default_rng(0)
    true = cfn.random_dictionaries(jax.random.key(1), (6, 3), 8)
    codes = rng.uniform(0.5, 1.5, size=(256, 3)).astype(np.float32)
    shapes = np.asarray(cfn.decode(true, codes))
    rot = Rotation.random(256, random_state=1).as_matrix().astype(np.float32)
    poses_2d = np.einsum("npc,nac->npa", shapes, rot[:, :2])
    out = cfn.deep_nrsfm_pretrain(poses_2d, sizes=(6, 3), epochs=10, batch_size=32,
                                  learning_rate=3e-3, rng=0)
    h = out.loss_history
    assert h.shape == (11,) and np.all(np.isfinite(h))
    assert h[-1] < 0.5 * h[0], h
    assert [d.shape for d in out.dictionaries] == [(24, 6), (6, 3)]


# ------------------------------------------------------------------ end to end


def _load(arg):
    import importlib.util
    path = os.path.join(os.path.dirname(__file__), "..", "launch", "configs",
                        "factorization", "sample.py")
    spec = importlib.util.spec_from_file_location("cfg_factorization_sample", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config(arg)


def test_config_switches():
    full, base, ablation = _load(""), _load("baseline"), _load("no_consistency")
    assert full.recipe.consistency_weight > 0 and full.model.variant == "cfn"
    assert base.model.variant == "cfn_baseline" and base.recipe.consistency_weight == 0
    assert ablation.model.variant == "cfn" and ablation.recipe.consistency_weight == 0
    assert _load("deep_nrsfm_init").recipe.dictionary_init == "deep_nrsfm"
    thesis = _load("thesis")
    assert thesis.global_batch_size == 1024 and thesis.num_epochs == 70
    assert thesis.optimizer.boundaries == (50 * (6480 // 1024),)
    assert full.optimizer.param_groups.dictionary.lr_mult == pytest.approx(0.1)


def test_tiny_config_runs_end_to_end_from_a_pretrained_dictionary(tmp_path):
    import sys
    from jpose.training import loop
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "launch"))
    import launch.pretrain_dictionary as pretrain  # its `import _common` needs launch/

    config = _load("tiny")
    arrays = pretrain.pretrain(config, "nrsfm")
    path = str(tmp_path / "dictionary.npz")
    np.savez(path, **arrays)
    config.recipe.dictionary_path = path
    result = loop.train_and_evaluate(config, str(tmp_path / "run"), progress=False)
    assert result["step"] == config.num_steps
    assert all(np.isfinite(v["action_wise"]) for v in result["protocols_mm"].values())
    batch = result["run"].streams.batch(0)["views"]
    assert batch["inputs"].shape == (config.global_batch_size, 2, 17, 2)
    trained = result["variables"]["params"]["pose"]["dictionary"]["level0"]
    start = np.load(path)["dictionary_0"]
    assert 0 < np.abs(trained - start).max() < 1e-2  # fine-tuned, gently
