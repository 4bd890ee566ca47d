"""TFDS pose-sequence example dicts <-> SequenceRecord (jpose.datasets.records)."""

import dataclasses

import numpy as np
import pytest

from jpose import camera as camera_lib
from jpose import skeleton
from jpose.datasets import multiview as mv
from jpose.datasets import pipelines
from jpose.datasets import protocols
from jpose.datasets import records as R

CAMERA_FIELDS = ("rotation", "centre", "focal", "principal", "radial", "tangential", "image_size")


@pytest.fixture(scope="module")
def sample():
    """The real-motion sample data of the main job (DeepMimic clips), kept small."""
    return mv.make_multiview_dataset("deepmimic", actions=("walk", "jump"), num_subjects=3,
                                     num_cameras=2, seed=0)


def _assert_records_equal(got, want):
    assert len(got) == len(want)
    for a, b in zip(got, want):
        assert (a.subject, a.action, a.camera_index) == (b.subject, b.action, b.camera_index)
        # The schema stores fps as float32.
        assert a.fps == float(np.float32(b.fps))
        for field in ("positions_world", "positions_camera", "keypoints_clean", "keypoints",
                      "confidence", "outlier", "visible"):
            x, y = getattr(a, field), getattr(b, field)
            assert x.dtype == y.dtype, field
            np.testing.assert_array_equal(x, y, err_msg=field)
        for field in CAMERA_FIELDS:
            np.testing.assert_array_equal(getattr(a.camera, field), getattr(b.camera, field), err_msg=field)


@pytest.mark.parametrize("split", [None, "labelled", "test"])
def test_round_trip_sample_data(sample, split):
    examples = R.examples_from_multiview(sample, split)
    want = sample.sequences if split is None else sample.split(split)
    assert len(examples) == len(want)
    got = R.records_from_examples(examples, layout=sample.layout)
    _assert_records_equal(got, want)
    for r in got:  # None in the generated data: the schema's "all valid, no activity".
        assert r.keypoints_layout is None
        assert r.valid.dtype == bool and r.valid.shape == (r.num_frames,) and r.valid.all()
        assert r.activity.dtype == np.int32 and not r.activity.any()
    # The records feed the training sequences exactly as the originals do.
    a = pipelines.sequences_from_records(got, layout=sample.layout, actions=sample.actions)
    b = pipelines.sequences_from_records(want, layout=sample.layout, actions=sample.actions)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x.inputs, y.inputs)
        np.testing.assert_array_equal(x.poses_3d, y.poses_3d)


def test_examples_follow_the_schema(sample):
    ex = R.examples_from_multiview(sample, "labelled")[0]
    rec = sample.split("labelled")[0]
    f, j = rec.num_frames, 17
    for key in ("subject", "sequence", "action", "camera_id"):
        assert isinstance(ex[key], bytes)
    assert ex["subject"] == b"S1" and ex["sequence"] == rec.action.encode()
    assert ex["subaction"].dtype == np.int32 and ex["camera_index"].dtype == np.int32
    assert ex["fps"].dtype == np.float32
    for key, shape in (("positions_world", (f, j, 3)), ("positions_camera", (f, j, 3)),
                       ("keypoints_2d", (f, j, 2)), ("positions_world_full", (f, j, 3))):
        assert ex[key].shape == shape and ex[key].dtype == np.float32
    assert ex["valid"].dtype == bool and ex["valid"].all()
    assert ex["activity"].dtype == np.int32 and ex["activity"].shape == (f,)
    assert set(ex["camera"]) == set(CAMERA_FIELDS)
    # keypoints_2d is the exact projection, the detections go to the extension key.
    np.testing.assert_array_equal(ex["keypoints_2d"], rec.keypoints_clean)
    np.testing.assert_array_equal(ex["keypoints_2d_detected"], rec.keypoints)


def _builder_example(f=3, *, valid=None):
    """A Human3.6M builder-shaped example (17 standard joints, 32 full), no extension keys."""
    rng = np.random.default_rng(0)
    full = rng.normal(size=(f, 32, 3)).astype(np.float32)
    std = skeleton.convert(full, "h36m_32", "h36m_17").astype(np.float32)
    cam_full = full + np.asarray([0, 0, 4], np.float32)[None, None]
    cam_std = std + np.asarray([0, 0, 4], np.float32)[None, None]
    kp_std = rng.uniform(10, 990, size=(f, 17, 2)).astype(np.float32)
    kp_std[1, 3] = (-5.0, 20.0)  # outside the image
    cam_std[2, 4, 2] = -1.0  # behind the camera
    kp_full = rng.uniform(10, 990, size=(f, 32, 2)).astype(np.float32)
    return {
        "subject": b"S5", "sequence": b"Photo 1", "action": b"TakingPhoto",
        "subaction": np.int32(1), "camera_index": np.int32(2), "camera_id": b"58860488",
        "fps": np.float32(50.0),
        "positions_world": std, "positions_camera": cam_std, "keypoints_2d": kp_std,
        "positions_world_full": full, "positions_camera_full": cam_full, "keypoints_2d_full": kp_full,
        "valid": np.ones(f, bool) if valid is None else valid, "activity": np.zeros(f, np.int32),
        "camera": {
            "rotation": np.eye(3, dtype=np.float32), "centre": np.zeros(3, np.float32),
            "focal": np.asarray([1145.0, 1144.0], np.float32),
            "principal": np.asarray([512.0, 515.0], np.float32),
            "radial": np.zeros(3, np.float32), "tangential": np.zeros(2, np.float32),
            "image_size": np.asarray([1000.0, 1002.0], np.float32),
        },
    }


def test_builder_examples_standard_and_full_layouts():
    ex = _builder_example(valid=np.asarray([True, True, False]))
    (rec,) = R.records_from_examples([ex], layout="h36m_17")
    assert (rec.subject, rec.action, rec.camera_index, rec.fps) == ("S5", "Photo 1", 2, 50.0)
    np.testing.assert_array_equal(rec.positions_world, ex["positions_world"])
    np.testing.assert_array_equal(rec.keypoints, ex["keypoints_2d"])
    np.testing.assert_array_equal(rec.keypoints_clean, ex["keypoints_2d"])
    assert rec.confidence.shape == (3, 17) and np.all(rec.confidence == 1)
    assert not rec.outlier.any()
    # Hand-computed visibility: frame 2 is invalid, (1, 3) is left of the image.
    want = np.ones((3, 17), bool)
    want[1, 3] = False
    want[2, :] = False
    np.testing.assert_array_equal(rec.visible, want)
    assert isinstance(rec.camera, camera_lib.CameraParams)
    np.testing.assert_array_equal(rec.camera.image_size, [1000.0, 1002.0])
    (full,) = R.records_from_examples([ex], layout="full")
    assert full.positions_world.shape == (3, 32, 3)
    np.testing.assert_array_equal(full.keypoints_clean, ex["keypoints_2d_full"])
    (named,) = R.records_from_examples([ex], layout="h36m_32")
    np.testing.assert_array_equal(named.positions_camera, ex["positions_camera_full"])


def test_bad_examples_are_named():
    ex = _builder_example()
    with pytest.raises(ValueError, match="mpi_inf_3dhp_17.*h36m_17"):
        R.records_from_examples([ex], layout="mpi_inf_3dhp_17")
    with pytest.raises(ValueError, match="lsp_14.*14 joints"):
        R.records_from_examples([ex], layout="lsp_14")
    bad = dict(ex)
    del bad["positions_camera"]
    with pytest.raises(ValueError, match=r"examples\[1\].*'positions_camera'"):
        R.records_from_examples([ex, bad])
    bad = dict(ex, keypoints_2d=ex["keypoints_2d"][:, :, :1])
    with pytest.raises(ValueError, match=r"examples\[0\]\['keypoints_2d'\].*\(3, 17, 2\)"):
        R.records_from_examples([bad])
    bad = dict(ex, camera={k: v for k, v in ex["camera"].items() if k != "focal"})
    with pytest.raises(ValueError, match=r"\['camera'\].*'focal'"):
        R.records_from_examples([bad])
    with pytest.raises(ValueError, match="subject"):
        R.records_from_examples([dict(ex, subject=3)])
    with pytest.raises(ValueError, match="one dict"):
        R.records_from_examples(ex)


def test_valid_and_activity_filled_and_round_trip():
    """MPI-INF-3DHP test-like frames: valid_frame and activity ids 1..7 per frame."""
    valid = np.asarray([True, False, True, True, False])
    activity = np.asarray([1, 1, 4, 7, 2], np.int32)
    ex = dict(_builder_example(5, valid=valid), activity=activity)
    (rec,) = R.records_from_examples([ex])
    np.testing.assert_array_equal(rec.valid, valid)
    np.testing.assert_array_equal(rec.activity, activity)
    assert rec.valid.dtype == bool and rec.activity.dtype == np.int32
    assert not rec.visible[1].any() and not rec.visible[4].any()  # invalid frames
    # record -> example -> record keeps them.
    back = R.example_from_record(rec)
    np.testing.assert_array_equal(back["valid"], valid)
    np.testing.assert_array_equal(back["activity"], activity)
    (again,) = R.records_from_examples([back])
    _assert_records_equal([again], [rec])
    np.testing.assert_array_equal(again.valid, valid)
    np.testing.assert_array_equal(again.activity, activity)
    # Sliced by frames (protocols) together with the other per-frame fields.
    part = protocols.slice_frames(rec, slice(1, 4))
    np.testing.assert_array_equal(part.valid, valid[1:4])
    np.testing.assert_array_equal(part.activity, activity[1:4])
    assert part.positions_world.shape[0] == 3
    (strided,) = protocols.stride_frames([rec], 2)
    np.testing.assert_array_equal(strided.activity, activity[::2])
    # Absent keys: None (every frame counts, no activity).
    bare = {k: v for k, v in ex.items() if k not in ("valid", "activity")}
    (rec,) = R.records_from_examples([bare])
    assert rec.valid is None and rec.activity is None and rec.visible[4].all()
    assert protocols.slice_frames(rec, slice(0, 2)).valid is None
    with pytest.raises(ValueError, match=r"examples\[0\]\['activity'\]"):
        R.records_from_examples([dict(ex, activity=activity[:4])])


def test_records_with_native_keypoints_are_not_examples(sample):
    rec = sample.split("test")[0]
    f = rec.num_frames
    coco = rec._replace(keypoints=np.zeros((f, 17, 2), np.float32), keypoints_layout="coco_17")
    with pytest.raises(ValueError, match="coco_17.*convert_keypoints=True"):
        R.example_from_record(coco)


def test_multiview_helpers_keep_the_new_fields_consistent(sample, tmp_path):
    recs = sample.split("test")[:2]
    f = recs[0].num_frames
    coco = recs[0]._replace(keypoints=np.zeros((f, 17, 2), np.float32), keypoints_layout="coco_17")
    with pytest.raises(ValueError, match="keypoints_layout differs"):
        mv.stack_records([coco, recs[1]])
    stacked = mv.stack_records([coco, recs[1]], fields=("positions_camera", "visible"))
    assert stacked["positions_camera"].shape[0] == f + recs[1].num_frames
    marked = dataclasses.replace(sample, sequences=(recs[0]._replace(valid=np.ones(f, bool)),)
                                 + sample.sequences[1:])
    with pytest.raises(ValueError, match=r"sequences\[0\].*'valid'"):
        mv.save_multiview_dataset(marked, str(tmp_path / "x.npz"))
