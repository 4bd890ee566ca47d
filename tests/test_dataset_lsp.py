"""LSP / LSPET builder with Ronchi et al.'s relative depth: fake release -> TFDS -> values."""

import json
import os
import zipfile

import numpy as np
import pytest
import scipy.io
import tensorflow_datasets as tfds

from jpose import skeleton
from jpose.datasets import raw_files, tfds_build
from jpose.datasets.lsp import fake_raw, raw

NUM_LSP, NUM_LSPET = 10, 6

# shared/DATASET_FORMATS.md section 6.3, typed from the LSP README order.
DOCUMENTED_ORDER = [
    "right_ankle", "right_knee", "right_hip", "left_hip", "left_knee", "left_ankle",
    "right_wrist", "right_elbow", "right_shoulder", "left_shoulder", "left_elbow",
    "left_wrist", "neck", "head_top"]


def _by_id(source):
    return {source[i]["image_id"].decode(): source[i] for i in range(len(source))}


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("lsp")
    manual, data_dir = str(root / "raw"), str(root / "data")
    gt = fake_raw.write_fake_release(manual, num_lsp=NUM_LSP, num_lspet=NUM_LSPET,
                                     relative_depth="json", seed=3)
    out = {"gt": gt, "manual": manual, "data_dir": data_dir}
    for config, splits in (("lsp", ("train", "test")), ("lspet", ("train",))):
        tfds_build.build("lsp", manual_dir=manual, data_dir=data_dir, config=config, progress=False)
        for split in splits:
            out[config, split] = _by_id(tfds_build.load("lsp", data_dir=data_dir, split=split,
                                                        config=config))
    return out


def test_lsp_14_matches_documented_order():
    assert list(skeleton.get("lsp_14").joint_names) == DOCUMENTED_ORDER
    assert list(raw.LSP_JOINT_NAMES) == DOCUMENTED_ORDER


def test_split_boundaries(built):
    # Fake count 10 -> train = first 10 // 2 = 5; the real release (2000) gives 1000.
    assert sorted(built["lsp", "train"]) == [f"im{i:04d}" for i in range(1, 6)]
    assert sorted(built["lsp", "test"]) == [f"im{i:04d}" for i in range(6, 11)]
    assert sorted(built["lspet", "train"]) == [f"im{i:05d}" for i in range(1, 7)]
    builder = tfds_build.builder_class("lsp")(data_dir=built["data_dir"], config="lspet")
    assert set(builder.info.splits) == {"train"}


@pytest.mark.parametrize("config", ["lsp", "lspet"])
def test_values_images_and_visibility(built, config):
    gt = built["gt"][config]
    examples = {**built[config, "train"], **built.get((config, "test"), {})}
    assert len(examples) == len(gt["image_id"])
    # Independent reading of joints.mat: the documented axis orders and flag meanings.
    joints = scipy.io.loadmat(os.path.join(built["manual"], f"{config}_dataset", "joints.mat"))["joints"]
    if config == "lsp":
        assert joints.shape == (3, 14, NUM_LSP)
        xy, visible = joints[:2].transpose(2, 1, 0), joints[2].T == 0  # 0 = visible
    else:
        assert joints.shape == (14, 3, NUM_LSPET)  # transposed layout
        xy, visible = joints[:, :2].transpose(2, 0, 1), joints[:, 2].T == 1  # 1 = visible
    for i, image_id in enumerate(gt["image_id"]):
        ex = examples[image_id]
        assert ex["keypoints_2d"].dtype == np.float32 and ex["visible"].dtype == bool
        np.testing.assert_array_equal(ex["keypoints_2d"], gt["keypoints_2d"][i])
        np.testing.assert_allclose(ex["keypoints_2d"], xy[i] - 1, atol=1e-5)  # 1-based -> 0-based
        np.testing.assert_array_equal(ex["visible"], gt["visible"][i])
        np.testing.assert_array_equal(ex["visible"], visible[i])
        w, h = gt["image_size"][i]
        np.testing.assert_array_equal(ex["image_size"], [w, h])
        assert ex["image"].shape == (h, w, 3) and w != h
    # An occluded joint in each release (fake image 0: head top occluded, right ankle not).
    first = examples[gt["image_id"][0]]
    assert not first["visible"][13] and first["visible"][0]
    assert gt["visible"].sum() < gt["visible"].size  # more occlusions than the forced one
    # A joint's position survives in lsp_14 order: right wrist (index 6) of image 1.
    np.testing.assert_allclose(examples[gt["image_id"][1]]["keypoints_2d"][6], xy[1, 6] - 1, atol=1e-5)


@pytest.mark.parametrize("config", ["lsp", "lspet"])
def test_image_bytes_unchanged(built, config):
    builder = tfds_build.builder_class("lsp")(data_dir=built["data_dir"], config=config)
    source = builder.as_data_source("train", decoders={"image": tfds.decode.SkipDecoding()})
    for i in range(len(source)):
        ex = source[i]
        name = ex["image_id"].decode()
        with open(os.path.join(built["manual"], f"{config}_dataset", "images", name + ".jpg"), "rb") as f:
            assert ex["image"] == f.read()


def test_relative_depth_mapped_by_name(built):
    gt = built["gt"]["lsp"]
    names = built["gt"]["depth_joint_names"]
    assert names != raw.DEPTH_JOINT_NAMES and [raw.DEPTH_NAME_TO_LSP[n] for n in names] != DOCUMENTED_ORDER
    examples = {**built["lsp", "train"], **built["lsp", "test"]}
    missing = [i for i in gt["image_id"] if i not in gt["depth"]]
    assert missing == ["im0010"]
    assert not examples["im0010"]["has_depth"] and examples["im0010"]["depth_pairs"].shape == (0, 2)
    agree = []
    for image_id, d in gt["depth"].items():
        ex = examples[image_id]
        assert ex["has_depth"]
        np.testing.assert_array_equal(ex["depth_pairs"], d["pairs"])
        np.testing.assert_array_equal(ex["depth_closer"], d["closer"])
        np.testing.assert_array_equal(ex["depth_risk"], d["risk"])
        np.testing.assert_array_equal(ex["depth_prob"], d["prob"])
        # The closer joint has the smaller fake depth (label 0 => kp0 closer).
        z = gt["depth_z"][gt["image_id"].index(image_id)]
        k = np.arange(len(d["pairs"]))
        near = ex["depth_pairs"][k, ex["depth_closer"]]
        far = ex["depth_pairs"][k, 1 - ex["depth_closer"]]
        assert np.all(z[near] < z[far])
        assert ex["depth_keypoints_agree"] == d["keypoints_agree"]
        agree.append(d["keypoints_agree"])
    assert agree.count(False) == 1 and len(agree) == NUM_LSP - 1
    # The JSON lists images in shuffled order: matching is by file name.
    with open(os.path.join(built["manual"], raw.DEPTH_JSON)) as f:
        listed = [im["im_file"] for im in json.load(f)["images"]]
    assert listed != sorted(listed)
    for ex in built["lspet", "train"].values():
        assert not ex["has_depth"] and ex["depth_closer"].shape == (0,)


def test_hand_written_depth_file(tmp_path):
    # joint_names in the documented probable order: nose (= head_top) first, neck second.
    kp = np.arange(28, dtype=float).tolist()
    doc = {"joint_names": list(raw.DEPTH_JOINT_NAMES), "images": [{
        "im_file": "lsp_dataset/images/im0002.jpg", "is_train": True, "keypoints": kp,
        "occluded": [0] * 14,
        "anns": [{"kp0": 0, "kp1": 1, "label": 1, "risk": 0.25, "prob": 0.75},
                 {"kp0": 13, "kp1": 2, "label": 0, "risk": 0.0, "prob": 1.0}]}]}
    path = tmp_path / raw.DEPTH_JSON
    path.write_text(json.dumps(doc))
    rec = raw.read_relative_depth(path)["im0002"]
    # nose -> head_top (13), neck -> 12; right_ankle -> 0, left_shoulder -> 9.
    np.testing.assert_array_equal(rec["pairs"], [[13, 12], [0, 9]])
    np.testing.assert_array_equal(rec["closer"], [1, 0])  # neck closer; right ankle closer
    np.testing.assert_array_equal(rec["risk"], np.float32([0.25, 0.0]))
    # Keypoint j of the file (x = 2j, y = 2j + 1) lands at its lsp_14 slot, minus 1 px.
    np.testing.assert_array_equal(rec["keypoints_2d"][13], [-1.0, 0.0])  # nose = file joint 0
    np.testing.assert_array_equal(rec["keypoints_2d"][0], [25.0, 26.0])  # right_ankle = joint 13


def test_zipped_json_and_no_json(tmp_path):
    plain = fake_raw.write_fake_release(tmp_path / "a", num_lsp=6, num_lspet=0, seed=1)
    zipped = fake_raw.write_fake_release(tmp_path / "b", num_lsp=6, num_lspet=0, seed=1,
                                         relative_depth="zip")
    none = fake_raw.write_fake_release(tmp_path / "c", num_lsp=6, num_lspet=0, seed=1,
                                       relative_depth=None)
    assert not os.path.exists(tmp_path / "b" / raw.DEPTH_JSON)
    assert zipped["lsp"]["depth"].keys() == plain["lsp"]["depth"].keys()
    a, b = raw.read_config(tmp_path / "a", "lsp"), raw.read_config(tmp_path / "b", "lsp")
    for split in ("train", "test"):
        for ra, rb in zip(a[split], b[split]):
            np.testing.assert_array_equal(ra["depth_pairs"], rb["depth_pairs"])
            np.testing.assert_array_equal(ra["depth_closer"], rb["depth_closer"])
            assert ra["has_depth"] == rb["has_depth"]
    assert sum(r["has_depth"] for r in b["train"] + b["test"]) == 5
    c = raw.read_config(tmp_path / "c", "lsp")
    assert [len(c["train"]), len(c["test"])] == [3, 3]
    for r in c["train"] + c["test"]:
        assert not r["has_depth"] and not r["depth_keypoints_agree"]
        assert r["depth_pairs"].shape == (0, 2) and r["depth_prob"].dtype == np.float32
    assert none["lsp"]["image_id"] == plain["lsp"]["image_id"]
    # A zip without the JSON member is named.
    with zipfile.ZipFile(tmp_path / "c" / raw.DEPTH_ZIP, "w") as z:
        z.writestr("readme.txt", "x")
    with pytest.raises(raw_files.MalformedRawFileError, match=raw.DEPTH_JSON + ".*not in the archive"):
        raw.read_config(tmp_path / "c", "lsp")


def test_missing_files_listed(tmp_path):
    manual = tmp_path / "raw"
    fake_raw.write_fake_release(manual, num_lsp=4, num_lspet=3, relative_depth=None)
    os.remove(manual / "lsp_dataset/images/im0002.jpg")
    os.remove(manual / "lsp_dataset/images/im0004.jpg")
    with pytest.raises(raw_files.MissingRawFilesError) as e:
        tfds_build.build("lsp", manual_dir=str(manual), data_dir=str(tmp_path / "d"),
                         config="lsp", progress=False)
    assert e.value.missing == ("lsp_dataset/images/im0002.jpg", "lsp_dataset/images/im0004.jpg")
    os.remove(manual / "lspet_dataset/joints.mat")
    with pytest.raises(raw_files.MissingRawFilesError) as e:
        raw.read_config(manual, "lspet")
    assert e.value.missing == ("lspet_dataset/joints.mat",)


def _depth_doc(manual):
    with open(os.path.join(manual, raw.DEPTH_JSON)) as f:
        return json.load(f)


def _write_doc(manual, doc):
    with open(os.path.join(manual, raw.DEPTH_JSON), "w") as f:
        json.dump(doc, f)


def test_malformed_files_named(tmp_path):
    manual = str(tmp_path / "raw")
    fake_raw.write_fake_release(manual, num_lsp=4, num_lspet=3)
    lsp_mat = os.path.join(manual, "lsp_dataset", "joints.mat")
    lspet_mat = os.path.join(manual, "lspet_dataset", "joints.mat")
    good_lsp = scipy.io.loadmat(lsp_mat)["joints"]
    # LSP joints written in LSPET's (14, 3, N) layout.
    scipy.io.savemat(lsp_mat, {"joints": good_lsp.transpose(1, 0, 2)})
    with pytest.raises(raw_files.MalformedRawFileError,
                       match=r"joints.mat: field 'joints': has shape \(14, 3, 4\), expected \(3, 14, N\)"):
        raw.read_config(manual, "lsp")
    scipy.io.savemat(lspet_mat, {"joints": np.zeros((3, 14, 3))})
    with pytest.raises(raw_files.MalformedRawFileError, match=r"expected \(14, 3, N\)"):
        tfds_build.build("lsp", manual_dir=manual, data_dir=str(tmp_path / "d"), config="lspet",
                         progress=False)
    bad_flags = good_lsp.copy()
    bad_flags[2, 0, 0] = 2
    scipy.io.savemat(lsp_mat, {"joints": bad_flags})
    with pytest.raises(raw_files.MalformedRawFileError, match="'joints': visibility flags must be 0 or 1"):
        raw.read_config(manual, "lsp")
    scipy.io.savemat(lsp_mat, {"joints": good_lsp})
    assert len(raw.read_config(manual, "lsp")["train"]) == 2

    doc = _depth_doc(manual)
    bad = json.loads(json.dumps(doc))
    bad["joint_names"][bad["joint_names"].index("nose")] = "head"
    _write_doc(manual, bad)
    with pytest.raises(raw_files.MalformedRawFileError,
                       match=r"field 'joint_names': unknown joint name\(s\) \['head'\]"):
        raw.read_config(manual, "lsp")
    bad = json.loads(json.dumps(doc))
    bad["images"][0]["is_train"] = not bad["images"][0]["is_train"]
    _write_doc(manual, bad)
    with pytest.raises(raw_files.MalformedRawFileError, match=r"field 'images\[0\].is_train'"):
        raw.read_config(manual, "lsp")
    bad = json.loads(json.dumps(doc))
    bad["images"][1]["im_file"] = "images/im0099.jpg"
    _write_doc(manual, bad)
    with pytest.raises(raw_files.MalformedRawFileError,
                       match=r"'images\[1\].im_file': im0099.jpg is not one"):
        raw.read_config(manual, "lsp")
    bad = json.loads(json.dumps(doc))
    bad["images"][0]["anns"][0]["kp1"] = 14
    _write_doc(manual, bad)
    with pytest.raises(raw_files.MalformedRawFileError, match=r"'images\[0\].anns\[0\].kp1'"):
        raw.read_config(manual, "lsp")
    bad = json.loads(json.dumps(doc))
    del bad["images"][0]["keypoints"][-1]
    _write_doc(manual, bad)
    with pytest.raises(raw_files.MalformedRawFileError,
                       match=r"'images\[0\].keypoints': expected a list of 28"):
        raw.read_config(manual, "lsp")
    with open(os.path.join(manual, raw.DEPTH_JSON), "w") as f:
        f.write("{not json")
    with pytest.raises(raw_files.MalformedRawFileError, match="not a readable JSON"):
        raw.read_config(manual, "lsp")
    # LSPET ignores the depth file.
    scipy.io.savemat(lspet_mat, {"joints": np.zeros((14, 3, 3))})
    assert len(raw.read_config(manual, "lspet")["train"]) == 3
    with pytest.raises(ValueError, match="config: expected one of"):
        raw.read_config(manual, "mpii")
