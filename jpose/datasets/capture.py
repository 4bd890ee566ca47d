"""Your own multi-camera capture: a calibration and one detector output per camera.

A calibrated, synchronised multi-camera recording becomes one
:class:`~jpose.datasets.multiview.SequenceRecord` per camera -- the records the
multi-view stream (``streams.<name>.source = "multiview"``, :mod:`jpose.training.streams`)
groups by ``(subject, sequence)`` -- read from the files as the tools write them:

* the **calibration**: an Anipose / Pose2Sim TOML (:func:`jpose.calibration.read_calibration`:
  intrinsics, OpenCV distortion, world-to-camera extrinsics; cameras matched by their
  ``name`` field);
* per camera, **2D detections**: anything :func:`jpose.detections.read` reads (an
  OpenPose ``--write_json`` directory, COCO / AlphaPose JSON, MediaPipe arrays, a jpose
  keypoint ``.npz``), or a jpose user-sequences ``.npz``
  (:mod:`jpose.datasets.user_sequences`, one sequence), which may carry 3D labels.

:func:`load_manifest` reads a capture named by a small **manifest** file (TOML, or JSON
with the same keys), which is what a training config lists (``data.capture``) and what
``launch/triangulate.py --capture`` takes; :func:`load_capture` does the same from
arguments.

Manifest (``capture.toml``; relative paths are relative to the manifest's directory)
-----------------------------------------------------------------------------------
::

    calibration = "calibration.toml"   # Anipose / Pose2Sim calibration
    sequence = "walk_1"                # optional; default the manifest's file stem
    subject = "P1"                     # optional; default the sequence name
    fps = 30                           # optional; default the files' fps, else 50

    [cameras]                          # calibration camera name -> its detector output
    cam_1 = "openpose/cam_1/"
    cam_2 = "openpose/cam_2/"
    cam_3 = "cam_3.npz"

==================  ===================================================================
key                 meaning
==================  ===================================================================
``calibration``     **required.** The calibration TOML.
``cameras``         **required.** A table: every camera ``name`` of the calibration ->
                    the path of that camera's detector output (a file or an OpenPose
                    directory). Every calibrated camera needs one; a name the
                    calibration does not have is an error.
``sequence``        optional string, the record's ``action`` (the multi-view group);
                    default the manifest's file stem.
``subject``         optional string, the person filmed; default the sequence name.
``fps``             optional positive number, frames per second; default the
                    user-sequences files' ``fps`` (all equal), else 50.
``layout``          optional jpose layout of the detections where the files cannot tell
                    it (``"openpose_body25b"`` for OpenPose BODY_25B, an ``.npz`` without
                    ``layout``); every camera's detections must be in one layout.
``units``           optional ``"m"``, ``"cm"`` or ``"mm"``: the calibration's translation
                    unit (default: the file's ``[metadata] units`` or the inference of
                    :func:`~jpose.calibration.read_calibration`).
``person``          optional track id in every camera (an integer), or a table camera
                    name -> track id (track ids are per file); default each camera's
                    largest track (:func:`jpose.detections.select_track`).
``min_confidence``  optional number in [0, 1], default 0.3: joints below it (or missing)
                    are filled over time.
``fill``            optional ``"linear"`` (default) or ``"low_rank"``
                    (:mod:`jpose.detections.fill`).
==================  ===================================================================

Any other key is an error, so a misspelt ``camera`` cannot go unnoticed. Errors are one
line naming the file and the key (``capture.toml: cameras.cam_9: unknown camera ...``).

Time alignment
--------------
The videos are taken as synchronised: frame number ``n`` of every camera (the OpenPose
file number, a COCO image id's number, an ``.npz``'s ``frames`` or row) is the same
instant, as Anipose and Pose2Sim assume. The capture spans the frames every camera's
track covers, from the latest first frame to the earliest last one (a camera's track runs
from its first to its last detection of the person); frames outside are dropped with a
logged warning that says how many per camera, and cameras that do not overlap at all are
an error. Inside, the timeline is every frame number any camera has; a camera without a
file (or a detection) at one of them has a missing entry there.

2D processing
-------------
As ``launch/lift.py`` does: joints missing or below ``min_confidence`` are filled over
time (``fill``; :func:`jpose.detections.fill_linear` with the layout's fallbacks for
joints never seen), never used at their stored coordinates, and their **confidence is
kept** (0 where missing), so every consumer can weigh or mask them (the multi-view losses
weight by it; :func:`triangulate_capture` ignores entries below ``min_confidence``). A
camera with no joint above ``min_confidence`` in the whole capture is an error.

Labels
------
A capture is *labelled* when every camera's file is a user-sequences ``.npz`` with
``poses_3d`` (metres, that camera's frame), *unlabelled* when none is (a mix is an
error). The labels of different cameras, taken to the calibration's world frame
(``x_world = R^T x_cam + c``), must agree (median distance 1 cm), which catches cameras
matched to the wrong files. A user-sequences file's camera fields (``image_size``,
``focal_length`` / ``K``, ``principal_point``, ``distortion``) are optional, but when
given must agree with the calibration (which is used).

Records (one per calibrated camera, calibration order)
------------------------------------------------------
* ``subject``, ``action`` = the sequence name, ``camera_index`` = the camera's index in
  the calibration, ``fps``.
* ``camera``: the calibration's camera (:class:`jpose.camera.CameraParams`, NumPy
  float32, no leading axis; extrinsics world -> camera, centre in metres; OpenCV
  tangential distortion mapped as :mod:`jpose.calibration` documents, the exact
  coefficients being in :attr:`Capture.calibration`).
* ``keypoints`` (T, J, 2) float32 pixels, filled as above; ``confidence`` (T, J) float32,
  the detector's; ``outlier`` all False.
* Labelled: ``positions_camera`` = the file's ``poses_3d``, ``positions_world`` = its
  world-frame transform; ``keypoints_clean``, ``visible`` and ``keypoints_layout`` as
  :mod:`jpose.datasets.user_sequences` sets them; ``valid`` None.
* Unlabelled, as user sequences without ``poses_3d``: ``positions_camera =
  positions_world`` are zero placeholders (T, J, 3) in the keypoints' layout,
  ``keypoints_clean`` = ``keypoints``, ``visible = confidence > 0``, ``keypoints_layout``
  None; and ``valid`` (T,) is **all False** (no frame has 3D to be scored against), which
  :func:`has_3d` reads and the training streams use to keep these placeholders out of
  every 3D metric and out of the labelled split.

Triangulation baseline
----------------------
:func:`triangulate_capture` triangulates a capture with :func:`jpose.triangulation.triangulate`
(exact OpenCV undistortion, confidence-weighted DLT); :func:`dlt_baseline` scores that
geometric baseline under the Human3.6M protocols on labelled multi-view records (e.g.
``make_multiview_dataset().split("test")``), the numbers a multi-view recipe is compared
to.

Everything here is NumPy (host-side data loading) except the triangulation and the
projection of labels in another layout, which run :mod:`jax.numpy`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import tomllib
from collections.abc import Mapping
from typing import Any, NamedTuple

import numpy as np

from jpose import calibration as calibration_lib
from jpose import camera as camera_lib
from jpose import io as io_lib
from jpose import skeleton as skeleton_lib
from jpose.datasets import user_sequences
from jpose.datasets.multiview import SequenceRecord

__all__ = [
    "MANIFEST_KEYS",
    "FILLS",
    "Manifest",
    "Capture",
    "DLTBaseline",
    "read_manifest",
    "load_manifest",
    "load_capture",
    "has_3d",
    "triangulate_capture",
    "dlt_baseline",
]

_LOG = logging.getLogger(__name__)

#: Every key a manifest may hold.
MANIFEST_KEYS = ("calibration", "cameras", "sequence", "subject", "fps", "layout", "units",
                 "person", "min_confidence", "fill")
#: ``fill`` values.
FILLS = ("linear", "low_rank")
#: Default ``min_confidence``.
DEFAULT_MIN_CONFIDENCE = 0.3
# Fields only a user-sequences file has: an .npz with one of them is read as one.
_USER_ONLY_FIELDS = ("focal_length", "K", "principal_point", "distortion", "poses_3d",
                     "poses_3d_layout", "lengths", "fps", "sequence", "subject")
# Labels of two cameras, in the world frame, may differ by this much (median, metres).
_LABEL_AGREEMENT_M = 0.01
# How far a user file's intrinsics may be from the calibration's.
_PIXEL_TOL = 0.5
_DISTORTION_TOL = 1e-4


class Manifest(NamedTuple):
    """A manifest's contents (module docstring), paths resolved against its directory."""

    path: str
    calibration: str
    cameras: dict[str, str]
    sequence: str
    subject: str | None
    fps: float | None
    layout: str | None
    units: str | None
    person: int | dict[str, int] | None
    min_confidence: float
    fill: str


class Capture(NamedTuple):
    """What :func:`load_capture` / :func:`load_manifest` return.

    Attributes:
      records: one per calibrated camera, calibration order, frame-aligned (module
        docstring, *Records*).
      labelled: whether the records carry 3D labels.
      keypoints_layout: layout of every record's ``keypoints`` / ``confidence``.
      layout_3d: layout of the labels (``positions_*``); None for unlabelled captures
        (their zero placeholders are in ``keypoints_layout``; see :attr:`records_layout`).
      calibration: the calibration read (exact OpenCV ``distortions`` for triangulation).
      frames: (T,) int64 frame numbers of the aligned timeline.
      filled: (V, T, J) bool, entries filled over time (missing or below
        ``min_confidence``).
      sources: the detector output read for each record's camera.
      min_confidence: the threshold used.
    """

    records: tuple[SequenceRecord, ...]
    labelled: bool
    keypoints_layout: str
    layout_3d: str | None
    calibration: calibration_lib.Calibration
    frames: np.ndarray
    filled: np.ndarray
    sources: tuple[str, ...]
    min_confidence: float

    @property
    def records_layout(self) -> str:
        """The records' main (3D) layout, as :attr:`UserSequences.records_layout`."""
        return self.layout_3d if self.layout_3d is not None else self.keypoints_layout


def has_3d(record: SequenceRecord) -> bool:
    """Whether ``record`` carries 3D labels: False for an unlabelled capture's (or any
    record whose ``valid`` marks no frame)."""
    return record.valid is None or bool(np.any(record.valid))


# ---------------------------------------------------------------------------- manifest


def _manifest_error(path: str, key: str, message: str) -> ValueError:
    return ValueError(f"{path}: {key}: {message}")


def read_manifest(path: str | os.PathLike) -> Manifest:
    """Reads a capture manifest (TOML, or JSON by its ``.json`` extension; module
    docstring). Checks the keys and their types; the files named are read by
    :func:`load_manifest`.

    Raises:
      FileNotFoundError: no such manifest.
      ValueError: not TOML / JSON, an unknown key, or a malformed value (one line naming
        the file and the key).
    """
    path = os.fspath(path)
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except FileNotFoundError:
        raise FileNotFoundError(f"capture manifest not found: {path!r}") from None
    if path.lower().endswith(".json"):
        try:
            doc = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as err:
            raise ValueError(f"{path}: not a valid JSON file ({err})") from None
        if not isinstance(doc, dict):
            raise ValueError(f"{path}: expected a JSON object with keys {list(MANIFEST_KEYS)}")
    else:
        try:
            doc = tomllib.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, tomllib.TOMLDecodeError) as err:
            raise ValueError(f"{path}: not a valid TOML file ({err})") from None
    unknown = sorted(set(doc) - set(MANIFEST_KEYS))
    if unknown:
        raise _manifest_error(path, ", ".join(unknown), f"unknown key(s); a capture "
                              f"manifest holds only {list(MANIFEST_KEYS)}")
    base = os.path.dirname(os.path.abspath(path))

    def resolve(p: str) -> str:
        return p if os.path.isabs(p) else os.path.join(base, p)

    def text(key: str, default=None) -> str | None:
        value = doc.get(key, default)
        if value is not None and (not isinstance(value, str) or not value):
            raise _manifest_error(path, key, f"expected a non-empty string, got {value!r}")
        return value

    calib = text("calibration")
    if calib is None:
        raise _manifest_error(path, "calibration", "missing; expected the path of the "
                              "Anipose / Pose2Sim calibration TOML")
    cameras = doc.get("cameras")
    if not isinstance(cameras, dict) or not cameras:
        raise _manifest_error(path, "cameras", f"expected a table camera name -> detector "
                              f"output path ([cameras] cam_1 = \"openpose_cam1/\"), got "
                              f"{cameras!r}")
    for name, value in cameras.items():
        if not isinstance(value, str) or not value:
            raise _manifest_error(path, f"cameras.{name}", f"expected a path (string), got "
                                  f"{value!r}")
    fps = doc.get("fps")
    if fps is not None and (isinstance(fps, bool) or not isinstance(fps, (int, float))
                            or not np.isfinite(fps) or fps <= 0):
        raise _manifest_error(path, "fps", f"expected a positive number, got {fps!r}")
    person = doc.get("person")
    if isinstance(person, dict):
        for name, value in person.items():
            if isinstance(value, bool) or not isinstance(value, int):
                raise _manifest_error(path, f"person.{name}", f"expected a track id "
                                      f"(integer), got {value!r}")
    elif person is not None and (isinstance(person, bool) or not isinstance(person, int)):
        raise _manifest_error(path, "person", f"expected a track id (integer) or a table "
                              f"camera name -> track id, got {person!r}")
    min_conf = doc.get("min_confidence", DEFAULT_MIN_CONFIDENCE)
    if isinstance(min_conf, bool) or not isinstance(min_conf, (int, float)) or not (
            0 <= min_conf <= 1):
        raise _manifest_error(path, "min_confidence", f"expected a number in [0, 1], got "
                              f"{min_conf!r}")
    fill = text("fill", "linear")
    if fill not in FILLS:
        raise _manifest_error(path, "fill", f"expected one of {FILLS}, got {fill!r}")
    layout = text("layout")
    if layout is not None and layout not in skeleton_lib.LAYOUTS:
        raise _manifest_error(path, "layout", f"unknown layout {layout!r}; expected one of "
                              f"{sorted(skeleton_lib.LAYOUTS)}")
    units = text("units")
    if units is not None and units not in calibration_lib.UNITS:
        raise _manifest_error(path, "units", f"expected one of "
                              f"{sorted(calibration_lib.UNITS)}, got {units!r}")
    stem = os.path.splitext(os.path.basename(path))[0]
    return Manifest(
        path=path, calibration=resolve(calib),
        cameras={str(k): resolve(v) for k, v in cameras.items()},
        sequence=text("sequence") or stem, subject=text("subject"),
        fps=None if fps is None else float(fps), layout=layout, units=units,
        person=dict(person) if isinstance(person, dict) else person,
        min_confidence=float(min_conf), fill=fill)


def load_manifest(path: str | os.PathLike) -> Capture:
    """The capture a manifest names (module docstring); errors name the manifest's keys."""
    m = read_manifest(path)
    if not os.path.exists(m.calibration):
        raise FileNotFoundError(f"{m.path}: calibration: {m.calibration!r} does not exist")
    return _load(m.calibration, m.cameras, layout=m.layout, person=m.person,
                 subject=m.subject, sequence=m.sequence, fps=m.fps, units=m.units,
                 min_confidence=m.min_confidence, fill=m.fill,
                 field=lambda key: f"{m.path}: {key}", table=f"{m.path} [cameras]")


def load_capture(calibration: str | os.PathLike | calibration_lib.Calibration,
                 detections: Mapping[str, str | os.PathLike], *,
                 layout: str | None = None, person: int | Mapping[str, int] | None = None,
                 subject: str | None = None, sequence: str | None = None,
                 fps: float | None = None, units: str | None = None,
                 min_confidence: float = DEFAULT_MIN_CONFIDENCE,
                 fill: str = "linear") -> Capture:
    """Reads a multi-camera capture (module docstring) from its files.

    Args:
      calibration: an Anipose / Pose2Sim calibration TOML, or a read
        :class:`~jpose.calibration.Calibration`.
      detections: camera name (the calibration's ``name`` fields) -> detector output, one
        for every calibrated camera.
      layout: the detections' layout where the files cannot tell it.
      person: a track id for every camera, or camera name -> track id; None: each
        camera's largest track.
      subject, sequence: the records' names (default: the calibration file's stem for the
        sequence, the sequence for the subject).
      fps: frames per second (default: the user-sequences files', else 50).
      units: the calibration's translation unit (``read_calibration(units=)``).
      min_confidence: joints below it are filled over time (their confidence is kept).
      fill: ``"linear"`` or ``"low_rank"``.

    Returns:
      :class:`Capture`.

    Raises:
      FileNotFoundError: a file does not exist.
      ValueError: one line naming the file and field: unknown camera names, a camera
        without detections, layouts that differ between cameras, image sizes or
        intrinsics that contradict the calibration, cameras that never overlap in time,
        labels in some cameras only or disagreeing between cameras.
    """
    if isinstance(calibration, calibration_lib.Calibration):
        default = calibration.path or "capture"
    else:
        default = os.fspath(calibration)
    default = os.path.splitext(os.path.basename(default))[0] or "capture"
    return _load(calibration, detections, layout=layout, person=person, subject=subject,
                 sequence=sequence or default, fps=fps, units=units,
                 min_confidence=min_confidence, fill=fill,
                 field=lambda key: key.replace("cameras.", "detections.", 1),
                 table="detections")


# ----------------------------------------------------------------------------- reading


class _View(NamedTuple):
    """One camera's detections before alignment."""

    keypoints: np.ndarray  # (T, J, 2) float64 px, NaN missing
    confidence: np.ndarray  # (T, J) float64, 0 missing
    frames: np.ndarray  # (T,) int64 frame numbers
    layout: str
    poses_3d: np.ndarray | None  # (T, J3, 3) float64 m, camera frame
    layout_3d: str | None
    fps: float | None


@contextlib.contextmanager
def _no_default_intrinsics_warning():
    """The user-sequences reader warns when a file has no focal length; in a capture the
    calibration gives it, so the warning would mislead."""
    class _Drop(logging.Filter):
        def filter(self, record):
            return "no focal_length or K" not in record.getMessage()

    logger = logging.getLogger(user_sequences.__name__)
    drop = _Drop()
    logger.addFilter(drop)
    try:
        yield
    finally:
        logger.removeFilter(drop)


def _camera_of(calib: calibration_lib.Calibration, index: int) -> camera_lib.CameraParams:
    return camera_lib.CameraParams(*(np.asarray(f, np.float32)[index] for f in calib.cameras))


def _read_user_file(path: str, arrays: dict, *, where: str, layout: str | None,
                    cam: camera_lib.CameraParams) -> _View:
    """A user-sequences ``.npz`` of one sequence, its intrinsics checked against ``cam``."""
    with _no_default_intrinsics_warning():
        loaded = user_sequences.load_user_sequences(path, layout=layout,
                                                    require_intrinsics=False)
    if len(loaded.records) != 1:
        raise ValueError(f"{where}: {path} holds {len(loaded.records)} sequences; a capture "
                         "takes one sequence per camera")
    r = loaded.records[0]
    given = {"image_size": cam.image_size}
    if "K" in arrays or "focal_length" in arrays:
        given["focal_length"] = cam.focal
    if "K" in arrays or "principal_point" in arrays:
        given["principal_point"] = cam.principal
    for key, want in given.items():
        got = {"image_size": r.camera.image_size, "focal_length": r.camera.focal,
               "principal_point": r.camera.principal}[key]
        if np.max(np.abs(np.asarray(got, np.float64) - want)) > _PIXEL_TOL:
            field = "K" if key != "image_size" and "K" in arrays else key
            raise ValueError(f"{where}: {path}: {field}: {np.asarray(got).tolist()} px "
                             f"contradicts the calibration's {np.asarray(want).tolist()}")
    if "distortion" in arrays:
        got = np.concatenate([r.camera.radial, r.camera.tangential])
        want = np.concatenate([cam.radial, cam.tangential])
        if np.max(np.abs(got - want)) > _DISTORTION_TOL:
            raise ValueError(f"{where}: {path}: distortion: {got.tolist()} (Human3.6M k1 k2 "
                             f"k3 p1 p2) contradicts the calibration's {want.tolist()}")
    num = r.keypoints.shape[0]
    return _View(
        keypoints=np.asarray(r.keypoints, np.float64),
        confidence=np.asarray(r.confidence, np.float64),
        frames=np.arange(num, dtype=np.int64), layout=loaded.keypoints_layout,
        poses_3d=(np.asarray(r.positions_camera, np.float64) if loaded.labelled else None),
        layout_3d=loaded.layout_3d, fps=float(r.fps) if "fps" in arrays else None)


def _read_view(path: str, *, where: str, layout: str | None, person,
               cam: camera_lib.CameraParams) -> _View:
    from jpose import detections

    if not os.path.exists(path):
        raise FileNotFoundError(f"{where}: {path!r} does not exist")
    if path.lower().endswith(".npz") and os.path.isfile(path):
        arrays = io_lib.load_npz(path, what="detections file")
        if any(k in arrays for k in _USER_ONLY_FIELDS):
            if person is not None:
                raise ValueError(f"{where}: {path} is a user-sequences file (one person); "
                                 "person does not apply to it")
            return _read_user_file(path, arrays, where=where, layout=layout, cam=cam)
    dets = detections.read(path, layout=layout)
    if not dets.tracks:
        raise ValueError(f"{where}: {path} has no detections (no person in any frame)")
    try:
        track = detections.select_track(dets, person)
    except ValueError as e:
        raise ValueError(f"{where}: {e}") from None
    if dets.image_size is not None:
        size = np.asarray(dets.image_size, np.float64)
        if np.max(np.abs(size - cam.image_size)) > _PIXEL_TOL:
            raise ValueError(f"{where}: {path}: image size {size.tolist()} contradicts the "
                             f"calibration's size {np.asarray(cam.image_size).tolist()}")
    return _View(np.asarray(track.keypoints, np.float64),
                 np.asarray(track.confidence, np.float64),
                 np.asarray(track.frames, np.int64), dets.layout, None, None, None)


def _timeline(views: dict[str, _View], table: str) -> np.ndarray:
    """Frame numbers every camera covers (module docstring, *Time alignment*)."""
    lo = max(int(v.frames[0]) for v in views.values())
    hi = min(int(v.frames[-1]) for v in views.values())
    if lo > hi:
        spans = ", ".join(f"{n} {int(v.frames[0])}-{int(v.frames[-1])}"
                          for n, v in views.items())
        raise ValueError(f"{table}: the cameras' detections never overlap in time (frames "
                         f"{spans}); the videos must be synchronised")
    frames = np.unique(np.concatenate([v.frames for v in views.values()]))
    frames = frames[(frames >= lo) & (frames <= hi)]
    dropped = {n: int(np.sum((v.frames < lo) | (v.frames > hi))) for n, v in views.items()}
    if any(dropped.values()):
        _LOG.warning("%s: trimmed to frames %d-%d, the span every camera covers; dropped "
                     "%s", table, lo, hi, ", ".join(f"{n}: {d} frames"
                                                    for n, d in dropped.items() if d))
    return frames


def _aligned(view: _View, frames: np.ndarray):
    """The view's rows at ``frames`` (missing rows NaN, confidence 0)."""
    num_j = view.keypoints.shape[1]
    kp = np.full((frames.size, num_j, 2), np.nan)
    conf = np.zeros((frames.size, num_j))
    rows = np.searchsorted(frames, view.frames)
    inside = (rows < frames.size) & (frames[np.minimum(rows, frames.size - 1)] == view.frames)
    kp[rows[inside]] = view.keypoints[inside]
    conf[rows[inside]] = view.confidence[inside]
    poses = None
    if view.poses_3d is not None:
        # A user file has a row per frame: its labels exist at every timeline frame.
        poses = view.poses_3d[np.searchsorted(view.frames, frames)]
    return kp, conf, poses


def _fill(kp, conf, frames, *, layout, min_confidence, fill, where):
    from jpose import detections

    fn = detections.fill_linear if fill == "linear" else detections.fill_low_rank
    try:
        out = fn(kp, conf, threshold=min_confidence, frames=frames, layout=layout)
    except ValueError as e:
        if "nothing to fill from" in str(e):
            raise ValueError(f"{where}: no joint has confidence >= {min_confidence} in "
                             f"frames {int(frames[0])}-{int(frames[-1])}; this camera has "
                             "no usable detections") from None
        raise ValueError(f"{where}: {e}") from None
    return out.keypoints, out.filled


def _load(calibration, detections_map, *, layout, person, subject, sequence, fps, units,
          min_confidence, fill, field, table) -> Capture:
    if isinstance(calibration, calibration_lib.Calibration):
        calib = calibration
    else:
        calib = calibration_lib.read_calibration(calibration, units=units)
    where_calib = calib.path or "the calibration"
    if not isinstance(detections_map, Mapping) or not detections_map:
        raise ValueError(f"{table}: expected camera name -> detector output for the cameras "
                         f"{list(calib.names)} of {where_calib}")
    if fill not in FILLS:
        raise ValueError(f"fill: expected one of {FILLS}, got {fill!r}")
    if not 0 <= float(min_confidence) <= 1:
        raise ValueError(f"min_confidence: expected a number in [0, 1], got {min_confidence!r}")
    if layout is not None and layout not in skeleton_lib.LAYOUTS:
        raise ValueError(f"layout: unknown layout {layout!r}; expected one of "
                         f"{sorted(skeleton_lib.LAYOUTS)}")
    for name in detections_map:
        if name not in calib.names:
            raise ValueError(f"{field('cameras.' + str(name))}: unknown camera {name!r}; "
                             f"{where_calib} has cameras {list(calib.names)}")
    missing = [n for n in calib.names if n not in detections_map]
    if missing:
        raise ValueError(f"{where_calib}: camera(s) {missing} have no detections in {table}; "
                         "every calibrated camera needs its detector output (remove unused "
                         "cameras from the calibration)")
    if isinstance(person, Mapping):
        for name in person:
            if name not in calib.names:
                raise ValueError(f"{field('person.' + str(name))}: unknown camera {name!r}; "
                                 f"{where_calib} has cameras {list(calib.names)}")
    views: dict[str, _View] = {}
    sources = []
    for i, name in enumerate(calib.names):
        path = os.fspath(detections_map[name])
        pid = person.get(name) if isinstance(person, Mapping) else person
        views[name] = _read_view(path, where=field(f"cameras.{name}"), layout=layout,
                                 person=pid, cam=_camera_of(calib, i))
        sources.append(path)
    first = calib.names[0]
    for name, v in views.items():
        if v.layout != views[first].layout:
            raise ValueError(f"{field('cameras.' + name)}: detections in layout {v.layout!r} "
                             f"but {field('cameras.' + first)}'s are in "
                             f"{views[first].layout!r}; every camera needs one layout "
                             "(pass layout= / set the manifest's layout for files that "
                             "cannot tell it)")
    labelled = [n for n, v in views.items() if v.poses_3d is not None]
    if labelled and len(labelled) != len(views):
        other = next(n for n in views if n not in labelled)
        raise ValueError(f"{field('cameras.' + labelled[0])}: has 3D labels (poses_3d) but "
                         f"{field('cameras.' + other)} has none; a capture is labelled in "
                         "every camera or in none")
    if labelled and len({v.layout_3d for v in views.values()}) > 1:
        raise ValueError(f"{table}: the cameras' poses_3d are in different layouts "
                         f"{sorted({str(v.layout_3d) for v in views.values()})}")
    rates = {n: v.fps for n, v in views.items() if v.fps is not None}
    if fps is None:
        if len(set(rates.values())) > 1:
            raise ValueError(f"{table}: the cameras' files have different fps {rates}; set fps")
        fps = next(iter(rates.values()), user_sequences.DEFAULT_FPS)
    else:
        bad = {n: r for n, r in rates.items() if abs(r - float(fps)) > 1e-6}
        if bad:
            n, r = next(iter(bad.items()))
            raise ValueError(f"{field('cameras.' + n)}: the file says fps {r:g} but the "
                             f"capture's fps is {float(fps):g}")
    fps = float(fps)
    if not (np.isfinite(fps) and fps > 0):
        raise ValueError(f"fps: expected a positive number, got {fps!r}")
    sequence = str(sequence)
    subject = str(subject) if subject else sequence

    frames = _timeline(views, table)
    kp_layout = views[first].layout
    layout_3d = views[first].layout_3d if labelled else None
    aligned = {}
    for name, v in views.items():
        kp, conf, poses = _aligned(v, frames)
        filled_kp, filled = _fill(kp, conf, frames, layout=kp_layout,
                                  min_confidence=float(min_confidence), fill=fill,
                                  where=field(f"cameras.{name}"))
        aligned[name] = (filled_kp, conf, poses, filled)
    if labelled:
        _check_labels(calib, aligned, field)

    records = []
    num_t = frames.size
    differ = labelled and layout_3d != kp_layout
    for i, name in enumerate(calib.names):
        kp, conf, poses, _ = aligned[name]
        cam = _camera_of(calib, i)
        kp32, conf32 = kp.astype(np.float32), conf.astype(np.float32)
        if poses is None:
            pos_cam = pos_world = np.zeros((num_t, kp.shape[1], 3), np.float32)
            clean, visible = kp32, conf32 > 0
            valid = np.zeros(num_t, bool)
        else:
            pos_cam = poses.astype(np.float32)
            pos_world = _to_world(poses, cam).astype(np.float32)
            valid = None
            if differ:
                uv, front = camera_lib.project_perspective_masked(
                    pos_cam, cam.focal, cam.principal, cam.radial, cam.tangential)
                clean = np.asarray(uv, np.float32)
                inside = np.all((clean >= 0) & (clean <= cam.image_size[None, None]), axis=-1)
                visible = np.asarray(front) & inside
            else:
                clean, visible = kp32, conf32 > 0
        records.append(SequenceRecord(
            subject=subject, action=sequence, camera_index=i, fps=fps,
            positions_world=pos_world, positions_camera=pos_cam, keypoints_clean=clean,
            keypoints=kp32, confidence=conf32, outlier=np.zeros(conf32.shape, bool),
            visible=visible, camera=cam, keypoints_layout=kp_layout if differ else None,
            valid=valid))
    return Capture(records=tuple(records), labelled=bool(labelled), keypoints_layout=kp_layout,
                   layout_3d=layout_3d, calibration=calib, frames=frames.astype(np.int64),
                   filled=np.stack([aligned[n][3] for n in calib.names]),
                   sources=tuple(sources), min_confidence=float(min_confidence))


def _to_world(points_cam: np.ndarray, cam: camera_lib.CameraParams) -> np.ndarray:
    """``x_world = R^T x_cam + c`` in NumPy float64."""
    rot = np.asarray(cam.rotation, np.float64)
    return np.einsum("ba,...b->...a", rot, points_cam) + np.asarray(cam.centre, np.float64)


def _check_labels(calib, aligned, field) -> None:
    names = calib.names
    ref = _to_world(aligned[names[0]][2], _camera_of(calib, 0))
    for i, name in enumerate(names[1:], start=1):
        world = _to_world(aligned[name][2], _camera_of(calib, i))
        gap = float(np.median(np.linalg.norm(world - ref, axis=-1)))
        if gap > _LABEL_AGREEMENT_M:
            raise ValueError(
                f"{field('cameras.' + name)}: its poses_3d, taken to the calibration's "
                f"world frame, are {gap:.3g} m (median) from {field('cameras.' + names[0])}'s; "
                "expected the same 3D (is each camera matched to its own file, and are the "
                "labels in metres, in that camera's frame?)")


# ------------------------------------------------------------------ triangulation baseline


def triangulate_capture(capture: Capture, *, min_confidence: float | None = None,
                        min_views: int = 2):
    """World 3D of a capture by confidence-weighted DLT (:func:`jpose.triangulation.triangulate`
    with the calibration's exact OpenCV distortion).

    Entries below ``min_confidence`` (default the capture's) count for nothing, so filled
    entries are never triangulated from.

    Returns:
      :class:`jpose.triangulation.Triangulation` of NumPy arrays: ``points`` (T, J, 3)
      metres in the calibration's world frame (NaN where fewer than ``min_views`` views
      count), ``reprojection_error`` (V, T, J) pixels, ``num_views`` (T, J); joints in
      :attr:`Capture.keypoints_layout`, views in calibration order.
    """
    from jpose import triangulation

    threshold = capture.min_confidence if min_confidence is None else float(min_confidence)
    kp = np.stack([r.keypoints for r in capture.records]).astype(np.float32)
    conf = np.stack([r.confidence for r in capture.records]).astype(np.float32)
    weight = np.where(conf >= threshold, conf, 0.0).astype(np.float32)
    out = triangulation.triangulate(kp, capture.calibration.cameras, weight,
                                    distortions=capture.calibration.distortions.astype(
                                        np.float32), min_views=min_views)
    return type(out)(*(np.asarray(a) for a in out))


class DLTBaseline(NamedTuple):
    """What :func:`dlt_baseline` returns.

    Attributes:
      summary_mm: ``{protocol: {"action_wise": mm, "frame_wise": mm}}`` (the shape of a
        run's ``protocols_mm``).
      accumulator: the :class:`jpose.evaluation.ProtocolAccumulator` (per-action errors).
      untriangulated: fraction of (frame, joint) points fewer than ``min_views`` views
        saw; they are filled over time before scoring.
    """

    summary_mm: dict[str, dict[str, float]]
    accumulator: Any
    untriangulated: float


def dlt_baseline(records, *, layout: str, distortions=None, use_clean_2d: bool = False,
                 min_confidence: float = DEFAULT_MIN_CONFIDENCE,
                 min_views: int = 2) -> DLTBaseline:
    """The triangulation baseline's Human3.6M protocols on labelled multi-view records.

    Records are grouped by ``(subject, action)`` (one per camera, frame-aligned: e.g.
    ``make_multiview_dataset().split("test")`` or a labelled :class:`Capture`'s records);
    each group's instants ``0 .. F_min - 1`` are triangulated from every camera's 2D (the
    noisy ``keypoints``, weighted by ``confidence`` where it is ``>= min_confidence``; or
    ``keypoints_clean`` with weight 1 with ``use_clean_2d``), points seen by fewer than
    ``min_views`` views are filled over time (:func:`jpose.detections.fill_linear`), the
    joints converted to ``layout`` by name, and the result is scored in each camera's
    frame as a lifter's prediction for that camera's sequence is (root-relative; Protocol
    #1, #2, N-MPJPE, MPJVE; :class:`jpose.evaluation.ProtocolAccumulator`, ``action`` =
    the record's). So ``summary_mm`` compares with a run's ``protocols_mm`` on the same
    records.

    Args:
      records: labelled :class:`SequenceRecord` s (3D in ``layout``).
      layout: the records' 3D layout (``MultiViewDataset.layout``).
      distortions: optional (C, 5) OpenCV coefficients indexed by ``camera_index`` (a
        capture's ``calibration.distortions``); None: the records' cameras' jpose
        (Human3.6M) distortion, which is the generated data's model.
      use_clean_2d, min_confidence, min_views: as above.
    """
    import jax

    from jpose import detections, evaluation, triangulation

    records = tuple(records)
    if not records:
        raise ValueError("records: expected at least one record")
    skel = skeleton_lib.get(layout)
    groups: dict[tuple[str, str], list[SequenceRecord]] = {}
    for i, r in enumerate(records):
        if not has_3d(r):
            raise ValueError(f"records[{i}]: ({r.subject!r}, {r.action!r}) camera "
                             f"{r.camera_index} has no 3D labels; the baseline is scored "
                             "against labels")
        groups.setdefault((r.subject, r.action), []).append(r)
    views = {len(g) for g in groups.values()}
    if min(views) < min_views:
        raise ValueError(f"records: a (subject, action) group has {min(views)} camera(s); "
                         f"triangulation needs at least min_views={min_views}")
    num_t = max(min(r.num_frames for r in g) for g in groups.values())

    @jax.jit
    def triangulate(kp, cams, conf, dist):
        return triangulation.triangulate(kp, cams, conf, distortions=dist,
                                         min_views=min_views).points

    acc = evaluation.ProtocolAccumulator()
    missing = total = 0
    for (subject, action), group in groups.items():
        group = sorted(group, key=lambda r: r.camera_index)
        f = min(r.num_frames for r in group)
        kp_layout = skel.name if use_clean_2d else (group[0].keypoints_layout or skel.name)
        # Padded to one length (NaN: untriangulated), so one compiled program serves all.
        kp = np.full((len(group), num_t) + np.shape(
            group[0].keypoints_clean if use_clean_2d else group[0].keypoints)[1:], np.nan,
            np.float32)
        conf = np.zeros(kp.shape[:-1], np.float32)
        for v, r in enumerate(group):
            if use_clean_2d:
                kp[v, :f], conf[v, :f] = r.keypoints_clean[:f], 1.0
            else:
                c = r.confidence[:f]
                kp[v, :f], conf[v, :f] = r.keypoints[:f], np.where(c >= min_confidence, c, 0.0)
        cams = camera_lib.CameraParams(*(np.stack([np.asarray(getattr(r.camera, k), np.float32)
                                                   for r in group])
                                         for k in camera_lib.CameraParams._fields))
        dist = None if distortions is None else np.asarray(distortions, np.float32)[
            [r.camera_index for r in group]]
        points = np.asarray(triangulate(kp, cams, conf, dist), np.float64)[:f]
        seen = np.all(np.isfinite(points), axis=-1)
        missing += int(np.sum(~seen))
        total += seen.size
        if not seen.all():
            if not seen.any():
                raise ValueError(f"records: ({subject!r}, {action!r}) has no point seen by "
                                 f"{min_views} views")
            points = detections.fill_linear(np.where(seen[..., None], points, np.nan),
                                            seen.astype(np.float64), threshold=0.5,
                                            layout=kp_layout).keypoints
        world = (skeleton_lib.convert(points, kp_layout, skel.name)
                 if kp_layout != skel.name else points)
        for r in group:
            rot = np.asarray(r.camera.rotation, np.float64)
            pred = np.einsum("ab,...b->...a", rot, world - np.asarray(r.camera.centre,
                                                                     np.float64))
            target = np.asarray(r.positions_camera[:f], np.float64)
            acc.add(r.action, pred - pred[:, skel.root:skel.root + 1],
                    target - target[:, skel.root:skel.root + 1])
    return DLTBaseline(summary_mm=acc.summary_mm(), accumulator=acc,
                       untriangulated=missing / max(total, 1))
