"""Your own sequences: 2D detections, camera intrinsics and optional 3D labels from ``.npz``.

This is the reference for the file format. :func:`load_user_sequences` reads such files
into :class:`~jpose.datasets.multiview.SequenceRecord` s, the type every jpose training
and evaluation path takes; :func:`write_user_sequences` writes one (with the same
checks); :func:`user_sequences_from_records` turns the embedded sample data into such
files, for tests and demos.

File format (one ``.npz`` per file, written with ``np.savez``; no pickled objects)
----------------------------------------------------------------------------------
A file holds one sequence, or ``N`` sequences of one subject filmed by one or several
cameras. Shapes below: ``T`` frames, ``J`` joints of ``layout``, ``J3`` joints of
``poses_3d_layout``. The ``(N, ...)`` forms are for ``N`` sequences in one file.

=====================  ==================================================================
field                  meaning
=====================  ==================================================================
``keypoints``          **required.** ``(T, J, 2)`` or ``(N, T, J, 2)`` 2D detections, any
                       detector, in **pixels** of the original image: x right, y down,
                       the **centre of the top-left pixel at (0, 0)** (subtract 1 from
                       MATLAB-style 1-based coordinates). Must be finite in every used
                       frame: give a joint the detector missed any finite position with
                       confidence 0.
``lengths``            optional, ``(N,)`` integers in ``1..T``, only with the ``(N, T, J,
                       2)`` form: sequence ``i`` is ``lengths[i]`` frames long and padded
                       to ``T``; frames past its length are ignored in every field (they
                       may hold anything, NaN included). Default: every sequence is ``T``
                       frames.
``confidence``         optional, ``(T, J)`` / ``(N, T, J)`` detector scores in [0, 1];
                       default ones. A joint with confidence 0 counts as not visible.
``layout``             the jpose layout name of the keypoints' joint order, a string
                       (``np.asarray("coco_17")``): one of :data:`jpose.skeleton.LAYOUTS`,
                       e.g. ``"coco_17"``, ``"h36m_17"``, ``"mpii_16"``. Default: the
                       reader's ``layout=`` argument (one of the two is required; when
                       both are given they must agree).
``image_size``         **required.** ``(2,)`` / ``(N, 2)`` ``(width, height)`` pixels,
                       positive (the network inputs are normalised by it).
``focal_length``       ``(2,)`` / ``(N, 2)`` ``(fx, fy)`` pixels, positive; **or**
``K``                  ``(3, 3)`` / ``(N, 3, 3)`` pixels, ``[[fx, 0, cx], [0, fy, cy],
                       [0, 0, 1]]`` (the OpenCV camera matrix). Skew must be 0. ``fx,
                       fy, cx, cy`` are read from it. Give one of the two, not both (see
                       *Missing intrinsics* below).
``principal_point``    optional, ``(2,)`` / ``(N, 2)`` ``(cx, cy)`` pixels, not with ``K``.
                       Default: the image centre ``((width - 1) / 2, (height - 1) / 2)``
                       in the pixel convention above (OpenCV's
                       ``getDefaultNewCameraMatrix`` centre).
``distortion``         optional, ``(5,)`` / ``(N, 5)`` ``(k1, k2, k3, p1, p2)`` in the
                       **Human3.6M** model and order (:func:`jpose.camera.project_perspective`,
                       the H36M ``metadata.xml``); default zeros (no distortion). They go
                       to ``CameraParams.radial = (k1, k2, k3)`` and ``.tangential = (p1,
                       p2)``. This is **not** OpenCV's ``distCoeffs`` order ``(k1, k2, p1,
                       p2, k3)``. The radial ``k`` mean the same in both models, so an
                       OpenCV calibration converts by reordering when its ``p1 = p2 =
                       0``. The tangential terms do not convert: Human3.6M's x term is ``p1
                       x y + p2 (r^2 + x^2)`` where OpenCV's is ``2 p1 x y + p2 (r^2 +
                       2 x^2)``. With OpenCV tangential distortion, undistort the
                       detections first (``cv2.undistortPoints(..., P=K)``) and store
                       zero distortion.
``poses_3d``           optional, ``(T, J3, 3)`` / ``(N, T, J3, 3)`` 3D labels in **metres**
                       and in the **camera frame** of the keypoints (x right, y down, z
                       forward, the camera at the origin), **absolute** (not
                       root-relative), finite in used frames. Files with ``poses_3d`` are
                       *labelled*, files without it *unlabelled*.
``poses_3d_layout``    optional, the jpose layout of ``poses_3d`` (default ``layout``);
                       only with ``poses_3d``.
``fps``                optional scalar, frames per second, positive; default 50.
``sequence``           optional, ``(N,)`` distinct, non-empty names (a 0-d string for a
                       one-sequence file). Default ``"<file stem>"`` for the ``(T, J, 2)``
                       form, ``"<file stem>/<i>"`` for the ``(N, T, J, 2)`` form.
``subject``            optional string, the person filmed; default the file stem.
=====================  ==================================================================

The camera fields take a leading ``N`` axis for one camera per sequence, or none for
one camera shared by all of the file's sequences. Any other field name is an error, so
a misspelt ``poses3d`` cannot silently make a labelled file unlabelled.

**Missing intrinsics.** Without ``focal_length`` and ``K`` the reader raises, naming the
file and the missing fields, unless called with ``require_intrinsics=False``. Then it
logs a warning and uses ``focal = (max(width, height),) * 2`` pixels (a field of view of
about 53 degrees across the longer side), with the principal point and distortion
defaulting as above (image centre, none). Those guesses bias the 3D scale and depth, so
give the real values when you have them.

Every malformed field is a one-line ``ValueError`` naming the file, the field and what
was expected (shapes, dtypes, non-finite values in used frames, confidences outside
[0, 1], unknown layouts, joint counts that do not fit the layout, skewed ``K``,
non-positive sizes or focal lengths, ``lengths`` outside ``1..T``, a leading ``N`` that
differs between fields, 3D labels whose median depth exceeds 100 m (millimetres
instead of metres), ...).

Records (one :class:`~jpose.datasets.multiview.SequenceRecord` per sequence)
---------------------------------------------------------------------------
* ``subject`` = the file's ``subject``; ``action`` = the sequence name;
  ``camera_index`` = 0 (a user file has no camera rig); ``fps`` = the file's.
* ``camera``: :class:`jpose.camera.CameraParams`, NumPy float32, no leading axis, with
  rotation identity and centre zero (**the camera frame is the world frame**), focal,
  principal point, radial, tangential and image size from the file.
* ``keypoints`` (T, J, 2) float32 px: the file's; ``confidence`` (T, J) float32;
  ``outlier`` (T, J) all False (unknown).
* Labelled, ``poses_3d_layout == layout``: ``positions_camera = positions_world`` (T, J,
  3) float32 m = ``poses_3d``; ``keypoints_clean`` = the file's keypoints (there is no
  cleaner 2D); ``visible = confidence > 0``; ``keypoints_layout`` None.
* Labelled, ``poses_3d_layout != layout``: the 3D stays in its own layout (nothing is
  converted): ``positions_camera = positions_world`` (T, J3, 3) = ``poses_3d``, and the
  record's ``keypoints_layout`` = ``layout`` (its ``keypoints``, ``confidence`` and
  ``outlier`` have ``J`` joints), as the VideoPose3D reader does. ``keypoints_clean`` and
  ``visible``, which a record keeps in the 3D layout, are then the projection of
  ``poses_3d`` through the camera (:func:`jpose.camera.project_perspective_masked`) and
  "in front of the camera and inside ``[0, width] x [0, height]``".
* Unlabelled: ``positions_camera = positions_world`` are zeros (T, J, 3) in the keypoints'
  layout (placeholders: never train on them), ``keypoints_clean`` = ``keypoints``,
  ``visible = confidence > 0``, ``keypoints_layout`` None.
* ``valid`` and ``activity``: None.

Everything here is NumPy (host-side data loading), except the projection of the
differing-layout case.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from typing import NamedTuple

import numpy as np

from jpose import camera as camera_lib
from jpose import io as io_lib
from jpose import skeleton as skeleton_lib
from jpose.datasets.multiview import SequenceRecord

__all__ = [
    "DEFAULT_FPS",
    "FIELDS",
    "UserSequences",
    "load_user_sequences",
    "write_user_sequences",
    "user_sequences_from_records",
]

_LOG = logging.getLogger(__name__)

#: Frame rate of files without ``fps``.
DEFAULT_FPS = 50.0
#: Every field name a user file may hold.
FIELDS = (
    "keypoints", "lengths", "confidence", "layout", "image_size", "focal_length", "K",
    "principal_point", "distortion", "poses_3d", "poses_3d_layout", "fps", "sequence",
    "subject",
)
# A median depth above this (metres) is taken as a file in millimetres.
_MAX_MEDIAN_DEPTH_M = 100.0


class UserSequences(NamedTuple):
    """What :func:`load_user_sequences` returns.

    Attributes:
      records: one record per sequence, files in the order read, sequences in file order.
      labelled: whether the files carry ``poses_3d`` (all of them do, or none).
      keypoints_layout: layout of every record's ``keypoints`` / ``confidence`` /
        ``outlier``.
      layout_3d: layout of the records' ``positions_camera`` / ``positions_world`` for
        labelled files; None for unlabelled ones (their zero placeholders are in
        ``keypoints_layout``; see :attr:`records_layout`).
    """

    records: tuple[SequenceRecord, ...]
    labelled: bool
    keypoints_layout: str
    layout_3d: str | None

    @property
    def records_layout(self) -> str:
        """The records' main (3D) layout, e.g. for ``sequences_from_records(layout=...)``."""
        return self.layout_3d if self.layout_3d is not None else self.keypoints_layout


class _Sequence(NamedTuple):
    name: str
    keypoints: np.ndarray  # (T_i, J, 2) float32 px
    confidence: np.ndarray  # (T_i, J) float32
    poses_3d: np.ndarray | None  # (T_i, J3, 3) float32 m, camera frame
    camera: camera_lib.CameraParams  # float32, no leading axis


class _File(NamedTuple):
    path: str
    subject: str
    fps: float
    layout: str
    layout_3d: str | None  # None: unlabelled
    sequences: tuple[_Sequence, ...]


# ------------------------------------------------------------------------- validation


def _shape(shape: Sequence[int | str]) -> str:
    return "(" + ", ".join(str(d) for d in shape) + ("," if len(shape) == 1 else "") + ")"


class _Checker:
    """Validates one file's arrays; every error is ``"<where>: <field>: <problem>"``."""

    def __init__(self, arrays: Mapping[str, np.ndarray], where: str):
        self.arrays = arrays
        self.where = where

    def error(self, field: str, message: str) -> ValueError:
        return ValueError(f"{self.where}: {field}: {message}")

    def numeric(self, field: str, *, integer: bool = False) -> np.ndarray | None:
        if field not in self.arrays:
            return None
        value = np.asarray(self.arrays[field])
        kinds = "iu" if integer else "iuf"
        if value.dtype.kind not in kinds:
            what = "integers" if integer else "numbers"
            raise self.error(field, f"expected {what}, got dtype {value.dtype}")
        return value

    def text(self, field: str) -> str | None:
        if field not in self.arrays:
            return None
        value = np.asarray(self.arrays[field])
        if value.dtype.kind not in "US" or value.ndim != 0:
            raise self.error(field, f"expected a string (a 0-d string array, e.g. "
                                    f"np.asarray('name')), got dtype {value.dtype} shape "
                                    f"{_shape(value.shape)}")
        text = value.item()
        text = text.decode("utf-8", "replace") if isinstance(text, bytes) else str(text)
        if not text:
            raise self.error(field, "expected a non-empty string")
        return text

    def layout(self, field: str, name: str) -> skeleton_lib.Skeleton:
        if name not in skeleton_lib.LAYOUTS:
            raise self.error(field, f"unknown layout {name!r}; expected one of "
                                    f"{sorted(skeleton_lib.LAYOUTS)}")
        return skeleton_lib.get(name)

    def camera_field(self, field: str, core: tuple[int, ...], num: int) -> np.ndarray | None:
        """``(num, *core)`` float64: the field with or without its leading ``N`` axis."""
        value = self.numeric(field)
        if value is None:
            return None
        if value.shape == core:
            value = np.broadcast_to(value, (num,) + core)
        elif value.shape != (num,) + core:
            raise self.error(field, f"expected shape {_shape(core)} (shared) or "
                                    f"{_shape((num,) + core)} (one per sequence), got "
                                    f"{_shape(value.shape)}")
        value = value.astype(np.float64)
        if not np.all(np.isfinite(value)):
            raise self.error(field, "expected finite values")
        return value


def _used_mask(lengths: np.ndarray, num_frames: int) -> np.ndarray:
    """(N, T) bool, the frames inside each sequence's length."""
    return np.arange(num_frames)[None, :] < lengths[:, None]


def _parse(arrays: Mapping[str, np.ndarray], *, path: str, layout: str | None,
           require_intrinsics: bool) -> _File:
    """Validates one file's arrays (see the module docstring) into a :class:`_File`."""
    chk = _Checker(arrays, path)
    stem = os.path.splitext(os.path.basename(path))[0]
    unknown = sorted(set(arrays) - set(FIELDS))
    if unknown:
        raise chk.error(", ".join(unknown), f"unknown field(s); a user sequences file holds "
                                            f"only {list(FIELDS)}")

    # Layout first: it gives J.
    file_layout = chk.text("layout")
    if file_layout is None and layout is None:
        raise chk.error("layout", "missing; store the keypoints' jpose layout name (e.g. "
                                  "'coco_17') or pass layout= to the reader")
    if file_layout is not None and layout is not None and file_layout != layout:
        raise chk.error("layout", f"the file says {file_layout!r} but the reader was given "
                                  f"layout={layout!r}")
    skel = chk.layout("layout", file_layout if file_layout is not None else str(layout))

    # Keypoints: (T, J, 2) or (N, T, J, 2).
    kp = chk.numeric("keypoints")
    if kp is None:
        raise chk.error("keypoints", f"missing; expected (T, {skel.num_joints}, 2) or "
                                     f"(N, T, {skel.num_joints}, 2) pixels")
    single = kp.ndim == 3
    if kp.ndim not in (3, 4) or kp.shape[-1] != 2:
        raise chk.error("keypoints", f"expected shape (T, J, 2) or (N, T, J, 2) pixels, got "
                                     f"{_shape(kp.shape)}")
    if kp.shape[-2] != skel.num_joints:
        raise chk.error("keypoints", f"{kp.shape[-2]} joints, but layout {skel.name!r} has "
                                     f"{skel.num_joints}")
    kp = kp[None] if single else kp
    num, num_frames = int(kp.shape[0]), int(kp.shape[1])
    if num == 0 or num_frames == 0:
        raise chk.error("keypoints", f"expected at least one sequence and one frame, got "
                                     f"shape {_shape(kp.shape)}")
    lead = "(T" if single else "(N, T"
    lead_shape = (num_frames,) if single else (num, num_frames)

    lengths = chk.numeric("lengths", integer=True)
    if lengths is None:
        lengths = np.full((num,), num_frames, np.int64)
    else:
        if single:
            raise chk.error("lengths", "only with keypoints of shape (N, T, J, 2)")
        if lengths.shape != (num,):
            raise chk.error("lengths", f"expected shape ({num},) (one per sequence), got "
                                       f"{_shape(lengths.shape)}")
        bad = np.flatnonzero((lengths < 1) | (lengths > num_frames))
        if bad.size:
            raise chk.error("lengths", f"expected values in 1..{num_frames} (T), got "
                                       f"lengths[{bad[0]}] = {lengths[bad[0]]}")
    used = _used_mask(lengths, num_frames)  # (N, T)
    if not np.all(np.isfinite(kp)[used]):
        s, t = np.argwhere(~np.all(np.isfinite(kp), axis=(-2, -1)) & used)[0]
        at = f"frame {t}" if single else f"sequence {s}, frame {t}"
        raise chk.error("keypoints", f"non-finite values at {at}; expected finite pixels in "
                                     "every used frame (give missed joints any finite "
                                     "position and confidence 0)")

    conf = chk.numeric("confidence")
    if conf is None:
        conf = np.ones(kp.shape[:-1], np.float32)
    else:
        want = lead_shape + (skel.num_joints,)
        if conf.shape != want:
            raise chk.error("confidence", f"expected shape {lead}, {skel.num_joints}) like "
                                          f"keypoints {_shape(want)}, got "
                                          f"{_shape(conf.shape)}")
        conf = conf[None] if single else conf
        inside = (conf >= 0) & (conf <= 1)  # False for NaN too
        if not np.all(inside[used]):
            bad = conf[used][~inside[used]][0]
            raise chk.error("confidence", f"expected values in [0, 1] in used frames, got "
                                          f"{bad}")

    # 3D labels.
    poses = chk.numeric("poses_3d")
    name_3d = chk.text("poses_3d_layout")
    layout_3d = None
    if poses is None:
        if name_3d is not None:
            raise chk.error("poses_3d_layout", "given but the file has no poses_3d")
    else:
        skel_3d = chk.layout("poses_3d_layout", name_3d) if name_3d is not None else skel
        layout_3d = skel_3d.name
        want = lead_shape + (skel_3d.num_joints, 3)
        if poses.shape != want:
            raise chk.error("poses_3d", f"expected shape {lead}, {skel_3d.num_joints}, 3) "
                                        f"({layout_3d!r}, metres, camera frame), "
                                        f"{_shape(want)} here, got {_shape(poses.shape)}")
        poses = poses[None] if single else poses
        if not np.all(np.isfinite(poses[used])):
            raise chk.error("poses_3d", "non-finite values in used frames; expected finite "
                                        "metres")
        depth = float(np.median(np.abs(poses[used][..., 2])))
        if depth > _MAX_MEDIAN_DEPTH_M:
            raise chk.error("poses_3d", f"median depth {depth:.4g} m exceeds "
                                        f"{_MAX_MEDIAN_DEPTH_M:g} m; expected metres in the "
                                        "camera frame (millimetres? divide by 1000)")

    # Camera intrinsics.
    size = chk.camera_field("image_size", (2,), num)
    if size is None:
        raise chk.error("image_size", "missing; expected (2,) or (N, 2) (width, height) "
                                      "pixels")
    if np.any(size <= 0):
        raise chk.error("image_size", f"expected positive (width, height) pixels, got "
                                      f"{size[np.flatnonzero(np.any(size <= 0, axis=-1))[0]]}")
    focal = chk.camera_field("focal_length", (2,), num)
    principal = chk.camera_field("principal_point", (2,), num)
    matrix = chk.camera_field("K", (3, 3), num)
    if matrix is not None:
        if focal is not None or principal is not None:
            given = [f for f in ("focal_length", "principal_point") if f in arrays]
            raise chk.error("K", f"given together with {given}; give either K or "
                                 "focal_length (and principal_point)")
        fxy = matrix[:, [0, 1], [0, 1]]
        tol = 1e-6 * np.max(np.abs(fxy), axis=-1)
        if np.any(np.abs(matrix[:, 0, 1]) > tol):
            skew = matrix[np.argmax(np.abs(matrix[:, 0, 1])), 0, 1]
            raise chk.error("K", f"skew K[0, 1] = {skew:g}; expected 0 (jpose cameras have "
                                 "no skew)")
        if (np.any(np.abs(matrix[:, 1, 0]) > tol)
                or not np.allclose(matrix[:, 2], [0.0, 0.0, 1.0], rtol=0.0, atol=1e-6)):
            raise chk.error("K", "expected [[fx, 0, cx], [0, fy, cy], [0, 0, 1]] pixels")
        focal, principal = fxy, matrix[:, :2, 2]
    if focal is None:
        if require_intrinsics:
            raise chk.error("focal_length", "missing (and no K); expected focal_length (2,) "
                                            "or K (3, 3) pixels (the reader's "
                                            "require_intrinsics=False uses a default)")
        focal = np.repeat(np.max(size, axis=-1, keepdims=True), 2, axis=-1)
        _LOG.warning("%s: no focal_length or K; using the default intrinsics focal = "
                     "max(width, height) = %s px, principal point %s, %s "
                     "(require_intrinsics=False). 3D scale and depth will be biased.",
                     path, np.unique(focal).tolist(),
                     "from the file" if principal is not None else "= image centre",
                     "distortion from the file" if "distortion" in arrays else "no distortion")
    if np.any(focal <= 0):
        raise chk.error("K" if matrix is not None else "focal_length",
                        "expected positive focal lengths (fx, fy) in pixels")
    if principal is None:
        principal = (size - 1.0) / 2.0
    distortion = chk.camera_field("distortion", (5,), num)
    if distortion is None:
        distortion = np.zeros((num, 5))

    # Metadata.
    fps_value = chk.numeric("fps")
    if fps_value is None:
        fps = DEFAULT_FPS
    else:
        if fps_value.shape != () or not np.isfinite(fps_value) or not fps_value > 0:
            raise chk.error("fps", f"expected a positive scalar (frames per second), got "
                                   f"{fps_value.tolist()!r}")
        fps = float(fps_value)
    subject = chk.text("subject") or stem
    if "sequence" in arrays:
        names_arr = np.asarray(arrays["sequence"])
        ok_shape = names_arr.shape == (num,) or (single and names_arr.shape == ())
        if names_arr.dtype.kind not in "US" or not ok_shape:
            raise chk.error("sequence", f"expected {num} strings, shape ({num},), got dtype "
                                        f"{names_arr.dtype} shape {_shape(names_arr.shape)}")
        names = [n.decode("utf-8", "replace") if isinstance(n, bytes) else str(n)
                 for n in names_arr.reshape(-1).tolist()]
        if any(not n for n in names) or len(set(names)) != len(names):
            raise chk.error("sequence", f"expected distinct non-empty names, got {names}")
    else:
        names = [stem] if single else [f"{stem}/{i}" for i in range(num)]

    sequences = []
    for i in range(num):
        n = int(lengths[i])
        cam = camera_lib.CameraParams(
            rotation=np.eye(3, dtype=np.float32),
            centre=np.zeros(3, np.float32),
            focal=focal[i].astype(np.float32),
            principal=principal[i].astype(np.float32),
            radial=distortion[i, :3].astype(np.float32),
            tangential=distortion[i, 3:].astype(np.float32),
            image_size=size[i].astype(np.float32),
        )
        sequences.append(_Sequence(
            name=names[i],
            keypoints=np.array(kp[i, :n], np.float32),
            confidence=np.array(conf[i, :n], np.float32),
            poses_3d=None if poses is None else np.array(poses[i, :n], np.float32),
            camera=cam,
        ))
    return _File(path=path, subject=subject, fps=fps, layout=skel.name, layout_3d=layout_3d,
                 sequences=tuple(sequences))


# ---------------------------------------------------------------------------- reading


def _expand(paths) -> list[str]:
    """Files from files, directories (``*.npz`` inside, sorted) or a list of both."""
    items = [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)
    if not items:
        raise ValueError("paths: expected a file, a directory or a list of them, got none")
    files: list[str] = []
    for item in items:
        if not isinstance(item, (str, os.PathLike)):
            raise ValueError(f"paths: expected file or directory paths, got "
                             f"{type(item).__name__} {item!r}")
        item = os.fspath(item)
        if os.path.isdir(item):
            found = sorted(os.path.join(item, f) for f in os.listdir(item)
                           if f.endswith(".npz") and os.path.isfile(os.path.join(item, f)))
            if not found:
                raise ValueError(f"paths: directory {item!r} holds no .npz files")
            files.extend(found)
        elif not os.path.exists(item):
            raise FileNotFoundError(f"paths: {item!r} does not exist")
        else:
            files.append(item)
    seen: dict[str, str] = {}
    for f in files:
        key = os.path.realpath(f)
        if key in seen:
            raise ValueError(f"paths: {f!r} is listed twice (also as {seen[key]!r}); its "
                             "sequences would count double")
        seen[key] = f
    return files


def _records(parsed: _File) -> list[SequenceRecord]:
    out = []
    differ = parsed.layout_3d is not None and parsed.layout_3d != parsed.layout
    for seq in parsed.sequences:
        num_frames = seq.keypoints.shape[0]
        if seq.poses_3d is None:
            pos = np.zeros((num_frames, seq.keypoints.shape[1], 3), np.float32)
        else:
            pos = seq.poses_3d
        if differ:
            cam = seq.camera
            uv, front = camera_lib.project_perspective_masked(
                pos, cam.focal, cam.principal, cam.radial, cam.tangential)
            clean = np.asarray(uv, np.float32)
            inside = np.all((clean >= 0) & (clean <= cam.image_size[None, None]), axis=-1)
            visible = np.asarray(front) & inside
        else:
            clean = seq.keypoints
            visible = seq.confidence > 0
        out.append(SequenceRecord(
            subject=parsed.subject,
            action=seq.name,
            camera_index=0,
            fps=parsed.fps,
            positions_world=pos,
            positions_camera=pos,
            keypoints_clean=clean,
            keypoints=seq.keypoints,
            confidence=seq.confidence,
            outlier=np.zeros(seq.confidence.shape, bool),
            visible=visible,
            camera=seq.camera,
            keypoints_layout=parsed.layout if differ else None,
        ))
    return out


def load_user_sequences(paths, *, layout: str | None = None, require_intrinsics: bool = True,
                        require_3d: bool = False) -> UserSequences:
    """Reads user sequence files (format in the module docstring) into records.

    Args:
      paths: a file, a directory (every ``*.npz`` directly inside, sorted by name), or a
        list mixing both (kept in the given order).
      layout: the keypoints' jpose layout for files without a ``layout`` field.
      require_intrinsics: False: files without ``focal_length`` / ``K`` get the default
        intrinsics (module docstring), with a logged warning; True: they are an error.
      require_3d: refuse files without ``poses_3d`` (e.g. for evaluation).

    Returns:
      :class:`UserSequences`: the records (module docstring), whether they are labelled,
      and their layouts.

    Raises:
      FileNotFoundError: a path does not exist.
      ValueError: one line naming the file and the field, for a broken file
        (:func:`jpose.io.load_npz`), a malformed field, files that mix labelled and
        unlabelled, or files whose keypoint or 3D layouts differ.
    """
    if layout is not None and layout not in skeleton_lib.LAYOUTS:
        raise ValueError(f"layout: unknown layout {layout!r}; expected one of "
                         f"{sorted(skeleton_lib.LAYOUTS)}")
    parsed = []
    for path in _expand(paths):
        arrays = io_lib.load_npz(path, what="user sequences file")
        item = _parse(arrays, path=path, layout=layout, require_intrinsics=require_intrinsics)
        if require_3d and item.layout_3d is None:
            raise ValueError(f"{path}: poses_3d: missing; require_3d=True needs 3D labels "
                             "(T, J3, 3) metres, camera frame, in every file")
        parsed.append(item)
    first = parsed[0]
    for item in parsed[1:]:
        if (item.layout_3d is None) != (first.layout_3d is None):
            lab, unl = (first, item) if first.layout_3d is not None else (item, first)
            raise ValueError(f"paths: {lab.path} is labelled (has poses_3d) but {unl.path} "
                             "is not; load labelled and unlabelled files in separate calls")
        if item.layout != first.layout:
            raise ValueError(f"paths: {item.path} has keypoints in layout {item.layout!r} but "
                             f"{first.path} in {first.layout!r}; one call reads one layout")
        if item.layout_3d != first.layout_3d:
            raise ValueError(f"paths: {item.path} has poses_3d in layout {item.layout_3d!r} "
                             f"but {first.path} in {first.layout_3d!r}; one call reads one "
                             "layout")
    records = tuple(r for item in parsed for r in _records(item))
    return UserSequences(records=records, labelled=first.layout_3d is not None,
                         keypoints_layout=first.layout, layout_3d=first.layout_3d)


# ---------------------------------------------------------------------------- writing


def write_user_sequences(
    path,
    *,
    keypoints,
    image_size,
    focal_length=None,
    K=None,
    principal_point=None,
    distortion=None,
    confidence=None,
    poses_3d=None,
    layout: str,
    poses_3d_layout: str | None = None,
    fps: float | None = None,
    sequence: Sequence[str] | str | None = None,
    subject: str | None = None,
    lengths=None,
) -> None:
    """Writes one user sequences file (fields as in the module docstring), atomically.

    The arrays are checked exactly as :func:`load_user_sequences` checks them (focal
    length or ``K`` required) before anything is written, so a bad input raises the
    reader's one-line ``ValueError`` and leaves ``path`` untouched. ``path`` is used as
    given (name it ``*.npz`` for directory reads). ``lengths`` (N,): see the format.
    """
    path = os.fspath(path)
    given = {
        "keypoints": keypoints, "image_size": image_size, "focal_length": focal_length,
        "K": K, "principal_point": principal_point, "distortion": distortion,
        "confidence": confidence, "poses_3d": poses_3d, "lengths": lengths,
    }
    arrays = {k: np.asarray(v) for k, v in given.items() if v is not None}
    texts = {"layout": layout, "poses_3d_layout": poses_3d_layout, "subject": subject}
    for key, value in texts.items():
        if value is not None:
            if not isinstance(value, str):
                raise ValueError(f"{path}: {key}: expected a string, got "
                                 f"{type(value).__name__}")
            arrays[key] = np.asarray(value, dtype=np.str_)
    if fps is not None:
        arrays["fps"] = np.asarray(fps)
    if sequence is not None:
        names = [sequence] if isinstance(sequence, str) else list(sequence)
        if not all(isinstance(n, str) for n in names):
            raise ValueError(f"{path}: sequence: expected strings, got {names!r}")
        arrays["sequence"] = np.asarray(names, dtype=np.str_).reshape(
            () if isinstance(sequence, str) else (-1,))
    _parse(arrays, path=path, layout=None, require_intrinsics=True)
    io_lib.save_npz_atomic(path, arrays)


def user_sequences_from_records(records: Sequence[SequenceRecord], path_prefix, *,
                                with_3d: bool, layout: str = "h36m_17") -> list[str]:
    """Writes records as user sequence files, one per subject; returns the paths.

    File ``f"{path_prefix}{subject}.npz"`` holds every record of that subject (in record
    order) as a sequence named ``f"{action}/{camera_index}"``, padded to the longest with
    ``lengths``: the noisy ``keypoints`` and ``confidence``, each record's own camera
    intrinsics (focal, principal point, Human3.6M distortion, image size; one per
    sequence), and with ``with_3d`` the 3D labels ``positions_camera`` (camera frame,
    which is what a user file holds; the records' world frame and extrinsics are not
    written). A file has one frame rate, so a subject whose records have several (the
    DeepMimic clips keep their own 60/30/24/16 fps unless the generator's ``fps`` is
    set) gets one file per rate, ``f"{path_prefix}{subject}_{fps:g}fps.npz"``, in the order
    the rates first appear.
    :func:`load_user_sequences` gives back the same keypoints, confidence, intrinsics
    and positions_camera (float32, exactly) and fps.

    Args:
      records: e.g. ``make_multiview_dataset(...).split("labelled")``.
      path_prefix: directory plus file-name prefix, e.g. ``"out/"`` or ``"out/mine_"``
        (directories are created).
      with_3d: write ``poses_3d`` (labelled files) or not (unlabelled).
      layout: the records' 3D layout (``MultiViewDataset.layout``); their keypoints'
        layout is each record's ``keypoints_layout`` when set, else this.
    """
    records = tuple(records)
    if not records:
        raise ValueError("records: expected at least one record")
    skeleton_lib.get(layout)  # Raises ValueError naming the known layouts.
    prefix = os.fspath(path_prefix)
    by_subject: dict[str, list[SequenceRecord]] = {}
    for i, r in enumerate(records):
        if not isinstance(r, SequenceRecord):
            raise ValueError(f"records[{i}]: expected a SequenceRecord, got {type(r).__name__}")
        if not r.subject or os.sep in r.subject or (os.altsep and os.altsep in r.subject):
            raise ValueError(f"records[{i}].subject: {r.subject!r} cannot name a file")
        by_subject.setdefault(r.subject, []).append(r)
    paths = []
    for subject, recs in by_subject.items():
        kp_layouts = {r.keypoints_layout for r in recs}
        if len(kp_layouts) > 1:
            raise ValueError(f"records: subject {subject!r} has keypoints in several layouts "
                             f"{sorted(map(str, kp_layouts))}; a file holds one")
        kp_layout = kp_layouts.pop() or layout
        rates = list(dict.fromkeys(float(r.fps) for r in recs))  # first-seen order
        for fps in rates:
            group = [r for r in recs if float(r.fps) == fps]
            name = subject if len(rates) == 1 else f"{subject}_{fps:g}fps"
            path = f"{prefix}{name}.npz"
            _write_records(path, group, subject=subject, fps=fps, with_3d=with_3d,
                           layout=layout, kp_layout=kp_layout)
            paths.append(path)
    return paths


def _write_records(path: str, recs: list[SequenceRecord], *, subject: str, fps: float,
                   with_3d: bool, layout: str, kp_layout: str) -> None:
    lengths = np.asarray([r.keypoints.shape[0] for r in recs], np.int64)
    num_frames = int(lengths.max())

    def padded(field: str) -> np.ndarray:
        parts = [np.asarray(getattr(r, field), np.float32) for r in recs]
        out = np.zeros((len(parts), num_frames) + parts[0].shape[1:], np.float32)
        for k, part in enumerate(parts):
            out[k, :part.shape[0]] = part
        return out

    def camera(field: str) -> np.ndarray:
        return np.stack([np.asarray(getattr(r.camera, field), np.float32) for r in recs])

    write_user_sequences(
        path,
        keypoints=padded("keypoints"),
        confidence=padded("confidence"),
        lengths=lengths,
        image_size=camera("image_size"),
        focal_length=camera("focal"),
        principal_point=camera("principal"),
        distortion=np.concatenate([camera("radial"), camera("tangential")], axis=-1),
        poses_3d=padded("positions_camera") if with_3d else None,
        layout=kp_layout,
        poses_3d_layout=layout if with_3d and layout != kp_layout else None,
        fps=fps,
        sequence=[f"{r.action}/{r.camera_index}" for r in recs],
        subject=subject,
    )
