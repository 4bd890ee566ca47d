"""Training and evaluation data pipelines for the temporal model and single-frame lifters.

Three layers, all in host memory (NumPy), no JAX:

1. :class:`Sequences`: the training sequences (one per subject, action and camera), each
   a :class:`TrainingSequence` with the network inputs in **normalised screen
   coordinates** (:func:`jpose.camera.pixels_to_screen`, optionally with the detector
   confidence as a third feature), the **root-relative** 3D pose in **metres** (camera
   frame, root joint zeroed) and the root **trajectory** in metres. Built from a
   :class:`~jpose.datasets.multiview.MultiViewDataset` by
   :func:`sequences_from_multiview`, from records by :func:`sequences_from_records`, or
   from arrays by :func:`sequences_from_arrays`. The inputs may be in their own joint
   layout (``J_in`` joints of :attr:`Sequences.input_layout`, e.g. COCO detections) and
   the poses in another (``J_out`` of :attr:`Sequences.layout`). Non-finite values are
   rejected here, once, naming the sequence.
2. Example datasets, random-access ``grain.MapDataset`` s whose element ``i`` is a dict
   of NumPy arrays: :func:`temporal_windows` (one example per frame of every sequence,
   with the ``receptive_field``-frame input window around it: VideoPose3D's
   ``ChunkedGenerator`` with ``chunk_length=1``, the 1-frame training form) and
   :func:`single_frames` (for the MLP lifter). Windows are **not** materialised: each
   sequence is edge-padded once and windows are strided views sliced on access, so a
   243-frame model costs the memory of the padded sequences, not 243 x.
   :func:`eval_sequences` gives whole sequences for the model's sequence form.
3. :func:`training_batches`: a random-access :class:`TrainingBatches` where the batch
   at global step ``k`` is a pure function of ``(seed, k)`` (and the dataset and
   settings): ``batch(k)`` returns this process's slice of global batch ``k``. A
   training loop therefore checkpoints only its step, and resume is exact.

Example dicts (``temporal_windows``; ``single_frames`` drops the window and target axes):

* ``inputs``: ``(receptive_field, J_in, C)`` float32, ``C = 2`` (screen x, y) or 3
  (+ confidence in [0, 1]).
* ``poses_3d``: ``(1, J_out, 3)`` float32 metres, root-relative, camera frame, at the
  window's target frame (its centre; causal: its last frame).
* ``trajectory``: ``(1, 3)`` float32 metres, camera-frame root position at that frame.
* ``action``, ``sequence_index``, ``frame_index``: int32 scalars.
* ``camera``: ``(9,)`` float32, only when the sequences carry cameras:
  :func:`jpose.camera.intrinsics9` in screen units (``screen=True``), VideoPose3D's
  layout ``[fx, fy, cx, cy, k1, k2, k3, t0, t1]``.
* ``extrinsics``: ``(12,)`` float32 with the cameras: ``R`` (row-major) then the centre
  ``c`` in metres, ``x_cam = R (x_world - c)``.
* ``confidence``: ``(1, J_in)`` float32 (``(J_in,)`` for single frames) when the
  sequences carry confidences: the detector's per-joint scores at the target frame.

Batches add ``weight`` (float32; 1 for a real example, 0 for padding, see
``drop_remainder``), ``flipped`` (bool, the row is mirrored) and ``example_index`` (int32,
the example's index in the dataset, in ``[0, N)`` also for mirrored rows).

Shuffling: choice and reasons
-----------------------------
The epoch permutations come from NumPy, ``Generator(PCG64(SeedSequence([seed, 1,
epoch]))).permutation(n)`` (``n`` example slots: ``2 N`` with paired flips), not from
``grain.MapDataset.shuffle``. Grain's shuffle is also
random-access and reshuffles per epoch after ``.repeat``, but it seeds epoch ``e`` with
``seed + e``, so run ``seed=1`` replays run ``seed=0`` shifted by one epoch; it also
computes one Feistel index per element in Python, and its stream is an implementation
detail that may change between grain releases. ``SeedSequence`` keys give independent
streams per ``(seed, epoch)``, one vectorised call per epoch (cached), and NumPy's
``PCG64`` bit stream is stable. Grain is used for what it is good at: the example
datasets are ``grain.MapDataset`` s (they compose with ``.map``, ``.slice``,
``.to_iter_dataset``) and :meth:`TrainingBatches.to_grain` /
:meth:`TrainingBatches.grain_iterator` give a prefetching, checkpointable (``get_state``
/ ``set_state``) grain iterator over the batches.

Flip augmentation
-----------------
Two schemes (``training_batches(..., flip_augment=..., flip_mode=...)``):

* ``flip_mode="paired"`` (default), VideoPose3D's ``ChunkedGenerator(augment=True)``,
  whose ``pairs`` list holds every chunk twice, with flip False and with flip True: an
  epoch has ``2 N`` example slots for the ``N`` examples of the dataset. Slot ``i < N``
  is example ``i`` as is, slot ``i >= N`` is example ``i - N`` mirrored; the epoch
  permutation shuffles all ``2 N`` together, so ``steps_per_epoch = 2 N //
  global_batch_size`` (``drop_remainder``; rounded up without), every example is seen
  exactly once as is and once mirrored per epoch (with ``drop_remainder=False``; with
  it, the epoch's last ``2 N mod B`` slots are skipped), and a batch mixes both.
* ``flip_mode="random"``: an epoch has the ``N`` examples; each example of global batch
  ``k`` is mirrored with probability 1/2, decided by
  ``Generator(PCG64(SeedSequence([seed, 2, k]))).random(global_batch_size) < 0.5``
  (entry = position in the global batch).

A flip negates x of ``inputs`` (screen x; channel 0 only, the confidence is kept), of
``poses_3d`` and of ``trajectory``, swaps left and right joints
(:attr:`jpose.skeleton.Skeleton.flip_permutation`: the input layout's for ``inputs``,
the output layout's for ``poses_3d``, VideoPose3D's ``kps_left/kps_right`` and
``joints_left/joints_right``), the same for every frame of the window, and mirrors the
camera (``cx`` and ``t0`` negated, so that projecting the flipped 3D pose with the
flipped camera gives the flipped 2D input); the extrinsics' rotation gets its first row
negated (the mirrored camera frame ``diag(-1, 1, 1) R``, a reflection) and the
confidences move with their joints. Negating screen x mirrors about the image
centre, not the principal point; this is VideoPose3D's convention.

Input and output layouts
------------------------
The 2D inputs may be in another joint layout than the 3D poses, as VideoPose3D feeds
its detectors' keypoints (COCO-17 from Detectron, MPII-16 from the stacked hourglass)
unchanged to a model predicting Human3.6M-17 poses. :attr:`Sequences.input_layout`
names the inputs' layout (None: ``layout``), and :attr:`Sequences.flip_layouts` gives
the ``(input_layout, output_layout)`` pair that ``flip_augment`` takes.
"""

from __future__ import annotations

import abc
import dataclasses
import threading
from typing import Any, Iterator, NamedTuple, Sequence

import grain
import numpy as np

from jpose import camera as camera_lib
from jpose import skeleton as skeleton_lib
from jpose.datasets import multiview as multiview_lib

__all__ = [
    "TrainingSequence",
    "Sequences",
    "sequences_from_multiview",
    "sequences_from_records",
    "sequences_from_arrays",
    "TemporalWindows",
    "SingleFrames",
    "temporal_windows",
    "single_frames",
    "eval_sequences",
    "TrainingBatches",
    "training_batches",
    "MultiViewBatches",
    "multiview_batches",
    "flip_examples",
    "FLIP_MODES",
]

#: ``flip_mode`` values of :func:`training_batches`.
FLIP_MODES = ("paired", "random")
# Seed-stream tags: independent NumPy streams for the shuffle and the flips.
_TAG_SHUFFLE, _TAG_FLIP = 1, 2
#: Batch entries a horizontal flip changes.
_FLIPPED_KEYS = ("inputs", "poses_3d", "trajectory", "camera", "extrinsics", "confidence")
# Indices of cx and t0 in the intrinsics 9-vector: the entries a horizontal flip negates.
_CAMERA_FLIP_ENTRIES = (2, 7)


# ------------------------------------------------------------------------ sequences


class TrainingSequence(NamedTuple):
    """One training sequence of ``F`` frames (one subject, action and camera).

    Attributes:
      inputs: ``(F, J_in, C)`` float32 network inputs: normalised screen coordinates
        ``(x, y)`` (:func:`jpose.camera.pixels_to_screen`), optionally followed by a
        confidence in [0, 1] (``C = 3``).
      poses_3d: ``(F, J_out, 3)`` float32 metres, camera frame, root-relative (the root
        joint is zero).
      trajectory: ``(F, 3)`` float32 metres, the root joint's camera-frame position.
      action: action id (index into :attr:`Sequences.action_names`).
      action_name: the action's name.
      subject: subject name.
      camera_index: camera index in the source dataset's rig (-1 if unknown).
      camera: ``(9,)`` float32 intrinsics in screen units
        (:func:`jpose.camera.intrinsics9` with ``screen=True``), or ``None``.
      extrinsics: ``(12,)`` float32, the world-to-camera rotation ``R`` (row-major, 9)
        then the camera centre ``c`` (metres, world frame): ``x_cam = R (x_world - c)``;
        or ``None``.
      confidence: ``(F, J_in)`` float32 detector confidences in [0, 1] of the inputs'
        joints, or ``None``.
    """

    inputs: np.ndarray
    poses_3d: np.ndarray
    trajectory: np.ndarray
    action: int
    action_name: str
    subject: str
    camera_index: int
    camera: np.ndarray | None = None
    extrinsics: np.ndarray | None = None
    confidence: np.ndarray | None = None

    @property
    def num_frames(self) -> int:
        return int(self.inputs.shape[0])


def _check_finite(x: np.ndarray, what: str) -> None:
    bad = ~np.isfinite(x)
    if bad.any():
        first = tuple(int(i) for i in np.argwhere(bad)[0])
        raise ValueError(f"{what}: contains non-finite values (first at index {first})")


@dataclasses.dataclass(frozen=True, eq=False)
class Sequences:
    """An immutable, list-like collection of :class:`TrainingSequence` (len, [i], iter).

    All sequences share ``J_in``, ``C``, ``J_out`` and whether they carry a camera.
    Arrays are coerced to contiguous float32 and checked once here: every sequence has
    at least one frame, consistent shapes and only finite values; a violation raises
    ``ValueError`` naming the sequence index.

    Attributes:
      items: the sequences.
      action_names: action id -> name (ids index this tuple).
      layout: joint layout of the poses (``J_out`` joints) and, unless ``input_layout``
        says otherwise, of the inputs (:func:`jpose.skeleton.get` name), or None.
      input_layout: joint layout of the inputs (``J_in`` joints) when it differs from
        ``layout``, e.g. ``"coco_17"`` detections lifted to ``h36m_17`` poses; None: the
        same as ``layout``. Stored as the layout's name, and None when it equals
        ``layout``; its joint count must be ``J_in``.
    """

    items: tuple[TrainingSequence, ...]
    action_names: tuple[str, ...] = ()
    layout: str | None = None
    input_layout: str | None = None

    def __post_init__(self):
        items = tuple(self.items)
        if not items:
            raise ValueError("sequences: empty; expected at least one sequence")
        if self.input_layout is not None:
            try:
                skel_in = skeleton_lib.get(self.input_layout)
            except (KeyError, ValueError, TypeError) as e:
                raise ValueError(f"input_layout: {e}") from None
            if _known_layout(self.layout) == skel_in.name:
                object.__setattr__(self, "input_layout", None)
            else:
                object.__setattr__(self, "input_layout", skel_in.name)
        coerced = []
        ref = None
        for i, s in enumerate(items):
            if not isinstance(s, TrainingSequence):
                raise ValueError(f"sequences[{i}]: expected a TrainingSequence, got {type(s).__name__}")
            inputs = np.ascontiguousarray(s.inputs, np.float32)
            poses = np.ascontiguousarray(s.poses_3d, np.float32)
            traj = np.ascontiguousarray(s.trajectory, np.float32)
            cam = None if s.camera is None else np.ascontiguousarray(s.camera, np.float32)
            if inputs.ndim != 3 or inputs.shape[-1] not in (2, 3):
                raise ValueError(f"sequences[{i}].inputs: expected shape (F, J_in, 2 or 3), got {inputs.shape}")
            f = inputs.shape[0]
            if f < 1:
                raise ValueError(f"sequences[{i}]: has no frames")
            if poses.ndim != 3 or poses.shape[0] != f or poses.shape[-1] != 3:
                raise ValueError(f"sequences[{i}].poses_3d: expected shape ({f}, J_out, 3), got {poses.shape}")
            if traj.shape != (f, 3):
                raise ValueError(f"sequences[{i}].trajectory: expected shape ({f}, 3), got {traj.shape}")
            if cam is not None and cam.shape != (9,):
                raise ValueError(f"sequences[{i}].camera: expected shape (9,) or None, got {cam.shape}")
            ext = None if s.extrinsics is None else np.ascontiguousarray(s.extrinsics, np.float32)
            if ext is not None and ext.shape != (12,):
                raise ValueError(f"sequences[{i}].extrinsics: expected shape (12,) or None, got {ext.shape}")
            conf = None if s.confidence is None else np.ascontiguousarray(s.confidence, np.float32)
            if conf is not None and conf.shape != inputs.shape[:2]:
                raise ValueError(f"sequences[{i}].confidence: expected shape {inputs.shape[:2]} "
                                 f"(F, J_in) or None, got {conf.shape}")
            sig = (inputs.shape[1:], poses.shape[1:], cam is None, ext is None, conf is None)
            if ref is None:
                ref = sig
            elif sig != ref:
                raise ValueError(
                    f"sequences[{i}]: (J_in, C), (J_out, 3), no camera, no extrinsics, no "
                    f"confidence = {sig} differs from "
                    f"sequence 0's {ref}; all sequences must agree"
                )
            if self.input_layout is not None and inputs.shape[1] != skel_in.num_joints:
                raise ValueError(
                    f"sequences[{i}].inputs: {inputs.shape[1]} joints but input_layout "
                    f"{skel_in.name!r} has {skel_in.num_joints}"
                )
            _check_finite(inputs, f"sequences[{i}].inputs")
            _check_finite(poses, f"sequences[{i}].poses_3d")
            _check_finite(traj, f"sequences[{i}].trajectory")
            for name, a in (("camera", cam), ("extrinsics", ext), ("confidence", conf)):
                if a is not None:
                    _check_finite(a, f"sequences[{i}].{name}")
            if int(s.action) < 0:
                raise ValueError(f"sequences[{i}].action: expected a non-negative id, got {s.action}")
            if self.action_names and int(s.action) >= len(self.action_names):
                raise ValueError(
                    f"sequences[{i}].action: id {s.action} out of range for "
                    f"{len(self.action_names)} action_names"
                )
            coerced.append(
                s._replace(
                    inputs=inputs,
                    poses_3d=poses,
                    trajectory=traj,
                    camera=cam,
                    extrinsics=ext,
                    confidence=conf,
                    action=int(s.action),
                    camera_index=int(s.camera_index),
                )
            )
        object.__setattr__(self, "items", tuple(coerced))
        object.__setattr__(self, "action_names", tuple(str(a) for a in self.action_names))

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index):
        if isinstance(index, slice):
            return dataclasses.replace(self, items=self.items[index])
        return self.items[index]

    def __iter__(self) -> Iterator[TrainingSequence]:
        return iter(self.items)

    @property
    def lengths(self) -> tuple[int, ...]:
        """Frames per sequence."""
        return tuple(s.num_frames for s in self.items)

    @property
    def num_frames(self) -> int:
        """Total frames over all sequences."""
        return sum(self.lengths)

    @property
    def num_joints_in(self) -> int:
        return int(self.items[0].inputs.shape[1])

    @property
    def in_features(self) -> int:
        return int(self.items[0].inputs.shape[2])

    @property
    def num_joints_out(self) -> int:
        return int(self.items[0].poses_3d.shape[1])

    @property
    def has_cameras(self) -> bool:
        return self.items[0].camera is not None

    @property
    def flip_layouts(self) -> tuple[str, str]:
        """``(input layout, output layout)``, the ``flip_augment`` argument of
        :func:`training_batches` that mirrors these sequences' inputs and poses.

        Raises ``ValueError`` when ``layout`` is None (the left/right joints are unknown).
        """
        if self.layout is None:
            raise ValueError(
                "sequences: layout is None, so the left/right joints are unknown; pass "
                "flip_augment=(input_layout, output_layout) explicitly"
            )
        return (self.layout if self.input_layout is None else self.input_layout, self.layout)


def sequences_from_arrays(
    inputs: Sequence[np.ndarray],
    poses_3d: Sequence[np.ndarray],
    trajectory: Sequence[np.ndarray] | None = None,
    *,
    actions: Sequence[int] | None = None,
    action_names: Sequence[str] = (),
    subjects: Sequence[str] | None = None,
    cameras: Sequence[np.ndarray] | None = None,
    layout: str | None = None,
    input_layout: str | None = None,
) -> Sequences:
    """:class:`Sequences` from per-sequence arrays (already in the conventions above).

    Args:
      inputs: per sequence ``(F_i, J_in, C)`` network inputs (screen coordinates).
      poses_3d: per sequence ``(F_i, J_out, 3)`` metres, root-relative.
      trajectory: per sequence ``(F_i, 3)`` metres; None: zeros.
      actions: action id per sequence; None: all 0.
      action_names: action id -> name; empty: names are ``str(id)``.
      subjects: subject per sequence; None: ``""``.
      cameras: ``(9,)`` screen-unit intrinsics per sequence, or None.
      layout: joint layout name (of the poses, and of the inputs unless
        ``input_layout`` is given), or None.
      input_layout: joint layout name of the inputs when it differs from ``layout``.
    """
    n = len(inputs)
    for name, seq in (("poses_3d", poses_3d), ("trajectory", trajectory), ("actions", actions),
                      ("subjects", subjects), ("cameras", cameras)):
        if seq is not None and len(seq) != n:
            raise ValueError(f"{name}: expected {n} entries (one per sequence), got {len(seq)}")
    items = []
    for i in range(n):
        f = np.shape(inputs[i])[0] if np.ndim(inputs[i]) else 0
        a = 0 if actions is None else int(actions[i])
        items.append(
            TrainingSequence(
                inputs=inputs[i],
                poses_3d=poses_3d[i],
                trajectory=np.zeros((f, 3), np.float32) if trajectory is None else trajectory[i],
                action=a,
                action_name=action_names[a] if a < len(action_names) else str(a),
                subject="" if subjects is None else str(subjects[i]),
                camera_index=-1,
                camera=None if cameras is None else cameras[i],
            )
        )
    return Sequences(items=tuple(items), action_names=tuple(action_names), layout=layout,
                     input_layout=input_layout)


def sequences_from_multiview(
    dataset: multiview_lib.MultiViewDataset,
    split: str | Sequence[multiview_lib.SequenceRecord],
    *,
    use_clean_2d: bool = False,
    with_confidence: bool = False,
    with_cameras: bool = True,
) -> Sequences:
    """Training sequences of a multi-view dataset's split (see :func:`sequences_from_records`).

    Args:
      dataset: the source dataset (its ``actions`` give the action ids, its ``layout``
        the root joint).
      split: ``"labelled"``, ``"unlabelled"``, ``"test"`` or a tuple of the dataset's
        records.
    """
    records = dataset.split(split) if isinstance(split, str) else tuple(split)
    what = f"split {split!r}" if isinstance(split, str) else "split records"
    return sequences_from_records(
        records, layout=dataset.layout, actions=dataset.actions, use_clean_2d=use_clean_2d,
        with_confidence=with_confidence, with_cameras=with_cameras, what=what)


#: Input normalisations of :func:`sequences_from_records`.
NORMALISATIONS = ("screen", "focal")


def sequences_from_records(
    records: Sequence[multiview_lib.SequenceRecord],
    *,
    layout: str,
    actions: Sequence[str] | None = None,
    use_clean_2d: bool = False,
    with_confidence: bool = False,
    with_cameras: bool = True,
    normalisation: str = "screen",
    screen_focal: float | None = None,
    what: str = "records",
) -> Sequences:
    """Training sequences from :class:`~jpose.datasets.multiview.SequenceRecord` s.

    Any source that produces records (the multi-view generator, the Human3.6M readers)
    goes through here. Per record: ``inputs = pixels_to_screen(keypoints,
    camera.image_size)`` (the noisy detections, or ``keypoints_clean`` with
    ``use_clean_2d``), with ``with_confidence`` the record's ``confidence`` appended as
    feature 2 (ones with ``use_clean_2d``: exact keypoints are fully trusted);
    ``trajectory = positions_camera[:, root]`` and ``poses_3d = positions_camera -
    trajectory`` (root joint zeroed), metres; ``camera = intrinsics9(record.camera,
    screen=True)`` with ``with_cameras``.

    Detections in their own layout (``record.keypoints_layout`` set, e.g. VideoPose3D's
    COCO or MPII files) stay in it, as VideoPose3D feeds them: the inputs then have that
    layout's ``J_in`` joints, the poses ``layout``'s ``J_out``, and the result's
    ``input_layout`` names it (see :attr:`Sequences.flip_layouts` for flip augmentation).
    All records must agree on it. ``keypoints_clean`` is in ``layout``, so
    ``use_clean_2d`` inputs always are.

    ``normalisation="focal"`` (models trained over many cameras) replaces the screen
    coordinates by :func:`jpose.camera.pixels_to_focal_units` with ``screen_focal``, and
    ``camera`` by :func:`jpose.camera.focal_units_intrinsics9` in the same units.

    Args:
      records: the sequences.
      layout: their 3D joint layout (gives the root joint).
      actions: action names defining the action ids (default: sorted names in
        ``records``).
      normalisation: ``"screen"`` (VideoPose3D) or ``"focal"``.
      screen_focal: the scale of ``"focal"`` (required there).
    """
    if normalisation not in NORMALISATIONS:
        raise ValueError(f"normalisation: {normalisation!r}; expected one of {NORMALISATIONS}")
    if normalisation == "focal" and not (screen_focal and screen_focal > 0):
        raise ValueError(f"screen_focal: the 'focal' normalisation needs a positive scale, "
                         f"got {screen_focal!r}")
    records = tuple(records)
    for i, r in enumerate(records):
        if not isinstance(r, multiview_lib.SequenceRecord):
            raise ValueError(f"records[{i}]: expected a SequenceRecord, got {type(r).__name__}")
    if not records:
        raise ValueError(f"records: {what} has no sequences")
    skel = skeleton_lib.get(layout)
    root = skel.root
    actions = tuple(sorted({r.action for r in records})) if actions is None else tuple(actions)
    # The inputs' layout: each record's keypoints_layout (None = the 3D layout).
    input_names = []
    for i, r in enumerate(records):
        name = skel.name
        if not use_clean_2d and r.keypoints_layout is not None:
            try:
                kp_skel = skeleton_lib.get(r.keypoints_layout)
            except (KeyError, ValueError, TypeError) as e:
                raise ValueError(f"records[{i}].keypoints_layout: {e}") from None
            name = kp_skel.name
            if np.shape(r.keypoints)[-2:] != (kp_skel.num_joints, 2):
                raise ValueError(
                    f"records[{i}].keypoints: shape {np.shape(r.keypoints)} does not fit "
                    f"keypoints_layout {name!r} ({kp_skel.num_joints} joints)"
                )
        input_names.append(name)
    if len(set(input_names)) > 1:
        first = next(i for i, n in enumerate(input_names) if n != input_names[0])
        raise ValueError(
            f"records[{first}]: keypoints in layout {input_names[first]!r} but records[0]'s "
            f"are in {input_names[0]!r}; all records must share one keypoints layout"
        )
    items = []
    for i, r in enumerate(records):
        if r.action not in actions:
            raise ValueError(f"records[{i}].action: {r.action!r} is not one of the actions {actions}")
        kp = r.keypoints_clean if use_clean_2d else r.keypoints
        if normalisation == "focal":
            screen = np.asarray(camera_lib.pixels_to_focal_units(
                kp, r.camera.focal, r.camera.principal, screen_focal), np.float32)
        else:
            screen = np.asarray(camera_lib.pixels_to_screen(kp, r.camera.image_size), np.float32)
        if with_confidence:
            conf = np.ones(kp.shape[:-1], np.float32) if use_clean_2d else np.asarray(r.confidence, np.float32)
            if conf.shape != kp.shape[:-1]:
                raise ValueError(
                    f"records[{i}].confidence: shape {conf.shape} does not match the "
                    f"keypoints' {kp.shape[:-1]}"
                )
            screen = np.concatenate([screen, conf[..., None]], axis=-1)
        cam_pos = np.asarray(r.positions_camera, np.float32)
        traj = cam_pos[:, root, :]
        items.append(
            TrainingSequence(
                inputs=screen,
                poses_3d=cam_pos - traj[:, None, :],
                trajectory=traj,
                action=actions.index(r.action),
                action_name=r.action,
                subject=r.subject,
                camera_index=int(r.camera_index),
                camera=(
                    np.asarray(camera_lib.intrinsics9(r.camera, screen=True)
                               if normalisation == "screen" else
                               camera_lib.focal_units_intrinsics9(r.camera, screen_focal),
                               np.float32)
                    if with_cameras
                    else None
                ),
                extrinsics=(
                    np.concatenate([np.asarray(r.camera.rotation, np.float32).reshape(9),
                                    np.asarray(r.camera.centre, np.float32).reshape(3)])
                    if with_cameras
                    else None
                ),
                confidence=(np.ones(kp.shape[:-1], np.float32) if use_clean_2d
                            else np.asarray(r.confidence, np.float32)),
            )
        )
    return Sequences(items=tuple(items), action_names=actions, layout=layout,
                     input_layout=input_names[0])


# ------------------------------------------------------------------- example datasets


class _FrameExamples(grain.MapDataset):
    """Random-access per-frame examples over :class:`Sequences` (common part).

    Example ``i`` is frame ``i - offsets[s]`` of sequence ``s``, in sequence then frame
    order. As grain's own sources do, indices wrap modulo ``len(self)`` (so grain's
    ``repeat`` composes).
    """

    def __init__(self, sequences: Sequences):
        super().__init__()
        if not isinstance(sequences, Sequences):
            raise ValueError(f"sequences: expected a Sequences, got {type(sequences).__name__}")
        self._sequences = sequences
        lengths = np.asarray(sequences.lengths, np.int64)
        self._offsets = np.concatenate([np.zeros(1, np.int64), np.cumsum(lengths)])
        self._poses = np.concatenate([s.poses_3d for s in sequences], axis=0)
        self._trajectory = np.concatenate([s.trajectory for s in sequences], axis=0)
        self._actions = np.asarray([s.action for s in sequences], np.int32)
        self._cameras = (
            np.stack([s.camera for s in sequences], axis=0) if sequences.has_cameras else None
        )
        first = sequences[0]
        self._extrinsics = (None if first.extrinsics is None else
                            np.stack([s.extrinsics for s in sequences], axis=0))
        self._confidence = (None if first.confidence is None else
                            np.concatenate([s.confidence for s in sequences], axis=0))

    @property
    def sequences(self) -> Sequences:
        return self._sequences

    def __len__(self) -> int:
        return int(self._offsets[-1])

    def _locate(self, indices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        seq = np.searchsorted(self._offsets, indices, side="right") - 1
        return seq, indices - self._offsets[seq]

    def _as_indices(self, indices) -> np.ndarray:
        idx = np.asarray(indices)
        if idx.ndim != 1 or not (np.issubdtype(idx.dtype, np.integer) or idx.size == 0):
            raise ValueError(f"indices: expected a 1-D integer array, got shape {idx.shape} dtype {idx.dtype}")
        return idx.astype(np.int64) % len(self)

    @abc.abstractmethod
    def _inputs(self, indices: np.ndarray, seq: np.ndarray) -> np.ndarray:
        """Network inputs of examples ``indices`` (of sequences ``seq``), stacked."""

    def _targets(self, indices: np.ndarray, seq: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return self._poses[indices], self._trajectory[indices]

    def gather(self, indices) -> dict[str, np.ndarray]:
        """Examples ``indices`` stacked along a new leading axis (vectorised).

        Returns fresh arrays (never views of the stored data).
        """
        idx = self._as_indices(indices)
        seq, frame = self._locate(idx)
        return self._assemble(idx, seq, frame, self._inputs(idx, seq))

    def _assemble(self, idx, seq, frame, inputs) -> dict[str, np.ndarray]:
        poses, traj = self._targets(idx, seq)
        out = {
            "inputs": inputs,
            "poses_3d": poses,
            "trajectory": traj,
            "action": self._actions[seq],
            "sequence_index": seq.astype(np.int32),
            "frame_index": frame.astype(np.int32),
        }
        if self._cameras is not None:
            out["camera"] = self._cameras[seq]
        if self._extrinsics is not None:
            out["extrinsics"] = self._extrinsics[seq]
        if self._confidence is not None:
            conf = self._confidence[idx]  # at the target frame, shaped like poses_3d's joints
            out["confidence"] = conf.reshape(poses.shape[:-2] + conf.shape[-1:])
        return out

    def _gather_flipped(self, indices, flip: np.ndarray, perm_in, perm_out) -> dict[str, np.ndarray]:
        """``gather(indices)`` with examples ``flip`` mirrored (training flip augmentation)."""
        out = self.gather(indices)
        _flip_rows(out, np.flatnonzero(flip), perm_in, perm_out)
        return out

    def __getitem__(self, index):
        if isinstance(index, slice):
            return self.slice(index)
        return {k: v[0] for k, v in self.gather(np.asarray([index], np.int64)).items()}


def _window_view(flat: np.ndarray, rf: int) -> np.ndarray:
    """Read-only strided view ``(rows - rf + 1, rf, J, C)``: row ``r`` = ``flat[r:r + rf]``.

    Built per call (cheap) rather than stored, so pickling a dataset never materialises it.
    """
    return np.lib.stride_tricks.as_strided(
        flat,
        shape=(flat.shape[0] - rf + 1, rf) + flat.shape[1:],
        strides=(flat.strides[0],) + flat.strides,
        writeable=False,
    )


class TemporalWindows(_FrameExamples):
    """Per-frame training windows of the temporal model (see :func:`temporal_windows`).

    Memory: the edge-padded inputs (``num_frames + num_sequences * (rf - 1)`` frames),
    plus, once a flip-augmented batch is requested, a mirrored copy of them (so mirrored
    windows are gathered as fast as plain ones instead of being permuted per batch).
    """

    def __init__(self, sequences: Sequences, *, receptive_field: int, padding: tuple[int, int]):
        super().__init__(sequences)
        self._receptive_field = int(receptive_field)
        self._padding = (int(padding[0]), int(padding[1]))
        left, right = self._padding
        # Each sequence is edge-padded once (the sequence form's padding) and stored back
        # to back; example i's window then starts at flat row i + s * (left + right).
        self._padded = np.concatenate(
            [np.pad(s.inputs, ((left, right), (0, 0), (0, 0)), mode="edge") for s in sequences], axis=0
        )
        self._padded.setflags(write=False)
        self._lock = threading.Lock()
        self._mirror_key = None  # bytes of the input flip permutation of _both
        self._both = None  # [padded; mirrored padded], (2 P, J, C)

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_padded"] = np.ascontiguousarray(self._padded)
        state.update(_lock=None, _mirror_key=None, _both=None)
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._lock = threading.Lock()

    @property
    def receptive_field(self) -> int:
        return self._receptive_field

    @property
    def padding(self) -> tuple[int, int]:
        return self._padding

    @property
    def padded_inputs(self) -> np.ndarray:
        """``(P, J_in, C)`` read-only: every sequence's inputs edge-padded by ``padding``,
        back to back. Example ``i``'s window is ``padded_inputs[s:s + rf]`` with
        ``s = window_starts([i])[0]`` (for gathering windows on the device instead)."""
        return self._padded

    def window_starts(self, indices) -> np.ndarray:
        """(B,) int64 rows of :attr:`padded_inputs` where examples ``indices`` start."""
        idx = self._as_indices(indices)
        seq, _ = self._locate(idx)
        return idx + seq * (self._padding[0] + self._padding[1])

    def __str__(self) -> str:
        return (
            f"TemporalWindows(num_examples={len(self)}, receptive_field={self._receptive_field}, "
            f"padding={self._padding})"
        )

    def _inputs(self, indices, seq):
        starts = indices + seq * (self._padding[0] + self._padding[1])
        return _window_view(self._padded, self._receptive_field)[starts]

    def _mirrored(self, perm_in: np.ndarray) -> np.ndarray:
        key = perm_in.tobytes()
        with self._lock:
            if self._mirror_key != key:
                padded = self._padded
                p = padded.shape[0]
                both = np.empty((2 * p,) + padded.shape[1:], padded.dtype)
                both[:p] = padded
                np.take(padded, perm_in, axis=1, out=both[p:])
                both[p:, :, 0] = -both[p:, :, 0]
                both.setflags(write=False)
                # Keep one copy of the plain frames: _padded becomes a view into _both.
                self._both, self._padded, self._mirror_key = both, both[:p], key
            return self._both

    def _gather_flipped(self, indices, flip, perm_in, perm_out):
        rows = np.flatnonzero(flip)
        if rows.size == 0:
            return self.gather(indices)
        both = self._mirrored(perm_in)
        idx = self._as_indices(indices)
        seq, frame = self._locate(idx)
        starts = idx + seq * (self._padding[0] + self._padding[1])
        # A mirrored window starts at the same row of the mirrored half.
        starts = np.where(flip, starts + both.shape[0] // 2, starts)
        out = self._assemble(idx, seq, frame, _window_view(both, self._receptive_field)[starts])
        _flip_rows(out, rows, perm_in, perm_out, inputs=False)
        return out

    def _targets(self, indices, seq):
        poses, traj = super()._targets(indices, seq)
        return poses[:, None], traj[:, None]


class SingleFrames(_FrameExamples):
    """Single-frame examples for the MLP lifter (see :func:`single_frames`)."""

    def __init__(self, sequences: Sequences):
        super().__init__(sequences)
        self._flat_inputs = np.concatenate([s.inputs for s in sequences], axis=0)

    def __str__(self) -> str:
        return f"SingleFrames(num_examples={len(self)})"

    def _inputs(self, indices, seq):
        return self._flat_inputs[indices]


def _check_int(value, name: str, *, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name}: expected an int >= {minimum}, got {value!r}")
    return int(value)


def temporal_windows(
    sequences: Sequences,
    *,
    receptive_field: int,
    padding: tuple[int, int] | None = None,
    causal: bool = False,
) -> TemporalWindows:
    """Per-frame training windows (VideoPose3D's 1-frame training form), random access.

    Example ``i`` is frame ``f`` of sequence ``s`` (sequence-major order). Its ``inputs``
    are frames ``f - left ... f + right`` of the sequence edge-padded by ``padding =
    (left, right)`` (edge frames replicated), exactly what the model's sequence form sees
    for output frame ``f``; ``poses_3d`` ``(1, J_out, 3)`` and ``trajectory`` ``(1, 3)``
    are at frame ``f``, which is window position ``left`` (the centre; causal: the last).

    Args:
      sequences: the training sequences.
      receptive_field: window length in frames (``TemporalConfig.receptive_field``).
      padding: ``(left, right)`` frames (``TemporalConfig.padding``); must satisfy
        ``left + right + 1 == receptive_field``. None: ``(rf // 2, rf // 2)`` (odd ``rf``),
        or ``(rf - 1, 0)`` with ``causal``.
      causal: the model sees only past frames; then ``right`` must be 0.
    """
    rf = _check_int(receptive_field, "receptive_field", minimum=1)
    if padding is None:
        if causal:
            padding = (rf - 1, 0)
        elif rf % 2 == 1:
            padding = (rf // 2, rf // 2)
        else:
            raise ValueError(
                f"receptive_field: {rf} is even; a centred window needs an odd receptive field "
                f"(or pass padding=(left, right) explicitly)"
            )
    try:
        left, right = (int(p) for p in padding)
    except (TypeError, ValueError):
        raise ValueError(f"padding: expected (left, right) non-negative ints, got {padding!r}") from None
    if left < 0 or right < 0:
        raise ValueError(f"padding: expected (left, right) non-negative ints, got {padding!r}")
    if left + right + 1 != rf:
        raise ValueError(
            f"padding: {padding} does not match receptive_field={rf}; expected "
            f"left + right + 1 == receptive_field"
        )
    if causal and right != 0:
        raise ValueError(f"padding: a causal model pads only on the left, got {padding}")
    return TemporalWindows(sequences, receptive_field=rf, padding=(left, right))


def single_frames(sequences: Sequences) -> SingleFrames:
    """Single-frame examples: ``inputs (J_in, C)``, ``poses_3d (J_out, 3)``,
    ``trajectory (3,)``, ``action``, ``sequence_index``, ``frame_index`` (+ ``camera``)."""
    return SingleFrames(sequences)


class _WholeSequences:
    """Random-access source of whole sequences (one dict per sequence)."""

    def __init__(self, sequences: Sequences):
        self._sequences = sequences

    def __len__(self) -> int:
        return len(self._sequences)

    def __getitem__(self, index: int) -> dict[str, Any]:
        s = self._sequences[index]
        out = {
            "inputs": s.inputs,
            "poses_3d": s.poses_3d,
            "trajectory": s.trajectory,
            "action": np.int32(s.action),
            "action_name": s.action_name,
            "subject": s.subject,
            "camera_index": np.int32(s.camera_index),
            "sequence_index": np.int32(index),
        }
        if s.camera is not None:
            out["camera"] = s.camera
        return out


def eval_sequences(sequences: Sequences) -> grain.MapDataset:
    """Whole sequences for evaluation with the model's sequence form, one per element.

    Element ``i`` (a dict): ``inputs (F_i, J_in, C)``, ``poses_3d (F_i, J_out, 3)``
    metres root-relative, ``trajectory (F_i, 3)`` metres, ``action`` (int32),
    ``action_name``, ``subject`` (str), ``camera_index``, ``sequence_index`` (int32) and
    ``camera (9,)`` when present. Arrays are the stored ones: do not modify them.
    """
    if not isinstance(sequences, Sequences):
        raise ValueError(f"sequences: expected a Sequences, got {type(sequences).__name__}")
    return grain.MapDataset.source(_WholeSequences(sequences))


# --------------------------------------------------------------------------- flips


def _permutation(layout, num_joints: int | None, what: str) -> np.ndarray:
    try:
        skel = skeleton_lib.get(layout)
    except (KeyError, ValueError, TypeError) as e:
        raise ValueError(f"flip_augment: {e}") from None
    if num_joints is not None and skel.num_joints != num_joints:
        raise ValueError(
            f"flip_augment: layout {skel.name!r} has {skel.num_joints} joints but the {what} "
            f"have {num_joints}"
        )
    return np.asarray(skel.flip_permutation, np.int64)


def _resolve_flip(flip, num_in: int | None, num_out: int | None, *, expected=(None, None)):
    """``flip_augment`` -> (input permutation, output permutation) or None.

    ``expected``: the (input, output) layout names the data is in (None: unknown); a
    flip layout naming another layout raises, even with the same joint count (COCO and
    Human3.6M both have 17 joints but different left/right pairs)."""
    if flip is None:
        return None
    if isinstance(flip, (tuple, list)):
        if len(flip) != 2:
            raise ValueError(f"flip_augment: expected a layout or (input_layout, output_layout), got {flip!r}")
        layout_in, layout_out = flip
    else:
        layout_in = layout_out = flip
    perms = (
        _permutation(layout_in, num_in, "inputs"),
        None if layout_out is None else _permutation(layout_out, num_out, "poses_3d"),
    )
    for what, given, want in (("inputs", layout_in, expected[0]), ("poses_3d", layout_out, expected[1])):
        if given is not None and want is not None and skeleton_lib.get(given).name != want:
            raise ValueError(
                f"flip_augment: the {what} are in layout {want!r} but would be mirrored as "
                f"{skeleton_lib.get(given).name!r}; pass flip_augment=sequences.flip_layouts "
                f"({expected[0]!r}, {expected[1]!r})"
            )
    return perms


def _known_layout(layout) -> str | None:
    """The jpose name of ``layout``, or None if it is None or not a known layout."""
    if layout is None:
        return None
    try:
        return skeleton_lib.get(layout).name
    except (KeyError, ValueError, TypeError):
        return None


def _flip_rows(batch: dict[str, np.ndarray], rows: np.ndarray, perm_in, perm_out, *, inputs=True) -> None:
    """In place: mirror examples ``rows`` of ``batch`` (see the module docstring);
    ``inputs=False`` leaves ``inputs`` alone (already gathered mirrored)."""
    if rows.size == 0:
        return
    # np.take along the joint axis, not x[..., perm, :]: NumPy's fancy indexing of an
    # inner axis is ~15x slower (36 vs 2.6 ms for 512 windows of 243 x 17 x 2).
    if inputs and "inputs" in batch:
        x = np.take(batch["inputs"][rows], perm_in, axis=-2)
        x[..., 0] = -x[..., 0]
        batch["inputs"][rows] = x
    if "poses_3d" in batch:
        p = batch["poses_3d"][rows]
        if perm_out is not None:
            p = np.take(p, perm_out, axis=-2)
        p[..., 0] = -p[..., 0]
        batch["poses_3d"][rows] = p
    if "trajectory" in batch:
        batch["trajectory"][rows, ..., 0] = -batch["trajectory"][rows, ..., 0]
    if "camera" in batch:
        for e in _CAMERA_FLIP_ENTRIES:
            batch["camera"][rows, e] = -batch["camera"][rows, e]
    if "confidence" in batch:
        batch["confidence"][rows] = np.take(batch["confidence"][rows], perm_in, axis=-1)
    if "extrinsics" in batch:
        # The mirrored camera frame is diag(-1, 1, 1) x_cam: the rotation's first row
        # negated (a reflection, det -1), the centre unchanged.
        batch["extrinsics"][rows, :3] = -batch["extrinsics"][rows, :3]


def flip_examples(batch: dict[str, np.ndarray], flip, *, layout, output_layout=None) -> dict[str, np.ndarray]:
    """Horizontally mirrors the examples of ``batch`` where ``flip`` (B,) is True.

    Same operation as the training flip augmentation (module docstring); returns a new
    dict (arrays copied), ``batch`` is unchanged. ``layout`` gives the input joints'
    left/right pairs and ``output_layout`` (default: ``layout``) those of ``poses_3d``.
    """
    flip = np.asarray(flip, bool)
    if flip.ndim != 1:
        raise ValueError(f"flip: expected a (B,) bool array, got shape {flip.shape}")
    out = {k: np.array(v, copy=True) for k, v in batch.items()}
    for k, v in out.items():
        if k in _FLIPPED_KEYS and v.shape[:1] != flip.shape:
            raise ValueError(f"batch[{k!r}]: leading axis {v.shape[:1]} does not match flip {flip.shape}")
    perm_in, perm_out = _resolve_flip(
        (layout, layout if output_layout is None else output_layout),
        out["inputs"].shape[-2] if "inputs" in out else None,
        out["poses_3d"].shape[-2] if "poses_3d" in out else None,
    )
    _flip_rows(out, np.flatnonzero(flip), perm_in, perm_out)
    return out


# -------------------------------------------------------------------------- batches


@dataclasses.dataclass(frozen=True, eq=False)
class TrainingBatches:
    """Random-access training batches: batch ``k`` of the run is a function of (seed, k).

    Built by :func:`training_batches` (see there for the arguments). The step ``k``
    counts batches from the start of the run across epochs: epoch ``k //
    steps_per_epoch``, position ``k % steps_per_epoch`` in that epoch's permutation.

    An epoch permutes the example slots ``[0, num_examples)``. With paired flips
    (``flip_mode="paired"``) there are ``2 N`` slots for the ``N = len(dataset)``
    examples: slot ``i < N`` is example ``i`` as is, slot ``i >= N`` example ``i - N``
    mirrored; otherwise slot ``i`` is example ``i``.
    """

    dataset: grain.MapDataset
    global_batch_size: int
    seed: int
    shuffle: bool
    num_epochs: int | None
    process_index: int
    process_count: int
    drop_remainder: bool
    flip_permutations: tuple[np.ndarray, np.ndarray | None] | None
    flip_mode: str = "paired"
    _cache: dict = dataclasses.field(default_factory=dict, repr=False, compare=False)
    _lock: Any = dataclasses.field(default_factory=threading.Lock, repr=False, compare=False)

    def __getstate__(self):
        # The lock cannot be pickled (grain's multiprocessing pickles the pipeline).
        state = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        state.update(_cache={}, _lock=None)
        return state

    def __setstate__(self, state):
        state.update(_lock=threading.Lock())
        for k, v in state.items():
            object.__setattr__(self, k, v)

    @property
    def paired_flips(self) -> bool:
        """True when every example is seen as is and mirrored each epoch (VideoPose3D)."""
        return self.flip_permutations is not None and self.flip_mode == "paired"

    @property
    def num_examples(self) -> int:
        """Example slots per epoch: ``2 * len(dataset)`` with paired flips, else
        ``len(dataset)``."""
        return len(self.dataset) * (2 if self.paired_flips else 1)

    @property
    def steps_per_epoch(self) -> int:
        n, b = self.num_examples, self.global_batch_size
        return n // b if self.drop_remainder else -(-n // b)

    @property
    def num_steps(self) -> int | None:
        """Total steps of the run; None if it repeats forever."""
        return None if self.num_epochs is None else self.num_epochs * self.steps_per_epoch

    @property
    def local_batch_size(self) -> int:
        return self.global_batch_size // self.process_count

    def epoch_permutation(self, epoch: int) -> np.ndarray:
        """(num_examples,) int64 slot order of ``epoch`` (cached, read-only); with paired
        flips, entries ``>= len(dataset)`` are the mirrored copies (class docstring)."""
        epoch = int(epoch)
        with self._lock:
            perm = self._cache.get(epoch)
        if perm is None:
            n = self.num_examples
            if self.shuffle:
                rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence([self.seed, _TAG_SHUFFLE, epoch])))
                perm = rng.permutation(n)
            else:
                perm = np.arange(n, dtype=np.int64)
            perm.setflags(write=False)
            with self._lock:
                # Consecutive steps touch at most two epochs (and prefetch threads a few):
                # keep the most recent few permutations only.
                while len(self._cache) >= 3:
                    self._cache.pop(next(iter(self._cache)))
                self._cache[epoch] = perm
        return perm

    def _check_step(self, step) -> int:
        step = _check_int(step, "step", minimum=0)
        if self.num_steps is not None and step >= self.num_steps:
            raise IndexError(f"step: {step} is past the end of the run ({self.num_steps} steps)")
        return step

    def _global_batch(self, step: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Global batch ``step``: (B,) int64 dataset indices, float32 weights, bool flips."""
        step = self._check_step(step)
        epoch, pos = divmod(step, self.steps_per_epoch)
        b = self.global_batch_size
        slots = self.epoch_permutation(epoch)[pos * b : (pos + 1) * b]
        weight = np.ones(b, np.float32)
        if slots.shape[0] < b:
            real = slots.shape[0]
            slots = np.concatenate([slots, np.resize(self.epoch_permutation(epoch), b - real)])
            weight[real:] = 0.0
        n = len(self.dataset)
        if self.flip_permutations is None:
            flip = np.zeros(b, bool)
        elif self.paired_flips:
            flip = slots >= n
        else:
            rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence([self.seed, _TAG_FLIP, step])))
            flip = rng.random(b) < 0.5
        return slots % n, weight, flip

    def example_indices(self, step: int) -> tuple[np.ndarray, np.ndarray]:
        """Global batch ``step``: ((B,) int64 dataset indices, (B,) float32 weights).

        Weights are 1, except for the padding that completes an epoch's last, short batch
        when ``drop_remainder=False``: those slots repeat the epoch's first slots with
        weight 0. With paired flips an index appears once as is and once mirrored per
        epoch (:meth:`flips` tells which).
        """
        idx, weight, _ = self._global_batch(step)
        return idx, weight

    def flips(self, step: int) -> np.ndarray:
        """(B,) bool: which examples of global batch ``step`` are mirrored (all False
        without ``flip_augment``; paired: the slots ``>= len(dataset)``; random: Bernoulli
        draws, module docstring)."""
        return self._global_batch(step)[2]

    def batch(self, step: int) -> dict[str, np.ndarray]:
        """This process's slice of global batch ``step``: rows ``[p L, (p + 1) L)`` with
        ``L = local_batch_size``, ``p = process_index``. Fresh arrays every call."""
        idx, weight, flip = self._global_batch(step)
        lo = self.process_index * self.local_batch_size
        sl = slice(lo, lo + self.local_batch_size)
        idx, weight, flip = idx[sl], weight[sl], flip[sl]
        if isinstance(self.dataset, _FrameExamples):
            if self.flip_permutations is None:
                out = self.dataset.gather(idx)
            else:
                out = self.dataset._gather_flipped(idx, flip, *self.flip_permutations)
        else:
            out = _stack([self.dataset[int(i)] for i in idx])
        if self.flip_permutations is not None and not isinstance(self.dataset, _FrameExamples):
            perm_in, perm_out = self.flip_permutations
            if "inputs" in out and out["inputs"].shape[-2] != perm_in.shape[0]:
                raise ValueError(
                    f"flip_augment: {perm_in.shape[0]} joints but inputs have {out['inputs'].shape[-2]}"
                )
            if perm_out is not None and "poses_3d" in out and out["poses_3d"].shape[-2] != perm_out.shape[0]:
                raise ValueError(
                    f"flip_augment: {perm_out.shape[0]} joints but poses_3d have {out['poses_3d'].shape[-2]}"
                )
            _flip_rows(out, np.flatnonzero(flip), perm_in, perm_out)
        out["weight"] = weight
        out["flipped"] = flip
        out["example_index"] = idx.astype(np.int32)
        return out

    def iterate(self, start_step: int = 0) -> Iterator[dict[str, np.ndarray]]:
        """Yields ``batch(k)`` for ``k = start_step, start_step + 1, ...`` to the end of the
        run (forever if ``num_epochs`` is None). Resume = ``iterate(saved_step)``."""
        return _iterate(self, start_step)

    def to_grain(self, start_step: int = 0) -> grain.MapDataset:
        """The batches from ``start_step`` on as a ``grain.MapDataset`` (element ``i`` is
        ``batch(start_step + i)``); infinite runs are cut at ``2**62`` steps."""
        start = _check_int(start_step, "start_step", minimum=0)
        stop = self.num_steps if self.num_steps is not None else 2**62
        if start > stop:
            raise ValueError(f"start_step: {start} is past the end of the run ({stop} steps)")
        return grain.MapDataset.range(start, stop).map(self.batch)

    def grain_iterator(
        self, start_step: int = 0, *, num_threads: int = 1, prefetch_buffer_size: int = 2
    ) -> grain.DatasetIterator:
        """A prefetching grain iterator over the batches from ``start_step`` on.

        Its ``get_state()`` / ``set_state()`` checkpoint its position relative to
        ``start_step``; saving the training step and calling ``grain_iterator(step)`` on
        resume is equivalent and independent of grain's state format.
        """
        opts = grain.ReadOptions(num_threads=num_threads, prefetch_buffer_size=prefetch_buffer_size)
        return iter(self.to_grain(start_step).to_iter_dataset(opts))


def _iterate(batches, start_step: int) -> Iterator[dict[str, np.ndarray]]:
    """``batches.batch(k)`` for ``k = start_step, ...`` up to ``batches.num_steps``
    (forever if None): the ``iterate`` of :class:`TrainingBatches` and
    :class:`MultiViewBatches`."""
    k = _check_int(start_step, "start_step", minimum=0)
    stop = batches.num_steps
    while stop is None or k < stop:
        yield batches.batch(k)
        k += 1


def _stack(examples: list[dict[str, Any]]) -> dict[str, np.ndarray]:
    if any(not isinstance(e, dict) for e in examples):
        raise ValueError("dataset: elements must be dicts of arrays to be batched")
    return {k: np.stack([np.asarray(e[k]) for e in examples], axis=0) for k in examples[0]}


def training_batches(
    dataset: grain.MapDataset,
    *,
    global_batch_size: int,
    seed: int,
    shuffle: bool = True,
    num_epochs: int | None = None,
    process_index: int = 0,
    process_count: int = 1,
    flip_augment=None,
    flip_mode: str = "paired",
    drop_remainder: bool = True,
) -> TrainingBatches:
    """Deterministic, resumable, multi-host batches over a random-access example dataset.

    Epoch ``e`` visits every example slot once, in the order
    ``Generator(PCG64(SeedSequence([seed, 1, e]))).permutation(n)`` (``shuffle=False``:
    slot order), cut into consecutive global batches; the batch at global step ``k``
    depends only on ``(seed, k)`` and the arguments, so a loop resumes exactly from its
    saved step (:meth:`TrainingBatches.iterate`). The slots are the ``N`` examples, or
    with paired flips the ``n = 2 N`` examples and their mirrored copies (VideoPose3D's
    epoch; module docstring).

    Args:
      dataset: a ``grain.MapDataset`` of dict examples, e.g. :func:`temporal_windows` or
        :func:`single_frames` (vectorised gather); any other map dataset of dicts of
        arrays works, one element at a time.
      global_batch_size: examples per step over all processes.
      seed: non-negative int.
      shuffle: reshuffle every epoch (a different permutation per epoch).
      num_epochs: None repeats forever; else the run has ``num_epochs *
        steps_per_epoch`` steps.
      process_index, process_count: this process's slice (``jax.process_index()``,
        ``jax.process_count()``): global batch rows ``[p L, (p + 1) L)``,
        ``L = global_batch_size // process_count``, which must divide exactly.
      flip_augment: None, a joint layout (name or :class:`jpose.skeleton.Skeleton`) for
        inputs and 3D poses, or a pair ``(input_layout, output_layout)``
        (``output_layout=None``: poses_3d are not permuted, e.g. a 1-joint trajectory
        target). For :func:`temporal_windows` / :func:`single_frames` datasets it must
        match their sequences' layouts: pass ``sequences.flip_layouts``
        (:attr:`Sequences.flip_layouts`), which is ``(input_layout, layout)`` for
        detections in their own layout.
      flip_mode: with ``flip_augment``: ``"paired"`` (default, VideoPose3D's
        ``ChunkedGenerator(augment=True)``): every epoch has each example twice, as is
        and mirrored, shuffled together, so ``n = 2 N`` and ``steps_per_epoch = 2 N //
        global_batch_size``; ``"random"``: each example of a batch is mirrored with
        probability 1/2 (``n = N``).
      drop_remainder: True: each epoch has ``n // global_batch_size`` full batches (the
        last ``n % global_batch_size`` slots of the epoch's order are skipped that
        epoch). False: the epoch's last batch is completed with weight-0 repeats, so
        shapes stay fixed and every slot is seen once per epoch; the loop must honour
        ``weight`` (batch-norm statistics do see the repeats).

    Returns:
      A :class:`TrainingBatches`; ``batch(k)`` gives dicts of NumPy arrays with the
      dataset's keys plus ``weight``, ``flipped`` and ``example_index``, each with
      leading axis ``local_batch_size``.
    """
    if not isinstance(dataset, grain.MapDataset):
        raise ValueError(
            f"dataset: expected a grain.MapDataset (e.g. temporal_windows(...) or "
            f"single_frames(...)), got {type(dataset).__name__}"
        )
    b = _check_int(global_batch_size, "global_batch_size", minimum=1)
    seed = _check_int(seed, "seed", minimum=0)
    pc = _check_int(process_count, "process_count", minimum=1)
    pi = _check_int(process_index, "process_index", minimum=0)
    if pi >= pc:
        raise ValueError(f"process_index: expected 0 <= process_index < process_count={pc}, got {pi}")
    if b % pc:
        raise ValueError(
            f"global_batch_size: {b} is not divisible by process_count={pc}; every process "
            f"needs an equal slice"
        )
    if num_epochs is not None:
        num_epochs = _check_int(num_epochs, "num_epochs", minimum=1)
    if flip_mode not in FLIP_MODES:
        raise ValueError(f"flip_mode: expected one of {FLIP_MODES}, got {flip_mode!r}")
    n = len(dataset)
    if n == 0:
        raise ValueError("dataset: empty")
    num_in = num_out = None
    expected = (None, None)
    if isinstance(dataset, _FrameExamples):
        seqs = dataset.sequences
        num_in, num_out = seqs.num_joints_in, seqs.num_joints_out
        out_name = _known_layout(seqs.layout)
        expected = (out_name if seqs.input_layout is None else seqs.input_layout, out_name)
    perms = _resolve_flip(flip_augment, num_in, num_out, expected=expected)
    slots = 2 * n if perms is not None and flip_mode == "paired" else n
    if drop_remainder and slots < b:
        raise ValueError(
            f"global_batch_size: {b} exceeds the {slots} examples per epoch with "
            f"drop_remainder=True (no full batch per epoch)"
        )
    return TrainingBatches(
        dataset=dataset,
        global_batch_size=b,
        seed=seed,
        shuffle=bool(shuffle),
        num_epochs=num_epochs,
        process_index=pi,
        process_count=pc,
        drop_remainder=bool(drop_remainder),
        flip_permutations=perms,
        flip_mode=flip_mode,
    )


# --------------------------------------------------------------------- multi-view batches

# Seed-stream tag of the view draws (independent of the shuffle's and the flips').
_TAG_VIEWS = 3


def _from_order(name: str, doc: str) -> property:
    """A read-only :class:`MultiViewBatches` property: its ``order``'s ``name``."""
    return property(lambda self: getattr(self.order, name), doc=doc)


@dataclasses.dataclass(frozen=True, eq=False)
class MultiViewBatches:
    """Random-access batches of synchronised views: see :func:`multiview_batches`.

    ``instants`` is the random-access dataset of ``(group, frame)`` instants (a
    ``grain.MapDataset.range``), shuffled and cut into batches by ``order`` (a
    :class:`TrainingBatches` over it, so epochs, padding and process slices follow the
    single-view rules exactly); ``examples`` the per-view frame examples gathered for
    each drawn view.
    """

    examples: _FrameExamples
    order: TrainingBatches
    views: int
    group_keys: tuple[tuple[str, str], ...]  # (subject, sequence) per group
    group_sequences: np.ndarray  # (G, C_max) int64 sequence index per camera slot, -1: none
    group_cameras: np.ndarray  # (G, C_max) int32 camera index per slot, -1: none
    group_offsets: np.ndarray  # (G + 1,) int64 first instant of each group
    subject_ids: np.ndarray  # (G,) int32 index of the group's subject in subject_names
    subject_names: tuple[str, ...]

    # The run's shape is the instants' order's (class docstring).
    global_batch_size = _from_order("global_batch_size", "Examples per step, all processes.")
    local_batch_size = _from_order("local_batch_size", "Examples per step, this process.")
    steps_per_epoch = _from_order("steps_per_epoch", "Steps per epoch.")
    num_steps = _from_order("num_steps", "Total steps of the run; None if it repeats forever.")
    num_examples = _from_order("num_examples", "Instants per epoch (every (group, frame) once).")
    seed = _from_order("seed", "The run's seed (shuffle and view draws).")

    def views_of(self, step: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Global batch ``step``: ``(group (B,), frame (B,), slots (B, V), weight (B,))``,
        ``slots`` the drawn camera slots of each example's group (distinct, uniformly
        random order): the first ``V`` of a permutation of the group's cameras drawn from
        ``Generator(PCG64(SeedSequence([seed, 3, step])))``."""
        inst, weight = self.order.example_indices(step)
        group = np.searchsorted(self.group_offsets, inst, side="right") - 1
        frame = inst - self.group_offsets[group]
        rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence(
            [self.order.seed, _TAG_VIEWS, int(step)])))
        keys = rng.random((inst.shape[0], self.group_sequences.shape[1]))
        keys = np.where(self.group_sequences[group] >= 0, keys, np.inf)  # absent cameras last
        slots = np.argsort(keys, axis=1, kind="stable")[:, : self.views]
        return group, frame, slots, weight

    def batch(self, step: int) -> dict[str, np.ndarray]:
        """This process's slice of global batch ``step`` (:func:`multiview_batches`)."""
        group, frame, slots, weight = self.views_of(step)
        lo = self.order.process_index * self.local_batch_size
        sl = slice(lo, lo + self.local_batch_size)
        group, frame, slots, weight = group[sl], frame[sl], slots[sl], weight[sl]
        b, v = slots.shape
        seq = np.take_along_axis(self.group_sequences[group], slots, axis=1)  # (B, V)
        cams = np.take_along_axis(self.group_cameras[group], slots, axis=1)
        flat = self.examples._offsets[seq] + frame[:, None]  # frame f of every view
        per_view = self.examples.gather(flat.reshape(-1))
        out = {}
        for key in ("inputs", "poses_3d", "trajectory", "camera", "extrinsics", "confidence"):
            if key in per_view:
                a = per_view[key]
                out[key] = a.reshape((b, v) + a.shape[1:])
        out["action"] = per_view["action"].reshape(b, v)[:, 0]
        out["subject"] = self.subject_ids[group]
        out["sequence_index"] = group.astype(np.int32)
        out["frame_index"] = frame.astype(np.int32)
        out["camera_index"] = cams.astype(np.int32)
        out["weight"] = weight
        return out

    def iterate(self, start_step: int = 0) -> Iterator[dict[str, np.ndarray]]:
        """Yields ``batch(k)`` from ``start_step`` to the end of the run (or forever)."""
        return _iterate(self, start_step)


def multiview_batches(
    examples: _FrameExamples,
    *,
    views: int,
    global_batch_size: int,
    seed: int,
    shuffle: bool = True,
    num_epochs: int | None = None,
    process_index: int = 0,
    process_count: int = 1,
    drop_remainder: bool = True,
    what: str = "views",
) -> MultiViewBatches:
    """Batches of ``views`` synchronised cameras of one instant, random access.

    The sequences of ``examples`` (:func:`temporal_windows` or :func:`single_frames`) are
    grouped by ``(subject, action_name)`` -- one group per recorded sequence, one
    sequence per camera in it. Frame ``f`` of every camera's sequence of a group must
    show the same instant (true of the multi-view sample data, Human3.6M and
    MPI-INF-3DHP); a group serves the instants ``0 .. F_min - 1`` (its shortest camera).
    An epoch visits every instant once, in the order of ``training_batches`` over the
    instants (same seed rules, ``flip`` never: mirroring is per camera, see the stream
    docs); example ``b`` of global batch ``k`` shows ``views`` distinct cameras of its
    group, drawn uniformly without replacement and in random order from
    ``SeedSequence([seed, 3, k])``. So batch ``k`` is a pure function of ``(seed, k)``.

    Each example (leading ``B`` in a batch; ``T`` only for temporal windows):

    * ``inputs`` ``(V, [T,] J_in, C)``, ``poses_3d`` ``(V, [1,] J_out, 3)``,
      ``trajectory`` ``(V, [1,] 3)``, ``camera`` ``(V, 9)``, ``extrinsics`` ``(V, 12)``,
      ``confidence`` ``(V, [1,] J_in)``: view ``v``'s single-view example at the instant
      (the conventions of this module: screen units, metres, camera frames);
    * ``camera_index`` ``(V,)`` int32: the drawn cameras' rig indices;
    * ``subject`` int32 (index into the result's ``subject_names``), ``sequence_index``
      int32 (the group), ``frame_index`` int32 (the instant), ``action`` int32;
    * batches add ``weight`` (B,) float32 (0 for padding with ``drop_remainder=False``).

    Args:
      what: how errors name the ``views`` setting (e.g. ``"streams.mv.views"``).

    Raises:
      ValueError: sequences without cameras or extrinsics, two sequences of one camera
        in a group, ``views < 1``, or a group with fewer than ``views`` cameras (named,
        with its camera count).
    """
    if not isinstance(examples, _FrameExamples):
        raise ValueError(f"examples: expected temporal_windows(...) or single_frames(...), "
                         f"got {type(examples).__name__}")
    v = _check_int(views, what, minimum=1)
    seqs = examples.sequences
    if not seqs.has_cameras or seqs[0].extrinsics is None:
        raise ValueError(f"{what}: multi-view examples need the cameras' intrinsics and "
                         "extrinsics; these sequences carry none")
    groups: dict[tuple[str, str], dict[int, int]] = {}
    for i, s in enumerate(seqs):
        cams = groups.setdefault((s.subject, s.action_name), {})
        if s.camera_index in cams or s.camera_index < 0:
            raise ValueError(
                f"sequences[{i}]: subject {s.subject!r}, sequence {s.action_name!r} has "
                f"{'a second sequence of camera' if s.camera_index >= 0 else 'an unknown camera'} "
                f"{s.camera_index}; a multi-view group needs one sequence per known camera")
        cams[s.camera_index] = i
    few = [(k, len(c)) for k, c in groups.items() if len(c) < v]
    if few:
        (subj, act), n = few[0]
        raise ValueError(
            f"{what}: {v} views requested but {len(few)} of the {len(groups)} (subject, "
            f"sequence) groups have fewer cameras, e.g. ({subj!r}, {act!r}) with {n}; "
            f"lower it to at most {min(n for _, n in few)} or use a split with more cameras "
            f"(held-out cameras are not in the training splits)")
    keys = tuple(groups)
    c_max = max(len(c) for c in groups.values())
    group_seq = np.full((len(keys), c_max), -1, np.int64)
    group_cam = np.full((len(keys), c_max), -1, np.int32)
    lengths = np.empty(len(keys), np.int64)
    for g, key in enumerate(keys):
        cams = sorted(groups[key])
        group_seq[g, : len(cams)] = [groups[key][c] for c in cams]
        group_cam[g, : len(cams)] = cams
        lengths[g] = min(seqs[groups[key][c]].num_frames for c in cams)
    offsets = np.concatenate([np.zeros(1, np.int64), np.cumsum(lengths)])
    subjects = tuple(sorted({k[0] for k in keys}))
    order = training_batches(
        grain.MapDataset.range(int(offsets[-1])), global_batch_size=global_batch_size,
        seed=seed, shuffle=shuffle, num_epochs=num_epochs, process_index=process_index,
        process_count=process_count, drop_remainder=drop_remainder)
    return MultiViewBatches(
        examples=examples, order=order, views=v, group_keys=keys, group_sequences=group_seq,
        group_cameras=group_cam, group_offsets=offsets,
        subject_ids=np.asarray([subjects.index(k[0]) for k in keys], np.int32),
        subject_names=subjects)
