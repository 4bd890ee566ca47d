"""jpose.datasets.capture: a calibrated multi-camera capture as multi-view records.

Fixtures are written as the tools write them, from the generated multi-view sample (3
cameras, 12 frames): an Anipose calibration TOML (``calibration.write_calibration``), the
2D as OpenCV projects it through that calibration, one OpenPose ``--write_json``
directory per camera (BODY_25, ``<name>_<frame:012d>_keypoints.json``, 3 decimals,
undetected joints ``0, 0, 0``), or one jpose user-sequences ``.npz`` per camera with 3D
labels (``write_user_sequences``).
"""

import json
import logging
import os

import numpy as np
import pytest

from jpose import calibration as cal
from jpose import skeleton as sk
from jpose.datasets import capture, multiview, user_sequences
from jpose.nets import network
from jpose.training import streams
from launch import triangulate as triangulate_script
from launch.configs import common

NAMES = ("left", "front", "right")
BODY25 = sk.get("openpose_body25")
H36M = sk.get("h36m_17")
# BODY_25 joint -> the h36m_17 joint its fixture value is written from (nose = head).
FROM_H36M = {b: H36M.joint_names.index("head" if b == "nose" else b)
             for b in BODY25.joint_names if b in H36M.joint_names or b == "nose"}
SHARED = [BODY25.joint_names.index(b) for b in FROM_H36M]


@pytest.fixture(scope="module")
def sample():
    return multiview.make_multiview_dataset(
        "synthetic", num_cameras=3, num_subjects=3, synthetic_frames=12, actions=("walk",))


def _calibration(directory, sample) -> cal.Calibration:
    path = os.path.join(directory, "calibration.toml")
    if not os.path.exists(path):
        cal.write_calibration(path, sample.cameras, names=NAMES)
    return cal.read_calibration(path)


def _manifest(path, cameras, **extra) -> str:
    lines = ['calibration = "calibration.toml"']
    lines += [f"{k} = {json.dumps(v)}" for k, v in extra.items()]
    lines += ["[cameras]"] + [f'{n} = "{p}"' for n, p in cameras.items()]
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    return str(path)


def _openpose_dir(directory, uv, frames):
    """One camera's OpenPose output: ``uv`` (T, 17, 2) h36m_17 pixels at ``frames``."""
    os.makedirs(directory, exist_ok=True)
    for t, n in enumerate(frames):
        flat = []
        for name in BODY25.joint_names:
            if name in FROM_H36M:
                x, y = uv[t, FROM_H36M[name]]
                flat += [round(float(x), 3), round(float(y), 3), 0.9]
            else:
                flat += [0.0, 0.0, 0.0]
        doc = {"version": 1.3, "people": [{
            "person_id": [-1], "pose_keypoints_2d": flat, "face_keypoints_2d": [],
            "hand_left_keypoints_2d": [], "hand_right_keypoints_2d": [],
            "pose_keypoints_3d": [], "face_keypoints_3d": [], "hand_left_keypoints_3d": [],
            "hand_right_keypoints_3d": []}]}
        with open(os.path.join(directory, f"video_{n:012d}_keypoints.json"), "w") as f:
            f.write(json.dumps(doc, separators=(",", ":")))


def _openpose_capture(tmp_path, sample, subject="S1"):
    """The manifest of an OpenPose capture of ``subject``'s walk; camera ``right`` starts
    at frame 2, camera ``left`` lacks frame 5. Returns (manifest, 2D (V, T, 17, 2), world)."""
    calib = _calibration(tmp_path, sample)
    world = sample.views(subject, "walk")[0].positions_world
    uv = np.asarray(cal.project_opencv(np.broadcast_to(world, (3,) + world.shape),
                                       calib.cameras, calib.distortions.astype(np.float32)))
    frames = {"left": [t for t in range(12) if t != 5], "front": list(range(12)),
              "right": list(range(2, 12))}
    for v, name in enumerate(NAMES):
        _openpose_dir(tmp_path / f"op_{subject}_{name}", uv[v, frames[name]], frames[name])
    manifest = _manifest(tmp_path / f"{subject}_openpose.toml",
                         {n: f"op_{subject}_{n}/" for n in NAMES}, subject=subject)
    return manifest, uv, world


def _labelled_capture(tmp_path, sample, subject="S2", lengths=(12, 12, 12), swap=False,
                      intrinsics=True):
    """The manifest of a labelled capture: a user-sequences .npz per camera (noisy 2D,
    confidences, intrinsics unless not ``intrinsics``, camera-frame poses_3d); ``swap``
    gives camera ``left`` the file of camera ``right`` and vice versa."""
    _calibration(tmp_path, sample)
    files = {}
    for v, (name, r) in enumerate(zip(NAMES, sample.views(subject, "walk"))):
        n = lengths[v]
        c = r.camera
        path = tmp_path / f"{subject}_{name}{'' if intrinsics else '_no_k'}.npz"
        if intrinsics:
            user_sequences.write_user_sequences(
                path, keypoints=r.keypoints[:n], confidence=r.confidence[:n],
                image_size=c.image_size, focal_length=c.focal, principal_point=c.principal,
                distortion=np.concatenate([c.radial, c.tangential]),
                poses_3d=r.positions_camera[:n], layout="h36m_17", fps=r.fps)
        else:  # the writer insists on intrinsics; a capture's files need none
            np.savez(path, keypoints=r.keypoints[:n], confidence=r.confidence[:n],
                     image_size=c.image_size, poses_3d=r.positions_camera[:n],
                     layout=np.asarray("h36m_17"), fps=np.asarray(r.fps))
        files[name] = path.name
    if swap:
        files["left"], files["right"] = files["right"], files["left"]
    return _manifest(tmp_path / f"{subject}_labelled.toml", files, sequence=f"{subject}_walk",
                     subject=subject)


# --------------------------------------------------------------------------- loading


def test_openpose_capture_gives_the_source_2d_and_cameras(tmp_path, sample, caplog):
    manifest, uv, _ = _openpose_capture(tmp_path, sample)
    with caplog.at_level(logging.WARNING, logger="jpose.datasets.capture"):
        cap = capture.load_manifest(manifest)
    # Trimmed to the frames every camera covers, with a warning naming the camera.
    assert "trimmed to frames 2-11" in caplog.text and "left: 2 frames" in caplog.text
    np.testing.assert_array_equal(cap.frames, np.arange(2, 12))
    assert not cap.labelled and cap.keypoints_layout == "openpose_body25"
    assert [r.camera_index for r in cap.records] == [0, 1, 2]
    for v, r in enumerate(cap.records):
        assert (r.subject, r.action, r.fps) == ("S1", "S1_openpose", 50.0)
        # The calibration's cameras are the sample's (extrinsics world -> camera).
        for field in ("rotation", "centre", "focal", "principal", "radial", "image_size"):
            np.testing.assert_allclose(getattr(r.camera, field),
                                       np.asarray(getattr(sample.cameras, field))[v],
                                       rtol=1e-6, atol=1e-6)
        # The detected joints are the fixture's pixels (OpenPose's 3 decimals).
        detected = np.ones(10, bool)
        if NAMES[v] == "left":
            detected[5 - 2] = False  # no file for frame 5: filled, confidence 0
        np.testing.assert_allclose(r.keypoints[detected][:, SHARED],
                                   uv[v, 2:][detected][:, list(FROM_H36M.values())], atol=6e-4)
        np.testing.assert_array_equal(r.confidence[detected][:, SHARED], np.float32(0.9))
        assert np.all(r.confidence[~detected] == 0) and np.all(np.isfinite(r.keypoints))
        others = [j for j in range(25) if j not in SHARED]
        assert np.all(r.confidence[:, others] == 0) and cap.filled[v][:, others].all()
        # Unlabelled, as user sequences without poses_3d: zero placeholders, no valid frame.
        assert not capture.has_3d(r) and not np.any(r.positions_world)
        assert r.keypoints_layout is None
    # Frame 5 of the left camera was interpolated between its neighbours.
    left = cap.records[0].keypoints[:, SHARED]
    np.testing.assert_allclose(left[3], (left[2] + left[4]) / 2, atol=1e-3)


def test_triangulating_the_clean_2d_recovers_the_3d(tmp_path, sample):
    manifest, _, world = _openpose_capture(tmp_path, sample)
    cap = capture.load_manifest(manifest)
    tri = capture.triangulate_capture(cap)
    truth = world[2:][:, list(FROM_H36M.values())]
    assert np.max(np.abs(tri.points[:, SHARED] - truth)) < 1e-3  # metres
    others = [j for j in range(25) if j not in SHARED]
    assert np.all(np.isnan(tri.points[:, others]))  # never detected: no view counts
    assert tri.num_views[3, SHARED[0]] == 2 and tri.num_views[0, SHARED[0]] == 3
    counted = np.stack([r.confidence for r in cap.records]) > 0
    assert np.max(tri.reprojection_error[counted]) < 0.01  # pixels
    # A filled entry (left, frame 5) is scored too, so it shows as off the point.
    assert np.all(tri.reprojection_error[0, 3, SHARED] > 0.01)
    # The launcher writes the same points, NaN as null in JSON.
    out = triangulate_script.run(manifest, str(tmp_path / "points.json"))
    np.testing.assert_array_equal(out["points_3d"], tri.points)
    with open(tmp_path / "points.json") as f:
        doc = json.load(f)
    assert doc["layout"] == "openpose_body25" and doc["points_3d"][0][-1] == [None] * 3
    assert doc["camera_names"] == list(NAMES) and len(doc["reprojection_error"]) == 3
    npz = triangulate_script.run(manifest, str(tmp_path / "points.npz"))
    with np.load(tmp_path / "points.npz") as z:
        np.testing.assert_array_equal(z["points_3d"], npz["points_3d"])


def test_labelled_capture_and_the_dlt_baseline(tmp_path, sample, caplog):
    manifest = _labelled_capture(tmp_path, sample, lengths=(12, 10, 12))
    with caplog.at_level(logging.WARNING, logger="jpose.datasets.capture"):
        cap = capture.load_manifest(manifest)
    assert "front" not in caplog.text and "left: 2 frames" in caplog.text
    assert cap.labelled and cap.layout_3d == "h36m_17" and cap.frames.size == 10
    for r, src in zip(cap.records, sample.views("S2", "walk")):
        np.testing.assert_allclose(r.positions_world, src.positions_world[:10], atol=1e-5)
        assert capture.has_3d(r)
    # The baseline on the capture's noisy 2D, and the exact 2D of the same instants.
    noisy = capture.dlt_baseline(cap.records, layout="h36m_17")
    assert 5 < noisy.summary_mm["mpjpe"]["action_wise"] < 200
    # The sample's test split, as a recipe's evaluation would score it, from exact 2D.
    clean = capture.dlt_baseline(sample.split("test"), layout=sample.layout,
                                 use_clean_2d=True)
    assert set(clean.summary_mm) == {"mpjpe", "p_mpjpe", "n_mpjpe", "mpjve"}
    assert clean.accumulator.actions == ("walk",)
    assert clean.summary_mm["mpjpe"]["frame_wise"] < 1.0
    assert clean.summary_mm["p_mpjpe"]["frame_wise"] < 1.0 and clean.untriangulated == 0


# --------------------------------------------------------------------------- streams


def _config(train, evals, views=3):
    c = common.apply_tiny(common.base_config())
    c.data.source = "capture"
    c.data.capture = tuple(train)
    c.data.eval_capture = tuple(evals)
    c.data.flip_augment = False
    c.data.max_eval_sequences = 0
    c.streams = {"mv": {"source": "multiview", "split": "train", "views": views,
                        "global_batch_size": 8, "network": "", "flip": False}}
    c.primary_stream = "mv"
    return c


def _streams(config):
    data = streams.load_data(config)
    meta = data.meta
    spec = network.with_data_shapes({"kind": "mlp", "variant": "tiny_mlp", "overrides": {}},
                                    num_joints_in=meta["num_joints_in"],
                                    num_joints_out=meta["num_joints_out"],
                                    in_features=meta["in_features"])
    return streams.make_streams(config, data, {"pose": network.build(spec)}), data


def test_multiview_stream_on_captures(tmp_path, sample):
    labelled = _labelled_capture(tmp_path, sample)
    unlabelled, _, _ = _openpose_capture(tmp_path, sample)
    s, data = _streams(_config([labelled, unlabelled], [labelled]))
    # The unlabelled capture is never labelled data, whatever the protocol.
    assert {q.action_name for q in data.splits["labelled"]} == {"S2_walk"}
    assert {q.action_name for q in data.splits["unlabelled"]} == {"S1_openpose"}
    assert data.without_3d == {("S1", "S1_openpose")}
    assert data.input_layout == "h36m_17" and data.meta["num_joints_in"] == 17
    mv = s.streams["mv"].batches
    groups = mv.group_keys
    for step in (0, 1):
        b = s.batch(step)["mv"]
        own = np.asarray([groups[g] == ("S2", "S2_walk") for g in b["sequence_index"]])
        np.testing.assert_array_equal(b["has_3d"], own.astype(np.float32))
        assert own.any() and not own.all()
        # The labelled views, rotated back to the world, are one pose (metres).
        r = b["extrinsics"][..., :9].reshape(b["extrinsics"].shape[:-1] + (3, 3))
        cam = b["poses_3d"] + b["trajectory"][..., None, :]
        world = np.einsum("...ba,...jb->...ja", r, cam) + b["extrinsics"][..., None, 9:]
        np.testing.assert_allclose(world[own], np.broadcast_to(world[own][:, :1],
                                                                world[own].shape), atol=2e-5)
        truth = sample.views("S2", "walk")[0].positions_world[b["frame_index"][own]]
        np.testing.assert_allclose(world[own][:, 0], truth, atol=2e-5)
        # The unlabelled examples carry zero placeholders (masked out by has_3d).
        assert not np.any(b["poses_3d"][~own])
    # Evaluation on the labelled capture: one sequence per camera.
    assert [a for a, _, _ in data.eval_sequences] == ["S2_walk"] * 3


def test_stream_errors_name_the_config_field(tmp_path, sample):
    unlabelled, _, _ = _openpose_capture(tmp_path, sample)
    with pytest.raises(ValueError, match=r"data\.eval_capture: .* has no 3D labels"):
        streams.load_data(_config([unlabelled], [unlabelled]))
    with pytest.raises(ValueError, match=r"data\.capture: .* are both subject 'S1'"):
        streams.load_data(_config([unlabelled, unlabelled], [], views=2))
    with pytest.raises(ValueError, match=r"data\.capture: the 'capture' source needs"):
        streams.load_data(_config([], []))


# ---------------------------------------------------------------------------- errors


def test_errors_name_the_file_and_field(tmp_path, sample):
    manifest, _, _ = _openpose_capture(tmp_path, sample)
    ok = {n: f"op_S1_{n}/" for n in NAMES}

    def load(cameras, name="bad.toml", **extra):
        return capture.load_manifest(_manifest(tmp_path / name, cameras, **extra))

    with pytest.raises(ValueError, match=r"bad\.toml: cameras\.cam_9: unknown camera "
                                         r"'cam_9'; .*calibration\.toml has cameras"):
        load({**ok, "cam_9": "op_S1_left/"})
    with pytest.raises(ValueError, match=r"calibration\.toml: camera\(s\) \['right'\] have "
                                         r"no detections in .*bad\.toml \[cameras\]"):
        load({n: ok[n] for n in NAMES[:2]})
    with pytest.raises(FileNotFoundError, match=r"bad\.toml: cameras\.front: .*nowhere/"):
        load({**ok, "front": "nowhere/"})
    # A camera whose detector found nobody.
    os.makedirs(tmp_path / "empty")
    with open(tmp_path / "empty" / "video_000000000000_keypoints.json", "w") as f:
        json.dump({"version": 1.3, "people": []}, f)
    with pytest.raises(ValueError, match=r"bad\.toml: cameras\.front: .*has no detections"):
        load({**ok, "front": "empty/"})
    # One camera in another layout (a jpose keypoint .npz in COCO-17).
    np.savez(tmp_path / "coco.npz", keypoints=np.full((12, 17, 2), 500.0),
             layout=np.asarray("coco_17"))
    with pytest.raises(ValueError, match=r"bad\.toml: cameras\.right: detections in layout "
                                         r"'coco_17' but .*cameras\.left's are in "
                                         r"'openpose_body25'"):
        load({**ok, "right": "coco.npz"})
    with pytest.raises(ValueError, match=r"bad\.toml: camera: unknown key"):
        capture.load_manifest(_manifest(tmp_path / "bad.toml", ok, camera="x"))
    with pytest.raises(FileNotFoundError, match=r"bad\.toml: calibration: .*does not exist"):
        with open(tmp_path / "bad.toml", "w") as f:
            f.write('calibration = "none.toml"\n[cameras]\nleft = "op_S1_left/"\n')
        capture.load_manifest(tmp_path / "bad.toml")
    # Cameras matched to the wrong files: the files' intrinsics contradict the
    # calibration; without intrinsics, their labels disagree in the world frame.
    swapped = _labelled_capture(tmp_path, sample, swap=True)
    with pytest.raises(ValueError, match=r"cameras\.left: .*S2_right\.npz: focal_length: "
                                         r".* px contradicts the calibration's"):
        capture.load_manifest(swapped)
    swapped = _labelled_capture(tmp_path, sample, swap=True, intrinsics=False)
    with pytest.raises(ValueError, match=r"cameras\.front: its poses_3d, taken to the "
                                         r"calibration's world frame, are .* m"):
        capture.load_manifest(swapped)
    # Some cameras labelled, others not.
    left = capture.load_manifest(manifest).records[0]
    user_sequences.write_user_sequences(
        tmp_path / "left_labelled.npz", keypoints=left.keypoints, confidence=left.confidence,
        image_size=left.camera.image_size, focal_length=left.camera.focal,
        principal_point=left.camera.principal, layout="openpose_body25",
        poses_3d=sample.views("S1", "walk")[0].positions_camera[2:], poses_3d_layout="h36m_17")
    mixed = {**ok, "left": "left_labelled.npz"}
    with pytest.raises(ValueError, match=r"cameras\.left: has 3D labels .* but "
                                         r".*cameras\.front has none"):
        load(mixed)
    # The same checks from arguments name the detections mapping.
    with pytest.raises(ValueError, match=r"detections\.cam_9: unknown camera"):
        capture.load_capture(tmp_path / "calibration.toml",
                             {**{n: tmp_path / p for n, p in ok.items()}, "cam_9": "x"})
    # A JSON manifest reads as the TOML one.
    js = tmp_path / "capture.json"
    js.write_text(json.dumps({"calibration": "calibration.toml", "cameras": ok,
                              "subject": "S1"}))
    a, b = capture.load_manifest(js), capture.load_manifest(manifest)
    np.testing.assert_array_equal(a.records[1].keypoints, b.records[1].keypoints)
