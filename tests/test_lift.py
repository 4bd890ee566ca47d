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

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_spec = importlib.util.spec_from_file_location("lift", os.path.join(REPO, "launch", "lift.py"))
lift = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(lift)

H36M_NAMES = skeleton.get("h36m_17").joint_names


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    cfg = temporal.variant("tiny_9f")
    variables = jax.tree.map(np.asarray, temporal.init(jax.random.key(3), cfg))
    rng = np.random.default_rng(0)
    for stats in variables["batch_stats"].values():
        stats["mean"] = rng.normal(0.0, 0.3, stats["mean"].shape).astype(np.float32)
        stats["var"] = np.exp(rng.normal(0.0, 0.3, stats["var"].shape)).astype(np.float32)
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
    with pytest.raises(ValueError, match="missing key 'keypoints'"):
        run("nokey.npz", image_size=(10, 10))
    np.savez(tmp_path / "shape.npz", keypoints=np.zeros((4, 16, 2)))
    with pytest.raises(ValueError, match=r"\(T, J=17, 2\)"):
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
    (tmp_path / "dup.json").write_text(json.dumps(
        [{"image_id": 1, "keypoints": [1.0] * 51, "score": 1.0}] * 2))
    with pytest.raises(ValueError, match="image_id 1 appears more than once"):
        run("dup.json", image_size=(10, 10))
    (tmp_path / "short.json").write_text(json.dumps([{"image_id": 1, "keypoints": [1.0] * 50}]))
    with pytest.raises(ValueError, match="51 numbers"):
        run("short.json", image_size=(10, 10))
    (tmp_path / "noid.json").write_text(json.dumps([{"keypoints": [1.0] * 51}]))
    with pytest.raises(ValueError, match="missing key 'image_id'"):
        run("noid.json", image_size=(10, 10))
    with pytest.raises(ValueError, match="coco_17"):
        run("dup.json", layout="h36m_17", image_size=(10, 10))
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
