"""Readers for the raw MPI-INF-3DHP release (NumPy only; no TFDS).

Layouts and sources: ``shared/DATASET_FORMATS.md`` section 3. Two levels:

* file readers that return what a file stores, in the file's units and joint order
  (:func:`read_annot_mat`, :func:`read_calibration`, :func:`read_test_annot`);
* sequence loaders that return the builder's output convention (:func:`load_training_sequence`,
  :func:`load_test_sequence`): 3D in **metres**, 2D in **pixels**, joints in the jpose
  layouts ``mpi_inf_3dhp_28`` (the 28 stored joints, same order as the files) and
  ``mpi_inf_3dhp_17`` (the 17 "relevant" test joints, 28-joint indices
  :data:`RELEVANT_17`), camera frame x right, y down, z forward.

2D pixels are kept exactly as stored. The release's ``annot2`` is the projection of
``annot3`` with the calibration intrinsics, so keeping it unchanged keeps it consistent
with the ``camera`` parameters; whether the MATLAB tools count pixels from 0 or 1 is
unconfirmed (``DATASET_FORMATS.md``), so no half- or one-pixel shift is applied.

Frame counts: some training sequences have a few more annotation rows than video
frames. :func:`sequence_frame_count` decides how many rows are kept (the known table
:data:`SEQUENCE_INFO`; for sequences not in it the longest video of the sequence; with no
video, all rows).
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import Any, NamedTuple

import numpy as np

from jpose.datasets import raw_files
from jpose.datasets.raw_files import MalformedRawFileError

__all__ = [
    "NUM_CAMERAS",
    "RELEVANT_17",
    "CAMERA_SETS",
    "SEQUENCE_INFO",
    "TEST_IMAGE_SIZES",
    "TEST_FPS",
    "ACTIVITY_NAMES",
    "TEST_DIR",
    "CALIBRATION_HEADER",
    "CalibrationEntry",
    "read_annot_mat",
    "read_calibration",
    "calibration_camera",
    "read_test_annot",
    "estimate_intrinsics",
    "sequence_frame_count",
    "video_path",
    "test_image_path",
    "find_training_sequences",
    "find_test_sequences",
    "test_image_size",
    "load_training_sequence",
    "load_test_sequence",
]

_LOG = logging.getLogger(__name__)

#: Cameras in every ``annot.mat`` (cells ``0..13``).
NUM_CAMERAS = 14

#: The 17 "relevant" joints (test-set order, ``mpi_inf_3dhp_17``) as 0-based indices into
#: the 28 stored joints (``mpi_inf_3dhp_28``); official ``mpii_get_joint_set('relevant')``.
RELEVANT_17: tuple[int, ...] = (7, 5, 14, 15, 16, 9, 10, 11, 23, 24, 25, 18, 19, 20, 4, 3, 6)

#: Camera subsets of the official ``mpii_get_camera_set`` (applied by pipelines, not here).
CAMERA_SETS: Mapping[str, tuple[int, ...]] = MappingProxyType({
    "vnect": (0, 1, 2, 4, 5, 6, 7, 8),
    "mm3d_chest": (0, 2, 4, 7, 8),
    "relevant": tuple(range(11)),
    "ceiling": (11, 12, 13),
    "all": tuple(range(NUM_CAMERAS)),
})

#: (subject, sequence) -> (video frames, fps) of the training set (official
#: ``mpii_get_sequence_info``; same counts in mmpose and metrabs). Rows of ``annot.mat``
#: beyond the count are dropped. Looked up at call time, so tests can replace it.
SEQUENCE_INFO: Mapping[tuple[str, str], tuple[int, float]] = MappingProxyType({
    ("S1", "Seq1"): (6416, 25.0), ("S1", "Seq2"): (12430, 50.0),
    ("S2", "Seq1"): (6502, 25.0), ("S2", "Seq2"): (6081, 25.0),
    ("S3", "Seq1"): (12488, 50.0), ("S3", "Seq2"): (12283, 50.0),
    ("S4", "Seq1"): (6171, 25.0), ("S4", "Seq2"): (6675, 25.0),
    ("S5", "Seq1"): (12820, 50.0), ("S5", "Seq2"): (12312, 50.0),
    ("S6", "Seq1"): (6188, 25.0), ("S6", "Seq2"): (6145, 25.0),
    ("S7", "Seq1"): (6239, 25.0), ("S7", "Seq2"): (6320, 25.0),
    ("S8", "Seq1"): (6468, 25.0), ("S8", "Seq2"): (6054, 25.0),
})

#: Test-set image sizes (width, height) px (mmpose, metrabs); used when the sequence has
#: no images to measure.
TEST_IMAGE_SIZES: Mapping[str, tuple[int, int]] = MappingProxyType({
    "TS1": (2048, 2048), "TS2": (2048, 2048), "TS3": (2048, 2048), "TS4": (2048, 2048),
    "TS5": (1920, 1080), "TS6": (1920, 1080),
})

#: Test-set frame rates. **Unconfirmed** (``DATASET_FORMATS.md``): 25 fps for the studio
#: sequences and 50 fps for the outdoor ones, as commonly assumed.
TEST_FPS: Mapping[str, float] = MappingProxyType({
    "TS1": 25.0, "TS2": 25.0, "TS3": 25.0, "TS4": 25.0, "TS5": 50.0, "TS6": 50.0,
})

#: Test activity ids 1..7 -> name (index ``id - 1``).
ACTIVITY_NAMES: tuple[str, ...] = (
    "Stand/Walk", "Exercise", "Sit on Chair", "Reach/Crouch", "On Floor", "Sports", "Misc")

#: Folder of the test set under the manual directory.
TEST_DIR = "mpi_inf_3dhp_test_set"

CALIBRATION_HEADER = "Skeletool Camera Calibration File V1.0"

# Key order and value count of one camera block of camera.calibration (None: 1 or more).
_CALIBRATION_KEYS: tuple[tuple[str, int | None], ...] = (
    ("name", 1), ("sensor", 2), ("size", 2), ("animated", 1),
    ("intrinsic", 16), ("extrinsic", 16), ("radial", None),
)

_SUBJECT_RE = re.compile(r"^S(\d+)$")
_SEQUENCE_RE = re.compile(r"^Seq(\d+)$")
_TEST_RE = re.compile(r"^TS(\d+)$")


# --------------------------------------------------------------------------------------
# File readers (file units and order).
# --------------------------------------------------------------------------------------


def _cells(value: Any, *, path: str, name: str, columns: int) -> np.ndarray:
    """A MATLAB cell array of per-camera ``(R, columns)`` matrices as ``(C, R, columns)``."""
    a = np.asarray(value)
    if a.dtype != object:
        raise MalformedRawFileError(
            path, name, f"expected a cell array (one cell per camera), got {a.dtype} {a.shape}")
    cells = a.reshape(-1)
    if cells.size == 0:
        raise MalformedRawFileError(path, name, "empty cell array")
    out = []
    for c, cell in enumerate(cells):
        m = raw_files.check_shape(cell, (None, columns), path=path, name=f"{name}{{{c + 1}}}")
        if m.shape[0] != np.asarray(cells[0]).shape[0]:
            raise MalformedRawFileError(
                path, f"{name}{{{c + 1}}}",
                f"has {m.shape[0]} rows, cell 1 has {np.asarray(cells[0]).shape[0]}")
        out.append(m.astype(np.float64))
    return np.stack(out)


def read_annot_mat(path: str | os.PathLike) -> dict[str, np.ndarray | None]:
    """Reads a training ``annot.mat`` (MATLAB v5).

    Returns a dict with (C = cameras in the file, 14 in the release; R = annotation rows):

    * ``cameras`` (C,) int64: camera index of each cell;
    * ``annot2`` (C, R, 28, 2) float64: pixels;
    * ``annot3`` (C, R, 28, 3) float64: each camera's frame, **millimetres**;
    * ``univ_annot3`` (C, R, 28, 3) float64: universal skeleton, camera frame, mm;
    * ``frames`` (R',) int64 or ``None``: the file's frame numbers (not used to index).

    Joint order: the 28 stored joints (``mpi_inf_3dhp_28``).
    """
    path = os.fspath(path)
    data = raw_files.load_mat_v5(path, ["annot2", "annot3", "univ_annot3", "cameras"])
    annot2 = _cells(data["annot2"], path=path, name="annot2", columns=56)
    annot3 = _cells(data["annot3"], path=path, name="annot3", columns=84)
    univ = _cells(data["univ_annot3"], path=path, name="univ_annot3", columns=84)
    cameras = np.asarray(data["cameras"]).reshape(-1)
    if cameras.dtype.kind not in "iuf" or cameras.size != annot2.shape[0]:
        raise MalformedRawFileError(
            path, "cameras", f"expected {annot2.shape[0]} camera indices (one per cell), "
                             f"got {cameras.dtype} {cameras.shape}")
    if len(set(cameras.tolist())) != cameras.size:
        raise MalformedRawFileError(path, "cameras", f"repeated camera indices {cameras.tolist()}")
    for name, a in (("annot3", annot3), ("univ_annot3", univ)):
        if a.shape[:2] != annot2.shape[:2]:
            raise MalformedRawFileError(
                path, name, f"has {a.shape[:2]} (cameras, rows), annot2 has {annot2.shape[:2]}")
    frames = data.get("frames")
    frames = None if frames is None else np.asarray(frames).reshape(-1).astype(np.int64)
    c, r = annot2.shape[:2]
    return {
        "cameras": cameras.astype(np.int64),
        "annot2": annot2.reshape(c, r, 28, 2),
        "annot3": annot3.reshape(c, r, 28, 3),
        "univ_annot3": univ.reshape(c, r, 28, 3),
        "frames": frames,
    }


class CalibrationEntry(NamedTuple):
    """One camera block of ``camera.calibration`` (file units).

    Fields:
      sensor: (2,) sensor size, mm.
      size: (2,) image (width, height), pixels.
      animated: the ``animated`` flag (0 in the release).
      intrinsic: (4, 4) row-major; fx = [0, 0], cx = [0, 2], fy = [1, 1], cy = [1, 2].
      extrinsic: (4, 4) world -> camera ``[R | t; 0 0 0 1]``, ``t`` in **mm**.
      radial: (K,) the ``radial`` values (``0`` in the release).
    """

    sensor: np.ndarray
    size: np.ndarray
    animated: float
    intrinsic: np.ndarray
    extrinsic: np.ndarray
    radial: np.ndarray


def read_calibration(path: str | os.PathLike) -> dict[int, CalibrationEntry]:
    """Parses a training ``camera.calibration`` into ``{camera name: CalibrationEntry}``.

    The file is split into whitespace-separated tokens line by line (so indentation,
    tabs, trailing spaces and CRLF line ends do not matter; blank lines are skipped).
    It checks the header ``Skeletool Camera Calibration File V1.0``, that every block
    has the keys ``name sensor size animated intrinsic extrinsic radial`` in this order,
    the number of values of each key, unique integer names and that the extrinsic has a
    rotation block and last row ``0 0 0 1``. Errors are
    :class:`MalformedRawFileError` naming the file and ``line <n> (<key>)``.
    """
    path = os.fspath(path)
    try:
        with open(path, encoding="utf-8", errors="strict") as f:
            lines = f.read().splitlines()
    except UnicodeDecodeError as e:
        raise MalformedRawFileError(path, "", f"not a text file ({e})") from e
    tokens = [(n + 1, line.split()) for n, line in enumerate(lines)]
    tokens = [(n, t) for n, t in tokens if t]
    if not tokens or " ".join(tokens[0][1]) != CALIBRATION_HEADER:
        got = " ".join(tokens[0][1]) if tokens else "an empty file"
        line = tokens[0][0] if tokens else 1
        raise MalformedRawFileError(path, f"line {line} (header)",
                                    f"expected {CALIBRATION_HEADER!r}, got {got!r}")
    body = tokens[1:]
    block = len(_CALIBRATION_KEYS)
    if not body or len(body) % block:
        raise MalformedRawFileError(
            path, f"line {body[-1][0] if body else tokens[0][0]}",
            f"expected blocks of {block} lines ({' '.join(k for k, _ in _CALIBRATION_KEYS)}), "
            f"got {len(body)} non-blank lines after the header")
    out: dict[int, CalibrationEntry] = {}
    for b in range(0, len(body), block):
        values = {}
        for (key, count), (line_no, toks) in zip(_CALIBRATION_KEYS, body[b: b + block]):
            where = f"line {line_no} ({key})"
            if toks[0] != key:
                raise MalformedRawFileError(path, where, f"expected key {key!r}, got {toks[0]!r}")
            nums = toks[1:]
            if (count is None and not nums) or (count is not None and len(nums) != count):
                want = "at least 1" if count is None else str(count)
                raise MalformedRawFileError(
                    path, where, f"expected {want} number(s), got {len(nums)}: {' '.join(nums)!r}")
            try:
                values[key] = np.array([float(v) for v in nums], np.float64)
            except ValueError as e:
                raise MalformedRawFileError(path, where, f"not a number ({e})") from e
            if not np.isfinite(values[key]).all():
                raise MalformedRawFileError(path, where, "non-finite value")
        name_line = body[b][0]
        name = values["name"][0]
        if name != int(name) or int(name) in out:
            raise MalformedRawFileError(path, f"line {name_line} (name)",
                                        f"expected a new integer camera name, got {name:g}")
        extrinsic = values["extrinsic"].reshape(4, 4)
        rot = extrinsic[:3, :3]
        ext_line = body[b + 5][0]
        if not np.allclose(extrinsic[3], [0, 0, 0, 1]):
            raise MalformedRawFileError(path, f"line {ext_line} (extrinsic)",
                                        f"last row must be 0 0 0 1, got {extrinsic[3]}")
        # Generous tolerance: the file rounds to ~7 digits; this catches column/row
        # mix-ups with the translation, not rounding.
        if not np.allclose(rot @ rot.T, np.eye(3), atol=1e-2):
            raise MalformedRawFileError(path, f"line {ext_line} (extrinsic)",
                                        "the 3x3 block is not a rotation")
        intrinsic = values["intrinsic"].reshape(4, 4)
        if intrinsic[0, 0] <= 0 or intrinsic[1, 1] <= 0:
            raise MalformedRawFileError(path, f"line {body[b + 4][0]} (intrinsic)",
                                        "focal lengths [0] and [5] must be positive")
        out[int(name)] = CalibrationEntry(
            sensor=values["sensor"], size=values["size"], animated=float(values["animated"][0]),
            intrinsic=intrinsic, extrinsic=extrinsic, radial=values["radial"])
    return out


def calibration_camera(entry: CalibrationEntry) -> dict[str, np.ndarray]:
    """The jpose camera (``jpose.camera.CameraParams`` fields, float32) of one block.

    ``rotation`` = extrinsic ``R`` (world -> camera), ``centre = -R^T t / 1000`` metres (the
    file's ``t`` is in mm), focal ``(K[0], K[5])``, principal ``(K[2], K[6])`` of the
    row-major 4x4 intrinsic, ``image_size`` from ``size``. The release has no distortion
    (``radial 0``); non-zero ``radial`` values (model unconfirmed) are copied into
    ``radial`` (first 3), ``tangential`` is zero.
    """
    rot = entry.extrinsic[:3, :3]
    t_mm = entry.extrinsic[:3, 3]
    radial = np.zeros(3)
    k = min(3, entry.radial.size)
    radial[:k] = entry.radial[:k]
    return {
        "rotation": rot.astype(np.float32),
        "centre": (-(rot.T @ t_mm) / 1000.0).astype(np.float32),
        "focal": np.array([entry.intrinsic[0, 0], entry.intrinsic[1, 1]], np.float32),
        "principal": np.array([entry.intrinsic[0, 2], entry.intrinsic[1, 2]], np.float32),
        "radial": radial.astype(np.float32),
        "tangential": np.zeros(2, np.float32),
        "image_size": entry.size.astype(np.float32),
    }


def read_test_annot(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Reads a test ``annot_data.mat`` (MATLAB v7.3 = HDF5, h5py shapes ``(N, 1, 17, C)``).

    Returns ``annot2`` (N, 17, 2) px, ``annot3`` (N, 17, 3) mm and ``univ_annot3``
    (N, 17, 3) mm (float64, ``mpi_inf_3dhp_17`` order), ``valid`` (N,) bool
    (``valid_frame``) and ``activity`` (N,) int32 (``activity_annotation``, 1..7; the
    README's spelling ``activity_annnotation`` is accepted too).
    """
    import h5py

    path = os.fspath(path)
    try:
        with h5py.File(path, "r") as f:
            keys = set(f.keys())
    except Exception as e:
        raise MalformedRawFileError(path, "", f"not a readable MATLAB v7.3 (HDF5) file ({e})") \
            from e
    activity_key = next((k for k in ("activity_annotation", "activity_annnotation") if k in keys),
                        "activity_annotation")
    data = raw_files.load_mat_v73(
        path, ["annot2", "annot3", "univ_annot3", "valid_frame", activity_key])
    annot2 = raw_files.check_shape(data["annot2"], (None, 1, 17, 2), path=path, name="annot2")
    n = annot2.shape[0]
    annot3 = raw_files.check_shape(data["annot3"], (n, 1, 17, 3), path=path, name="annot3")
    univ = raw_files.check_shape(data["univ_annot3"], (n, 1, 17, 3), path=path, name="univ_annot3")
    valid = raw_files.check_shape(np.asarray(data["valid_frame"]).reshape(n, -1), (n, 1),
                                  path=path, name="valid_frame")
    activity = raw_files.check_shape(np.asarray(data[activity_key]).reshape(n, -1), (n, 1),
                                     path=path, name=activity_key)
    return {
        "annot2": annot2[:, 0].astype(np.float64),
        "annot3": annot3[:, 0].astype(np.float64),
        "univ_annot3": univ[:, 0].astype(np.float64),
        "valid": valid[:, 0] != 0,
        "activity": activity[:, 0].astype(np.int32),
    }


def estimate_intrinsics(keypoints_2d, positions_camera) -> tuple[np.ndarray, np.ndarray]:
    """Pinhole ``(focal, principal)`` fitted to 2D/3D correspondences by least squares.

    Solves ``u = fx X/Z + cx`` and ``v = fy Y/Z + cy`` (two independent linear
    least-squares problems, as mmpose does for the uncalibrated test set) over all
    points with finite values and ``Z > 0``. ``keypoints_2d`` (..., 2) px and
    ``positions_camera`` (..., 3) (any length unit) share their leading axes.
    Returns ``focal`` (2,) and ``principal`` (2,) in pixels (float64).
    """
    uv = np.asarray(keypoints_2d, np.float64).reshape(-1, 2)
    xyz = np.asarray(positions_camera, np.float64).reshape(-1, 3)
    if uv.shape[0] != xyz.shape[0]:
        raise ValueError("keypoints_2d and positions_camera: different point counts "
                         f"{uv.shape[0]} vs {xyz.shape[0]}")
    ok = np.isfinite(uv).all(-1) & np.isfinite(xyz).all(-1) & (xyz[:, 2] > 0)
    if ok.sum() < 2:
        raise ValueError("estimate_intrinsics: need at least 2 points in front of the camera, "
                         f"got {int(ok.sum())}")
    uv, xyz = uv[ok], xyz[ok]
    focal, principal = np.zeros(2), np.zeros(2)
    for axis in range(2):
        design = np.stack([xyz[:, axis] / xyz[:, 2], np.ones(len(xyz))], -1)
        (focal[axis], principal[axis]), *_ = np.linalg.lstsq(design, uv[:, axis], rcond=None)
    return focal, principal


# --------------------------------------------------------------------------------------
# Discovery.
# --------------------------------------------------------------------------------------


def video_path(subject: str, sequence: str, camera: int) -> str:
    """Relative path of a training video."""
    return os.path.join(subject, sequence, "imageSequence", f"video_{camera}.avi")


def test_image_path(test_dir: str, frame: int) -> str:
    """Relative path of test frame ``frame`` (0-based) under test sequence dir ``test_dir``."""
    return os.path.join(test_dir, "imageSequence", f"img_{frame + 1:06d}.jpg")


def _numbered_dirs(parent: str, pattern: re.Pattern) -> list[str]:
    if not os.path.isdir(parent):
        return []
    names = [n for n in os.listdir(parent)
             if pattern.match(n) and os.path.isdir(os.path.join(parent, n))]
    return sorted(names, key=lambda n: int(pattern.match(n).group(1)))


def find_training_sequences(manual_dir: str | os.PathLike) -> list[tuple[str, str]]:
    """``(subject, sequence)`` of the training folders ``S<k>/Seq<j>``, sorted numerically.

    A subject folder without any ``Seq<j>`` folder is reported as ``(subject, "")``, so
    that callers can list its expected files as missing.
    """
    manual_dir = os.fspath(manual_dir)
    out = []
    for subject in _numbered_dirs(manual_dir, _SUBJECT_RE):
        seqs = _numbered_dirs(os.path.join(manual_dir, subject), _SEQUENCE_RE)
        out.extend((subject, s) for s in seqs or [""])
    return out


def find_test_sequences(manual_dir: str | os.PathLike) -> list[tuple[str, str]] | None:
    """``(name, relative dir)`` of the test sequences ``TS<k>``; ``None`` without a test folder.

    Accepts ``mpi_inf_3dhp_test_set/TS<k>`` and, if that has none, a doubled
    ``mpi_inf_3dhp_test_set/mpi_inf_3dhp_test_set/TS<k>`` (zip layout unconfirmed).
    """
    manual_dir = os.fspath(manual_dir)
    for rel in (TEST_DIR, os.path.join(TEST_DIR, TEST_DIR)):
        found = _numbered_dirs(os.path.join(manual_dir, rel), _TEST_RE)
        if found:
            return [(n, os.path.join(rel, n)) for n in found]
    return [] if os.path.isdir(os.path.join(manual_dir, TEST_DIR)) else None


def test_image_size(manual_dir: str | os.PathLike, name: str, rel_dir: str) -> tuple[int, int]:
    """(width, height) of a test sequence: its first image, else :data:`TEST_IMAGE_SIZES`."""
    from PIL import Image

    folder = os.path.join(os.fspath(manual_dir), rel_dir, "imageSequence")
    images = sorted(n for n in os.listdir(folder) if n.endswith(".jpg")) \
        if os.path.isdir(folder) else []
    if images:
        path = os.path.join(folder, images[0])
        try:
            with Image.open(path) as im:
                return im.size
        except Exception as e:
            raise MalformedRawFileError(path, "", f"not a readable image ({e})") from e
    if name in TEST_IMAGE_SIZES:
        return TEST_IMAGE_SIZES[name]
    raise MalformedRawFileError(os.path.join(os.fspath(manual_dir), rel_dir), "imageSequence",
                                f"no images to measure and {name} is not a known test sequence")


def _video_fps(path: str) -> float:
    """The video's average frame rate (25 if the container does not say)."""
    import av

    try:
        with av.open(path) as container:
            rate = container.streams.video[0].average_rate
    except Exception as e:  # av.error.InvalidDataError, IndexError (no video stream), ...
        raise MalformedRawFileError(path, "", f"not a readable video ({type(e).__name__}: {e})") \
            from e
    return float(rate) if rate else 25.0


def sequence_frame_count(manual_dir: str | os.PathLike, subject: str, sequence: str, *,
                         num_rows: int) -> tuple[int, float, str]:
    """``(frames kept, fps, source)`` of a training sequence with ``num_rows`` annotation rows.

    * In :data:`SEQUENCE_INFO`: its count (rows beyond it are the known surplus
      annotations without video) and fps; ``source = "table"``.
    * Otherwise, if any ``imageSequence/video_<c>.avi`` exists: the largest decoded frame
      count among them (one short camera must not truncate the others' poses) and the
      first video's frame rate; ``source = "video"``.
    * Otherwise all rows at 25 fps; ``source = "rows"``.

    The count is capped at ``num_rows``.
    """
    manual_dir = os.fspath(manual_dir)
    info = SEQUENCE_INFO.get((subject, sequence))
    if info is not None:
        frames, fps = info
        if frames > num_rows:
            _LOG.warning("%s/%s: annot.mat has %d rows, fewer than the table's %d frames",
                         subject, sequence, num_rows, frames)
        return min(int(frames), num_rows), float(fps), "table"
    from jpose.datasets import video_frames

    videos = [os.path.join(manual_dir, video_path(subject, sequence, c))
              for c in range(NUM_CAMERAS)]
    videos = [v for v in videos if os.path.exists(v)]
    if videos:
        frames = max(video_frames.count_frames(v) for v in videos)
        return min(frames, num_rows), _video_fps(videos[0]), "video"
    return num_rows, 25.0, "rows"


# --------------------------------------------------------------------------------------
# Sequence loaders (output convention).
# --------------------------------------------------------------------------------------


def load_training_sequence(manual_dir: str | os.PathLike, subject: str, sequence: str, *,
                           cameras: Sequence[int] | None = None,
                           calibration: bool = True) -> dict[str, Any]:
    """One training sequence in the output convention, per selected camera.

    Args:
      manual_dir: the release root.
      subject, sequence: e.g. ``"S1"``, ``"Seq2"``.
      cameras: camera indices to keep (``None``: every camera of ``annot.mat``); an index
        not in the file raises :class:`MalformedRawFileError` naming ``cameras``.
      calibration: read ``camera.calibration`` for the world frame and the cameras.

    Returns a dict (C = selected cameras, F = kept frames, see :func:`sequence_frame_count`):
      ``cameras`` (C,) int64; ``num_frames`` F; ``num_rows`` rows in the file; ``fps``;
      ``frame_count_source``; ``positions_camera_full`` (C, F, 28, 3) m;
      ``keypoints_2d_full`` (C, F, 28, 2) px; ``positions_camera_universal`` (C, F, 17, 3) m
      (``univ_annot3`` at the 17 relevant joints); and with ``calibration``:
      ``positions_world_full`` (C, F, 28, 3) m ``= R^T x_cam + centre`` and ``camera``, a
      list of C dicts of :func:`calibration_camera`. All float32.
    """
    manual_dir = os.fspath(manual_dir)
    annot_path = os.path.join(manual_dir, subject, sequence, "annot.mat")
    annot = read_annot_mat(annot_path)
    file_cameras = annot["cameras"].tolist()
    if cameras is None:
        cameras = file_cameras
    missing = [c for c in cameras if c not in file_cameras]
    if missing:
        raise MalformedRawFileError(annot_path, "cameras",
                                    f"has no cells for cameras {missing}; it has {file_cameras}")
    cells = [file_cameras.index(c) for c in cameras]
    num_rows = annot["annot2"].shape[1]
    frames, fps, source = sequence_frame_count(manual_dir, subject, sequence, num_rows=num_rows)
    relevant = np.asarray(RELEVANT_17)
    univ = annot["univ_annot3"][cells, :frames][:, :, relevant]
    out: dict[str, Any] = {
        "cameras": np.asarray(cameras, np.int64),
        "num_frames": frames,
        "num_rows": num_rows,
        "fps": fps,
        "frame_count_source": source,
        "positions_camera_full": (annot["annot3"][cells, :frames] / 1000.0).astype(np.float32),
        "keypoints_2d_full": annot["annot2"][cells, :frames].astype(np.float32),
        "positions_camera_universal": (univ / 1000.0).astype(np.float32),
    }
    if calibration:
        calib_path = os.path.join(manual_dir, subject, sequence, "camera.calibration")
        calib = read_calibration(calib_path)
        absent = [c for c in cameras if c not in calib]
        if absent:
            raise MalformedRawFileError(calib_path, "name",
                                        f"no block for cameras {absent}; it has {sorted(calib)}")
        out["camera"] = [calibration_camera(calib[c]) for c in cameras]
        world = []
        for k, c in enumerate(cameras):
            rot = calib[c].extrinsic[:3, :3]
            t_mm = calib[c].extrinsic[:3, 3]
            # x_cam = R x_world + t (mm)  =>  x_world = R^T (x_cam - t).
            x_cam_mm = annot["annot3"][cells[k], :frames]
            world.append(((x_cam_mm - t_mm) @ rot) / 1000.0)
        out["positions_world_full"] = np.stack(world).astype(np.float32) if world else \
            np.zeros((0, frames, 28, 3), np.float32)
    return out


def load_test_sequence(manual_dir: str | os.PathLike, name: str, rel_dir: str) -> dict[str, Any]:
    """One test sequence in the output convention.

    Returns ``positions_camera`` (N, 17, 3) m, ``keypoints_2d`` (N, 17, 2) px,
    ``positions_camera_universal`` (N, 17, 3) m (float32, ``mpi_inf_3dhp_17``), ``valid``
    (N,) bool, ``activity`` (N,) int32, ``fps`` (:data:`TEST_FPS`, unconfirmed; 25 for
    unknown names) and ``camera`` (:func:`calibration_camera`-style dict): the test set has
    no calibration, so the world frame is the camera frame (identity rotation, zero
    centre) and ``focal``/``principal`` are least-squares estimates from ``annot2`` and
    ``annot3`` over the valid frames (all frames if none is valid)
    (:func:`estimate_intrinsics`), ``image_size`` from :func:`test_image_size`.
    """
    manual_dir = os.fspath(manual_dir)
    path = os.path.join(manual_dir, rel_dir, "annot_data.mat")
    data = read_test_annot(path)
    use = data["valid"] if data["valid"].any() else np.ones_like(data["valid"])
    try:
        focal, principal = estimate_intrinsics(data["annot2"][use], data["annot3"][use])
    except ValueError as e:
        raise MalformedRawFileError(path, "annot2/annot3",
                                    f"cannot estimate the intrinsics: {e}") from e
    width, height = test_image_size(manual_dir, name, rel_dir)
    return {
        "positions_camera": (data["annot3"] / 1000.0).astype(np.float32),
        "keypoints_2d": data["annot2"].astype(np.float32),
        "positions_camera_universal": (data["univ_annot3"] / 1000.0).astype(np.float32),
        "valid": data["valid"],
        "activity": data["activity"],
        "fps": float(TEST_FPS.get(name, 25.0)),
        "camera": {
            "rotation": np.eye(3, dtype=np.float32),
            "centre": np.zeros(3, np.float32),
            "focal": focal.astype(np.float32),
            "principal": principal.astype(np.float32),
            "radial": np.zeros(3, np.float32),
            "tangential": np.zeros(2, np.float32),
            "image_size": np.array([width, height], np.float32),
        },
    }
