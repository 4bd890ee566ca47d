"""In-the-wild training data (jpose.datasets.wild), focal-unit inputs and body checks.

References: the pinhole model written out in NumPy, scipy rotations, the DeepMimic
revolute ranges read independently from the clips, hand-built bodies.
"""

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from jpose import camera, plausibility, skeleton
from jpose.datasets import pipelines, samples, wild
from jpose.objectives import projection

COCO = skeleton.get("coco_17")
H36M = skeleton.get("h36m_17")


@pytest.fixture(scope="module")
def small():
    return wild.make_wild_dataset(num_subjects=2, test_subjects=1, views=2,
                                  actions=("walk", "kick", "cartwheel"), seed=3)


def _bone_lengths(p, skel):
    return np.stack([np.linalg.norm(p[:, c] - p[:, q], axis=-1) for c, q in skel.bones], -1)


def test_deterministic_splits_and_layouts(small):
    again = wild.make_wild_dataset(num_subjects=2, test_subjects=1, views=2,
                                   actions=("walk", "kick", "cartwheel"), seed=3)
    assert len(small.sequences) == 3 * 3 * 2
    for a, b in zip(small.sequences, again.sequences):
        np.testing.assert_array_equal(a.keypoints, b.keypoints)
    assert {r.subject for r in small.split("labelled")} == {"S1", "S2"}
    assert {r.subject for r in small.split("test")} == {"S3"}
    r = small.sequences[0]
    assert r.keypoints_layout == "coco_17" and r.keypoints.shape[1:] == (17, 2)
    assert r.positions_camera.shape[1:] == (17, 3)
    held = wild.make_wild_dataset(num_subjects=1, test_subjects=1, views=1,
                                  actions=("walk", "kick"), held_out_actions=("walk",))
    assert {r.action for r in held.split("labelled")} == {"kick"}
    assert {r.action for r in held.split("test")} == {"walk"}
    with pytest.raises(ValueError, match="actions"):
        wild.make_wild_dataset(actions=("moonwalk",))


def test_bodies_are_rigid_varied_and_projected_by_their_own_cameras(small):
    statures = set()
    for r in small.sequences:
        lengths = _bone_lengths(r.positions_world, H36M)
        assert lengths.std(0).max() < 1e-5  # perturbed poses, rigid bones
        statures.add(round(plausibility.body_report(r.positions_world, H36M)["stature_m"], 3))
        # Independent pinhole: x_cam = R (x - c); uv = f X / Z + c.
        cam = r.camera
        xyz = (r.positions_world - cam.centre) @ np.asarray(cam.rotation).T
        np.testing.assert_allclose(xyz, r.positions_camera, atol=2e-4)
        uv = xyz[..., :2] / xyz[..., 2:] * cam.focal + cam.principal
        np.testing.assert_allclose(uv, r.keypoints_clean, rtol=1e-4, atol=0.05)
        assert np.allclose(np.linalg.det(cam.rotation), 1.0, atol=1e-5)
    assert len(statures) == 3  # one body per subject
    assert all(1.35 < s < 2.0 for s in statures)
    focal_ratio = [float(r.camera.focal[0] / max(r.camera.image_size)) for r in small.sequences]
    assert min(focal_ratio) >= 0.45 - 1e-6 and max(focal_ratio) <= 2.4 + 1e-6
    assert len({tuple(r.camera.image_size) for r in small.sequences}) > 1
    visible = np.concatenate([r.visible.ravel() for r in small.sequences])
    assert visible.mean() > 0.8  # aimed at the person


def test_low_confidence_entries_are_filled_and_zeroed(small):
    conf = np.concatenate([r.confidence.ravel() for r in small.sequences])
    assert not np.any((conf > 0) & (conf < 0.3))  # below min_confidence: filled, 0
    assert 0.005 < np.mean(conf == 0) < 0.4
    for r in small.sequences:
        assert np.isfinite(r.keypoints).all()


def test_face_points_sit_in_front_of_the_head_and_symmetric():
    tree = samples.deepmimic_tree()
    motion = samples.load_deepmimic_motion("walk")
    target, body = wild.body_positions(motion, tree, np.ones(16), "h36m_17")
    n = COCO.joint_names
    head = target[:, H36M.joint_names.index("head")]
    right = body[:, n.index("right_hip")] - body[:, n.index("left_hip")]
    up = np.array([0.0, 0.0, 1.0])
    forward = np.cross(up, right)  # Z-up: facing +y with the right hand at +x
    forward /= np.linalg.norm(forward, axis=-1, keepdims=True)
    ahead = np.einsum("fi,fi->f", body[:, n.index("nose")] - head, forward)
    assert np.median(ahead) > 0.05
    # Walking goes forward: the pelvis velocity agrees with the face direction.
    velocity = np.diff(target[:, 0], axis=0)
    assert np.mean(np.einsum("fi,fi->f", velocity, forward[1:])) > 0
    d = lambda a, b: np.linalg.norm(body[:, n.index(a)] - body[:, n.index(b)], axis=-1)  # noqa: E731
    np.testing.assert_allclose(d("left_eye", "nose"), d("right_eye", "nose"), atol=1e-9)
    np.testing.assert_allclose(d("left_ear", "left_eye"), d("right_ear", "right_eye"), atol=1e-9)
    np.testing.assert_allclose(d("left_ear", "right_ear"), 0.15, atol=1e-9)


def test_perturbation_keeps_hinges_in_range_and_changes_poses():
    tree = samples.deepmimic_tree()
    motion = samples.load_deepmimic_motion("kick")
    out = wild.perturb_motion(motion, tree, np.random.default_rng(0), spherical_sd=0.2,
                              revolute_sd=0.5, knot_time=0.5)
    ranges = {}
    for clip in samples.DEEPMIMIC_CLIPS:  # the hinge ranges, read here independently
        m = samples.load_deepmimic_motion(clip)
        for j, kind in enumerate(tree.kinds):
            if kind == "revolute":
                q, axis = m.rotations[:, j], np.asarray(tree.axes[j])
                angle = 2 * np.arctan2(q[:, 1:] @ axis, q[:, 0])
                lo, hi = ranges.get(j, (np.inf, -np.inf))
                ranges[j] = (min(lo, angle.min()), max(hi, angle.max()))
    for j, (lo, hi) in ranges.items():
        q, axis = out.rotations[:, j], np.asarray(tree.axes[j])
        angle = 2 * np.arctan2(q[:, 1:] @ axis, q[:, 0])
        assert angle.min() >= lo - 1e-9 and angle.max() <= hi + 1e-9
    np.testing.assert_allclose(np.linalg.norm(out.rotations, axis=-1), 1.0, atol=1e-9)
    before = samples.motion_positions(motion)
    after = samples.motion_positions(out)
    moved = np.linalg.norm(after - after[:, :1] - (before - before[:, :1]), axis=-1)
    assert 0.02 < moved.mean() < 0.3
    np.testing.assert_allclose(after[:, 0], before[:, 0])  # root untouched


def test_focal_units_do_not_depend_on_the_camera():
    rng = np.random.default_rng(0)
    points = rng.normal(0, 0.4, (5, 17, 3)) + np.array([0.3, -0.2, 4.0])
    uv = []
    for focal, principal in ((800.0, (640.0, 360.0)), (2400.0, (500.0, 960.0))):
        pix = points[..., :2] / points[..., 2:] * focal + np.asarray(principal)
        uv.append(np.asarray(camera.pixels_to_focal_units(
            pix.astype(np.float32), np.full(2, focal, np.float32),
            np.asarray(principal, np.float32), 2.0)))
    np.testing.assert_allclose(uv[0], uv[1], atol=1e-5)
    np.testing.assert_allclose(uv[0], 2.0 * points[..., :2] / points[..., 2:], atol=1e-5)
    # The matching intrinsics reproduce them through VideoPose3D's projection (with
    # distortion too: it acts on X / Z, before the focal length).
    cam = camera.CameraParams(
        rotation=np.eye(3, dtype=np.float32), centre=np.zeros(3, np.float32),
        focal=np.array([900.0, 900.0], np.float32), principal=np.array([400.0, 300.0], np.float32),
        radial=np.array([-0.1, 0.05, 0.0], np.float32), tangential=np.array([0.001, -0.002], np.float32),
        image_size=np.array([800.0, 600.0], np.float32))
    pts = points.astype(np.float32) * np.array([0.3, 0.3, 1.0], np.float32)
    pixels = np.asarray(camera.project_perspective(pts, cam.focal, cam.principal, cam.radial,
                                                   cam.tangential))
    nine = camera.focal_units_intrinsics9(cam, 2.0)
    projected = np.asarray(projection.project_to_2d(pts, nine)[0])
    expected = np.asarray(camera.pixels_to_focal_units(pixels, cam.focal, cam.principal, 2.0))
    np.testing.assert_allclose(projected, expected, atol=1e-4)


def test_sequences_take_focal_units_and_confidence(small):
    r = small.sequences[1]
    seqs = pipelines.sequences_from_records([r], layout="h36m_17", with_confidence=True,
                                            normalisation="focal", screen_focal=2.0)
    x = seqs[0].inputs
    assert x.shape == (r.num_frames, 17, 3)
    expected = (r.keypoints - r.camera.principal) / r.camera.focal * 2.0
    np.testing.assert_allclose(x[..., :2], expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(x[..., 2], r.confidence)
    assert seqs.input_layout == "coco_17"
    with pytest.raises(ValueError, match="normalisation"):
        pipelines.sequences_from_records([r], layout="h36m_17", normalisation="pixels")
    with pytest.raises(ValueError, match="screen_focal"):
        pipelines.sequences_from_records([r], layout="h36m_17", normalisation="focal")


def test_body_report_on_hand_built_bodies():
    names = H36M.joint_names
    pose = np.zeros((17, 3))
    up = {"spine": 0.25, "neck": 0.50, "head": 0.70, "head_top": 0.82}
    for k, z in up.items():
        pose[names.index(k)] = (0, -z, 0)  # y down
    for side, x in (("left", 0.1), ("right", -0.1)):
        pose[names.index(f"{side}_hip")] = (x, 0, 0)
        pose[names.index(f"{side}_knee")] = (x, 0.45, 0)
        pose[names.index(f"{side}_ankle")] = (x, 0.87, 0)
        pose[names.index(f"{side}_shoulder")] = (2 * x, -0.5, 0)
        pose[names.index(f"{side}_elbow")] = (3 * x, -0.5, 0)
        pose[names.index(f"{side}_wrist")] = (4 * x, -0.5, 0)
    # Longer left forearm: 0.13 vs 0.1 -> asymmetry 0.03 / 0.115.
    pose[names.index("left_wrist")] = (0.43, -0.5, 0)
    poses = np.repeat(pose[None], 6, axis=0)
    rep = plausibility.body_report(poses, "h36m_17")
    assert rep["stature_m"] == pytest.approx(0.82 + 0.87 + 0.08)
    assert rep["left_right_asymmetry"]["left_wrist-left_elbow"] == pytest.approx(0.03 / 0.115)
    assert rep["left_right_asymmetry"]["left_elbow-left_shoulder"] == pytest.approx(0.0)
    assert max(rep["bone_variation"]) == pytest.approx(0.0)
    jitter = poses + np.random.default_rng(0).normal(0, 0.02, poses.shape)
    assert np.median(plausibility.body_report(jitter, "h36m_17")["bone_variation"]) > 0.02
    nan = poses.copy()
    nan[2] = np.nan
    assert plausibility.body_report(nan, "h36m_17")["frames"] == 5
    with pytest.raises(ValueError, match="shape"):
        plausibility.body_report(poses[:, :16], "h36m_17")
    r = Rotation.from_rotvec([0.3, 1.0, -0.2]).as_matrix()  # rotation invariant
    turned = plausibility.body_report(poses @ r.T, "h36m_17")
    assert turned["stature_m"] == pytest.approx(rep["stature_m"])


def test_default_lifter_config_trains_exports_and_lifts(tmp_path):
    import importlib.util
    import os

    from jpose import exported_model
    from jpose.training import loop
    from launch.configs import default_lifter

    config = default_lifter.get_config("tiny")
    loop.train_and_evaluate(config, str(tmp_path / "run"), progress=False)
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    spec = importlib.util.spec_from_file_location(
        "export_script", os.path.join(root, "launch", "export.py"))
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    script.run(str(tmp_path / "run"), str(tmp_path / "model"), predictor="pose",
               overwrite=False, onnx=False)
    model = exported_model.ExportedLifter.load(str(tmp_path / "model"))
    assert model.metadata["config"]["in_features"] == 3
    assert model.metadata["input_layout"] == "coco_17"
    assert model.metadata["user"]["screen_focal"] == 2.0
