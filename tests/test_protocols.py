"""Protocol splits over fake Human3.6M / MPI-INF-3DHP records and example dicts."""

import hashlib

import grain
import numpy as np
import pytest

from jpose import camera as camera_lib
from jpose.datasets import pipelines
from jpose.datasets import protocols as P
from jpose.datasets.multiview import SequenceRecord

SUBJECTS = ("S1", "S5", "S6", "S7", "S8", "S9", "S11")
# Action class -> file base name as in VideoPose3D's files (S1 keeps the raw
# TakingPhoto / WalkingDog names, as in the raw release).
CLASSES = (
    "Directions", "Discussion", "Eating", "Greeting", "Phoning", "Posing", "Purchases",
    "Sitting", "SittingDown", "Smoking", "TakingPhoto", "Waiting", "Walking", "WalkingDog",
    "WalkingTogether",
)
FILE_NAMES = {"TakingPhoto": "Photo", "WalkingDog": "WalkDog", "WalkingTogether": "WalkTogether"}


def _file_name(subject, cls, sub):
    base = FILE_NAMES.get(cls, cls)
    if subject == "S1" and cls in ("TakingPhoto", "WalkingDog"):
        base = cls
    return f"{base} {sub}"


def _camera():
    return camera_lib.CameraParams(
        rotation=np.eye(3, dtype=np.float32), centre=np.zeros(3, np.float32),
        focal=np.full(2, 1000.0, np.float32), principal=np.full(2, 500.0, np.float32),
        radial=np.zeros(3, np.float32), tangential=np.zeros(2, np.float32),
        image_size=np.full(2, 1000.0, np.float32))


def _arrays(f, j, tag):
    """Per-frame arrays whose x coordinate is the frame number (to check contiguity)."""
    world = np.zeros((f, j, 3), np.float32)
    world[..., 0] = np.arange(f, dtype=np.float32)[:, None]
    world[..., 1] = tag
    cam = world + np.asarray([0.0, 0.0, 5.0], np.float32)[None, None]
    kp = np.full((f, j, 2), 500.0, np.float32)
    kp[..., 0] += np.arange(f, dtype=np.float32)[:, None] * 0.01
    return world, cam, kp


def _record(subject, seq, cam, f, j=17, fps=50.0, tag=0.0):
    world, pos_cam, kp = _arrays(f, j, tag)
    return SequenceRecord(
        subject=subject, action=seq, camera_index=cam, fps=fps, positions_world=world,
        positions_camera=pos_cam, keypoints_clean=kp, keypoints=kp.copy(),
        confidence=np.ones((f, j), np.float32), outlier=np.zeros((f, j), bool),
        visible=np.ones((f, j), bool), camera=_camera())


def _example(subject, seq, cls, cam, f, j=17, fps=50.0, sub=1):
    world, pos_cam, kp = _arrays(f, j, 0.0)
    c = _camera()
    return {
        "subject": subject.encode(), "sequence": seq.encode(), "action": cls.encode(),
        "subaction": np.int32(sub), "camera_index": np.int32(cam), "camera_id": str(cam).encode(),
        "fps": np.float32(fps), "positions_world": world, "positions_camera": pos_cam,
        "keypoints_2d": kp, "valid": np.ones(f, bool), "activity": np.zeros(f, np.int32),
        "camera": {k: np.asarray(v) for k, v in c._asdict().items()},
    }


def _length(s_idx, a_idx, sub, base=12):
    return base + (3 * a_idx + 5 * sub + s_idx) % 11


@pytest.fixture(scope="module")
def h36m_records():
    return tuple(
        _record(s, _file_name(s, c, sub), cam, _length(si, ai, sub))
        for si, s in enumerate(SUBJECTS) for ai, c in enumerate(CLASSES)
        for sub in (1, 2) for cam in range(4))


@pytest.fixture(scope="module")
def h36m_examples():
    return tuple(
        _example(s, _file_name(s, c, sub), c, cam, _length(si, ai, sub), sub=sub)
        for si, s in enumerate(SUBJECTS) for ai, c in enumerate(CLASSES)
        for sub in (1, 2) for cam in range(4))


@pytest.fixture(params=["records", "examples"])
def items(request, h36m_records, h36m_examples):
    return h36m_records if request.param == "records" else h36m_examples


def _subjects(items):
    return {P.subject_of(it) for it in items}


def _classes(items):
    return {P.h36m_action_of(it) for it in items}


# ------------------------------------------------------------------ Human3.6M subjects


def test_train_and_test_subjects(items):
    train, test = P.h36m_train(items), P.h36m_test(items)
    assert _subjects(train) == {"S1", "S5", "S6", "S7", "S8"}
    assert _subjects(test) == {"S9", "S11"}
    assert len(train) == 5 * 15 * 2 * 4 and len(test) == 2 * 15 * 2 * 4
    assert _classes(train) == set(CLASSES)


@pytest.mark.parametrize("labelled", [("S1",), ("S1", "S5"), ("S1", "S5", "S6"), ("S1", "S5", "S6", "S7")])
def test_subject_wise_labelled_sets(items, labelled):
    assert labelled in P.H36M_LABELLED_SUBJECT_SETS
    split = P.h36m_subject_split(items, labelled)
    assert _subjects(split.labelled) == set(labelled)
    assert _subjects(split.unlabelled) == {"S1", "S5", "S6", "S7", "S8"} - set(labelled)
    assert len(split.labelled) == len(labelled) * 120
    assert len(split.unlabelled) == (5 - len(labelled)) * 120


def test_action_halves_are_table_order(items):
    split = P.h36m_action_split(items)
    # The literature's table columns: Dir. Disc. Eat Greet Phone Photo Pose Purch. | ...
    first = {"Directions", "Discussion", "Eating", "Greeting", "Phoning", "TakingPhoto", "Posing", "Purchases"}
    assert _classes(split.labelled) == first
    assert _classes(split.unlabelled) == set(CLASSES) - first
    assert len(_classes(split.unlabelled)) == 7
    assert _subjects(split.labelled) == _subjects(split.unlabelled) == {"S1", "S5", "S6", "S7", "S8"}
    assert len(split.labelled) == 8 * 5 * 2 * 4 and len(split.unlabelled) == 7 * 5 * 2 * 4
    # S1's raw-named "TakingPhoto 1" and the others' "Photo 1" both count as TakingPhoto.
    names = {P.sequence_of(it) for it in split.labelled if P.h36m_action_of(it) == "TakingPhoto"}
    assert names == {"TakingPhoto 1", "TakingPhoto 2", "Photo 1", "Photo 2"}


def test_hard_action_split(items):
    split = P.h36m_hard_action_split(items)
    hard = {"TakingPhoto", "Purchases", "Sitting", "SittingDown"}
    assert _classes(split.unlabelled) == hard
    assert _classes(split.labelled) == set(CLASSES) - hard
    assert len(split.labelled) == 11 * 40 and len(split.unlabelled) == 4 * 40


# ------------------------------------------------------------------- labelled fractions


def _vp3d_start(f, n):
    """VideoPose3D common/utils.py deterministic_random(0, f - n + 1, str(f)), written out."""
    raw = int.from_bytes(hashlib.sha256(str(f).encode()).digest()[:4], "little")
    return int(raw / (2**32 - 1) * (f - n + 1))


@pytest.fixture(scope="module")
def long_s1():
    """Long S1 sequences (1 joint) so that 0.1 % keeps frames, plus short S5-S8."""
    recs = []
    for ai, c in enumerate(CLASSES):
        for sub in (1, 2):
            f = 1000 + 97 * ai + 31 * sub
            recs += [_record("S1", _file_name("S1", c, sub), cam, f, j=1) for cam in range(4)]
    recs += [_record(s, "Walking 1", cam, 30, j=1) for s in ("S5", "S6", "S7", "S8", "S9") for cam in range(4)]
    return tuple(recs)


def _frame_ids(item):
    if isinstance(item, SequenceRecord):
        return item.positions_world[:, 0, 0]
    return item["positions_world"][:, 0, 0]


@pytest.mark.parametrize("fraction", [0.001, 0.01, 0.05, 0.1])
def test_labelled_fraction_matches_videopose3d(long_s1, fraction):
    assert fraction in P.H36M_LABELLED_FRACTIONS
    split = P.h36m_fraction_split(long_s1, fraction)
    s1 = [r for r in long_s1 if r.subject == "S1"]
    assert len(split.labelled) == len(s1)  # every sequence keeps >= 1 frame here
    for orig, part in zip(s1, split.labelled):
        f = orig.num_frames
        n = int(round(f * fraction))
        ids = _frame_ids(part)
        assert ids.shape == (n,) and part.positions_camera.shape[0] == n
        np.testing.assert_array_equal(np.diff(ids), np.ones(n - 1))  # contiguous
        assert ids[0] == _vp3d_start(f, n)
        assert part.subject == "S1" and part.action == orig.action and part.fps == 50.0
    # Unlabelled: the other training subjects, whole.
    assert {r.subject for r in split.unlabelled} == {"S5", "S6", "S7", "S8"}
    assert all(r.num_frames == 30 for r in split.unlabelled)
    # Deterministic.
    again = P.h36m_fraction_split(long_s1, fraction)
    for a, b in zip(split.labelled, again.labelled):
        np.testing.assert_array_equal(_frame_ids(a), _frame_ids(b))


def test_labelled_fraction_seeded_and_strided(long_s1):
    s1 = [r for r in long_s1 if r.subject == "S1"]
    seeded = P.subset_frames(s1, 0.05, seed=3)
    again = P.subset_frames(s1, 0.05, seed=3)
    other = P.subset_frames(s1, 0.05, seed=4)
    starts = [_frame_ids(r)[0] for r in seeded]
    assert starts == [_frame_ids(r)[0] for r in again]
    assert starts != [_frame_ids(r)[0] for r in other]
    # The 4 cameras of a sequence share the chunk.
    for k in range(0, len(seeded), 4):
        assert len({_frame_ids(r)[0] for r in seeded[k:k + 4]}) == 1
    # --downsample 2: n = round(F // 2 * fraction) * 2 frames, every 2nd kept.
    strided = P.subset_frames(s1, 0.1, stride=2)
    for orig, part in zip(s1, strided):
        f = orig.num_frames
        n = int(round(f // 2 * 0.1) * 2)
        ids = _frame_ids(part)
        assert ids.shape == (n // 2,)
        np.testing.assert_array_equal(np.diff(ids), np.full(n // 2 - 1, 2.0))
        assert ids[0] == _vp3d_start(f, n) and part.fps == 25.0


def test_fraction_on_example_dicts_slices_every_frame_key():
    ex = _example("S1", "Walking 1", "Walking", 0, 2000)
    (part,) = P.subset_frames([ex], 0.01)
    n = 20
    for key in ("positions_world", "positions_camera", "keypoints_2d", "valid", "activity"):
        assert part[key].shape[0] == n
    assert part["camera"] is ex["camera"] and part["subject"] == b"S1"
    assert _frame_ids(part)[0] == _vp3d_start(2000, n)
    assert ex["positions_world"].shape[0] == 2000  # input untouched


def test_tiny_fraction_drops_empty_sequences(h36m_records):
    # 12..22-frame sequences: 0.1 % keeps round(0.02) = 0 frames everywhere.
    assert P.subset_frames(h36m_records, 0.001) == ()
    with pytest.raises(ValueError, match="no sequences"):
        P.h36m_fraction_split(h36m_records, 0.001)


# ---------------------------------------------------------------- temporal downsampling


def test_downsample_to_10_fps(items):
    out = P.downsample(items[:8], target_fps=10.0)
    for orig, d in zip(items[:8], out):
        f = P.num_frames_of(orig)
        np.testing.assert_array_equal(_frame_ids(d), np.arange(0, f, 5, dtype=np.float32))
        assert P.fps_of(d) == 10.0
    # The factor follows fps: a 25 fps sequence to 5 fps also keeps every 5th frame.
    r25 = _record("S1", "Seq1", 0, 23, fps=25.0)
    np.testing.assert_array_equal(_frame_ids(P.downsample([r25], target_fps=5.0)[0]), np.arange(0, 23, 5))
    with pytest.raises(ValueError, match="not an integer multiple"):
        P.downsample([r25], target_fps=10.0)


# -------------------------------------------------------------------------- 3DHP


@pytest.fixture(scope="module")
def hp_records():
    recs = [_record(f"S{s}", f"Seq{q}", c, 5) for s in range(1, 9) for q in (1, 2) for c in range(14)]
    recs += [_record(f"TS{t}", f"TS{t}", 0, 5) for t in range(1, 7)]
    return tuple(recs)


def test_mpi_inf_3dhp_subjects_and_cameras(hp_records):
    split = P.mpi_inf_3dhp_subject_split(hp_records)
    assert _subjects(split.labelled) == {"S1"}
    assert _subjects(split.unlabelled) == {f"S{s}" for s in range(2, 9)}
    assert len(split.labelled) == 2 * 14
    chest = P.select_cameras(split.labelled, "mm3d_chest")
    assert sorted({r.camera_index for r in chest}) == [0, 2, 4, 7, 8] and len(chest) == 10
    vnect = P.select_cameras(hp_records, "vnect")
    assert sorted({r.camera_index for r in vnect}) == [0, 1, 2, 4, 5, 6, 7, 8]
    with pytest.raises(ValueError, match="unknown camera set"):
        P.select_cameras(hp_records, "chest")


# ---------------------------------------------------------------------- sharding


@pytest.mark.parametrize("n,count", [(10, 3), (2, 3), (0, 2), (12, 4), (7, 1)])
def test_shards_cover_every_index_once(n, count):
    shards = [P.shard_indices(n, process_index=p, process_count=count) for p in range(count)]
    allidx = np.concatenate([s.indices for s in shards])
    np.testing.assert_array_equal(np.sort(allidx), np.arange(n))
    sizes = [s.indices.size for s in shards]
    assert max(sizes) - min(sizes) <= 1
    padded = [P.shard_indices(n, process_index=p, process_count=count, pad_to_equal=True) for p in range(count)]
    assert len({s.indices.size for s in padded}) == 1
    real = np.concatenate([s.indices[s.weight == 1] for s in padded])
    np.testing.assert_array_equal(np.sort(real), np.arange(n))
    ds = grain.MapDataset.range(n)
    got = [int(x) for p in range(count) for x in P.shard_dataset(ds, process_index=p, process_count=count)]
    assert got == list(range(n))


def test_shard_validation():
    with pytest.raises(ValueError, match="process_index"):
        P.shard_indices(5, process_index=2, process_count=2)
    with pytest.raises(ValueError, match="process_count"):
        P.shard_indices(5, process_index=0, process_count=0)


# ------------------------------------------------------ protocol batches and resume


def test_resumed_grain_iterator_over_protocol_batches(h36m_records):
    split = P.h36m_subject_split(h36m_records, ("S1",))
    recs = P.downsample(split.labelled, target_fps=25.0)
    seqs = pipelines.sequences_from_records(recs, layout="h36m_17")
    assert seqs.num_frames == sum(-(-r.num_frames // 2) for r in split.labelled)
    windows = pipelines.temporal_windows(seqs, receptive_field=3)
    tb = [pipelines.training_batches(windows, global_batch_size=8, seed=5, process_index=p, process_count=2)
          for p in range(2)]
    # Two processes read disjoint halves of each global batch.
    idx, _ = tb[0].example_indices(3)
    both = np.concatenate([tb[p].batch(3)["example_index"] for p in range(2)])
    np.testing.assert_array_equal(both, idx)
    it = tb[0].grain_iterator(0, num_threads=0)
    for _ in range(3):
        next(it)
    state = it.get_state()
    expected = [next(it) for _ in range(2)]
    resumed = tb[0].grain_iterator(0, num_threads=0)
    resumed.set_state(state)
    for want in expected:
        got = next(resumed)
        for key in want:
            np.testing.assert_array_equal(got[key], want[key])
    np.testing.assert_array_equal(expected[0]["example_index"], tb[0].batch(3)["example_index"])


# ---------------------------------------------------------------------- bad input


def test_bad_input(h36m_records):
    with pytest.raises(ValueError, match="fraction"):
        P.subset_frames(h36m_records, 0.0)
    with pytest.raises(ValueError, match="labelled_subjects"):
        P.h36m_subject_split(h36m_records, ("S9",))
    with pytest.raises(ValueError, match="labelled_actions"):
        P.h36m_action_split(h36m_records, labelled_actions=("Jumping",))
    with pytest.raises(ValueError, match="single item"):
        P.h36m_train(h36m_records[0])
    with pytest.raises(ValueError, match="SequenceRecord or an example dict"):
        P.h36m_train([1, 2])
