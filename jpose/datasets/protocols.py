"""Training protocols of the scarce-label 3D pose literature, as pure selections.

Every function takes *items* -- :class:`~jpose.datasets.multiview.SequenceRecord` s or
pose-sequence example dicts (:mod:`jpose.datasets.records`), one per (subject, sequence,
camera) -- and returns the selected items as a tuple, in input order (or a
:class:`LabelledSplit` of two such tuples). Frame selections return new items whose
per-frame arrays are slices (views) of the input's; nothing is modified in place. The
two kinds of item differ in how they name things:

* subject: ``record.subject`` / ``example["subject"]``;
* sequence: ``record.action`` (the file name, e.g. ``"Directions 1"``) /
  ``example["sequence"]``;
* Human3.6M action class: :func:`~jpose.datasets.h36m_videopose3d.action_class` of the
  record's ``action`` / of the example's ``action`` (both canonicalised, so ``"Photo"``,
  ``"TakingPhoto"`` and ``"Photo 1"`` are all ``"TakingPhoto"``).

Protocols and their sources
---------------------------
* **Human3.6M subjects** (:func:`h36m_train`, :func:`h36m_test`): train S1, S5, S6, S7,
  S8; test S9, S11 (VideoPose3D ``common/arguments.py`` defaults; 3d-pose-baseline; the
  split of Protocols #1/#2).
* **Subject-wise labelled sets** (:func:`h36m_subject_split`,
  :data:`H36M_LABELLED_SUBJECT_SETS`): S1, S1+S5, S1+S5+S6, S1+S5+S6+S7 labelled; the
  other training subjects unlabelled (Pavllo et al., "3D human pose estimation in video
  with temporal convolutions and semi-supervised training", CVPR 2019, semi-supervised
  experiments; the settings Li et al., "On Boosting Single-Frame 3D Human Pose
  Estimation via Monocular Videos", ICCV 2019, compare with, per jpose issue 6).
  VideoPose3D itself takes the unlabelled subjects from
  an explicit flag (``-sun S5,S6,S7,S8``) and loads them whole, only downsampled
  (``fetch(subjects_semi, action_filter, parse_3d_poses=False)``: ``subset=1``).
* **Labelled fractions of S1** (:func:`subset_frames`, :func:`h36m_fraction_split`,
  :data:`H36M_LABELLED_FRACTIONS`: 0.1 %, 1 %, 5 %, 10 %): VideoPose3D ``run.py``
  ``fetch`` with ``--subset``: per sequence and camera, ``n = round(F // stride *
  fraction) * stride`` frames from a start ``deterministic_random(0, F - n + 1, str(F))``
  (``int(u32(sha256(str(F))[:4], little endian) / (2**32 - 1) * (F - n + 1))``), then
  every ``stride``-th frame (``--downsample``) of ``[start, start + n)``. Matched
  exactly with ``seed=None``. Differences, documented: (1) VideoPose3D keys the start on
  the frame count only, so every sequence of the same length starts at the same frame;
  an integer ``seed`` keys it on ``(seed, subject, sequence)`` instead (still the same
  for all cameras of a sequence); (2) in the 2**-32 case where ``deterministic_random``
  returns its upper bound, VideoPose3D's chunk would be one frame short; here the start
  is clamped to ``F - n``; (3) sequences left with 0 frames (tiny fractions of short
  sequences) are dropped, where VideoPose3D keeps empty arrays that yield no examples.
  Python's ``round`` (half to even) is used, as in VideoPose3D.
* **Action-wise halves** (:func:`h36m_action_split`): the first 8 of the 15 actions
  labelled, the other 7 unlabelled, over the training subjects (Li et al. ICCV 2019,
  action-wise semi-supervised setting). "First" is taken in the column order of the
  Human3.6M result tables (:data:`H36M_ACTION_TABLE_ORDER`: Directions, Discussion,
  Eating, Greeting, Phoning, Photo, Posing, Purchases | Sitting, SittingDown, Smoking,
  Waiting, WalkDog, Walking, WalkTogether; the order of the tables of 3d-pose-baseline,
  VideoPose3D and the papers comparing with them). Its first 8 are also the first 8 of
  VideoPose3D's file names sorted alphabetically. It is **not** metadata.xml's order
  (:data:`~jpose.datasets.h36m_videopose3d.H36M_ACTION_CLASSES`, which puts TakingPhoto
  after Smoking and would make Sitting labelled instead of TakingPhoto). The sentence of
  Li et al. defining the split could not be checked here (the paper text was not
  available); pass ``labelled_actions=`` for another split.
* **Hard action split** (:func:`h36m_hard_action_split`): Photo (TakingPhoto),
  Purchases, Sitting and SittingDown unlabelled, the other 11 labelled (the thesis's
  split of the actions least like the others; :data:`H36M_HARD_ACTIONS`).
* **Temporal downsampling** (:func:`downsample`): every ``k``-th frame from frame 0 with
  ``k = fps / target_fps`` (50 fps -> 10 fps: ``k = 5``), VideoPose3D's
  ``--downsample`` (``[::k]``); ``fps`` of the output is ``fps / k``.
* **MPI-INF-3DHP** (:func:`mpi_inf_3dhp_subject_split`, :func:`select_cameras`): S1
  labelled, S2-S8 unlabelled, the MPI-INF-3DHP counterpart of the S1-labelled Human3.6M
  setting (jpose issue 6; no paper's exact 3DHP subject split was checked here); camera
  sets from the official ``mpii_get_camera_set`` (``shared/DATASET_FORMATS.md`` 3.7):
  ``vnect`` (0, 1, 2, 4, 5, 6, 7, 8; the standard training cameras), ``mm3d_chest`` (0,
  2, 4, 7, 8, the five chest-height cameras), ``relevant`` (0-10), ``ceiling`` (11-13).
* **Per-process sharding** (:func:`shard_indices`, :func:`shard_dataset`): contiguous,
  even blocks of a dataset's indices, the first ``n % P`` processes one longer (grain's
  ``ShardOptions`` semantics), covering every index exactly once. Training batches do
  not need it: :func:`jpose.datasets.pipelines.training_batches` already gives each
  process rows ``[p L, (p + 1) L)`` of every global batch, so all processes draw from the
  whole dataset and each global batch row is read by exactly one process.
"""

from __future__ import annotations

import hashlib
import math
import types
from collections.abc import Mapping
from typing import Any, NamedTuple

import grain
import numpy as np

from jpose.datasets import h36m_videopose3d as h36m
from jpose.datasets import multiview as multiview_lib
from jpose.datasets.pipelines import _check_int
from jpose.datasets.records import text

__all__ = [
    "H36M_TRAIN_SUBJECTS",
    "H36M_TEST_SUBJECTS",
    "H36M_FPS",
    "H36M_LABELLED_SUBJECT_SETS",
    "H36M_LABELLED_FRACTIONS",
    "H36M_ACTION_TABLE_ORDER",
    "H36M_FIRST_HALF_ACTIONS",
    "H36M_SECOND_HALF_ACTIONS",
    "H36M_HARD_ACTIONS",
    "MPI_INF_3DHP_TRAIN_SUBJECTS",
    "MPI_INF_3DHP_TEST_SUBJECTS",
    "MPI_INF_3DHP_CAMERA_SETS",
    "LabelledSplit",
    "Shard",
    "subject_of",
    "sequence_of",
    "camera_index_of",
    "num_frames_of",
    "fps_of",
    "h36m_action_of",
    "slice_frames",
    "select",
    "h36m_train",
    "h36m_test",
    "h36m_subject_split",
    "subset_frames",
    "vp3d_subset_start",
    "h36m_fraction_split",
    "h36m_action_split",
    "h36m_hard_action_split",
    "stride_frames",
    "downsample",
    "mpi_inf_3dhp_subject_split",
    "select_cameras",
    "shard_indices",
    "shard_dataset",
]

H36M_TRAIN_SUBJECTS = h36m.H36M_TRAIN_SUBJECTS
H36M_TEST_SUBJECTS = h36m.H36M_TEST_SUBJECTS
H36M_FPS = h36m.FPS

#: Subject-wise labelled sets (the other training subjects are unlabelled).
H36M_LABELLED_SUBJECT_SETS: tuple[tuple[str, ...], ...] = (
    ("S1",),
    ("S1", "S5"),
    ("S1", "S5", "S6"),
    ("S1", "S5", "S6", "S7"),
)
#: Labelled fractions of S1 (VideoPose3D ``--subset``): 0.1 %, 1 %, 5 %, 10 %.
H36M_LABELLED_FRACTIONS: tuple[float, ...] = (0.001, 0.01, 0.05, 0.1)

#: The 15 action classes in the column order of the literature's tables (module docstring).
H36M_ACTION_TABLE_ORDER: tuple[str, ...] = (
    "Directions", "Discussion", "Eating", "Greeting", "Phoning", "TakingPhoto", "Posing",
    "Purchases", "Sitting", "SittingDown", "Smoking", "Waiting", "WalkingDog", "Walking",
    "WalkingTogether",
)
H36M_FIRST_HALF_ACTIONS: tuple[str, ...] = H36M_ACTION_TABLE_ORDER[:8]
H36M_SECOND_HALF_ACTIONS: tuple[str, ...] = H36M_ACTION_TABLE_ORDER[8:]
#: Unlabelled in the hard action split.
H36M_HARD_ACTIONS: tuple[str, ...] = ("TakingPhoto", "Purchases", "Sitting", "SittingDown")

MPI_INF_3DHP_TRAIN_SUBJECTS: tuple[str, ...] = tuple(f"S{i}" for i in range(1, 9))
MPI_INF_3DHP_TEST_SUBJECTS: tuple[str, ...] = tuple(f"TS{i}" for i in range(1, 7))
#: Official camera sets (``mpii_get_camera_set``), read-only.
MPI_INF_3DHP_CAMERA_SETS: Mapping[str, tuple[int, ...]] = types.MappingProxyType({
    "vnect": (0, 1, 2, 4, 5, 6, 7, 8),
    "mm3d_chest": (0, 2, 4, 7, 8),
    "relevant": tuple(range(11)),
    "ceiling": (11, 12, 13),
})

# SequenceRecord fields with a leading frame axis.
_RECORD_FRAME_FIELDS = (
    "positions_world", "positions_camera", "keypoints_clean", "keypoints", "confidence",
    "outlier", "visible",
)
# Optional per-frame SequenceRecord fields (None when absent).
_RECORD_OPTIONAL_FRAME_FIELDS = ("valid", "activity")
# Example keys tried, in order, for the frame count.
_EXAMPLE_FRAME_KEYS = ("positions_camera", "positions_world", "keypoints_2d", "valid")


class LabelledSplit(NamedTuple):
    """A semi-supervised training split: items with 3D labels, items used without."""

    labelled: tuple
    unlabelled: tuple


class Shard(NamedTuple):
    """One process's share of a dataset (:func:`shard_indices`).

    Attributes:
      indices: (n_p,) int64 dataset indices, ascending.
      weight: (n_p,) float32, 1 for a real example, 0 for a padding repeat.
    """

    indices: np.ndarray
    weight: np.ndarray


# ----------------------------------------------------------------------- accessors


def _check_item(item: Any, where: str) -> None:
    if not isinstance(item, (multiview_lib.SequenceRecord, Mapping)):
        raise ValueError(
            f"{where}: expected a SequenceRecord or an example dict, got {type(item).__name__}"
        )


def _items(items: Any, name: str = "items") -> tuple:
    if isinstance(items, (Mapping, multiview_lib.SequenceRecord)):
        raise ValueError(f"{name}: expected a sequence of records or example dicts, got a single item")
    out = tuple(items)
    for i, it in enumerate(out):
        _check_item(it, f"{name}[{i}]")
    return out


def subject_of(item) -> str:
    """The item's subject name."""
    _check_item(item, "item")
    if isinstance(item, multiview_lib.SequenceRecord):
        return item.subject
    return text(item.get("subject"), "item['subject']")


def sequence_of(item) -> str:
    """The item's sequence name (a record's ``action``, an example's ``sequence``)."""
    _check_item(item, "item")
    if isinstance(item, multiview_lib.SequenceRecord):
        return item.action
    return text(item.get("sequence"), "item['sequence']")


def camera_index_of(item) -> int:
    _check_item(item, "item")
    if isinstance(item, multiview_lib.SequenceRecord):
        return int(item.camera_index)
    if "camera_index" not in item:
        raise ValueError("item: missing key 'camera_index'")
    return int(np.asarray(item["camera_index"]))


def fps_of(item) -> float:
    _check_item(item, "item")
    if isinstance(item, multiview_lib.SequenceRecord):
        return float(item.fps)
    if "fps" not in item:
        raise ValueError("item: missing key 'fps'")
    return float(np.asarray(item["fps"]))


def num_frames_of(item) -> int:
    _check_item(item, "item")
    if isinstance(item, multiview_lib.SequenceRecord):
        return item.num_frames
    for key in _EXAMPLE_FRAME_KEYS:
        if key in item:
            return int(np.shape(item[key])[0])
    raise ValueError(f"item: no per-frame key; expected one of {_EXAMPLE_FRAME_KEYS}")


def h36m_action_of(item) -> str:
    """The Human3.6M action class (one of ``H36M_ACTION_CLASSES``) of the item."""
    _check_item(item, "item")
    if isinstance(item, multiview_lib.SequenceRecord):
        return h36m.action_class(item.action)
    name = text(item.get("action"), "item['action']")
    if not name:  # An example without an action class: fall back on its sequence name.
        name = text(item.get("sequence"), "item['sequence']")
    return h36m.action_class(name)


def slice_frames(item, index: slice | np.ndarray):
    """The item restricted to frames ``index`` (a slice: views; an index array: copies).

    Records: every per-frame field (``valid`` and ``activity`` when set); ``fps`` is
    unchanged (see :func:`stride_frames`).
    Example dicts: every top-level array with a leading axis (per the schema all of them
    are per-frame; ``camera`` is a dict and scalars have no axis); other entries are
    shared.
    """
    _check_item(item, "item")
    if isinstance(item, multiview_lib.SequenceRecord):
        fields = {f: getattr(item, f)[index] for f in _RECORD_FRAME_FIELDS}
        fields.update({f: getattr(item, f)[index] for f in _RECORD_OPTIONAL_FRAME_FIELDS
                       if getattr(item, f) is not None})
        return item._replace(**fields)
    f = num_frames_of(item)
    out = dict(item)
    for key, value in item.items():
        if isinstance(value, np.ndarray) and value.ndim >= 1:
            if value.shape[0] != f:
                raise ValueError(
                    f"item[{key!r}]: leading axis {value.shape[0]} is not the item's {f} frames"
                )
            out[key] = value[index]
    return out


def _with_fps(item, fps: float):
    if isinstance(item, multiview_lib.SequenceRecord):
        return item._replace(fps=float(fps))
    out = dict(item)
    out["fps"] = np.float32(fps)
    return out


# ---------------------------------------------------------------------- selections


def _name_set(values) -> frozenset | None:
    if values is None:
        return None
    if isinstance(values, str):
        values = (values,)
    return frozenset(str(v) for v in values)


def select(items, *, subjects=None, actions=None, cameras=None) -> tuple:
    """Items whose subject, Human3.6M action class and camera index are in the given sets
    (None: any). ``actions`` are class names (:data:`H36M_ACTION_TABLE_ORDER`)."""
    items = _items(items)
    subj = _name_set(subjects)
    acts = _name_set(actions)
    if acts is not None:
        unknown = sorted(acts - set(h36m.H36M_ACTION_CLASSES))
        if unknown:
            raise ValueError(f"actions: {unknown} are not Human3.6M action classes {h36m.H36M_ACTION_CLASSES}")
    cams = None if cameras is None else frozenset(int(c) for c in cameras)
    return tuple(
        it
        for it in items
        if (subj is None or subject_of(it) in subj)
        and (cams is None or camera_index_of(it) in cams)
        and (acts is None or h36m_action_of(it) in acts)
    )


def h36m_train(items) -> tuple:
    """Items of the Human3.6M training subjects S1, S5, S6, S7, S8."""
    return select(items, subjects=H36M_TRAIN_SUBJECTS)


def h36m_test(items) -> tuple:
    """Items of the Human3.6M test subjects S9, S11."""
    return select(items, subjects=H36M_TEST_SUBJECTS)


def _subject_names(subjects, name: str, allowed: tuple[str, ...]) -> tuple[str, ...]:
    if isinstance(subjects, str):
        subjects = (subjects,)
    out = tuple(dict.fromkeys(str(s) for s in subjects))
    bad = [s for s in out if s not in allowed]
    if bad or not out:
        raise ValueError(f"{name}: expected a non-empty subset of {allowed}, got {tuple(subjects)}")
    return out


def _nonempty(selected: tuple, what: str) -> tuple:
    if not selected:
        raise ValueError(f"items: no sequences of {what}")
    return selected


def h36m_subject_split(items, labelled_subjects=("S1",), *, unlabelled_subjects=None) -> LabelledSplit:
    """Subject-wise semi-supervised split (e.g. one of :data:`H36M_LABELLED_SUBJECT_SETS`).

    Args:
      items: records or examples (any subjects; the test subjects are never selected).
      labelled_subjects: training subjects with 3D labels.
      unlabelled_subjects: default: the other training subjects (S1, S5-S8 minus the
        labelled ones), VideoPose3D's ``-sun`` for its experiments.
    """
    items = _items(items)
    lab = _subject_names(labelled_subjects, "labelled_subjects", H36M_TRAIN_SUBJECTS)
    if unlabelled_subjects is None:
        unl = tuple(s for s in H36M_TRAIN_SUBJECTS if s not in lab)
    else:
        unl = _subject_names(unlabelled_subjects, "unlabelled_subjects", H36M_TRAIN_SUBJECTS)
    if set(lab) & set(unl):
        raise ValueError(f"unlabelled_subjects: {unl} overlaps labelled_subjects {lab}")
    labelled = _nonempty(select(items, subjects=lab), f"subjects {lab}")
    return LabelledSplit(labelled, select(items, subjects=unl) if unl else ())


def _deterministic_random(low: int, high: int, key: str) -> int:
    """VideoPose3D ``common/utils.py`` ``deterministic_random(low, high, key)``."""
    raw = int.from_bytes(hashlib.sha256(key.encode()).digest()[:4], byteorder="little", signed=False)
    return int(raw / (2**32 - 1) * (high - low)) + low


def _check_fraction(fraction) -> float:
    try:
        value = float(fraction)
    except (TypeError, ValueError):
        raise ValueError(f"fraction: expected a number in (0, 1], got {fraction!r}") from None
    if not 0.0 < value <= 1.0 or not math.isfinite(value):
        raise ValueError(f"fraction: expected a number in (0, 1], got {fraction!r}")
    return value


def _check_stride(stride, name: str = "stride") -> int:
    return _check_int(stride, name, minimum=1)


def vp3d_subset_start(num_frames: int, num_kept: int, *, key: str | None = None) -> int:
    """Start frame of the kept chunk: VideoPose3D's ``deterministic_random(0, F - n + 1,
    str(F))`` (``key=None``), or the same hash of ``key``; clamped to ``F - n``."""
    start = _deterministic_random(0, num_frames - num_kept + 1, str(num_frames) if key is None else key)
    return min(start, num_frames - num_kept)


def subset_frames(items, fraction: float, *, stride: int = 1, seed: int | None = None) -> tuple:
    """VideoPose3D's ``--subset``: a contiguous chunk of each item (module docstring).

    Per item of ``F`` frames: ``n = round(F // stride * fraction) * stride``, start
    :func:`vp3d_subset_start` (``seed=None``: keyed on ``str(F)`` as VideoPose3D; an int:
    keyed on ``f"{seed}/{subject}/{sequence}"``), frames ``start, start + stride, ...,
    < start + n``. Items with ``n == 0`` are dropped. ``fraction == 1`` keeps everything
    (VideoPose3D then only downsamples: ``[::stride]``).
    """
    items = _items(items)
    fraction = _check_fraction(fraction)
    stride = _check_stride(stride)
    if seed is not None:
        seed = _check_int(seed, "seed", minimum=0)
    if fraction == 1.0:
        return stride_frames(items, stride) if stride > 1 else items
    out = []
    for it in items:
        f = num_frames_of(it)
        n = int(round(f // stride * fraction) * stride)
        if n == 0:
            continue
        key = None if seed is None else f"{seed}/{subject_of(it)}/{sequence_of(it)}"
        start = vp3d_subset_start(f, n, key=key)
        part = slice_frames(it, slice(start, start + n, stride))
        out.append(_with_fps(part, fps_of(it) / stride) if stride > 1 else part)
    return tuple(out)


def h36m_fraction_split(
    items,
    fraction: float,
    *,
    labelled_subjects=("S1",),
    unlabelled_subjects=None,
    stride: int = 1,
    seed: int | None = None,
) -> LabelledSplit:
    """A labelled fraction of S1 (e.g. one of :data:`H36M_LABELLED_FRACTIONS`).

    Labelled: :func:`subset_frames` of ``labelled_subjects``' items. Unlabelled: the
    other training subjects' items (default S5-S8) whole, downsampled by ``stride`` --
    what VideoPose3D does with ``-str S1 -sun S5,S6,S7,S8 --subset fraction
    --downsample stride``. Raises ``ValueError`` if no labelled frames remain.
    """
    items = _items(items)
    split = h36m_subject_split(items, labelled_subjects, unlabelled_subjects=unlabelled_subjects)
    labelled = _nonempty(
        subset_frames(split.labelled, fraction, stride=stride, seed=seed),
        f"{labelled_subjects} with frames left at fraction={fraction}",
    )
    stride = _check_stride(stride)
    unlabelled = stride_frames(split.unlabelled, stride) if stride > 1 else split.unlabelled
    return LabelledSplit(labelled, unlabelled)


def _action_names(actions, name: str) -> tuple[str, ...]:
    if isinstance(actions, str):
        actions = (actions,)
    out = []
    for a in actions:
        try:
            out.append(h36m.action_class(str(a)))
        except ValueError:
            raise ValueError(f"{name}: {a!r} is not a Human3.6M action class") from None
    out = tuple(dict.fromkeys(out))
    if not out or len(out) == len(h36m.H36M_ACTION_CLASSES):
        raise ValueError(f"{name}: expected a non-empty proper subset of the 15 actions, got {tuple(actions)}")
    return out


def h36m_action_split(items, *, labelled_actions=H36M_FIRST_HALF_ACTIONS,
                      subjects=H36M_TRAIN_SUBJECTS) -> LabelledSplit:
    """Action-wise split: ``labelled_actions`` labelled, the other actions unlabelled.

    Default: the first 8 actions in table order (:data:`H36M_FIRST_HALF_ACTIONS`)
    labelled, the last 7 unlabelled (Li et al. ICCV 2019; module docstring), over the
    training subjects. Names may be classes or file-name variants (``"Photo"``).
    """
    items = _items(items)
    lab = _action_names(labelled_actions, "labelled_actions")
    unl = tuple(a for a in H36M_ACTION_TABLE_ORDER if a not in lab)
    pool = select(items, subjects=subjects)
    return LabelledSplit(
        _nonempty(select(pool, actions=lab), f"actions {lab}"),
        select(pool, actions=unl),
    )


def h36m_hard_action_split(items, *, subjects=H36M_TRAIN_SUBJECTS) -> LabelledSplit:
    """Hard split: TakingPhoto, Purchases, Sitting, SittingDown unlabelled, the other 11
    actions labelled (over the training subjects)."""
    labelled = tuple(a for a in H36M_ACTION_TABLE_ORDER if a not in H36M_HARD_ACTIONS)
    return h36m_action_split(items, labelled_actions=labelled, subjects=subjects)


def stride_frames(items, stride: int) -> tuple:
    """Every ``stride``-th frame from frame 0 (``[::stride]``), ``fps / stride``."""
    items = _items(items)
    stride = _check_stride(stride)
    return tuple(_with_fps(slice_frames(it, slice(None, None, stride)), fps_of(it) / stride) for it in items)


def downsample(items, *, target_fps: float = 10.0, rtol: float = 1e-4) -> tuple:
    """Temporal downsampling to ``target_fps``: :func:`stride_frames` with ``k = fps /
    target_fps`` per item (50 fps -> 10 fps: every 5th frame).

    ``fps / target_fps`` must be an integer to relative tolerance ``rtol`` (a 25 fps
    MPI-INF-3DHP sequence cannot go to 10 fps by dropping frames); otherwise
    ``ValueError`` naming the item.
    """
    items = _items(items)
    if not target_fps > 0 or not math.isfinite(target_fps):
        raise ValueError(f"target_fps: expected a positive number, got {target_fps!r}")
    out = []
    for i, it in enumerate(items):
        ratio = fps_of(it) / target_fps
        k = round(ratio)
        if k < 1 or abs(ratio - k) > rtol * ratio:
            raise ValueError(
                f"items[{i}] ({subject_of(it)} {sequence_of(it)!r}): fps {fps_of(it)} is not an "
                f"integer multiple of target_fps={target_fps}"
            )
        out.append(stride_frames([it], k)[0])
    return tuple(out)


def mpi_inf_3dhp_subject_split(items, labelled_subjects=("S1",)) -> LabelledSplit:
    """MPI-INF-3DHP subject-wise split: ``labelled_subjects`` labelled, the other training
    subjects (S1-S8) unlabelled; test sequences (TS1-TS6) are never selected."""
    items = _items(items)
    lab = _subject_names(labelled_subjects, "labelled_subjects", MPI_INF_3DHP_TRAIN_SUBJECTS)
    unl = tuple(s for s in MPI_INF_3DHP_TRAIN_SUBJECTS if s not in lab)
    return LabelledSplit(
        _nonempty(select(items, subjects=lab), f"subjects {lab}"),
        select(items, subjects=unl),
    )


def select_cameras(items, cameras) -> tuple:
    """Items filmed by ``cameras``: a name of :data:`MPI_INF_3DHP_CAMERA_SETS`
    (``"mm3d_chest"``, ``"vnect"``, ...) or camera indices."""
    if isinstance(cameras, str):
        if cameras not in MPI_INF_3DHP_CAMERA_SETS:
            raise ValueError(f"cameras: unknown camera set {cameras!r}; expected one of {sorted(MPI_INF_3DHP_CAMERA_SETS)}")
        cameras = MPI_INF_3DHP_CAMERA_SETS[cameras]
    return select(items, cameras=cameras)


# ------------------------------------------------------------------------ sharding


def shard_indices(num_examples: int, *, process_index: int, process_count: int,
                  pad_to_equal: bool = False) -> Shard:
    """This process's contiguous block of ``range(num_examples)``.

    Block ``p`` is ``[p q + min(p, r), (p + 1) q + min(p + 1, r))`` with ``q, r =
    divmod(num_examples, process_count)``: the blocks tile the range, so every index is
    on exactly one process. ``pad_to_equal``: blocks shorter than ``ceil(n / P)`` are
    completed by repeating their first index with weight 0, so all processes run the
    same number of steps (multi-host SPMD evaluation needs that); sums weighted by
    ``weight`` are then exact.
    """
    n = _check_int(num_examples, "num_examples", minimum=0)
    pc = _check_int(process_count, "process_count", minimum=1)
    if _check_int(process_index, "process_index", minimum=0) >= pc:
        raise ValueError(f"process_index: expected an int in [0, {pc}), got {process_index!r}")
    q, r = divmod(n, pc)
    p = int(process_index)
    lo, hi = p * q + min(p, r), (p + 1) * q + min(p + 1, r)
    idx = np.arange(lo, hi, dtype=np.int64)
    weight = np.ones(hi - lo, np.float32)
    if pad_to_equal:
        size = -(-n // pc)
        if idx.size < size:
            fill = np.full(size - idx.size, lo if idx.size else 0, np.int64)
            idx = np.concatenate([idx, fill])
            weight = np.concatenate([weight, np.zeros(fill.size, np.float32)])
    return Shard(idx, weight)


def shard_dataset(dataset: grain.MapDataset, *, process_index: int, process_count: int) -> grain.MapDataset:
    """The contiguous block of ``dataset`` that :func:`shard_indices` gives this process
    (a ``grain.MapDataset`` slice; no padding)."""
    if not isinstance(dataset, grain.MapDataset):
        raise ValueError(f"dataset: expected a grain.MapDataset, got {type(dataset).__name__}")
    shard = shard_indices(len(dataset), process_index=process_index, process_count=process_count)
    lo = int(shard.indices[0]) if shard.indices.size else 0
    return dataset[lo : lo + int(shard.indices.size)]
