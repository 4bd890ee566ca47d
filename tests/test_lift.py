"""End-to-end tests of launch/lift.py (2D keypoint files -> 3D poses with an export).

Reference: the in-process temporal model (``temporal.apply(..., train=False)``) on inputs
prepared independently here: joints converted with ``jpose.skeleton.convert`` and pixels
normalised with the published formula written out in NumPy.
"""

import importlib.util
import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest

from jpose import camera, export, skeleton
from jpose.nets import temporal
from tests.fakes import perturbed_batch_norm

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_spec = importlib.util.spec_from_file_location("lift", os.path.join(REPO, "launch", "lift.py"))
lift = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(lift)

H36M_NAMES = skeleton.get("h36m_17").joint_names


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    cfg = temporal.variant("tiny_9f")
    variables = perturbed_batch_norm(temporal.init(jax.random.key(3), cfg), 0, scale=0.3)
    directory = tmp_path_factory.mktemp("lift") / "model"
    export.export_lifter(variables, cfg, directory, platforms=("cpu",))
    reference = jax.jit(lambda x: temporal.apply(variables, x, config=cfg, train=False)[0])
    return directory, reference


def _screen(pixels, width, height):
    """Published VideoPose3D normalisation, written out independently."""
    x = pixels[..., 0] / width * 2 - 1
    y = pixels[..., 1] / width * 2 - height / width
    return np.stack([x, y], -1).astype(np.float32)


def _check_common(out, saved):
    assert saved["poses_3d"].dtype == np.float32
    assert tuple(saved["joint_names"]) == H36M_NAMES
    assert str(saved["layout"]) == "h36m_17"
    assert str(saved["units"]) == "metres"
    assert str(saved["frame"]) == "camera (x right, y down, z forward), root-relative"
    np.testing.assert_array_equal(saved["poses_3d"], out["poses_3d"])


def test_npz_h36m_end_to_end(model, tmp_path):
    directory, reference = model
    rng = np.random.default_rng(1)
    pixels = rng.uniform(100, 900, (2, 12, 17, 2))  # N=2 sequences, T=12, pixels
    np.savez(tmp_path / "in.npz", keypoints=pixels, image_size=np.array([1000, 800]))
    out = lift.run(str(directory), str(tmp_path / "in.npz"), str(tmp_path / "out.npz"),
                   layout="h36m_17")
    with np.load(tmp_path / "out.npz", allow_pickle=False) as saved:
        assert saved["poses_3d"].shape == (2, 12, 17, 3)
        _check_common(out, saved)
        np.testing.assert_array_equal(saved["image_size"], [1000.0, 800.0])
        expected = np.asarray(reference(_screen(pixels, 1000.0, 800.0)))
        np.testing.assert_allclose(saved["poses_3d"], expected, rtol=1e-4, atol=1e-5)
    assert sorted(os.listdir(tmp_path)) == ["in.npz", "out.npz"]  # no temp file left

    # (T, J, 2) input and the image size from arguments; the layout defaults to the model's.
    np.savez(tmp_path / "one.npz", keypoints=pixels[1])
    out = lift.run(str(directory), str(tmp_path / "one.npz"), str(tmp_path / "one_out.npz"),
                   image_size=(1000, 800))
    np.testing.assert_allclose(out["poses_3d"], expected[1:], rtol=1e-4, atol=1e-5)


def _coco_motion(num_frames):
    """A hand-made 17-joint COCO standing pose (metres, camera frame), swaying over time."""
    base = np.array([
        [0.00, -0.70, 0.00],   # nose
        [-0.03, -0.73, 0.02],  # left_eye
        [0.03, -0.73, 0.02],   # right_eye
        [-0.07, -0.71, 0.06],  # left_ear
        [0.07, -0.71, 0.06],   # right_ear
        [-0.18, -0.50, 0.05],  # left_shoulder
        [0.18, -0.50, 0.05],   # right_shoulder
        [-0.22, -0.22, 0.05],  # left_elbow
        [0.22, -0.22, 0.05],   # right_elbow
        [-0.24, 0.04, 0.00],   # left_wrist
        [0.24, 0.04, 0.00],    # right_wrist
        [-0.12, 0.00, 0.05],   # left_hip
        [0.12, 0.00, 0.05],    # right_hip
        [-0.13, 0.45, 0.05],   # left_knee
        [0.13, 0.45, 0.05],    # right_knee
        [-0.14, 0.88, 0.08],   # left_ankle
        [0.14, 0.88, 0.08],    # right_ankle
    ])
    t = np.arange(num_frames)[:, None, None]
    sway = np.concatenate([0.05 * np.sin(0.4 * t), np.zeros_like(t) + 0.0, 0.1 * np.cos(0.3 * t)], -1)
    return base[None] + sway + np.array([0.1, -0.1, 4.0])  # 4 m in front of the camera


def test_coco_json_end_to_end(model, tmp_path):
    directory, reference = model
    width, height, num_frames = 1280, 720, 10
    points = _coco_motion(num_frames).astype(np.float32)
    pixels = np.asarray(camera.project_perspective(
        points, np.array([1100.0, 1100.0], np.float32), np.array([640.0, 360.0], np.float32)))
    assert skeleton.get("coco_17").num_joints == pixels.shape[1]
    image_ids = 100 + np.arange(num_frames)
    entries = []
    for frame in np.random.default_rng(2).permutation(num_frames):  # file order != frame order
        triples = np.concatenate([pixels[frame], np.full((17, 1), 2.0)], -1)
        entries.append({"image_id": int(image_ids[frame]), "category_id": 1, "score": 0.9,
                        "keypoints": [float(v) for v in triples.ravel()]})
    (tmp_path / "det.json").write_text(json.dumps(entries))

    out = lift.run(str(directory), str(tmp_path / "det.json"), str(tmp_path / "out.npz"),
                   image_size=(width, height))
    h36m_pixels = skeleton.convert(pixels.astype(np.float64), "coco_17", "h36m_17")
    # Pelvis is synthesised as the mid-hip (skeleton module rule): check one joint by hand.
    np.testing.assert_allclose(h36m_pixels[:, 0], (pixels[:, 11] + pixels[:, 12]) / 2, rtol=1e-6)
    expected = np.asarray(reference(_screen(h36m_pixels, float(width), float(height))[None]))
    with np.load(tmp_path / "out.npz", allow_pickle=False) as saved:
        assert saved["poses_3d"].shape == (1, num_frames, 17, 3)
        _check_common(out, saved)
        assert str(saved["input_layout"]) == "coco_17"
        np.testing.assert_array_equal(saved["image_ids"], image_ids)
        np.testing.assert_allclose(saved["poses_3d"], expected, rtol=1e-4, atol=1e-5)

    # The command line gives the same file.
    proc = subprocess.run(
        [sys.executable, os.path.join(REPO, "launch", "lift.py"), f"--model={directory}",
         f"--input={tmp_path / 'det.json'}", f"--output={tmp_path / 'cli.npz'}",
         f"--image_width={width}", f"--image_height={height}"],
        capture_output=True, text=True, timeout=120,
        env={**os.environ, "JAX_PLATFORMS": "cpu"},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    with np.load(tmp_path / "cli.npz", allow_pickle=False) as cli:
        np.testing.assert_allclose(cli["poses_3d"], expected, rtol=1e-4, atol=1e-5)


def test_bad_inputs(model, tmp_path):
    directory, _ = model
    out = tmp_path / "out.npz"

    def run(name, **kwargs):
        return lift.run(str(directory), str(tmp_path / name), str(out), **kwargs)

    np.savez(tmp_path / "nokey.npz", points=np.zeros((4, 17, 2)))
    with pytest.raises(ValueError, match=r"nokey\.npz: keypoints is missing"):
        run("nokey.npz", image_size=(10, 10))
    np.savez(tmp_path / "shape.npz", keypoints=np.zeros((4, 16, 2)))
    with pytest.raises(ValueError, match=r"shape\.npz: keypoints has shape \(4, 16, 2\); "
                       r"expected \(T, 17, 2 or 3\)"):
        run("shape.npz", image_size=(10, 10))
    with pytest.raises(ValueError, match="Unknown joint layout"):
        run("shape.npz", layout="h36m_99", image_size=(10, 10))
    (tmp_path / "empty.npz").write_bytes(b"")
    with pytest.raises(ValueError, match=r"input '.*empty\.npz' is empty \(0 bytes\)"):
        run("empty.npz", image_size=(10, 10))
    np.savez(tmp_path / "whole.npz", keypoints=np.zeros((4, 17, 2)))
    (tmp_path / "cut.npz").write_bytes((tmp_path / "whole.npz").read_bytes()[:300])
    with pytest.raises(ValueError, match=r"cut\.npz' is not a valid \.npz \(truncated"):
        run("cut.npz", image_size=(10, 10))
    np.savez(tmp_path / "obj.npz", keypoints=np.asarray([None, 1], dtype=object))
    with pytest.raises(ValueError, match=r"holds object arrays \('keypoints'\), which need "
                                         "pickle; refused"):
        run("obj.npz", image_size=(10, 10))
    np.savez(tmp_path / "ok.npz", keypoints=np.ones((4, 17, 2)))
    with pytest.raises(ValueError, match="image size unknown"):
        run("ok.npz")
    (tmp_path / "norm.json").write_text(json.dumps(
        [{"image_id": 1, "keypoints": [0.5] * 51, "score": 1.0}]))
    with pytest.raises(ValueError, match=r"norm\.json: \[0\]\.keypoints coordinates all lie "
                                         "within"):
        run("norm.json", image_size=(10, 10))
    (tmp_path / "short.json").write_text(json.dumps([{"image_id": 1, "keypoints": [1.0] * 50}]))
    with pytest.raises(ValueError, match=r"\[0\]\.keypoints has 50 values; expected one of "
                                         r"51 \(COCO-17\)"):
        run("short.json", image_size=(10, 10))
    (tmp_path / "noid.json").write_text(json.dumps([{"keypoints": [1.0] * 51}]))
    with pytest.raises(ValueError, match="is not a recognised keypoint JSON"):
        run("noid.json", image_size=(10, 10))
    np.savez(tmp_path / "ok2.npz", keypoints=np.full((4, 17, 2), 50.0))
    with pytest.raises(ValueError, match="expected a .npz or .json path"):
        lift.run(str(directory), str(tmp_path / "ok2.npz"), str(tmp_path / "out.txt"),
                 image_size=(100, 100))
    assert not out.exists()  # nothing written on failure


def test_trajectory_model_adds_camera_frame_root_and_absolute_poses(model, tmp_path):
    directory, reference = model
    cfg = temporal.variant("tiny_trajectory_9f")
    variables = jax.tree.map(np.asarray, temporal.init(jax.random.key(4), cfg))
    traj_dir = tmp_path / "trajectory"
    export.export_lifter(variables, cfg, traj_dir, platforms=("cpu",))
    traj_ref = jax.jit(lambda x: temporal.apply(variables, x, config=cfg, train=False)[0])
    rng = np.random.default_rng(1)
    pixels = rng.uniform(0, 1000, (20, 17, 2)).astype(np.float32)
    path = tmp_path / "kp.npz"
    np.savez(path, keypoints=pixels, image_size=np.array([1000.0, 1000.0]))
    out = lift.run(str(directory), str(path), str(tmp_path / "out.npz"),
                   trajectory_model_dir=str(traj_dir))
    x = _screen(pixels, 1000.0, 1000.0)[None]
    root = np.asarray(traj_ref(x))[..., 0, :]
    np.testing.assert_allclose(out["trajectory"], root, atol=1e-5)
    np.testing.assert_allclose(out["poses_camera"],
                               np.asarray(reference(x)) + root[..., None, :], atol=1e-5)
    with pytest.raises(ValueError, match="is not a trajectory model"):
        lift.run(str(directory), str(path), str(tmp_path / "o2.npz"),
                 trajectory_model_dir=str(directory))


def _body25_frame(people):
    """One OpenPose --write_json frame file's content (BODY_25 triples per person)."""
    return {"version": 1.3, "people": [
        {"person_id": [-1], "pose_keypoints_2d": [float(v) for v in p.ravel()],
         "face_keypoints_2d": [], "hand_left_keypoints_2d": [], "hand_right_keypoints_2d": [],
         "pose_keypoints_3d": [], "face_keypoints_3d": [], "hand_left_keypoints_3d": [],
         "hand_right_keypoints_3d": []} for p in people]}


def test_openpose_directory_largest_person_filled_and_json_output(model, tmp_path):
    """Two people; the larger is lifted; a joint OpenPose lost ((0, 0, 0)) is filled
    linearly in time before lifting, not lifted from (0, 0)."""
    directory, reference = model
    rng = np.random.default_rng(5)
    frames = 8
    pose = rng.uniform(300, 700, (1, 25, 2))  # one body, moving smoothly
    big = np.concatenate([np.repeat(pose, frames, 0), np.full((frames, 25, 1), 0.9)], -1)
    big[:, :, :2] += np.linspace(0, 14, frames)[:, None, None]  # smooth motion
    small = big.copy()
    small[:, :, :2] = (small[:, :, :2] - 500) * 0.2 + 100  # a small person far away
    lost = big.copy()
    lost[3, 4] = 0.0  # RWrist lost on frame 3
    folder = tmp_path / "openpose"
    folder.mkdir()
    for t in range(frames):
        people = [small[t], lost[t]] if t % 2 else [lost[t], small[t]]
        (folder / f"clip_{t:012d}_keypoints.json").write_text(json.dumps(_body25_frame(people)))
    out = lift.run(str(directory), str(folder), str(tmp_path / "out.json"),
                   image_size=(1000, 1000), render=str(tmp_path / "r.gif"))
    expected_2d = big[..., :2].copy()
    expected_2d[3, 4] = (big[2, 4, :2] + big[4, 4, :2]) / 2  # linear in time
    h36m = skeleton.convert(expected_2d, "openpose_body25", "h36m_17")
    # The default camera f = max(w, h) and this old-style export: width normalisation.
    expected = np.asarray(reference(_screen(h36m, 1000.0, 1000.0)[None]))
    np.testing.assert_allclose(out["poses_3d"], expected, rtol=1e-4, atol=1e-5)
    assert "f = max(width, height)" in str(out["camera_source"])
    wrist = skeleton.get("h36m_17").index("right_wrist")
    assert out["filled"][0, 3, wrist] and out["filled"].sum() == 1
    assert out["confidence"][0, 3, wrist] == 0 and out["confidence"][0, 2, wrist] == pytest.approx(0.9)
    with open(tmp_path / "out.json") as f:
        saved = json.load(f)
    np.testing.assert_allclose(np.asarray(saved["poses_3d"]), out["poses_3d"], rtol=1e-6)
    assert saved["units"] == "metres" and saved["joint_names"] == list(H36M_NAMES)
    assert saved["frames"] == list(range(frames))


def _exported(tmp_path, name, cfg_name, seed, **metadata):
    cfg = temporal.variant(cfg_name)
    variables = jax.tree.map(np.asarray, temporal.init(jax.random.key(seed), cfg))
    export.export_lifter(variables, cfg, tmp_path / name, platforms=("cpu",),
                         metadata=metadata or None)
    return jax.jit(lambda x: temporal.apply(variables, x, config=cfg, train=False)[0])


def test_any_camera_is_normalised_to_the_training_focal_length(tmp_path):
    """A model that records its training cameras' screen focal length sees the same
    input for the same person filmed by a portrait phone (f 1680 px, 1088 x 1920) and a
    landscape camera (f 1145 px, 1000 x 1000): (uv - c) / f * screen_focal."""
    reference = _exported(tmp_path, "m", "tiny_9f", 6, screen_focal=2.29)
    points = _coco_motion(9).astype(np.float64)
    results = []
    for w, h, f in ((1088, 1920, 1680.0), (1000, 1000, 1145.0)):
        c = np.array([w / 2, h / 2])
        px = points[..., :2] / points[..., 2:] * f + c
        np.savez(tmp_path / f"kp{w}.npz", keypoints=px, layout=np.asarray("coco_17"),
                 image_size=np.array([w, h]))
        out = lift.run(str(tmp_path / "m"), str(tmp_path / f"kp{w}.npz"),
                       str(tmp_path / f"o{w}.npz"), focal_length=f)
        h36m = skeleton.convert(px, "coco_17", "h36m_17")
        x = ((h36m - c) / f * 2.29).astype(np.float32)[None]
        np.testing.assert_allclose(out["poses_3d"], np.asarray(reference(x)), rtol=1e-4,
                                   atol=1e-5)
        results.append(out["poses_3d"])
    np.testing.assert_allclose(results[0], results[1], atol=1e-4)


def test_calibrated_camera_gives_world_frame_poses_and_a_render(tmp_path):
    from jpose import calibration

    _exported(tmp_path, "pose", "tiny_9f", 7, screen_focal=2.29)
    _exported(tmp_path, "traj", "tiny_trajectory_9f", 8, screen_focal=2.29)
    rot = np.asarray(camera.axis_angle_to_matrix(np.array([0.1, -0.4, 0.05])), np.float64)
    cams = camera.CameraParams(
        rotation=rot[None], centre=np.array([[1.0, -2.0, 1.5]]),
        focal=np.array([[1000.0, 1000.0]]), principal=np.array([[320.0, 240.0]]),
        radial=np.zeros((1, 3)), tangential=np.zeros((1, 2)),
        image_size=np.array([[640.0, 480.0]]))
    calibration.write_calibration(tmp_path / "calib.toml", cams, names=["cam_a"],
                                  units="m")
    px = np.random.default_rng(9).uniform(100, 500, (10, 17, 2))
    np.savez(tmp_path / "kp.npz", keypoints=px, layout=np.asarray("h36m_17"))
    out = lift.run(str(tmp_path / "pose"), str(tmp_path / "kp.npz"), str(tmp_path / "o.npz"),
                   trajectory_model_dir=str(tmp_path / "traj"),
                   calibration_path=str(tmp_path / "calib.toml"), camera_name="cam_a",
                   render=str(tmp_path / "r.gif"))
    assert "calibration" in str(out["camera_source"]) and "cam_a" in str(out["camera_source"])
    world = np.einsum("ij,ntkj->ntki", rot.T, out["poses_camera"].astype(np.float64)) + [
        1.0, -2.0, 1.5]
    np.testing.assert_allclose(out["poses_world"], world, atol=1e-5)
    from PIL import Image
    with Image.open(tmp_path / "r.gif") as gif:
        assert gif.n_frames == 10
