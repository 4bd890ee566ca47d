"""Named training streams and the evaluation set, built from a config.

A *stream* is a named, random-access batch source: batch ``k`` of stream ``s`` is a pure
function of ``(config.seed, s, k)`` (:func:`jpose.datasets.pipelines.training_batches`
with a seed derived from the run seed and the stream's name), so the train step is
still the whole data state and a resumed run sees exactly the batches it would have
seen. The *primary* stream (``config.primary_stream``) defines the epoch: learning-rate
decay, the batch-norm momentum schedule and ``num_epochs`` count its epochs; every other
stream cycles through its own epochs at the same step. Each process reads only its slice
of every global batch.

Data sources (``config.data.source``):

* ``multiview`` -- the generated multi-view dataset (:mod:`jpose.datasets.multiview`):
  DeepMimic motion capture (the embedded default) or synthetic motion, or a saved
  ``.npz`` of one (``data.path``). Training records: the splits ``data.train_splits``
  (subjects S1-S4 of the sample data); evaluation: ``data.eval_split`` (held-out subject,
  and cameras if ``data.held_out_cameras``).
* ``wild`` -- in-the-wild training sequences (:mod:`jpose.datasets.wild`): the DeepMimic
  motion with perturbed poses, random bodies, a random camera per sequence and a
  detector's ``coco_17`` 2D, filled as ``launch/lift.py`` fills it; ``data.wild`` holds
  :class:`~jpose.datasets.wild.WildConfig` fields. Trains the default in-the-wild lifter.
* ``tfds`` -- a dataset built by ``launch/prepare_data.py`` (``data.dataset``: ``h36m``
  or ``mpi_inf_3dhp``; ``data.data_dir``, ``data.tfds_config``): training subjects
  ``data.train_subjects``, evaluation ``data.test_subjects`` (3DHP: the ``test`` split);
  ``data.cameras`` (a camera set name or indices; empty: all).
* ``h36m_videopose3d`` -- Human3.6M from VideoPose3D's preprocessed ``.npz`` files plus
  the raw release's ``metadata.xml`` cameras (:mod:`jpose.datasets.h36m_videopose3d`);
  those files hold pickles, so ``data.allow_pickle`` must be set explicitly.
* ``capture`` -- your own calibrated multi-camera captures (:mod:`jpose.datasets.capture`):
  ``data.capture`` lists capture manifests (a calibration plus one detector output per
  camera) for training, ``data.eval_capture`` labelled ones for evaluation (none: the
  generated sample's ``data.eval_split``, a sanity check, not your capture's error). The
  2D and 3D are converted to ``data.layout`` by joint name (the multi-view recipes
  re-project the 3D onto the 2D joint by joint; a synthesised joint's confidence is its
  least confident source's). Captures without 3D labels go to the ``unlabelled`` split
  whatever ``data.protocol`` says, and a multiview stream marks their examples
  ``has_3d = 0``.

Network inputs: normalised screen coordinates (:func:`jpose.camera.pixels_to_screen`), or
with ``data.input_normalisation = "focal"`` the camera-independent
:func:`jpose.camera.pixels_to_focal_units` (scale ``data.screen_focal``); with
``data.with_confidence`` the detector's confidence is a third feature.

A stream may instead read **your own sequence files**: ``streams.<name>.source =
"files"`` with ``paths`` (``.npz`` files or directories in the format of
:mod:`jpose.datasets.user_sequences`: any detector's 2D in pixels, the camera
intrinsics, optionally 3D), served next to the dataset's streams; their 2D is converted
to the run's input layout and their 3D to its layout by joint name. Such a stream must
have 3D when it is the primary stream (``require_3d``, default: only the primary).
``source = "pseudo_labels"`` with ``path`` reads the pseudo-labelled videos of Li et
al.'s stage B (:mod:`jpose.datasets.pseudo_labels`), each example with its video's
``bone_lengths``.

The training records are then split into *labelled* and *unlabelled* by
``data.protocol`` (:func:`labelled_split`, the protocols of :mod:`jpose.datasets.protocols`);
a stream reads ``split = "labelled" | "unlabelled" | "train"`` (all training records).
``data.downsample_fps`` > 0 downsamples training **and** evaluation (VideoPose3D's
``--downsample``; with the ``fraction`` protocol the labelled chunk is cut first and
strided inside, VideoPose3D's order).

Every stream's examples carry (leading axis the batch; see :mod:`jpose.datasets.pipelines`):
``inputs`` (receptive-field windows or single frames, normalised screen coordinates),
``poses_3d`` (root-relative, metres, camera frame), ``trajectory`` (camera-frame root,
metres), ``camera`` (the 9-vector of intrinsics in screen units ``[fx, fy, cx, cy, k1,
k2, k3, t0, t1]``, :func:`jpose.camera.intrinsics9`), ``extrinsics`` (``R`` row-major
then the centre ``c``, metres: ``x_cam = R (x_world - c)``), ``confidence`` (the 2D
detector's per-joint scores at the target frame; ones for exact 2D) and ``weight`` (0
for padding). The
window length follows the network the stream feeds (``streams.<name>.network``).

A **multi-view** stream, ``streams.<name> = {"source": "multiview", "split":
"labelled" | "unlabelled" | "train" (default), "views": V (default 2),
"global_batch_size": B, "network": <net>, "flip": False}``, serves synchronised views
(:func:`jpose.datasets.pipelines.multiview_batches`): each example is one instant of one
(subject, sequence) group, seen by ``V`` distinct cameras drawn at random (a pure
function of (seed, stream, step), like every batch) among those the group has in the
split. Every per-view key above gets a view axis after the batch one: ``inputs (B, V,
T, J_in, C)`` (single-frame nets: ``(B, V, J_in, C)``), ``poses_3d (B, V, 1, J, 3)`` |
``(B, V, J, 3)`` (ground truth, for logged metrics only in self-supervised recipes),
``trajectory (B, V, 1, 3)`` | ``(B, V, 3)``, ``camera (B, V, 9)``, ``extrinsics (B, V,
12)``, ``confidence (B, V, 1, J_in)`` | ``(B, V, J_in)``; plus ``camera_index (B, V)``
and the int32 ``subject`` (index into the split's sorted subject names),
``sequence_index`` (the group) and ``frame_index`` (the instant), and ``weight (B,)``.
A multiview batch also carries ``has_3d (B,)`` float32: 1 where the group's 3D
(``poses_3d``, ``trajectory``) are labels, 0 for an unlabelled capture's zero
placeholders, which a metric must mask out. A split with a group of fewer than ``V``
cameras is refused, naming
``streams.<name>.views``. ``flip`` must be False. ``extrinsics = "relative_pose"``
(default ``"calibrated"``) replaces the calibration by relative poses estimated from the
2D and the known camera distances (:func:`estimated_extrinsics`).

The sample data and the built datasets share one path: both become pose-sequence
examples of the builders' schema (:mod:`jpose.datasets.records`), then
:class:`~jpose.datasets.multiview.SequenceRecord` s, then training examples.
"""

from __future__ import annotations

import dataclasses
import functools
import zlib
from collections.abc import Mapping
from typing import Any, NamedTuple

import numpy as np

from jpose import skeleton
from jpose.datasets import capture as capture_lib
from jpose.datasets import multiview, pipelines, protocols
from jpose.datasets import records as records_lib
from jpose.nets.network import Network

__all__ = ["DataSets", "EvalData", "Stream", "Streams", "PROTOCOLS", "SPLITS", "DEVICE_KEYS",
           "MULTIVIEW_KEYS", "MULTIVIEW_EXTRINSICS", "estimated_extrinsics",
           "load_data", "load_eval_data", "labelled_split", "make_streams", "stream_seed"]

#: ``data.protocol`` values.
PROTOCOLS = ("all", "subjects", "fraction", "action_half", "hard_actions")
#: What a stream may read.
SPLITS = ("labelled", "unlabelled", "train")
#: Batch entries sent to the devices when present; the others (indices, flags) stay on
#: the host.
DEVICE_KEYS = ("inputs", "poses_3d", "trajectory", "camera", "extrinsics", "confidence",
               "weight")
#: What a ``source = "multiview"`` stream sends: the above with the view axis, plus the
#: instant's identity (int32 ``subject``, ``sequence_index``, ``frame_index``) and the
#: drawn cameras' rig indices (``camera_index`` (B, V)).
MULTIVIEW_KEYS = DEVICE_KEYS + ("subject", "sequence_index", "frame_index", "camera_index")
#: ``streams.<name>.extrinsics`` of a multiview stream: the calibration, or relative
#: poses estimated from the 2D (:func:`estimated_extrinsics`).
MULTIVIEW_EXTRINSICS = ("calibrated", "relative_pose")


class DataSets(NamedTuple):
    """The run's sequences, before they are cut into examples."""

    splits: dict[str, pipelines.Sequences | None]  # labelled / unlabelled / train
    eval_sequences: tuple  # ((action, inputs (F, J_in, C), poses_3d (F, J_out, 3)), ...)
    eval_frames: tuple  # per eval sequence {"valid": (F,) bool, "activity": (F,) int32}
    layout: str  # joint layout of the 3D targets
    input_layout: str  # joint layout of the 2D inputs
    meta: dict[str, Any]  # what recipes may read: joint counts, features, layouts
    # (subject, sequence) groups whose records carry no 3D labels (unlabelled captures).
    without_3d: frozenset = frozenset()


class Stream(NamedTuple):
    name: str
    split: str
    batches: pipelines.TrainingBatches
    keys: tuple[str, ...]  # entries of a batch that go to the devices
    # Per-sequence arrays (S, ...) gathered into each example by its sequence index
    # (e.g. a pseudo-labelled video's bone lengths).
    per_sequence: Mapping[str, np.ndarray] | None = None


class Streams(NamedTuple):
    streams: dict[str, Stream]
    primary: str

    @property
    def steps_per_epoch(self) -> int:
        return int(self.streams[self.primary].batches.steps_per_epoch)

    def batch(self, step: int) -> dict[str, dict[str, np.ndarray]]:
        """This process's slice of global step ``step``: ``{stream: {key: array}}``."""
        out = {}
        for name, s in self.streams.items():
            local = s.batches.batch(step)
            out[name] = {k: local[k] for k in s.keys}
            for key, table in (s.per_sequence or {}).items():
                out[name][key] = table[local["sequence_index"]]
        return out


def stream_seed(seed: int, name: str) -> int:
    """The seed of stream ``name``: independent streams per name, stable across runs."""
    state = np.random.SeedSequence([int(seed), zlib.crc32(name.encode())]).generate_state(1)
    return int(state[0] & 0x7FFFFFFF)


# ------------------------------------------------------------------------- records


def _records(config, *, with_train: bool = True) -> tuple[tuple, tuple, tuple | None]:
    """``(training records, evaluation records, action names or None)``; without
    ``with_train`` the training records are not read (an empty tuple)."""
    d = config.data
    if d.source == "capture":
        return _capture_records(config, with_train=with_train)
    if d.source == "multiview":
        return _sample_records(d, with_train=with_train)
    if d.source == "wild":
        from jpose.datasets import wild

        fields = {f.name for f in dataclasses.fields(wild.WildConfig)}
        ds = wild.make_wild_dataset(wild.WildConfig(**{
            k: tuple(v) if isinstance(v, list) else v
            for k, v in dict(d.get("wild", {})).items() if k in fields}), layout=d.layout)
        train = ds.split("labelled") if with_train else ()
        return tuple(train), ds.split("test"), ds.actions
    if d.source == "tfds":
        return _tfds_records(d, with_train=with_train)
    if d.source == "h36m_videopose3d":
        from jpose.datasets import h36m_videopose3d as h36m
        records = h36m.load_videopose3d_h36m(
            d.path_3d, d.path_2d, d.metadata_xml, allow_pickle=bool(d.allow_pickle),
            subjects=tuple(d.train_subjects if with_train else ()) + tuple(d.test_subjects),
            layout=d.layout)
        train = tuple(r for r in records if r.subject in tuple(d.train_subjects))
        test = tuple(r for r in records if r.subject in tuple(d.test_subjects))
        # Report per action class, merging takes ('Walking 1' + 'Walking'), as VideoPose3D.
        test = tuple(r._replace(action=h36m.action_class(r.action)) for r in test)
        return train, test, None
    raise ValueError(f"data.source: unknown source {d.source!r}; expected 'multiview', "
                     "'wild', 'tfds', 'h36m_videopose3d' or 'capture'.")


def _sample_records(d, *, with_train: bool) -> tuple[tuple, tuple, tuple]:
    """The generated multi-view dataset's training and evaluation records."""
    if d.get("path"):
        ds = multiview.load_multiview_dataset(d.path)
    else:
        ds = multiview.make_multiview_dataset(
            d.motion, layout=d.layout, num_subjects=int(d.num_subjects),
            num_cameras=int(d.num_cameras),
            held_out_cameras=tuple(int(c) for c in d.held_out_cameras),
            synthetic_frames=int(d.get("synthetic_frames", 100)),
            seed=int(d.generator_seed))
    # Through the builders' example schema, as the real datasets go.
    train = tuple(r for s in (d.train_splits if with_train else ())
                  for r in records_lib.records_from_examples(
                      records_lib.examples_from_multiview(ds, s), layout=ds.layout))
    test = records_lib.records_from_examples(
        records_lib.examples_from_multiview(ds, d.eval_split), layout=ds.layout)
    return train, test, ds.actions


def _capture_records(config, *, with_train: bool) -> tuple[tuple, tuple, None]:
    """Records of ``data.capture`` (training) and ``data.eval_capture`` (evaluation;
    none: the sample's ``data.eval_split``), in ``data.layout``."""
    d = config.data

    def paths(key):
        value = d.get(key, ()) or ()
        return (value,) if isinstance(value, str) else tuple(value)

    def load(key, *, labelled):
        out, seen = [], {}
        for path in paths(key):
            cap = capture_lib.load_manifest(path)
            if labelled and not cap.labelled:
                raise ValueError(f"data.{key}: {path} has no 3D labels (poses_3d); "
                                 "evaluation needs labelled captures")
            group = (cap.records[0].subject, cap.records[0].action)
            if group in seen:
                raise ValueError(f"data.{key}: {path} and {seen[group]} are both subject "
                                 f"{group[0]!r}, sequence {group[1]!r}; give each capture "
                                 "its own sequence name (the multi-view groups)")
            seen[group] = path
            for r in cap.records:
                out.append(_convert_capture_record(r, cap, layout=d.layout))
        return tuple(out)

    if with_train and not paths("capture"):
        raise ValueError("data.capture: the 'capture' source needs the manifests of your "
                         "captures (see jpose.datasets.capture)")
    train = load("capture", labelled=False) if with_train else ()
    if paths("eval_capture"):
        return train, load("eval_capture", labelled=True), None
    return train, _sample_records(d, with_train=False)[1], None


def _convert_capture_record(r, cap, *, layout: str):
    """A capture's record with its 2D and 3D in ``layout`` (by joint name, as
    :func:`_convert_user_record`; confidence by the least confident source joint)."""
    out = _convert_user_record(r, keypoints_layout=cap.keypoints_layout,
                               layout_3d=cap.records_layout, input_layout=layout,
                               layout=layout)
    conf = skeleton.convert_confidence(np.asarray(r.confidence), cap.keypoints_layout, layout)
    return out._replace(confidence=np.asarray(conf, np.float32))


def _tfds_records(d, *, with_train: bool = True) -> tuple[tuple, tuple, None]:
    from jpose.datasets import tfds_build

    config = d.get("tfds_config", "") or None

    def load(splits):
        # One example at a time: only the record's arrays stay (a Human3.6M example also
        # holds the 32-joint arrays, about 4x the memory of the record).
        records = []
        for split in splits:
            source = tfds_build.load(d.dataset, data_dir=d.data_dir, split=split, config=config)
            for i in range(len(source)):
                records.extend(records_lib.records_from_examples([source[i]], layout=d.layout))
        return tuple(records)

    test_splits = ("test",) if d.dataset == "mpi_inf_3dhp" else tuple(d.test_subjects)
    train = load(tuple(d.train_subjects)) if with_train else ()
    test = load(test_splits)
    if d.get("cameras", ()) and train:
        cams = d.cameras if isinstance(d.cameras, str) else tuple(int(c) for c in d.cameras)
        train = protocols.select_cameras(train, cams)
    if d.dataset == "h36m":
        from jpose.datasets import h36m_videopose3d as h36m

        # Report per action class, merging takes, as VideoPose3D.
        test = tuple(r._replace(action=h36m.action_class(r.action)) for r in test)
    else:
        test = tuple(r._replace(action=r.subject) for r in test)  # per test sequence
    return tuple(train), test, None


def _downsample_stride(records: tuple, target_fps: float, what: str) -> int:
    """The frame stride taking every record from its fps to ``target_fps``."""
    strides = {round(protocols.fps_of(r) / target_fps) for r in records}
    protocols.downsample(records[:1], target_fps=target_fps)  # names a non-integer ratio
    if len(strides) != 1:
        raise ValueError(f"data.downsample_fps: the {what} records have different frame "
                         f"rates ({sorted({protocols.fps_of(r) for r in records})} fps); "
                         "downsample them separately.")
    return int(strides.pop())


def labelled_split(d, train: tuple) -> protocols.LabelledSplit:
    """Labelled and unlabelled training records under ``data.protocol``:

    * ``all``: every training record labelled, none unlabelled;
    * ``subjects``: ``data.labelled_subjects`` labelled (e.g. ``("S1",)``, ``("S1",
      "S5")``), the other training subjects unlabelled;
    * ``fraction``: ``data.labelled_fraction`` (0.001, 0.01, 0.05, 0.1) of
      ``data.labelled_subjects`` in VideoPose3D's contiguous chunks, the other subjects
      unlabelled (:func:`jpose.datasets.protocols.subset_frames`);
    * ``action_half``: the first 8 Human3.6M actions labelled, the other 7 unlabelled
      (Li et al.);
    * ``hard_actions``: every action but Photo, Purchases, Sitting, SittingDown labelled.

    Then ``data.downsample_fps`` > 0 keeps every k-th frame of both, ``k = fps /
    downsample_fps`` per record (inside the chunk for ``fraction``, as VideoPose3D's
    ``fetch`` does, which needs one frame rate for all of them).
    """
    protocol = d.get("protocol", "all")
    if protocol not in PROTOCOLS:
        raise ValueError(f"data.protocol: unknown protocol {protocol!r}; expected one of "
                         f"{PROTOCOLS}")
    target_fps = float(d.get("downsample_fps", 0) or 0)
    # The fraction protocol cuts VideoPose3D's chunk at one stride for all records;
    # otherwise each record goes from its own rate (MPI-INF-3DHP mixes 25 and 50 fps).
    stride = (_downsample_stride(train, target_fps, "training")
              if target_fps > 0 and protocol == "fraction" else 1)
    subjects = tuple(d.get("labelled_subjects", ("S1",)))

    def strided(items):
        if target_fps > 0 and items:
            return protocols.downsample(items, target_fps=target_fps)
        return tuple(items)

    if protocol == "all":
        return protocols.LabelledSplit(strided(train), ())
    if protocol in ("subjects", "fraction"):
        known = sorted({protocols.subject_of(r) for r in train})
        missing = [s for s in subjects if s not in known]
        if missing:
            raise ValueError(f"data.labelled_subjects: {missing} are not training subjects "
                             f"({known})")
        lab = protocols.select(train, subjects=subjects)
        rest = tuple(r for r in train if protocols.subject_of(r) not in subjects)
        if protocol == "subjects":
            return protocols.LabelledSplit(strided(lab), strided(rest))
        chunks = protocols.subset_frames(lab, float(d.labelled_fraction), stride=stride)
        if not chunks:
            raise ValueError(f"data.labelled_fraction: {d.labelled_fraction} of {subjects} "
                             "leaves no labelled frames")
        return protocols.LabelledSplit(chunks, strided(rest))
    if protocol == "action_half":
        split = protocols.h36m_action_split(train, subjects=tuple(d.train_subjects))
    else:
        split = protocols.h36m_hard_action_split(train, subjects=tuple(d.train_subjects))
    return protocols.LabelledSplit(strided(split.labelled), strided(split.unlabelled))


def _limit(records: tuple, count: int) -> tuple:
    """At most ``count`` records (0: all), spread over actions for a fair small sample."""
    if count <= 0 or len(records) <= count:
        return records
    by_action: dict[str, list] = {}
    for r in records:
        by_action.setdefault(r.action, []).append(r)
    picked, i = [], 0
    while len(picked) < count:
        for recs in by_action.values():
            if i < len(recs) and len(picked) < count:
                picked.append(recs[i])
        i += 1
    return tuple(picked)


class EvalData(NamedTuple):
    """An evaluation set: ``(action, inputs (F, J_in, C), poses_3d (F, J, 3))`` sequences,
    their per-frame flags (``valid``, ``activity``) and joint layouts."""

    sequences: tuple
    frames: tuple
    layout: str
    input_layout: str


def _sequences(d, records, actions):
    if not records:
        return None
    return pipelines.sequences_from_records(
        records, layout=d.layout, actions=actions,
        use_clean_2d=bool(d.get("use_clean_2d", False)), with_cameras=True,
        **_input_options(d))


def _input_options(d) -> dict[str, Any]:
    """How the 2D becomes network inputs: ``data.with_confidence`` (append the detector's
    confidence as a third feature) and ``data.input_normalisation`` (``"screen"``, or
    ``"focal"`` with ``data.screen_focal``: :func:`jpose.camera.pixels_to_focal_units`)."""
    options = {"with_confidence": bool(d.get("with_confidence", False)),
               "normalisation": str(d.get("input_normalisation", "screen") or "screen")}
    if options["normalisation"] == "focal":
        options["screen_focal"] = float(d.get("screen_focal", 0) or 0)
    return options


def _eval_data(d, test: tuple, actions) -> EvalData:
    target_fps = float(d.get("downsample_fps", 0) or 0)
    if target_fps > 0 and d.get("downsample_eval", True):
        test = protocols.downsample(test, target_fps=target_fps)  # 10 fps settings
    test = _limit(test, int(d.get("max_eval_sequences", 0) or 0))
    evals = _sequences(d, test, actions)
    if evals is None:
        raise ValueError(f"data: the {d.source!r} source has no evaluation sequences")
    # Per-frame evaluation flags (MPI-INF-3DHP test: valid_frame and activity ids).
    frames = tuple({"valid": np.ones(r.num_frames, bool) if r.valid is None else r.valid,
                    "activity": (np.zeros(r.num_frames, np.int32) if r.activity is None
                                 else r.activity)} for r in test)
    return EvalData(tuple((s.action_name, s.inputs, s.poses_3d) for s in evals), frames,
                    d.layout, getattr(evals, "input_layout", None) or d.layout)


def load_eval_data(config) -> EvalData:
    """Only the evaluation set of ``config.data`` (its training records are not read):
    an evaluator on another dataset (``evals.<name>.data``, cross-dataset protocols)."""
    _, test, actions = _records(config, with_train=False)
    return _eval_data(config.data, test, actions)


def _screen_focal(seqs) -> float | None:
    """The labelled cameras' median focal length in screen units (``2 f / width``):
    what the model learned to expect, so inference on another camera can normalise its
    2D to it (``launch/lift.py``). None without cameras."""
    focal = [float(s.camera[0]) for s in seqs if s.camera is not None]
    return float(np.median(focal)) if focal else None


def load_data(config) -> DataSets:
    """The labelled, unlabelled and whole training sequences and the evaluation set."""
    d = config.data
    train, test, actions = _records(config)
    no_3d = ()
    if d.source == "capture":  # unlabelled captures are never labelled data
        no_3d = tuple(r for r in train if not capture_lib.has_3d(r))
        train = tuple(r for r in train if capture_lib.has_3d(r))
    split = labelled_split(d, train)
    split = split._replace(unlabelled=tuple(split.unlabelled) + no_3d)
    evals = _eval_data(d, test, actions)
    splits = {"labelled": _sequences(d, split.labelled, actions),
              "unlabelled": _sequences(d, split.unlabelled, actions),
              "train": _sequences(d, tuple(split.labelled) + tuple(split.unlabelled), actions)}
    first = splits["labelled"] or splits["train"]
    input_layout = getattr(first, "input_layout", None) or d.layout
    meta = {"layout": d.layout, "input_layout": input_layout,
            "num_joints_in": first.num_joints_in, "num_joints_out": first.num_joints_out,
            "in_features": first.in_features,
            "screen_focal": (float(d.screen_focal) if _input_options(d)["normalisation"] ==
                             "focal" else _screen_focal(first))}
    return DataSets(splits=splits, eval_sequences=evals.sequences, eval_frames=evals.frames,
                    layout=d.layout, input_layout=input_layout, meta=meta,
                    without_3d=frozenset((r.subject, r.action) for r in no_3d))


# ------------------------------------------------------------------------- streams


def _stream_configs(config) -> dict[str, Mapping[str, Any]]:
    streams = {k: dict(v) for k, v in dict(config.streams).items()}
    if not streams:
        raise ValueError("streams: the config defines no training stream")
    if config.primary_stream not in streams:
        raise ValueError(f"primary_stream: {config.primary_stream!r} is not one of the "
                         f"streams {sorted(streams)}")
    return streams


def _convert_user_record(r, *, keypoints_layout: str, layout_3d: str, input_layout: str,
                         layout: str):
    """A user record with its 2D (``keypoints``, ``confidence``) moved from
    ``keypoints_layout`` to the run's ``input_layout`` and its 3D (``positions_*``,
    ``keypoints_clean``) from ``layout_3d`` to the run's ``layout``, by joint name
    (:func:`jpose.skeleton.convert`: a synthesised joint is a weighted mean of its
    sources, its confidence the same mean of theirs)."""
    def conv(a, src, dst):
        if src == dst:
            return np.asarray(a, np.float32)
        return np.asarray(skeleton.convert(np.asarray(a, np.float32), src, dst), np.float32)

    conf = conv(np.asarray(r.confidence)[..., None], keypoints_layout, input_layout)[..., 0]
    f = r.num_frames
    return r._replace(
        keypoints=conv(r.keypoints, keypoints_layout, input_layout), confidence=conf,
        outlier=np.zeros(conf.shape, bool),
        keypoints_clean=conv(r.keypoints_clean, layout_3d, layout),
        positions_camera=conv(r.positions_camera, layout_3d, layout),
        positions_world=conv(r.positions_world, layout_3d, layout),
        visible=np.ones((f, skeleton.get(layout).num_joints), bool),
        keypoints_layout=None if input_layout == layout else input_layout)


def _file_sequences(config, name: str, s: Mapping[str, Any], data: DataSets, *,
                    require_3d: bool) -> pipelines.Sequences:
    """Sequences of a ``source = "files"`` stream: the user's files (``paths``), their 2D
    converted to the run's input layout and 3D to its layout by joint name."""
    from jpose.datasets import user_sequences

    paths = s.get("paths", ())
    paths = (paths,) if isinstance(paths, str) else tuple(paths)
    if not paths:
        raise ValueError(f"streams.{name}.paths: a 'files' stream needs the paths of your "
                         "sequence files (.npz files or directories)")
    loaded = user_sequences.load_user_sequences(
        paths, layout=s.get("layout", "") or None, require_3d=require_3d)
    layout_3d = loaded.layout_3d or loaded.keypoints_layout
    records = [_convert_user_record(r, keypoints_layout=loaded.keypoints_layout,
                                    layout_3d=layout_3d, input_layout=data.input_layout,
                                    layout=data.layout) for r in loaded.records]
    return pipelines.sequences_from_records(
        records, layout=data.layout, actions=None, with_cameras=True,
        what=f"streams.{name} files", **_input_options(config.data))


def _stream_network(name: str, s: Mapping[str, Any], nets: Mapping[str, Network]) -> Network:
    net_name = s.get("network", "") or ("pose" if "pose" in nets else sorted(nets)[0])
    if net_name not in nets:
        raise ValueError(f"streams.{name}.network: {net_name!r} is not one of the "
                         f"recipe's networks {sorted(nets)}")
    return nets[net_name]


def _frame_examples(seqs, net: Network):
    if net.kind == "temporal":
        return pipelines.temporal_windows(seqs, receptive_field=net.receptive_field,
                                          padding=net.padding)
    return pipelines.single_frames(seqs)


def estimated_extrinsics(seqs: pipelines.Sequences, *, seed: int = 0,
                         max_instants: int = 400, what: str = "extrinsics",
                         config=None) -> pipelines.Sequences:
    """``seqs`` with every camera's extrinsics replaced by an estimate from the 2D.

    The calibration-free fallback of multi-view training: per camera ``i`` other than
    the reference ``ref`` (the lowest camera index), the relative pose ``x_cam_i = R
    x_cam_ref + t`` is estimated by :func:`jpose.solvers.relative_pose.relative_pose`
    from the two cameras' synchronised 2D detections pooled over every (subject,
    sequence) group that has both (at most ``max_instants`` instants, evenly spread;
    joints weighted by the product of their confidences), in normalised screen units
    with the screen-unit intrinsics (lens distortion ignored), and scaled by the known
    camera distance ``|c_i - c_ref|`` (the only use of the calibrated extrinsics: a
    measured baseline). The result's extrinsics live in the reference camera's frame:
    ``R_ref = I``, ``c_ref = 0``, ``R_i = R``, ``c_i = -R^T t``. All groups must share
    the rig (one set of cameras, as Human3.6M's and the sample's do).
    """
    import jax

    from jpose.solvers import relative_pose as rp

    groups: dict[tuple[str, str], dict[int, int]] = {}
    for i, q in enumerate(seqs):
        groups.setdefault((q.subject, q.action_name), {})[q.camera_index] = i
    cams = sorted({q.camera_index for q in seqs})
    rig = {c: next(q.extrinsics for q in seqs if q.camera_index == c) for c in cams}
    for q in seqs:
        if not np.allclose(q.extrinsics, rig[q.camera_index], atol=1e-5):
            raise ValueError(f"{what}: camera {q.camera_index} moves between sequences; "
                             "relative poses are estimated per camera pair of one rig")
    ref = cams[0]
    if config is None:
        # Thresholds in screen units (2 / width per pixel): 5 px and 25 px at 1000 px.
        config = rp.RelativePoseConfig(num_hypotheses=256, num_starts=4, threshold=0.01,
                                       coarse_threshold=0.05, maxiter=50)
    new = {ref: np.concatenate([np.eye(3, dtype=np.float32).reshape(9),
                                np.zeros(3, np.float32)])}
    solve = jax.jit(functools.partial(rp.relative_pose, config=config))
    for c in cams[1:]:
        x1, x2, w = [], [], []
        for views in groups.values():
            if ref in views and c in views:
                a, b = seqs[views[ref]], seqs[views[c]]
                f = min(a.num_frames, b.num_frames)
                x1.append(a.inputs[:f, :, :2])
                x2.append(b.inputs[:f, :, :2])
                w.append(a.confidence[:f] * b.confidence[:f])
        if not x1:
            raise ValueError(f"{what}: cameras {ref} and {c} never film the same "
                             "sequence; their relative pose cannot be estimated")
        x1, x2, w = (np.concatenate(v) for v in (x1, x2, w))
        pick = np.unique(np.linspace(0, x1.shape[0] - 1, min(max_instants, x1.shape[0]))
                         .astype(np.int64))
        cam_c = next(q.camera for q in seqs if q.camera_index == c)
        cam_r = next(q.camera for q in seqs if q.camera_index == ref)
        k1 = np.asarray(rp.intrinsic_matrix(cam_r[:2], cam_r[2:4]))
        k2 = np.asarray(rp.intrinsic_matrix(cam_c[:2], cam_c[2:4]))
        baseline = float(np.linalg.norm(rig[c][9:] - rig[ref][9:]))
        out = solve(x1[pick], x2[pick], k1, k2, weights=w[pick], baseline=baseline,
                    key=jax.random.key(seed + c))
        rot, t = np.asarray(out.rotation, np.float32), np.asarray(out.translation, np.float32)
        if not (np.all(np.isfinite(rot)) and np.all(np.isfinite(t))):
            raise ValueError(f"{what}: the relative pose of cameras {ref} and {c} could not "
                             f"be estimated (solver status {int(out.status)})")
        new[c] = np.concatenate([rot.reshape(9), -rot.T @ t]).astype(np.float32)
    items = tuple(q._replace(extrinsics=new[q.camera_index]) for q in seqs)
    return dataclasses.replace(seqs, items=items)


def _multiview_stream(config, name: str, s: Mapping[str, Any], data: DataSets,
                      nets: Mapping[str, Network], *, process_index: int,
                      process_count: int) -> Stream:
    """A ``source = "multiview"`` stream: ``views`` synchronised cameras per example
    (:func:`jpose.datasets.pipelines.multiview_batches`)."""
    split = s.get("split", "train") or "train"
    if split not in SPLITS:
        raise ValueError(f"streams.{name}.split: {split!r}; expected one of {SPLITS}")
    if bool(s.get("flip", False)):
        raise ValueError(
            f"streams.{name}.flip: must be False for a multiview stream (a horizontal flip "
            "mirrors each camera's frame, not the world, so flipped views are not views of "
            "one scene unless their extrinsics are mirrored too; not supported)")
    seqs = data.splits[split]
    if seqs is None:
        raise ValueError(
            f"streams.{name}: the {split!r} split is empty under data.protocol="
            f"{config.data.get('protocol', 'all')!r}; choose a protocol that leaves {split} "
            "data, or another split")
    views = s.get("views", 2)
    if isinstance(views, bool) or not isinstance(views, (int, np.integer)) or views < 1:
        raise ValueError(f"streams.{name}.views: expected a positive int, got {views!r}")
    extrinsics = s.get("extrinsics", "calibrated") or "calibrated"
    if extrinsics not in MULTIVIEW_EXTRINSICS:
        raise ValueError(f"streams.{name}.extrinsics: {extrinsics!r}; expected one of "
                         f"{MULTIVIEW_EXTRINSICS}")
    if extrinsics == "relative_pose":
        seqs = estimated_extrinsics(seqs, seed=stream_seed(config.seed, name),
                                    what=f"streams.{name}.extrinsics")
    examples = _frame_examples(seqs, _stream_network(name, s, nets))
    batch_size = int(s.get("global_batch_size", 0) or config.global_batch_size)
    batches = pipelines.multiview_batches(
        examples, views=int(views), global_batch_size=batch_size,
        seed=stream_seed(config.seed, name), process_index=process_index,
        process_count=process_count, what=f"streams.{name}.views")
    example = batches.batch(0)
    keys = tuple(k for k in MULTIVIEW_KEYS if k in example)
    # Per group (the batches' sequence_index): 0 where the 3D are placeholders.
    has_3d = np.asarray([key not in data.without_3d for key in batches.group_keys],
                        np.float32)
    return Stream(name, split, batches, keys, {"has_3d": has_3d})


def make_streams(config, data: DataSets, nets: Mapping[str, Network], *,
                 process_index: int = 0, process_count: int = 1) -> Streams:
    """The config's streams (``config.streams``: ``{name: {split, global_batch_size,
    network, flip}}``, or ``{name: {source: "files", paths, layout, require_3d, ...}}``)
    over ``data``, windows sized for the network each feeds."""
    out = {}
    for name, s in _stream_configs(config).items():
        source = s.get("source", "") or "data"
        per_sequence = None
        if source == "pseudo_labels":
            from jpose.datasets import pseudo_labels

            split = "pseudo_labels"
            if not s.get("path", ""):
                raise ValueError(f"streams.{name}.path: a 'pseudo_labels' stream needs the "
                                 "file written by stage B of launch/boost.py")
            if bool(s.get("flip", config.data.flip_augment)):
                raise ValueError(f"streams.{name}.flip: must be False for pseudo labels (a "
                                 "mirror would swap the left/right per-video bone lengths)")
            seqs, per_sequence = pseudo_labels.load(str(s["path"]))
        elif source == "files":
            split = "files"
            seqs = _file_sequences(config, name, s, data,
                                   require_3d=bool(s.get("require_3d",
                                                         name == config.primary_stream)))
        elif source == "multiview":
            out[name] = _multiview_stream(config, name, s, data, nets,
                                          process_index=process_index,
                                          process_count=process_count)
            continue
        elif source == "data":
            split = s.get("split", "labelled")
            if split not in SPLITS:
                raise ValueError(f"streams.{name}.split: {split!r}; expected one of {SPLITS}")
            seqs = data.splits[split]
            if seqs is None:
                raise ValueError(
                    f"streams.{name}: the {split!r} split is empty under data.protocol="
                    f"{config.data.get('protocol', 'all')!r}; choose a protocol that leaves "
                    f"{split} data, or drop the stream")
        else:
            raise ValueError(f"streams.{name}.source: {source!r}; expected 'data' (the "
                             "config's dataset), 'files' (your own sequence files), "
                             "'pseudo_labels' or 'multiview' (synchronised views)")
        examples = _frame_examples(seqs, _stream_network(name, s, nets))
        flip = bool(s.get("flip", config.data.flip_augment))
        layouts = (data.input_layout, data.layout)
        flip_layouts = None
        if flip:
            flip_layouts = skeleton.get(data.layout) if layouts[0] == layouts[1] else layouts
        batch_size = int(s.get("global_batch_size", 0) or config.global_batch_size)
        batches = pipelines.training_batches(
            examples, global_batch_size=batch_size, seed=stream_seed(config.seed, name),
            process_index=process_index, process_count=process_count,
            flip_augment=flip_layouts)
        example = examples[0]  # one example's keys: the batches add only "weight"
        keys = tuple(k for k in DEVICE_KEYS if k in example or k == "weight")
        out[name] = Stream(name, split, batches, keys, per_sequence)
    return Streams(out, str(config.primary_stream))
