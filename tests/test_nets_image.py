"""Tests for the image networks: ResNet (+ torchvision weights), the TCE ops, the 2D pose
network and the stacked / volumetric hourglasses.

References: NumPy sums over every pixel for bilinear sampling (the formula itself, not
the four-corner shortcut), a NumPy ConvLSTM step, scipy correlation for converted conv
kernels, torchvision's published parameter counts, and torchvision itself where it is
installed (skipped otherwise).
"""

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import signal

from jpose.nets import hourglass, network, pose2d, resnet, tce, torch_weights


def _tree_allclose(a, b, **kw):
    assert jax.tree.structure(a) == jax.tree.structure(b)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), **kw)


def random_variables(net, seed):
    """Random host (NumPy) variables with the init tree's structure: XLA:CPU compiles one
    threefry per parameter, so a jitted init of hundreds of parameters takes minutes to
    compile (and eager init seconds); tests that need values but not the init draw here."""
    rng = np.random.default_rng(seed)

    def fill(path, leaf):
        name, shape = path[-1].key, leaf.shape
        if name == "kernel":
            fan_in = int(np.prod(shape[:-1]))
            return rng.normal(0.0, 1.0 / np.sqrt(fan_in), shape).astype(np.float32)
        if name in ("var", "scale"):
            return rng.uniform(0.5, 1.5, shape).astype(np.float32)
        return rng.normal(0.0, 0.1, shape).astype(np.float32)  # biases, BN means

    return jax.tree_util.tree_map_with_path(fill, jax.eval_shape(net.init, jax.random.key(0)))


# ----------------------------------------------------------------------------- TCE ops


def np_bilinear(a, pts):
    """sum_q G(q, p) A(q), G = g(qx, px) g(qy, py), g(a, b) = max(0, 1 - |a - b|).
    a (H, W, C), pts (P, 2) (x, y)."""
    h, w, _ = a.shape
    qy, qx = np.mgrid[0:h, 0:w]
    out = []
    for px, py in pts:
        g = np.maximum(0, 1 - np.abs(qx - px)) * np.maximum(0, 1 - np.abs(qy - py))
        out.append(np.einsum("hw,hwc->c", g, a))
    return np.stack(out)


def test_bilinear_sample_matches_formula_at_random_points():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(2, 5, 6, 3)).astype(np.float32)
    pts = rng.uniform(-1.5, 6.5, size=(2, 4, 5, 2)).astype(np.float32)  # some outside
    got = np.asarray(tce.bilinear_sample(jnp.asarray(a), jnp.asarray(pts)))
    assert got.shape == (2, 4, 5, 3)
    for b in range(2):
        ref = np_bilinear(a[b].astype(np.float64), pts[b].reshape(-1, 2)).reshape(4, 5, 3)
        np.testing.assert_allclose(got[b], ref, rtol=1e-5, atol=1e-5)
    # Derivative in the points equals finite differences (points off the integer grid).
    f = lambda p: jnp.sum(tce.bilinear_sample(jnp.asarray(a), p) ** 2)  # noqa: E731
    p0 = jnp.asarray([[[1.3, 2.6]], [[3.7, 0.4]]])
    g = np.asarray(jax.grad(f)(p0))
    eps = 1e-2
    for idx in np.ndindex(*p0.shape):
        d = np.zeros(p0.shape, np.float32)
        d[idx] = eps
        fd = (float(f(p0 + d)) - float(f(p0 - d))) / (2 * eps)
        assert g[idx] == pytest.approx(fd, rel=1e-2, abs=1e-3)


def test_deform_zero_offset_is_identity_and_integer_offsets_shift():
    rng = np.random.default_rng(1)
    a = jnp.asarray(rng.normal(size=(2, 4, 5, 3)).astype(np.float32))
    np.testing.assert_array_equal(np.asarray(tce.deform(a, jnp.zeros((2, 4, 5, 2)))),
                                  np.asarray(a))
    # dP = (dx, dy) = (1, -2): out[y, x] = a[y - 2, x + 1], zero where that is outside.
    off = jnp.broadcast_to(jnp.asarray([1.0, -2.0]), (2, 4, 5, 2))
    got = np.asarray(tce.deform(a, off))
    ref = np.zeros_like(got)
    ref[:, 2:, :4] = np.asarray(a)[:, :2, 1:]
    np.testing.assert_allclose(got, ref, atol=1e-6)


def _np_conv_same(x, k, b):
    """x (H, W, Cin), k (3, 3, Cin, Cout) HWIO, zero padding 1."""
    h, w, _ = x.shape
    xp = np.pad(x, ((1, 1), (1, 1), (0, 0)))
    out = np.zeros((h, w, k.shape[-1])) + b
    for i in range(3):
        for j in range(3):
            out += xp[i:i + h, j:j + w] @ k[i, j]
    return out


def test_convlstm_step_matches_numpy():
    rng = np.random.default_rng(2)
    x, h, c = (rng.normal(size=(1, 4, 5, ch)).astype(np.float32) for ch in (3, 2, 2))
    cell = tce.ConvLSTMCell(hidden=2)
    params = cell.init(jax.random.key(0), x, (h, c))
    params = jax.tree.map(lambda p: jnp.asarray(rng.normal(size=p.shape), jnp.float32) * 0.5,
                          params)
    h1, c1 = cell.apply(params, x, (h, c))
    k = np.asarray(params["params"]["gates"]["kernel"], np.float64)
    bias = np.asarray(params["params"]["gates"]["bias"], np.float64)
    z = _np_conv_same(np.concatenate([x[0], h[0]], -1).astype(np.float64), k, bias)
    i, f, g, o = np.split(z, 4, axis=-1)
    sig = lambda v: 1 / (1 + np.exp(-v))  # noqa: E731
    c_ref = sig(f) * c[0] + sig(i) * np.tanh(g)
    np.testing.assert_allclose(np.asarray(c1[0]), c_ref, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(np.asarray(h1[0]), sig(o) * np.tanh(c_ref), rtol=1e-5,
                               atol=1e-5)


@pytest.mark.parametrize("bidirectional", [False, True])
def test_tce_sum_with_initial_zero_offsets_sums_the_window(bidirectional):
    # Offsets convs start at zero (identity deformation): TCE-S is then the plain sum.
    rng = np.random.default_rng(3)
    frames = jnp.asarray(rng.normal(size=(2, 5, 4, 4, 3)).astype(np.float32))
    module = tce.TCE("sum", bidirectional)
    v = module.init(jax.random.key(0), frames, centre=2)
    got = np.asarray(module.apply(v, frames, centre=2))
    f = np.asarray(frames)
    ref = f[:, :3].sum(1) + (f[:, 2:].sum(1) if bidirectional else 0.0)
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5)
    assert ("succeeding" in v["params"]) == bidirectional


# ----------------------------------------------------------------------------- ResNet


def test_resnet_stage_shapes_and_parameter_counts():
    x = jax.ShapeDtypeStruct((2, 64, 64, 3), jnp.float32)
    # torchvision: resnet50 25,557,032 and resnet18 11,689,512 parameters with the fc.
    for name, dilate, shapes, n_params in [
        ("resnet50", (False, False, False),
         {"stem": (16, 16, 64), "stage1": (16, 16, 256), "stage2": (8, 8, 512),
          "stage3": (4, 4, 1024), "stage4": (2, 2, 2048)}, 25_557_032 - 2048 * 1000 - 1000),
        ("resnet50", (False, True, True),
         {"stage3": (8, 8, 1024), "stage4": (8, 8, 2048)}, None),
        ("resnet18", (False, False, False),
         {"stage1": (16, 16, 64), "stage4": (2, 2, 512)}, 11_689_512 - 512 * 1000 - 1000),
    ]:
        cfg = resnet.variant(name, dilate=dilate)
        v = jax.eval_shape(lambda cfg=cfg: resnet.init(jax.random.key(0), cfg))
        feats = jax.eval_shape(
            lambda v, x, cfg=cfg: resnet.apply(v, x, config=cfg, train=True)[0], v, x)
        for k, s in shapes.items():
            assert feats[k].shape == (2,) + s, (name, dilate, k)
        if n_params is not None:
            assert resnet._layers.count_params(v["params"]) == n_params


def test_resnet_bn_affine_false_has_no_bn_params_and_runs():
    net = network.build({"kind": "resnet", "variant": "tiny_resnet18",
                         "overrides": {"bn_affine": False}})
    cfg, v = net.config, random_variables(net, 3)
    assert "bn1" in v["batch_stats"] and "bn1" not in v["params"]
    assert "bn1" not in v["params"]["layer2_0"] and "downsample_bn" in v["batch_stats"][
        "layer2_0"]
    step = jax.jit(lambda v, x: resnet.apply(v, x, config=cfg, train=True))
    feats, stats = step(v, jnp.ones((1, 2, 32, 32, 3)))
    assert feats["stage4"].shape == (1, 2, 1, 1, 16)  # leading batch axes kept
    assert not np.allclose(np.asarray(stats["bn1"]["mean"]),
                           np.asarray(v["batch_stats"]["bn1"]["mean"]))


def torchvision_resnet18_state_dict(rng):
    """Random arrays under torchvision resnet18's names and shapes (written out here, not
    taken from the converter), incl. fc and num_batches_tracked."""
    sd = {}

    def conv(name, o, i, k):
        sd[f"{name}.weight"] = rng.normal(0, 0.3, (o, i, k, k)).astype(np.float32)

    def bn(name, c):
        sd[f"{name}.weight"] = rng.uniform(0.5, 1.5, c).astype(np.float32)
        sd[f"{name}.bias"] = rng.normal(0, 0.1, c).astype(np.float32)
        sd[f"{name}.running_mean"] = rng.normal(0, 0.1, c).astype(np.float32)
        sd[f"{name}.running_var"] = rng.uniform(0.5, 2.0, c).astype(np.float32)
        sd[f"{name}.num_batches_tracked"] = np.array(7)

    conv("conv1", 64, 3, 7)
    bn("bn1", 64)
    inplanes = 64
    for s, planes in enumerate((64, 128, 256, 512), 1):
        for b in range(2):
            cin = inplanes if b == 0 else planes
            conv(f"layer{s}.{b}.conv1", planes, cin, 3)
            bn(f"layer{s}.{b}.bn1", planes)
            conv(f"layer{s}.{b}.conv2", planes, planes, 3)
            bn(f"layer{s}.{b}.bn2", planes)
            if b == 0 and s > 1:
                conv(f"layer{s}.{b}.downsample.0", planes, cin, 1)
                bn(f"layer{s}.{b}.downsample.1", planes)
        inplanes = planes
    sd["fc.weight"] = rng.normal(size=(1000, 512)).astype(np.float32)
    sd["fc.bias"] = np.zeros(1000, np.float32)
    return sd


def np_conv_torch(x, w, *, stride, pad):
    """PyTorch Conv2d (no bias) with scipy correlation: x (H, W, Cin), w OIHW."""
    xp = np.pad(x.astype(np.float64), ((pad, pad), (pad, pad), (0, 0)))
    out = []
    for o in range(w.shape[0]):
        acc = sum(signal.correlate2d(xp[:, :, i], w[o, i].astype(np.float64), mode="valid")
                  for i in range(w.shape[1]))
        out.append(acc[::stride, ::stride])
    return np.stack(out, -1)


def test_torchvision_names_round_trip_and_conv_layout():
    sd = torchvision_resnet18_state_dict(np.random.default_rng(4))
    cfg = resnet.variant("resnet18")
    v = torch_weights.resnet_from_torchvision(sd, config=cfg)
    expected = jax.eval_shape(lambda: resnet.init(jax.random.key(0), cfg))
    assert jax.tree.structure(v) == jax.tree.structure(expected)
    assert all(a.shape == b.shape for a, b in zip(jax.tree.leaves(v), jax.tree.leaves(expected)))
    back = torch_weights.resnet_to_torchvision(v, config=cfg)
    kept = {k for k in sd if not k.startswith("fc.") and "num_batches" not in k}
    assert set(back) == kept
    for k in kept:
        np.testing.assert_array_equal(back[k], sd[k])
    # Conv outputs inside the network against scipy correlation of the OIHW weights: the
    # 7x7 stride-2 stem conv and layer2's first 3x3 stride-2 conv (2 stages suffice).
    cfg2 = resnet.variant("resnet18", num_stages=2, imagenet_normalise=False)
    v2 = torch_weights.resnet_from_torchvision(sd, config=cfg2)  # later stages ignored
    x = np.random.default_rng(5).normal(size=(1, 20, 20, 3)).astype(np.float32)
    _, inter = resnet.ResNet(cfg2).apply(v2, jnp.asarray(x), train=False, bn_momentum=0.1,
                                         capture_intermediates=True)
    inter = inter["intermediates"]
    conv1 = np.asarray(inter["conv1"]["__call__"][0][0])
    np.testing.assert_allclose(conv1, np_conv_torch(x[0], sd["conv1.weight"], stride=2, pad=3),
                               rtol=1e-4, atol=1e-4)
    block_in = np.asarray(inter["layer1_1"]["__call__"][0][0])
    got = np.asarray(inter["layer2_0"]["conv1"]["__call__"][0][0])
    np.testing.assert_allclose(
        got, np_conv_torch(block_in, sd["layer2.0.conv1.weight"], stride=2, pad=1),
        rtol=1e-4, atol=1e-3)


def test_torchvision_conversion_errors_and_no_affine():
    rng = np.random.default_rng(6)
    sd = torchvision_resnet18_state_dict(rng)
    cfg = resnet.variant("resnet18")
    with pytest.raises(ValueError, match="missing key 'layer1.0.bn1.running_var'"):
        torch_weights.resnet_from_torchvision(
            {k: a for k, a in sd.items() if k != "layer1.0.bn1.running_var"}, config=cfg)
    with pytest.raises(ValueError, match="unexpected keys"):
        torch_weights.resnet_from_torchvision({**sd, "extra.weight": np.zeros(1)}, config=cfg)
    with pytest.raises(ValueError, match="shape"):
        torch_weights.resnet_from_torchvision({**sd, "conv1.weight": np.zeros((64, 3, 3, 3))},
                                              config=cfg)
    # affine=False: the batch norms have no weight/bias.
    no_affine = {k: a for k, a in sd.items()
                 if not (k.rsplit(".", 1)[-1] in ("weight", "bias") and
                         (".bn" in k or k.startswith("bn") or "downsample.1" in k))}
    cfg_na = resnet.variant("resnet18", bn_affine=False)
    v = torch_weights.resnet_from_torchvision(no_affine, config=cfg_na)
    assert "bn1" not in v["params"] and "bn1" in v["batch_stats"]
    back = torch_weights.resnet_to_torchvision(v, config=cfg_na)
    assert set(back) == {k for k in no_affine if not k.startswith("fc.")
                         and "num_batches" not in k}


def test_matches_torchvision_resnet18():
    torch = pytest.importorskip("torch")
    torchvision = pytest.importorskip("torchvision")
    torch.manual_seed(0)
    model = torchvision.models.resnet18(weights=None).eval()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.normal_(0, 0.1)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
                m.bias.normal_(0, 0.1)
    x = np.random.default_rng(7).uniform(size=(2, 64, 64, 3)).astype(np.float32)
    with torch.no_grad():
        h = torch.from_numpy(x).permute(0, 3, 1, 2)
        h = model.maxpool(model.relu(model.bn1(model.conv1(h))))
        ref = {}
        for s in range(1, 5):
            h = getattr(model, f"layer{s}")(h)
            ref[f"stage{s}"] = h.permute(0, 2, 3, 1).numpy()
    cfg = resnet.variant("resnet18", imagenet_normalise=False)
    sd = {k: t.numpy() for k, t in model.state_dict().items()}
    feats, _ = resnet.apply(torch_weights.resnet_from_torchvision(sd, config=cfg),
                            jnp.asarray(x), config=cfg, train=False)
    for k, r in ref.items():
        np.testing.assert_allclose(np.asarray(feats[k]), r, rtol=1e-3, atol=1e-3)


# ----------------------------------------------------------------------------- networks


def _shapes(spec, x_shape, **overrides):
    """Output shapes of a network's training form, traced only (no compilation)."""
    net = network.build(spec, **overrides)
    v = jax.eval_shape(net.init, jax.random.key(0))
    out, stats = jax.eval_shape(lambda v, x: net.apply(v, x, train=True, bn_momentum=0.1),
                                v, jax.ShapeDtypeStruct(x_shape, jnp.float32))
    assert jax.tree.structure(stats) == jax.tree.structure(v["batch_stats"])
    return net, {k: a.shape for k, a in out.items()}


def _run(spec, x, **overrides):
    """One jitted training-form call on random variables: (net, variables, outputs)."""
    net = network.build(spec, **overrides)
    v = random_variables(net, 0)
    out, _ = jax.jit(lambda v, x: net.apply(v, x, train=True, bn_momentum=0.1))(v, x)
    assert all(bool(jnp.all(jnp.isfinite(a))) for a in out.values())
    return net, v, out


def test_tiny_resnet_and_pose2d_output_shapes():
    for name, c in [("tiny_resnet18", 16), ("tiny_resnet50", 64)]:
        _, out = _shapes({"kind": "resnet", "variant": name}, (2, 64, 64, 3))
        assert out["stage4"] == (2, 2, 2, c) and out["pooled"] == (2, c)
    for name, t in [("tiny_pose2d", None), ("tiny_pose2d_tce_s", 3), ("tiny_pose2d_tce_c", 3),
                    ("tiny_pose2d_tce_bc", 5)]:
        net, out = _shapes({"kind": "pose2d", "variant": name},
                           (2, 64, 64, 3) if t is None else (2, t, 64, 64, 3))
        assert net.config.window == (t or 1)
        assert out == {"heatmaps": (2, 16, 16, 16), "pose": (2, 16, 2), "score": (2, 16)}
        assert network.kind_of(net.config) == "pose2d"


def test_pose2d_tce_bc_runs_and_checks_windows():
    x = jnp.asarray(np.random.default_rng(9).uniform(size=(2, 3, 32, 32, 3)), jnp.float32)
    net, v, out = _run({"kind": "pose2d", "variant": "tiny_pose2d_tce_bc"}, x,
                       num_neighbours=1)
    assert out["heatmaps"].shape == (2, 8, 8, 16)
    assert set(v["params"]["tce0"]) == {"preceding", "succeeding"}
    assert set(v["params"]["tce0"]["preceding"]) == {"offsets", "convlstm"}
    with pytest.raises(ValueError, match="windows"):
        net.apply(v, jnp.ones((2, 2, 32, 32, 3)), train=False)
def test_pose2d_full_size_heatmaps_are_64_from_256():
    for name, t in [("pose2d_resnet50", None), ("pose2d_tce_bc", 13)]:
        cfg = pose2d.variant(name)
        v = jax.eval_shape(lambda cfg=cfg: pose2d.init(jax.random.key(0), cfg))
        x = jax.ShapeDtypeStruct((1, 256, 256, 3) if t is None else (1, t, 256, 256, 3),
                                 jnp.float32)
        out = jax.eval_shape(lambda v, x, cfg=cfg: pose2d.apply(v, x, config=cfg,
                                                                 train=False)[0], v, x)
        assert out.shape == (1, 64, 64, 16)
        assert cfg.branch_width == 512


def test_pose2d_backbone_takes_converted_resnet_weights():
    # The backbone subtree is exactly a ResNet's, so torchvision weights slot in.
    cfg = pose2d.variant("pose2d_resnet50")
    v = jax.eval_shape(lambda: pose2d.init(jax.random.key(0), cfg))
    backbone = jax.eval_shape(lambda: resnet.init(jax.random.key(0), cfg.backbone_config))
    for col in ("params", "batch_stats"):
        assert jax.tree.structure(v[col]["backbone"]) == jax.tree.structure(backbone[col])
        assert [a.shape for a in jax.tree.leaves(v[col]["backbone"])] == [
            a.shape for a in jax.tree.leaves(backbone[col])]
    merged = pose2d.with_backbone(v, backbone)
    assert merged["params"]["backbone"] is backbone["params"]
    assert jax.tree.structure(merged) == jax.tree.structure(v)


def test_hourglass_shapes_transfer_and_freezing():
    x = jnp.asarray(np.random.default_rng(8).uniform(size=(2, 32, 32, 3)), jnp.float32)
    net2d, out = _shapes({"kind": "hourglass", "variant": "tiny_hourglass"}, x.shape)
    assert out["heatmaps_stack0"] == out["heatmaps_stack1"] == out["heatmaps"] == (2, 8, 8, 16)
    assert out["features"] == (2, 8, 8, 16) and out["pose"] == (2, 16, 2)
    net3d = network.build({"kind": "hourglass", "variant": "tiny_volumetric_hourglass",
                           "overrides": {"freeze_2d": True}})
    # The 2D part transfers from the 2-stack 2D model.
    v2d = random_variables(net2d, 1)
    v3d = hourglass.transfer_2d(v2d, random_variables(net3d, 2), config=net3d.config)

    # One compiled training step: outputs, and (frozen) no gradient into the 2D part.
    def loss(params):
        out, stats = net3d.apply({"params": params, "batch_stats": v3d["batch_stats"]}, x,
                                 train=True, bn_momentum=0.1)
        return jnp.sum(jnp.square(out["volumes"])), (stats, out)

    grads, (stats, out3) = jax.jit(jax.grad(loss, has_aux=True))(v3d["params"])
    for k, d in enumerate((1, 4)):
        assert out3[f"volumes_stack{k}"].shape == (2, 8, 8, d, 17)
    assert out3["pose"].shape == (2, 17, 3) and out3["score"].shape == (2, 17)
    assert all(bool(jnp.all(jnp.isfinite(a))) for a in out3.values())
    # Frozen, the 2D part runs in inference mode: the 2D model's eval features.
    f2d = jax.jit(lambda v: net2d.apply(v, x, train=False)[0]["features"])(v2d)
    np.testing.assert_allclose(np.asarray(out3["features"]), np.asarray(f2d), rtol=1e-4,
                               atol=1e-4)
    assert all(float(jnp.abs(g).max()) == 0.0 for g in jax.tree.leaves(grads["stack0"]))
    assert all(float(jnp.abs(g).max()) == 0.0 for g in jax.tree.leaves(grads["stem"]))
    assert any(float(jnp.abs(g).max()) > 0.0 for g in jax.tree.leaves(grads["vstack0"]))
    _tree_allclose(stats["stem"], v3d["batch_stats"]["stem"])
    assert not np.allclose(np.asarray(stats["vstack0"]["lin_bn"]["mean"]),
                           np.asarray(v3d["batch_stats"]["vstack0"]["lin_bn"]["mean"]))
    # A source stack without re-injection (a 2D model with only as many stacks) is refused.
    short = {col: {**v2d[col], "stack0": {k: t for k, t in v2d[col]["stack0"].items()
                                           if not k.startswith("reinject")}}
             for col in ("params", "batch_stats")}
    with pytest.raises(ValueError, match="more than 1 stacks"):
        hourglass.transfer_2d(short, v3d, config=net3d.config)
    # Regex of the 2D part for optimizer.param_groups.
    assert re.search(hourglass.FROZEN_2D_PATTERN, "pose/stack0/head/kernel")
    assert not re.search(hourglass.FROZEN_2D_PATTERN, "pose/vstack0/head/kernel")


def test_volumetric_full_size_shapes():
    cfg = hourglass.variant("volumetric_hourglass_c2f")
    v = jax.eval_shape(lambda: hourglass.init(jax.random.key(0), cfg))
    out = jax.eval_shape(lambda v, x: hourglass.network_apply(v, x, config=cfg, train=False)[0],
                         v, jax.ShapeDtypeStruct((1, 256, 256, 3), jnp.float32))
    assert out["features"].shape == (1, 64, 64, 256)
    assert [out[f"volumes_stack{k}"].shape[3] for k in range(4)] == [1, 2, 4, 64]
    assert out["volumes"].shape == (1, 64, 64, 64, 17)
