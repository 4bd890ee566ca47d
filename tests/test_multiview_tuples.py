"""Synchronised multi-view tuples (jpose.datasets.multiview_tuples)."""

import numpy as np
import pytest

from jpose import camera as camera_lib
from jpose.datasets import multiview as mv
from jpose.datasets import pipelines
from jpose.datasets.multiview_tuples import CAMERA_KEYS, cameras_of, multiview_tuples

J = 5
NUM_CAMS = 3


def _project(world, rotation, centre, focal, principal, radial, tangential):
    """World points -> pixels: x_cam = R (X - c), then Human3.6M ProjectPointRadial.m, NumPy float64."""
    cam = (np.asarray(world, np.float64) - centre) @ np.asarray(rotation, np.float64).T
    x = cam[..., :2] / cam[..., 2:3]
    r2 = np.sum(x * x, axis=-1)
    k, p = np.asarray(radial, np.float64), np.asarray(tangential, np.float64)
    rad = 1 + k[0] * r2 + k[1] * r2**2 + k[2] * r2**3
    tan = p[0] * x[..., 1] + p[1] * x[..., 0]
    xxx = x * (rad + tan)[..., None] + np.stack([p[1] * r2, p[0] * r2], axis=-1)
    return np.asarray(focal, np.float64) * xxx + np.asarray(principal, np.float64), cam


@pytest.fixture(scope="module")
def rig():
    return mv.make_cameras(NUM_CAMS, seed=1)


@pytest.fixture(scope="module")
def data(rig):
    """Three (subject, sequence) groups; per camera the 2D is the projection of the same world
    pose at the same frame. Camera 1 of group 0 has 2 extra frames (a longer video) and group
    2 lacks camera 2. Records are shuffled."""
    rng = np.random.default_rng(0)
    lengths = {("S1", "walk"): 7, ("S1", "run"): 4, ("S2", "walk"): 6}
    worlds, records = {}, []
    for g, (key, f) in enumerate(lengths.items()):
        world = (rng.normal(scale=0.3, size=(f + 2, J, 3)) + [0.0, 0.0, 1.0]).astype(np.float32)
        worlds[key] = world
        for c in range(NUM_CAMS):
            if key == ("S2", "walk") and c == 2:
                continue
            n = f + 2 if (g == 0 and c == 1) else f
            cam = camera_lib.CameraParams(*(np.asarray(x[c]) for x in rig))
            kp, xyz = _project(world[:n], cam.rotation, cam.centre, cam.focal, cam.principal,
                               cam.radial, cam.tangential)
            records.append(mv.SequenceRecord(
                subject=key[0], action=key[1], camera_index=c, fps=50.0,
                positions_world=world[:n], positions_camera=xyz.astype(np.float32),
                keypoints_clean=kp.astype(np.float32),
                keypoints=(kp + rng.normal(size=kp.shape)).astype(np.float32),
                confidence=rng.uniform(size=(n, J)).astype(np.float32),
                outlier=np.zeros((n, J), bool), visible=np.ones((n, J), bool), camera=cam))
    order = rng.permutation(len(records))
    return worlds, tuple(records[i] for i in order)


def test_tuples_are_synchronous(data, rig):
    worlds, records = data
    ds = multiview_tuples(records)
    assert ds.cameras == (0, 1, 2)
    # Group 0 serves its common 7 frames (not camera 1's 9); group ("S2", "walk") is skipped.
    assert set(ds.groups) == {("S1", "walk"), ("S1", "run")}
    assert len(ds) == 7 + 4
    for i in range(len(ds)):
        el = ds[i]
        key = (str(el["subject"]), str(el["sequence"]))
        f = int(el["frame_index"])
        assert el["keypoints_2d"].shape == (NUM_CAMS, J, 2)
        np.testing.assert_array_equal(el["camera_index"], [0, 1, 2])
        for v in range(NUM_CAMS):
            # Every view holds the same world pose: the one of this group at this frame.
            np.testing.assert_array_equal(el["positions_world"][v], worlds[key][f])
            kp, xyz = _project(worlds[key][f], *(el[k][v] for k in CAMERA_KEYS[:6]))
            np.testing.assert_allclose(el["keypoints_2d"][v], kp, rtol=0, atol=1e-3)
            np.testing.assert_allclose(el["positions_camera"][v], xyz, rtol=0, atol=1e-5)
            np.testing.assert_array_equal(el["camera_rotation"][v], np.asarray(rig.rotation[v]))
        assert isinstance(cameras_of(el), camera_lib.CameraParams)


def _index(ds, key, frame):
    g = ds.groups.index(key)
    return sum(ds.group_lengths[:g]) + frame


def test_camera_order_and_subset(data):
    worlds, records = data
    ds = multiview_tuples(records, cameras=(1, 0))
    # Now ("S2", "walk") has both requested cameras.
    assert len(ds) == 7 + 4 + 6
    assert set(ds.groups) == set(worlds)
    full = multiview_tuples(records)
    a = full[_index(full, ("S1", "walk"), 3)]
    b = ds[_index(ds, ("S1", "walk"), 3)]
    np.testing.assert_array_equal(b["camera_index"], [1, 0])
    np.testing.assert_array_equal(b["keypoints_2d"][0], a["keypoints_2d"][1])
    np.testing.assert_array_equal(b["keypoints_2d"][1], a["keypoints_2d"][0])
    np.testing.assert_array_equal(b["camera_centre"][0], a["camera_centre"][1])
    c = ds[_index(ds, ("S2", "walk"), 5)]
    np.testing.assert_array_equal(c["positions_world"][1], worlds[("S2", "walk")][5])


def test_windows_are_edge_padded(data):
    _, records = data
    ds = multiview_tuples(records, padding=(2, 1))
    base = multiview_tuples(records)
    offsets = np.cumsum([0] + list(base.group_lengths))
    for i in range(len(ds)):
        el = ds[i]
        g = int(el["group_index"])
        f = int(el["frame_index"])
        n = base.group_lengths[g]
        assert el["keypoints_2d"].shape == (NUM_CAMS, 4, J, 2)
        for t, dt in enumerate(range(-2, 2)):
            src = base[int(offsets[g]) + min(max(f + dt, 0), n - 1)]
            np.testing.assert_array_equal(el["keypoints_2d"][:, t], src["keypoints_2d"])
            np.testing.assert_array_equal(el["confidence"][:, t], src["confidence"])
    # Vectorised gather equals element access.
    batch = ds.gather(np.asarray([0, 5, 10]))
    for b, i in enumerate([0, 5, 10]):
        for k, v in ds[i].items():
            np.testing.assert_array_equal(batch[k][b], v)


def test_tuples_batch_through_training_batches(data):
    _, records = data
    ds = multiview_tuples(records, padding=(1, 1))
    tb = pipelines.training_batches(ds, global_batch_size=4, seed=0)
    batch = tb.batch(1)
    assert batch["keypoints_2d"].shape == (4, NUM_CAMS, 3, J, 2)
    assert batch["camera_focal"].shape == (4, NUM_CAMS, 2)
    idx, _ = tb.example_indices(1)
    np.testing.assert_array_equal(batch["keypoints_2d"][2], ds[int(idx[2])]["keypoints_2d"])


def test_bad_input(data):
    _, records = data
    with pytest.raises(ValueError, match="second record"):
        multiview_tuples(records + records[:1])
    with pytest.raises(ValueError, match="no .subject, sequence. has all of the cameras"):
        multiview_tuples(records, cameras=(0, 7))
    with pytest.raises(ValueError, match="padding"):
        multiview_tuples(records, padding=(1, -1))
    with pytest.raises(ValueError, match="distinct"):
        multiview_tuples(records, cameras=(0, 0))
    with pytest.raises(ValueError, match="empty"):
        multiview_tuples(())
