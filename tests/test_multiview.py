"""Tests for jpose.datasets.multiview (synthetic source; one small DeepMimic test)."""

import numpy as np
import pytest

from jpose import skeleton
from jpose.datasets import multiview as mv
from jpose.datasets import samples, synthetic

NOISE = 5.0
OUTLIERS = 0.06


@pytest.fixture(scope="module")
def ds():
    return mv.make_multiview_dataset(
        "synthetic",
        num_subjects=4,
        num_cameras=3,
        synthetic_frames=60,
        noise_px=NOISE,
        outlier_rate=OUTLIERS,
        seed=3,
    )


@pytest.fixture(scope="module")
def stacked(ds):
    return ds.stack()


def _h36m_project(points_cam, cam):
    """Human3.6M ProjectPointRadial.m, in float64 NumPy (independent reference)."""
    x = points_cam[..., :2] / points_cam[..., 2:3]
    r2 = np.sum(x * x, axis=-1)
    k = np.asarray(cam.radial, np.float64)
    p = np.asarray(cam.tangential, np.float64)
    radial = 1 + k[0] * r2 + k[1] * r2**2 + k[2] * r2**3
    tan = p[0] * x[..., 1] + p[1] * x[..., 0]
    xxx = x * (radial + tan)[..., None] + np.stack([p[1] * r2, p[0] * r2], axis=-1)
    return np.asarray(cam.focal, np.float64) * xxx + np.asarray(cam.principal, np.float64)


# ----------------------------------------------------------------- geometry


def test_camera_frame_and_projection_match_numpy(ds):
    for rec in ds.sequences[::5]:
        rot = np.asarray(rec.camera.rotation, np.float64)
        centre = np.asarray(rec.camera.centre, np.float64)
        world = rec.positions_world.astype(np.float64)
        cam = np.einsum("ab,fjb->fja", rot, world - centre)
        np.testing.assert_allclose(rec.positions_camera, cam, atol=1e-5)
        np.testing.assert_allclose(rec.keypoints_clean, _h36m_project(cam, rec.camera), atol=5e-3)


def test_rig_is_human36m_like(ds):
    cams = ds.cameras
    assert cams.rotation.shape == (3, 3, 3)
    horizontal = np.linalg.norm(cams.centre[:, :2], axis=-1)
    assert np.all((horizontal > 4.99) & (horizontal < 6.01))
    assert np.all((cams.centre[:, 2] > 1.49) & (cams.centre[:, 2] < 1.81))
    np.testing.assert_allclose(cams.focal, 1145.0, atol=5.01)
    np.testing.assert_allclose(cams.principal, 500.0, atol=10.01)
    np.testing.assert_array_equal(cams.image_size, np.full((3, 2), 1000.0))
    for i in range(3):
        r = cams.rotation[i].astype(np.float64)
        np.testing.assert_allclose(r @ r.T, np.eye(3), atol=1e-5)
        # Looks at (0, 0, 1): that point lies on the optical axis (camera x = y = 0).
        target = r @ (np.array([0.0, 0.0, 1.0]) - cams.centre[i])
        assert target[2] > 4.0 and np.abs(target[:2]).max() < 1e-4
        # No roll: world up maps to image up (camera -y).
        assert (r @ np.array([0.0, 0.0, 1.0]))[1] < -0.9
    # Spread in azimuth: roughly evenly spaced (120 +- 20 degrees apart).
    az = np.sort(np.arctan2(cams.centre[:, 1], cams.centre[:, 0]))
    gaps = np.diff(np.concatenate([az, az[:1] + 2 * np.pi]))
    assert np.all(np.abs(np.degrees(gaps) - 120.0) < 20.5)


def test_clean_keypoints_inside_image(stacked):
    kp = stacked["keypoints_clean"]
    assert np.all(kp >= 0) and np.all(kp <= 1000)
    assert np.all(stacked["visible"])
    assert np.all(stacked["positions_camera"][..., 2] > 3.0)


# -------------------------------------------------------------------- noise


def test_noise_statistics(ds, stacked):
    err = (stacked["keypoints"] - stacked["keypoints_clean"]).astype(np.float64)
    outlier = stacked["outlier"]
    assert abs(outlier.mean() - OUTLIERS) < 0.01
    weights = {"left_wrist": 1.5, "right_ankle": 1.5, "left_knee": 1.2, "head_top": 1.2, "pelvis": 1.0, "neck": 1.0}
    for name, w in weights.items():
        j = ds.joint_names.index(name)
        e = err[:, j][~outlier[:, j]]
        np.testing.assert_allclose(e.std(axis=0), NOISE * w, rtol=0.12)
        assert np.all(np.abs(e.mean(axis=0)) < 0.25 * NOISE * w)
    # Temporal correlation: lag-1 autocorrelation = jitter_fraction * exp(-1 / (0.2 s * 50 Hz)).
    rec = [r for r in ds.sequences if r.fps == 50.0]
    a, b = [], []
    for r in rec:
        e = (r.keypoints - r.keypoints_clean).astype(np.float64)
        ok = ~(r.outlier[1:] | r.outlier[:-1])
        a.append(e[1:][ok].ravel())
        b.append(e[:-1][ok].ravel())
    corr = np.corrcoef(np.concatenate(a), np.concatenate(b))[0, 1]
    assert corr == pytest.approx(0.5 * np.exp(-0.1), abs=0.06)


def test_outliers_are_gross_and_low_confidence(stacked):
    err = np.linalg.norm(stacked["keypoints"] - stacked["keypoints_clean"], axis=-1)
    outlier, conf = stacked["outlier"], stacked["confidence"]
    assert np.all((conf >= 0) & (conf <= 1))
    assert err[outlier].min() >= 30.0 - 1e-3  # outlier_min_px
    assert conf[outlier].mean() < conf[~outlier].mean() - 0.4
    assert conf[~outlier].mean() > 0.75
    # Some miscalibration: ~10% of outliers are confidently wrong.
    confident = (conf[outlier] > 0.5).mean()
    assert 0.03 < confident < 0.2
    # Confidence falls with the error among non-outliers too (rank correlation).
    e, c = err[~outlier], conf[~outlier]
    rank = lambda v: np.argsort(np.argsort(v))  # noqa: E731
    assert np.corrcoef(rank(e), rank(c))[0, 1] < -0.3


def test_zero_noise_gives_clean_keypoints():
    d = mv.make_multiview_dataset(
        "synthetic", num_subjects=3, num_cameras=2, synthetic_frames=10, actions=("walk",),
        noise_px=0.0, outlier_rate=0.0, seed=1,
    )
    for r in d.sequences:
        np.testing.assert_array_equal(r.keypoints, r.keypoints_clean)
        assert not r.outlier.any()


def test_swap_outliers_use_mirror_joint():
    rng = np.random.default_rng(0)
    names = skeleton.get("h36m_17").joint_names
    perm = skeleton.get("h36m_17").flip_permutation
    clean = rng.uniform(0, 1000, size=(200, 17, 2)).astype(np.float32)
    kp, conf, outl = mv.detect(
        clean, joint_names=names, flip_permutation=perm, fps=50.0,
        rng=rng, noise_px=0.0, outlier_rate=0.5,
    )
    swapped = np.all(kp == clean[:, perm], axis=-1) & (np.asarray(perm) != np.arange(17))[None]
    assert np.all(outl[swapped])
    assert 0.1 < swapped.sum() / outl.sum() < 0.6  # about half the paired-joint outliers
    np.testing.assert_array_equal(kp[~outl], clean[~outl])


# ---------------------------------------------------------------- subjects


def test_bone_lengths_constant_per_subject_and_differ(ds):
    skel = skeleton.get(ds.layout)
    means = {}
    for subject in ds.subjects:
        recs = ds.select(subjects=[subject], cameras=[0])
        lengths = np.concatenate(
            [skeleton.bone_lengths(r.positions_world.astype(np.float64), skel) for r in recs]
        )
        assert np.ptp(lengths, axis=0).max() < 1e-4
        means[subject] = lengths.mean(axis=0)
    subjects = list(means)
    for i in range(len(subjects)):
        for k in range(i + 1, len(subjects)):
            assert np.abs(means[subjects[i]] - means[subjects[k]]).max() > 0.005
    # The scale factors are those recorded: S2's thigh / the URDF thigh.
    thigh = np.linalg.norm(synthetic.DEEPMIMIC_TREE.offsets[samples.DEEPMIMIC_JOINT_NAMES.index("left_knee")])
    b = skel.bones.index((skel.index("left_knee"), skel.index("left_hip")))
    expected = ds.bone_scales[1, samples.DEEPMIMIC_JOINT_NAMES.index("left_knee")] * thigh
    assert means["S2"][b] == pytest.approx(expected, abs=1e-5)
    # Symmetric: left and right thighs and forearms equal.
    for joint, parent in (("knee", "hip"), ("wrist", "elbow")):
        bl = skel.bones.index((skel.index(f"left_{joint}"), skel.index(f"left_{parent}")))
        br = skel.bones.index((skel.index(f"right_{joint}"), skel.index(f"right_{parent}")))
        assert means["S3"][bl] == pytest.approx(means["S3"][br], abs=1e-5)


def test_feet_on_floor_and_upright(stacked, ds):
    world = stacked["positions_world"]
    ankles = world[:, [ds.joint_names.index("left_ankle"), ds.joint_names.index("right_ankle")], 2]
    assert 0.0 < ankles.min() and ankles.min(axis=1).max() < 0.12
    head = world[:, ds.joint_names.index("head"), 2]
    pelvis = world[:, ds.joint_names.index("pelvis"), 2]
    assert np.all(head > pelvis)


def test_views_are_frame_aligned(ds):
    views = ds.views("S2", "walk")
    assert [v.camera_index for v in views] == [0, 1, 2]
    for v in views[1:]:
        np.testing.assert_array_equal(v.positions_world, views[0].positions_world)


# ------------------------------------------------------------------- splits


def test_default_splits(ds):
    assert dict(ds.splits) == {"labelled": ("S1",), "unlabelled": ("S2", "S3"), "test": ("S4",)}
    seen = set()
    for name in mv.SPLITS:
        keys = {(r.subject, r.action, r.camera_index) for r in ds.split(name)}
        assert {r.subject for r in ds.split(name)} == set(ds.split_subjects(name))
        assert not keys & seen
        seen |= keys
    assert len(seen) == len(ds.sequences) == 4 * 6 * 3
    # Five subjects: S1 | S2-S4 | S5; seven: S1 | S2-S5 | S6, S7 (Human3.6M-like 1:4:2).
    assert mv._default_splits(("S1", "S2", "S3", "S4", "S5"))[2] == ("test", ("S5",))
    seven = dict(mv._default_splits(tuple(f"S{i}" for i in range(1, 8))))
    assert seven["unlabelled"] == ("S2", "S3", "S4", "S5") and seven["test"] == ("S6", "S7")


def test_held_out_cameras_and_actions():
    d = mv.make_multiview_dataset(
        "synthetic", num_subjects=3, num_cameras=4, synthetic_frames=8,
        held_out_cameras=(3,), held_out_actions=("squat", "wave"), seed=0,
    )
    test = d.split("test")
    assert {r.camera_index for r in test} == {3}
    assert {r.action for r in test} == {"squat", "wave"}
    assert {r.subject for r in test} == {"S3"}
    for name in ("labelled", "unlabelled"):
        recs = d.split(name)
        assert recs and all(r.camera_index != 3 and r.action not in ("squat", "wave") for r in recs)
    with pytest.raises(ValueError, match="split"):
        d.split("validation")


def test_custom_splits_and_stack(ds):
    d = mv.make_multiview_dataset(
        "synthetic", num_subjects=3, num_cameras=2, synthetic_frames=12, actions=("walk", "squat"),
        splits=(("labelled", ("S2",)), ("unlabelled", ("S1",)), ("test", ("S3",))), seed=0,
    )
    assert d.split_subjects("labelled") == ("S2",)
    st = d.stack("unlabelled")
    assert st["keypoints"].shape == (2 * 2 * 12, 17, 2)
    assert set(st["subject"].tolist()) == {"S1"}
    np.testing.assert_array_equal(st["frame"][:12], np.arange(12))
    np.testing.assert_array_equal(np.unique(st["sequence"]), np.arange(4))
    with pytest.raises(ValueError, match="splits"):
        mv.make_multiview_dataset(
            "synthetic", num_subjects=3, synthetic_frames=4,
            splits=(("labelled", ("S1",)), ("unlabelled", ("S1",)), ("test", ("S3",))),
        )


# ----------------------------------------------------- determinism, storage


def test_deterministic_for_seed(ds):
    again = mv.make_multiview_dataset(
        "synthetic", num_subjects=4, num_cameras=3, synthetic_frames=60,
        noise_px=NOISE, outlier_rate=OUTLIERS, seed=3,
    )
    for a, b in zip(ds.sequences, again.sequences):
        for f in mv._ARRAY_FIELDS:
            np.testing.assert_array_equal(getattr(a, f), getattr(b, f))
    other = mv.make_multiview_dataset(
        "synthetic", num_subjects=4, num_cameras=3, synthetic_frames=60,
        noise_px=NOISE, outlier_rate=OUTLIERS, seed=4,
    )
    assert np.abs(other.sequences[0].keypoints - ds.sequences[0].keypoints).max() > 1.0


def test_npz_round_trip_exact(ds, tmp_path):
    path = tmp_path / "mv.npz"
    mv.save_multiview_dataset(ds, str(path))
    with np.load(path, allow_pickle=False) as z:
        assert all(z[k].dtype.kind != "O" for k in z.files)
    back = mv.load_multiview_dataset(str(path))
    assert back.config == ds.config
    for attr in ("layout", "joint_names", "subjects", "actions", "splits", "held_out_cameras", "held_out_actions"):
        assert getattr(back, attr) == getattr(ds, attr)
    np.testing.assert_array_equal(back.bone_scales, ds.bone_scales)
    for f in back.cameras._fields:
        np.testing.assert_array_equal(getattr(back.cameras, f), getattr(ds.cameras, f))
    assert len(back.sequences) == len(ds.sequences)
    for a, b in zip(ds.sequences, back.sequences):
        assert (a.subject, a.action, a.camera_index, a.fps) == (b.subject, b.action, b.camera_index, b.fps)
        for f in mv._ARRAY_FIELDS:
            x, y = getattr(a, f), getattr(b, f)
            assert x.dtype == y.dtype
            np.testing.assert_array_equal(x, y)
        for f in a.camera._fields:
            np.testing.assert_array_equal(getattr(a.camera, f), getattr(b.camera, f))


# --------------------------------------------------------------- resampling


def test_resampling_keeps_rigid_bones():
    d = mv.make_multiview_dataset(
        "synthetic", num_subjects=3, num_cameras=1, synthetic_frames=60, synthetic_fps=50.0,
        fps=25.0, actions=("walk", "turn"), seed=2,
    )
    assert all(r.fps == 25.0 and r.num_frames == 30 for r in d.sequences)
    lengths = skeleton.bone_lengths(d.sequences[0].positions_world.astype(np.float64), d.layout)
    assert np.ptp(lengths, axis=0).max() < 1e-4
    # Halving the rate keeps every other frame exactly (up to slerp at frac 0).
    motion = synthetic.synthetic_motion("walk", num_frames=21, fps=50.0, seed=0)
    half = samples.resample_motion(motion, 25.0)
    np.testing.assert_allclose(half.rotations, motion.rotations[::2], atol=1e-12)
    # Doubling: midpoints are the half-angle rotations (independent: scipy Slerp).
    from scipy.spatial.transform import Rotation, Slerp

    double = samples.resample_motion(motion, 100.0)
    assert double.rotations.shape[0] == 41
    j = samples.DEEPMIMIC_JOINT_NAMES.index("right_hip")
    slerp = Slerp([0.0, 1.0], Rotation.from_quat(motion.rotations[3:5, j], scalar_first=True))
    expected = slerp([0.5]).as_matrix()[0]
    np.testing.assert_allclose(samples.quaternion_to_matrix(double.rotations[7, j]), expected, atol=1e-9)


# ------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(source="mocap"), "source"),
        (dict(layout="nope"), "layout"),
        (dict(num_subjects=2), "num_subjects"),
        (dict(held_out_cameras=(7,)), "held_out_cameras"),
        (dict(actions=("backflip",)), "actions"),
        (dict(outlier_rate=1.5), "outlier_rate"),
    ],
)
def test_bad_arguments(kwargs, match):
    kwargs = {"source": "synthetic", "synthetic_frames": 4, **kwargs}
    with pytest.raises(ValueError, match=match):
        mv.make_multiview_dataset(**kwargs)


# ---------------------------------------------------------------- DeepMimic


def test_small_deepmimic_dataset():
    pytest.importorskip("pybullet_data")
    d = mv.make_multiview_dataset("deepmimic", actions=("walk", "run"), num_subjects=3, num_cameras=2, seed=0)
    walk = samples.load_deepmimic_clip("walk")
    rec = d.views("S1", "walk")[0]
    assert rec.num_frames == walk.positions.shape[0] and rec.fps == walk.fps
    assert rec.positions_world.shape == (walk.positions.shape[0], 17, 3)
    st = d.stack()
    assert np.all(st["visible"]) and np.all(st["keypoints_clean"] >= 0) and np.all(st["keypoints_clean"] <= 1000)
    # S1's bones are the URDF's scaled by its recorded factors, constant over frames.
    skel = skeleton.get("h36m_17")
    lengths = skeleton.bone_lengths(rec.positions_world.astype(np.float64), skel)
    assert np.ptp(lengths, axis=0).max() < 1e-4
    b = skel.bones.index((skel.index("right_ankle"), skel.index("right_knee")))
    shin = 0.25 * 1.639480
    scale = d.bone_scales[0, samples.DEEPMIMIC_JOINT_NAMES.index("right_ankle")]
    assert lengths[0, b] == pytest.approx(scale * shin, abs=1e-5)
    # A common rate: every clip resampled to 20 fps.
    d20 = mv.make_multiview_dataset("deepmimic", actions=("walk", "jump"), num_subjects=3, num_cameras=1, fps=20.0)
    assert {r.fps for r in d20.sequences} == {20.0}
    jump = samples.load_deepmimic_clip("jump")
    expected = int(np.floor((jump.positions.shape[0] - 1) / jump.fps * 20.0 + 1e-9)) + 1
    assert d20.views("S1", "jump")[0].num_frames == expected
