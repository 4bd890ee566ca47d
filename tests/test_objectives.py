"""Objectives against hand-computed values and a NumPy transcription of VideoPose3D."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from jpose import skeleton
from jpose.objectives import bones, projection
from jpose.recipes import Step, videopose_semi


def vp3d_project_to_2d(x, camera_params):
    """VideoPose3D ``common/camera.py:project_to_2d``, transcribed to NumPy float64."""
    f, c, k, p = camera_params[..., :2], camera_params[..., 2:4], camera_params[..., 4:7], \
        camera_params[..., 7:]
    xx = np.clip(x[..., :2] / x[..., 2:], -1, 1)
    r2 = np.sum(xx[..., :2] ** 2, axis=-1, keepdims=True)
    radial = 1 + np.sum(k * np.concatenate((r2, r2 ** 2, r2 ** 3), axis=-1), axis=-1,
                        keepdims=True)
    tan = np.sum(p * xx, axis=-1, keepdims=True)
    xxx = xx * (radial + tan) + p * r2
    return f * xxx + c


def test_project_to_2d_matches_videopose3d():
    rng = np.random.default_rng(0)
    points = np.concatenate([rng.uniform(-1, 1, (4, 5, 17, 2)),
                             rng.uniform(2, 6, (4, 5, 17, 1))], -1)
    cams = np.concatenate([rng.uniform(0.9, 1.1, (4, 2)), rng.uniform(-0.05, 0.05, (4, 2)),
                           rng.uniform(-0.2, 0.2, (4, 3)), rng.uniform(-0.01, 0.01, (4, 2))], -1)
    expected = vp3d_project_to_2d(points, cams[:, None, None, :])
    uv, valid = projection.project_to_2d(jnp.asarray(points, jnp.float32),
                                         jnp.asarray(cams[:, None, None, :], jnp.float32))
    np.testing.assert_allclose(uv, expected, atol=2e-6)
    assert bool(valid.all())
    far = np.array([[3.0, 0.0, 2.0], [0.0, 0.0, -1.0], [0.5, 0.5, 1.0]], np.float32)
    _, valid = projection.project_to_2d(far, np.array([1, 1, 0, 0, 0, 0, 0, 0, 0], np.float32))
    assert valid.tolist() == [False, False, True]  # clipped; behind the camera; fine


def test_reprojection_error_hand_values():
    points = np.array([[[0.0, 0.0, 2.0], [0.2, 0.0, 2.0]]], np.float32)  # (1, J=2, 3)
    cam = np.array([1, 1, 0, 0, 0, 0, 0, 0, 0], np.float32)
    keypoints = np.array([[[0.3, 0.4], [0.1, 0.0]]], np.float32)
    err, valid = projection.reprojection_error(points, cam, keypoints)
    np.testing.assert_allclose(err, [[0.5, 0.0]], atol=1e-7)  # (0, 0) vs (0.3, 0.4); exact
    g = jax.grad(lambda p: projection.reprojection_error(p, cam, keypoints)[0].sum())(points)
    assert np.isfinite(np.asarray(g)).all()


def _stick(scale):
    """An h36m_17 pose whose every bone has length ``scale``."""
    skel = skeleton.get("h36m_17")
    pose = np.zeros((17, 3))
    for child, parent in skel.bones:  # parents come before children in h36m_17
        pose[child] = pose[parent] + np.array([0.0, 0.0, scale])
    return pose


def test_bone_terms_hand_values():
    lab = np.stack([_stick(0.25), _stick(0.25), _stick(9.0)])[:, None]  # (3, 1, 17, 3)
    unl = np.stack([_stick(0.30), _stick(0.20)])[:, None]
    lengths = bones.bone_lengths(jnp.asarray(lab), layout="h36m_17")
    np.testing.assert_allclose(lengths[0], 0.25, rtol=1e-6)
    gap = bones.mean_bone_length_gap(jnp.asarray(unl), jnp.asarray(lab), layout="h36m_17",
                                     weight_unlabelled=jnp.array([1.0, 3.0]),
                                     weight_labelled=jnp.array([1.0, 1.0, 0.0]))
    # unlabelled mean (0.30 + 3 x 0.20) / 4 = 0.225; labelled 0.25 (the weight-0 row skipped).
    np.testing.assert_allclose(gap, np.full(16, 0.025), rtol=1e-5)
    u = bones.bone_length_consistency(jnp.asarray(_stick(0.3)), jnp.full(11, 0.25),
                                      layout="h36m_17")
    np.testing.assert_allclose(u, np.full(11, 0.05 ** 2), rtol=1e-5)


def _semi_setup():
    hp = ml_collections.ConfigDict({
        "model": {"kind": "temporal", "variant": "tiny_9f", "overrides": {}},
        "data": {"layout": "h36m_17"},
        "recipe": {"name": "videopose_semi", "warmup_epochs": 1, "bone_weight": 1.0,
                   "reconstruction_weight": 1.0}})
    meta = {"num_joints_in": 17, "num_joints_out": 17, "in_features": 2,
            "layout": "h36m_17", "input_layout": "h36m_17"}
    nets = videopose_semi.networks(hp, meta)
    from jpose.recipes import init_networks
    variables = init_networks(jax.random.key(0), nets)
    rng = np.random.default_rng(0)

    def stream(n):
        return {"inputs": rng.normal(0, 0.3, (n, 9, 17, 2)).astype(np.float32),
                "poses_3d": rng.normal(0, 0.3, (n, 1, 17, 3)).astype(np.float32),
                "trajectory": rng.uniform(3, 5, (n, 1, 3)).astype(np.float32),
                "camera": np.tile(np.array([1.1, 1.1, 0, 0, 0, 0, 0, 0, 0], np.float32), (n, 1)),
                "weight": np.ones(n, np.float32)}

    return hp, nets, variables, {"labelled": stream(4), "unlabelled": stream(6)}


@pytest.mark.parametrize("phase, uses_unlabelled", [(0, False), (1, True)])
def test_semi_supervised_warm_up_then_unlabelled_gradients(phase, uses_unlabelled):
    hp, nets, variables, batch = _semi_setup()
    step = Step(rng=jax.random.key(1), step=jnp.int32(0), bn_momentum=jnp.float32(0.1),
                epoch=jnp.int32(phase), phase=phase)

    def value(unl_inputs):
        b = {"labelled": batch["labelled"], "unlabelled": {**batch["unlabelled"],
                                                            "inputs": unl_inputs}}
        return videopose_semi.loss(variables["params"], variables["batch_stats"], b, step,
                                   nets=nets, hp=hp)[0]

    g = jax.grad(value)(jnp.asarray(batch["unlabelled"]["inputs"]))
    assert (float(jnp.abs(g).max()) > 0) == uses_unlabelled
    _, (stats, metrics) = videopose_semi.loss(variables["params"], variables["batch_stats"],
                                              batch, step, nets=nets, hp=hp)
    assert set(stats) == {"pose", "trajectory"}
    total, count = metrics["reconstruction_2d"]
    assert (float(count) > 0) == uses_unlabelled


def test_semi_supervised_refuses_2d_in_another_layout():
    hp, _, _, _ = _semi_setup()
    with pytest.raises(ValueError, match="back-projection term compares them joint by joint"):
        videopose_semi.networks(hp, {"num_joints_in": 17, "num_joints_out": 17,
                                     "in_features": 2, "layout": "h36m_17",
                                     "input_layout": "coco_17"})


def test_semi_supervised_phases_follow_the_warm_up():
    from jpose.recipes import phase_boundaries, phase_of
    hp, _, _, _ = _semi_setup()
    bounds = phase_boundaries(videopose_semi.RECIPE, hp)
    assert bounds == (1,)
    assert [phase_of(bounds, e) for e in (0, 1, 5)] == [0, 1, 1]
    hp.recipe.warmup_epochs = 0
    assert phase_boundaries(videopose_semi.RECIPE, hp) == ()


def test_li_weighted_fidelity_hand_values():
    from jpose.objectives import pseudo_labels
    scores = jnp.array([0.9, 0.7, 0.3])
    np.testing.assert_allclose(pseudo_labels.confidence_weight(scores, tau=0.7), [1.0, 0.7, 0.3])
    pred = jnp.zeros((3, 3))
    pseudo = jnp.array([[0.1, 0.0, 0.0], [0.0, 0.2, 0.0], [0.0, 0.0, 0.3]])
    np.testing.assert_allclose(pseudo_labels.weighted_fidelity(pred, pseudo, scores, tau=0.7),
                               [0.01, 0.7 * 0.04, 0.3 * 0.09], rtol=1e-5)
