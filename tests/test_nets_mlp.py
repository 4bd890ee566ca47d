"""Tests for jpose.nets.mlp (Martinez et al. residual MLP lifter).

The independent reference is a float64 NumPy forward pass of the published architecture
written from the paper: Linear+BN+ReLU, residual blocks of two such layers, linear output.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jpose.nets import mlp


def random_variables(cfg, seed):
    """Variables with the init tree's structure and random weights and BN statistics."""
    rng = np.random.default_rng(seed)
    template = mlp.init(jax.random.key(0), cfg)

    def fill(path, leaf):
        name = path[-1].key
        shape = leaf.shape
        if name == "kernel":
            return rng.normal(0.0, 1.0 / np.sqrt(shape[0]), shape).astype(np.float32)
        if name in ("var",):
            return rng.uniform(0.5, 2.0, shape).astype(np.float32)
        if name == "scale":
            return rng.uniform(0.5, 1.5, shape).astype(np.float32)
        return rng.normal(0.0, 0.3, shape).astype(np.float32)  # biases, BN means

    return jax.tree_util.tree_map_with_path(fill, template)


def np_forward(v, x, cfg, eps=1e-5):
    """Martinez lifter in eval mode, float64. x (N, J_in, C_in)."""
    p, s = v["params"], v["batch_stats"]
    f64 = lambda a: np.asarray(a, np.float64)

    def linear(h, name):
        return h @ f64(p[name]["kernel"]) + f64(p[name]["bias"])

    def bn(h, name):
        return (h - f64(s[name]["mean"])) / np.sqrt(f64(s[name]["var"]) + eps) * f64(
            p[name]["scale"]
        ) + f64(p[name]["bias"])

    relu = lambda a: np.maximum(a, 0.0)
    h = relu(bn(linear(x.reshape(x.shape[0], -1).astype(np.float64), "input_dense"), "input_bn"))
    for i in range(cfg.num_blocks):
        y = relu(bn(linear(h, f"block{i}_dense0"), f"block{i}_bn0"))
        y = relu(bn(linear(y, f"block{i}_dense1"), f"block{i}_bn1"))
        h = h + y
    out = {"pose": linear(h, "pose_head").reshape(x.shape[0], cfg.num_joints_out, 3)}
    if "root" in cfg.heads:
        out["root"] = linear(h, "root_head")
    if "scale" in cfg.heads:
        out["scale"] = np.log1p(np.exp(linear(h, "scale_head")))
    return out


def expected_param_count(*, d_in, hidden, num_blocks, j_out, heads):
    """input Linear+BN, num_blocks x 2 x (Linear+BN), pose head, optional heads."""
    n = d_in * hidden + hidden + 2 * hidden
    n += num_blocks * 2 * (hidden * hidden + hidden + 2 * hidden)
    n += hidden * j_out * 3 + j_out * 3
    if "root" in heads:
        n += hidden * 3 + 3
    if "scale" in heads:
        n += hidden + 1
    return n


def test_param_count_full_size():
    # 34*1024 + 1024 + 2048 + 2*2*(1024^2 + 1024 + 2048) + 1024*51 + 51 = 4,296,755
    cfg = mlp.variant("martinez_mlp")
    shapes = jax.eval_shape(lambda: mlp.init(jax.random.key(0), cfg))
    assert mlp.count_params(shapes) == 4_296_755
    cfg = mlp.variant("martinez_mlp_heads")
    shapes = jax.eval_shape(lambda: mlp.init(jax.random.key(0), cfg))
    assert mlp.count_params(shapes) == 4_296_755 + 3 * 1024 + 3 + 1024 + 1


def test_thesis_mlp_param_count():
    """Yang Li (2020) §3.4.1: the Martinez lifter with 4 residual blocks, pose output only.

    input  34*1024 + 1024 (Linear) + 2*1024 (BN)              =    37,888
    blocks 4 * 2 * (1024*1024 + 1024 + 2*1024)               = 8,413,184
    pose   1024*51 + 51                                      =    52,275
    total                                                    = 8,503,347
    """
    cfg = mlp.variant("thesis_mlp")
    assert cfg.num_blocks == 4 and cfg.hidden == 1024 and cfg.heads == ()
    shapes = jax.eval_shape(lambda: mlp.init(jax.random.key(0), cfg))
    assert mlp.count_params(shapes) == 8_503_347
    # Two blocks more than Martinez: 2 * 2,103,296 parameters more.
    assert 8_503_347 - 4_296_755 == 2 * 2 * (1024 * 1024 + 1024 + 2 * 1024)
    assert {f"block{i}_dense{k}" for i in range(4) for k in (0, 1)} <= set(shapes["params"])
    assert "block4_dense0" not in shapes["params"]


def test_no_heads_is_a_pose_only_network():
    """heads=() has no head parameters and returns the pose only (a root/trajectory network
    is then a second instance with its own config and variables)."""
    cfg = mlp.variant("tiny_thesis_mlp", heads=())
    v = random_variables(cfg, seed=11)
    names = set(v["params"])
    assert "pose_head" in names and not names & {"root_head", "scale_head"}
    x = np.random.default_rng(12).normal(0, 0.5, (4, 17, 2)).astype(np.float32)
    out, _ = mlp.apply(v, x, config=cfg, train=False)
    assert out.root is None and out.scale is None and out.pose.shape == (4, 17, 3)
    np.testing.assert_allclose(np.asarray(out.pose), np_forward(v, x, cfg)["pose"], rtol=1e-5,
                               atol=1e-5)
    # The separate root network is another config and init, e.g. one output "joint".
    root_cfg = mlp.variant("tiny_mlp", num_joints_out=1)
    root_out, _ = mlp.apply(mlp.init(jax.random.key(3), root_cfg), x, config=root_cfg,
                            train=False)
    assert root_out.pose.shape == (4, 1, 3)


@pytest.mark.parametrize(
    "kw",
    [
        dict(hidden=16),
        dict(hidden=8, num_blocks=3, heads=("root",), num_joints_in=16, num_joints_out=16),
        dict(hidden=4, num_blocks=0, heads=("scale",), in_features=3),
    ],
)
def test_param_count_small(kw):
    cfg = mlp.MLPConfig(**kw)
    v = mlp.init(jax.random.key(0), cfg)
    assert mlp.count_params(v) == expected_param_count(
        d_in=cfg.num_joints_in * cfg.in_features,
        hidden=cfg.hidden,
        num_blocks=cfg.num_blocks,
        j_out=cfg.num_joints_out,
        heads=cfg.heads,
    )


@pytest.mark.parametrize("name", ["tiny_mlp", "tiny_mlp_heads", "tiny_thesis_mlp"])
def test_matches_numpy_reference_eval(name):
    cfg = mlp.variant(name)
    v = random_variables(cfg, seed=1)
    x = np.random.default_rng(2).normal(0, 0.5, (5, 17, 2)).astype(np.float32)
    out, stats = mlp.apply(v, x, config=cfg, train=False)
    ref = np_forward(v, x, cfg)
    np.testing.assert_allclose(np.asarray(out.pose), ref["pose"], rtol=1e-5, atol=1e-5)
    if "root" in cfg.heads:
        assert out.root.shape == (5, 3) and out.scale.shape == (5, 1)
        np.testing.assert_allclose(np.asarray(out.root), ref["root"], rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(np.asarray(out.scale), ref["scale"], rtol=1e-5, atol=1e-5)
        assert (np.asarray(out.scale) > 0).all()
    else:
        assert out.root is None and out.scale is None
    assert stats is v["batch_stats"]


def test_residual_structure():
    """With the second layer of every block zeroed (BN scale and bias 0), each block is the
    identity, so the output equals input layer -> pose head alone."""
    cfg = mlp.variant("tiny_mlp")
    v = random_variables(cfg, seed=3)
    for i in range(cfg.num_blocks):
        bn = v["params"][f"block{i}_bn1"]
        v["params"][f"block{i}_bn1"] = {
            "scale": np.zeros_like(bn["scale"]),
            "bias": np.zeros_like(bn["bias"]),
        }
    x = np.random.default_rng(4).normal(0, 0.5, (3, 17, 2)).astype(np.float32)
    out, _, inter = mlp.apply(v, x, config=cfg, train=False, with_intermediates=True)
    np.testing.assert_allclose(
        np.asarray(inter["block1"]), np.asarray(inter["input"]), rtol=1e-6, atol=1e-6
    )
    p = v["params"]
    h = np.asarray(inter["input"], np.float64)
    pose = h @ np.asarray(p["pose_head"]["kernel"], np.float64) + np.asarray(
        p["pose_head"]["bias"], np.float64
    )
    np.testing.assert_allclose(np.asarray(out.pose), pose.reshape(3, 17, 3), rtol=1e-5, atol=1e-5)


def test_leading_axes():
    cfg = mlp.variant("tiny_mlp_heads")
    v = random_variables(cfg, seed=5)
    x = np.random.default_rng(6).normal(0, 0.5, (2, 3, 17, 2)).astype(np.float32)
    out, _ = mlp.apply(v, x, config=cfg, train=False)
    assert (
        out.pose.shape == (2, 3, 17, 3)
        and out.root.shape == (2, 3, 3)
        and out.scale.shape == (2, 3, 1)
    )
    flat, _ = mlp.apply(v, x.reshape(6, 17, 2), config=cfg, train=False)
    np.testing.assert_allclose(
        np.asarray(out.pose).reshape(6, 17, 3), np.asarray(flat.pose), rtol=1e-6, atol=1e-6
    )
    single, _ = mlp.apply(v, x[1, 2], config=cfg, train=False)
    assert single.pose.shape == (17, 3) and single.root.shape == (3,)


def test_train_mode_dropout_and_batch_stats():
    cfg = mlp.variant("tiny_mlp")
    v = random_variables(cfg, seed=7)
    x = np.random.default_rng(8).normal(0, 0.5, (6, 17, 2)).astype(np.float32)
    e1, _ = mlp.apply(v, x, config=cfg, train=False)
    e2, _ = mlp.apply(v, x, config=cfg, train=False)
    np.testing.assert_array_equal(np.asarray(e1.pose), np.asarray(e2.pose))
    m = jnp.float32(0.2)
    t1, s1 = mlp.apply(v, x, config=cfg, train=True, rng=jax.random.key(1), bn_momentum=m)
    t2, _ = mlp.apply(v, x, config=cfg, train=True, rng=jax.random.key(2), bn_momentum=m)
    assert not np.allclose(np.asarray(t1.pose), np.asarray(t2.pose))
    # input_bn sees the first linear layer's output; PyTorch-style update, unbiased variance.
    p = v["params"]["input_dense"]
    lin = x.reshape(6, -1).astype(np.float64) @ np.asarray(p["kernel"], np.float64) + np.asarray(
        p["bias"], np.float64
    )
    old = v["batch_stats"]["input_bn"]
    np.testing.assert_allclose(
        np.asarray(s1["input_bn"]["mean"]),
        0.8 * old["mean"] + 0.2 * lin.mean(0),
        rtol=1e-5,
        atol=1e-5,
    )
    np.testing.assert_allclose(
        np.asarray(s1["input_bn"]["var"]),
        0.8 * old["var"] + 0.2 * lin.var(0, ddof=1),
        rtol=1e-5,
        atol=1e-5,
    )
    with pytest.raises(ValueError, match="rng: a PRNG key is required"):
        mlp.apply(v, x, config=cfg, train=True)


def test_jit_train_step_gradients():
    cfg = mlp.variant("tiny_mlp_heads")
    v = mlp.init(jax.random.key(0), cfg)
    x = np.random.default_rng(9).normal(0, 0.5, (8, 17, 2)).astype(np.float32)

    @jax.jit
    def loss(params, key):
        out, stats = mlp.apply(
            {"params": params, "batch_stats": v["batch_stats"]}, x, config=cfg, train=True, rng=key
        )
        return jnp.mean(jnp.square(out.pose)) + jnp.mean(out.root) + jnp.mean(out.scale), stats

    grads, stats = jax.grad(loss, has_aux=True)(v["params"], jax.random.key(1))
    assert set(grads) == set(v["params"])
    assert all(np.isfinite(np.asarray(g)).all() for g in jax.tree.leaves(grads))
    assert np.abs(np.asarray(grads["scale_head"]["kernel"])).max() > 0
    assert jax.tree.structure(stats) == jax.tree.structure(v["batch_stats"])


def test_validation_errors():
    cfg = mlp.variant("tiny_mlp")
    v = mlp.init(jax.random.key(0), cfg)
    with pytest.raises(ValueError, match=r"keypoints: expected shape \(\.\.\., J_in=17, C_in=2\)"):
        mlp.apply(v, np.zeros((4, 16, 2), np.float32), config=cfg, train=False)
    with pytest.raises(ValueError, match="keypoints: expected shape"):
        mlp.apply(v, np.zeros((34,), np.float32), config=cfg, train=False)
    with pytest.raises(ValueError, match="keypoints: expected a floating-point"):
        mlp.apply(v, np.zeros((4, 17, 2), np.int32), config=cfg, train=False)
    bad = np.zeros((4, 17, 2), np.float32)
    bad[2, 3, 1] = np.inf
    with pytest.raises(ValueError, match=r"keypoints: 1 non-finite value\(s\).*\(2, 3, 1\)"):
        mlp.apply(v, bad, config=cfg, train=False)
    with pytest.raises(ValueError, match="keypoints: 1 non-finite"):
        mlp.check_inputs(bad, config=cfg)
    with pytest.raises(ValueError, match="heads: expected distinct names"):
        mlp.MLPConfig(heads=("depth",))
    with pytest.raises(ValueError, match="name: unknown MLP lifter variant"):
        mlp.variant("martinez")
    with pytest.raises(ValueError, match="num_blocks"):
        mlp.MLPConfig(num_blocks=-1)
    assert mlp.MLPConfig(heads=["root"]).heads == ("root",)
