"""jpose.detections: readers against files written the way each tool writes them.

Fixture files follow the tools' own output: OpenPose ``--write_json`` (one
``<name>_<frame:012d>_keypoints.json`` per frame, compact JSON, ``person_id [-1]``, empty
face/hand arrays), COCO results lists and annotation files, ``alphapose-results.json``
(string image ids, ``box``, placeholder ``idx [0.0]``), and the MediaPipe arrays, JSON
and CSV people save from ``results.pose_landmarks.landmark``.
"""

import csv
import json

import numpy as np
import pytest

from jpose import skeleton as sk
from jpose import detections as det
from jpose.detections import tracking

BODY25 = sk.get("openpose_body25")


# ----------------------------------------------------------------------------- writers


def _openpose_frame(people, *, person_ids=None):
    """One OpenPose JSON document: ``people`` are flat [x, y, c, ...] lists."""
    return {"version": 1.3, "people": [
        {"person_id": [-1 if person_ids is None else person_ids[i]],
         "pose_keypoints_2d": [float(v) for v in p],
         "face_keypoints_2d": [], "hand_left_keypoints_2d": [],
         "hand_right_keypoints_2d": [], "pose_keypoints_3d": [], "face_keypoints_3d": [],
         "hand_left_keypoints_3d": [], "hand_right_keypoints_3d": []}
        for i, p in enumerate(people)]}


def _write_openpose(directory, frames, *, name="clip", pad=12):
    """``frames``: {frame number: [flat person lists]} -> OpenPose's file per frame."""
    directory.mkdir(exist_ok=True)
    for n, people in frames.items():
        path = directory / f"{name}_{n:0{pad}d}_keypoints.json"
        path.write_text(json.dumps(_openpose_frame(people), separators=(",", ":")))
    return directory


def _flat(xy, conf=None):
    """(J, 2) pixels (NaN = undetected) -> OpenPose/COCO flat list with 0, 0, 0 holes."""
    xy = np.asarray(xy, np.float64)
    conf = np.full(len(xy), 0.9) if conf is None else np.asarray(conf, np.float64)
    out = []
    for (x, y), c in zip(xy, conf):
        out += [0.0, 0.0, 0.0] if np.isnan(x) else [float(x), float(y), float(c)]
    return out


def _template(num_joints, seed=0, size=(60.0, 170.0)):
    """A fixed person-shaped cloud of joints (J, 2) of the given width and height."""
    rng = np.random.default_rng(seed)
    pts = rng.uniform(0, 1, (num_joints, 2)) * np.asarray(size)
    pts[0], pts[1] = [0.0, 0.0], size  # Spans the full box.
    return pts


# ----------------------------------------------------------------------------- OpenPose


def test_openpose_values_go_to_the_right_joints_and_zeros_become_nan(tmp_path):
    xy = 100.0 + np.arange(50, dtype=np.float64).reshape(25, 2)
    conf = np.linspace(0.2, 0.95, 25)
    xy[BODY25.index("left_heel")] = np.nan  # OpenPose writes 0, 0, 0
    _write_openpose(tmp_path / "op", {0: [_flat(xy, conf)]})
    out = det.read(tmp_path / "op")
    assert out.format == "openpose" and out.layout == "openpose_body25"
    (track,) = out.tracks
    assert track.keypoints.shape == (1, 25, 2) and track.confidence.shape == (1, 25)
    np.testing.assert_array_equal(track.frames, [0])
    assert track.image_ids == ("clip_000000000000_keypoints.json",)
    # BODY_25 index 1 is Neck, 8 MidHip, 19 LBigToe, 24 RHeel.
    np.testing.assert_array_equal(track.keypoints[0, BODY25.index("neck")], [102.0, 103.0])
    np.testing.assert_array_equal(track.keypoints[0, BODY25.index("pelvis")], [116.0, 117.0])
    np.testing.assert_array_equal(track.keypoints[0, BODY25.index("left_big_toe")],
                                  [138.0, 139.0])
    np.testing.assert_array_equal(track.keypoints[0, BODY25.index("right_heel")],
                                  [148.0, 149.0])
    heel = BODY25.index("left_heel")
    assert np.isnan(track.keypoints[0, heel]).all() and track.confidence[0, heel] == 0.0
    expected_conf = conf.copy()
    expected_conf[heel] = 0.0
    np.testing.assert_allclose(track.confidence[0], expected_conf)
    # Conversion by name: the pelvis is MidHip, the neck is Neck.
    h36m = sk.convert(np.nan_to_num(track.keypoints), out.layout, "h36m_17")
    np.testing.assert_array_equal(h36m[0, sk.H36M_17.index("pelvis")], [116.0, 117.0])
    np.testing.assert_array_equal(h36m[0, sk.H36M_17.index("neck")], [102.0, 103.0])


def test_openpose_frames_in_natural_order_with_empty_frames(tmp_path):
    # Unpadded numbers: text order would be 1, 10, 2.
    base = _template(25)
    frames = {n: [_flat(base + [10.0 * n, 0.0])] for n in (1, 2, 10)}
    frames[3] = []  # Nobody in frame 3.
    _write_openpose(tmp_path / "op", frames, pad=1)
    (track,) = det.read_openpose(tmp_path / "op").tracks
    np.testing.assert_array_equal(track.frames, [1, 2, 3, 10])
    np.testing.assert_allclose(track.keypoints[:, 0, 0], [10.0, 20.0, np.nan, 100.0])
    assert not track.detected[2] and track.num_detections == 3


def test_openpose_body25b_needs_the_argument_and_coco18_is_detected(tmp_path):
    xy = 100.0 + np.arange(50, dtype=np.float64).reshape(25, 2)
    _write_openpose(tmp_path / "b", {0: [_flat(xy)]})
    b = det.read(tmp_path / "b", layout="openpose_body25b")
    assert b.layout == "openpose_body25b"
    head_top = sk.get("openpose_body25b").index("head_top")  # BODY_25B index 18
    assert head_top == 18
    np.testing.assert_array_equal(b.tracks[0].keypoints[0, 18], [136.0, 137.0])
    h36m = sk.convert(b.tracks[0].keypoints, b.layout, "h36m_17")
    np.testing.assert_array_equal(h36m[0, sk.H36M_17.index("head_top")], [136.0, 137.0])
    # 54 values: OpenPose's COCO-18 model.
    _write_openpose(tmp_path / "c", {0: [_flat(xy[:18])]})
    c = det.read(tmp_path / "c")
    assert c.layout == "openpose_coco18"
    np.testing.assert_array_equal(c.tracks[0].keypoints[0, 1], [102.0, 103.0])  # Neck


def test_openpose_errors_name_file_and_field(tmp_path):
    d = _write_openpose(tmp_path / "bad", {0: [_flat(_template(25) + 50)]})
    bad = d / "clip_000000000001_keypoints.json"
    bad.write_text(json.dumps(_openpose_frame([[1.0] * 74])))
    with pytest.raises(det.DetectionsFormatError) as e:
        det.read(d)
    assert str(e.value) == (f"{bad}: people[0].pose_keypoints_2d has 74 values; expected "
                            "75 (BODY_25) or 54 (COCO-18)")
    assert e.value.path == str(bad) and e.value.field == "people[0].pose_keypoints_2d"
    # Mixing models across frames.
    bad.write_text(json.dumps(_openpose_frame([_flat(_template(18) + 50)])))
    with pytest.raises(ValueError, match=r"has 54 values; expected 75 like the files"):
        det.read(d)
    bad.write_text(json.dumps({"version": 1.3}))
    with pytest.raises(ValueError, match=r"_000000000001_keypoints.json: people is missing"):
        det.read(d)
    # --keypoint_scale 3 (normalised) output.
    bad.write_text(json.dumps(_openpose_frame([_flat(_template(25) / 200.0)])))
    with pytest.raises(ValueError, match=r"look normalised.*--keypoint_scale 0"):
        det.read(d)
    with pytest.raises(ValueError, match="expected 75 for layout 'openpose_body25b'"):
        (d / "clip_000000000001_keypoints.json").write_text(
            json.dumps(_openpose_frame([_flat(_template(18) + 50)])))
        det.read(d, layout="openpose_body25b")
    e2 = _write_openpose(tmp_path / "two", {5: [], 6: []}, name="a")
    _write_openpose(e2, {5: []}, name="b")
    with pytest.raises(ValueError, match="two files for frame 5"):
        det.read(e2)
    with pytest.raises(ValueError, match="without OpenPose"):
        (tmp_path / "empty").mkdir()
        det.read(tmp_path / "empty")


# ----------------------------------------------------------------------------- tracking


def _crossing(num_frames=16):
    """Two people walking towards each other 25 px/frame, 10 px apart vertically."""
    a = [_template(25, seed=1) + [20.0 + 25.0 * t, 100.0] for t in range(num_frames)]
    b = [_template(25, seed=2, size=(55.0, 160.0)) + [395.0 - 25.0 * t, 110.0]
         for t in range(num_frames)]
    return np.array(a), np.array(b)


def test_two_people_crossing_are_tracked_through_the_crossing(tmp_path):
    a, b = _crossing()
    frames = {}
    for t in range(len(a)):
        people = [_flat(a[t]), _flat(b[t])]
        if t % 2:  # OpenPose orders people arbitrarily per frame.
            people.reverse()
        if t == 9:  # B is not detected in frame 9 (just after the crossing).
            people = [_flat(a[t])]
        frames[t] = people
    out = det.read(_write_openpose(tmp_path / "op", frames))
    assert out.track_ids == (0, 1)
    ta, tb = out.tracks  # A appears first in frame 0.
    np.testing.assert_array_equal(ta.frames, np.arange(16))
    np.testing.assert_allclose(ta.keypoints, a)
    np.testing.assert_array_equal(tb.frames, np.arange(16))
    expected_b = b.copy()
    expected_b[9] = np.nan
    np.testing.assert_allclose(tb.keypoints, expected_b)
    assert tb.confidence[9].max() == 0.0 and tb.num_detections == 15
    # max_gap=1 (frame numbers): B's one-frame absence (8 -> 10) ends it; a new track
    # starts at frame 10.
    people = [np.stack([a[t], b[t]]) if t != 9 else a[t][None] for t in range(16)]
    ids = tracking.associate(people, max_gap=1)
    assert [list(i) for i in ids[8:11]] == [[0, 1], [0], [0, 2]]
    assert [list(i) for i in tracking.associate(people)[8:11]] == [[0, 1], [0], [0, 1]]


def test_select_track_is_the_largest_or_the_given_id():
    def track(tid, n, size):
        kp = np.stack([_template(17, size=(size, size))] * n)
        return det.Track(tid, kp, np.ones(kp.shape[:2]), np.arange(n), ())
    # 10 frames x diag 100*sqrt2 beats 4 frames x diag 200*sqrt2; then the tie -> lower id.
    d = det.Detections2D((track(0, 4, 200.0), track(1, 10, 100.0), track(2, 8, 125.0)),
                         "coco_17", None, "x.json", "coco")
    assert det.select_track(d).id == 1
    assert det.select_track(d, person=2).id == 2
    assert det.track_size(d.tracks[1]) == pytest.approx(10 * 100.0 * np.sqrt(2))
    with pytest.raises(ValueError, match=r"no track 7; tracks are 0 \(4 frames\), 1"):
        det.select_track(d, person=7)
    tie = d._replace(tracks=(track(3, 5, 100.0), track(4, 5, 100.0)))
    assert det.select_track(tie).id == 3


# ----------------------------------------------------------------------------- COCO


def _coco_entry(image_id, xy, conf=None, **extra):
    return {"image_id": image_id, "category_id": 1, "keypoints": _flat(xy, conf),
            "score": 0.93, **extra}


def test_coco_results_with_track_ids_and_string_ids_in_natural_order(tmp_path):
    p0 = _template(17, seed=3) + 300
    p1 = _template(17, seed=4) + 600
    entries = []
    for name, shift in [("frame_10.jpg", 10.0), ("frame_2.jpg", 2.0), ("frame_1.jpg", 1.0)]:
        q1 = p1 + shift
        if name == "frame_2.jpg":
            q1 = q1.copy()
            q1[5] = np.nan  # left_shoulder undetected: 0, 0, 0
        entries.append(_coco_entry(name, q1, track_id=7))
        entries.append(_coco_entry(name, p0 + shift, track_id=3))
    path = tmp_path / "results.json"
    path.write_text(json.dumps(entries))
    out = det.read(path)
    assert out.format == "coco" and out.layout == "coco_17" and out.track_ids == (3, 7)
    t3, t7 = out.tracks
    np.testing.assert_array_equal(t3.frames, [1, 2, 10])
    assert t3.image_ids == ("frame_1.jpg", "frame_2.jpg", "frame_10.jpg")
    np.testing.assert_allclose(t3.keypoints[:, 0], p0[0] + np.array([[1.0], [2.0], [10.0]]))
    assert np.isnan(t7.keypoints[1, 5]).all() and t7.confidence[1, 5] == 0.0
    np.testing.assert_allclose(t7.confidence[0], 0.9)
    np.testing.assert_allclose(t7.keypoints[1, 6], p1[6] + 2.0)


def test_coco_results_without_track_ids_are_associated(tmp_path):
    a, b = _crossing(8)
    coco_a, coco_b = a[:, :17], b[:, :17]
    entries = []
    for t in range(8):
        pair = [_coco_entry(t, coco_b[t]), _coco_entry(t, coco_a[t])]
        entries += pair if t % 3 else pair[::-1]
    path = tmp_path / "person_keypoints_results.json"
    path.write_text(json.dumps(entries))
    out = det.read(path)
    assert out.track_ids == (0, 1)
    by_first_x = sorted(out.tracks, key=lambda t: t.keypoints[0, 0, 0])
    np.testing.assert_allclose(by_first_x[0].keypoints, coco_a)
    np.testing.assert_allclose(by_first_x[1].keypoints, coco_b)
    np.testing.assert_array_equal(by_first_x[0].frames, np.arange(8))


def test_coco_annotation_file(tmp_path):
    p = _template(17, seed=5) + 200
    kp = []
    for j, (x, y) in enumerate(p):
        kp += [0, 0, 0] if j == 3 else [float(x), float(y), 1 if j == 4 else 2]
    data = {
        "images": [{"id": i, "file_name": f"{i:06d}.jpg", "width": 1280, "height": 720}
                   for i in (10, 2, 3)],
        "annotations": [{"id": 1, "image_id": 2, "category_id": 1, "keypoints": kp,
                         "num_keypoints": 16, "track_id": 0},
                        {"id": 2, "image_id": 10, "category_id": 1, "keypoints": kp,
                         "num_keypoints": 16, "track_id": 0}],
        "categories": [{"id": 1, "name": "person"}],
    }
    path = tmp_path / "annotations.json"
    path.write_text(json.dumps(data))
    out = det.read(path)
    assert out.image_size == (1280.0, 720.0) and out.format == "coco"
    (track,) = out.tracks
    np.testing.assert_array_equal(track.frames, [2, 3, 10])  # image 3 has nobody
    assert not track.detected[1]
    assert track.confidence[0, 3] == 0.0 and track.confidence[0, 4] == 1.0  # v flags
    np.testing.assert_allclose(track.keypoints[2, 16], p[16])
    with pytest.raises(ValueError, match=r"image_size: the argument gives"):
        det.read(path, image_size=(640, 480))


def test_alphapose_halpe26_placeholder_idx_and_real_track_ids(tmp_path):
    a, b = _crossing(6)
    ha, hb = a[:, :26 - 1], b[:, :26 - 1]
    ha = np.concatenate([ha, ha[:, :1] + 5], axis=1)  # 26 joints
    hb = np.concatenate([hb, hb[:, :1] + 5], axis=1)

    def entry(t, xy, idx):
        e = _coco_entry(f"{t}.jpg", xy)
        e.update(score=2.9, box=[float(xy[:, 0].min()), float(xy[:, 1].min()), 60.0,
                                 170.0], idx=idx)
        return e
    # Without --pose_track every person gets the placeholder idx [0.0]: not a track id.
    entries = [entry(t, xy, [0.0]) for t in range(6) for xy in (hb[t], ha[t])]
    path = tmp_path / "alphapose-results.json"
    path.write_text(json.dumps(entries))
    out = det.read(path)
    assert out.format == "alphapose" and out.layout == "halpe_26"
    assert len(out.tracks) == 2
    np.testing.assert_array_equal(out.tracks[0].frames, np.arange(6))
    # With --pose_track idx is an int per person and is used.
    entries = [entry(t, xy, i) for t in range(6) for i, xy in ((5, hb[t]), (9, ha[t]))]
    path.write_text(json.dumps(entries))
    out = det.read_alphapose(path)
    assert out.track_ids == (5, 9)
    np.testing.assert_allclose(out.track(9).keypoints, ha)
    halpe = sk.convert(out.track(9).keypoints, out.layout, "h36m_17")
    np.testing.assert_allclose(halpe[:, sk.H36M_17.index("pelvis")],
                               ha[:, sk.HALPE_26.index("pelvis")])


@pytest.mark.parametrize("joints,layout,kept", [(136, "halpe_26", 26),
                                                (133, "coco_wholebody_23", 23)])
def test_whole_body_files_keep_the_body(tmp_path, joints, layout, kept):
    xy = _template(joints, seed=6) + 100
    path = tmp_path / "alphapose-results.json"
    path.write_text(json.dumps([_coco_entry("0.jpg", xy, box=[0, 0, 1, 1], idx=[0.0])]))
    out = det.read(path)
    assert out.layout == layout
    np.testing.assert_allclose(out.tracks[0].keypoints[0], xy[:kept])


def test_coco_errors_name_file_and_field(tmp_path):
    good = _coco_entry(1, _template(17) + 100)
    path = tmp_path / "r.json"
    path.write_text(json.dumps([good, good | {"image_id": 2}, {**good, "keypoints": [1.0] * 50}]))
    with pytest.raises(det.DetectionsFormatError) as e:
        det.read(path)
    assert str(e.value) == (f"{path}: [2].keypoints has 50 values; expected one of 51 "
                            "(COCO-17), 78 (Halpe-26), 399 (COCO-WholeBody-133), 408 "
                            "(Halpe-136)")
    path.write_text(json.dumps([good | {"track_id": 1}, good | {"track_id": 1}]))
    with pytest.raises(ValueError, match=r"r.json: track_id 1 appears twice in image_id 1"):
        det.read(path)
    path.write_text(json.dumps([good | {"track_id": 1}, good | {"image_id": 2}]))
    with pytest.raises(ValueError, match=r"\[1\].track_id is missing but other entries"):
        det.read(path)
    path.write_text(json.dumps([good, good | {"image_id": "2.jpg"}]))
    with pytest.raises(ValueError, match="image_id values mix ints and strings"):
        det.read(path)
    path.write_text(json.dumps([good | {"image_id": 2.5}]))
    with pytest.raises(ValueError, match=r"\[0\].image_id must be an int or a string"):
        det.read(path)
    path.write_text("[{\"image_id\": 1,")
    with pytest.raises(ValueError, match="r.json: is not valid JSON"):
        det.read(path)


# ----------------------------------------------------------------------------- MediaPipe


def _mediapipe_sequence(num_frames=4):
    """(T, 33, 4) x, y normalised, z, visibility, as ``[lm.x, lm.y, lm.z, lm.visibility]``."""
    rng = np.random.default_rng(7)
    arr = np.empty((num_frames, 33, 4))
    arr[..., :2] = rng.uniform(0.2, 0.8, (num_frames, 33, 2))
    arr[..., 2] = rng.uniform(-0.6, 0.1, (num_frames, 33))
    arr[..., 3] = rng.uniform(0.0, 1.0, (num_frames, 33))
    return arr


def test_mediapipe_arrays_need_image_size_and_give_pixels(tmp_path):
    arr = _mediapipe_sequence()
    arr[2] = np.nan  # No person in frame 2.
    path = tmp_path / "landmarks.npy"
    np.save(path, arr)
    with pytest.raises(det.DetectionsFormatError) as e:
        det.read(path)
    assert str(e.value).startswith(f"{path}: x, y are normalised to [0, 1] of the image")
    assert "image_size=(width, height)" in str(e.value)
    out = det.read(path, image_size=(1920, 1080))
    assert out.format == "mediapipe" and out.layout == "mediapipe_33"
    (track,) = out.tracks
    np.testing.assert_allclose(track.keypoints[0], arr[0, :, :2] * [1920.0, 1080.0])
    np.testing.assert_allclose(track.confidence[0], arr[0, :, 3])
    assert np.isnan(track.keypoints[2]).all() and not track.confidence[2].any()
    # x, y, z (no visibility) mistaken for x, y, visibility: z is out of [0, 1].
    np.save(path, arr[..., :3])
    with pytest.raises(ValueError, match=r"visibility \(channel 2\).*pass channels="):
        det.read(path, image_size=(1920, 1080))
    xyz = det.read(path, image_size=(1920, 1080), channels="xyz")
    np.testing.assert_allclose(xyz.tracks[0].confidence[0], 1.0)
    # Conversion to Human3.6M: pelvis = mid-hip of left_hip (23) and right_hip (24).
    h36m = sk.convert(out.tracks[0].keypoints, out.layout, "h36m_17")
    np.testing.assert_allclose(h36m[0, 0], (arr[0, 23, :2] + arr[0, 24, :2]) / 2
                               * [1920.0, 1080.0])


def test_mediapipe_json_and_csv_wide_and_long_agree(tmp_path):
    arr = _mediapipe_sequence(3)
    frames = [[{"x": float(x), "y": float(y), "z": float(z), "visibility": float(v)}
               for x, y, z, v in arr[t]] for t in range(3)]
    (tmp_path / "pose.json").write_text(json.dumps(frames))
    with open(tmp_path / "wide.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["frame"] + [f"{k}{j}" for j in range(33)
                                for k in ("x", "y", "z", "visibility")])
        for t in range(3):
            w.writerow([t] + [repr(float(v)) for v in arr[t].ravel()])
    with open(tmp_path / "long.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["frame", "landmark", "x", "y", "z", "visibility"])
        for t in range(3):
            for j in range(33):
                w.writerow([t, j] + [repr(float(v)) for v in arr[t, j]])
    size = (640, 480)
    outs = [det.read(tmp_path / n, image_size=size) for n in ("pose.json", "wide.csv",
                                                              "long.csv")]
    for out in outs:
        assert out.format == "mediapipe"
        np.testing.assert_allclose(out.tracks[0].keypoints, arr[..., :2] * size)
        np.testing.assert_allclose(out.tracks[0].confidence, arr[..., 3])
        np.testing.assert_array_equal(out.tracks[0].frames, [0, 1, 2])
    # Frame objects with "frame" numbers and landmark names in long CSV.
    (tmp_path / "framed.json").write_text(json.dumps(
        [{"frame": 20, "landmarks": frames[0]}, {"frame": 5, "landmarks": frames[1]}]))
    framed = det.read(tmp_path / "framed.json", image_size=size)
    np.testing.assert_array_equal(framed.tracks[0].frames, [5, 20])
    bad = frames[0][:32]
    (tmp_path / "bad.json").write_text(json.dumps([bad]))
    with pytest.raises(ValueError, match=r"bad.json: \[0\] has 32 landmarks; expected 33"):
        det.read(tmp_path / "bad.json", image_size=size)


# ----------------------------------------------------------------------------- npz


def test_npz_keypoints_with_layout_field(tmp_path):
    kp = np.zeros((3, 17, 3))
    kp[..., :2] = _template(17) + 100
    kp[..., 2] = 0.8
    kp[1, 4, :2] = np.nan
    path = tmp_path / "det.npz"
    np.savez(path, keypoints=kp, layout=np.asarray("coco_17"), frames=np.array([4, 5, 7]),
             image_size=np.array([1280, 720]))
    out = det.read(path)
    assert out.format == "npz" and out.layout == "coco_17" and out.image_size == (1280, 720)
    (track,) = out.tracks
    np.testing.assert_array_equal(track.frames, [4, 5, 7])
    assert np.isnan(track.keypoints[1, 4]).all() and track.confidence[1, 4] == 0.0
    np.testing.assert_allclose(track.confidence[0], 0.8)
    with pytest.raises(ValueError, match="stores 'coco_17'"):
        det.read(path, layout="h36m_17")
    np.savez(path, keypoints=kp[..., :2])
    with pytest.raises(ValueError, match=r"det.npz: layout is missing"):
        det.read(path)
    assert det.read(path, layout="coco_17").tracks[0].confidence[0, 0] == 1.0


# ----------------------------------------------------------------------------- fill


def test_fill_linear_hand_computed():
    frames = np.array([0, 1, 2, 4, 8])
    kp = np.zeros((5, 3, 2))
    kp[:, 0] = [[0, 0], [np.nan, np.nan], [20, 40], [0, 0], [80, 160]]
    kp[:, 1] = [[1, 1], [2, 2], [3, 3], [4, 4], [5, 5]]
    kp[:, 2] = 7.0
    conf = np.ones((5, 3))
    conf[:, 0] = [0.9, 0.0, 0.9, 0.1, 0.9]      # frames 1 (missing) and 4 (low) filled
    conf[:, 1] = [0.1, 0.9, 0.9, 0.9, 0.2]      # the edges are held
    conf[:, 2] = 0.0                            # never valid: the mean of the others
    out = det.fill_linear(kp, conf, threshold=0.5, frames=frames)
    # Joint 0 from (t=0, 0), (t=2, 20/40), (t=8, 80/160): t=1 -> (10, 20); t=4 -> (40, 80).
    np.testing.assert_allclose(out.keypoints[:, 0], [[0, 0], [10, 20], [20, 40], [40, 80],
                                                     [80, 160]])
    np.testing.assert_allclose(out.keypoints[:, 1, 0], [2, 2, 3, 4, 4])
    np.testing.assert_allclose(out.keypoints[:, 2], (out.keypoints[:, 0] + out.keypoints[:, 1]) / 2)
    np.testing.assert_array_equal(out.filled[:, 0], [False, True, False, True, False])
    assert out.filled[:, 2].all() and out.status == "interpolated"
    with pytest.raises(ValueError, match="no joint has confidence >= threshold"):
        det.fill_linear(kp, conf * 0, threshold=0.5)


def test_fill_linear_never_seen_joints_use_the_layout():
    pose = _template(25, seed=9) + 100
    kp = np.stack([pose, pose + 10])
    conf = np.ones((2, 25))
    pelvis, wrist = BODY25.index("pelvis"), BODY25.index("left_wrist")
    conf[:, pelvis] = 0.0  # MidHip never detected: the mid-hip
    conf[:, wrist] = 0.0   # LWrist never detected: on its elbow (no rule gives a wrist)
    out = det.fill_linear(kp, conf, threshold=0.3, layout="openpose_body25")
    lh, rh = BODY25.index("left_hip"), BODY25.index("right_hip")
    np.testing.assert_allclose(out.keypoints[:, pelvis], (kp[:, lh] + kp[:, rh]) / 2)
    np.testing.assert_allclose(out.keypoints[:, wrist], kp[:, BODY25.index("left_elbow")])


def test_fill_low_rank_on_2d_tracks():
    t = np.arange(40.0)
    base = _template(6, seed=11, size=(60.0, 170.0))
    truth = (base[None] + np.stack([300 + 40 * np.sin(t / 6), 200 + 10 * np.cos(t / 9)], -1)
             [:, None] + 8 * np.sin(t / 5 + np.arange(6)[:, None]).T[..., None])
    rng = np.random.default_rng(12)
    conf = np.where(rng.random((40, 6)) < 0.2, 0.1, 0.9)
    conf[10:16, 2] = 0.0  # a longer gap
    kp = np.where(conf[..., None] > 0, truth, np.nan)
    frames = np.concatenate([np.arange(20), np.arange(21, 41)])  # frame 20 not in the file
    out = det.fill_low_rank(kp, conf, threshold=0.5, frames=frames)
    assert out.status in ("converged", "max_iterations") and out.iterations > 0
    valid = conf >= 0.5
    np.testing.assert_array_equal(out.keypoints[valid], kp[valid])  # detections kept exactly
    assert np.isfinite(out.keypoints).all()
    err = np.linalg.norm(out.keypoints - truth, axis=-1)[~valid]
    linear = det.fill_linear(kp, conf, threshold=0.5, frames=frames)
    lin_err = np.linalg.norm(linear.keypoints - truth, axis=-1)[~valid]
    assert err.mean() < 3.0 and err.mean() < 1.5 * lin_err.mean()


def test_read_recognises_single_files_and_format_override(tmp_path):
    xy = _template(25) + 100
    d = _write_openpose(tmp_path / "op", {12: [_flat(xy)]})
    one = det.read(d / "clip_000000000012_keypoints.json")
    assert one.format == "openpose"
    np.testing.assert_array_equal(one.tracks[0].frames, [12])
    arr = _mediapipe_sequence(2)
    np.savez(tmp_path / "mp.npz", landmarks=arr, image_size=np.array([100, 50]))
    mp = det.read(tmp_path / "mp.npz")
    assert mp.format == "mediapipe" and mp.image_size == (100.0, 50.0)
    np.testing.assert_allclose(mp.tracks[0].keypoints, arr[..., :2] * [100.0, 50.0])
    with open(tmp_path / "named.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["frame", "landmark", "x", "y", "visibility"])
        w.writerow([3, "LEFT_SHOULDER", 0.5, 0.25, 0.75])
    named = det.read(tmp_path / "named.csv", image_size=(200, 100))
    kp = named.tracks[0].keypoints[0]
    np.testing.assert_allclose(kp[11], [100.0, 25.0])  # left_shoulder is landmark 11
    assert np.isnan(kp[0]).all() and named.tracks[0].confidence[0, 11] == 0.75
    path = tmp_path / "results.json"
    path.write_text(json.dumps([_coco_entry(0, _template(17) + 100)]))
    assert det.read(path, format="alphapose").format == "alphapose"
    with pytest.raises(ValueError, match="format: expected one of"):
        det.read(path, format="yolo")
    with pytest.raises(FileNotFoundError):
        det.read(tmp_path / "nope.json")
