"""Conversions between TFDS pose-sequence examples and :class:`~jpose.datasets.multiview.SequenceRecord`.

The Human3.6M and MPI-INF-3DHP pose builders (configs ``poses`` / ``videopose3d_*``) emit
one example per (subject, sequence, camera), a dict of NumPy arrays as
``tfds_build.load(...)`` returns it (Text features as ``bytes``, the camera as a nested
dict); the generated sample data (:mod:`jpose.datasets.multiview`) and the VideoPose3D
reader produce :class:`SequenceRecord` s. Both meet here, so the protocols
(:mod:`jpose.datasets.protocols`), the training sequences
(:func:`jpose.datasets.pipelines.sequences_from_records`) and the multi-view tuples
(:mod:`jpose.datasets.multiview_tuples`) have one input path.

Example schema (F frames; J = 17 in the dataset's standard layout, ``h36m_17`` or
``mpi_inf_3dhp_17``; J_full = 32 (``h36m_32``) or 28 (``mpi_inf_3dhp_28``)):

* ``subject``, ``sequence``, ``action``, ``camera_id``: ``bytes``; ``subaction``,
  ``camera_index``: int32; ``fps``: float32.
* ``positions_world`` (F, J, 3) metres, world frame; ``positions_camera`` (F, J, 3)
  metres, camera frame ``R (x_world - centre)`` (x right, y down, z forward);
  ``keypoints_2d`` (F, J, 2) pixels; the same three with suffix ``_full`` in the full
  layout.
* ``valid`` (F,) bool; ``activity`` (F,) int32.
* ``camera``: dict with the :class:`jpose.camera.CameraParams` fields ``rotation`` (3, 3),
  ``centre`` (3,) metres, ``focal`` (2,) px, ``principal`` (2,) px, ``radial`` (3,),
  ``tangential`` (2,) (Human3.6M order), ``image_size`` (2,) px (width, height).

Sample-data extension keys (:data:`EXTRA_KEYS`, not in the TFDS builders): the generated
data also has detector-like keypoints, so :func:`examples_from_multiview` adds
``keypoints_2d_detected`` (F, J, 2) px, ``confidence`` (F, J) float32, ``outlier``
(F, J) bool and ``visible`` (F, J) bool; :func:`records_from_examples` uses them when
present, which makes records -> examples -> records exact (a record's ``valid`` /
``activity`` of None come back as the schema's all True / zeros).

Field mapping, example -> record:

* ``record.action`` = the example's ``sequence`` (``"Directions 1"``, ``"Seq1"``), as
  :func:`jpose.datasets.h36m_videopose3d.load_videopose3d_h36m` does (it keeps the file
  name); the Human3.6M action class is
  :func:`jpose.datasets.h36m_videopose3d.action_class` of it (equal to the example's
  ``action``). ``subaction`` and ``camera_id`` are not carried.
* ``valid`` (F,) bool and ``activity`` (F,) int32 = the example's, when it has them (the
  builders always write them: MPI-INF-3DHP test ``valid_frame`` and activity 1..7; all
  True and zeros elsewhere); None when absent.
* ``keypoints_layout`` = None: the schema's keypoints are in the standard layout.
* ``keypoints_clean`` = ``keypoints_2d``; ``keypoints`` = ``keypoints_2d_detected`` if
  present, else ``keypoints_2d`` (the builders' 2D is the ground-truth projection);
  ``confidence`` ones and ``outlier`` False unless present.
* ``visible`` = the extension key if present; else ``z > 0`` and ``0 <= u <= width``,
  ``0 <= v <= height`` (as the VideoPose3D reader), **and** the frame's ``valid`` flag
  (MPI-INF-3DHP test frames marked invalid count as not visible, so losses weighted by
  ``visible`` skip them).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from jpose import camera as camera_lib
from jpose import skeleton as skeleton_lib
from jpose.datasets import multiview as multiview_lib

__all__ = [
    "STANDARD_KEYS",
    "FULL_KEYS",
    "EXTRA_KEYS",
    "FULL_LAYOUTS",
    "text",
    "records_from_examples",
    "examples_from_multiview",
    "example_from_record",
]

#: Per-frame pose features in the dataset's standard (17-joint) layout.
STANDARD_KEYS = ("positions_world", "positions_camera", "keypoints_2d")
#: The same in the full stored layout.
FULL_KEYS = ("positions_world_full", "positions_camera_full", "keypoints_2d_full")
#: Sample-data extension keys (standard layout), see the module docstring.
EXTRA_KEYS = ("keypoints_2d_detected", "confidence", "outlier", "visible")
#: Full layout by its joint count, and the standard layout that goes with it.
FULL_LAYOUTS = {32: ("h36m_32", "h36m_17"), 28: ("mpi_inf_3dhp_28", "mpi_inf_3dhp_17")}

_TEXT_KEYS = ("subject", "sequence", "action", "camera_id")


def text(value: Any, name: str) -> str:
    """A Text feature (``bytes`` as TFDS returns it, ``np.bytes_``, ``str`` or a 0-d
    array of either) as ``str``; anything else raises ``ValueError`` naming ``name``."""
    if isinstance(value, np.ndarray) and value.ndim == 0:
        value = value.item()
    if isinstance(value, (bytes, np.bytes_)):
        return bytes(value).decode("utf-8")
    if isinstance(value, str):
        return str(value)
    raise ValueError(f"{name}: expected a Text feature (bytes or str), got {type(value).__name__}")


def _array(example: Mapping, key: str, where: str, dtype, shape: tuple) -> np.ndarray:
    """``example[key]`` as ``dtype``, checked against ``shape`` (None = any size)."""
    if key not in example:
        raise ValueError(f"{where}: missing key {key!r}; found {sorted(example)}")
    x = np.asarray(example[key])
    if x.ndim != len(shape) or any(s is not None and s != d for s, d in zip(shape, x.shape)):
        want = "(" + ", ".join("?" if s is None else str(s) for s in shape) + ")"
        raise ValueError(f"{where}[{key!r}]: expected shape {want}, got {x.shape}")
    return np.asarray(x, dtype)


def _camera(example: Mapping, where: str) -> camera_lib.CameraParams:
    cam = example.get("camera")
    if not isinstance(cam, Mapping):
        raise ValueError(
            f"{where}['camera']: expected a dict with fields {list(camera_lib.CAMERA_FIELD_SHAPES)}, "
            f"got {type(cam).__name__}"
        )
    fields = {
        name: _array(cam, name, f"{where}['camera']", np.float32, trailing)
        for name, trailing in camera_lib.CAMERA_FIELD_SHAPES.items()
    }
    return camera_lib.CameraParams(**fields)


def _visible(positions_camera: np.ndarray, keypoints: np.ndarray, image_size: np.ndarray,
             valid: np.ndarray) -> np.ndarray:
    size = image_size.reshape(1, 1, 2)
    inside = np.all((keypoints >= 0) & (keypoints <= size), axis=-1)
    return (positions_camera[..., 2] > 0) & inside & valid[:, None]


def _resolve_layout(layout: str, num_full: int | None, num_standard: int, where: str) -> bool:
    """True: use the ``_full`` features; False: the standard ones (after checks).

    ``num_full`` is None when the example has no full features."""
    known = None if num_full is None else FULL_LAYOUTS.get(num_full)
    if layout == "full" or (known is not None and layout == known[0]):
        return True
    try:
        skel = skeleton_lib.get(layout)
    except (KeyError, ValueError, TypeError):
        raise ValueError(
            f"layout: {layout!r} is neither 'full' nor a jpose layout name"
        ) from None
    if skel.num_joints != num_standard:
        raise ValueError(
            f"layout: {skel.name!r} has {skel.num_joints} joints but {where} has "
            f"{num_standard} in its standard features (layout='full' takes the full "
            f"features)"
        )
    if known is not None and skel.name != known[1]:
        raise ValueError(
            f"layout: {skel.name!r} does not match {where}, whose {num_full}-joint full "
            f"features ({known[0]}) make its standard layout {known[1]!r}"
        )
    return False


def records_from_examples(
    examples: Sequence[Mapping[str, Any]], *, layout: str = "h36m_17"
) -> tuple[multiview_lib.SequenceRecord, ...]:
    """One :class:`SequenceRecord` per pose-sequence example (see the module docstring).

    Args:
      examples: example dicts as ``tfds_build.load(...)`` yields them (or
        :func:`examples_from_multiview` makes them).
      layout: ``"full"`` (or the full layout's name, ``h36m_32`` / ``mpi_inf_3dhp_28``)
        takes the ``*_full`` features; otherwise the jpose name of the standard
        features' layout (``h36m_17`` for Human3.6M, ``mpi_inf_3dhp_17`` for
        MPI-INF-3DHP), checked against the joint counts: a 32-joint full layout implies
        ``h36m_17`` and a 28-joint one ``mpi_inf_3dhp_17``. The sample-data extension keys
        are used with the standard features only.

    Returns:
      Records in example order; arrays are float32 (``outlier``/``visible``/``valid``
      bool, ``activity`` int32), ``fps`` a Python float.

    Raises:
      ValueError: a missing key or wrong shape (names ``examples[i]`` and the key), a
        non-Text string feature, or a layout that does not fit.
    """
    if isinstance(examples, Mapping):
        raise ValueError("examples: expected a sequence of example dicts, got one dict")
    out = []
    for i, ex in enumerate(examples):
        where = f"examples[{i}]"
        if not isinstance(ex, Mapping):
            raise ValueError(f"{where}: expected an example dict, got {type(ex).__name__}")
        world = _array(ex, "positions_world", where, np.float32, (None, None, 3))
        f, j = world.shape[:2]
        full = None
        if "positions_world_full" in ex or layout == "full":
            full = _array(ex, "positions_world_full", where, np.float32, (f, None, 3))
        use_full = _resolve_layout(layout, None if full is None else full.shape[1], j, where)
        if use_full:
            if full is None:
                full = _array(ex, "positions_world_full", where, np.float32, (f, None, 3))
            world = full
        keys = FULL_KEYS if use_full else STANDARD_KEYS
        jj = world.shape[1]
        cam_pos = _array(ex, keys[1], where, np.float32, (f, jj, 3))
        kp = _array(ex, keys[2], where, np.float32, (f, jj, 2))
        valid = _array(ex, "valid", where, bool, (f,)) if "valid" in ex else None
        activity = _array(ex, "activity", where, np.int32, (f,)) if "activity" in ex else None
        cam = _camera(ex, where)
        extras = {} if use_full else {k: ex[k] for k in EXTRA_KEYS if k in ex}
        detected = (
            _array(extras, "keypoints_2d_detected", where, np.float32, (f, jj, 2))
            if "keypoints_2d_detected" in extras
            else kp
        )
        confidence = (
            _array(extras, "confidence", where, np.float32, (f, jj))
            if "confidence" in extras
            else np.ones((f, jj), np.float32)
        )
        outlier = (
            _array(extras, "outlier", where, bool, (f, jj))
            if "outlier" in extras
            else np.zeros((f, jj), bool)
        )
        visible = (
            _array(extras, "visible", where, bool, (f, jj))
            if "visible" in extras
            else _visible(cam_pos, kp, cam.image_size, np.ones(f, bool) if valid is None else valid)
        )
        camera_index = _array(ex, "camera_index", where, np.int64, ())
        fps = _array(ex, "fps", where, np.float64, ())
        out.append(
            multiview_lib.SequenceRecord(
                subject=text(ex.get("subject"), f"{where}['subject']"),
                action=text(ex.get("sequence"), f"{where}['sequence']"),
                camera_index=int(camera_index),
                fps=float(np.float32(fps)),
                positions_world=world,
                positions_camera=cam_pos,
                keypoints_clean=kp,
                keypoints=detected,
                confidence=confidence,
                outlier=outlier,
                visible=visible,
                camera=cam,
                valid=valid,
                activity=activity,
            )
        )
    return tuple(out)


def example_from_record(record: multiview_lib.SequenceRecord, *, camera_id: str | None = None,
                        action: str | None = None, subaction: int = 1) -> dict[str, Any]:
    """One example dict (the pose-sequence schema plus :data:`EXTRA_KEYS`) from a record.

    ``sequence`` = ``record.action``; ``action`` defaults to it too (the sample data's clip
    name is its action); ``camera_id`` defaults to ``str(camera_index)``. The ``*_full``
    features repeat the standard ones (the record has one layout). ``valid`` and
    ``activity`` are the record's, or all True and zeros (the schema's "none") when None.

    Raises:
      ValueError: the record's detections are in another layout (``keypoints_layout``
        set): the schema's 2D features are all in the 3D layout.
    """
    if not isinstance(record, multiview_lib.SequenceRecord):
        raise ValueError(f"record: expected a SequenceRecord, got {type(record).__name__}")
    if record.keypoints_layout is not None:
        raise ValueError(
            f"record: its keypoints are in layout {record.keypoints_layout!r}, not its 3D "
            f"layout; the pose-sequence schema has no slot for them (load the VideoPose3D "
            f"file with convert_keypoints=True to get 3D-layout detections)")
    f, j = record.positions_world.shape[:2]
    world = np.asarray(record.positions_world, np.float32)
    cam_pos = np.asarray(record.positions_camera, np.float32)
    kp = np.asarray(record.keypoints_clean, np.float32)
    return {
        "subject": record.subject.encode("utf-8"),
        "sequence": record.action.encode("utf-8"),
        "action": (record.action if action is None else action).encode("utf-8"),
        "subaction": np.int32(subaction),
        "camera_index": np.int32(record.camera_index),
        "camera_id": (str(record.camera_index) if camera_id is None else camera_id).encode("utf-8"),
        "fps": np.float32(record.fps),
        "positions_world": world,
        "positions_camera": cam_pos,
        "keypoints_2d": kp,
        "positions_world_full": world,
        "positions_camera_full": cam_pos,
        "keypoints_2d_full": kp,
        "valid": np.ones(f, bool) if record.valid is None else np.asarray(record.valid, bool),
        "activity": (np.zeros(f, np.int32) if record.activity is None
                     else np.asarray(record.activity, np.int32)),
        "camera": {
            name: np.asarray(getattr(record.camera, name), np.float32) for name in camera_lib.CAMERA_FIELD_SHAPES
        },
        "keypoints_2d_detected": np.asarray(record.keypoints, np.float32),
        "confidence": np.asarray(record.confidence, np.float32),
        "outlier": np.asarray(record.outlier, bool),
        "visible": np.asarray(record.visible, bool),
    }


def examples_from_multiview(
    dataset: multiview_lib.MultiViewDataset,
    split: str | Sequence[multiview_lib.SequenceRecord] | None = None,
) -> list[dict[str, Any]]:
    """The sample data as pose-sequence examples (one per record, in record order).

    Args:
      dataset: a generated (or loaded) :class:`~jpose.datasets.multiview.MultiViewDataset`.
      split: ``"labelled"``, ``"unlabelled"``, ``"test"``, a tuple of the dataset's
        records, or None (every record).

    Returns:
      Example dicts as :func:`example_from_record` builds them: the builders' schema in
      the dataset's layout (``*_full`` = the same arrays) plus the extension keys, so
      ``records_from_examples(examples_from_multiview(d, s), layout=d.layout)`` gives back
      ``d.split(s)`` (``fps`` rounded to float32, as the schema stores it; ``valid`` and
      ``activity``, None in generated data, as all True and zeros).
    """
    if not isinstance(dataset, multiview_lib.MultiViewDataset):
        raise ValueError(f"dataset: expected a MultiViewDataset, got {type(dataset).__name__}")
    if split is None:
        records = dataset.sequences
    elif isinstance(split, str):
        records = dataset.split(split)
    else:
        records = tuple(split)
    return [example_from_record(r) for r in records]
