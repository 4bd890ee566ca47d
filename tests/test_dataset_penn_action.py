"""Penn Action builder: a fake raw release built end to end and read back."""

import io
import logging
import os
import shutil

import numpy as np
import pytest
import scipy.io
from PIL import Image

from jpose import skeleton
from jpose.datasets import tfds_build, video_clips
from jpose.datasets.penn_action import fake_raw, raw
from jpose.datasets.raw_files import MalformedRawFileError, MissingRawFilesError

# DATASET_FORMATS.md section 5.3 (1-based there), typed out as the independent reference.
_DOC_ORDER = ("head", "left_shoulder", "right_shoulder", "left_elbow", "right_elbow",
              "left_wrist", "right_wrist", "left_hip", "right_hip", "left_knee",
              "right_knee", "left_ankle", "right_ankle")


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("penn_action")
    manual, data_dir = str(root / "raw"), str(root / "data")
    truth = fake_raw.write_fake_release(manual, num_sequences=5, missing_bbox=(2,))
    tfds_build.build("penn_action", manual_dir=manual, data_dir=data_dir, progress=False)
    sources = {s: tfds_build.load("penn_action", data_dir=data_dir, split=s) for s in ("train", "test")}
    examples = {}
    for split, source in sources.items():
        for i in range(len(source)):
            ex = source[i]
            examples[ex["sequence"].decode()] = (split, i, ex)
    return manual, truth, sources, examples


def test_layout_matches_documented_order():
    assert skeleton.get("penn_action_13").joint_names == _DOC_ORDER


def test_split_membership_is_exact(built):
    _, truth, _, examples = built
    got = {s: sorted(k for k, (split, _, _) in examples.items() if split == s) for s in ("train", "test")}
    assert got == {"train": ["0001", "0003", "0005"], "test": ["0002", "0004"]}
    assert got == truth["splits"]


def test_values_survive(built):
    _, truth, _, examples = built
    for seq, (_, _, ex) in examples.items():
        want = truth["sequences"][seq]
        np.testing.assert_array_equal(ex["keypoints_2d"], want["keypoints_2d"])
        assert ex["keypoints_2d"].dtype == np.float32
        np.testing.assert_array_equal(ex["visible"], want["visible"])
        np.testing.assert_array_equal(ex["box"], want["box"])
        np.testing.assert_array_equal(ex["box_valid"], want["box_valid"])
        assert ex["action"].decode() == want["action"]
        assert ex["view"].decode() == want["view"]
        np.testing.assert_array_equal(ex["image_size"], want["image_size"])
        # image_size (from 'dimensions') is the JPEGs' (width, height).
        with Image.open(want["frame_paths"][0]) as im:
            assert tuple(ex["image_size"]) == im.size
        assert len(ex["frames"]) == ex["keypoints_2d"].shape[0]
    assert tuple(examples["0001"][2]["image_size"]) == (36, 24)
    assert tuple(examples["0002"][2]["image_size"]) == (32, 24)


def test_joint_order_and_origin_against_the_file(built):
    manual, _, _, examples = built
    label = scipy.io.loadmat(os.path.join(manual, "labels", "0003.mat"))
    kp = examples["0003"][2]["keypoints_2d"]
    for name, column in (("head", 0), ("right_wrist", 6), ("left_ankle", 11)):
        j = _DOC_ORDER.index(name)
        # MATLAB pixel centres start at 1, jpose's at 0.
        np.testing.assert_allclose(kp[:, j, 0], label["x"][:, column] - 1, atol=1e-5)
        np.testing.assert_allclose(kp[:, j, 1], label["y"][:, column] - 1, atol=1e-5)
    np.testing.assert_array_equal(examples["0003"][2]["visible"], label["visibility"] != 0)
    np.testing.assert_allclose(examples["0003"][2]["box"], label["bbox"] - 1, atol=1e-5)


def test_missing_bbox_row_is_padded_and_flagged(built):
    manual, _, _, examples = built
    bbox = scipy.io.loadmat(os.path.join(manual, "labels", "0002.mat"))["bbox"]
    ex = examples["0002"][2]
    assert bbox.shape[0] == ex["keypoints_2d"].shape[0] - 1 == 2
    np.testing.assert_array_equal(ex["box_valid"], [True, True, False])
    np.testing.assert_array_equal(ex["box"][2], ex["box"][1])
    np.testing.assert_allclose(ex["box"][:2], bbox - 1, atol=1e-5)
    assert examples["0004"][2]["box_valid"].all()


def test_frames_are_the_jpeg_bytes(built):
    _, truth, sources, examples = built
    for seq, (split, i, ex) in examples.items():
        record = sources[split].data_source[i]  # the serialised example, undecoded
        for path, decoded in zip(truth["sequences"][seq]["frame_paths"], ex["frames"]):
            with open(path, "rb") as f:
                data = f.read()
            assert data in record
            np.testing.assert_array_equal(decoded, np.asarray(Image.open(io.BytesIO(data))))


def test_pad_rows_hand_computed():
    padded, valid = video_clips.pad_rows(np.array([[1.0, 2.0], [3.0, 4.0]]), 4)
    np.testing.assert_array_equal(padded, [[1, 2], [3, 4], [3, 4], [3, 4]])
    np.testing.assert_array_equal(valid, [True, True, False, False])
    padded, valid = video_clips.pad_rows(np.zeros((0, 4)), 1)
    assert np.isnan(padded).all() and not valid.any()
    with pytest.raises(ValueError, match="more than the 1 frames"):
        video_clips.pad_rows(np.zeros((2, 4)), 1)


def _fresh(tmp_path):
    manual = str(tmp_path / "raw")
    fake_raw.write_fake_release(manual, num_sequences=4, num_frames=2)
    return manual


def _rewrite(path, **changes):
    data = {k: v for k, v in scipy.io.loadmat(path).items() if not k.startswith("__")}
    for k, v in changes.items():
        if v is None:
            data.pop(k)
        else:
            data[k] = v
    scipy.io.savemat(path, data)


def test_missing_files_are_listed(tmp_path):
    manual = _fresh(tmp_path)
    os.remove(os.path.join(manual, "labels", "0001.mat"))
    os.remove(os.path.join(manual, "labels", "0003.mat"))
    shutil.rmtree(os.path.join(manual, "frames", "0004"))
    with pytest.raises(MissingRawFilesError) as e:
        tfds_build.build("penn_action", manual_dir=manual, data_dir=str(tmp_path / "d"), progress=False)
    assert e.value.missing == ("labels/0001.mat", "labels/0003.mat", "frames/0004/000001.jpg")
    assert not os.path.exists(tmp_path / "d" / "penn_action" / "1.0.0")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(MissingRawFilesError, match=r"labels/<NNNN>.mat"):
        raw.index_release(str(empty))


def test_malformed_fields_are_named(tmp_path):
    manual = _fresh(tmp_path)
    path = os.path.join(manual, "labels", "0002.mat")  # 2 frames, bbox has 1 row
    good = scipy.io.loadmat(path)
    _rewrite(path, visibility=None)
    with pytest.raises(MalformedRawFileError, match=r"0002.mat: field 'visibility': missing"):
        raw.read_label(path)
    _rewrite(path, visibility=good["visibility"], x=good["x"][:, :12])
    with pytest.raises(MalformedRawFileError, match=r"field 'x': has shape \(2, 12\), expected \(N, 13\)"):
        raw.read_label(path)
    _rewrite(path, x=good["x"], train=np.array([[0.0]]))
    with pytest.raises(MalformedRawFileError, match=r"field 'train': expected 1 \(train\) or -1"):
        raw.read_label(path)
    _rewrite(path, train=good["train"], bbox=np.zeros((3, 4)))
    with pytest.raises(MalformedRawFileError, match=r"field 'bbox': has 3 rows for nframes=2"):
        raw.read_label(path)
    _rewrite(path, bbox=good["bbox"], pose=np.zeros((1, 1)))
    with pytest.raises(MalformedRawFileError, match=r"field 'pose'"):
        raw.read_label(path)


def test_inconsistent_frame_counts_are_named(tmp_path):
    manual = _fresh(tmp_path)
    path = os.path.join(manual, "labels", "0004.mat")  # 2 frames
    good = scipy.io.loadmat(path)
    _rewrite(path, y=np.concatenate([good["y"], good["y"][:1]]))
    with pytest.raises(MalformedRawFileError,
                       match=r"0004.mat: field 'nframes': frame counts disagree \(nframes=2, "
                             r"dimensions\[2\]=2, x rows=2, y rows=3, visibility rows=2\)"):
        tfds_build.build("penn_action", manual_dir=manual, data_dir=str(tmp_path / "d"), progress=False)
    _rewrite(path, y=good["y"])
    os.remove(os.path.join(manual, "frames", "0004", "000002.jpg"))
    with pytest.raises(MalformedRawFileError,
                       match=r"0004.mat: field 'nframes': sequence 0004: nframes=2 .* "
                             r"frames/0004/ has 1 .jpg frames .*missing \['000002.jpg'\]"):
        raw.check_sequence(manual, "0004")


def test_swapped_bbox_corners_are_sorted(tmp_path, caplog):
    manual = _fresh(tmp_path)
    path = os.path.join(manual, "labels", "0004.mat")
    bbox = np.array([[10.0, 20.0, 30.0, 40.0], [30.0, 40.0, 10.0, 20.0]])
    _rewrite(path, bbox=bbox)
    with caplog.at_level(logging.WARNING):
        label = raw.read_label(path)
    np.testing.assert_array_equal(label["box"], [[9, 19, 29, 39], [9, 19, 29, 39]])
    assert "1 of 2 rows have x1 > x2 or y1 > y2" in caplog.text


def test_dimensions_disagreeing_with_the_jpegs_is_reported(tmp_path, caplog):
    manual = _fresh(tmp_path)
    path = os.path.join(manual, "labels", "0004.mat")
    _rewrite(path, dimensions=np.array([[32.0, 24.0, 2.0]]))  # [W H n] by mistake
    with caplog.at_level(logging.WARNING):
        seq = raw.read_sequence(manual, "0004")
    np.testing.assert_array_equal(seq["image_size"], [24, 32])
    assert "field 'dimensions' gives (24, 32) (width, height) but the frames are (32, 24)" in caplog.text
