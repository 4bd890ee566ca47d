"""Tests for jpose.datasets.pipelines (windows, flips, deterministic sharded batches)."""

import grain
import numpy as np
import pytest

from jpose.datasets import multiview as mv
from jpose.datasets import pipelines as pl

# h36m_17 left/right pairs written out by hand from the joint names (independent of
# jpose.skeleton): hips, knees, ankles, shoulders, elbows, wrists.
H36M_PAIRS = ((1, 4), (2, 5), (3, 6), (11, 14), (12, 15), (13, 16))


def _hand_perm(num_joints=17, pairs=H36M_PAIRS):
    perm = list(range(num_joints))
    for a, b in pairs:
        perm[a], perm[b] = b, a
    return np.asarray(perm)


def _ref_window(seq, frame, left, right):
    """Edge-padded window by clipped frame indices (independent of np.pad)."""
    idx = np.clip(np.arange(frame - left, frame + right + 1), 0, seq.shape[0] - 1)
    return seq[idx]


def _ramp_sequences(lengths, offsets, joints=2):
    """Sequence s has inputs[f] = offsets[s] + f everywhere; poses_3d[f] = 10 * that."""
    inputs, poses, traj = [], [], []
    for n, o in zip(lengths, offsets):
        v = (o + np.arange(n, dtype=np.float32))[:, None, None]
        inputs.append(np.broadcast_to(v, (n, joints, 2)).copy())
        poses.append(np.broadcast_to(10 * v, (n, joints, 3)).copy())
        traj.append(np.broadcast_to(v[:, 0] * -1, (n, 3)).copy())
    return pl.sequences_from_arrays(inputs, poses, traj, actions=[1] * len(lengths), action_names=("a", "b"))


@pytest.fixture(scope="module")
def ds():
    return mv.make_multiview_dataset("synthetic", num_subjects=4, num_cameras=2, synthetic_frames=30, seed=1)


@pytest.fixture(scope="module")
def seqs(ds):
    return pl.sequences_from_multiview(ds, "unlabelled", with_confidence=True)


@pytest.fixture(scope="module")
def windows(seqs):
    return pl.temporal_windows(seqs, receptive_field=9)


# ---------------------------------------------------------------------------- windows


def test_window_padding_hand_values():
    s = _ramp_sequences([10], [0])
    w = pl.temporal_windows(s, receptive_field=9, padding=(4, 4))
    assert len(w) == 10
    np.testing.assert_array_equal(w[0]["inputs"][:, 0, 0], [0, 0, 0, 0, 0, 1, 2, 3, 4])
    np.testing.assert_array_equal(w[5]["inputs"][:, 0, 0], [1, 2, 3, 4, 5, 6, 7, 8, 9])
    np.testing.assert_array_equal(w[9]["inputs"][:, 0, 0], [5, 6, 7, 8, 9, 9, 9, 9, 9])
    for f in (0, 5, 9):
        ex = w[f]
        assert ex["poses_3d"].shape == (1, 2, 3) and ex["trajectory"].shape == (1, 3)
        np.testing.assert_array_equal(ex["poses_3d"], np.full((1, 2, 3), 10.0 * f))
        np.testing.assert_array_equal(ex["trajectory"], np.full((1, 3), -1.0 * f))
        assert int(ex["frame_index"]) == f and int(ex["sequence_index"]) == 0 and int(ex["action"]) == 1

    causal = pl.temporal_windows(s, receptive_field=5, causal=True)
    assert causal.padding == (4, 0)
    np.testing.assert_array_equal(causal[0]["inputs"][:, 0, 0], [0, 0, 0, 0, 0])
    np.testing.assert_array_equal(causal[2]["inputs"][:, 0, 0], [0, 0, 0, 1, 2])
    np.testing.assert_array_equal(causal[9]["inputs"][:, 0, 0], [5, 6, 7, 8, 9])
    np.testing.assert_array_equal(causal[2]["poses_3d"], np.full((1, 2, 3), 20.0))  # last frame


def test_windows_never_cross_sequences_and_match_reference():
    rng = np.random.default_rng(0)
    lengths = [7, 1, 12, 3]
    inputs = [rng.normal(size=(n, 3, 2)).astype(np.float32) for n in lengths]
    poses = [rng.normal(size=(n, 4, 3)).astype(np.float32) for n in lengths]
    s = pl.sequences_from_arrays(inputs, poses)
    for rf, pad in ((9, (4, 4)), (5, (4, 0)), (5, (3, 1)), (27, (13, 13))):
        w = pl.temporal_windows(s, receptive_field=rf, padding=pad)
        assert len(w) == sum(lengths)
        got = w.gather(np.arange(len(w)))
        i = 0
        for si, n in enumerate(lengths):
            for f in range(n):
                np.testing.assert_array_equal(got["inputs"][i], _ref_window(inputs[si], f, *pad))
                np.testing.assert_array_equal(got["poses_3d"][i, 0], poses[si][f])
                # The target frame sits at window position `left`.
                np.testing.assert_array_equal(got["inputs"][i, pad[0]], inputs[si][f])
                assert (got["sequence_index"][i], got["frame_index"][i]) == (si, f)
                i += 1


def test_single_frames(seqs):
    sf = pl.single_frames(seqs)
    assert len(sf) == seqs.num_frames
    s3 = seqs[3]
    i = sum(seqs.lengths[:3]) + 5
    ex = sf[i]
    np.testing.assert_array_equal(ex["inputs"], s3.inputs[5])
    np.testing.assert_array_equal(ex["poses_3d"], s3.poses_3d[5])
    np.testing.assert_array_equal(ex["trajectory"], s3.trajectory[5])
    np.testing.assert_array_equal(ex["camera"], s3.camera)
    assert (int(ex["sequence_index"]), int(ex["frame_index"])) == (3, 5)


def test_eval_sequences(seqs):
    ev = pl.eval_sequences(seqs)
    assert len(ev) == len(seqs)
    item = ev[2]
    np.testing.assert_array_equal(item["inputs"], seqs[2].inputs)
    np.testing.assert_array_equal(item["poses_3d"], seqs[2].poses_3d)
    assert item["subject"] == seqs[2].subject and item["action_name"] == seqs.action_names[int(item["action"])]


# ------------------------------------------------------------------ multiview sequences


def test_sequences_from_multiview(ds):
    recs = ds.split("labelled")
    s = pl.sequences_from_multiview(ds, "labelled", with_confidence=True)
    assert len(s) == len(recs) and s.in_features == 3 and s.layout == "h36m_17"
    for r, q in zip(recs, s):
        w, h = (float(v) for v in r.camera.image_size)
        screen = r.keypoints.astype(np.float64) / w * 2 - np.array([1.0, h / w])
        np.testing.assert_allclose(q.inputs[..., :2], screen, atol=1e-6)
        np.testing.assert_array_equal(q.inputs[..., 2], r.confidence)
        np.testing.assert_array_equal(q.poses_3d[:, 0], 0.0)  # root (pelvis) zeroed
        np.testing.assert_array_equal(q.trajectory, r.positions_camera[:, 0])
        np.testing.assert_allclose(q.poses_3d + q.trajectory[:, None], r.positions_camera, atol=1e-6)
        assert ds.actions[q.action] == r.action == q.action_name and q.subject == r.subject

    clean = pl.sequences_from_multiview(ds, recs[:2], use_clean_2d=True)
    assert len(clean) == 2 and clean.in_features == 2
    w, h = (float(v) for v in recs[1].camera.image_size)
    np.testing.assert_allclose(
        clean[1].inputs, recs[1].keypoints_clean / w * 2 - np.array([1.0, h / w]), atol=1e-6
    )


def _vp3d_project(x_cam, cam):
    """VideoPose3D project_to_2d (NumPy float64): 9-vector intrinsics, screen units."""
    x_cam = x_cam.astype(np.float64)
    cam = cam.astype(np.float64)
    f, c, k, p = cam[:2], cam[2:4], cam[4:7], cam[7:9]
    xx = x_cam[..., :2] / x_cam[..., 2:3]
    r2 = np.sum(xx**2, axis=-1, keepdims=True)
    radial = 1 + k[0] * r2 + k[1] * r2**2 + k[2] * r2**3
    tan = np.sum(p * xx, axis=-1, keepdims=True)
    return f * (xx * (radial + tan) + p * r2) + c


def test_flip_keeps_camera_projection_consistent(ds):
    """Clean 2D = projection of (pose + trajectory) by the camera, before and after a flip."""
    s = pl.sequences_from_multiview(ds, "test", use_clean_2d=True)
    sf = pl.single_frames(s)
    tb = pl.training_batches(sf, global_batch_size=64, seed=3, flip_augment="h36m_17")
    b = tb.batch(0)
    assert 0 < b["flipped"].sum() < 64
    for i in range(64):
        proj = _vp3d_project(b["poses_3d"][i] + b["trajectory"][i][None], b["camera"][i])
        np.testing.assert_allclose(proj, b["inputs"][i], atol=2e-5)


def test_extrinsics_and_confidence_travel_with_examples_and_flips(ds):
    """x_cam = R (x_world - c) holds for every example, mirrored ones included (R's first
    row negated), and confidences are the record's at the target frame, swapped with
    their joints."""
    records = ds.split("test")
    s = pl.sequences_from_records(records, layout=ds.layout, actions=ds.actions)
    windows = pl.temporal_windows(s, receptive_field=9)
    tb = pl.training_batches(windows, global_batch_size=32, seed=5, flip_augment="h36m_17")
    b = tb.batch(0)
    assert b["extrinsics"].shape == (32, 12) and b["confidence"].shape == (32, 1, 17)
    assert 0 < b["flipped"].sum() < 32
    perm = np.asarray(_hand_perm())
    for i in range(32):
        r = records[b["sequence_index"][i]]
        frame = b["frame_index"][i]
        rotation = b["extrinsics"][i, :9].reshape(3, 3).astype(np.float64)
        centre = b["extrinsics"][i, 9:].astype(np.float64)
        world = r.positions_world[frame].astype(np.float64)
        if b["flipped"][i]:
            world = world[perm]  # the mirrored pose's joint j is the original's perm[j]
        x_cam = (world - centre) @ rotation.T
        np.testing.assert_allclose(x_cam, b["poses_3d"][i, 0] + b["trajectory"][i], atol=2e-5)
        conf = r.confidence[frame][perm] if b["flipped"][i] else r.confidence[frame]
        np.testing.assert_array_equal(b["confidence"][i, 0], conf)
    assert np.allclose(np.linalg.det(b["extrinsics"][:, :9].reshape(-1, 3, 3)),
                       np.where(b["flipped"], -1.0, 1.0), atol=1e-5)
    frames = pl.single_frames(s).gather(np.arange(3))
    assert frames["confidence"].shape == (3, 17)


# ------------------------------------------------------------------------------- flips


@pytest.mark.parametrize("flip_mode", ["paired", "random"])
def test_flip_swaps_joints_negates_x(windows, flip_mode):
    tb = pl.training_batches(windows, global_batch_size=48, seed=5, flip_augment="h36m_17",
                             flip_mode=flip_mode)
    perm = _hand_perm()
    flips = []
    for k in range(8):
        b = tb.batch(k)
        orig = windows.gather(b["example_index"])
        flips.append(b["flipped"])
        for i in range(48):
            if not b["flipped"][i]:
                for key in orig:
                    np.testing.assert_array_equal(b[key][i], orig[key][i], err_msg=key)
                continue
            x_in = orig["inputs"][i][:, perm]  # whole window, every frame
            np.testing.assert_array_equal(b["inputs"][i][..., 0], -x_in[..., 0])
            np.testing.assert_array_equal(b["inputs"][i][..., 1:], x_in[..., 1:])  # y, confidence
            p = orig["poses_3d"][i][:, perm]
            np.testing.assert_array_equal(b["poses_3d"][i], p * np.array([-1, 1, 1], np.float32))
            np.testing.assert_array_equal(b["trajectory"][i], orig["trajectory"][i] * np.array([-1, 1, 1], np.float32))
            cam = orig["camera"][i].copy()
            cam[[2, 7]] *= -1
            np.testing.assert_array_equal(b["camera"][i], cam)
    frac = np.concatenate(flips).mean()
    # random: 384 Bernoulli(1/2) draws, std 0.026; paired: 384 of 2 N slots, half
    # mirrored, drawn without replacement (std < 0.026).
    assert 0.42 < frac < 0.58


@pytest.mark.parametrize("drop_remainder", [True, False])
def test_paired_flips_epoch_has_every_window_as_is_and_mirrored(windows, drop_remainder):
    """VideoPose3D's ChunkedGenerator(augment=True): each chunk with flip False and True."""
    n, b = len(windows), 64
    assert (2 * n) % b != 0
    tb = pl.training_batches(windows, global_batch_size=b, seed=7, flip_augment="h36m_17",
                             drop_remainder=drop_remainder)
    assert tb.paired_flips and tb.flip_mode == "paired" and tb.num_examples == 2 * n
    spe = tb.steps_per_epoch
    assert spe == (2 * n // b if drop_remainder else -(-2 * n // b))
    random = pl.training_batches(windows, global_batch_size=b, seed=7, flip_augment="h36m_17",
                                 flip_mode="random", drop_remainder=drop_remainder)
    assert random.num_examples == n and random.steps_per_epoch == (n // b if drop_remainder else -(-n // b))
    for epoch in range(2):
        idx, flipped, wts = [], [], []
        for k in range(epoch * spe, (epoch + 1) * spe):
            batch = tb.batch(k)
            idx.append(batch["example_index"])
            flipped.append(batch["flipped"])
            wts.append(batch["weight"])
            np.testing.assert_array_equal(batch["flipped"], tb.flips(k))
            np.testing.assert_array_equal(batch["example_index"], tb.example_indices(k)[0])
        idx, flipped, wts = (np.concatenate(x) for x in (idx, flipped, wts))
        real = wts > 0
        assert 0 < flipped[:b].sum() < b  # a batch mixes both
        if drop_remainder:
            assert real.all() and real.size == spe * b
            pairs = set(zip(idx.tolist(), flipped.tolist()))
            assert len(pairs) == spe * b  # no (window, flip) twice in an epoch
        else:
            assert real.sum() == 2 * n
            np.testing.assert_array_equal(np.sort(idx[real & ~flipped]), np.arange(n))
            np.testing.assert_array_equal(np.sort(idx[real & flipped]), np.arange(n))
    # The mirrored rows are the mirror of the same windows as is.
    batch = tb.batch(3)
    plain = windows.gather(batch["example_index"])
    want = pl.flip_examples(plain, batch["flipped"], layout="h36m_17")
    for key in plain:
        np.testing.assert_array_equal(batch[key], want[key], err_msg=key)


def test_flip_examples_public_and_no_flip_by_default(windows):
    tb = pl.training_batches(windows, global_batch_size=16, seed=0)
    b = tb.batch(0)
    assert not b["flipped"].any()
    flip = np.arange(16) % 2 == 0
    f = pl.flip_examples(b, flip, layout="h36m_17")
    np.testing.assert_array_equal(f["inputs"][1], b["inputs"][1])
    np.testing.assert_array_equal(f["inputs"][0, :, 1, 0], -b["inputs"][0, :, 4, 0])
    # Flipping twice is the identity.
    ff = pl.flip_examples(f, flip, layout="h36m_17")
    for key in ("inputs", "poses_3d", "trajectory", "camera"):
        np.testing.assert_array_equal(ff[key], b[key])


# ----------------------------------------------------------------- determinism, epochs


@pytest.mark.parametrize("drop_remainder", [True, False])
def test_deterministic_epochs_cover_every_example_once(windows, drop_remainder):
    n = len(windows)
    b = 64
    assert n % b != 0
    mk = lambda: pl.training_batches(  # noqa: E731
        windows, global_batch_size=b, seed=11, flip_augment="h36m_17", flip_mode="random",
        drop_remainder=drop_remainder
    )
    tb1, tb2 = mk(), mk()
    spe = tb1.steps_per_epoch
    assert spe == (n // b if drop_remainder else -(-n // b))
    # Same (seed, k) -> same batch, whatever was asked before (out of order, other object).
    for k in (spe + 2, 0, 3 * spe - 1, 1):
        x, y = tb1.batch(k), tb2.batch(k)
        assert x.keys() == y.keys()
        for key in x:
            np.testing.assert_array_equal(x[key], y[key])
    orders = []
    for epoch in range(3):
        idx, wts = [], []
        for k in range(epoch * spe, (epoch + 1) * spe):
            batch = tb1.batch(k)
            assert batch["inputs"].shape[0] == b
            idx.append(batch["example_index"])
            wts.append(batch["weight"])
        idx, wts = np.concatenate(idx), np.concatenate(wts)
        real = idx[wts > 0]
        assert len(np.unique(real)) == len(real)
        if drop_remainder:
            assert len(real) == spe * b and wts.min() == 1
        else:
            np.testing.assert_array_equal(np.sort(real), np.arange(n))
            assert (wts == 0).sum() == spe * b - n
        orders.append(real)
    assert not np.array_equal(orders[0], orders[1]) and not np.array_equal(orders[1], orders[2])
    other_seed = pl.training_batches(windows, global_batch_size=b, seed=12)
    assert not np.array_equal(other_seed.batch(0)["example_index"], tb1.batch(0)["example_index"])


def test_no_shuffle_is_dataset_order(windows):
    tb = pl.training_batches(windows, global_batch_size=10, seed=0, shuffle=False, num_epochs=2)
    np.testing.assert_array_equal(tb.batch(1)["example_index"], np.arange(10, 20))
    assert tb.num_steps == 2 * (len(windows) // 10)
    with pytest.raises(IndexError):
        tb.batch(tb.num_steps)


def test_generic_map_dataset_path_matches_vectorised(windows):
    mapped = windows.map(lambda ex: ex)  # a plain grain MapDataset: per-element path
    assert not hasattr(mapped, "gather")
    a = pl.training_batches(windows, global_batch_size=8, seed=2, flip_augment="h36m_17").batch(4)
    b = pl.training_batches(mapped, global_batch_size=8, seed=2, flip_augment="h36m_17").batch(4)
    for key in a:
        np.testing.assert_array_equal(a[key], b[key])


# ------------------------------------------------------------------ sharding and resume


def test_two_process_slices_concatenate_to_global_batch(windows):
    kw = dict(global_batch_size=32, seed=4, flip_augment="h36m_17", drop_remainder=False)
    whole = pl.training_batches(windows, **kw)
    parts = [pl.training_batches(windows, process_index=p, process_count=2, **kw) for p in (0, 1)]
    assert parts[0].local_batch_size == 16
    seen = []
    for k in range(whole.steps_per_epoch):
        g = whole.batch(k)
        l0, l1 = parts[0].batch(k), parts[1].batch(k)
        for key in g:
            np.testing.assert_array_equal(np.concatenate([l0[key], l1[key]]), g[key])
        for part in (l0, l1):
            real = part["weight"] > 0
            seen.append(part["example_index"][real] + len(windows) * part["flipped"][real])
    # Paired flips: the processes share out every window as is and mirrored.
    np.testing.assert_array_equal(np.sort(np.concatenate(seen)), np.arange(2 * len(windows)))


def test_resume_from_step(windows):
    tb = pl.training_batches(windows, global_batch_size=64, seed=9, num_epochs=2, flip_augment="h36m_17")
    full = list(tb.iterate())
    assert len(full) == tb.num_steps
    s = tb.steps_per_epoch - 1  # crosses an epoch boundary
    resumed = list(pl.training_batches(
        windows, global_batch_size=64, seed=9, num_epochs=2, flip_augment="h36m_17"
    ).iterate(start_step=s))
    assert len(resumed) == len(full) - s
    for x, y in zip(full[s:], resumed):
        for key in x:
            np.testing.assert_array_equal(x[key], y[key])
    # The grain iterator yields the same batches and restores from its own state.
    it = tb.grain_iterator(s, num_threads=2)
    first = next(it)
    state = it.get_state()
    second = next(it)
    np.testing.assert_array_equal(first["inputs"], full[s]["inputs"])
    np.testing.assert_array_equal(second["example_index"], full[s + 1]["example_index"])
    it2 = tb.grain_iterator(s, num_threads=0)
    it2.set_state(state)
    np.testing.assert_array_equal(next(it2)["example_index"], full[s + 1]["example_index"])


# -------------------------------------------------------------------------- validation


def test_non_finite_inputs_name_the_sequence():
    rng = np.random.default_rng(1)
    inputs = [rng.normal(size=(5, 3, 2)).astype(np.float32) for _ in range(3)]
    poses = [rng.normal(size=(5, 3, 3)).astype(np.float32) for _ in range(3)]
    inputs[2][3, 1, 0] = np.nan
    with pytest.raises(ValueError, match=r"sequences\[2\]\.inputs.*non-finite"):
        pl.sequences_from_arrays(inputs, poses)
    inputs[2][3, 1, 0] = 0.0
    poses[1][0, 0, 2] = np.inf
    with pytest.raises(ValueError, match=r"sequences\[1\]\.poses_3d"):
        pl.sequences_from_arrays(inputs, poses)


def test_validation_errors(windows):
    s = _ramp_sequences([6, 4], [0, 100])
    with pytest.raises(ValueError, match="padding"):
        pl.temporal_windows(s, receptive_field=9, padding=(4, 3))
    with pytest.raises(ValueError, match="causal"):
        pl.temporal_windows(s, receptive_field=9, padding=(4, 4), causal=True)
    with pytest.raises(ValueError, match="receptive_field"):
        pl.temporal_windows(s, receptive_field=8)
    with pytest.raises(ValueError, match="receptive_field"):
        pl.temporal_windows(s, receptive_field=0)
    with pytest.raises(ValueError, match="empty"):
        pl.sequences_from_arrays([], [])
    with pytest.raises(ValueError, match=r"sequences\[1\]: has no frames"):
        pl.sequences_from_arrays([np.zeros((2, 2, 2)), np.zeros((0, 2, 2))], [np.zeros((2, 2, 3)), np.zeros((0, 2, 3))])
    with pytest.raises(ValueError, match=r"sequences\[1\].*differs"):
        pl.sequences_from_arrays([np.zeros((2, 2, 2)), np.zeros((2, 3, 2))], [np.zeros((2, 2, 3))] * 2)
    with pytest.raises(ValueError, match="process_count"):
        pl.training_batches(windows, global_batch_size=33, seed=0, process_count=2)
    with pytest.raises(ValueError, match="process_index"):
        pl.training_batches(windows, global_batch_size=32, seed=0, process_index=2, process_count=2)
    with pytest.raises(ValueError, match="global_batch_size"):
        pl.training_batches(windows, global_batch_size=len(windows) + 1, seed=0)
    with pytest.raises(ValueError, match="flip_augment"):
        pl.training_batches(windows, global_batch_size=8, seed=0, flip_augment="lsp_14")
    with pytest.raises(ValueError, match="flip_augment"):
        pl.training_batches(windows, global_batch_size=8, seed=0, flip_augment="no_such_layout")
    with pytest.raises(ValueError, match="dataset"):
        pl.training_batches(s, global_batch_size=2, seed=0)
    with pytest.raises(ValueError, match="seed"):
        pl.training_batches(windows, global_batch_size=8, seed=-1)
    # Small dataset, drop_remainder=False: one padded batch per epoch.
    tiny = pl.training_batches(pl.single_frames(s), global_batch_size=16, seed=0, drop_remainder=False)
    assert tiny.steps_per_epoch == 1 and tiny.batch(0)["weight"].sum() == 10


def test_windows_compose_with_grain(windows):
    sl = windows[10:20]
    assert isinstance(sl, grain.MapDataset) and len(sl) == 10
    np.testing.assert_array_equal(sl[0]["inputs"], windows[10]["inputs"])


def test_padded_inputs_and_window_starts(windows):
    idx = np.array([0, 7, len(windows) - 1, 123])
    starts = windows.window_starts(idx)
    rf = windows.receptive_field
    got = windows.gather(idx)["inputs"]
    for i, s in enumerate(starts):
        np.testing.assert_array_equal(windows.padded_inputs[s : s + rf], got[i])
    assert not windows.padded_inputs.flags.writeable


def test_pickle_round_trip(windows):
    import pickle

    tb = pl.training_batches(windows, global_batch_size=16, seed=1, flip_augment="h36m_17")
    before = tb.batch(2)  # builds the mirrored copy and the permutation cache
    tb2 = pickle.loads(pickle.dumps(tb))
    after = tb2.batch(2)
    for key in before:
        np.testing.assert_array_equal(before[key], after[key])


# --------------------------------------------------------- inputs in their own layout

# MPII-16 left/right pairs by hand (VideoPose3D's SH metadata keypoints_symmetry
# [[3, 4, 5, 13, 14, 15], [0, 1, 2, 10, 11, 12]]): ankles, knees, hips, wrists, elbows,
# shoulders.
MPII_PAIRS = ((0, 5), (1, 4), (2, 3), (10, 15), (11, 14), (12, 13))


def _mpii_records(ds, split="test", seed=0):
    """The split's records with random 16-joint 'detections' in MPII order."""
    rng = np.random.default_rng(seed)
    out = []
    for r in ds.split(split):
        f = r.num_frames
        out.append(r._replace(
            keypoints=rng.uniform(0, 1000, (f, 16, 2)).astype(np.float32),
            confidence=rng.uniform(0, 1, (f, 16)).astype(np.float32),
            outlier=np.zeros((f, 16), bool), keypoints_layout="mpii_16"))
    return out


def test_records_with_their_own_keypoints_layout(ds):
    recs = _mpii_records(ds)
    seqs = pl.sequences_from_records(recs, layout="h36m_17", with_confidence=True)
    assert seqs.input_layout == "mpii_16" and seqs.layout == "h36m_17"
    assert (seqs.num_joints_in, seqs.in_features, seqs.num_joints_out) == (16, 3, 17)
    assert seqs.flip_layouts == ("mpii_16", "h36m_17")
    assert seqs[1:].input_layout == "mpii_16"  # slicing keeps it
    w, h = (float(v) for v in recs[0].camera.image_size)
    np.testing.assert_allclose(seqs[0].inputs[..., :2], recs[0].keypoints / w * 2 - np.array([1.0, h / w]),
                               atol=1e-6)
    np.testing.assert_array_equal(seqs[0].inputs[..., 2], recs[0].confidence)
    np.testing.assert_array_equal(seqs[0].trajectory, recs[0].positions_camera[:, 0])
    # keypoints_clean is in the 3D layout: clean inputs are too.
    clean = pl.sequences_from_records(recs, layout="h36m_17", use_clean_2d=True)
    assert clean.input_layout is None and clean.num_joints_in == 17
    assert clean.flip_layouts == ("h36m_17", "h36m_17")
    # Same layout as the 3D one: stored as None.
    same = [r._replace(keypoints_layout="h36m_17") for r in ds.split("test")]
    assert pl.sequences_from_records(same, layout="h36m_17").input_layout is None


def test_flips_permute_inputs_and_poses_with_their_own_layouts(ds):
    seqs = pl.sequences_from_records(_mpii_records(ds), layout="h36m_17", with_confidence=True)
    windows = pl.temporal_windows(seqs, receptive_field=5)
    perm_in, perm_out = _hand_perm(16, MPII_PAIRS), _hand_perm()
    for mode in pl.FLIP_MODES:
        tb = pl.training_batches(windows, global_batch_size=32, seed=1,
                                 flip_augment=seqs.flip_layouts, flip_mode=mode)
        assert tb.steps_per_epoch == (2 if mode == "paired" else 1) * len(windows) // 32
        for k in range(3):
            b = tb.batch(k)
            orig = windows.gather(b["example_index"])
            assert 0 < b["flipped"].sum() < 32
            for i in np.flatnonzero(b["flipped"]):
                x = orig["inputs"][i][:, perm_in]
                np.testing.assert_array_equal(b["inputs"][i][..., 0], -x[..., 0])
                np.testing.assert_array_equal(b["inputs"][i][..., 1:], x[..., 1:])
                p = orig["poses_3d"][i][:, perm_out]
                np.testing.assert_array_equal(b["poses_3d"][i], p * np.array([-1, 1, 1], np.float32))
            for i in np.flatnonzero(~b["flipped"]):
                np.testing.assert_array_equal(b["inputs"][i], orig["inputs"][i])
        # The generic (per-element) path agrees.
        generic = pl.training_batches(windows.map(lambda ex: ex), global_batch_size=32, seed=1,
                                      flip_augment=seqs.flip_layouts, flip_mode=mode)
        for key, value in tb.batch(2).items():
            np.testing.assert_array_equal(generic.batch(2)[key], value, err_msg=key)
    with pytest.raises(ValueError, match="flip_augment.*16"):
        pl.training_batches(windows, global_batch_size=32, seed=1, flip_augment="h36m_17")


def test_flip_layout_must_match_the_inputs_layout():
    """COCO and Human3.6M both have 17 joints: a wrong flip layout would pass the joint
    count check and mirror the wrong pairs."""
    rng = np.random.default_rng(0)
    inputs = [rng.normal(size=(6, 17, 2)).astype(np.float32)]
    poses = [rng.normal(size=(6, 17, 3)).astype(np.float32)]
    seqs = pl.sequences_from_arrays(inputs, poses, layout="h36m_17", input_layout="coco_17")
    assert seqs.flip_layouts == ("coco_17", "h36m_17")
    frames = pl.single_frames(seqs)
    with pytest.raises(ValueError, match="inputs are in layout 'coco_17'"):
        pl.training_batches(frames, global_batch_size=4, seed=0, flip_augment="h36m_17")
    with pytest.raises(ValueError, match="poses_3d are in layout 'h36m_17'"):
        pl.training_batches(frames, global_batch_size=4, seed=0, flip_augment=("coco_17", "coco_17"))
    tb = pl.training_batches(frames, global_batch_size=4, seed=0, flip_augment=("coco_17", None))
    assert tb.steps_per_epoch == 3  # 2 * 6 // 4
    with pytest.raises(ValueError, match="input_layout 'coco_17' has 17"):
        pl.sequences_from_arrays([x[:, :16] for x in inputs], poses, layout="h36m_17", input_layout="coco_17")
    with pytest.raises(ValueError, match="input_layout"):
        pl.sequences_from_arrays(inputs, poses, input_layout="no_such_layout")
    with pytest.raises(ValueError, match="layout is None"):
        _ = pl.sequences_from_arrays(inputs, poses).flip_layouts
    with pytest.raises(ValueError, match="flip_mode"):
        pl.training_batches(frames, global_batch_size=4, seed=0, flip_mode="always")
    # Paired flips double the epoch: a batch larger than N fits.
    assert pl.training_batches(frames, global_batch_size=12, seed=0,
                               flip_augment=seqs.flip_layouts).steps_per_epoch == 1


def test_records_must_share_one_keypoints_layout(ds):
    recs = _mpii_records(ds)
    mixed = [recs[0], ds.split("test")[1]]
    with pytest.raises(ValueError, match=r"records\[1\].*'h36m_17'.*'mpii_16'"):
        pl.sequences_from_records(mixed, layout="h36m_17")
    bad = [recs[0]._replace(keypoints_layout="coco_17")]
    with pytest.raises(ValueError, match=r"records\[0\]\.keypoints.*coco_17"):
        pl.sequences_from_records(bad, layout="h36m_17")
    bad = [recs[0]._replace(confidence=np.ones((recs[0].num_frames, 17), np.float32))]
    with pytest.raises(ValueError, match=r"records\[0\]\.confidence"):
        pl.sequences_from_records(bad, layout="h36m_17", with_confidence=True)
