"""Training data from a built dataset (``data.source = "tfds"``) under the protocols."""

import os

import numpy as np
import pytest

from jpose.datasets import protocols, tfds_build
from jpose.datasets.h36m import fake_raw
from jpose.nets import network
from jpose.training import streams
from launch.configs import common


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("h36m")
    raw, data_dir = str(root / "raw"), str(root / "tfds")
    sequences = {"S1": ("Directions 1", "Directions", "Sitting 1", "TakingPhoto 1"),
                 "S5": ("Walking 1", "Eating 1"), "S9": ("Walking 1", "Photo 1")}
    truth = fake_raw.write_fake_release(raw, subjects=("S1", "S5", "S9"), sequences=sequences,
                                        num_frames=40, videos=False, videopose3d=False)
    tfds_build.build("h36m", manual_dir=raw, data_dir=data_dir, config="poses", progress=False)
    return data_dir, truth


def _config(data_dir, **data):
    c = common.base_config()
    c.data.source = "tfds"
    c.data.dataset = "h36m"
    c.data.data_dir = data_dir
    c.data.tfds_config = "poses"
    c.data.train_subjects = ("S1", "S5")
    c.data.test_subjects = ("S9",)
    c.data.update(data)
    c.global_batch_size = 8
    return c


def _split(data_dir, **data):
    c = _config(data_dir, **data)
    train, _, _ = streams._records(c)
    return streams.labelled_split(c.data, train)


def test_tfds_source_protocols(built):
    data_dir, _ = built
    train, test, _ = streams._records(_config(data_dir))
    assert {r.subject for r in train} == {"S1", "S5"} and {r.subject for r in test} == {"S9"}
    assert len(train) == 6 * 4  # sequences x cameras
    assert {r.action for r in test} == {"Walking", "TakingPhoto"}  # merged to classes

    s1, rest = _split(data_dir, protocol="subjects", labelled_subjects=("S1",))
    assert {r.subject for r in s1} == {"S1"} and len(s1) == 16
    assert {r.subject for r in rest} == {"S5"} and len(rest) == 8  # the unlabelled stream

    frac, rest = _split(data_dir, protocol="fraction", labelled_fraction=0.1)
    assert {r.subject for r in frac} == {"S1"} and {r.subject for r in rest} == {"S5"}
    by_key = {(r.subject, r.action, r.camera_index): r for r in s1}
    for r in frac:  # a contiguous chunk of round(0.1 F) frames of the S1 sequence
        full = by_key[(r.subject, r.action, r.camera_index)]
        n = r.num_frames
        assert n == round(0.1 * full.num_frames)
        starts = [k for k in range(full.num_frames - n + 1)
                  if np.array_equal(full.positions_world[k:k + n], r.positions_world)]
        assert len(starts) == 1

    hard, rest = _split(data_dir, protocol="hard_actions")
    classes = {protocols.h36m_action_of(r) for r in hard}
    assert classes == {"Directions", "Walking", "Eating"}  # Sitting, TakingPhoto unlabelled
    assert {protocols.h36m_action_of(r) for r in rest} == {"Sitting", "TakingPhoto"}

    ten, _ = _split(data_dir, downsample_fps=10.0)
    full_len = {(r.subject, r.action, r.camera_index): r.num_frames for r in train}
    for r in ten:
        assert r.num_frames == -(-full_len[(r.subject, r.action, r.camera_index)] // 5)

    with pytest.raises(ValueError, match="data.protocol"):
        _split(data_dir, protocol="nope")


def test_fraction_at_10_fps_cuts_the_chunk_then_strides_it(built):
    """VideoPose3D's fetch(): n = round(F // 5 * fraction) * 5 frames from the chunk start,
    every 5th of them (subset, then downsample inside the chunk)."""
    data_dir, _ = built
    s1, _ = _split(data_dir, protocol="subjects", labelled_subjects=("S1",))
    frac, rest = _split(data_dir, protocol="fraction", labelled_fraction=0.5,
                        downsample_fps=10.0)
    by_key = {(r.subject, r.action, r.camera_index): r for r in s1}
    for r in frac:
        full = by_key[(r.subject, r.action, r.camera_index)]
        f = full.num_frames
        n = round(f // 5 * 0.5) * 5
        start = protocols.vp3d_subset_start(f, n)
        np.testing.assert_array_equal(r.positions_world, full.positions_world[start:start + n:5])
        assert r.fps == full.fps / 5
    assert all(r.fps == 10.0 for r in rest)


def test_10_fps_evaluates_at_10_fps(built):
    data_dir, _ = built
    full = streams.load_data(_config(data_dir))
    ten = streams.load_data(_config(data_dir, downsample_fps=10.0))
    assert [len(x) for _, x, _ in ten.eval_sequences] == [
        -(-len(x) // 5) for _, x, _ in full.eval_sequences]


def test_tfds_source_builds_training_batches(built):
    data_dir, _ = built
    c = _config(data_dir, protocol="subjects", labelled_subjects=("S1",))
    c.model.overrides = {"channels": 16}
    c.streams = {"labelled": {"split": "labelled"},
                 "unlabelled": {"split": "unlabelled", "global_batch_size": 4}}
    data = streams.load_data(c)
    nets = {"pose": network.build(dict(c.model), num_joints_in=17, num_joints_out=17,
                                  in_features=2)}
    s = streams.make_streams(c, data, nets)
    batch = s.batch(0)
    assert batch["labelled"]["inputs"].shape == (8, 27, 17, 2)
    assert batch["labelled"]["poses_3d"].shape == (8, 1, 17, 3)
    assert batch["labelled"]["camera"].shape == (8, 9)  # intrinsics travel with the data
    assert batch["unlabelled"]["inputs"].shape == (4, 27, 17, 2)
    np.testing.assert_array_equal(batch["labelled"]["poses_3d"][:, :, 0], 0)  # root-relative
    assert len(data.eval_sequences) == 2 * 4
    # The primary stream defines the epoch; the other cycles through its own.
    assert s.steps_per_epoch == s.streams["labelled"].batches.steps_per_epoch
    far = s.steps_per_epoch * 3 + 1
    assert s.batch(far)["unlabelled"]["inputs"].shape == (4, 27, 17, 2)
