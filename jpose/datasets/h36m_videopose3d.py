"""Human3.6M for training, from VideoPose3D's preprocessed ``.npz`` files + ``metadata.xml``.

Inputs (``shared/DATASET_FORMATS.md`` section 2, VideoPose3D ``DATASETS.md``):

* ``data_3d_h36m.npz``: key ``positions_3d``, a dict ``subject -> action -> (N, 32, 3)``
  float32 array: all 32 stored joints (``h36m_32``), **world** frame, **metres**.
* ``data_2d_h36m_<source>.npz``: key ``positions_2d``, a dict ``subject -> action ->``
  list of 4 arrays ``(N_cam, J, 2)`` in **pixels**, one per camera in the order
  54138969, 55011271, 58860488, 60457274; and key ``metadata``, a dict with
  ``num_joints``, ``keypoints_symmetry = [left_indices, right_indices]`` and, for
  detector files, ``layout_name`` (``'h36m'`` or ``'coco'``). Files without
  ``layout_name`` are the ground-truth projections (17 joints, ``h36m_17``) or the
  stacked-hourglass detections (16 joints, MPII order, ``mpii_16``).
* the raw release's ``metadata.xml`` for the cameras (:mod:`jpose.datasets.h36m_cameras`;
  VideoPose3D's hard-coded camera tables are not used).

Pickle: both ``.npz`` files store their dicts as **pickled** 0-d object arrays.
Unpickling runs whatever code the file names, so a tampered file can execute arbitrary
code. They are therefore read only when the caller opts in with ``allow_pickle=True``
(launch flag ``--config.data.allow_pickle=True``); otherwise :class:`PickleNotAllowedError`
is raised before anything is unpickled.

Output: one :class:`jpose.datasets.multiview.SequenceRecord` per (subject, action,
camera), 50 fps, NumPy float32, with

* ``positions_world`` (F, J, 3) m: the file's 3D converted from ``h36m_32`` to ``layout``
  (default ``h36m_17``) with :func:`jpose.skeleton.convert`;
* ``positions_camera`` (F, J, 3) m: ``R (x_world - centre)`` (:func:`jpose.camera.world_to_camera`);
* ``keypoints_clean`` (F, J, 2) px: the Human3.6M projection (with distortion) of the 3D
  truth (:func:`jpose.camera.project_perspective`);
* ``keypoints`` (F, J_kp, 2) px: the file's 2D detections **in the file's own joint
  layout**, as VideoPose3D feeds them to its model (``coco_17`` for the Detectron file,
  ``mpii_16`` for the stacked-hourglass files, ``h36m_17`` for the ground-truth and CPN
  files), truncated to the 3D length F (some videos have a few extra frames; VideoPose3D
  ``run.py`` cuts them the same way). ``keypoints_layout`` names that layout when it
  differs from ``layout`` (else None). With ``convert_keypoints=True`` they are instead
  converted to ``layout`` by joint name (:func:`jpose.skeleton.convert`, which
  synthesises the joints the file lacks, e.g. the COCO pelvis as the mid-hip), and
  ``keypoints_layout`` is None;
* ``confidence`` ones, ``outlier`` False (the files carry neither), (F, J_kp) like
  ``keypoints``;
* ``visible`` (F, J): the clean keypoint lies in the image, ``0 <= u <= width`` and
  ``0 <= v <= height``, and in front of the camera (``z > 0``).

``action`` keeps the file's name (``'Directions 1'``, ``'Photo'``, ...); use
:func:`action_class` for the 15 action classes.
"""

from __future__ import annotations

import logging
import os
import re
import zipfile
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from jpose import camera as camera_lib
from jpose import skeleton as skeleton_lib
from jpose.datasets import h36m_cameras
from jpose.datasets.multiview import SequenceRecord

__all__ = [
    "H36M_TRAIN_SUBJECTS",
    "H36M_TEST_SUBJECTS",
    "H36M_ACTION_CLASSES",
    "FPS",
    "PickleNotAllowedError",
    "action_class",
    "infer_keypoints_layout",
    "load_videopose3d_h36m",
]

_LOG = logging.getLogger(__name__)

#: The split everybody uses (VideoPose3D, 3d-pose-baseline, mmpose): Protocols #1/#2.
H36M_TRAIN_SUBJECTS: tuple[str, ...] = ("S1", "S5", "S6", "S7", "S8")
H36M_TEST_SUBJECTS: tuple[str, ...] = ("S9", "S11")

#: The 15 action classes, named as in metadata.xml ``actionnames`` (ids 2..16).
H36M_ACTION_CLASSES: tuple[str, ...] = (
    "Directions", "Discussion", "Eating", "Greeting", "Phoning", "Posing", "Purchases",
    "Sitting", "SittingDown", "Smoking", "TakingPhoto", "Waiting", "Walking",
    "WalkingDog", "WalkingTogether",
)

# File base names that differ from the class name. Every subject but S1 has
# 'Photo'/'WalkDog' files, S1 has 'TakingPhoto'/'WalkingDog' (VideoPose3D renames S1's
# to 'Photo'/'WalkDog' in data_3d_h36m.npz); all subjects use 'WalkTogether'.
_ACTION_ALIASES: Mapping[str, str] = {
    "Photo": "TakingPhoto",
    "WalkDog": "WalkingDog",
    "WalkTogether": "WalkingTogether",
}

FPS = 50.0
_NUM_CAMERAS = len(h36m_cameras.CAMERA_IDS)

# metadata['layout_name'] (VideoPose3D data/data_utils.py suggest_metadata) -> jpose.
_LAYOUT_NAMES: Mapping[str, str] = {"h36m": "h36m_17", "coco": "coco_17", "mpii": "mpii_16"}
# Files without a layout_name: the ground-truth projections (17) and the SH detections (16).
_LAYOUT_BY_NUM_JOINTS: Mapping[int, str] = {17: "h36m_17", 16: "mpii_16"}

_OPT_IN = ("pass allow_pickle=True (launch flag: --config.data.allow_pickle=True)")


class PickleNotAllowedError(PermissionError, ValueError):
    """Reading a pickled file was refused because ``allow_pickle`` was not set.

    A :class:`PermissionError` and a :class:`ValueError`, so either ``except`` catches it.
    """


_TAKE_SUFFIX = re.compile(r"^(?P<base>.*?)(?: \d+)?$")


def action_class(name: str) -> str:
    """The action class of a sequence name: ``'Directions 1'`` -> ``'Directions'``.

    Strips the take suffix (``' 1'``, ``' 2'``, ...) and canonicalises the file-name
    variants to the metadata.xml class names: ``Photo`` (all subjects in VideoPose3D's
    files) and S1's raw ``TakingPhoto`` -> ``'TakingPhoto'``; ``WalkDog`` and S1's raw
    ``WalkingDog`` -> ``'WalkingDog'``; ``WalkTogether`` -> ``'WalkingTogether'``. The
    result is one of :data:`H36M_ACTION_CLASSES`; anything else raises ``ValueError``.
    """
    if not isinstance(name, str):
        raise ValueError(f"name: expected a sequence name string, got {name!r}.")
    base = _TAKE_SUFFIX.match(name.strip()).group("base")
    base = _ACTION_ALIASES.get(base, base)
    if base not in H36M_ACTION_CLASSES:
        raise ValueError(
            f"name: {name!r} is not a Human3.6M action sequence name; expected one of "
            f"{H36M_ACTION_CLASSES} (or Photo/WalkDog/WalkTogether) with an optional "
            f"take number such as ' 1'.")
    return base


def _symmetry_lists(value) -> tuple[tuple[int, ...], tuple[int, ...]] | None:
    try:
        left, right = value
        return tuple(int(i) for i in left), tuple(int(i) for i in right)
    except (TypeError, ValueError):
        return None


def infer_keypoints_layout(metadata: Mapping[str, Any], *, keypoints_layout: str | None = None,
                           source: str = "metadata") -> str:
    """The jpose layout name of a VideoPose3D 2D file from its ``metadata`` dict.

    ``layout_name`` ``'h36m'`` -> ``h36m_17``, ``'coco'`` -> ``coco_17``; without it,
    17 joints -> ``h36m_17`` (ground-truth projections) and 16 -> ``mpii_16``
    (stacked-hourglass detections). An explicit ``keypoints_layout`` overrides this.
    ``num_joints`` must match the layout, and ``keypoints_symmetry`` (when present) must
    list the layout's left and right joints; otherwise ``ValueError`` naming ``source``
    (an explicit layout that disagrees with the symmetry only logs a warning).
    """
    if "num_joints" not in metadata:
        raise ValueError(f"{source}: key 'metadata' has no 'num_joints' entry; found "
                         f"{sorted(metadata)}.")
    num_joints = int(metadata["num_joints"])
    if keypoints_layout is not None:
        skel = skeleton_lib.get(keypoints_layout)
        how = f"keypoints_layout={skel.name!r}"
    else:
        layout_name = metadata.get("layout_name")
        if layout_name is not None:
            if layout_name not in _LAYOUT_NAMES:
                raise ValueError(
                    f"{source}: metadata layout_name={layout_name!r} is not one of "
                    f"{sorted(_LAYOUT_NAMES)}; pass keypoints_layout= (a jpose layout name, "
                    f"e.g. 'coco_17') to say how its {num_joints} joints are ordered.")
            name = _LAYOUT_NAMES[layout_name]
        elif num_joints in _LAYOUT_BY_NUM_JOINTS:
            name = _LAYOUT_BY_NUM_JOINTS[num_joints]
        else:
            raise ValueError(
                f"{source}: metadata has no layout_name and num_joints={num_joints} is "
                f"neither 17 (Human3.6M) nor 16 (MPII); pass keypoints_layout=.")
        skel = skeleton_lib.get(name)
        how = f"inferred layout {skel.name!r}"
    if num_joints != skel.num_joints:
        raise ValueError(
            f"{source}: metadata num_joints={num_joints} but {how} has "
            f"{skel.num_joints} joints.")
    if "keypoints_symmetry" in metadata:
        sym = _symmetry_lists(metadata["keypoints_symmetry"])
        expected = (skel.joints_left, skel.joints_right)
        if sym is None or tuple(map(sorted, sym)) != tuple(map(sorted, expected)):
            message = (f"{source}: metadata keypoints_symmetry={metadata['keypoints_symmetry']!r}"
                       f" does not list the left/right joints {expected} of {how}")
            if keypoints_layout is None:
                raise ValueError(message + "; pass keypoints_layout= to say how the "
                                 "joints are ordered.")
            _LOG.warning("%s.", message)
    return skel.name


def _check_files(named_paths: Sequence[tuple[str, str]]) -> None:
    missing = [(what, p) for what, p in named_paths if not os.path.isfile(p)]
    if missing:
        lines = "; ".join(f"{what} expected at {p!r}" for what, p in missing)
        raise FileNotFoundError(f"Human3.6M (VideoPose3D) input file(s) not found: {lines}.")


def _load_pickled_dicts(path: str, keys: Sequence[str]) -> tuple[dict, ...]:
    """The dict stored under each of ``keys`` in a VideoPose3D ``.npz`` (unpickles!)."""
    # np.load unpickles a *non*-npz file whole when allow_pickle is set; insist on a zip
    # archive so only the named members are ever unpickled.
    if not zipfile.is_zipfile(path):
        raise ValueError(f"{path}: not an .npz (zip) archive; expected a VideoPose3D file "
                         f"written by np.savez_compressed with keys {list(keys)}.")
    out = []
    with np.load(path, allow_pickle=True) as data:
        for key in keys:
            if key not in data.files:
                raise ValueError(f"{path}: missing key {key!r}; the file has keys "
                                 f"{sorted(data.files)}.")
            value = data[key]
            if value.shape != () or value.dtype != object or not isinstance(value.item(), dict):
                raise ValueError(
                    f"{path}: key {key!r} must hold a dict (a pickled 0-d object array), "
                    f"got an array of dtype {value.dtype} and shape {value.shape}.")
            out.append(value.item())
    return tuple(out)


def _subject_sort_key(name: str):
    match = re.fullmatch(r"S(\d+)", str(name))
    return (0, int(match.group(1)), "") if match else (1, 0, str(name))


def load_videopose3d_h36m(
    path_3d: str | os.PathLike,
    path_2d: str | os.PathLike,
    metadata_xml: str | os.PathLike,
    *,
    allow_pickle: bool = False,
    subjects: Sequence[str] | None = None,
    layout: str = "h36m_17",
    keypoints_layout: str | None = None,
    convert_keypoints: bool = False,
) -> tuple[SequenceRecord, ...]:
    """Loads Human3.6M from VideoPose3D's ``.npz`` files; one record per (subject, action, camera).

    Args:
      path_3d: ``data_3d_h36m.npz`` (key ``positions_3d``; 32 joints, world, metres).
      path_2d: ``data_2d_h36m_<source>.npz`` (keys ``positions_2d``, ``metadata``; pixels).
      metadata_xml: the raw release's ``metadata.xml`` (cameras).
      allow_pickle: must be True to read the ``.npz`` files, whose dicts are pickled (see
        the module docstring); the default refuses with :class:`PickleNotAllowedError`.
      subjects: subject names to load, e.g. :data:`H36M_TRAIN_SUBJECTS`; default every
        subject of the 3D file, ordered S1, S5, ..., S11.
      layout: joint layout of the 3D arrays, ``keypoints_clean`` and ``visible`` (a
        :mod:`jpose.skeleton` name).
      keypoints_layout: layout of the 2D file's joints; default inferred from its
        ``metadata`` (:func:`infer_keypoints_layout`).
      convert_keypoints: False (default): ``keypoints`` stay in ``keypoints_layout``, as
        VideoPose3D uses them; True: converted to ``layout`` by joint name.

    Returns:
      Records ordered by subject, then action (3D file order), then camera 0..3; the
      ``positions_world`` array is shared by the 4 records of a (subject, action).
      (Subject, action) pairs absent from the 2D file (e.g. S11 ``Directions`` in detector
      files) are skipped with a logged warning; 2D-only subjects (S2-S4) are ignored.

    Raises:
      FileNotFoundError: an input is missing (every missing path is listed).
      PickleNotAllowedError: ``allow_pickle`` is False.
      ValueError: unknown subjects (lists the available ones), a missing key (names the
        file and key), a wrong shape (names subject/action/camera and the expected
        shape), or 2D shorter than 3D (names subject/action/camera).
    """
    path_3d, path_2d, metadata_xml = (os.fspath(p) for p in (path_3d, path_2d, metadata_xml))
    if not isinstance(allow_pickle, (bool, np.bool_)):
        raise ValueError(f"allow_pickle: expected a bool, got {allow_pickle!r}.")
    if not isinstance(convert_keypoints, (bool, np.bool_)):
        raise ValueError(f"convert_keypoints: expected a bool, got {convert_keypoints!r}.")
    _check_files([("3D poses (data_3d_h36m.npz)", path_3d),
                  ("2D keypoints (data_2d_h36m_<source>.npz)", path_2d),
                  ("cameras (metadata.xml)", metadata_xml)])
    if not allow_pickle:
        raise PickleNotAllowedError(
            f"Refusing to read {path_3d!r} and {path_2d!r}: VideoPose3D .npz files store "
            f"Python dicts as pickled object arrays, and unpickling can execute arbitrary "
            f"code from the file. If you trust these files (e.g. made by VideoPose3D's "
            f"prepare_data scripts), {_OPT_IN}.")
    target = skeleton_lib.get(layout)
    if keypoints_layout is not None:
        skeleton_lib.get(keypoints_layout)  # Validates the name before any loading.

    (positions_3d,) = _load_pickled_dicts(path_3d, ("positions_3d",))
    positions_2d, metadata = _load_pickled_dicts(path_2d, ("positions_2d", "metadata"))
    kp_layout = infer_keypoints_layout(metadata, keypoints_layout=keypoints_layout,
                                       source=path_2d)
    num_kp = skeleton_lib.get(kp_layout).num_joints
    # Layout of the records' keypoints/confidence/outlier: None = the 3D layout.
    det_layout = None if convert_keypoints or kp_layout == target.name else kp_layout
    num_det = target.num_joints if det_layout is None else num_kp

    available = sorted(positions_3d, key=_subject_sort_key)
    if subjects is None:
        chosen = available
    else:
        if isinstance(subjects, str):
            subjects = (subjects,)
        chosen = list(dict.fromkeys(subjects))
        unknown = [s for s in chosen if s not in positions_3d]
        if unknown:
            raise ValueError(f"subjects: {unknown} not in {path_3d}; available subjects: "
                             f"{available}.")
    cameras = h36m_cameras.load_h36m_cameras(metadata_xml)

    records = []
    for subject in chosen:
        actions = positions_3d[subject]
        if not isinstance(actions, Mapping):
            raise ValueError(f"{path_3d}: positions_3d[{subject!r}] must be a dict "
                             f"action -> (N, 32, 3) array, got {type(actions).__name__}.")
        rig = h36m_cameras.subject_cameras(cameras, subject)
        subject_2d = positions_2d.get(subject)
        if subject_2d is None:
            _LOG.warning("Skipping subject %s: it has 3D poses in %s but no 2D keypoints "
                         "in %s.", subject, path_3d, path_2d)
            continue
        clips = []  # (action, world (F, J, 3), [detections (F, J, 2) per camera])
        for action, raw in actions.items():
            where = f"positions_3d[{subject!r}][{action!r}]"
            world32 = np.asarray(raw)
            if world32.ndim != 3 or world32.shape[1:] != (32, 3):
                raise ValueError(f"{path_3d}: {where} has shape {world32.shape}; expected "
                                 f"(N, 32, 3) world positions in metres.")
            if action not in subject_2d:
                _LOG.warning("Skipping %s %r: it has 3D poses in %s but no 2D keypoints "
                             "in %s.", subject, action, path_3d, path_2d)
                continue
            num_frames = world32.shape[0]
            views = subject_2d[action]
            if not isinstance(views, (list, tuple)) or len(views) != _NUM_CAMERAS:
                got = len(views) if isinstance(views, (list, tuple)) else type(views).__name__
                raise ValueError(
                    f"{path_2d}: positions_2d[{subject!r}][{action!r}] must be a list of "
                    f"{_NUM_CAMERAS} arrays (one per camera {h36m_cameras.CAMERA_IDS}); "
                    f"got {got}.")
            detections = []
            for c, view in enumerate(views):
                view = np.asarray(view)
                where2 = (f"positions_2d[{subject!r}][{action!r}][{c}] (camera "
                          f"{h36m_cameras.CAMERA_IDS[c]})")
                if view.ndim != 3 or view.shape[1:] != (num_kp, 2):
                    raise ValueError(
                        f"{path_2d}: {where2} has shape {view.shape}; expected "
                        f"(N, {num_kp}, 2) pixels with N >= {num_frames} ({kp_layout}).")
                if view.shape[0] < num_frames:
                    raise ValueError(
                        f"{path_2d}: {where2} has {view.shape[0]} frames but the 3D "
                        f"sequence has {num_frames}; 2D may have extra frames (they are "
                        f"cut) but never fewer.")
                kp = view[:num_frames].astype(np.float32)
                detections.append(skeleton_lib.convert(kp, kp_layout, target)
                                  if convert_keypoints else kp)
            world = skeleton_lib.convert(world32.astype(np.float32), "h36m_32", target)
            clips.append((action, world, detections))
        if not clips:
            continue

        # Project all of the subject's frames through each camera at once: a few large
        # calls instead of one per sequence (each new shape costs a compile).
        world_all = np.concatenate([w for _, w, _ in clips], axis=0)
        in_cam, pixels = [], []
        for c in range(_NUM_CAMERAS):
            xyz = camera_lib.world_to_camera(world_all, rig.rotation[c], rig.centre[c])
            uv = camera_lib.project_perspective(xyz, rig.focal[c], rig.principal[c],
                                                rig.radial[c], rig.tangential[c])
            in_cam.append(np.asarray(xyz, np.float32))
            pixels.append(np.asarray(uv, np.float32))

        start = 0
        for action, world, detections in clips:
            n = world.shape[0]
            for c in range(_NUM_CAMERAS):
                cam = cameras[(subject, c)]
                xyz = in_cam[c][start:start + n]
                uv = pixels[c][start:start + n]
                size = np.asarray(cam.image_size, np.float32)
                visible = (xyz[..., 2] > 0) & np.all((uv >= 0) & (uv <= size[None, None]),
                                                     axis=-1)
                records.append(SequenceRecord(
                    subject=subject,
                    action=action,
                    camera_index=c,
                    fps=FPS,
                    positions_world=world,
                    positions_camera=xyz,
                    keypoints_clean=uv,
                    keypoints=detections[c],
                    confidence=np.ones((n, num_det), np.float32),
                    outlier=np.zeros((n, num_det), bool),
                    visible=visible,
                    camera=cam,
                    keypoints_layout=det_layout,
                ))
            start += n
    return tuple(records)
