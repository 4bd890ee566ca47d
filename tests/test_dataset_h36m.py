"""Human3.6M TFDS builder (jpose.datasets.h36m): every config built from a fake release.

The fake release (jpose.datasets.h36m.fake_raw) is written in the raw on-disk formats
(CDF, metadata.xml, MPEG-4, VideoPose3D npz) with the release's irregular names; its
ground truth is computed independently of the builder (scipy rotations, a NumPy port of
ProjectPointRadial). References here: those values, hand-written table entries from
shared/DATASET_FORMATS.md, hand-computed boxes, and the bright dot drawn in the videos.
"""

import os
import shutil

import numpy as np
import pytest

from jpose.datasets import h36m_cameras, tfds_build
from jpose.datasets.h36m import fake_raw, raw
from jpose.datasets.h36m_videopose3d import PickleNotAllowedError
from jpose.datasets.raw_files import MalformedRawFileError, MissingRawFilesError

# The 17 standard joints among the 32 stored (DATASET_FORMATS 1.4).
SUBSET_17 = [0, 1, 2, 3, 6, 7, 8, 12, 13, 14, 15, 17, 18, 19, 25, 26, 27]
CAMERA_IDS = ["54138969", "55011271", "58860488", "60457274"]
VP3D_CONFIGS = ["videopose3d_gt", "videopose3d_cpn_ft_h36m_dbb",
                "videopose3d_detectron_pt_coco", "videopose3d_sh_ft_h36m"]


@pytest.fixture(scope="module")
def release(tmp_path_factory):
    root = tmp_path_factory.mktemp("h36m_raw")
    truth = fake_raw.write_fake_release(root, num_frames=30, seed=0)
    return str(root), truth


@pytest.fixture(scope="module")
def data_dir(release, tmp_path_factory):
    root, _ = release
    out = str(tmp_path_factory.mktemp("h36m_tfds"))
    for config in ["poses", "images"] + VP3D_CONFIGS:
        kwargs = {"allow_pickle": True} if config.startswith("videopose3d") else {}
        tfds_build.build("h36m", manual_dir=root, data_dir=out, config=config,
                         progress=False, **kwargs)
    return out


def _examples(data_dir, config, split):
    source = tfds_build.load("h36m", data_dir=data_dir, split=split, config=config)
    return [source[i] for i in range(len(source))]


def _by_key(examples):
    return {(e["sequence"].decode(), int(e["camera_index"])): e for e in examples}


# ------------------------------------------------------------------------------------
# Sequence-name table.

@pytest.mark.parametrize("subject,name,expected", [
    # Hand-copied from DATASET_FORMATS.md 1.2 (metadata.xml mapping).
    ("S1", "TakingPhoto 1", ("TakingPhoto", 1)),
    ("S1", "TakingPhoto", ("TakingPhoto", 2)),
    ("S1", "WalkingDog 1", ("WalkingDog", 1)),
    ("S1", "Photo", ("TakingPhoto", 2)),          # VideoPose3D's rename of S1's file
    ("S1", "WalkDog 1", ("WalkingDog", 1)),
    ("S1", "Eating 2", ("Eating", 1)),
    ("S1", "Sitting 2", ("Sitting", 2)),
    ("S5", "SittingDown", ("SittingDown", 1)),
    ("S5", "Discussion 3", ("Discussion", 2)),
    ("S5", "Photo", ("TakingPhoto", 1)),
    ("S6", "Waiting 3", ("Waiting", 1)),
    ("S8", "WalkTogether 2", ("WalkingTogether", 2)),
    ("S11", "Phoning 2", ("Phoning", 2)),
    ("S11", "Phoning 3", ("Phoning", 1)),
    ("S11", "Greeting 2", ("Greeting", 1)),
    ("S11", "Smoking 2", ("Smoking", 1)),
    ("S9", "Walking", ("Walking", 2)),
])
def test_sequence_info_irregular_names(subject, name, expected):
    assert raw.sequence_info(subject, name) == expected


def test_sequence_table_rejects_unknown_names():
    with pytest.raises(ValueError, match="'Photo 1' is not a sequence of S5"):
        raw.sequence_info("S5", "Photo 1")
    with pytest.raises(ValueError, match="TakingPhoto"):
        raw.sequence_info("S5", "TakingPhoto")  # only S1 uses this name
    with pytest.raises(ValueError, match="S12"):
        raw.sequence_info("S12", "Directions")
    assert all(len(t) == 30 for t in raw.SEQUENCE_NAMES.values())
    assert raw.is_all_sequence("_ALL 1") and not raw.is_all_sequence("Directions 1")


# ------------------------------------------------------------------------------------
# poses config.

def test_poses_values_units_and_joint_order(data_dir, release):
    _, truth = release
    builder = tfds_build.builder_class("h36m")(data_dir=data_dir, config="poses")
    assert set(builder.info.splits.keys()) == {"S1", "S11"}
    for subject in ("S1", "S11"):
        got = _by_key(_examples(data_dir, "poses", subject))
        want = {(s, c): v for (subj, s, c), v in truth["examples"].items() if subj == subject}
        assert set(got) == set(want)  # _ALL 1 skipped, nothing else dropped
        for key, ex in got.items():
            t = want[key]
            assert ex["subject"].decode() == subject
            assert ex["camera_id"].decode() == CAMERA_IDS[key[1]]
            assert ex["action"].decode() == t["action"]
            assert int(ex["subaction"]) == t["subaction"]
            assert float(ex["fps"]) == 50.0
            f = t["num_frames"]
            assert ex["positions_world_full"].shape == (f, 32, 3)
            # Files hold millimetres; the truth is in metres.
            np.testing.assert_allclose(ex["positions_world_full"], t["positions_world"], atol=2e-6)
            np.testing.assert_allclose(ex["positions_camera_full"], t["positions_camera"],
                                       atol=2e-6)
            np.testing.assert_allclose(ex["keypoints_2d_full"], t["keypoints_2d"], atol=2e-4)
            for name in ("positions_world", "positions_camera", "keypoints_2d"):
                np.testing.assert_array_equal(ex[name], ex[name + "_full"][:, SUBSET_17])
            assert ex["keypoints_source"].decode() == t["keypoints_source"]
            assert ex["positions_camera_source"].decode() == t["positions_camera_source"]
            assert ex["valid"].dtype == bool and ex["valid"].all()
            np.testing.assert_array_equal(ex["activity"], np.zeros(f, np.int32))
    s1 = _by_key(_examples(data_dir, "poses", "S1"))
    # Standing person in metres (not mm): pelvis about 0.95 m above the floor.
    assert 0.85 < s1[("Directions 1", 0)]["positions_world"][0, 0, 2] < 1.05
    # Frame counts: files of camera 1 have 2 extra frames (cut), camera 3 of the first
    # sequence 3 fewer (everything cut to them).
    assert len(s1[("Directions 1", 1)]["positions_world"]) == 30
    assert len(s1[("Directions 1", 3)]["positions_world"]) == 27
    # Missing mono + D2 (camera 2 of the last sequence) and D2 only (camera 0, second).
    assert s1[("WalkingDog 1", 2)]["keypoints_source"] == b"projected"
    assert s1[("WalkingDog 1", 2)]["positions_camera_source"] == b"computed"
    assert s1[("TakingPhoto", 0)]["keypoints_source"] == b"projected"
    assert s1[("TakingPhoto", 0)]["positions_camera_source"] == b"D3_Positions_mono"
    assert s1[("TakingPhoto", 0)]["action"] == b"TakingPhoto"
    assert int(s1[("TakingPhoto", 0)]["subaction"]) == 2
    s11 = _by_key(_examples(data_dir, "poses", "S11"))
    phoning = s11[("Phoning 2", 0)]
    assert (phoning["action"], int(phoning["subaction"])) == (b"Phoning", 2)
    assert int(s11[("SittingDown", 3)]["subaction"]) == 1
    assert s11[("Photo", 1)]["action"] == b"TakingPhoto"


def test_camera_parameters(data_dir, release):
    _, truth = release
    decoded = h36m_cameras.decode_w0(truth["w0"])
    for subject in ("S1", "S11"):
        for (seq, c), ex in _by_key(_examples(data_dir, "poses", subject)).items():
            cam = ex["camera"]
            for field in ("rotation", "centre", "focal", "principal", "radial", "tangential",
                          "image_size"):
                np.testing.assert_allclose(cam[field], getattr(decoded[(subject, c)], field),
                                           rtol=1e-6, atol=1e-7)
                # And against the fake's independent (scipy) reading of the same numbers.
                np.testing.assert_allclose(cam[field], truth["cameras"][(subject, c)][field],
                                           rtol=1e-6, atol=1e-6)
    # Pixels: real image sizes of the four cameras.
    np.testing.assert_array_equal(decoded[("S1", 0)].image_size, [1000, 1002])


# ------------------------------------------------------------------------------------
# videopose3d configs.

@pytest.mark.parametrize("config", VP3D_CONFIGS)
def test_videopose3d_configs(data_dir, release, config):
    _, truth = release
    source = config[len("videopose3d_"):]
    files_2d = truth["videopose3d"]["positions_2d"][source]
    layout = raw.VIDEOPOSE3D_SOURCES[source]
    raw_names = {(s, v): r for (s, r), v in truth["videopose3d"]["names"].items()}
    for subject in ("S1", "S11"):
        got = _by_key(_examples(data_dir, config, subject))
        want = {(n, c) for (s, n) in files_2d if s == subject for c in range(4)}
        assert set(got) == want
        for (name, c), ex in got.items():
            t = truth["sequences"][(subject, raw_names[(subject, name)])]
            file_2d = files_2d[(subject, name)][c]
            f = len(t["positions_world"])  # 2D files have >= 3D frames: cut to the 3D
            assert len(file_2d) >= f and ex["positions_world"].shape == (f, 17, 3)
            assert ex["keypoints_layout"].decode() == layout
            assert ex["keypoints_source"].decode() == f"data_2d_h36m_{source}.npz"
            assert (ex["action"].decode(), int(ex["subaction"])) == (t["action"], t["subaction"])
            np.testing.assert_array_equal(ex["keypoints_2d_source"], file_2d[:f])
            np.testing.assert_allclose(ex["positions_world_full"], t["positions_world"], atol=2e-6)
            np.testing.assert_allclose(ex["positions_camera_full"], t["positions_camera"][c],
                                       atol=2e-6)
            np.testing.assert_allclose(ex["keypoints_2d_full"], t["keypoints_2d"][c], atol=2e-4)
            np.testing.assert_array_equal(ex["positions_world"],
                                          ex["positions_world_full"][:, SUBSET_17])
            kp = ex["keypoints_2d"]
            if layout == "h36m_17":
                np.testing.assert_array_equal(kp, file_2d[:f])
            elif layout == "coco_17":
                # COCO order: 5/6 shoulders L/R, 7/8 elbows, 9/10 wrists, 11/12 hips, 13/14
                # knees, 15/16 ankles; h36m_17: 1-3 right leg, 4-6 left leg, 11-13 left
                # arm, 14-16 right arm, 9 head (= COCO nose), 0 pelvis = mid-hip.
                pairs = {1: 12, 2: 14, 3: 16, 4: 11, 5: 13, 6: 15, 11: 5, 12: 7, 13: 9,
                         14: 6, 15: 8, 16: 10, 9: 0}
                for h, co in pairs.items():
                    np.testing.assert_array_equal(kp[:, h], file_2d[:f, co])
                mid_hip = (file_2d[:f, 11] + file_2d[:f, 12]) / 2
                np.testing.assert_allclose(kp[:, 0], mid_hip, atol=1e-4)
            else:  # mpii_16: 0-5 r/l legs (ankle first), 6 pelvis, 7 thorax, 10-15 arms
                pairs = {0: 6, 3: 0, 2: 1, 1: 2, 4: 3, 5: 4, 6: 5, 8: 7, 10: 9, 16: 10,
                         15: 11, 14: 12, 11: 13, 12: 14, 13: 15}
                for h, mp in pairs.items():
                    np.testing.assert_array_equal(kp[:, h], file_2d[:f, mp])
    # The 2D file of camera 1 has one extra frame: cut to the 3D length.
    s1 = _by_key(_examples(data_dir, config, "S1"))
    assert len(s1[("Photo", 1)]["keypoints_2d"]) == len(s1[("Photo", 0)]["keypoints_2d"]) == 32
    assert s1[("Photo", 0)]["action"] == b"TakingPhoto"


def test_detector_file_without_a_sequence_skips_it(data_dir, release):
    _, truth = release
    (missing,) = truth["videopose3d"]["missing_2d"]["detectron_pt_coco"]
    names = {k[0] for k in _by_key(_examples(data_dir, "videopose3d_detectron_pt_coco", "S11"))}
    assert missing[1] not in names and names
    assert missing[1] in {k[0] for k in _by_key(_examples(data_dir, "videopose3d_gt", "S11"))}


def test_videopose3d_layout_checked_against_the_config(release, tmp_path):
    root, _ = release
    manual = tmp_path / "swapped"
    manual.mkdir()
    for name in ("metadata.xml", "data_3d_h36m.npz"):
        shutil.copy(os.path.join(root, name), manual / name)
    # COCO detections under the stacked-hourglass file name.
    shutil.copy(os.path.join(root, "data_2d_h36m_detectron_pt_coco.npz"),
                manual / "data_2d_h36m_sh_ft_h36m.npz")
    with pytest.raises(MalformedRawFileError, match="'metadata'.*'coco_17'.*'mpii_16'"):
        raw.load_videopose3d(manual, "sh_ft_h36m", allow_pickle=True,
                             expected_layout="mpii_16")


_UNPICKLED = []


def _record_unpickling():
    _UNPICKLED.append(True)
    return {}


class _Bomb:
    """Unpickling this calls _record_unpickling: a stand-in for code run by a pickle."""

    def __reduce__(self):
        return (_record_unpickling, ())


def test_pickle_refused_without_opt_in(release, tmp_path):
    root, _ = release
    manual = tmp_path / "vp3d"
    manual.mkdir()
    shutil.copy(os.path.join(root, "metadata.xml"), manual / "metadata.xml")
    np.savez_compressed(manual / "data_3d_h36m.npz", positions_3d=np.array(_Bomb(), dtype=object))
    np.savez_compressed(manual / "data_2d_h36m_gt.npz",
                        positions_2d=np.array(_Bomb(), dtype=object))
    _UNPICKLED.clear()
    with pytest.raises(PickleNotAllowedError, match="allow_pickle=True"):
        tfds_build.build("h36m", manual_dir=str(manual), data_dir=str(tmp_path / "out"),
                         config="videopose3d_gt", progress=False)
    assert _UNPICKLED == []
    with pytest.raises(ValueError, match="allow_pickle: expected a bool"):
        tfds_build.build("h36m", manual_dir=str(manual), data_dir=str(tmp_path / "out"),
                         config="videopose3d_gt", progress=False, allow_pickle="yes")
    # With the opt-in the file *is* unpickled (so the check above could fail), and the
    # bomb's empty dicts are then reported as malformed (no 'metadata' key).
    with pytest.raises(MalformedRawFileError, match="metadata"):
        tfds_build.build("h36m", manual_dir=str(manual), data_dir=str(tmp_path / "out"),
                         config="videopose3d_gt", progress=False, allow_pickle=True)
    assert _UNPICKLED


# ------------------------------------------------------------------------------------
# images config.

def test_images_crops(data_dir, release):
    _, truth = release
    size = 256
    ys, xs = np.mgrid[0:size, 0:size]
    for subject in ("S1", "S11"):
        examples = _examples(data_dir, "images", subject)
        keys = {(e["sequence"].decode(), int(e["camera_index"]), int(e["frame_index"]))
                for e in examples}
        want = set()
        for (subj, seq, c), t in truth["examples"].items():
            if subj == subject:
                frames = [i for i in range(0, t["num_frames"], 5) if i < t["video_frames"]]
                want |= {(seq, c, i) for i in frames}
        assert keys == want
        for e in examples:
            t = truth["examples"][(subject, e["sequence"].decode(), int(e["camera_index"]))]
            i = int(e["frame_index"])
            kp = t["keypoints_2d"][i, SUBSET_17]
            assert (kp > 0).all() and (kp < truth["image_size"]).all()  # the fake is sane
            # Hand-computed square box: centre of the tight box, side 1.25 max(w, h).
            lo, hi = kp.min(0), kp.max(0)
            side = 1.25 * (hi - lo).max()
            box = np.concatenate([(lo + hi) / 2 - side / 2, (lo + hi) / 2 + side / 2])
            np.testing.assert_allclose(e["box"], box, atol=1e-3)
            np.testing.assert_allclose(e["keypoints_2d"], (kp - box[:2]) * size / side, atol=2e-2)
            for name in ("positions_world", "positions_camera"):
                np.testing.assert_allclose(e[name], t[name][i, SUBSET_17], atol=2e-6)
            np.testing.assert_array_equal(e["camera"]["image_size"], truth["image_size"])
            assert e["image"].shape == (size, size, 3) and e["image"].dtype == np.uint8
            assert (e["action"].decode(), int(e["subaction"])) == (t["action"], t["subaction"])
            # The bright dot drawn at the left knee lands on the crop's left-knee keypoint.
            w = np.clip(e["image"].astype(np.float64).mean(-1) - 40.0, 0, None)
            centroid = np.array([(w * xs).sum(), (w * ys).sum()]) / w.sum()
            assert np.abs(centroid - e["keypoints_2d"][5]).max() < 2.0
    # The first sequence's camera-2 video is 8 frames short: frames 0..20 only.
    s1 = {(e["sequence"], int(e["camera_index"]), int(e["frame_index"]))
          for e in _examples(data_dir, "images", "S1")}
    assert {f for s, c, f in s1 if (s, c) == (b"Directions 1", 2)} == {0, 5, 10, 15, 20}
    assert {f for s, c, f in s1 if (s, c) == (b"Directions 1", 0)} == {0, 5, 10, 15, 20, 25}


# ------------------------------------------------------------------------------------
# Bad input.

def test_missing_files_are_listed(release, tmp_path):
    root, _ = release
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "S1").mkdir()  # TFDS itself refuses an empty manual_dir
    with pytest.raises(MissingRawFilesError) as e:
        tfds_build.build("h36m", manual_dir=str(empty), data_dir=str(tmp_path / "o"),
                         config="poses", progress=False)
    assert "metadata.xml" in e.value.missing
    assert "S11/MyPoseFeatures/D3_Positions/*.cdf" in e.value.missing
    with pytest.raises(MissingRawFilesError) as e:
        tfds_build.build("h36m", manual_dir=str(empty), data_dir=str(tmp_path / "o"),
                         config="videopose3d_sh_ft_h36m", progress=False)
    assert set(e.value.missing) == {"metadata.xml", "data_3d_h36m.npz",
                                    "data_2d_h36m_sh_ft_h36m.npz"}
    # images: every missing video is listed.
    copy = tmp_path / "copy"
    shutil.copytree(root, copy)
    for cam in ("54138969", "60457274"):
        os.remove(copy / "S11" / "Videos" / f"Photo.{cam}.mp4")
    with pytest.raises(MissingRawFilesError) as e:
        raw.check_release(copy, videos=True)
    assert set(e.value.missing) == {"S11/Videos/Photo.54138969.mp4",
                                    "S11/Videos/Photo.60457274.mp4"}
    assert raw.check_release(copy) == ("S1", "S11")


def test_malformed_cdf_is_named(release, tmp_path):
    root, _ = release
    manual = tmp_path / "bad"
    d3 = manual / "S5" / "MyPoseFeatures" / "D3_Positions"
    d3.mkdir(parents=True)
    shutil.copy(os.path.join(root, "metadata.xml"), manual / "metadata.xml")
    (d3 / "Directions 1.cdf").write_bytes(b"this is not a CDF file")
    with pytest.raises(MalformedRawFileError, match=r"Directions 1\.cdf.*not a readable CDF"):
        tfds_build.build("h36m", manual_dir=str(manual), data_dir=str(tmp_path / "o"),
                         config="poses", progress=False)
    from cdflib.cdfwrite import CDF

    other = str(tmp_path / "other.cdf")
    cdf = CDF(other)
    cdf.write_var({"Variable": "Positions", "Data_Type": CDF.CDF_FLOAT, "Num_Elements": 1,
                   "Rec_Vary": True, "Dim_Sizes": [4, 96]},
                  var_data=np.zeros((1, 4, 96), np.float32))
    cdf.close()
    with pytest.raises(MalformedRawFileError, match=r"other\.cdf: field 'Pose': missing"):
        raw.read_pose_cdf(other, num_coords=3)
    wrong = str(tmp_path / "wrong.cdf")
    fake_raw.write_pose_cdf(wrong, np.zeros((4, 30, 3)))
    with pytest.raises(MalformedRawFileError,
                       match=r"wrong\.cdf: field 'Pose': has shape \(4, 90\)"):
        raw.read_pose_cdf(wrong, num_coords=3)
    # D2 files (64 numbers per frame) are not 3D files.
    d2 = str(tmp_path / "d2.cdf")
    fake_raw.write_pose_cdf(d2, np.zeros((4, 32, 2)))
    assert raw.read_pose_cdf(d2, num_coords=2).shape == (4, 32, 2)
    with pytest.raises(MalformedRawFileError, match="expected 1 record of \\(N, 96\\)"):
        raw.read_pose_cdf(d2, num_coords=3)


def test_undecodable_video_is_skipped_not_fatal(tmp_path):
    manual = tmp_path / "video"
    fake_raw.write_fake_release(manual, subjects=("S5",), sequences={"S5": ("Directions 2",)},
                                num_frames=12, videopose3d=False, seed=4)
    (manual / raw.video_path("S5", "Directions 2", "58860488")).write_bytes(b"not a video")
    tfds_build.build("h36m", manual_dir=str(manual), data_dir=str(tmp_path / "o"),
                     config="images", progress=False)
    examples = _examples(str(tmp_path / "o"), "images", "S5")
    cams = sorted({int(e["camera_index"]) for e in examples})
    assert cams == [0, 1, 3]
    # Frames 0, 5, 10 of 12 (camera 3's pose files are 3 frames short: 0, 5).
    assert len(examples) == 3 + 3 + 2


def test_mono_file_with_wrong_camera_convention_is_named(tmp_path):
    manual = tmp_path / "mono"
    fake_raw.write_fake_release(manual, subjects=("S5",), sequences={"S5": ("Directions 2",)},
                                num_frames=12, videos=False, videopose3d=False, seed=3)
    cameras = raw.load_cameras(manual)
    assert len(list(raw.load_subject(manual, "S5", cameras))) == 4  # consistent as written
    # Rewrite camera 1's mono file with the transposed rotation (camera-to-world used as
    # world-to-camera): the check must catch it.
    cam = cameras[("S5", 1)]
    world = raw.read_pose_cdf(manual / raw.d3_path("S5", "Directions 2"), num_coords=3)
    rotation, centre = np.asarray(cam.rotation, np.float64), np.asarray(cam.centre, np.float64)
    wrong = (world - centre * 1000) @ rotation  # R^T x, not R x
    bad_path = manual / raw.mono_path("S5", "Directions 2", "55011271")
    fake_raw.write_pose_cdf(bad_path, wrong)
    with pytest.raises(MalformedRawFileError,
                       match=r"Directions 2\.55011271\.cdf: field 'Pose'.*mm"):
        list(raw.load_subject(manual, "S5", cameras))


def test_derived_images_config_rate_and_size(release, tmp_path):
    root, truth = release
    cfg = tfds_build.derived_config("h36m", "images", frame_step=10, crop_size=64)
    assert cfg.name == "images_crop_size64_frame_step10"
    tfds_build.build("h36m", manual_dir=root, data_dir=str(tmp_path), config=cfg, progress=False)
    source = tfds_build.load("h36m", data_dir=str(tmp_path), split="S11", config=cfg)
    examples = [source[i] for i in range(len(source))]
    assert examples and all(e["image"].shape == (64, 64, 3) for e in examples)
    assert {int(e["frame_index"]) for e in examples} <= set(range(0, 60, 10))
    assert {int(e["frame_index"]) % 10 for e in examples} == {0}
    assert os.path.isdir(os.path.join(str(tmp_path), "h36m", cfg.name))
    with pytest.raises(ValueError, match="no fields"):
        tfds_build.derived_config("h36m", "images", fps=3)
    with pytest.raises(ValueError, match="no config"):
        tfds_build.derived_config("h36m", "nope", frame_step=2)
