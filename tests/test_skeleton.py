"""Joint layouts against the published orders (../shared/DATASET_FORMATS.md, VideoPose3D)."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jpose import skeleton as sk

# VideoPose3D common/h36m_dataset.py: the 32-joint tree and its left/right lists.
VP3D_H36M_PARENTS = [-1, 0, 1, 2, 3, 4, 0, 6, 7, 8, 9, 0, 11, 12, 13, 14, 12, 16, 17, 18,
                                          19, 20, 19, 22, 12, 24, 25, 26, 27, 28, 27, 30]
VP3D_H36M_LEFT = [6, 7, 8, 9, 10, 16, 17, 18, 19, 20, 21, 22, 23]
VP3D_H36M_RIGHT = [1, 2, 3, 4, 5, 24, 25, 26, 27, 28, 29, 30, 31]
H36M_17_FROM_32 = [0, 1, 2, 3, 6, 7, 8, 12, 13, 14, 15, 17, 18, 19, 25, 26, 27]
# VideoPose3D's 17-joint tree after removing joints and re-parenting the shoulders.
VP3D_H36M17_PARENTS = [-1, 0, 1, 2, 0, 4, 5, 0, 7, 8, 9, 8, 11, 12, 8, 14, 15]
MPI_17_FROM_28 = [7, 5, 14, 15, 16, 9, 10, 11, 23, 24, 25, 18, 19, 20, 4, 3, 6]


def test_h36m_layouts_match_videopose3d():
    assert list(sk.H36M_32.parents) == VP3D_H36M_PARENTS
    assert list(sk.H36M_32.joints_left) == VP3D_H36M_LEFT
    assert list(sk.H36M_32.joints_right) == VP3D_H36M_RIGHT
    assert sk.H36M_17.joint_names == tuple(sk.H36M_32.joint_names[i] for i in H36M_17_FROM_32)
    assert list(sk.H36M_17.parents) == VP3D_H36M17_PARENTS
    assert list(sk.H36M_17.joints_left) == [4, 5, 6, 11, 12, 13]
    assert list(sk.H36M_17.joints_right) == [1, 2, 3, 14, 15, 16]


def test_mpi_inf_3dhp_test_layout_is_the_relevant_subset():
    names28 = sk.MPI_INF_3DHP_28.joint_names
    assert sk.MPI_INF_3DHP_17.joint_names == tuple(names28[i] for i in MPI_17_FROM_28)
    assert sk.MPI_INF_3DHP_17.root == 14 and sk.MPI_INF_3DHP_28.root == 4


@pytest.mark.parametrize("name,count,first,last", [
        ("mpii_16", 16, "right_ankle", "left_wrist"),
        ("coco_17", 17, "nose", "right_ankle"),
        ("lsp_14", 14, "right_ankle", "head_top"),
        ("penn_action_13", 13, "head", "right_ankle"),
        ("jhmdb_15", 15, "neck", "left_ankle"),
        ("deepmimic_16", 16, "pelvis", "right_wrist"),
])
def test_layout_sizes_and_orders(name, count, first, last):
    s = sk.get(name)
    assert s.num_joints == count
    assert s.joint_names[0] == first and s.joint_names[-1] == last


def test_flip_permutation_is_an_involution_swapping_named_pairs():
    for s in sk.LAYOUTS.values():
        perm = np.array(s.flip_permutation)
        np.testing.assert_array_equal(perm[perm], np.arange(s.num_joints))
        for i, j in enumerate(perm):
            a, b = s.joint_names[i], s.joint_names[j]
            if a.startswith("left_"):
                assert b == "right_" + a[5:]
            elif not a.startswith("right_"):
                assert i == j


def test_length_invariant_bones_are_the_eleven_of_li_et_al():
    bones = sk.H36M_17.bone_subset("length_invariant")
    assert len(bones) == 11
    # (child, parent) in h36m_17 indices, written out by hand.
    assert set(bones) == {(12, 11), (15, 14), (13, 12), (16, 15), (5, 4), (2, 1), (6, 5),
                                                (3, 2), (4, 0), (1, 0), (10, 9)}
    # Layouts without a pelvis or head keep only the bones they have.
    assert len(sk.LSP_14.bone_subset("length_invariant")) == 8
    assert len(sk.MPI_INF_3DHP_17.bone_subset("length_invariant")) == 11
    with pytest.raises(KeyError, match="no bone subset"):
        sk.H36M_17.bone_subset("nonexistent")


def test_mpii_length_invariant_bones_are_the_eleven_of_li_et_al():
    """Li et al. (ICCV 2019) Eq. 5 on MPII: chin -> head top is upper_neck -> head_top."""
    s = sk.MPII_16
    names = dict(s.bone_subsets)["length_invariant"]
    assert set(names) == {
        ("left_shoulder", "left_elbow"), ("right_shoulder", "right_elbow"),
        ("left_elbow", "left_wrist"), ("right_elbow", "right_wrist"),
        ("left_hip", "left_knee"), ("right_hip", "right_knee"),
        ("left_knee", "left_ankle"), ("right_knee", "right_ankle"),
        ("pelvis", "left_hip"), ("pelvis", "right_hip"),
        ("upper_neck", "head_top"),
    }
    bones = s.bone_subset("length_invariant")
    assert len(bones) == 11
    # (child, parent) in mpii_16 indices (0 r_ankle, 1 r_knee, 2 r_hip, 3 l_hip, 4 l_knee,
    # 5 l_ankle, 6 pelvis, 7 thorax, 8 upper_neck, 9 head_top, 10 r_wrist, 11 r_elbow,
    # 12 r_shoulder, 13 l_shoulder, 14 l_elbow, 15 l_wrist), written out by hand.
    assert set(bones) == {(14, 13), (11, 12), (15, 14), (10, 11), (4, 3), (1, 2), (5, 4),
                          (0, 1), (3, 6), (2, 6), (9, 8)}
    # Every one is an edge of the MPII tree, as in Human3.6M-17.
    assert set(bones) <= set(s.bones)
    assert set(sk.H36M_17.bone_subset("length_invariant")) <= set(sk.H36M_17.bones)
    # The stand-in is used only where the canonical joint is missing: Human3.6M-17 keeps
    # head -> head_top, and the limbs subset is unchanged.
    assert ("head", "head_top") in dict(sk.H36M_17.bone_subsets)["length_invariant"]
    assert len(s.bone_subset("limbs")) == 8
    # Dropping upper_neck drops the bone in the new value only.
    assert len(s.remove_joints(["upper_neck"]).bone_subset("length_invariant")) == 10


def test_layouts_are_immutable_and_removal_returns_new_value():
    s = sk.get("h36m_17")
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.name = "x"  # type: ignore[misc]
    with pytest.raises(TypeError):
        sk.LAYOUTS["x"] = s  # type: ignore[index]
    smaller = s.remove_joints(["head_top", "spine"])
    assert smaller.num_joints == 15 and s.num_joints == 17
    # head_top's removal drops the head->head_top invariant bone in the new value only.
    assert len(smaller.bone_subset("length_invariant")) == 10
    assert len(s.bone_subset("length_invariant")) == 11
    # neck's parent was spine; it re-attaches to the nearest kept ancestor, the pelvis.
    assert smaller.parents[smaller.index("neck")] == smaller.index("pelvis")


def test_unknown_names_are_clear_errors():
    with pytest.raises(ValueError, match="Unknown joint layout 'h36m'"):
        sk.get("h36m")
    with pytest.raises(KeyError, match="not in layout 'coco_17'"):
        sk.COCO_17.index("pelvis")
    with pytest.raises(ValueError, match="cycle"):
        sk.Skeleton("bad", ("a", "b", "c"), (-1, 2, 1))


def test_conversion_copies_shared_joints_by_name():
    rng = np.random.default_rng(0)
    poses = rng.normal(size=(5, 32, 3))
    out = sk.convert(poses, "h36m_32", "h36m_17")
    np.testing.assert_array_equal(out, poses[:, H36M_17_FROM_32])
    mpi = rng.normal(size=(2, 28, 3))
    np.testing.assert_array_equal(
            sk.convert(mpi, "mpi_inf_3dhp_28", "mpi_inf_3dhp_17"), mpi[:, MPI_17_FROM_28])
    # MPI-INF-3DHP-17 -> Human3.6M-17 is the permutation used across the literature.
    mpi17 = rng.normal(size=(3, 17, 3))
    expected = mpi17[:, [14, 8, 9, 10, 11, 12, 13, 15, 1, 16, 0, 5, 6, 7, 2, 3, 4]]
    np.testing.assert_array_equal(sk.convert(mpi17, "mpi_inf_3dhp_17", "h36m_17"), expected)


def test_coco_to_h36m_synthesised_joints_by_hand():
    coco = np.zeros((17, 2))
    names = sk.COCO_17.joint_names
    coco[names.index("left_hip")] = [2.0, 10.0]
    coco[names.index("right_hip")] = [0.0, 10.0]
    coco[names.index("left_shoulder")] = [3.0, 4.0]
    coco[names.index("right_shoulder")] = [-1.0, 4.0]
    coco[names.index("nose")] = [1.0, 2.0]
    out = sk.convert(coco, "coco_17", "h36m_17")
    h = sk.H36M_17.index
    np.testing.assert_allclose(out[h("pelvis")], [1.0, 10.0])   # mid-hip
    np.testing.assert_allclose(out[h("neck")], [1.0, 4.0])      # mid-shoulder (thorax)
    np.testing.assert_allclose(out[h("spine")], [1.0, 7.0])     # halfway pelvis-thorax
    np.testing.assert_allclose(out[h("head")], [1.0, 2.0])      # nose
    # head + 0.7 (head - neck) = (1, 2) + 0.7 (0, -2)
    np.testing.assert_allclose(out[h("head_top")], [1.0, 0.6])
    _, synthesised = sk.conversion_matrix("coco_17", "h36m_17")
    assert [n for n, s in zip(sk.H36M_17.joint_names, synthesised) if s] == [
            "pelvis", "spine", "neck", "head", "head_top"]


def test_deepmimic_to_h36m_uses_chest_as_spine():
    poses = np.arange(16 * 3, dtype=np.float32).reshape(16, 3)
    out = sk.convert(poses, "deepmimic_16", "h36m_17")
    d = sk.DEEPMIMIC_16.index
    np.testing.assert_array_equal(out[sk.H36M_17.index("spine")], poses[d("chest")])
    np.testing.assert_array_equal(out[sk.H36M_17.index("neck")], poses[d("neck")])
    assert out.dtype == np.float32


def test_conversion_is_jax_differentiable_and_nan_local():
    poses = jnp.ones((2, 4, 17, 3), jnp.float32)
    out = jax.jit(lambda p: sk.convert(p, "coco_17", "h36m_17"))(poses)
    assert out.shape == (2, 4, 17, 3) and out.dtype == jnp.float32
    np.testing.assert_allclose(out, 1.0, rtol=1e-6)
    grad = jax.grad(lambda p: sk.convert(p, "coco_17", "h36m_17").sum())(poses)
    # Each COCO hip feeds: its own hip, pelvis (1/2), spine (1/4).
    np.testing.assert_allclose(grad[0, 0, sk.COCO_17.index("left_hip")], 1.75, rtol=1e-6)
    # A NaN in a joint no target uses (left_eye) must not spread.
    coco = np.ones((17, 3))
    coco[sk.COCO_17.index("left_eye")] = np.nan
    assert np.isfinite(sk.convert(coco, "coco_17", "h36m_17")).all()


def test_conversion_errors():
    with pytest.raises(ValueError, match=r"shape \(\.\.\., 17, C\)"):
        sk.convert(np.zeros((5, 16, 3)), "coco_17", "h36m_17")
    with pytest.raises(ValueError, match="Cannot convert.*left_eye"):
        sk.convert(np.zeros((17, 3)), "h36m_17", "coco_17")


def test_visibility_conversion_requires_all_inputs_visible():
    vis = np.ones(17, bool)
    vis[sk.COCO_17.index("left_hip")] = False
    out = sk.convert_visibility(vis, "coco_17", "h36m_17")
    h = sk.H36M_17.index
    assert not out[h("pelvis")] and not out[h("spine")] and not out[h("left_hip")]
    assert out[h("neck")] and out[h("right_hip")]


def test_bone_lengths_and_mirror():
    poses = np.zeros((17, 3))
    poses[sk.H36M_17.index("right_hip")] = [-0.1, 0.0, 0.0]
    poses[sk.H36M_17.index("right_knee")] = [-0.1, 0.4, 0.3]
    lengths = sk.bone_lengths(poses, "h36m_17")
    bones = sk.H36M_17.bones
    assert lengths[bones.index((1, 0))] == pytest.approx(0.1)
    assert lengths[bones.index((2, 1))] == pytest.approx(0.5)
    mirrored = sk.mirror(poses, "h36m_17")
    np.testing.assert_allclose(mirrored[sk.H36M_17.index("left_knee")], [0.1, 0.4, 0.3])
    np.testing.assert_allclose(sk.mirror(mirrored, "h36m_17"), poses)
    jm = sk.mirror(jnp.asarray(poses[None], jnp.float32), "h36m_17")
    np.testing.assert_allclose(jm[0], mirrored, atol=1e-7)


# --- 2D detector layouts (jpose.detections) -------------------------------------------

BODY25_ORDER = ["Nose", "Neck", "RShoulder", "RElbow", "RWrist", "LShoulder", "LElbow",
                "LWrist", "MidHip", "RHip", "RKnee", "RAnkle", "LHip", "LKnee", "LAnkle",
                "REye", "LEye", "REar", "LEar", "LBigToe", "LSmallToe", "LHeel", "RBigToe",
                "RSmallToe", "RHeel"]
BODY25B_ORDER = ["Nose", "LEye", "REye", "LEar", "REar", "LShoulder", "RShoulder", "LElbow",
                 "RElbow", "LWrist", "RWrist", "LHip", "RHip", "LKnee", "RKnee", "LAnkle",
                 "RAnkle", "UpperNeck", "HeadTop", "LBigToe", "LSmallToe", "LHeel",
                 "RBigToe", "RSmallToe", "RHeel"]
COCO18_ORDER = BODY25_ORDER[:8] + BODY25_ORDER[9:19]
HALPE26_ORDER = ["Nose", "LEye", "REye", "LEar", "REar", "LShoulder", "RShoulder", "LElbow",
                 "RElbow", "LWrist", "RWrist", "LHip", "RHip", "LKnee", "RKnee", "LAnkle",
                 "RAnkle", "Head", "Neck", "Hip", "LBigToe", "RBigToe", "LSmallToe",
                 "RSmallToe", "LHeel", "RHeel"]
MEDIAPIPE_ORDER = [
    "nose", "left_eye_inner", "left_eye", "left_eye_outer", "right_eye_inner", "right_eye",
    "right_eye_outer", "left_ear", "right_ear", "mouth_left", "mouth_right", "left_shoulder",
    "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_pinky",
    "right_pinky", "left_index", "right_index", "left_thumb", "right_thumb", "left_hip",
    "right_hip", "left_knee", "right_knee", "left_ankle", "right_ankle", "left_heel",
    "right_heel", "left_foot_index", "right_foot_index"]
# The tools' names, translated by hand to the canonical vocabulary.
TOOL_NAMES = {
    "Nose": "nose", "Neck": "neck", "MidHip": "pelvis", "Hip": "pelvis",
    "UpperNeck": "upper_neck", "HeadTop": "head_top", "Head": "head_top",
    "LEye": "left_eye", "REye": "right_eye", "LEar": "left_ear", "REar": "right_ear",
    "LShoulder": "left_shoulder", "RShoulder": "right_shoulder", "LElbow": "left_elbow",
    "RElbow": "right_elbow", "LWrist": "left_wrist", "RWrist": "right_wrist",
    "LHip": "left_hip", "RHip": "right_hip", "LKnee": "left_knee", "RKnee": "right_knee",
    "LAnkle": "left_ankle", "RAnkle": "right_ankle", "LBigToe": "left_big_toe",
    "RBigToe": "right_big_toe", "LSmallToe": "left_small_toe",
    "RSmallToe": "right_small_toe", "LHeel": "left_heel", "RHeel": "right_heel",
}


@pytest.mark.parametrize("layout,order", [
    ("openpose_body25", BODY25_ORDER), ("openpose_body25b", BODY25B_ORDER),
    ("openpose_coco18", COCO18_ORDER), ("halpe_26", HALPE26_ORDER),
])
def test_detector_layout_orders(layout, order):
    assert sk.get(layout).joint_names == tuple(TOOL_NAMES[n] for n in order)


def test_mediapipe_and_wholebody_orders():
    s = sk.MEDIAPIPE_33
    assert s.num_joints == 33
    renamed = {"mouth_left": "left_mouth", "mouth_right": "right_mouth",
               "left_pinky": "left_pinky_knuckle", "right_pinky": "right_pinky_knuckle",
               "left_index": "left_index_knuckle", "right_index": "right_index_knuckle",
               "left_thumb": "left_thumb_knuckle", "right_thumb": "right_thumb_knuckle"}
    assert s.joint_names == tuple(renamed.get(n, n) for n in MEDIAPIPE_ORDER)
    wb = sk.COCO_WHOLEBODY_23.joint_names
    assert wb[:17] == sk.COCO_17.joint_names
    assert wb[17:] == ("left_big_toe", "left_small_toe", "left_heel", "right_big_toe",
                       "right_small_toe", "right_heel")
    assert sk.HALPE_26.joint_names[:17] == sk.COCO_17.joint_names


def _pose(layout, values):
    """A (J, 2) pose of ``layout``: joints by name from ``values``, others at (50, 50)."""
    s = sk.get(layout)
    pose = np.full((s.num_joints, 2), 50.0)
    for name, xy in values.items():
        pose[s.index(name)] = xy
    return pose


# Shared hand-made joints (pixels, y down): hips at y=200, shoulders at y=100.
_BODY = {"left_hip": [120.0, 200.0], "right_hip": [80.0, 200.0],
         "left_shoulder": [130.0, 100.0], "right_shoulder": [70.0, 100.0],
         "nose": [100.0, 60.0], "left_wrist": [140.0, 180.0], "right_ankle": [82.0, 300.0]}


def _check_common(out):
    h = sk.H36M_17.index
    np.testing.assert_allclose(out[h("left_hip")], [120.0, 200.0])
    np.testing.assert_allclose(out[h("right_hip")], [80.0, 200.0])
    np.testing.assert_allclose(out[h("left_wrist")], [140.0, 180.0])
    np.testing.assert_allclose(out[h("right_ankle")], [82.0, 300.0])
    np.testing.assert_allclose(out[h("head")], [100.0, 60.0])  # the nose


def test_body25_to_h36m_uses_midhip_and_neck():
    pose = _pose("openpose_body25", {**_BODY, "pelvis": [101.0, 205.0],
                                     "neck": [99.0, 95.0]})
    out = sk.convert(pose, "openpose_body25", "h36m_17")
    h = sk.H36M_17.index
    _check_common(out)
    np.testing.assert_allclose(out[h("pelvis")], [101.0, 205.0])  # MidHip, not mid-hip
    np.testing.assert_allclose(out[h("neck")], [99.0, 95.0])      # Neck, not mid-shoulder
    np.testing.assert_allclose(out[h("spine")], [100.0, 150.0])   # halfway
    # head + 0.7 (head - neck) = (100, 60) + 0.7 (1, -35)
    np.testing.assert_allclose(out[h("head_top")], [100.7, 35.5])
    _, synth = sk.conversion_matrix("openpose_body25", "h36m_17")
    assert [n for n, s in zip(sk.H36M_17.joint_names, synth) if s] == [
        "spine", "head", "head_top"]


def test_body25b_to_h36m_keeps_head_top():
    pose = _pose("openpose_body25b", {**_BODY, "upper_neck": [100.0, 85.0],
                                      "head_top": [100.0, 20.0]})
    out = sk.convert(pose, "openpose_body25b", "h36m_17")
    h = sk.H36M_17.index
    _check_common(out)
    np.testing.assert_allclose(out[h("pelvis")], [100.0, 200.0])   # mid-hip
    np.testing.assert_allclose(out[h("neck")], [100.0, 100.0])     # mid-shoulder
    np.testing.assert_allclose(out[h("spine")], [100.0, 150.0])
    np.testing.assert_allclose(out[h("head_top")], [100.0, 20.0])  # HeadTop copied


def test_coco18_mediapipe_wholebody_to_h36m_synthesise_pelvis_neck_head_top():
    for layout, extra in [("openpose_coco18", {"neck": [100.0, 90.0]}),
                          ("mediapipe_33", {}), ("coco_wholebody_23", {})]:
        out = sk.convert(_pose(layout, {**_BODY, **extra}), layout, "h36m_17")
        h = sk.H36M_17.index
        _check_common(out)
        neck = extra.get("neck", [100.0, 100.0])  # OpenPose Neck, else mid-shoulder
        np.testing.assert_allclose(out[h("pelvis")], [100.0, 200.0])
        np.testing.assert_allclose(out[h("neck")], neck)
        np.testing.assert_allclose(out[h("spine")], (np.add(neck, [100.0, 200.0])) / 2)
        np.testing.assert_allclose(out[h("head_top")],
                                   1.7 * np.array([100.0, 60.0]) - 0.7 * np.array(neck))


def test_halpe26_to_h36m_and_mpi_inf_3dhp():
    pose = _pose("halpe_26", {**_BODY, "pelvis": [100.0, 204.0], "neck": [100.0, 96.0],
                              "head_top": [100.0, 22.0]})
    out = sk.convert(pose, "halpe_26", "h36m_17")
    h = sk.H36M_17.index
    _check_common(out)
    np.testing.assert_allclose(out[h("pelvis")], [100.0, 204.0])   # Hip
    np.testing.assert_allclose(out[h("neck")], [100.0, 96.0])      # Neck
    np.testing.assert_allclose(out[h("spine")], [100.0, 150.0])
    np.testing.assert_allclose(out[h("head_top")], [100.0, 22.0])  # Head (top)
    mpi = sk.convert(pose, "halpe_26", "mpi_inf_3dhp_17")
    m = sk.MPI_INF_3DHP_17.index
    np.testing.assert_allclose(mpi[m("head_top")], [100.0, 22.0])
    np.testing.assert_allclose(mpi[m("pelvis")], [100.0, 204.0])


def test_convert_confidence_takes_the_least_confident_source():
    conf = np.linspace(0.05, 0.85, 17)[None]  # coco_17, one frame
    out = sk.convert_confidence(conf, "coco_17", "h36m_17")
    h36m = sk.get("h36m_17")
    coco = sk.get("coco_17")
    # Pelvis = mid-hip: the lesser of the two hips; a copied joint keeps its own value.
    assert out[0, h36m.index("pelvis")] == min(conf[0, coco.index("left_hip")],
                                               conf[0, coco.index("right_hip")])
    assert out[0, h36m.index("left_knee")] == conf[0, coco.index("left_knee")]
    with pytest.raises(ValueError, match=r"\(\.\.\., 17\)"):
        sk.convert_confidence(conf[:, :5], "coco_17", "h36m_17")
