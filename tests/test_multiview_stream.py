"""The multi-view training stream (``streams.<name>.source = "multiview"``)."""

import ml_collections
import numpy as np
import pytest

from jpose.nets import network
from jpose.training import streams
from launch.configs import common


def _config(num_cameras=4, held_out=(), **stream):
    c = common.apply_tiny(common.base_config())
    c.data.num_cameras = num_cameras
    c.data.held_out_cameras = held_out
    c.data.synthetic_frames = 30
    c.streams = {"mv": {"source": "multiview", "split": "train", "views": 3,
                        "global_batch_size": 8, "network": "", "flip": False, **stream}}
    c.primary_stream = "mv"
    return c


_DATA = {}


def _data(config):
    key = (config.data.num_cameras, tuple(config.data.held_out_cameras))
    if key not in _DATA:
        _DATA[key] = streams.load_data(config)
    return _DATA[key]


def _nets(data, kind="temporal"):
    meta = data.meta
    spec = ({"kind": "temporal", "variant": "tiny_9f", "overrides": {}} if kind == "temporal"
            else {"kind": "mlp", "variant": "tiny_mlp", "overrides": {}})
    spec = network.with_data_shapes(spec, num_joints_in=meta["num_joints_in"],
                                    num_joints_out=meta["num_joints_out"],
                                    in_features=meta["in_features"])
    return {"pose": network.build(spec)}


def _stream(config, kind="temporal", **kw):
    data = _data(config)
    return streams.make_streams(config, data, _nets(data, kind), **kw).streams["mv"], data


def _to_world(poses_3d, trajectory, extrinsics):
    """Camera-frame joints (root-relative + root) back to the world, NumPy:
    x_world = R^T x_cam + c."""
    r = extrinsics[..., :9].reshape(extrinsics.shape[:-1] + (3, 3))
    c = extrinsics[..., 9:]
    cam = poses_3d + trajectory[..., None, :]
    return np.einsum("...ba,...jb->...ja", r, cam) + c[..., None, :]


@pytest.mark.parametrize("kind", ["temporal", "mlp"])
def test_shapes_and_keys(kind):
    s, data = _stream(_config(), kind)
    b = s.batches.batch(0)
    j_in, j, c = data.meta["num_joints_in"], data.meta["num_joints_out"], data.meta["in_features"]
    t = (9,) if kind == "temporal" else ()
    one = (1,) if kind == "temporal" else ()
    expected = {"inputs": (8, 3) + t + (j_in, c), "poses_3d": (8, 3) + one + (j, 3),
                "trajectory": (8, 3) + one + (3,), "camera": (8, 3, 9),
                "extrinsics": (8, 3, 12), "confidence": (8, 3) + one + (j_in,),
                "weight": (8,), "subject": (8,), "sequence_index": (8,),
                "frame_index": (8,), "camera_index": (8, 3)}
    got = {k: b[k].shape for k in s.keys}
    assert got == expected
    for k in ("subject", "sequence_index", "frame_index", "camera_index"):
        assert b[k].dtype == np.int32
    assert set(s.keys) <= set(streams.MULTIVIEW_KEYS)
    # Views are distinct cameras of the example's group.
    assert all(len(set(row)) == 3 for row in b["camera_index"])


def test_views_are_synchronised_and_match_the_single_view_examples():
    s, data = _stream(_config())
    seqs = data.splits["train"]
    for step in (0, 5):
        b = s.batches.batch(step)
        world = _to_world(b["poses_3d"][:, :, 0], b["trajectory"][:, :, 0], b["extrinsics"])
        # Every view's 3D, rotated back to the world, is the same pose (metres).
        np.testing.assert_allclose(world, np.broadcast_to(world[:, :1], world.shape), atol=2e-5)
        # And each view is exactly that camera's sequence at the instant (inputs incl. window
        # centre, camera, extrinsics).
        groups = s.batches.group_keys
        for i in range(b["weight"].shape[0]):
            subj, act = groups[b["sequence_index"][i]]
            assert s.batches.subject_names[b["subject"][i]] == subj
            f = b["frame_index"][i]
            for v in range(3):
                seq = next(q for q in seqs if q.subject == subj and q.action_name == act
                           and q.camera_index == b["camera_index"][i, v])
                np.testing.assert_array_equal(b["inputs"][i, v, 4], seq.inputs[f])
                np.testing.assert_array_equal(b["poses_3d"][i, v, 0], seq.poses_3d[f])
                np.testing.assert_array_equal(b["camera"][i, v], seq.camera)
                np.testing.assert_array_equal(b["extrinsics"][i, v], seq.extrinsics)
                np.testing.assert_array_equal(b["confidence"][i, v, 0], seq.confidence[f])


def test_batches_are_a_pure_function_of_seed_and_step():
    c = _config()
    a, _ = _stream(c)
    again, _ = _stream(c)
    for k in (0, 3, 17):
        x, y = a.batches.batch(k), again.batches.batch(k)
        for key in a.keys:
            np.testing.assert_array_equal(x[key], y[key])
    # Out of order equals in order (resume is exact).
    np.testing.assert_array_equal(a.batches.batch(3)["inputs"], again.batches.batch(3)["inputs"])
    other_seed = _config()
    other_seed.seed = 1
    z, _ = _stream(other_seed)
    assert not np.array_equal(z.batches.batch(0)["camera_index"], a.batches.batch(0)["camera_index"]) \
        or not np.array_equal(z.batches.batch(0)["frame_index"], a.batches.batch(0)["frame_index"])
    # Steps draw different views: over many examples every ordered camera choice varies.
    draws = np.concatenate([a.batches.batch(k)["camera_index"] for k in range(10)])
    assert len({tuple(r) for r in draws}) > 10


def test_epoch_visits_every_instant_once_and_draws_are_uniform():
    c = _config(views=2)
    c.streams.mv.global_batch_size = 4
    s, _ = _stream(c)
    mv = s.batches
    seen = []
    for k in range(mv.steps_per_epoch):
        b = mv.batch(k)
        seen += list(zip(b["sequence_index"], b["frame_index"]))
    assert len(seen) == len(set(seen)) == mv.steps_per_epoch * 4
    assert len(seen) >= mv.num_examples - 3
    # The first view is uniform over the 4 cameras (chi-square-ish bound, many draws).
    firsts = np.concatenate([mv.views_of(k)[2][:, 0] for k in range(400)])
    counts = np.bincount(firsts, minlength=4)
    assert counts.shape == (4,) and np.all(np.abs(counts / counts.sum() - 0.25) < 0.04)


def test_process_slices_compose_the_global_batch():
    c = _config()
    full, _ = _stream(c)
    parts = [_stream(c, process_index=p, process_count=2)[0] for p in range(2)]
    for key in full.keys:
        np.testing.assert_array_equal(
            np.concatenate([p.batches.batch(2)[key] for p in parts]), full.batches.batch(2)[key])


def test_errors_name_the_config_field():
    # Held-out camera 3: the training split's groups have 3 cameras, fewer than 4 views.
    with pytest.raises(ValueError, match=r"streams\.mv\.views: 4 views requested .* with 3"):
        _stream(_config(held_out=(3,), views=4))
    with pytest.raises(ValueError, match=r"streams\.mv\.views: expected a positive int"):
        _stream(_config(views=0))
    with pytest.raises(ValueError, match=r"streams\.mv\.flip"):
        _stream(_config(flip=True))
    with pytest.raises(ValueError, match=r"streams\.mv\.split"):
        _stream(_config(split="test"))
    c = _config()
    c.data.protocol = "all"
    c.streams.mv.split = "unlabelled"
    with pytest.raises(ValueError, match=r"streams\.mv: the 'unlabelled' split is empty"):
        _stream(c)
