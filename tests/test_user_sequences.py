"""Tests for jpose.datasets.user_sequences: the user file format, its reader and writers."""

import logging
import os

import numpy as np
import pytest

from jpose import camera as camera_lib
from jpose import skeleton
from jpose.datasets import multiview as mv
from jpose.datasets import pipelines
from jpose.datasets import user_sequences as us

J = 17  # h36m_17 / coco_17


def _kp(t=4, j=J, n=None, seed=0):
    rng = np.random.default_rng(seed)
    shape = (t, j, 2) if n is None else (n, t, j, 2)
    return rng.uniform(0.0, 600.0, shape).astype(np.float32)


def _poses(t=4, j=J, n=None, seed=1):
    rng = np.random.default_rng(seed)
    shape = (t, j, 3) if n is None else (n, t, j, 3)
    pos = rng.normal(0.0, 0.3, shape)
    pos[..., 2] += 4.0  # in front of the camera, metres
    return pos.astype(np.float32)


def _base(**over):
    """A valid one-sequence file's arrays, with fields replaced (None drops one)."""
    arrays = {
        "keypoints": _kp(),
        "layout": np.asarray("h36m_17"),
        "image_size": np.asarray([640, 480]),
        "focal_length": np.asarray([1000.0, 1001.0]),
    }
    arrays.update(over)
    return {k: v for k, v in arrays.items() if v is not None}


def _save(path, arrays):
    np.savez(path, **arrays)
    return str(path)


# ----------------------------------------------------------------- hand-checked values


def test_one_sequence_defaults(tmp_path):
    path = _save(tmp_path / "clip.npz", _base())
    out = us.load_user_sequences(path)
    assert isinstance(out, us.UserSequences)
    assert not out.labelled and out.keypoints_layout == "h36m_17" and out.layout_3d is None
    assert out.records_layout == "h36m_17"
    (r,) = out.records
    assert r.subject == "clip" and r.action == "clip" and r.camera_index == 0
    assert r.fps == us.DEFAULT_FPS == 50.0
    np.testing.assert_array_equal(r.keypoints, _kp())
    assert r.keypoints.dtype == np.float32 and r.keypoints_clean is r.keypoints
    np.testing.assert_array_equal(r.confidence, np.ones((4, J), np.float32))
    assert r.outlier.dtype == bool and not r.outlier.any() and r.visible.all()
    # Unlabelled: zero 3D placeholders in the keypoints' layout.
    assert r.positions_camera.shape == (4, J, 3) and not r.positions_camera.any()
    np.testing.assert_array_equal(r.positions_world, r.positions_camera)
    assert r.keypoints_layout is None and r.valid is None and r.activity is None
    cam = r.camera
    np.testing.assert_array_equal(cam.rotation, np.eye(3))
    np.testing.assert_array_equal(cam.centre, np.zeros(3))
    np.testing.assert_array_equal(cam.focal, [1000.0, 1001.0])
    # Default principal point: the image centre with the top-left pixel centre at (0, 0).
    np.testing.assert_array_equal(cam.principal, [319.5, 239.5])
    np.testing.assert_array_equal(cam.radial, np.zeros(3))
    np.testing.assert_array_equal(cam.tangential, np.zeros(2))
    np.testing.assert_array_equal(cam.image_size, [640.0, 480.0])
    assert all(np.asarray(f).dtype == np.float32 for f in cam)
    assert camera_lib.camera_batch_shape(cam) == ()


def test_K_gives_focal_and_principal(tmp_path):
    K = np.asarray([[1000.0, 0.0, 320.0], [0.0, 1010.0, 240.5], [0.0, 0.0, 1.0]])
    path = _save(tmp_path / "k.npz", _base(focal_length=None, K=K))
    cam = us.load_user_sequences(path).records[0].camera
    np.testing.assert_array_equal(cam.focal, [1000.0, 1010.0])
    np.testing.assert_array_equal(cam.principal, [320.0, 240.5])


def test_distortion_order_into_camera_params(tmp_path):
    path = _save(tmp_path / "d.npz", _base(distortion=np.asarray([0.1, 0.2, 0.3, 0.4, 0.5]),
                                           principal_point=np.asarray([300.0, 200.0])))
    cam = us.load_user_sequences(path).records[0].camera
    np.testing.assert_allclose(cam.radial, [0.1, 0.2, 0.3])      # (k1, k2, k3)
    np.testing.assert_allclose(cam.tangential, [0.4, 0.5])       # Human3.6M (p1, p2)
    np.testing.assert_array_equal(cam.principal, [300.0, 200.0])
    # The same numbers through intrinsics9: VideoPose3D's (t0, t1) = (p2, p1).
    np.testing.assert_allclose(np.asarray(camera_lib.intrinsics9(cam))[4:],
                               [0.1, 0.2, 0.3, 0.5, 0.4], rtol=1e-6)


def test_lengths_cut_sequences_and_default_names(tmp_path):
    kp = _kp(t=5, n=3)
    kp[1, 3:] = np.nan  # padding past the length may hold anything
    conf = np.full((3, 5, J), 0.5, np.float32)
    conf[1, 3:] = 7.0
    conf[2, :, 0] = 0.0
    path = _save(tmp_path / "multi.npz", _base(keypoints=kp, confidence=conf,
                                                lengths=np.asarray([5, 3, 1]),
                                                fps=np.asarray(25.0)))
    recs = us.load_user_sequences(path).records
    assert [r.action for r in recs] == ["multi/0", "multi/1", "multi/2"]
    assert [r.num_frames for r in recs] == [5, 3, 1]
    assert {r.subject for r in recs} == {"multi"} and {r.fps for r in recs} == {25.0}
    np.testing.assert_array_equal(recs[1].keypoints, kp[1, :3])
    np.testing.assert_array_equal(recs[1].confidence, conf[1, :3])
    assert recs[1].positions_camera.shape == (3, J, 3)
    np.testing.assert_array_equal(recs[2].visible, conf[2, :1] > 0)
    assert not recs[2].visible[0, 0] and recs[2].visible[0, 1:].all()


def test_names_subject_and_per_sequence_cameras(tmp_path):
    path = _save(tmp_path / "x.npz", _base(
        keypoints=_kp(n=2), sequence=np.asarray(["left", "right"]), subject=np.asarray("alice"),
        focal_length=np.asarray([[900.0, 901.0], [1200.0, 1201.0]]),
        image_size=np.asarray([[640, 480], [1920, 1080]])))
    a, b = us.load_user_sequences(path).records
    assert (a.action, b.action, a.subject, b.subject) == ("left", "right", "alice", "alice")
    np.testing.assert_array_equal(a.camera.focal, [900.0, 901.0])
    np.testing.assert_array_equal(b.camera.focal, [1200.0, 1201.0])
    np.testing.assert_array_equal(b.camera.principal, [959.5, 539.5])
    np.testing.assert_array_equal(b.camera.image_size, [1920.0, 1080.0])


def test_layout_argument_is_the_default(tmp_path):
    path = _save(tmp_path / "c.npz", _base(layout=None))
    out = us.load_user_sequences(path, layout="coco_17")
    assert out.keypoints_layout == "coco_17" and out.records[0].keypoints_layout is None
    with pytest.raises(ValueError, match=r"c\.npz: layout: missing"):
        us.load_user_sequences(path)
    with pytest.raises(ValueError, match=r"layout: unknown layout 'nope'"):
        us.load_user_sequences(path, layout="nope")
    coco = _save(tmp_path / "d.npz", _base(layout=np.asarray("coco_17")))
    with pytest.raises(ValueError, match=r"d\.npz: layout: the file says 'coco_17' but the "
                                         r"reader was given layout='h36m_17'"):
        us.load_user_sequences(coco, layout="h36m_17")


def test_labelled_same_layout(tmp_path):
    pos = _poses()
    path = _save(tmp_path / "lab.npz", _base(poses_3d=pos))
    out = us.load_user_sequences(path, require_3d=True)
    assert out.labelled and out.layout_3d == "h36m_17"
    (r,) = out.records
    np.testing.assert_array_equal(r.positions_camera, pos)
    np.testing.assert_array_equal(r.positions_world, pos)
    assert r.keypoints_layout is None and r.keypoints_clean is r.keypoints


def test_labelled_other_3d_layout_keeps_both_layouts(tmp_path):
    pos = _poses(t=3, j=17)
    kp = _kp(t=3, j=16)
    dist = np.asarray([-0.2, 0.2, -0.001, 0.001, -0.001])
    path = _save(tmp_path / "mpii.npz", _base(
        keypoints=kp, layout=np.asarray("mpii_16"), poses_3d=pos,
        poses_3d_layout=np.asarray("h36m_17"), image_size=np.asarray([1000, 1000]),
        distortion=dist, confidence=np.zeros((3, 16))))
    out = us.load_user_sequences(path)
    assert out.labelled and (out.keypoints_layout, out.layout_3d) == ("mpii_16", "h36m_17")
    assert out.records_layout == "h36m_17"
    (r,) = out.records
    assert r.keypoints_layout == "mpii_16"
    assert r.keypoints.shape == (3, 16, 2) and r.confidence.shape == (3, 16)
    assert r.outlier.shape == (3, 16)
    np.testing.assert_array_equal(r.positions_camera, pos)  # not converted
    # keypoints_clean / visible are in the 3D layout: the projection of the labels.
    cam = r.camera
    want = camera_lib.project_perspective(pos, cam.focal, cam.principal, cam.radial, cam.tangential)
    np.testing.assert_allclose(r.keypoints_clean, np.asarray(want), atol=1e-3)
    inside = np.all((r.keypoints_clean >= 0) & (r.keypoints_clean <= 1000), axis=-1)
    assert r.visible.shape == (3, 17)
    np.testing.assert_array_equal(r.visible, inside)
    # Such records feed the training pipeline with inputs in mpii_16, poses in h36m_17.
    seqs = pipelines.sequences_from_records(out.records, layout=out.records_layout)
    assert seqs.input_layout == "mpii_16"


def test_missing_intrinsics_default_with_warning(tmp_path, caplog):
    path = _save(tmp_path / "noint.npz", _base(focal_length=None))
    with pytest.raises(ValueError, match=r"noint\.npz: focal_length: missing \(and no K\)"):
        us.load_user_sequences(path)
    with caplog.at_level(logging.WARNING, logger="jpose.datasets.user_sequences"):
        cam = us.load_user_sequences(path, require_intrinsics=False).records[0].camera
    np.testing.assert_array_equal(cam.focal, [640.0, 640.0])  # max(width, height)
    np.testing.assert_array_equal(cam.principal, [319.5, 239.5])
    np.testing.assert_array_equal(cam.radial, np.zeros(3))
    assert "noint.npz" in caplog.text and "require_intrinsics=False" in caplog.text
    assert "max(width, height)" in caplog.text


def test_directory_expansion_sorted_and_mixed_list(tmp_path):
    d = tmp_path / "dir"
    d.mkdir()
    for name in ("b", "a", "c"):
        _save(d / f"{name}.npz", _base())
    (d / "notes.txt").write_text("not a sequence")
    (d / "sub.npz").mkdir()  # a directory named like a file is skipped
    other = _save(tmp_path / "z.npz", _base())
    assert [r.subject for r in us.load_user_sequences(str(d)).records] == ["a", "b", "c"]
    mixed = us.load_user_sequences([other, d]).records
    assert [r.subject for r in mixed] == ["z", "a", "b", "c"]
    with pytest.raises(ValueError, match="listed twice"):
        us.load_user_sequences([d, str(d / "a.npz")])
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match="holds no .npz files"):
        us.load_user_sequences(empty)
    with pytest.raises(FileNotFoundError, match="missing.npz"):
        us.load_user_sequences(tmp_path / "missing.npz")
    with pytest.raises(ValueError, match="got none"):
        us.load_user_sequences([])


def test_labelled_and_unlabelled_do_not_mix(tmp_path):
    lab = _save(tmp_path / "lab.npz", _base(poses_3d=_poses()))
    unl = _save(tmp_path / "unl.npz", _base())
    with pytest.raises(ValueError, match=r"lab\.npz is labelled .* but .*unl\.npz is not"):
        us.load_user_sequences([unl, lab])
    with pytest.raises(ValueError, match=r"unl\.npz: poses_3d: missing; require_3d=True"):
        us.load_user_sequences([lab, unl], require_3d=True)
    coco = _save(tmp_path / "coco.npz", _base(layout=np.asarray("coco_17")))
    with pytest.raises(ValueError, match=r"coco\.npz has keypoints in layout 'coco_17'"):
        us.load_user_sequences([unl, coco])
    other3d = _save(tmp_path / "o3d.npz", _base(
        poses_3d=_poses(j=16), poses_3d_layout=np.asarray("mpii_16")))
    with pytest.raises(ValueError, match=r"o3d\.npz has poses_3d in layout 'mpii_16'"):
        us.load_user_sequences([lab, other3d])


def test_broken_file_is_one_line(tmp_path):
    bad = tmp_path / "broken.npz"
    bad.write_bytes(b"")
    with pytest.raises(ValueError, match=r"user sequences file .*broken\.npz.* is empty"):
        us.load_user_sequences(bad)


# ------------------------------------------------------------------------- validation

_N = 2
_BAD = {
    "keypoints_missing": (dict(keypoints=None), "keypoints", "missing"),
    "keypoints_rank": (dict(keypoints=np.zeros((4, 17))), "keypoints", r"expected shape \(T, J, 2\)"),
    "keypoints_last_axis": (dict(keypoints=np.zeros((4, 17, 3))), "keypoints", "expected shape"),
    "keypoints_joints": (dict(keypoints=np.zeros((4, 16, 2))), "keypoints",
                         "16 joints, but layout 'h36m_17' has 17"),
    "keypoints_dtype": (dict(keypoints=np.full((4, 17, 2), "a")), "keypoints", "expected numbers"),
    "keypoints_empty": (dict(keypoints=np.zeros((0, 17, 2))), "keypoints", "at least one"),
    "keypoints_nan": (dict(keypoints=np.where(np.arange(4)[:, None, None] == 2, np.nan, _kp())),
                      "keypoints", "non-finite values at frame 2"),
    "unknown_layout": (dict(layout=np.asarray("h36m_18")), "layout", "unknown layout 'h36m_18'"),
    "layout_not_string": (dict(layout=np.asarray(17)), "layout", "expected a string"),
    "layout_not_scalar": (dict(layout=np.asarray(["h36m_17"])), "layout", "expected a string"),
    "unknown_field": (dict(poses3d=np.zeros((4, 17, 3))), "poses3d", "unknown field"),
    "confidence_shape": (dict(confidence=np.ones((4, 16))), "confidence", r"expected shape \(T, 17\)"),
    "confidence_range": (dict(confidence=np.full((4, 17), 1.5)), "confidence", r"in \[0, 1\]"),
    "confidence_negative": (dict(confidence=np.full((4, 17), -0.1)), "confidence", r"in \[0, 1\]"),
    "confidence_nan": (dict(confidence=np.full((4, 17), np.nan)), "confidence", r"in \[0, 1\]"),
    "image_size_missing": (dict(image_size=None), "image_size", "missing"),
    "image_size_zero": (dict(image_size=np.asarray([640, 0])), "image_size", "expected positive"),
    "image_size_shape": (dict(image_size=np.asarray([640, 480, 3])), "image_size", r"expected shape \(2,\)"),
    "image_size_nan": (dict(image_size=np.asarray([640.0, np.nan])), "image_size", "finite"),
    "focal_negative": (dict(focal_length=np.asarray([-1.0, 1.0])), "focal_length", "positive"),
    "focal_shape": (dict(focal_length=np.asarray([[1.0, 1.0]] * 3)), "focal_length",
                    r"\(1, 2\) \(one per sequence\)"),
    "K_skew": (dict(focal_length=None, K=np.asarray([[1000.0, 2.0, 1.0], [0, 1000, 1], [0, 0, 1]])),
               "K", "skew K\\[0, 1\\] = 2; expected 0"),
    "K_bottom_row": (dict(focal_length=None, K=np.asarray([[1000.0, 0, 1], [0, 1000, 1], [0, 0, 2]])),
                     "K", r"expected \[\[fx, 0, cx\]"),
    "K_with_focal": (dict(K=np.eye(3)), "K", "given together with"),
    "K_shape": (dict(focal_length=None, K=np.eye(4)), "K", r"expected shape \(3, 3\)"),
    "K_negative_focal": (dict(focal_length=None, K=np.diag([-5.0, 5.0, 1.0])), "K", "positive"),
    "distortion_shape": (dict(distortion=np.zeros(4)), "distortion", r"expected shape \(5,\)"),
    "principal_nan": (dict(principal_point=np.asarray([np.nan, 1.0])), "principal_point", "finite"),
    "poses_shape": (dict(poses_3d=np.zeros((3, 17, 3))), "poses_3d", r"expected shape \(T, 17, 3\)"),
    "poses_joints_of_3d_layout": (dict(poses_3d=_poses(), poses_3d_layout=np.asarray("mpii_16")),
                                  "poses_3d", r"expected shape \(T, 16, 3\)"),
    "poses_nan": (dict(poses_3d=np.full((4, 17, 3), np.nan)), "poses_3d", "non-finite"),
    "poses_millimetres": (dict(poses_3d=_poses() * 1000), "poses_3d", "millimetres"),
    "poses_layout_unknown": (dict(poses_3d=_poses(), poses_3d_layout=np.asarray("x")),
                             "poses_3d_layout", "unknown layout 'x'"),
    "poses_layout_without_poses": (dict(poses_3d_layout=np.asarray("h36m_17")), "poses_3d_layout",
                                   "no poses_3d"),
    "fps_zero": (dict(fps=np.asarray(0.0)), "fps", "positive scalar"),
    "fps_vector": (dict(fps=np.asarray([50.0, 25.0])), "fps", "positive scalar"),
    "lengths_single": (dict(lengths=np.asarray([2])), "lengths", r"only with keypoints of shape \(N"),
    "subject_empty": (dict(subject=np.asarray("")), "subject", "non-empty"),
    "sequence_count": (dict(sequence=np.asarray(["a", "b"])), "sequence", r"expected 1 strings"),
}
_BAD_MULTI = {
    "lengths_too_long": (dict(lengths=np.asarray([4, 5])), "lengths",
                         r"expected values in 1..4 \(T\), got lengths\[1\] = 5"),
    "lengths_zero": (dict(lengths=np.asarray([0, 4])), "lengths", "got lengths\\[0\\] = 0"),
    "lengths_float": (dict(lengths=np.asarray([4.0, 4.0])), "lengths", "expected integers"),
    "lengths_count": (dict(lengths=np.asarray([4, 4, 4])), "lengths", r"expected shape \(2,\)"),
    "keypoints_nan_used": (dict(keypoints=np.where(np.arange(4)[:, None, None] == 1, np.nan, _kp(n=2)),
                                lengths=np.asarray([4, 1])), "keypoints",
                           "non-finite values at sequence 0, frame 1"),
    "confidence_n": (dict(confidence=np.ones((3, 4, 17))), "confidence", r"expected shape \(N, T, 17\)"),
    "poses_n": (dict(poses_3d=_poses(n=3)), "poses_3d", r"expected shape \(N, T, 17, 3\)"),
    "camera_n": (dict(image_size=np.asarray([[640, 480]] * 3)), "image_size", r"\(2, 2\) \(one per sequence\)"),
    "distortion_n": (dict(distortion=np.zeros((3, 5))), "distortion", r"\(2, 5\)"),
    "sequence_duplicate": (dict(sequence=np.asarray(["a", "a"])), "sequence", "distinct"),
    "sequence_not_strings": (dict(sequence=np.asarray([1, 2])), "sequence", "expected 2 strings"),
}


@pytest.mark.parametrize("case", sorted(_BAD))
def test_malformed_single(tmp_path, case):
    over, field, message = _BAD[case]
    path = _save(tmp_path / f"{case}.npz", _base(**over))
    with pytest.raises(ValueError, match=rf"{case}\.npz: {field}: .*{message}") as info:
        us.load_user_sequences(path)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("case", sorted(_BAD_MULTI))
def test_malformed_multi(tmp_path, case):
    over, field, message = _BAD_MULTI[case]
    path = _save(tmp_path / f"{case}.npz", _base(**{"keypoints": _kp(n=_N), **over}))
    with pytest.raises(ValueError, match=rf"{case}\.npz: {field}: .*{message}") as info:
        us.load_user_sequences(path)
    assert "\n" not in str(info.value)


def test_padding_is_not_validated(tmp_path):
    conf = np.ones((2, 4, 17))
    conf[1, 2:] = np.nan
    poses = _poses(n=2)
    poses[1, 2:] = np.inf
    path = _save(tmp_path / "pad.npz", _base(keypoints=_kp(n=2), confidence=conf, poses_3d=poses,
                                             lengths=np.asarray([4, 2])))
    recs = us.load_user_sequences(path).records
    assert all(np.isfinite(r.positions_camera).all() for r in recs)


# ------------------------------------------------------------------------------ writer


def test_write_then_read(tmp_path):
    path = tmp_path / "sub" / "w.npz"
    K = np.asarray([[800.0, 0.0, 100.0], [0.0, 810.0, 90.0], [0.0, 0.0, 1.0]])
    us.write_user_sequences(
        path, keypoints=_kp(n=2), image_size=(200, 180), K=K, distortion=[0.1, 0, 0, 0.01, 0.02],
        confidence=np.full((2, 4, 17), 0.25), poses_3d=_poses(n=2), layout="h36m_17", fps=30,
        sequence=["one", "two"], subject="bob", lengths=[4, 3])
    out = us.load_user_sequences(path)
    assert out.labelled
    a, b = out.records
    assert (a.action, b.action, a.subject, a.fps, b.num_frames) == ("one", "two", "bob", 30.0, 3)
    np.testing.assert_array_equal(b.keypoints, _kp(n=2)[1, :3])
    np.testing.assert_array_equal(b.positions_camera, _poses(n=2)[1, :3])
    np.testing.assert_array_equal(a.camera.focal, [800.0, 810.0])
    np.testing.assert_allclose(a.camera.tangential, [0.01, 0.02])
    with np.load(path) as stored:
        files = stored.files
    assert sorted(files) == sorted(
        ["keypoints", "image_size", "K", "distortion", "confidence", "poses_3d", "lengths",
         "layout", "fps", "sequence", "subject"])


def test_writer_refuses_bad_input_and_writes_nothing(tmp_path):
    path = tmp_path / "bad.npz"
    with pytest.raises(ValueError, match=r"bad\.npz: keypoints: 16 joints"):
        us.write_user_sequences(path, keypoints=_kp(j=16), image_size=(640, 480),
                                focal_length=(1000, 1000), layout="h36m_17")
    with pytest.raises(ValueError, match=r"bad\.npz: focal_length: missing"):
        us.write_user_sequences(path, keypoints=_kp(), image_size=(640, 480), layout="h36m_17")
    with pytest.raises(ValueError, match=r"bad\.npz: layout: unknown layout"):
        us.write_user_sequences(path, keypoints=_kp(), image_size=(640, 480),
                                focal_length=(1000, 1000), layout="h36m")
    assert not os.listdir(tmp_path)


# -------------------------------------------------------------- sample data round trip


@pytest.fixture(scope="module")
def sample():
    return mv.make_multiview_dataset("synthetic", num_subjects=3, num_cameras=2,
                                     actions=("walk", "squat"), synthetic_frames=12, seed=5)


@pytest.mark.parametrize("with_3d", [True, False])
def test_records_round_trip(tmp_path, sample, with_3d):
    records = list(sample.sequences)
    # Uneven lengths, so the files need padding and lengths.
    records[1] = records[1]._replace(**{f: getattr(records[1], f)[:7] for f in (
        "positions_world", "positions_camera", "keypoints_clean", "keypoints", "confidence",
        "outlier", "visible")})
    paths = us.user_sequences_from_records(records, str(tmp_path / "mine_"), with_3d=with_3d,
                                           layout=sample.layout)
    assert paths == [str(tmp_path / f"mine_{s}.npz") for s in sample.subjects]
    out = us.load_user_sequences(paths, require_3d=with_3d)
    assert out.labelled == with_3d and out.keypoints_layout == sample.layout
    assert out.layout_3d == (sample.layout if with_3d else None)
    assert len(out.records) == len(records)
    for want, got in zip(records, out.records):
        assert got.subject == want.subject and got.fps == want.fps
        assert got.action == f"{want.action}/{want.camera_index}"
        np.testing.assert_array_equal(got.keypoints, want.keypoints)
        np.testing.assert_array_equal(got.confidence, want.confidence)
        for field in ("focal", "principal", "radial", "tangential", "image_size"):
            np.testing.assert_array_equal(getattr(got.camera, field), getattr(want.camera, field))
        if with_3d:
            np.testing.assert_array_equal(got.positions_camera, want.positions_camera)
            # The camera frame is the world frame: projecting with the loaded camera gives
            # the sample's clean keypoints.
            uv = camera_lib.project_camera(got.positions_world, got.camera)
            np.testing.assert_allclose(np.asarray(uv), want.keypoints_clean, atol=2e-3)
        else:
            assert got.positions_camera.shape == want.positions_camera.shape
            assert not got.positions_camera.any()
    # Loaded records feed the training pipeline like the generated ones.
    seqs = pipelines.sequences_from_records(out.records, layout=out.records_layout,
                                            with_confidence=True)
    ref = pipelines.sequences_from_records(records, layout=sample.layout, with_confidence=True)
    for a, b in zip(seqs, ref, strict=True):
        np.testing.assert_array_equal(a.inputs, b.inputs)
        np.testing.assert_array_equal(a.camera, b.camera)
        if with_3d:
            np.testing.assert_array_equal(a.poses_3d, b.poses_3d)


def test_records_with_several_frame_rates(tmp_path, sample):
    recs = [sample.sequences[0], sample.sequences[1]._replace(fps=25.0)]
    paths = us.user_sequences_from_records(recs, str(tmp_path) + os.sep, with_3d=False)
    assert [os.path.basename(p) for p in paths] == ["S1_50fps.npz", "S1_25fps.npz"]
    out = us.load_user_sequences(paths)
    assert [r.fps for r in out.records] == [50.0, 25.0]
    assert {r.subject for r in out.records} == {"S1"}


def test_records_in_other_keypoint_layout(tmp_path, sample):
    rec = sample.sequences[0]
    mpii = rec._replace(keypoints=skeleton.convert(rec.keypoints, "h36m_17", "mpii_16"),
                        confidence=np.ones((rec.num_frames, 16), np.float32),
                        outlier=np.zeros((rec.num_frames, 16), bool), keypoints_layout="mpii_16")
    (path,) = us.user_sequences_from_records([mpii], str(tmp_path / "m_"), with_3d=True)
    out = us.load_user_sequences(path)
    assert (out.keypoints_layout, out.layout_3d) == ("mpii_16", "h36m_17")
    (r,) = out.records
    assert r.keypoints_layout == "mpii_16"
    np.testing.assert_array_equal(r.keypoints, mpii.keypoints)
    np.testing.assert_array_equal(r.positions_camera, rec.positions_camera)
