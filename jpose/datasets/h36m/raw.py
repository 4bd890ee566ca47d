"""Reading the Human3.6M raw release (and VideoPose3D's files) into NumPy dicts.

Plain functions, testable without TFDS; :mod:`jpose.datasets.h36m` maps their output to
TFDS features. Layouts and sources: ``shared/DATASET_FORMATS.md`` sections 1 and 2.

Raw release, under the manual directory ``root``::

    metadata.xml                                              (cameras: <w0>)
    S<n>/MyPoseFeatures/D3_Positions/<seq>.cdf                (world, mm; required)
    S<n>/MyPoseFeatures/D3_Positions_mono/<seq>.<cam>.cdf     (camera frame, mm; optional)
    S<n>/MyPoseFeatures/D2_Positions/<seq>.<cam>.cdf          (pixels; optional)
    S<n>/Videos/<seq>.<cam>.mp4                               (images config only)

CDF files hold one variable ``Pose``: 1 record of ``[N, 96]`` (3D) or ``[N, 64]`` (2D),
32 joints (``h36m_32``) with interleaved coordinates ``x0, y0, z0, x1, ...``. Readers see
``(1, N, 96)``; ``(N, 96)`` is accepted too.

Conventions of everything returned here: metres (the files' millimetres / 1000), pixels
as stored (D2_Positions, or the projection with distortion), joint order ``h36m_32``
(``*_full``) and ``h36m_17`` (32-joint indices ``[0,1,2,3,6,7,8,12,13,14,15,17,18,19,25,
26,27]``, through :func:`jpose.skeleton.convert`), camera frame ``x_cam = R (x_world -
centre)`` with the :mod:`jpose.datasets.h36m_cameras` cameras, float32.

Sequence names: the per-subject table of metadata.xml's ``mapping`` element
(:data:`SEQUENCE_NAMES`) gives the action class and the sub-action (1 or 2) of every file
base name; the names are irregular (S1's ``TakingPhoto``/``WalkingDog`` vs every other
subject's ``Photo``/``WalkDog``; ``SittingDown`` is sub-action 1 for S5, S7-S11; S11's
``Phoning 2`` is sub-action 2 and ``Phoning 3`` sub-action 1, ...), so nothing is parsed
from the name itself. ``_ALL`` sequences (action id 1, "Miscellaneous") are skipped.
"""

from __future__ import annotations

import logging
import os
import re
import types
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np

from jpose import camera as camera_lib
from jpose import skeleton as skeleton_lib
from jpose.datasets import h36m_cameras
from jpose.datasets import h36m_videopose3d
from jpose.datasets.raw_files import MalformedRawFileError, MissingRawFilesError, require_paths

__all__ = [
    "CAMERA_IDS",
    "FPS",
    "PUBLIC_SUBJECTS",
    "SEQUENCE_NAMES",
    "VIDEOPOSE3D_SOURCES",
    "MONO_TOLERANCE_MM",
    "DOWNLOAD_HINT",
    "sequence_info",
    "is_all_sequence",
    "d3_path",
    "mono_path",
    "d2_path",
    "video_path",
    "find_subjects",
    "find_sequences",
    "read_pose_cdf",
    "check_release",
    "load_cameras",
    "load_subject",
    "load_videopose3d",
    "to_h36m_17",
]

_LOG = logging.getLogger(__name__)

DATASET = "h36m"
CAMERA_IDS = h36m_cameras.CAMERA_IDS
FPS = 50.0
#: Subjects with public 3D poses.
PUBLIC_SUBJECTS: tuple[str, ...] = ("S1", "S5", "S6", "S7", "S8", "S9", "S11")
#: Largest accepted difference (millimetres) between a D3_Positions_mono file and the
#: world positions seen through the metadata.xml camera. The two agree to rounding on the
#: real release; a wrong rotation convention or a camera/subject mix-up is off by metres.
MONO_TOLERANCE_MM = 5.0

#: VideoPose3D 2D sources (``data_2d_h36m_<source>.npz``) -> jpose layout of their joints.
VIDEOPOSE3D_SOURCES: Mapping[str, str] = types.MappingProxyType({
    "gt": "h36m_17",
    "cpn_ft_h36m_dbb": "h36m_17",
    "detectron_pt_coco": "coco_17",
    "sh_ft_h36m": "mpii_16",
})

DOWNLOAD_HINT = (
    "Human3.6M: download the per-subject archives from http://vision.imar.ro/human3.6m "
    "(Poses_D3_Positions_S<n>.tgz; optionally D3_Positions_mono, D2_Positions, Videos) and "
    "extract them into the manual directory; metadata.xml comes with the official code "
    "bundle (code-v1.2.zip). VideoPose3D configs read data_3d_h36m.npz and "
    "data_2d_h36m_<source>.npz (VideoPose3D DATASETS.md) from the manual directory.")

# metadata.xml `mapping` (anibali/h36m-fetch's copy of the official file): for every
# subject, (sub-action 1, sub-action 2) file base names per action class, in the order of
# h36m_videopose3d.H36M_ACTION_CLASSES (ids 2..16).
_TABLE_ROWS: dict[str, str] = {
    "S1": "Directions 1|Directions; Discussion 1|Discussion; Eating 2|Eating; "
          "Greeting 1|Greeting; Phoning 1|Phoning; Posing 1|Posing; Purchases 1|Purchases; "
          "Sitting 1|Sitting 2; SittingDown 2|SittingDown; Smoking 1|Smoking; "
          "TakingPhoto 1|TakingPhoto; Waiting 1|Waiting; Walking 1|Walking; "
          "WalkingDog 1|WalkingDog; WalkTogether 1|WalkTogether",
    "S2": "Directions 1|Directions; Discussion 1|Discussion; Eating 1|Eating 2; "
          "Greeting 1|Greeting; Phoning 1|Phoning; Posing 1|Posing; Purchases 1|Purchases; "
          "Sitting 1|Sitting; SittingDown 2|SittingDown 3; Smoking 1|Smoking; "
          "Photo 1|Photo; Waiting 1|Waiting; Walking 1|Walking; WalkDog 1|WalkDog; "
          "WalkTogether 1|WalkTogether",
    "S3": "Directions 1|Directions; Discussion 1|Discussion; Eating 1|Eating 2; "
          "Greeting 1|Greeting; Phoning 1|Phoning; Posing 1|Posing 2; "
          "Purchases 1|Purchases; Sitting 1|Sitting; SittingDown 1|SittingDown; "
          "Smoking 1|Smoking; Photo 1|Photo; Waiting 1|Waiting; Walking 1|Walking 2; "
          "WalkDog 1|WalkDog; WalkTogether 1|WalkTogether",
    "S4": "Directions 1|Directions; Discussion 1|Discussion; Eating 1|Eating; "
          "Greeting 1|Greeting; Phoning 1|Phoning; Posing 1|Posing; Purchases 1|Purchases; "
          "Sitting 1|Sitting; SittingDown 1|SittingDown 2; Smoking 1|Smoking; "
          "Photo 1|Photo; Waiting 1|Waiting; Walking 1|Walking; WalkDog 1|WalkDog; "
          "WalkTogether 2|WalkTogether 3",
    "S5": "Directions 1|Directions 2; Discussion 2|Discussion 3; Eating 1|Eating; "
          "Greeting 1|Greeting 2; Phoning 1|Phoning; Posing 1|Posing; "
          "Purchases 1|Purchases; Sitting 1|Sitting; SittingDown|SittingDown 1; "
          "Smoking 1|Smoking; Photo|Photo 2; Waiting 1|Waiting 2; Walking 1|Walking; "
          "WalkDog 1|WalkDog; WalkTogether 1|WalkTogether",
    "S6": "Directions 1|Directions; Discussion 1|Discussion; Eating 1|Eating 2; "
          "Greeting 1|Greeting; Phoning 1|Phoning; Posing 2|Posing; Purchases 1|Purchases; "
          "Sitting 1|Sitting 2; SittingDown 1|SittingDown; Smoking 1|Smoking; "
          "Photo|Photo 1; Waiting 3|Waiting; Walking 1|Walking; WalkDog 1|WalkDog; "
          "WalkTogether 1|WalkTogether",
    "S7": "Directions 1|Directions; Discussion 1|Discussion; Eating 1|Eating; "
          "Greeting 1|Greeting; Phoning 2|Phoning; Posing 1|Posing; Purchases 1|Purchases; "
          "Sitting 1|Sitting; SittingDown|SittingDown 1; Smoking 1|Smoking; "
          "Photo|Photo 1; Waiting 1|Waiting 2; Walking 1|Walking 2; WalkDog 1|WalkDog; "
          "WalkTogether 1|WalkTogether",
    "S8": "Directions 1|Directions; Discussion 1|Discussion; Eating 1|Eating; "
          "Greeting 1|Greeting; Phoning 1|Phoning; Posing 1|Posing; Purchases 1|Purchases; "
          "Sitting 1|Sitting; SittingDown|SittingDown 1; Smoking 1|Smoking; "
          "Photo 1|Photo; Waiting 1|Waiting; Walking 1|Walking; WalkDog 1|WalkDog; "
          "WalkTogether 1|WalkTogether 2",
    "S9": "Directions 1|Directions; Discussion 1|Discussion 2; Eating 1|Eating; "
          "Greeting 1|Greeting; Phoning 1|Phoning; Posing 1|Posing; Purchases 1|Purchases; "
          "Sitting 1|Sitting; SittingDown|SittingDown 1; Smoking 1|Smoking; "
          "Photo 1|Photo; Waiting 1|Waiting; Walking 1|Walking; WalkDog 1|WalkDog; "
          "WalkTogether 1|WalkTogether",
    "S10": "Directions 1|Directions; Discussion 1|Discussion 2; Eating 1|Eating; "
           "Greeting 1|Greeting; Phoning 1|Phoning; Posing 1|Posing; Purchases 1|Purchases; "
           "Sitting 1|Sitting; SittingDown|SittingDown 1; Smoking 2|Smoking; "
           "Photo 1|Photo; Waiting 1|Waiting; Walking 1|Walking; WalkDog 1|WalkDog; "
           "WalkTogether 1|WalkTogether",
    "S11": "Directions 1|Directions; Discussion 1|Discussion 2; Eating 1|Eating; "
           "Greeting 2|Greeting; Phoning 3|Phoning 2; Posing 1|Posing; "
           "Purchases 1|Purchases; Sitting 1|Sitting; SittingDown|SittingDown 1; "
           "Smoking 2|Smoking; Photo 1|Photo; Waiting 1|Waiting; Walking 1|Walking; "
           "WalkDog 1|WalkDog; WalkTogether 1|WalkTogether",
}


def _parse_table(rows: Mapping[str, str]) -> Mapping[str, Mapping[str, tuple[str, int]]]:
    classes = h36m_videopose3d.H36M_ACTION_CLASSES
    out = {}
    for subject, row in rows.items():
        pairs = [p.split("|") for p in row.split("; ")]
        assert len(pairs) == len(classes), subject
        names = {}
        for action, (first, second) in zip(classes, pairs):
            names[first] = (action, 1)
            names[second] = (action, 2)
        assert len(names) == 2 * len(classes), subject  # Names are unique per subject.
        out[subject] = types.MappingProxyType(names)
    return types.MappingProxyType(out)


#: ``subject -> file base name -> (action class, sub-action 1|2)`` for S1..S11
#: (metadata.xml ``mapping``; DATASET_FORMATS.md 1.2).
SEQUENCE_NAMES: Mapping[str, Mapping[str, tuple[str, int]]] = _parse_table(_TABLE_ROWS)

# VideoPose3D renames S1's files to the other subjects' names in data_3d_h36m.npz.
_VIDEOPOSE3D_S1 = (("Photo", "TakingPhoto"), ("WalkDog", "WalkingDog"))


def is_all_sequence(name: str) -> bool:
    """Whether ``name`` is an ``_ALL`` (action id 1, "Miscellaneous") sequence."""
    return name.startswith("_ALL")


def sequence_info(subject: str, name: str) -> tuple[str, int]:
    """``(action class, sub-action)`` of sequence ``name`` of ``subject``.

    Looks the name up in :data:`SEQUENCE_NAMES` (S1's ``'TakingPhoto'`` ->
    ``('TakingPhoto', 2)``, S11's ``'Phoning 2'`` -> ``('Phoning', 2)``, S5's
    ``'SittingDown'`` -> ``('SittingDown', 1)``), also accepting VideoPose3D's renaming of
    S1's ``Photo``/``WalkDog`` files. Raises ``ValueError`` for an unknown subject or name.
    """
    table = SEQUENCE_NAMES.get(subject)
    if table is None:
        raise ValueError(f"subject: {subject!r} is not a Human3.6M subject; expected one of "
                         f"{sorted(SEQUENCE_NAMES, key=lambda s: int(s[1:]))}.")
    if name in table:
        return table[name]
    if subject == "S1":
        for vp3d, raw in _VIDEOPOSE3D_S1:
            if name == vp3d or name.startswith(vp3d + " "):
                renamed = raw + name[len(vp3d):]
                if renamed in table:
                    return table[renamed]
    raise ValueError(f"name: {name!r} is not a sequence of {subject} in the metadata.xml "
                     f"table; {subject} has {sorted(table)}.")


# ------------------------------------------------------------------------------------
# Paths and discovery.

def d3_path(subject: str, sequence: str) -> str:
    """``S<n>/MyPoseFeatures/D3_Positions/<seq>.cdf`` (relative to the manual directory)."""
    return f"{subject}/MyPoseFeatures/D3_Positions/{sequence}.cdf"


def mono_path(subject: str, sequence: str, camera_id: str) -> str:
    """``S<n>/MyPoseFeatures/D3_Positions_mono/<seq>.<cam>.cdf``."""
    return f"{subject}/MyPoseFeatures/D3_Positions_mono/{sequence}.{camera_id}.cdf"


def d2_path(subject: str, sequence: str, camera_id: str) -> str:
    """``S<n>/MyPoseFeatures/D2_Positions/<seq>.<cam>.cdf``."""
    return f"{subject}/MyPoseFeatures/D2_Positions/{sequence}.{camera_id}.cdf"


def video_path(subject: str, sequence: str, camera_id: str) -> str:
    """``S<n>/Videos/<seq>.<cam>.mp4``."""
    return f"{subject}/Videos/{sequence}.{camera_id}.mp4"


_SUBJECT_DIR = re.compile(r"S(\d+)")


def find_subjects(root: str | os.PathLike) -> tuple[str, ...]:
    """Subject folders ``S<n>`` of ``root`` that hold ``MyPoseFeatures/D3_Positions``, by n."""
    root = os.fspath(root)
    found = []
    for entry in os.listdir(root) if os.path.isdir(root) else ():
        match = _SUBJECT_DIR.fullmatch(entry)
        if match and os.path.isdir(os.path.join(root, entry, "MyPoseFeatures", "D3_Positions")):
            found.append((int(match.group(1)), entry))
    return tuple(name for _, name in sorted(found))


def find_sequences(root: str | os.PathLike, subject: str) -> tuple[str, ...]:
    """Sequence names of ``subject`` (base names of its D3_Positions ``.cdf`` files), sorted.

    ``_ALL`` sequences are skipped; names missing from the metadata.xml table (a stray
    file) are skipped with a logged warning, so that every output has an action class.
    """
    folder = os.path.join(os.fspath(root), subject, "MyPoseFeatures", "D3_Positions")
    names = sorted(f[:-len(".cdf")] for f in os.listdir(folder) if f.endswith(".cdf"))
    out = []
    for name in names:
        if is_all_sequence(name):
            continue
        try:
            sequence_info(subject, name)
        except ValueError as e:
            _LOG.warning("Skipping %s: %s", os.path.join(folder, name + ".cdf"), e)
            continue
        out.append(name)
    return tuple(out)


def check_release(root: str | os.PathLike, *, videos: bool = False) -> tuple[str, ...]:
    """Checks the raw release under ``root`` and returns its subjects.

    Required: ``metadata.xml`` and at least one subject with D3_Positions ``.cdf`` files;
    with ``videos``, the video of every (subject, sequence, camera). Raises
    :class:`MissingRawFilesError` listing every missing path (for absent subjects, the
    pattern ``S<n>/MyPoseFeatures/D3_Positions/*.cdf`` of each public subject).
    """
    root = os.fspath(root)
    missing = [] if os.path.isfile(os.path.join(root, "metadata.xml")) else ["metadata.xml"]
    subjects = tuple(s for s in find_subjects(root) if find_sequences(root, s))
    if not subjects:
        missing += [f"{s}/MyPoseFeatures/D3_Positions/*.cdf" for s in PUBLIC_SUBJECTS]
    elif videos:
        for subject in subjects:
            for sequence in find_sequences(root, subject):
                missing += [p for p in (video_path(subject, sequence, c) for c in CAMERA_IDS)
                            if not os.path.isfile(os.path.join(root, p))]
    if missing:
        raise MissingRawFilesError(DATASET, root, missing, DOWNLOAD_HINT)
    return subjects


# ------------------------------------------------------------------------------------
# CDF reading.

def read_pose_cdf(path: str | os.PathLike, *, num_coords: int) -> np.ndarray:
    """The ``Pose`` variable of a Human3.6M CDF file as ``(N, 32, num_coords)`` float64.

    Units as stored (mm for D3 files, pixels for D2). Accepts the documented one record
    ``(1, N, 32 * num_coords)`` and a record-less ``(N, 32 * num_coords)``. Raises
    :class:`MalformedRawFileError` naming the file (and ``Pose``) when the file is not a
    CDF file, lacks ``Pose``, has another shape, or holds non-finite values.
    """
    import cdflib

    path = os.fspath(path)
    width = 32 * num_coords
    try:
        cdf = cdflib.CDF(path)
        info = cdf.cdf_info()
        names = list(info.zVariables) + list(info.rVariables)
    except Exception as e:  # cdflib raises OSError / ValueError / struct errors
        raise MalformedRawFileError(
            path, "", f"not a readable CDF file ({type(e).__name__}: {e})") from e
    if "Pose" not in names:
        raise MalformedRawFileError(path, "Pose", f"missing; the file has variables {names}")
    try:
        pose = np.asarray(cdf.varget("Pose"))
    except Exception as e:
        raise MalformedRawFileError(path, "Pose", f"unreadable ({type(e).__name__}: {e})") from e
    if pose.ndim == 3 and pose.shape[0] == 1:
        pose = pose[0]
    if pose.ndim != 2 or pose.shape[1] != width or pose.dtype.kind not in "fiu":
        raise MalformedRawFileError(
            path, "Pose", f"has shape {pose.shape} and dtype {pose.dtype}, expected 1 record "
            f"of (N, {width}) numbers (32 joints x {num_coords} interleaved coordinates)")
    if not np.all(np.isfinite(pose)):
        raise MalformedRawFileError(path, "Pose", "holds non-finite values")
    return pose.astype(np.float64).reshape(-1, 32, num_coords)


def _read_optional(root: str, relpath: str, num_coords: int) -> np.ndarray | None:
    full = os.path.join(root, relpath)
    return read_pose_cdf(full, num_coords=num_coords) if os.path.isfile(full) else None


# ------------------------------------------------------------------------------------
# Cameras and geometry.

def load_cameras(root: str | os.PathLike) -> dict[tuple[str, int], camera_lib.CameraParams]:
    """The cameras of ``root/metadata.xml`` (:func:`h36m_cameras.load_h36m_cameras`).

    A malformed file raises :class:`MalformedRawFileError` naming it and ``w0``.
    """
    path = os.path.join(os.fspath(root), "metadata.xml")
    try:
        return h36m_cameras.load_h36m_cameras(path)
    except ValueError as e:
        raise MalformedRawFileError(path, "w0", str(e)) from e


def to_h36m_17(poses: np.ndarray) -> np.ndarray:
    """``(..., 32, C)`` -> ``(..., 17, C)``: the standard joints (a copy, by joint name)."""
    return skeleton_lib.convert(np.asarray(poses), "h36m_32", "h36m_17")


def _project_views(world: np.ndarray, rig: camera_lib.CameraParams
                   ) -> tuple[np.ndarray, np.ndarray]:
    """World ``(N, J, 3)`` m -> camera frame ``(4, N, J, 3)`` m and pixels ``(4, N, J, 2)``.

    One batched call for the 4 cameras (camera axes line up with the leading view axis),
    so a subject costs one set of compiles, not one per sequence and camera.
    """
    views = np.broadcast_to(world.astype(np.float32)[None], (len(CAMERA_IDS),) + world.shape)
    xyz = camera_lib.world_to_camera(views, rig.rotation, rig.centre)
    uv = camera_lib.project_perspective(xyz, rig.focal, rig.principal, rig.radial,
                                        rig.tangential)
    return np.asarray(xyz, np.float32), np.asarray(uv, np.float32)


def _camera_dict(cam: camera_lib.CameraParams) -> dict[str, np.ndarray]:
    return {f: np.asarray(getattr(cam, f), np.float32) for f in camera_lib.CameraParams._fields}


def _sequence_example(subject: str, sequence: str, c: int, cameras, world_full, cam_full,
                      uv_full, **extra: Any) -> dict[str, Any]:
    """The shared pose-sequence fields of one (subject, sequence, camera); 32 joints in."""
    action, subaction = sequence_info(subject, sequence)
    return {
        "subject": subject,
        "sequence": sequence,
        "action": action,
        "subaction": subaction,
        "camera_index": c,
        "camera_id": CAMERA_IDS[c],
        "camera": _camera_dict(cameras[(subject, c)]),
        "positions_world_full": world_full,
        "positions_camera_full": cam_full,
        "keypoints_2d_full": uv_full,
        "positions_world": to_h36m_17(world_full),
        "positions_camera": to_h36m_17(cam_full),
        "keypoints_2d": to_h36m_17(uv_full),
        **extra,
    }


# ------------------------------------------------------------------------------------
# Raw release: one subject.

def load_subject(root: str | os.PathLike, subject: str,
                 cameras: Mapping[tuple[str, int], camera_lib.CameraParams], *,
                 tolerance_mm: float = MONO_TOLERANCE_MM) -> Iterator[dict[str, Any]]:
    """Yields one dict per (sequence, camera) of ``subject``, sequences sorted, cameras 0..3.

    A generator (so a real subject, ~0.5 GB of arrays, is never held whole): files are
    read and checked as it is iterated; the world files of the subject are read first.

    Per sequence: the world D3_Positions file (required); per camera the
    D3_Positions_mono and D2_Positions files when present. Missing ones are computed from
    the world positions and the metadata.xml camera: ``R (x - centre)`` and the
    Human3.6M projection with distortion (:mod:`jpose.camera`). Mono files are checked
    against that computation (``tolerance_mm``; a larger difference means a wrong camera
    convention or mismatched files and raises :class:`MalformedRawFileError` naming the
    mono file). Frame counts that differ between the files an example uses (world, and
    this camera's mono and D2) are truncated to the shortest (logged).

    Keys of each dict: ``subject``, ``sequence``, ``action``, ``subaction``,
    ``camera_index``, ``camera_id``, ``camera`` (dict of the :class:`CameraParams` fields,
    float32), ``positions_world_full`` / ``positions_camera_full`` ``(F, 32, 3)`` m,
    ``keypoints_2d_full`` ``(F, 32, 2)`` px, the same without ``_full`` for ``h36m_17``,
    ``keypoints_source`` (``'D2_Positions'`` or ``'projected'``),
    ``positions_camera_source`` (``'D3_Positions_mono'`` or ``'computed'``) and
    ``frame_counts`` (frames per file read, ``{'D3_Positions': N, ...}``).
    """
    root = os.fspath(root)
    rig = h36m_cameras.subject_cameras(cameras, subject)
    sequences = find_sequences(root, subject)
    worlds = [read_pose_cdf(os.path.join(root, d3_path(subject, s)), num_coords=3) / 1000.0
              for s in sequences]
    if not worlds:
        return
    # One projection for the whole subject (see _project_views).
    lengths = [len(w) for w in worlds]
    in_cam, pixels = _project_views(np.concatenate(worlds, axis=0), rig)
    starts = np.cumsum([0] + lengths)

    for k, sequence in enumerate(sequences):
        world = worlds[k].astype(np.float32)
        for c, cam_id in enumerate(CAMERA_IDS):
            computed_cam = in_cam[c, starts[k]:starts[k + 1]]
            projected = pixels[c, starts[k]:starts[k + 1]]
            mono_rel = mono_path(subject, sequence, cam_id)
            d2_rel = d2_path(subject, sequence, cam_id)
            mono = _read_optional(root, mono_rel, 3)
            d2 = _read_optional(root, d2_rel, 2)
            counts = {"D3_Positions": len(world)}
            if mono is not None:
                counts["D3_Positions_mono"] = len(mono)
            if d2 is not None:
                counts["D2_Positions"] = len(d2)
            num = min(counts.values())
            if len(set(counts.values())) > 1:
                _LOG.info("%s %r camera %s: frame counts %s differ; truncated to %d.",
                          subject, sequence, cam_id, counts, num)
            if mono is not None:
                diff_mm = float(np.max(np.abs(mono[:num] - computed_cam[:num] * 1000.0),
                                       initial=0.0))
                if diff_mm > tolerance_mm:
                    raise MalformedRawFileError(
                        os.path.join(root, mono_rel), "Pose",
                        f"camera-frame positions differ by up to {diff_mm:.1f} mm (tolerance "
                        f"{tolerance_mm} mm) from {d3_path(subject, sequence)} transformed by "
                        f"metadata.xml camera {cam_id} of {subject} (x_cam = R (x_world - T)); "
                        f"wrong camera conventions or mismatched files")
                cam_xyz = (mono[:num] / 1000.0).astype(np.float32)
            else:
                cam_xyz = computed_cam[:num]
            uv = d2[:num].astype(np.float32) if d2 is not None else projected[:num]
            yield _sequence_example(
                subject, sequence, c, cameras, world[:num], cam_xyz, uv,
                keypoints_source="D2_Positions" if d2 is not None else "projected",
                positions_camera_source="D3_Positions_mono" if mono is not None else "computed",
                frame_counts=counts)


# ------------------------------------------------------------------------------------
# VideoPose3D files.

def videopose3d_files(source: str) -> tuple[str, str]:
    """``('data_3d_h36m.npz', 'data_2d_h36m_<source>.npz')``."""
    return "data_3d_h36m.npz", f"data_2d_h36m_{source}.npz"


def load_videopose3d(root: str | os.PathLike, source: str, *, allow_pickle: bool = False,
                     expected_layout: str | None = None
                     ) -> dict[str, Iterator[dict[str, Any]]]:
    """VideoPose3D's 3D + ``<source>`` 2D files as ``{subject: iterator of example dicts}``.

    Reads ``root/data_3d_h36m.npz`` (32 joints, world, metres), ``root/data_2d_h36m_<source>.npz``
    (pixels, 4 cameras) and ``root/metadata.xml``. The ``.npz`` files hold **pickled**
    dicts, so ``allow_pickle`` must be True; otherwise
    :class:`~jpose.datasets.h36m_videopose3d.PickleNotAllowedError` is raised before any
    ``.npz`` file is opened. Missing files raise :class:`MissingRawFilesError` listing them;
    a 2D file whose ``metadata`` does not describe ``expected_layout`` (a jpose layout
    name) raises :class:`MalformedRawFileError`.

    The files are read (and the subjects found) at once; each subject's examples are
    computed lazily, while its iterator is consumed. Subjects are those with 3D poses and
    at least one sequence with 2D keypoints, ordered S1, S5, ..., S11 (2D-only subjects
    such as S2-S4 in the CPN file are ignored). Each example dict has the keys of
    :func:`load_subject` (``positions_camera_source`` ``'computed'``; ``keypoints_source``
    the 2D file name) with ``keypoints_2d`` the file's 2D converted to ``h36m_17`` by
    joint name (:func:`jpose.skeleton.convert`; joints the layout lacks are synthesised
    as documented there) and ``keypoints_2d_full`` the projection of the 32-joint truth,
    plus ``keypoints_2d_source`` (the file's 2D in its own layout) and
    ``keypoints_layout`` (that layout's jpose name). Sequence names are the file's keys
    (S1's ``Photo``/``WalkDog`` as renamed by VideoPose3D); action classes and
    sub-actions come from the metadata.xml table. Frames: the shorter of 3D and 2D
    (VideoPose3D cuts the few extra 2D frames the same way; 2D shorter than 3D is
    logged). (Subject, sequence) pairs without 2D (e.g. S11 ``Directions`` in detector
    files) are skipped (logged).
    """
    root = os.fspath(root)
    rel_3d, rel_2d = videopose3d_files(source)
    require_paths(DATASET, root, ["metadata.xml", rel_3d, rel_2d], hint=DOWNLOAD_HINT)
    path_3d, path_2d = os.path.join(root, rel_3d), os.path.join(root, rel_2d)
    if not isinstance(allow_pickle, (bool, np.bool_)):
        raise ValueError(f"allow_pickle: expected a bool, got {allow_pickle!r}.")
    if not allow_pickle:
        raise h36m_videopose3d.PickleNotAllowedError(
            f"Refusing to read {path_3d!r} and {path_2d!r}: VideoPose3D .npz files store "
            f"Python dicts as pickled object arrays, and unpickling can execute arbitrary "
            f"code from the file. If you trust these files, build with allow_pickle=True "
            f"(tfds_build.build(..., allow_pickle=True)).")
    cameras = load_cameras(root)
    try:
        (positions_3d,) = h36m_videopose3d._load_pickled_dicts(path_3d, ("positions_3d",))
    except ValueError as e:
        raise MalformedRawFileError(path_3d, "", str(e)) from e
    try:
        positions_2d, metadata = h36m_videopose3d._load_pickled_dicts(
            path_2d, ("positions_2d", "metadata"))
    except ValueError as e:
        raise MalformedRawFileError(path_2d, "", str(e)) from e
    try:
        layout = h36m_videopose3d.infer_keypoints_layout(metadata, source=path_2d)
    except ValueError as e:
        raise MalformedRawFileError(path_2d, "metadata", str(e)) from e
    if expected_layout is not None and layout != expected_layout:
        raise MalformedRawFileError(
            path_2d, "metadata", f"describes joint layout {layout!r}; this config expects "
            f"{expected_layout!r}")

    out = {}
    for subject in sorted(positions_3d, key=h36m_videopose3d._subject_sort_key):
        actions = positions_3d[subject]
        if not isinstance(actions, Mapping):
            raise MalformedRawFileError(path_3d, f"positions_3d[{subject!r}]",
                                        f"is a {type(actions).__name__}, expected a dict")
        if (subject, 0) not in cameras:
            raise MalformedRawFileError(path_3d, f"positions_3d[{subject!r}]",
                                        "is not a Human3.6M subject (no metadata.xml camera)")
        subject_2d = positions_2d.get(subject, {})
        if not isinstance(subject_2d, Mapping):
            raise MalformedRawFileError(path_2d, f"positions_2d[{subject!r}]",
                                        f"is a {type(subject_2d).__name__}, expected a dict")
        sequences = []
        for sequence in sorted(actions):
            if sequence not in subject_2d:
                _LOG.warning("Skipping %s %r: no 2D keypoints in %s.", subject, sequence, path_2d)
                continue
            try:
                sequence_info(subject, sequence)
            except ValueError as e:
                _LOG.warning("Skipping %s positions_3d[%r][%r]: %s", path_3d, subject, sequence, e)
                continue
            sequences.append(sequence)
        if sequences:
            out[subject] = _iter_videopose3d_subject(
                subject, sequences, actions, subject_2d, cameras, layout,
                files=(path_3d, path_2d, rel_3d, rel_2d))
    return out


def _iter_videopose3d_subject(subject, sequences, actions, subject_2d, cameras, layout, *,
                              files) -> Iterator[dict[str, Any]]:
    path_3d, path_2d, rel_3d, rel_2d = files
    num_kp = skeleton_lib.get(layout).num_joints
    clips = []
    for sequence in sequences:
        field_3d = f"positions_3d[{subject!r}][{sequence!r}]"
        world = np.asarray(actions[sequence])
        if world.ndim != 3 or world.shape[1:] != (32, 3) or world.dtype.kind != "f":
            raise MalformedRawFileError(path_3d, field_3d, f"has shape {world.shape} and "
                                        f"dtype {world.dtype}, expected (N, 32, 3) floats")
        views = subject_2d[sequence]
        field_2d = f"positions_2d[{subject!r}][{sequence!r}]"
        if not isinstance(views, (list, tuple)) or len(views) != len(CAMERA_IDS):
            raise MalformedRawFileError(path_2d, field_2d, f"expected a list of "
                                        f"{len(CAMERA_IDS)} arrays (cameras {CAMERA_IDS})")
        views = [np.asarray(v) for v in views]
        for c, v in enumerate(views):
            if v.ndim != 3 or v.shape[1:] != (num_kp, 2) or v.dtype.kind != "f":
                raise MalformedRawFileError(
                    path_2d, f"{field_2d}[{c}]", f"has shape {v.shape} and dtype "
                    f"{v.dtype}, expected (N, {num_kp}, 2) pixels ({layout})")
        clips.append((sequence, world.astype(np.float32), views))
    rig = h36m_cameras.subject_cameras(cameras, subject)
    lengths = [len(w) for _, w, _ in clips]
    in_cam, pixels = _project_views(np.concatenate([w for _, w, _ in clips]), rig)
    starts = np.cumsum([0] + lengths)
    for k, (sequence, world, views) in enumerate(clips):
        for c, cam_id in enumerate(CAMERA_IDS):
            num = min(len(world), len(views[c]))
            if len(views[c]) < len(world):
                _LOG.warning("%s %r camera %s: %d 2D frames < %d 3D frames; truncated.",
                             subject, sequence, cam_id, len(views[c]), len(world))
            detected = views[c][:num].astype(np.float32)
            yield _sequence_example(
                subject, sequence, c, cameras, world[:num],
                in_cam[c, starts[k]:starts[k] + num], pixels[c, starts[k]:starts[k] + num],
                keypoints_2d=skeleton_lib.convert(detected, layout, "h36m_17"),
                keypoints_2d_source=detected,
                keypoints_layout=layout,
                keypoints_source=rel_2d,
                positions_camera_source="computed",
                frame_counts={rel_3d: len(world), rel_2d: len(views[c])})
