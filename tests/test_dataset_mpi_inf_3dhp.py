"""MPI-INF-3DHP builder: a fake raw release built end to end, values checked against it."""

import os
import shutil
from types import MappingProxyType

import h5py
import numpy as np
import pytest
import scipy.io

from jpose import skeleton
from jpose.datasets import raw_files, tfds_build
from jpose.datasets.mpi_inf_3dhp import Mpi3dhpConfig, fake_raw, raw

NAME = "mpi_inf_3dhp"
# The fake's 28 names, written independently of jpose.skeleton (from DATASET_FORMATS 3.3).
NAMES_28 = fake_raw._JOINTS_28
RELEVANT = [7, 5, 14, 15, 16, 9, 10, 11, 23, 24, 25, 18, 19, 20, 4, 3, 6]
SHORT = ("S2", "Seq1", 2)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("mpi_inf_3dhp")
    manual, data = str(root / "raw"), str(root / "data")
    # S1: in the (patched) frame-count table -> 12 of 15 rows. S2/Seq1: unknown, with
    # videos (one short) -> longest video, fps from the video. S2/Seq2: unknown, no
    # video -> all 15 rows at 25 fps.
    truth = fake_raw.write_fake_release(manual, short_videos={SHORT: 8}, fps={("S2", "Seq1"): 50.0})
    table = {k: v for k, v in truth["frame_counts"].items() if k[0] == "S1"}
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(raw, "SEQUENCE_INFO", MappingProxyType(table))
        for config in ("poses", "images"):
            tfds_build.build(NAME, manual_dir=manual, data_dir=data, config=config, progress=False)
    return {"truth": truth, "manual": manual, "data": data}


def _load(built, split, config="poses"):
    source = tfds_build.load(NAME, data_dir=built["data"], split=split, config=config)
    return [source[i] for i in range(len(source))]


def _read(path):
    with open(path) as f:
        return f.read()


def _close(a, b, atol=1e-5):
    np.testing.assert_allclose(np.asarray(a, np.float64), np.asarray(b, np.float64),
                               rtol=1e-6, atol=atol)


def test_skeleton_layouts_match_documented_orders():
    assert skeleton.get("mpi_inf_3dhp_28").joint_names == NAMES_28
    s17 = skeleton.get("mpi_inf_3dhp_17")
    assert s17.joint_names == tuple(NAMES_28[i] for i in RELEVANT)
    assert s17.joint_names[14] == "pelvis" and s17.root == 14
    assert tuple(RELEVANT) == raw.RELEVANT_17


def test_splits_and_frame_counts(built):
    info = tfds_build.builder_class(NAME)(data_dir=built["data"], config="poses").info
    assert set(info.splits.keys()) == {"S1", "S2", "test"}
    frames = {}
    for split in ("S1", "S2"):
        for ex in _load(built, split):
            key = (ex["subject"].decode(), ex["sequence"].decode())
            frames.setdefault(key, set()).add(len(ex["positions_camera"]))
            assert key[0] == split
    # 15 rows each: table -> 12, longest video -> 12, no video -> all 15.
    assert frames == {("S1", "Seq1"): {12}, ("S1", "Seq2"): {12},
                      ("S2", "Seq1"): {12}, ("S2", "Seq2"): {15}}


def test_training_poses_values_units_and_world_frame(built):
    truth = built["truth"]["train"]
    # Table fps (S1), the video's rate (S2/Seq1), the 25 fps default (S2/Seq2, no video).
    expected_fps = {("S1", "Seq1"): 25.0, ("S1", "Seq2"): 50.0,
                    ("S2", "Seq1"): 50.0, ("S2", "Seq2"): 25.0}
    seen = set()
    for split in ("S1", "S2"):
        for ex in _load(built, split):
            subject, sequence = ex["subject"].decode(), ex["sequence"].decode()
            c = int(ex["camera_index"])
            seen.add((subject, sequence, c))
            t = truth[(subject, sequence)]
            f = len(ex["positions_camera"])
            assert ex["camera_id"] == str(c).encode() and ex["action"] == b""
            assert ex["subaction"] == int(sequence[-1])
            assert ex["fps"] == expected_fps[(subject, sequence)]
            _close(ex["positions_camera_full"], t["positions_camera_full"][c, :f])
            _close(ex["keypoints_2d_full"], t["keypoints_2d_full"][c, :f], atol=1e-3)
            _close(ex["positions_camera_universal"], t["positions_camera_universal"][c, :f])
            # Every camera's world pose is the fake's world truth: checks the calibration
            # parsing (R, t in mm) and x_world = R^T x_cam + centre.
            _close(ex["positions_world_full"], t["positions_world_full"][:f])
            # 17 joints: by name from the 28.
            for j, name in enumerate(skeleton.get("mpi_inf_3dhp_17").joint_names):
                k = NAMES_28.index(name)
                _close(ex["positions_camera"][:, j], t["positions_camera_full"][c, :f, k])
                _close(ex["positions_world"][:, j], t["positions_world_full"][:f, k])
                _close(ex["keypoints_2d"][:, j], t["keypoints_2d_full"][c, :f, k], atol=1e-3)
            cam = ex["camera"]
            _close(cam["rotation"], t["cameras"][c]["rotation"], atol=1e-6)
            _close(cam["centre"], t["cameras"][c]["centre"])
            _close(cam["focal"], t["cameras"][c]["focal"])
            _close(cam["principal"], t["cameras"][c]["principal"])
            _close(cam["image_size"], [96, 80])
            assert not cam["radial"].any() and not cam["tangential"].any()
            # The camera model reprojects the world pose onto the 2D annotation.
            x_cam = (ex["positions_world"] - cam["centre"][None, None]) @ cam["rotation"].T
            uv = x_cam[..., :2] / x_cam[..., 2:] * cam["focal"] + cam["principal"]
            _close(uv, ex["keypoints_2d"], atol=2e-3)
            assert ex["valid"].dtype == bool and ex["valid"].all() and not ex["activity"].any()
    assert seen == {(s, q, c) for (s, q) in truth for c in range(14)}


def test_millimetres_in_the_file_become_metres(built):
    # Independent of the fake's truth: the file's own numbers, divided by 1000.
    path = os.path.join(built["manual"], "S1", "Seq2", "annot.mat")
    annot3 = scipy.io.loadmat(path)["annot3"][5][0]  # camera 5, (rows, 84) mm
    ex = next(e for e in _load(built, "S1") if e["sequence"] == b"Seq2" and e["camera_index"] == 5)
    np.testing.assert_allclose(ex["positions_camera_full"][3, 7], annot3[3, 21:24] / 1000,
                               rtol=1e-6)
    assert np.abs(annot3[:, 2::3]).max() > 1000  # depths are millimetres in the file


def test_test_split_poses(built):
    truth = built["truth"]["test"]
    examples = {ex["subject"].decode(): ex for ex in _load(built, "test")}
    assert set(examples) == {"TS1", "TS5"}
    sizes = {"TS1": (64, 64), "TS5": (96, 54)}
    for name, ex in examples.items():
        t = truth[name]
        _close(ex["positions_camera"], t["positions_camera"])
        _close(ex["positions_world"], t["positions_camera"])  # world frame = camera frame
        _close(ex["keypoints_2d"], t["keypoints_2d"], atol=1e-3)
        _close(ex["positions_camera_universal"], t["positions_camera_universal"])
        np.testing.assert_array_equal(ex["valid"], t["valid"])
        np.testing.assert_array_equal(ex["activity"], t["activity"])
        full = ex["positions_camera_full"]
        _close(full[:, RELEVANT], t["positions_camera"])
        others = [k for k in range(28) if k not in RELEVANT]
        assert np.isnan(full[:, others]).all()
        assert np.isnan(ex["keypoints_2d_full"][:, others]).all()
        cam = ex["camera"]
        np.testing.assert_allclose(cam["focal"], t["focal"], rtol=1e-4)
        np.testing.assert_allclose(cam["principal"], t["principal"], atol=1e-2)
        _close(cam["rotation"], np.eye(3))
        _close(cam["image_size"], sizes[name])
        assert ex["camera_index"] == -1 and ex["camera_id"] == b"" and ex["subaction"] == 0
        assert ex["fps"] == {"TS1": 25.0, "TS5": 50.0}[name]


def _dot_centroid(image):
    # The fake draws a white disc (255) on grey (60): threshold half way.
    mask = image.astype(np.float64).mean(-1) > 157
    assert mask.sum() > 3
    ys, xs = np.nonzero(mask)
    return np.array([xs.mean(), ys.mean()])


def _check_crop(ex, keypoints_17, dot, crop=256):
    # Independent square box: centre of the tight box, side 1.25 x its larger extent.
    lo, hi = keypoints_17.min(0), keypoints_17.max(0)
    half = 1.25 * (hi - lo).max() / 2
    box = np.concatenate([(lo + hi) / 2 - half, (lo + hi) / 2 + half])
    _close(ex["box"], box, atol=1e-3)
    _close(ex["keypoints_2d"], (keypoints_17 - box[:2]) * crop / (2 * half), atol=1e-2)
    assert ex["image"].shape == (crop, crop, 3)
    # The disc drawn at the dot joint is found at that joint's crop keypoint (within
    # half a source pixel: disc rasterisation, codecs, resampling), so the right frame
    # was decoded and the crop geometry matches its keypoints.
    scale = crop / (2 * half)
    error = np.linalg.norm(_dot_centroid(ex["image"]) - ex["keypoints_2d"][dot])
    assert error < 0.5 * scale, (error, scale)


def test_training_crops(built):
    truth = built["truth"]
    dot = skeleton.get("mpi_inf_3dhp_17").index(truth["dot_joint"])
    seen = set()
    for split in ("S1", "S2"):
        for ex in _load(built, split, "images"):
            s, q = ex["subject"].decode(), ex["sequence"].decode()
            c, f = int(ex["camera_index"]), int(ex["frame_index"])
            seen.add((s, q, c, f))
            t = truth["train"][(s, q)]
            _check_crop(ex, t["keypoints_2d_full"][c, f, RELEVANT], dot)
            _close(ex["positions_camera"], t["positions_camera_full"][c, f, RELEVANT])
            assert ex["valid"] and ex["activity"] == 0
    expected = {(s, q, c, f) for s, q in [("S1", "Seq1"), ("S1", "Seq2"), ("S2", "Seq1")]
                for c in (0, 2, 5) for f in (0, 10)}
    expected.discard(SHORT + (10,))  # the short video (8 frames) has no frame 10
    assert seen == expected


def test_test_crops_valid_frames_only(built):
    truth = built["truth"]
    dot = skeleton.get("mpi_inf_3dhp_17").index(truth["dot_joint"])
    seen = set()
    for ex in _load(built, "test", "images"):
        name, f = ex["subject"].decode(), int(ex["frame_index"])
        t = truth["test"][name]
        seen.add((name, f))
        _check_crop(ex, t["keypoints_2d"][f], dot)
        _close(ex["positions_camera"], t["positions_camera"][f])
        assert ex["valid"] and ex["activity"] == t["activity"][f] and ex["camera_index"] == -1
    assert seen == {(n, f) for n, t in truth["test"].items() for f in np.flatnonzero(t["valid"])}


# ---------------------------------------------------------------------- readers


def test_calibration_file_format_and_parser(built):
    path = os.path.join(built["manual"], "S1", "Seq1", "camera.calibration")
    text = _read(path)
    lines = text.splitlines(keepends=True)
    assert lines[0] == "Skeletool Camera Calibration File V1.0\n" and len(lines) == 1 + 14 * 7
    cams = built["truth"]["train"][("S1", "Seq1")]["cameras"]
    for c in range(14):
        # The fixed columns and line numbers naive parsers (mmpose, SPIN) rely on.
        assert lines[c * 7 + 1] == f"name          {c}\n"
        assert lines[c * 7 + 3][:14] == "  size        "
        assert lines[c * 7 + 3][14:].split() == ["96", "80"]
        intrinsic = np.array(lines[c * 7 + 5][11:-2].split(), float).reshape(4, 4)
        assert lines[c * 7 + 5].endswith(" \n") and lines[c * 7 + 5].startswith("  intrinsic   ")
        _close(intrinsic[[0, 1], [0, 1]], cams[c]["focal"])
        extrinsic = np.array(lines[c * 7 + 6][11:-2].split(), float).reshape(4, 4)
        _close(extrinsic[:3, :3], cams[c]["rotation"], atol=1e-12)
    parsed = raw.read_calibration(path)
    assert sorted(parsed) == list(range(14))
    # Robust to whitespace: tabs, CRLF, blank lines, no trailing spaces.
    messy = path + ".messy"
    with open(messy, "w", newline="") as f:
        messy_lines = ("\t" + " ".join(line.split()) + "   " for line in text.splitlines())
        f.write("\r\n".join(messy_lines) + "\r\n\r\n")
    again = raw.read_calibration(messy)
    for c in range(14):
        for a, b in zip(parsed[c], again[c]):
            np.testing.assert_array_equal(a, b)
    cam = raw.calibration_camera(parsed[3])
    _close(cam["centre"], cams[3]["centre"])


def _replace_line(index, old, new):
    return lambda ls: ls[:index] + [ls[index].replace(old, new)] + ls[index + 1:]


@pytest.mark.parametrize("edit, match", [
    (_replace_line(0, "V1.0", "V2.0"), r"line 1 \(header\)"),
    (_replace_line(5, "intrinsic", "intrinsics"), r"line 6 \(intrinsic\).*'intrinsics'"),
    (_replace_line(13, " 1 ", " "), r"line 14 \(extrinsic\).*expected 16 number"),
    (_replace_line(9, "10 10", "10 ten"), r"line 10 \(sensor\).*not a number"),
    (lambda ls: ls[:-1], r"blocks of 7 lines"),
])
def test_malformed_calibration_names_file_and_line(built, tmp_path, edit, match):
    # Line numbers are 1-based: header 1, camera 0 on lines 2-8, camera 1 on lines 9-15.
    src = os.path.join(built["manual"], "S1", "Seq1", "camera.calibration")
    path = tmp_path / "camera.calibration"
    path.write_text("\n".join(edit(_read(src).splitlines())) + "\n")
    with pytest.raises(raw_files.MalformedRawFileError, match=match) as e:
        raw.read_calibration(path)
    assert e.value.path == str(path)


def test_annot_mat_reader(built):
    path = os.path.join(built["manual"], "S2", "Seq2", "annot.mat")
    annot = raw.read_annot_mat(path)
    t = built["truth"]["train"][("S2", "Seq2")]
    assert annot["annot3"].shape == (14, 15, 28, 3) and annot["annot2"].shape == (14, 15, 28, 2)
    np.testing.assert_array_equal(annot["cameras"], np.arange(14))
    _close(annot["annot3"] / 1000, t["positions_camera_full"])
    np.testing.assert_array_equal(annot["frames"], np.arange(15))


def test_frame_count_rules(built, monkeypatch):
    manual = built["manual"]
    table = {("S2", "Seq1"): (10, 50.0), ("S1", "Seq1"): (99, 25.0)}
    monkeypatch.setattr(raw, "SEQUENCE_INFO", MappingProxyType(table))
    assert raw.sequence_frame_count(manual, "S2", "Seq1", num_rows=15) == (10, 50.0, "table")
    # More frames in the table than rows: capped at the rows.
    assert raw.sequence_frame_count(manual, "S1", "Seq1", num_rows=15) == (15, 25.0, "table")
    assert raw.sequence_frame_count(manual, "S1", "Seq2", num_rows=15) == (12, 50.0, "video")
    assert raw.sequence_frame_count(manual, "S2", "Seq2", num_rows=15) == (15, 25.0, "rows")
    # The real table is the documented one.
    monkeypatch.undo()
    assert raw.SEQUENCE_INFO[("S6", "Seq2")] == (6145, 25.0)
    assert raw.SEQUENCE_INFO[("S1", "Seq2")] == (12430, 50.0)


def test_test_annot_reader_and_errors(built, tmp_path):
    path = os.path.join(built["manual"], raw.TEST_DIR, "TS5", "annot_data.mat")
    with open(path, "rb") as f:
        assert f.read(10) == b"MATLAB 7.3"
    with h5py.File(path, "r") as f:
        assert f["annot2"].shape == (10, 1, 17, 2) and f["annot3"].shape == (10, 1, 17, 3)
    data = raw.read_test_annot(path)
    np.testing.assert_array_equal(data["valid"], built["truth"]["test"]["TS5"]["valid"])
    bad = str(tmp_path / "annot_data.mat")
    shutil.copy(path, bad)
    with h5py.File(bad, "a") as f:
        del f["valid_frame"]
    with pytest.raises(raw_files.MalformedRawFileError,
                       match=r"annot_data.mat: field 'valid_frame': missing"):
        raw.read_test_annot(bad)
    with h5py.File(bad, "a") as f:
        f["valid_frame"] = np.ones((10, 1))
        del f["annot3"]
        f["annot3"] = np.ones((10, 17, 3))
    with pytest.raises(raw_files.MalformedRawFileError,
                       match=r"'annot3': has shape \(10, 17, 3\), expected \(10, 1, 17, 3\)"):
        raw.read_test_annot(bad)


def test_estimate_intrinsics_hand_case():
    xyz = np.array([[0.0, 0.0, 2.0], [1.0, 0.5, 2.0], [-1.0, 1.0, 4.0], [0.0, 0.0, -1.0]])
    uv = np.stack([1000 * xyz[:, 0] / xyz[:, 2] + 512, 900 * xyz[:, 1] / xyz[:, 2] + 300], -1)
    uv[3] = 1e6  # behind the camera: ignored
    focal, principal = raw.estimate_intrinsics(uv, xyz)
    np.testing.assert_allclose(focal, [1000, 900])
    np.testing.assert_allclose(principal, [512, 300])


# ---------------------------------------------------------------------- bad input


@pytest.fixture
def small_release(tmp_path):
    manual = tmp_path / "raw"
    fake_raw.write_fake_release(manual, sequences=(("S1", "Seq1"), ("S3", "Seq2")), num_frames=3,
                                extra_rows=1, video_cameras=(), test_sequences=("TS2",),
                                num_test_frames=3)
    return manual


def _build(manual, tmp_path, config="poses"):
    return tfds_build.build(NAME, manual_dir=str(manual), data_dir=str(tmp_path / "data"),
                            config=config, progress=False)


def test_missing_files_are_listed(small_release, tmp_path):
    os.remove(small_release / "S1" / "Seq1" / "annot.mat")
    os.remove(small_release / "S3" / "Seq2" / "camera.calibration")
    os.remove(small_release / raw.TEST_DIR / "TS2" / "annot_data.mat")
    with pytest.raises(raw_files.MissingRawFilesError) as e:
        _build(small_release, tmp_path)
    assert set(e.value.missing) == {os.path.join("S1", "Seq1", "annot.mat"),
                                     os.path.join("S3", "Seq2", "camera.calibration"),
                                     os.path.join(raw.TEST_DIR, "TS2", "annot_data.mat")}
    # images do not need the calibration; explicit cameras need their videos.
    config = Mpi3dhpConfig(name="images_cam7", kind="images", cameras=(7,))
    with pytest.raises(raw_files.MissingRawFilesError) as e:
        _build(small_release, tmp_path, config)
    assert os.path.join("S3", "Seq2", "imageSequence", "video_7.avi") in e.value.missing
    assert os.path.join("S3", "Seq2", "camera.calibration") not in e.value.missing


def test_empty_manual_dir_lists_the_release(tmp_path):
    (tmp_path / "raw").mkdir()
    # Not empty: TFDS itself rejects an empty manual_dir before the builder runs.
    (tmp_path / "raw" / "README.txt").write_text("not the release")
    with pytest.raises(raw_files.MissingRawFilesError) as e:
        _build(tmp_path / "raw", tmp_path)
    assert os.path.join("S8", "Seq2", "annot.mat") in e.value.missing
    assert os.path.join(raw.TEST_DIR, "TS6", "annot_data.mat") in e.value.missing


def test_malformed_files_through_the_build(small_release, tmp_path):
    calib = small_release / "S3" / "Seq2" / "camera.calibration"
    lines = calib.read_text().splitlines()
    lines[4 + 7 * 2] = lines[4 + 7 * 2].replace("animated", "animate")  # camera 2's block
    calib.write_text("\n".join(lines) + "\n")
    with pytest.raises(raw_files.MalformedRawFileError,
                       match=r"camera.calibration: field 'line 19 \(animated\)'"):
        _build(small_release, tmp_path)
    shutil.rmtree(small_release / "S3")
    annot = small_release / "S1" / "Seq1" / "annot.mat"
    data = scipy.io.loadmat(annot)
    data["annot3"][4, 0] = data["annot3"][4, 0][:, :83]
    scipy.io.savemat(annot, {k: v for k, v in data.items() if not k.startswith("__")})
    with pytest.raises(raw_files.MalformedRawFileError,
                       match=r"annot.mat: field 'annot3\{5\}': has shape \(4, 83\)"):
        _build(small_release, tmp_path)


def test_bad_config_values(tmp_path):
    cls = tfds_build.builder_class(NAME)
    with pytest.raises(ValueError, match="config.cameras"):
        cls(data_dir=str(tmp_path), config=Mpi3dhpConfig(name="x", cameras=(14,)))
    with pytest.raises(ValueError, match="config.kind"):
        cls(data_dir=str(tmp_path), config=Mpi3dhpConfig(name="y", kind="video"))


def test_test_set_layout_variants(small_release):
    # Without images the size comes from the table; a doubled test folder is accepted.
    shutil.rmtree(small_release / raw.TEST_DIR / "TS2" / "imageSequence")
    nested = small_release / raw.TEST_DIR / raw.TEST_DIR
    nested.mkdir()
    shutil.move(str(small_release / raw.TEST_DIR / "TS2"), str(nested / "TS2"))
    found = raw.find_test_sequences(small_release)
    assert found == [("TS2", os.path.join(raw.TEST_DIR, raw.TEST_DIR, "TS2"))]
    seq = raw.load_test_sequence(small_release, *found[0])
    np.testing.assert_array_equal(seq["camera"]["image_size"], [2048, 2048])
    assert raw.find_training_sequences(small_release) == [("S1", "Seq1"), ("S3", "Seq2")]
