"""Sub-JHMDB builder: a fake raw release built end to end and read back."""

import io
import os
import shutil

import numpy as np
import pytest
import scipy.io
from PIL import Image

from jpose import skeleton
from jpose.datasets import tfds_build, video_clips
from jpose.datasets.raw_files import MalformedRawFileError, MissingRawFilesError
from jpose.datasets.sub_jhmdb import fake_raw, raw

# DATASET_FORMATS.md section 4.3, typed out here as the independent reference.
_DOC_ORDER = ("neck", "belly", "head", "right_shoulder", "left_shoulder", "right_hip",
              "left_hip", "right_elbow", "left_elbow", "right_knee", "left_knee",
              "right_wrist", "left_wrist", "right_ankle", "left_ankle")
_SPLITS = ("train1", "test1", "train2", "test2", "train3", "test3")


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("sub_jhmdb")
    manual, data_dir = str(root / "raw"), str(root / "data")
    truth = fake_raw.write_fake_release(manual)
    tfds_build.build("sub_jhmdb", manual_dir=manual, data_dir=data_dir, progress=False)
    sources = {s: tfds_build.load("sub_jhmdb", data_dir=data_dir, split=s) for s in _SPLITS}
    examples = {}
    for split, source in sources.items():
        for i in range(len(source)):
            ex = source[i]
            key = f"{ex['action'].decode()}/{ex['video'].decode()}"
            examples[split, key] = (i, ex)
    return manual, truth, sources, examples


def test_layout_matches_documented_order():
    assert skeleton.get("jhmdb_15").joint_names == _DOC_ORDER


def test_split_membership_is_exact(built):
    _, truth, sources, examples = built
    for split in _SPLITS:
        keys = sorted(k for s, k in examples if s == split)
        assert keys == truth["splits"][split], split
        assert len(sources[split]) == len(keys)
    for k in (1, 2, 3):  # every clip in exactly one split of each pair
        train = set(truth["splits"][f"train{k}"])
        test = set(truth["splits"][f"test{k}"])
        assert not train & test
        assert train | test == set(truth["clips"])
    # The fake assigns flag 1 (train) when video index + k + class index is even.
    assert "catch/Clip0_catch_f_cm_np1_ri_med_0" in truth["splits"]["train2"]
    assert "catch/Clip0_catch_f_cm_np1_ri_med_0" in truth["splits"]["test1"]


def test_values_survive(built):
    _, truth, _, examples = built
    for (_, key), (_, ex) in examples.items():
        want = truth["clips"][key]
        np.testing.assert_array_equal(ex["keypoints_2d"], want["keypoints_2d"])
        assert ex["keypoints_2d"].dtype == np.float32
        np.testing.assert_array_equal(ex["visible"], want["visible"])
        np.testing.assert_allclose(ex["box"], want["box"], rtol=0, atol=1e-5)
        np.testing.assert_array_equal(ex["box_source"], want["box_source"])
        np.testing.assert_array_equal(ex["scale"], want["scale"])
        np.testing.assert_array_equal(ex["image_size"], [32, 24])
        assert ex["viewpoint"].decode() == want["viewpoint"]
        assert len(ex["frames"]) == len(want["frame_paths"]) == ex["keypoints_2d"].shape[0]


def test_joint_order_and_origin_against_the_file(built):
    manual, truth, _, examples = built
    key = "golf/Clip1_golf_f_cm_np1_ri_med_1"
    ex = examples["train2", key][1]
    pos = scipy.io.loadmat(os.path.join(manual, "joint_positions", key, "joint_positions.mat"))["pos_img"]
    head, left_ankle = _DOC_ORDER.index("head"), _DOC_ORDER.index("left_ankle")
    # MATLAB pixel centres start at 1, jpose's at 0.
    np.testing.assert_allclose(ex["keypoints_2d"][:, head], pos[:, 2, :].T - 1, atol=1e-5)
    np.testing.assert_allclose(ex["keypoints_2d"][:, left_ankle], pos[:, 14, :].T - 1, atol=1e-5)
    # The first clip's right ankle is off the image in frame 0 only.
    first = examples["test1", "catch/Clip0_catch_f_cm_np1_ri_med_0"][1]
    assert not first["visible"][0, 13] and first["visible"][0].sum() == 14
    assert first["visible"][1:].all()
    assert first["keypoints_2d"][0, 13, 0] == pytest.approx(32 + 3.25 - 1)


def test_boxes_from_masks_and_joints(built):
    manual, truth, _, examples = built
    for (split, key), (_, ex) in examples.items():
        mask_path = os.path.join(manual, "puppet_mask", key, "puppet_mask.mat")
        kp, vis = ex["keypoints_2d"].astype(np.float64), ex["visible"]
        for t in range(kp.shape[0]):
            m = (scipy.io.loadmat(mask_path)["part_mask"][:, :, t] != 0
                 if os.path.exists(mask_path) else np.zeros((24, 32), bool))
            if m.any():
                rows, cols = np.nonzero(m)
                want = [cols.min() - 0.5, rows.min() - 0.5, cols.max() + 0.5, rows.max() + 0.5]
                assert ex["box_source"][t] == 0
            else:
                pts = kp[t][vis[t]]
                want = [pts[:, 0].min(), pts[:, 1].min(), pts[:, 0].max(), pts[:, 1].max()]
                assert ex["box_source"][t] == 1
            np.testing.assert_allclose(ex["box"][t], want, atol=1e-5, err_msg=f"{key} frame {t}")
    # The irregular cases are present: a clip without a mask, a frame with an empty one.
    no_mask = examples["test1", "catch/Clip0_catch_f_cm_np1_ri_med_0"][1]
    assert (no_mask["box_source"] == 1).all()
    empty = examples["train1", "catch/Clip1_catch_f_cm_np1_ri_med_1"][1]
    np.testing.assert_array_equal(empty["box_source"], [0, 1, 0, 0])


def test_frames_are_the_png_bytes(built):
    manual, truth, sources, examples = built
    for (split, key), (i, ex) in examples.items():
        record = sources[split].data_source[i]  # the serialised example, undecoded
        for path, decoded in zip(truth["clips"][key]["frame_paths"], ex["frames"]):
            with open(path, "rb") as f:
                data = f.read()
            assert data in record
            np.testing.assert_array_equal(decoded, np.asarray(Image.open(io.BytesIO(data))))


def test_shared_helpers_hand_computed():
    mask = np.zeros((4, 5, 2), np.uint8)
    mask[1:3, 2, 0] = 7  # rows 1-2, column 2
    box, nonempty = video_clips.mask_boxes(mask)
    np.testing.assert_array_equal(box[0], [1.5, 0.5, 2.5, 2.5])
    assert np.isnan(box[1]).all() and nonempty.tolist() == [True, False]
    kp = np.array([[[-0.5, 0.0], [4.5, 3.5], [4.6, 0.0], [1.0, np.nan]]])
    np.testing.assert_array_equal(video_clips.inside_image(kp, (5, 4)), [[True, True, False, False]])
    np.testing.assert_array_equal(
        video_clips.joint_boxes(kp[:, :2], np.array([[False, False]])), [[-0.5, 0.0, 4.5, 3.5]])


def _fresh(tmp_path):
    manual = str(tmp_path / "raw")
    fake_raw.write_fake_release(manual, num_classes=2, videos_per_class=2, num_frames=2)
    return manual


def test_missing_files_are_listed(tmp_path):
    manual = _fresh(tmp_path)
    os.remove(os.path.join(manual, "joint_positions/catch/Clip1_catch_f_cm_np1_ri_med_1/joint_positions.mat"))
    shutil.rmtree(os.path.join(manual, "Rename_Images/golf/Clip0_golf_f_cm_np1_ri_med_0"))
    with pytest.raises(MissingRawFilesError) as e:
        tfds_build.build("sub_jhmdb", manual_dir=manual, data_dir=str(tmp_path / "d"), progress=False)
    assert e.value.missing == (
        "joint_positions/catch/Clip1_catch_f_cm_np1_ri_med_1/joint_positions.mat",
        "Rename_Images/golf/Clip0_golf_f_cm_np1_ri_med_0/00001.png")
    assert not os.path.exists(tmp_path / "d" / "sub_jhmdb" / "1.0.0")
    os.remove(os.path.join(manual, "sub_splits/golf_test_split_2.txt"))
    with pytest.raises(MissingRawFilesError) as e:
        raw.index_release(manual)
    assert e.value.missing == ("sub_splits/golf_test_split_2.txt",)
    shutil.rmtree(os.path.join(manual, "sub_splits"))
    with pytest.raises(MissingRawFilesError, match=r"<class>_test_split_1.txt"):
        raw.index_release(manual)


def test_malformed_files_are_named(tmp_path):
    manual = _fresh(tmp_path)
    key = "golf/Clip1_golf_f_cm_np1_ri_med_1"
    joints = os.path.join(manual, "joint_positions", key, "joint_positions.mat")
    good = scipy.io.loadmat(joints)
    t = good["pos_img"].shape[2]

    scipy.io.savemat(joints, {"pos_world": good["pos_world"], "scale": good["scale"], "viewpoint": "E"})
    with pytest.raises(MalformedRawFileError, match=r"joint_positions.mat: field 'pos_img': missing"):
        raw.read_clip(manual, key)
    scipy.io.savemat(joints, {"pos_img": np.zeros((3, 15, t)), "scale": good["scale"], "viewpoint": "E"})
    with pytest.raises(MalformedRawFileError, match=r"'pos_img': has shape \(3, 15, 3\), expected \(2, 15, N\)"):
        raw.read_clip(manual, key)
    scipy.io.savemat(joints, {"pos_img": good["pos_img"], "scale": np.ones((1, t + 1)), "viewpoint": "E"})
    with pytest.raises(MalformedRawFileError, match=r"'scale'"):
        raw.read_clip(manual, key)
    scipy.io.savemat(joints, {k: good[k] for k in ("pos_img", "pos_world", "scale", "viewpoint")})

    mask = os.path.join(manual, "puppet_mask", key, "puppet_mask.mat")
    scipy.io.savemat(mask, {"part_mask": np.ones((24, 31, t), np.uint8)})
    with pytest.raises(MalformedRawFileError, match=r"puppet_mask.mat: field 'part_mask': has shape"):
        raw.read_clip(manual, key)

    split = os.path.join(manual, "sub_splits", "catch_test_split_3.txt")
    with open(split, "a") as f:
        f.write("Extra_clip.avi 3\n")
    with pytest.raises(MalformedRawFileError, match=r"catch_test_split_3.txt: field 'line 3'"):
        raw.index_release(manual)


def test_frame_count_mismatch_names_video_and_counts(tmp_path):
    manual = _fresh(tmp_path)
    key = "golf/Clip1_golf_f_cm_np1_ri_med_1"  # 3 frames
    os.remove(os.path.join(manual, "Rename_Images", key, "00003.png"))
    with pytest.raises(MalformedRawFileError,
                       match=rf"video {key}: pos_img has 3 frames but .* has 2 PNG frames") as e:
        tfds_build.build("sub_jhmdb", manual_dir=manual, data_dir=str(tmp_path / "d"), progress=False)
    assert e.value.field == "pos_img"


def test_non_rgb_frames_are_converted_and_odd_sizes_named(tmp_path, caplog):
    manual = _fresh(tmp_path)
    key = "golf/Clip1_golf_f_cm_np1_ri_med_1"
    gray = np.arange(24 * 32, dtype=np.uint8).reshape(24, 32)
    path = os.path.join(manual, "Rename_Images", key, "00002.png")
    Image.fromarray(gray).save(path)  # 2D uint8: mode L
    with open(os.path.join(manual, "Rename_Images", key, "00001.png"), "rb") as f:
        first = f.read()
    with caplog.at_level("WARNING"):
        clip = raw.read_clip(manual, key)
    assert "00002.png: L image, converted to RGB" in caplog.text
    assert clip["frames"][0] == first  # RGB frames stay byte for byte
    rgb = np.asarray(Image.open(io.BytesIO(clip["frames"][1])))
    np.testing.assert_array_equal(rgb, np.repeat(gray[:, :, None], 3, -1))  # PNG: lossless
    Image.fromarray(np.zeros((24, 30, 3), np.uint8)).save(path)
    with pytest.raises(MalformedRawFileError, match=r"00002.png: is 30x24 pixels, .*00001.png is 32x24"):
        raw.read_clip(manual, key)
