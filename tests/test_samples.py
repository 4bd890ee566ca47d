"""Tests for jpose.datasets.samples (DeepMimic clips) and jpose.datasets.synthetic."""

import json
import os
import sys

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from jpose import skeleton
from jpose.datasets import samples, synthetic

J = {n: i for i, n in enumerate(samples.DEEPMIMIC_JOINT_NAMES)}

# Joint origins copied by hand from pybullet_data/humanoid/humanoid.urdf (4x scale), in
# file-order of the motion data, for the independent scipy forward kinematics below.
_URDF = {
    "chest": ("root", (0.0, 0.944604, 0.0)),
    "neck": ("chest", (0.0, 0.895576, 0.0)),
    "head": ("neck", (0.0, 0.7, 0.0)),  # neck link's collision sphere origin
    "right_hip": ("root", (0.0, 0.0, 0.339548)),
    "right_knee": ("right_hip", (0.0, -1.686184, 0.0)),
    "right_ankle": ("right_knee", (0.0, -1.639480, 0.0)),
    "right_shoulder": ("chest", (-0.0962, 0.974, 0.73244)),
    "right_elbow": ("right_shoulder", (0.0, -1.099152, 0.0)),
    "right_wrist": ("right_elbow", (0.0, -1.035788, 0.0)),
    "left_hip": ("root", (0.0, 0.0, -0.339548)),
    "left_knee": ("left_hip", (0.0, -1.686184, 0.0)),
    "left_ankle": ("left_knee", (0.0, -1.639480, 0.0)),
    "left_shoulder": ("chest", (-0.0962, 0.974, -0.73244)),
    "left_elbow": ("left_shoulder", (0.0, -1.099152, 0.0)),
    "left_wrist": ("left_elbow", (0.0, -1.035788, 0.0)),
}
HEAD_RADIUS = 0.41 * 0.25  # neck link's collision sphere radius, metres


def _wheel_root():
    pybullet_data = pytest.importorskip("pybullet_data")
    return pybullet_data.getDataPath()


def _raw_frames(name):
    path = os.path.join(_wheel_root(), "data", "motions", f"humanoid3d_{name}.txt")
    with open(path) as fh:
        return json.load(fh)


def _bone_lengths(positions):
    parents = np.array(synthetic.DEEPMIMIC_TREE.parents[1:])
    p = positions.astype(np.float64)
    return np.linalg.norm(p[:, 1:] - p[:, parents], axis=-1)


# ----------------------------------------------------------------------- layout


def test_joint_names_and_tree_match_skeleton_layout():
    layout = skeleton.get("deepmimic_16")
    assert samples.DEEPMIMIC_JOINT_NAMES == layout.joint_names
    assert synthetic.DEEPMIMIC_TREE.parents == layout.parents


def test_hardcoded_offsets_equal_urdf():
    root = _wheel_root()
    tree = samples.read_urdf_tree(os.path.join(root, "humanoid", "humanoid.urdf"))
    assert tree.joint_names == synthetic.DEEPMIMIC_TREE.joint_names
    assert tree.parents == synthetic.DEEPMIMIC_TREE.parents
    assert tree.kinds == synthetic.DEEPMIMIC_TREE.kinds
    np.testing.assert_allclose(tree.offsets, synthetic.DEEPMIMIC_TREE.offsets, atol=1e-12)
    np.testing.assert_allclose(tree.axes, synthetic.DEEPMIMIC_TREE.axes, atol=1e-12)
    # Revolute joints are exactly the knees and elbows, about local z.
    revolute = {n for n, k in zip(tree.joint_names, tree.kinds) if k == "revolute"}
    assert revolute == {"right_knee", "left_knee", "right_elbow", "left_elbow"}
    # Independent of the module: the hand-copied URDF numbers, times 0.25.
    for name, (_, xyz) in _URDF.items():
        np.testing.assert_allclose(tree.offsets[J[name]], 0.25 * np.array(xyz), atol=1e-12)


def test_yup_to_zup_is_proper_rotation():
    m = samples.YUP_TO_ZUP
    np.testing.assert_allclose(m @ m.T, np.eye(3), atol=0)
    assert np.linalg.det(m) == pytest.approx(1.0)
    # (x, y, z)_zup = (x, -z, y)_yup
    np.testing.assert_array_equal(m @ np.array([1.0, 2.0, 3.0]), [1.0, -3.0, 2.0])


# ------------------------------------------------------------------ every clip


@pytest.mark.parametrize("name", samples.DEEPMIMIC_CLIPS)
def test_clip_bones_rigid_and_rate(name):
    raw = _raw_frames(name)
    clip = samples.load_deepmimic_clip(name)
    frames = np.asarray(raw["Frames"])
    assert clip.positions.shape == (frames.shape[0], 16, 3)
    assert clip.positions.dtype == np.float32
    assert np.all(np.isfinite(clip.positions))
    assert clip.joint_names == samples.DEEPMIMIC_JOINT_NAMES
    assert clip.name == name
    assert clip.loop == (raw["Loop"] == "wrap")
    # Frame rate = 1 / the file's (first positive) frame duration.
    duration = frames[frames[:, 0] > 0, 0][0]
    assert clip.fps == pytest.approx(1.0 / duration, rel=1e-9)
    lengths = _bone_lengths(clip.positions)
    assert np.ptp(lengths, axis=0).max() < 1e-5
    # ... and equal the URDF bone lengths (hand-copied numbers x 0.25).
    expected = [
        0.25 * np.linalg.norm(_URDF[n][1]) for n in samples.DEEPMIMIC_JOINT_NAMES[1:]
    ]
    np.testing.assert_allclose(lengths[0], expected, atol=1e-5)


def test_nominal_frame_rates():
    _wheel_root()
    rates = {n: samples.load_deepmimic_clip(n).fps for n in ("walk", "run", "spin", "backflip", "jump")}
    assert rates["walk"] == pytest.approx(30.0, abs=0.01)
    assert rates["run"] == pytest.approx(30.0, abs=0.01)
    assert rates["spin"] == pytest.approx(24.0, abs=0.01)
    assert rates["backflip"] == pytest.approx(16.0, abs=0.01)
    assert rates["jump"] == pytest.approx(60.0, abs=0.01)


# -------------------------------------------------------------------- the walk


@pytest.fixture(scope="module")
def walk():
    _wheel_root()
    return samples.load_deepmimic_clip("walk").positions.astype(np.float64)


def test_walk_standing_height(walk):
    # Top of the head above the ground: head-centre height plus the head-sphere radius.
    top = walk[:, J["head"], 2].max() + HEAD_RADIUS
    assert 1.55 < top < 1.75
    # Standing height from the bone chain (ankle..head centre) + radius + 5 cm of foot.
    chain = sum(
        0.25 * abs(_URDF[n][1][1]) for n in ("right_ankle", "right_knee", "chest", "neck", "head")
    )
    assert 1.6 < chain + HEAD_RADIUS + 0.05 < 1.7


def test_walk_feet_on_ground_and_z_up(walk):
    for ankle in ("right_ankle", "left_ankle"):
        z = walk[:, J[ankle], 2]
        assert 0.0 < z.min() < 0.08  # each foot touches the ground at some frame
    head_above = walk[:, J["head"], 2] > walk[:, J["pelvis"], 2] + 0.4
    assert head_above.mean() > 0.95
    pelvis_z = walk[:, J["pelvis"], 2]
    assert 0.75 < pelvis_z.mean() < 0.95


def test_walk_left_right_and_knees(walk):
    up = np.array([0.0, 0.0, 1.0])
    travel = walk[-1, J["pelvis"]] - walk[0, J["pelvis"]]
    travel[2] = 0.0
    assert np.linalg.norm(travel) > 0.5  # the walk travels
    forward = travel / np.linalg.norm(travel)
    right = np.cross(forward, up)
    across = walk[:, J["right_hip"]] - walk[:, J["left_hip"]]
    assert np.all(across @ right > 0.1)  # hips 17 cm apart, right on the right
    shoulders = walk[:, J["right_shoulder"]] - walk[:, J["left_shoulder"]]
    assert np.all(shoulders @ right > 0.2)
    # Knees bend forward: the knee lies in front of the hip-ankle segment.
    for side in ("right", "left"):
        hip, knee, ankle = (walk[:, J[f"{side}_{k}"]] for k in ("hip", "knee", "ankle"))
        mid = 0.5 * (hip + ankle)
        assert np.mean((knee - mid) @ forward > -0.01) > 0.9


# ------------------------------------------------------- independent FK (scipy)


def _scipy_fk(frame):
    """Z-up world joint positions of one raw 44-number frame, via scipy Rotations."""
    frame = np.asarray(frame, dtype=np.float64)
    pos = {"root": frame[1:4]}
    rot = {"root": Rotation.from_quat(frame[4:8], scalar_first=True)}
    col = 8
    local = {}
    for name, kind in (
        ("chest", 4), ("neck", 4), ("right_hip", 4), ("right_knee", 1), ("right_ankle", 4),
        ("right_shoulder", 4), ("right_elbow", 1), ("left_hip", 4), ("left_knee", 1),
        ("left_ankle", 4), ("left_shoulder", 4), ("left_elbow", 1),
    ):
        if kind == 4:
            local[name] = Rotation.from_quat(frame[col : col + 4], scalar_first=True)
        else:
            local[name] = Rotation.from_rotvec([0.0, 0.0, frame[col]])
        col += kind
    assert col == 44
    for name, (parent, xyz) in _URDF.items():  # parents precede children in _URDF
        pos[name] = pos[parent] + rot[parent].apply(0.25 * np.array(xyz))
        rot[name] = rot[parent] * local.get(name, Rotation.identity())
    to_zup = Rotation.from_euler("x", 90, degrees=True)
    names = ["root" if n == "pelvis" else n for n in samples.DEEPMIMIC_JOINT_NAMES]
    return to_zup.apply(np.stack([pos[n] for n in names]))


@pytest.mark.parametrize("name,frame", [("walk", 10), ("backflip", 14), ("roll", 60), ("cartwheel", 80)])
def test_forward_kinematics_matches_scipy(name, frame):
    raw = _raw_frames(name)
    expected = _scipy_fk(raw["Frames"][frame])
    clip = samples.load_deepmimic_clip(name)
    np.testing.assert_allclose(clip.positions[frame], expected, atol=2e-6)


def test_forward_kinematics_batch_polymorphic():
    rng = np.random.default_rng(0)
    q = rng.normal(size=(2, 3, 16, 4))
    q /= np.linalg.norm(q, axis=-1, keepdims=True)
    root = rng.normal(size=(2, 3, 3))
    tree = synthetic.DEEPMIMIC_TREE
    out = samples.forward_kinematics(root, q, offsets=np.asarray(tree.offsets), parents=tree.parents)
    assert out.shape == (2, 3, 16, 3)
    one = samples.forward_kinematics(root[1, 2], q[1, 2], offsets=np.asarray(tree.offsets), parents=tree.parents)
    np.testing.assert_allclose(out[1, 2], one, atol=1e-12)
    with pytest.raises(ValueError, match="rotations"):
        samples.forward_kinematics(root, q[..., :3], offsets=np.asarray(tree.offsets), parents=tree.parents)


def test_quaternion_to_matrix_matches_scipy():
    q = np.random.default_rng(1).normal(size=(5, 4))
    q /= np.linalg.norm(q, axis=-1, keepdims=True)
    expected = Rotation.from_quat(q, scalar_first=True).as_matrix()
    np.testing.assert_allclose(samples.quaternion_to_matrix(q), expected, atol=1e-12)


# ------------------------------------------------------------------- errors


def test_unknown_clip_lists_valid_names():
    with pytest.raises(ValueError, match="walk") as info:
        samples.load_deepmimic_clip("moonwalk")
    assert "moonwalk" in str(info.value) and "backflip" in str(info.value)


def test_malformed_files(tmp_path):
    tree = synthetic.DEEPMIMIC_TREE
    missing = tmp_path / "humanoid3d_bad.txt"
    missing.write_text(json.dumps({"Loop": "wrap"}))
    with pytest.raises(ValueError, match=r"humanoid3d_bad\.txt.*'Frames'"):
        samples.read_deepmimic_motion(str(missing), tree=tree)
    short = tmp_path / "humanoid3d_short.txt"
    short.write_text(json.dumps({"Loop": "none", "Frames": [[0.1] * 44, [0.1] * 43]}))
    with pytest.raises(ValueError, match=r"humanoid3d_short\.txt.*'Frames'\[1\].*44"):
        samples.read_deepmimic_motion(str(short), tree=tree)
    garbage = tmp_path / "humanoid3d_garbage.txt"
    garbage.write_text("not json")
    with pytest.raises(ValueError, match="humanoid3d_garbage"):
        samples.read_deepmimic_motion(str(garbage), tree=tree)


def test_minimal_file_parses_and_normalises(tmp_path):
    frame = [0.05, 1.0, 0.9, 2.0] + [2.0, 0.0, 0.0, 0.0] + [1.0, 0, 0, 0] * 2 + [1.0, 0, 0, 0] + [0.5]
    frame += [1.0, 0, 0, 0] * 2 + [0.0] + [3.0, 0, 0, 0] + [0.0] + [1.0, 0, 0, 0] * 2 + [0.0]
    assert len(frame) == 44
    path = tmp_path / "humanoid3d_tiny.txt"
    path.write_text(json.dumps({"Loop": "none", "Frames": [frame, frame]}))
    motion = samples.read_deepmimic_motion(str(path), tree=synthetic.DEEPMIMIC_TREE)
    assert motion.name == "tiny" and motion.fps == pytest.approx(20.0) and not motion.loop
    np.testing.assert_allclose(np.linalg.norm(motion.rotations, axis=-1), 1.0, atol=1e-12)
    # Right knee angle 0.5 rad about z: quaternion (cos .25, 0, 0, sin .25).
    np.testing.assert_allclose(motion.rotations[0, J["right_knee"]], [np.cos(0.25), 0, 0, np.sin(0.25)])
    pos = samples.motion_positions(motion, tree=synthetic.DEEPMIMIC_TREE)
    # Identity root: pelvis at (1, -2, 0.9) in Z-up; head 0.236+0.224+0.175 m above it.
    np.testing.assert_allclose(pos[0, J["pelvis"]], [1.0, -2.0, 0.9])
    np.testing.assert_allclose(pos[0, J["head"]], [1.0, -2.0, 0.9 + 0.25 * (0.944604 + 0.895576 + 0.7)])
    # Right knee flexed by +0.5 rad about z: the shin points down and forward (+x).
    shin = pos[0, J["right_ankle"]] - pos[0, J["right_knee"]]
    np.testing.assert_allclose(shin, 0.25 * 1.63948 * np.array([np.sin(0.5), 0.0, -np.cos(0.5)]), atol=1e-12)


def test_missing_wheel_names_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "pybullet_data", None)  # makes the import fail
    with pytest.raises(ImportError, match=r"jpose\[samples\]") as info:
        samples.load_deepmimic_clip("walk")
    assert isinstance(info.value, ModuleNotFoundError)


# ------------------------------------------------------------------ synthetic


@pytest.mark.parametrize("action", synthetic.SYNTHETIC_ACTIONS)
def test_synthetic_rigid_grounded_upright(action):
    clip = synthetic.synthetic_clip(action, num_frames=80, fps=25.0, seed=7)
    pos = clip.positions.astype(np.float64)
    assert pos.shape == (80, 16, 3) and clip.positions.dtype == np.float32
    assert clip.fps == 25.0 and clip.name == action
    lengths = _bone_lengths(pos)
    expected = np.linalg.norm(np.asarray(synthetic.DEEPMIMIC_TREE.offsets)[1:], axis=-1)
    np.testing.assert_allclose(lengths, np.broadcast_to(expected[None], lengths.shape), atol=1e-5)
    ankles = pos[:, [J["right_ankle"], J["left_ankle"]], 2].min(axis=-1)
    np.testing.assert_allclose(ankles, synthetic.ANKLE_HEIGHT, atol=1e-6)
    assert np.all(pos[:, J["head"], 2] > pos[:, J["pelvis"], 2] + 0.3)
    across = pos[:, J["right_hip"]] - pos[:, J["left_hip"]]
    assert np.all(np.abs(across[:, 2]) < 0.1)  # hips roughly level


def test_synthetic_deterministic_and_varied():
    a = synthetic.synthetic_clip("walk", num_frames=30, seed=3).positions
    b = synthetic.synthetic_clip("walk", num_frames=30, seed=3).positions
    c = synthetic.synthetic_clip("walk", num_frames=30, seed=4).positions
    np.testing.assert_array_equal(a, b)
    assert np.abs(a - c).max() > 0.05
    g1 = synthetic.synthetic_motion("squat", num_frames=10, seed=np.random.default_rng(5))
    g2 = synthetic.synthetic_motion("squat", num_frames=10, seed=np.random.default_rng(5))
    np.testing.assert_array_equal(g1.rotations, g2.rotations)


def test_synthetic_walk_faces_travel_direction():
    pos = synthetic.synthetic_clip("walk", num_frames=100, fps=50.0, seed=11).positions.astype(np.float64)
    travel = pos[-1, J["pelvis"]] - pos[0, J["pelvis"]]
    travel[2] = 0.0
    speed = np.linalg.norm(travel) / (99 / 50.0)
    assert 0.7 < speed < 2.0
    forward = travel / np.linalg.norm(travel)
    right = np.cross(forward, [0.0, 0.0, 1.0])
    across = pos[:, J["right_hip"]] - pos[:, J["left_hip"]]
    assert np.all(across @ right > 0.1)


def test_synthetic_turn_curves_and_squat_descends():
    pos = synthetic.synthetic_clip("turn", num_frames=150, fps=50.0, seed=2).positions.astype(np.float64)
    pelvis = pos[:, J["pelvis"], :2]
    d0, d1 = pelvis[20] - pelvis[0], pelvis[-1] - pelvis[-21]
    cos = d0 @ d1 / (np.linalg.norm(d0) * np.linalg.norm(d1))
    assert cos < np.cos(0.5)  # heading changed by more than 0.5 rad over 2.6 s
    sq = synthetic.synthetic_clip("squat", num_frames=150, fps=50.0, seed=2).positions
    pz = sq[:, J["pelvis"], 2]
    assert pz.max() - pz.min() > 0.2
    jj = synthetic.synthetic_clip("jumping_jack", num_frames=100, fps=50.0, seed=2).positions
    assert np.any(jj[:, J["left_wrist"], 2] > jj[:, J["head"], 2])


def test_synthetic_bad_arguments():
    with pytest.raises(ValueError, match="action"):
        synthetic.synthetic_clip("moonwalk")
    with pytest.raises(ValueError, match="num_frames"):
        synthetic.synthetic_clip("walk", num_frames=0)
    with pytest.raises(ValueError, match="fps"):
        synthetic.synthetic_clip("walk", fps=-1.0)
