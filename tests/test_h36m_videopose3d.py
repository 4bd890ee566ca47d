"""Human3.6M from VideoPose3D's .npz files + metadata.xml cameras.

Fixtures are written here in the documented layouts (shared/DATASET_FORMATS.md 1.5, 2):
a metadata.xml whose <w0> holds 300 numbers (camera 0 intrinsics and S1 camera 0 centre
are the real values), and np.savez_compressed files holding pickled dicts. References are
independent: hand-written matrices and offsets, scipy's Rotation, and a NumPy port of the
official ProjectPointRadial formula.
"""

import logging
import os

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from jpose.datasets import h36m_cameras as hc
from jpose.datasets import h36m_videopose3d as hv
from jpose.datasets import pipelines

CAM0_INTRINSICS = [1145.049, 1143.781, 512.542, 515.451, -0.20710, 0.24778, -0.00308,
                   -0.0014245, -0.0009757]
S1_CAM0_CENTRE_MM = [1841.107, 4955.285, 1563.445]
# Indices of the 17 kept joints among the 32 stored (DATASET_FORMATS 1.4).
H36M_17_FROM_32 = [0, 1, 2, 3, 6, 7, 8, 12, 13, 14, 15, 17, 18, 19, 25, 26, 27]
H36M_SYMMETRY = [[4, 5, 6, 11, 12, 13], [1, 2, 3, 14, 15, 16]]
COCO_SYMMETRY = [[1, 3, 5, 7, 9, 11, 13, 15], [2, 4, 6, 8, 10, 12, 14, 16]]
MPII_SYMMETRY = [[3, 4, 5, 13, 14, 15], [0, 1, 2, 10, 11, 12]]

# Frame counts of the 3D sequences, and of the 2D per camera where they differ.
FRAMES_3D = {"S1": {"Directions 1": 10, "Photo 1": 12},
             "S9": {"Directions 1": 8, "WalkDog": 9}}
EXTRA_2D = {("S1", "Photo 1"): (0, 2, 0, 3)}   # 'some videos have extra frames'
MISSING_2D = {("S9", "WalkDog")}                 # like S11 'Directions' in detector files


def _look_at(eye, target):
    forward = target - eye
    forward /= np.linalg.norm(forward)
    right = np.cross(forward, [0.0, 0.0, 1.0])
    right /= np.linalg.norm(right)
    return np.stack([right, np.cross(forward, right), forward])  # rows: x right, y down, z fwd


def _make_w0():
    rng = np.random.default_rng(0)
    w0 = np.zeros(300)
    for c in range(4):
        intr = np.array(CAM0_INTRINSICS)
        if c:
            intr += rng.normal(size=9) * [3, 3, 4, 4, 0.005, 0.005, 0.0005, 0.0003, 0.0003]
        w0[264 + 9 * c:264 + 9 * c + 9] = intr
        for s in range(1, 12):
            azimuth = 1.2 + c * np.pi / 2 + rng.uniform(-0.1, 0.1)
            eye = np.array([5.2 * np.cos(azimuth), 5.2 * np.sin(azimuth), 1.55])
            if (c, s) == (0, 1):
                eye = np.array(S1_CAM0_CENTRE_MM) / 1000
            angles = Rotation.from_matrix(_look_at(eye, np.array([0.0, 0.0, 1.0]))
                                          ).as_euler("XYZ")
            start = 6 * (c * 11 + s - 1)
            w0[start:start + 6] = np.concatenate([angles, eye * 1000])
    w0[264:273] = CAM0_INTRINSICS
    # Hand-check slots of subjects without poses here (the others look at the subject).
    w0[72:78] = [0.0, 0.0, np.pi / 2, 10.0, 20.0, 30.0]       # S2, camera 1
    w0[156:162] = [0.5, 0.25, -1.0, 1234.5, -2345.5, 1500.0]  # S5, camera 2
    w0[252:258] = [np.pi / 2, 0.0, 0.0, -1.0, -2.0, 3.0]      # S10, camera 3
    return w0


def _write_xml(path, w0_text):
    path.write_text('<?xml version="1.0" encoding="UTF-8"?>\n<opt>\n'
                    "  <train_subjects>[1 7 8 9 11]</train_subjects>\n"
                    f"  {w0_text}\n</opt>\n")
    return path


def _w0_text(values):
    return "<w0>[" + " ".join(f"{v:.17g}" for v in values) + "]</w0>"


def _make_poses(rng, n):
    pelvis = np.array([0.3, -0.2, 0.95]) + np.cumsum(rng.normal(0, 0.01, (n, 3)), axis=0)
    offsets = rng.uniform([-0.3, -0.3, -0.9], [0.3, 0.3, 0.8], size=(n, 32, 3))
    return (pelvis[:, None, :] + offsets).astype(np.float32)


def _write_2d(path, positions_2d, metadata):
    np.savez_compressed(path, positions_2d=positions_2d, metadata=metadata)
    return path


def _detections(rng, num_joints, frames_3d=FRAMES_3D, extra=EXTRA_2D, missing=MISSING_2D):
    out = {}
    for subject, actions in frames_3d.items():
        out[subject] = {}
        for action, n in actions.items():
            if (subject, action) in missing:
                continue
            more = extra.get((subject, action), (0, 0, 0, 0))
            out[subject][action] = [rng.uniform(0, 1000, (n + more[c], num_joints, 2))
                                    .astype(np.float32) for c in range(4)]
    out["S2"] = {"Directions 1": [np.zeros((5, num_joints, 2), np.float32)] * 4}  # no 3D
    return out


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("h36m")
    rng = np.random.default_rng(1)
    w0 = _make_w0()
    xml = _write_xml(root / "metadata.xml", _w0_text(w0))
    pos3d = {s: {a: _make_poses(rng, n) for a, n in acts.items()}
             for s, acts in FRAMES_3D.items()}
    pos3d["S1"]["Directions 1"][3, 19] += [4.0, 0.0, 0.0]  # a left wrist far off-image
    np.savez_compressed(root / "data_3d_h36m.npz", positions_3d=pos3d)
    gt = _detections(rng, 17)
    coco = _detections(rng, 17)
    mpii = _detections(rng, 16)
    _write_2d(root / "data_2d_h36m_gt.npz", gt,
              {"num_joints": 17, "keypoints_symmetry": H36M_SYMMETRY})
    _write_2d(root / "data_2d_h36m_detectron_pt_coco.npz", coco,
              {"layout_name": "coco", "num_joints": 17, "keypoints_symmetry": COCO_SYMMETRY})
    _write_2d(root / "data_2d_h36m_sh_pt_mpii.npz", mpii,
              {"num_joints": 16, "keypoints_symmetry": MPII_SYMMETRY})
    return dict(root=root, w0=w0, xml=xml, pos3d=pos3d, gt=gt, coco=coco, mpii=mpii,
                path_3d=root / "data_3d_h36m.npz", gt_path=root / "data_2d_h36m_gt.npz",
                coco_path=root / "data_2d_h36m_detectron_pt_coco.npz",
                mpii_path=root / "data_2d_h36m_sh_pt_mpii.npz")


def _load(data, path_2d=None, **kw):
    kw.setdefault("allow_pickle", True)
    return hv.load_videopose3d_h36m(data["path_3d"], path_2d or data["gt_path"], data["xml"],
                                    **kw)


# ------------------------------------------------------------------------------ cameras


def test_w0_fields_at_documented_offsets(data):
    cams = hc.load_h36m_cameras(data["xml"])
    assert sorted(cams) == sorted((f"S{s}", c) for s in range(1, 12) for c in range(4))
    s1 = cams[("S1", 0)]
    np.testing.assert_allclose(s1.centre, [1.841107, 4.955285, 1.563445], rtol=1e-6)
    np.testing.assert_allclose(s1.focal, [1145.049, 1143.781], rtol=1e-6)
    np.testing.assert_allclose(s1.principal, [512.542, 515.451], rtol=1e-6)
    np.testing.assert_allclose(s1.radial, [-0.20710, 0.24778, -0.00308], rtol=1e-6)
    np.testing.assert_allclose(s1.tangential, [-0.0014245, -0.0009757], rtol=1e-6)  # stored order
    np.testing.assert_allclose(cams[("S5", 2)].centre, [1.2345, -2.3455, 1.5], rtol=1e-6)
    np.testing.assert_allclose(cams[("S2", 1)].centre, [0.01, 0.02, 0.03], rtol=1e-6)
    # Intrinsics are per camera (shared by subjects): camera 2's 9 numbers start at 282.
    w0 = data["w0"]
    for s in ("S1", "S5", "S11"):
        cam = cams[(s, 2)]
        np.testing.assert_allclose(
            np.concatenate([cam.focal, cam.principal, cam.radial, cam.tangential]),
            w0[282:291], rtol=1e-6)
    assert all(np.asarray(f).dtype == np.float32 for f in s1)


def test_hand_checked_rotations(data):
    cams = hc.load_h36m_cameras(data["xml"])
    # S10 camera 3: angles (pi/2, 0, 0) -> Rx(pi/2).
    np.testing.assert_allclose(cams[("S10", 3)].rotation,
                               [[1, 0, 0], [0, 0, -1], [0, 1, 0]], atol=1e-7)
    # S2 camera 1: angles (0, 0, pi/2) -> Rz(pi/2); x_cam = R (x - T) for a hand point.
    r = cams[("S2", 1)].rotation
    np.testing.assert_allclose(r, [[0, -1, 0], [1, 0, 0], [0, 0, 1]], atol=1e-7)
    np.testing.assert_allclose(r @ (np.array([1.01, 0.02, 0.03]) - cams[("S2", 1)].centre),
                               [0.0, 1.0, 0.0], atol=1e-6)


def test_rotations_proper_and_match_scipy_xyz(data):
    cams = hc.load_h36m_cameras(data["xml"], dtype=np.float64)
    w0 = data["w0"]
    for (subject, c), cam in cams.items():
        s = int(subject[1:])
        start = 6 * (c * 11 + s - 1)
        r = cam.rotation
        # Rx(a) Ry(b) Rz(c) == scipy intrinsic "XYZ" (an extrinsic sequence would be
        # Rz Ry Rx, "xyz"; the two differ for these angles, checked below).
        np.testing.assert_allclose(
            r, Rotation.from_euler("XYZ", w0[start:start + 3]).as_matrix(), atol=1e-12)
        np.testing.assert_allclose(r @ r.T, np.eye(3), atol=1e-12)
        assert np.linalg.det(r) == pytest.approx(1.0, abs=1e-12)
        np.testing.assert_allclose(cam.centre, w0[start + 3:start + 6] / 1000, rtol=1e-12)
    a = w0[156:159]
    assert not np.allclose(Rotation.from_euler("xyz", a).as_matrix(), cams[("S5", 2)].rotation)
    # The fixture's look-at cameras face the subject: the optical axis points to (0,0,1).
    cam = cams[("S9", 1)]
    ahead = cam.rotation @ (np.array([0.0, 0.0, 1.0]) - cam.centre)
    np.testing.assert_allclose(ahead[:2], 0.0, atol=1e-9)
    assert ahead[2] > 4.0


def test_image_sizes(data):
    cams = hc.load_h36m_cameras(data["xml"])
    assert hc.CAMERA_IDS == ("54138969", "55011271", "58860488", "60457274")
    for s in ("S1", "S7", "S11"):
        assert [tuple(cams[(s, c)].image_size) for c in range(4)] == [
            (1000, 1002), (1000, 1000), (1000, 1000), (1000, 1002)]


def test_metadata_xml_errors(tmp_path, data):
    with pytest.raises(FileNotFoundError, match="nowhere.xml"):
        hc.load_h36m_cameras(tmp_path / "nowhere.xml")
    bad = _write_xml(tmp_path / "no_w0.xml", "<w1>[1 2 3]</w1>")
    with pytest.raises(ValueError, match=r"no_w0\.xml.*no <w0>"):
        hc.load_h36m_cameras(bad)
    bad = _write_xml(tmp_path / "short.xml", _w0_text(data["w0"][:299]))
    with pytest.raises(ValueError, match=r"short\.xml.*<w0> holds 299 numbers; expected 300"):
        hc.load_h36m_cameras(bad)
    text = _w0_text(data["w0"][:299]).replace("]", " x7]")  # 300 tokens, one not a number
    bad = _write_xml(tmp_path / "nan.xml", text)
    with pytest.raises(ValueError, match=r"nan\.xml.*<w0> entry 299 is 'x7', not a number"):
        hc.load_h36m_cameras(bad)
    bad = tmp_path / "broken.xml"
    bad.write_text("<opt><w0>[1 2</opt>")
    with pytest.raises(ValueError, match=r"broken\.xml.*not a well-formed XML"):
        hc.load_h36m_cameras(bad)


# ----------------------------------------------------------------------- 3D/2D loading


def _project_point_radial(points, rotation, centre, f, c, k, p):
    """NumPy port of Human3.6M ProjectPointRadial.m (points (N, 3), world)."""
    x = (rotation @ (points - centre).T).T
    xx = x[:, :2] / x[:, 2:3]
    r2 = (xx ** 2).sum(axis=1)
    radial = 1 + k[0] * r2 + k[1] * r2 ** 2 + k[2] * r2 ** 3
    tan = p[0] * xx[:, 1] + p[1] * xx[:, 0]
    xxx = xx * (radial + tan)[:, None] + np.outer(r2, [p[1], p[0]])
    return f * xxx + c, x


def _reference_camera(w0, subject, c):
    s = int(subject[1:])
    start = 6 * (c * 11 + s - 1)
    intr = w0[264 + 9 * c:273 + 9 * c]
    return (Rotation.from_euler("XYZ", w0[start:start + 3]).as_matrix(),
            w0[start + 3:start + 6] / 1000, intr[0:2], intr[2:4], intr[4:7], intr[7:9])


def test_records_match_independent_geometry(data, caplog):
    with caplog.at_level(logging.WARNING):
        records = _load(data)
    keys = [(r.subject, r.action, r.camera_index) for r in records]
    assert keys == [(s, a, c) for s, a in [("S1", "Directions 1"), ("S1", "Photo 1"),
                                           ("S9", "Directions 1")] for c in range(4)]
    assert any("S9" in m and "WalkDog" in m for m in caplog.messages)  # skipped, logged
    w0, size = data["w0"], {0: (1000, 1002), 1: (1000, 1000), 2: (1000, 1000), 3: (1000, 1002)}
    invisible = 0
    for rec in records:
        n = FRAMES_3D[rec.subject][rec.action]
        world = data["pos3d"][rec.subject][rec.action][:, H36M_17_FROM_32].astype(np.float64)
        rot, centre, f, c, k, p = _reference_camera(w0, rec.subject, rec.camera_index)
        uv, xyz = _project_point_radial(world.reshape(-1, 3), rot, centre, f, c, k, p)
        uv, xyz = uv.reshape(n, 17, 2), xyz.reshape(n, 17, 3)
        assert rec.fps == 50.0 and rec.num_frames == n
        np.testing.assert_array_equal(rec.positions_world, world.astype(np.float32))
        np.testing.assert_allclose(rec.positions_camera, xyz, atol=2e-5)
        np.testing.assert_allclose(rec.keypoints_clean, uv, atol=5e-3)
        np.testing.assert_array_equal(
            rec.keypoints, data["gt"][rec.subject][rec.action][rec.camera_index][:n])
        w, h = size[rec.camera_index]
        ref_visible = ((xyz[..., 2] > 0) & (uv[..., 0] >= 0) & (uv[..., 0] <= w)
                       & (uv[..., 1] >= 0) & (uv[..., 1] <= h))
        np.testing.assert_array_equal(rec.visible, ref_visible)
        invisible += int((~rec.visible).sum())
        np.testing.assert_array_equal(rec.confidence, np.ones((n, 17)))
        assert rec.outlier.dtype == bool and not rec.outlier.any()
        for arr in (rec.positions_world, rec.positions_camera, rec.keypoints_clean,
                    rec.keypoints, rec.confidence):
            assert arr.dtype == np.float32
        np.testing.assert_allclose(rec.camera.rotation, rot, atol=1e-6)
        assert tuple(rec.camera.image_size) == (w, h)
    assert 0 < invisible < 20  # only the displaced wrist leaves the image


def test_extra_2d_frames_truncated_never_padded(data, tmp_path):
    records = {(r.subject, r.action, r.camera_index): r for r in _load(data)}
    for c in range(4):
        rec = records[("S1", "Photo 1", c)]
        stored = data["gt"]["S1"]["Photo 1"][c]
        assert stored.shape[0] == 12 + EXTRA_2D[("S1", "Photo 1")][c]
        assert rec.keypoints.shape == (12, 17, 2)
        np.testing.assert_array_equal(rec.keypoints, stored[:12])
    short = _detections(np.random.default_rng(2), 17, extra={("S9", "Directions 1"): (0, 0, -1, 0)})
    path = _write_2d(tmp_path / "short.npz", short,
                     {"num_joints": 17, "keypoints_symmetry": H36M_SYMMETRY})
    with pytest.raises(ValueError, match=r"'S9'.*'Directions 1'.*\[2\] \(camera 58860488\) "
                                         r"has 7 frames but the 3D sequence has 8"):
        _load(data, path)


def test_coco_detections_native_by_default(data):
    """VideoPose3D feeds the Detectron file's COCO keypoints to its model unchanged."""
    records = _load(data, data["coco_path"], subjects=["S1"])
    assert {r.subject for r in records} == {"S1"}
    rec = records[5]  # S1 'Photo 1' camera 1
    assert (rec.action, rec.camera_index) == ("Photo 1", 1)
    assert rec.keypoints_layout == "coco_17"
    np.testing.assert_array_equal(rec.keypoints, data["coco"]["S1"]["Photo 1"][1][:12])
    assert rec.confidence.shape == rec.outlier.shape == (12, 17)
    # The 3D truth, its projection and visibility stay in the 3D layout.
    assert rec.positions_camera.shape == (12, 17, 3) and rec.keypoints_clean.shape == (12, 17, 2)
    assert rec.visible.shape == (12, 17)
    for r in records:
        assert r.keypoints_layout == "coco_17"
        np.testing.assert_array_equal(r.keypoints, data["coco"]["S1"][r.action][r.camera_index][
            :FRAMES_3D["S1"][r.action]])
    # Ground truth (and CPN) files are h36m_17 like the 3D: no separate layout.
    assert all(r.keypoints_layout is None for r in _load(data))


def test_cpn_file_is_h36m_order(data, tmp_path):
    cpn = _detections(np.random.default_rng(5), 17)
    path = _write_2d(tmp_path / "data_2d_h36m_cpn_ft_h36m_dbb.npz", cpn,
                     {"layout_name": "h36m", "num_joints": 17, "keypoints_symmetry": H36M_SYMMETRY})
    records = _load(data, path, subjects=["S9"])
    assert [r.keypoints_layout for r in records] == [None] * 4
    np.testing.assert_array_equal(records[2].keypoints, cpn["S9"]["Directions 1"][2])
    # Against the 3D layout mpii_16, the same file keeps its own h36m_17 order.
    records = _load(data, path, subjects=["S9"], layout="mpii_16")
    assert records[0].keypoints_layout == "h36m_17" and records[0].keypoints.shape == (8, 17, 2)
    assert records[0].positions_world.shape == (8, 16, 3)


def test_coco_detections_converted_by_name_on_request(data):
    records = _load(data, data["coco_path"], subjects=["S1"], convert_keypoints=True)
    rec = records[5]  # S1 'Photo 1' camera 1
    assert rec.keypoints_layout is None
    coco = data["coco"]["S1"]["Photo 1"][1][:12].astype(np.float64)
    kp = rec.keypoints
    assert kp.shape == (12, 17, 2) and rec.confidence.shape == (12, 17)
    # COCO: 0 nose, 5/6 l/r shoulder, 9 left wrist, 11/12 l/r hip, 16 right ankle.
    # Human3.6M-17: 0 pelvis, 3 right ankle, 8 thorax, 9 nose/head, 13 left wrist.
    np.testing.assert_allclose(kp[:, 13], coco[:, 9], rtol=1e-6)
    np.testing.assert_allclose(kp[:, 3], coco[:, 16], rtol=1e-6)
    np.testing.assert_allclose(kp[:, 9], coco[:, 0], rtol=1e-6)
    np.testing.assert_allclose(kp[:, 0], (coco[:, 11] + coco[:, 12]) / 2, rtol=1e-6)
    np.testing.assert_allclose(kp[:, 8], (coco[:, 5] + coco[:, 6]) / 2, rtol=1e-6)
    with pytest.raises(ValueError, match="convert_keypoints: expected a bool"):
        _load(data, data["coco_path"], convert_keypoints="yes")


def _hand_perm(pairs, num_joints=17):
    perm = list(range(num_joints))
    for a, b in pairs:
        perm[a], perm[b] = b, a
    return np.asarray(perm)


def test_coco_records_train_with_coco_inputs_and_coco_flips(data):
    """COCO inputs, Human3.6M poses: each mirrored with its own left/right pairs."""
    records = _load(data, data["coco_path"])
    seqs = pipelines.sequences_from_records(records, layout="h36m_17", with_confidence=True)
    assert seqs.input_layout == "coco_17" and seqs.layout == "h36m_17"
    assert seqs.flip_layouts == ("coco_17", "h36m_17")
    first = seqs[0]
    w, h = (float(v) for v in records[0].camera.image_size)
    np.testing.assert_allclose(first.inputs[..., :2],
                               records[0].keypoints / w * 2 - np.array([1.0, h / w]), atol=1e-6)
    windows = pipelines.temporal_windows(seqs, receptive_field=3)
    tb = pipelines.training_batches(windows, global_batch_size=16, seed=0,
                                    flip_augment=seqs.flip_layouts)
    assert tb.steps_per_epoch == 2 * len(windows) // 16
    # Pairs by hand from the files' keypoints_symmetry (left, right index lists).
    perm_coco = _hand_perm(zip(*COCO_SYMMETRY))
    perm_h36m = _hand_perm(zip(*H36M_SYMMETRY))
    assert not np.array_equal(perm_coco, perm_h36m)
    seen = 0
    for k in range(tb.steps_per_epoch):
        b = tb.batch(k)
        orig = windows.gather(b["example_index"])
        for i in np.flatnonzero(b["flipped"]):
            x = orig["inputs"][i][:, perm_coco]
            np.testing.assert_array_equal(b["inputs"][i][..., 0], -x[..., 0])
            np.testing.assert_array_equal(b["inputs"][i][..., 1:], x[..., 1:])
            p = orig["poses_3d"][i][:, perm_h36m]
            np.testing.assert_array_equal(b["poses_3d"][i], p * np.array([-1, 1, 1], np.float32))
            seen += 1
    assert seen > 0
    # Mirroring COCO inputs with Human3.6M pairs would pass the 17-joint count: refused.
    with pytest.raises(ValueError, match="inputs are in layout 'coco_17'"):
        pipelines.training_batches(windows, global_batch_size=16, seed=0, flip_augment="h36m_17")


def test_mpii_layout_inferred_and_explicit_layouts(data):
    records = _load(data, data["mpii_path"], subjects=("S9",))
    mpii = data["mpii"]["S9"]["Directions 1"][0].astype(np.float64)
    assert records[0].keypoints_layout == "mpii_16"
    np.testing.assert_array_equal(records[0].keypoints, mpii.astype(np.float32)[:8])
    assert records[0].confidence.shape == (8, 16) and records[0].keypoints_clean.shape == (8, 17, 2)
    seqs = pipelines.sequences_from_records(records, layout="h36m_17")
    assert (seqs.input_layout, seqs.num_joints_in, seqs.num_joints_out) == ("mpii_16", 16, 17)
    records = _load(data, data["mpii_path"], subjects=("S9",), convert_keypoints=True)
    # MPII: 6 pelvis, 7 thorax, 13 left shoulder; Human3.6M-17: 0 pelvis, 8 thorax, 11.
    np.testing.assert_allclose(records[0].keypoints[:, 0], mpii[:, 6], rtol=1e-6)
    np.testing.assert_allclose(records[0].keypoints[:, 8], mpii[:, 7], rtol=1e-6)
    np.testing.assert_allclose(records[0].keypoints[:, 11], mpii[:, 13], rtol=1e-6)
    # Output in the 16-joint MPII layout: the 3D truth is converted too.
    records = _load(data, data["mpii_path"], subjects=("S9",), layout="mpii_16")
    assert records[0].keypoints_layout is None
    np.testing.assert_array_equal(records[0].keypoints, mpii.astype(np.float32)[:8])
    world32 = data["pos3d"]["S9"]["Directions 1"]
    np.testing.assert_allclose(records[0].positions_world[:, 6], world32[:, 0])  # pelvis
    assert records[0].keypoints_clean.shape == (8, 16, 2)
    assert hv.infer_keypoints_layout({"num_joints": 17, "layout_name": "h36m"}) == "h36m_17"
    with pytest.raises(ValueError, match="keypoints_symmetry"):  # COCO data, no layout_name
        hv.infer_keypoints_layout({"num_joints": 17, "keypoints_symmetry": COCO_SYMMETRY})
    with pytest.raises(ValueError, match="layout_name='openpose'.*keypoints_layout="):
        hv.infer_keypoints_layout({"num_joints": 18, "layout_name": "openpose"})
    with pytest.raises(ValueError, match="num_joints=17 but keypoints_layout='mpii_16'"):
        _load(data, keypoints_layout="mpii_16")


def test_pickle_refused_by_default(data, tmp_path):
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (os.mkdir, (str(marker),))

    evil = tmp_path / "data_3d_h36m.npz"
    np.savez_compressed(evil, positions_3d=np.array(Payload(), dtype=object))
    for kw in ({}, {"allow_pickle": False}):
        with pytest.raises(hv.PickleNotAllowedError) as info:
            hv.load_videopose3d_h36m(evil, data["gt_path"], data["xml"], **kw)
        message = str(info.value)
        for needle in ("allow_pickle=True", "--config.data.allow_pickle=True",
                       "arbitrary code", str(evil)):
            assert needle in message
        assert isinstance(info.value, PermissionError) and isinstance(info.value, ValueError)
    assert not marker.exists()  # nothing was unpickled
    with pytest.raises(ValueError, match="allow_pickle: expected a bool"):
        hv.load_videopose3d_h36m(data["path_3d"], data["gt_path"], data["xml"],
                                 allow_pickle="yes")
    assert len(_load(data, allow_pickle=True)) == 12


def test_missing_and_malformed_inputs(data, tmp_path):
    with pytest.raises(FileNotFoundError) as info:
        hv.load_videopose3d_h36m(tmp_path / "a3d.npz", tmp_path / "b2d.npz", data["xml"],
                                 allow_pickle=True)
    assert "a3d.npz" in str(info.value) and "b2d.npz" in str(info.value)
    with pytest.raises(ValueError, match=r"subjects: \['S7'\].*available subjects: \['S1', 'S9'\]"):
        _load(data, subjects=["S1", "S7"])

    wrong_key = tmp_path / "wrong_key.npz"
    np.savez_compressed(wrong_key, poses=data["pos3d"])
    with pytest.raises(ValueError, match=r"wrong_key\.npz: missing key 'positions_3d'"):
        hv.load_videopose3d_h36m(wrong_key, data["gt_path"], data["xml"], allow_pickle=True)
    no_meta = tmp_path / "no_meta.npz"
    np.savez_compressed(no_meta, positions_2d=data["gt"])
    with pytest.raises(ValueError, match=r"no_meta\.npz: missing key 'metadata'"):
        _load(data, no_meta)
    not_zip = tmp_path / "not_zip.npz"
    not_zip.write_bytes(b"plain bytes")
    with pytest.raises(ValueError, match=r"not_zip\.npz: not an \.npz"):
        _load(data, not_zip)

    bad3d = {s: dict(a) for s, a in data["pos3d"].items()}
    bad3d["S9"]["Directions 1"] = bad3d["S9"]["Directions 1"][:, :17]
    path = tmp_path / "bad3d.npz"
    np.savez_compressed(path, positions_3d=bad3d)
    with pytest.raises(ValueError, match=r"positions_3d\['S9'\]\['Directions 1'\] has shape "
                                         r"\(8, 17, 3\); expected \(N, 32, 3\)"):
        hv.load_videopose3d_h36m(path, data["gt_path"], data["xml"], allow_pickle=True)

    meta = {"num_joints": 17, "keypoints_symmetry": H36M_SYMMETRY}
    bad2d = {s: dict(a) for s, a in data["gt"].items()}
    bad2d["S1"]["Photo 1"] = list(bad2d["S1"]["Photo 1"])
    bad2d["S1"]["Photo 1"][3] = np.zeros((15, 17, 3), np.float32)
    path = _write_2d(tmp_path / "bad2d.npz", bad2d, meta)
    with pytest.raises(ValueError, match=r"positions_2d\['S1'\]\['Photo 1'\]\[3\] \(camera "
                                         r"60457274\) has shape \(15, 17, 3\); expected "
                                         r"\(N, 17, 2\)"):
        _load(data, path)
    bad2d["S1"]["Photo 1"] = bad2d["S1"]["Photo 1"][:3]
    path = _write_2d(tmp_path / "three.npz", bad2d, meta)
    with pytest.raises(ValueError, match=r"\['S1'\]\['Photo 1'\] must be a list of 4 arrays"):
        _load(data, path)


def test_action_class():
    assert hv.action_class("Directions 1") == "Directions"
    assert hv.action_class("Directions") == "Directions"
    assert hv.action_class("Discussion 3") == "Discussion"
    assert hv.action_class("SittingDown 2") == "SittingDown"
    assert hv.action_class("Photo 1") == "TakingPhoto"       # S5-S11, and S1 in VideoPose3D
    assert hv.action_class("TakingPhoto 1") == "TakingPhoto"  # S1 raw file name
    assert hv.action_class("WalkDog") == "WalkingDog"
    assert hv.action_class("WalkingDog 1") == "WalkingDog"
    assert hv.action_class("WalkTogether 2") == "WalkingTogether"
    assert len(set(hv.H36M_ACTION_CLASSES)) == 15
    with pytest.raises(ValueError, match="_ALL 1"):
        hv.action_class("_ALL 1")
    assert hv.H36M_TRAIN_SUBJECTS == ("S1", "S5", "S6", "S7", "S8")
    assert hv.H36M_TEST_SUBJECTS == ("S9", "S11")
