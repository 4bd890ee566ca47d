"""Camera calibration files (Anipose / Pose2Sim TOML) and a default camera for raw video.

The file format
---------------
Anipose (``aniposelib.CameraGroup.dump``) and Pose2Sim write one TOML table per camera and
a ``[metadata]`` table::

    [cam_0]                       # Anipose: cam_0, cam_1, ...; Pose2Sim: any name
    name = "cam088"               # the camera's name (videos are matched by it)
    size = [ 1440, 1080,]         # (width, height), pixels
    matrix = [ [ 1852.4, 0.0, 719.5,], [ 0.0, 1852.4, 539.5,], [ 0.0, 0.0, 1.0,],]
    distortions = [ -0.036, 0.0, 0.0, 0.0, 0.0,]   # OpenCV (k1, k2, p1, p2[, k3])
    rotation = [ -0.0017, -0.0018, -0.0046,]       # Rodrigues vector, world -> camera
    translation = [ 2.55, -2.77, -18.17,]          # world -> camera t, file units
    fisheye = false               # optional (Pose2Sim writes it, Anipose only when true)

    [metadata]                    # skipped (kept in Calibration.metadata)
    adjusted = true
    error = 1.67

The camera model is OpenCV's: ``x_cam = R x_world + t`` with ``R = Rodrigues(rotation)``
and ``t = translation``, then ``(x, y) = x_cam[:2] / x_cam[2]`` and::

    r2  = x^2 + y^2
    rad = 1 + k1 r2 + k2 r2^2 + k3 r2^3
    x'' = x rad + 2 p1 x y + p2 (r2 + 2 x^2)
    y'' = y rad + p1 (r2 + 2 y^2) + 2 p2 x y
    (u, v) = (fx x'' + cx, fy y'' + cy)                # K = [[fx, 0, cx], [0, fy, cy], [0, 0, 1]]

Mapping to :class:`jpose.camera.CameraParams`
---------------------------------------------
* ``rotation`` (world-to-camera matrix) = ``Rodrigues(rotation)``: the same rotation as
  jpose's ``x_cam = R (x_world - c)``, so the camera centre is ``c = -R^T t``, converted
  to metres (see *Units*).
* ``focal = (K[0, 0], K[1, 1])``, ``principal = (K[0, 2], K[1, 2])``, ``image_size = size``.
  A skewed ``K`` (``K[0, 1] != 0``) cannot be represented and is refused.
* ``radial = (k1, k2, k3)`` -- exact: jpose's (Human3.6M) radial factor is OpenCV's.
* ``tangential``: **jpose's tangential model is not OpenCV's.** jpose uses Human3.6M's
  ``ProjectPointRadial`` (:func:`jpose.camera.project_perspective`)::

      x'' = x (rad + p1 y + p2 x) + p2 r2 = x rad + p1 x y + p2 (r2 + x^2)
      y'' = y (rad + p1 y + p2 x) + p1 r2 = y rad + p2 x y + p1 (r2 + y^2)

  The coefficient *order* matches OpenCV's (``p1`` goes with ``r2`` in ``y''``, ``p2``
  with ``r2`` in ``x''``), but the ``x y`` and ``x^2`` / ``y^2`` terms have half
  OpenCV's weight, so no choice of jpose ``(p1, p2)`` reproduces OpenCV's exactly when
  they are nonzero. jpose stores ``tangential = TANGENTIAL_FIT * (p1, p2)`` with
  ``TANGENTIAL_FIT = 1.4``, the least-squares fit of jpose's field to OpenCV's over a
  centred disk (any radius: both fields are quadratic). The pixel error left is below
  ``0.4 * |(p1, p2)| * r2 * f`` (e.g. 0.25 px at the corner of a 1920 px wide, 53 degree
  image with ``|p| = 1e-3``), far below 2D detector noise. Files with ``p1 = p2 = 0``
  (Anipose's bundle adjustment fits ``k1`` only) map exactly. The exact OpenCV
  coefficients are kept in :attr:`Calibration.distortions`; :func:`project_opencv` and
  :func:`jpose.triangulation.triangulate` (``distortions=``) use them exactly.
* Fisheye cameras (``fisheye = true``, OpenCV's ``cv2.fisheye`` model) are refused: jpose
  has no such model.

Units
-----
Translations are in the file's length unit: the calibration board's (Anipose configs
usually give the square size in mm; Pose2Sim works in metres). jpose works in metres.
``read_calibration(units=...)`` takes ``"m"``, ``"cm"`` or ``"mm"``; with ``units=None``
it uses ``[metadata] units`` if the file has it (files written by
:func:`write_calibration` do), else infers m or mm from the median camera distance to
the world origin ``|c|``: up to 30 -> metres (rigs are a few metres across), 100 or more
-> millimetres (a rig 0.1 m across in metres is implausible), in between -> ``ValueError``
asking for ``units=``. A centimetre file is indistinguishable from a millimetre one: pass
``units="cm"``. :attr:`Calibration.units_source` says how the unit was chosen.

Every top-level table other than ``[metadata]`` is a camera; top-level keys that are not
tables are ignored.

Camera order
------------
Cameras are returned in the order of the file's tables. (``aniposelib`` sorts the table
names as strings, so its order differs from the file's from 11 cameras on, where
``cam_10`` sorts before ``cam_2``; match cameras to videos by :attr:`Calibration.names`.)
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
import tomllib
import types
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from scipy.spatial.transform import Rotation

from jpose import camera as camera_lib
from jpose import io

__all__ = [
    "Calibration",
    "read_calibration",
    "write_calibration",
    "UNITS",
    "TANGENTIAL_FIT",
    "opencv_to_jpose_tangential",
    "jpose_to_opencv_tangential",
    "opencv_distort",
    "project_opencv",
    "Intrinsics",
    "default_intrinsics",
    "DEFAULT_FOCAL_RULE",
]

Array = jax.Array

#: Metres per file unit for the accepted ``units`` values.
UNITS = types.MappingProxyType({"m": 1.0, "cm": 0.01, "mm": 0.001})

#: jpose (Human3.6M) tangential = TANGENTIAL_FIT * OpenCV (p1, p2); see the module docstring.
TANGENTIAL_FIT = 1.4

# Median camera distance |c| (file units) up to which a file is taken to be in metres, and
# from which it is taken to be in millimetres; in between the unit must be given.
_METRES_UP_TO = 30.0
_MILLIMETRES_FROM = 100.0


def opencv_to_jpose_tangential(p) -> np.ndarray:
    """OpenCV ``(p1, p2)`` (..., 2) -> jpose ``CameraParams.tangential``: ``1.4 * (p1, p2)``.

    The least-squares fit of the Human3.6M tangential field to OpenCV's (module docstring).
    """
    return TANGENTIAL_FIT * np.asarray(p, np.float64)


def jpose_to_opencv_tangential(p) -> np.ndarray:
    """Inverse of :func:`opencv_to_jpose_tangential` (so files round-trip): ``p / 1.4``."""
    return np.asarray(p, np.float64) / TANGENTIAL_FIT


@dataclasses.dataclass(frozen=True, eq=False)
class Calibration:
    """Cameras read from a calibration file.

    Attributes:
      cameras: :class:`jpose.camera.CameraParams` with leading axis (V,), NumPy arrays of
        the dtype asked for; centre in metres, the rest in pixels (module docstring for the
        distortion mapping).
      names: the cameras' ``name`` fields, in file order.
      sections: the TOML table names (``cam_0`` ... for Anipose).
      distortions: (V, 5) float64 OpenCV ``(k1, k2, p1, p2, k3)`` exactly as in the file
        (4-value files get ``k3 = 0``).
      units: the length unit of the file's translations (a key of :data:`UNITS`).
      units_source: how ``units`` was chosen ("given", "file: [metadata] units" or the
        inference with its numbers), for output files to record.
      metadata: the file's ``[metadata]`` table (empty if none).
      path: the file read ("" if not read from a file).
    """

    cameras: camera_lib.CameraParams
    names: tuple[str, ...]
    sections: tuple[str, ...]
    distortions: np.ndarray
    units: str
    units_source: str
    metadata: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    path: str = ""

    @property
    def num_cameras(self) -> int:
        return len(self.names)

    def index(self, name: str) -> int:
        """Index of the camera called ``name``; ``KeyError`` listing the names if absent."""
        try:
            return self.names.index(name)
        except ValueError:
            raise KeyError(f"no camera named {name!r} in {self.path or 'the calibration'}; "
                           f"cameras: {list(self.names)}") from None


# ---------------------------------------------------------------------------------- reading


class _Section:
    """Field access for one camera table, with errors naming the file, table and field."""

    def __init__(self, path: str, section: str, table: Mapping[str, Any]):
        self.path, self.section, self.table = path, section, table

    def error(self, field: str, message: str) -> ValueError:
        return ValueError(f"{self.path}: [{self.section}] {field}: {message}")

    def numbers(self, field: str, shape: tuple[int, ...]) -> np.ndarray:
        if field not in self.table:
            raise self.error(field, "missing (every camera table needs name, size, matrix, "
                                    "distortions, rotation and translation)")
        value = self.table[field]
        want = "x".join(map(str, shape))
        try:
            array = np.array(value, dtype=np.float64)
        except (TypeError, ValueError):
            raise self.error(field, f"expected a {want} array of numbers, got {value!r}") from None
        if _has_bool(value):
            raise self.error(field, f"expected numbers, got booleans in {value!r}")
        if array.shape != shape:
            raise self.error(field, f"expected a {want} array of numbers, got shape "
                                    f"{array.shape}: {value!r}")
        if not np.all(np.isfinite(array)):
            raise self.error(field, f"expected finite numbers, got {value!r}")
        return array


def _has_bool(value) -> bool:
    if isinstance(value, bool):
        return True
    if isinstance(value, (list, tuple)):
        return any(_has_bool(v) for v in value)
    return False


def _rodrigues(rotvec: np.ndarray) -> np.ndarray:
    """OpenCV's ``cv2.Rodrigues`` (rotation vector -> world-to-camera matrix), float64."""
    return Rotation.from_rotvec(rotvec).as_matrix()


def _read_camera(s: _Section):
    name = s.table.get("name", s.section)
    if not isinstance(name, str) or not name:
        raise s.error("name", f"expected a non-empty string, got {name!r}")
    size = s.numbers("size", (2,))
    if np.any(size <= 0):
        raise s.error("size", f"expected (width, height) > 0 pixels, got {size.tolist()}")
    matrix = s.numbers("matrix", (3, 3))
    fx, fy = matrix[0, 0], matrix[1, 1]
    if fx <= 0 or fy <= 0:
        raise s.error("matrix", f"expected positive focal lengths K[0][0], K[1][1], got "
                                f"{fx}, {fy}")
    if abs(matrix[0, 1]) > 1e-9 * fx:
        raise s.error("matrix", f"skew K[0][1] = {matrix[0, 1]} is not supported (jpose "
                                "cameras have zero skew)")
    if matrix[1, 0] != 0 or not np.allclose(matrix[2], (0.0, 0.0, 1.0), rtol=0, atol=1e-12):
        raise s.error("matrix", f"expected an intrinsic matrix [[fx, 0, cx], [0, fy, cy], "
                                f"[0, 0, 1]], got {matrix.tolist()}")
    raw = s.table.get("distortions")
    if raw is None:
        raise s.error("distortions", "missing (OpenCV (k1, k2, p1, p2[, k3]))")
    count = len(raw) if isinstance(raw, list) else -1
    if count not in (4, 5, 8, 12, 14):
        raise s.error("distortions", f"expected 4 or 5 numbers, OpenCV (k1, k2, p1, p2[, k3]); "
                                     f"got {raw!r}")
    dist = s.numbers("distortions", (count,))
    if count > 5 and np.any(dist[5:] != 0):
        raise s.error("distortions", f"OpenCV's rational/thin-prism/tilt terms (entries 6 on) "
                                     f"are not supported, got {dist.tolist()}")
    dist = np.concatenate([dist, np.zeros(max(0, 5 - count))])[:5]
    rotvec = s.numbers("rotation", (3,))
    translation = s.numbers("translation", (3,))
    fisheye = s.table.get("fisheye", False)
    if not isinstance(fisheye, bool):
        raise s.error("fisheye", f"expected true or false, got {fisheye!r}")
    if fisheye:
        raise s.error("fisheye", "fisheye cameras (OpenCV's cv2.fisheye model) are not "
                                 "supported: jpose has only the pinhole model with radial and "
                                 "tangential distortion")
    return name, size, matrix, dist, rotvec, translation


def _units(path: str, units: str | None, metadata: Mapping[str, Any],
           distances: np.ndarray) -> tuple[str, str]:
    if units is not None:
        if units not in UNITS:
            raise ValueError(f"units must be one of {sorted(UNITS)} or None, got {units!r}")
        return units, "given"
    if "units" in metadata:
        value = metadata["units"]
        if value not in UNITS:
            raise ValueError(f"{path}: [metadata] units: expected one of {sorted(UNITS)}, "
                             f"got {value!r}")
        return value, "file: [metadata] units"
    median = float(np.median(distances))
    rule = (f"inferred from the median camera distance to the world origin, {median:.4g} "
            f"file units")
    if median <= _METRES_UP_TO:
        return "m", f"{rule} (<= {_METRES_UP_TO:g}: metres)"
    if median >= _MILLIMETRES_FROM:
        return "mm", f"{rule} (>= {_MILLIMETRES_FROM:g}: millimetres)"
    raise ValueError(
        f"{path}: cannot tell the unit of translation: the median camera distance to the "
        f"world origin is {median:.4g}, between {_METRES_UP_TO:g} (metres) and "
        f"{_MILLIMETRES_FROM:g} (millimetres); pass units='m', 'cm' or 'mm'")


def read_calibration(path: str | os.PathLike, *, units: str | None = None,
                     dtype=np.float32) -> Calibration:
    """Reads an Anipose / Pose2Sim calibration TOML (module docstring for the mapping).

    Args:
      path: the ``.toml`` file.
      units: unit of the file's translations, ``"m"``, ``"cm"`` or ``"mm"``; None: from
        ``[metadata] units`` or inferred (module docstring, *Units*).
      dtype: floating dtype of the returned :class:`CameraParams` arrays (float32 like the
        rest of jpose; float64 keeps the file's precision, for use with x64 enabled).

    Returns:
      A :class:`Calibration` with the cameras in file order.

    Raises:
      FileNotFoundError: no such file.
      ValueError: not TOML, no camera table, or a field missing or malformed; the message
        names the file, the table and the field.
    """
    path = os.fspath(path)
    try:
        with open(path, "rb") as f:
            document = tomllib.load(f)
    except FileNotFoundError:
        raise FileNotFoundError(f"calibration file not found: {path!r}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{path}: not a valid TOML file ({err})") from None
    metadata = document.get("metadata", {})
    if not isinstance(metadata, dict):
        raise ValueError(f"{path}: metadata must be a table, got {metadata!r}")
    sections = [k for k, v in document.items() if k != "metadata" and isinstance(v, dict)]
    if not sections:
        raise ValueError(f"{path}: no camera table (expected [cam_0], [cam_1], ... each with "
                         "name, size, matrix, distortions, rotation and translation)")
    cams = [_read_camera(_Section(path, s, document[s])) for s in sections]
    names = tuple(c[0] for c in cams)
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ValueError(f"{path}: camera names must be distinct, {duplicates} repeat")
    size = np.stack([c[1] for c in cams])
    matrix = np.stack([c[2] for c in cams])
    dist = np.stack([c[3] for c in cams])
    rotation = np.stack([_rodrigues(c[4]) for c in cams])
    translation = np.stack([c[5] for c in cams])
    centre_file = -np.einsum("vji,vj->vi", rotation, translation)  # c = -R^T t
    unit, source = _units(path, units, metadata, np.linalg.norm(centre_file, axis=-1))
    cameras = camera_lib.CameraParams(
        rotation=rotation.astype(dtype),
        centre=(centre_file * UNITS[unit]).astype(dtype),
        focal=matrix[:, [0, 1], [0, 1]].astype(dtype),
        principal=matrix[:, [0, 1], [2, 2]].astype(dtype),
        radial=dist[:, [0, 1, 4]].astype(dtype),
        tangential=opencv_to_jpose_tangential(dist[:, 2:4]).astype(dtype),
        image_size=size.astype(dtype),
    )
    return Calibration(cameras=cameras, names=names, sections=tuple(sections),
                       distortions=dist, units=unit, units_source=source,
                       metadata=types.MappingProxyType(dict(metadata)), path=path)


# ---------------------------------------------------------------------------------- writing

_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")


def _toml_string(s: str) -> str:
    out = []
    for ch in s:
        if ch == '"':
            out.append('\\"')
        elif ch == "\\":
            out.append("\\\\")
        elif ch in "\b\t\n\f\r":
            out.append({"\b": "\\b", "\t": "\\t", "\n": "\\n", "\f": "\\f", "\r": "\\r"}[ch])
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{ord(ch):04X}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def _toml_key(s: str) -> str:
    return s if _BARE_KEY.match(s) else _toml_string(s)


def _toml_float(x: float) -> str:
    x = float(x)
    if not math.isfinite(x):
        raise ValueError(f"cannot write a non-finite number ({x}) to a calibration file")
    return repr(x)  # shortest repr: reads back to the same float; always valid TOML


def _toml_array(a) -> str:
    a = np.asarray(a)
    if a.ndim == 0:
        return _toml_float(a)
    return "[" + ", ".join(_toml_array(x) for x in a) + "]"


def _toml_value(key: str, value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return _toml_string(value)
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        return _toml_float(value)
    if isinstance(value, (list, tuple, np.ndarray)) and np.asarray(value).dtype.kind in "iuf":
        return _toml_array(value)
    raise ValueError(f"metadata {key!r}: only strings, booleans, numbers and arrays of "
                     f"numbers can be written, got {value!r}")


def _size_text(size: np.ndarray) -> str:
    if np.all(size == np.round(size)):
        return "[" + ", ".join(str(int(s)) for s in size) + "]"
    return _toml_array(size)


def write_calibration(path: str | os.PathLike,
                      cameras: camera_lib.CameraParams | Calibration, *,
                      names: Sequence[str] | None = None,
                      sections: Sequence[str] | None = None,
                      distortions=None,
                      units: str | None = None,
                      metadata: Mapping[str, Any] | None = None) -> None:
    """Writes cameras as an Anipose / Pose2Sim calibration TOML, atomically.

    The inverse of :func:`read_calibration`: reading the file back gives the same cameras
    (to float precision; floats are written with Python's shortest round-trip ``repr``).

    Args:
      path: the ``.toml`` file to (re)place (temp file, then rename).
      cameras: cameras with leading axis (V,) (or none, for one camera), or a
        :class:`Calibration`, whose names, sections, distortions, units and metadata are
        then the defaults of the arguments below.
      names: one name per camera; default ``cam_0``, ``cam_1``, ...
      sections: TOML table names; default ``cam_0``, ``cam_1``, ... (Anipose's).
      distortions: (V, 4) or (V, 5) OpenCV coefficients to write as given; default from
        ``cameras.radial`` and ``cameras.tangential`` (the latter through
        :func:`jpose_to_opencv_tangential`).
      units: unit of the written translations (:data:`UNITS` key); default the
        Calibration's, else ``"m"``. Anipose reports 3D points in the translations' unit:
        write ``"mm"`` for an Anipose project calibrated in millimetres.
      metadata: the ``[metadata]`` table (strings, booleans, numbers, number arrays);
        ``units`` is always added to it, so that :func:`read_calibration` needs no guess.
        Anipose and Pose2Sim ignore keys they do not know.

    Raises:
      ValueError: wrong shapes or counts, a rotation that is not a rotation, non-finite
        values, or metadata that TOML cannot hold; nothing is written.
    """
    calib = cameras if isinstance(cameras, Calibration) else None
    if calib is not None:
        cameras = calib.cameras
        names = calib.names if names is None else names
        sections = calib.sections if sections is None else sections
        distortions = calib.distortions if distortions is None else distortions
        units = calib.units if units is None else units
        metadata = calib.metadata if metadata is None else metadata
    units = "m" if units is None else units
    if units not in UNITS:
        raise ValueError(f"units must be one of {sorted(UNITS)}, got {units!r}")
    batch = camera_lib.camera_batch_shape(cameras)
    if len(batch) > 1:
        raise ValueError(f"cameras must have at most one leading axis (V,), got {batch}")
    num = batch[0] if batch else 1
    fields = {}
    for field, trailing in camera_lib.CAMERA_FIELD_SHAPES.items():
        value = np.asarray(getattr(cameras, field), np.float64)
        value = value.reshape((-1,) + trailing) if value.ndim > len(trailing) else value[None]
        fields[field] = np.broadcast_to(value, (num,) + trailing)
    names = [f"cam_{i}" for i in range(num)] if names is None else list(names)
    sections = [f"cam_{i}" for i in range(num)] if sections is None else list(sections)
    for label, values in (("names", names), ("sections", sections)):
        if len(values) != num or len(set(values)) != num or not all(
                isinstance(v, str) and v for v in values):
            raise ValueError(f"{label} must be {num} distinct non-empty strings, got {values}")
    if "metadata" in sections:
        raise ValueError("sections: 'metadata' is reserved for the [metadata] table")
    if distortions is None:
        dist = np.concatenate([fields["radial"][:, :2],
                               jpose_to_opencv_tangential(fields["tangential"]),
                               fields["radial"][:, 2:]], axis=-1)
    else:
        dist = np.asarray(distortions, np.float64)
        if dist.ndim != 2 or dist.shape[0] != num or dist.shape[1] not in (4, 5):
            raise ValueError(f"distortions must have shape ({num}, 4) or ({num}, 5), got "
                             f"{dist.shape}")
    rotation = fields["rotation"]
    if not np.allclose(np.einsum("vij,vkj->vik", rotation, rotation), np.eye(3), atol=1e-5) \
            or np.any(np.linalg.det(rotation) <= 0):
        raise ValueError("cameras.rotation must hold rotation matrices (orthonormal, det +1)")
    rotvec = Rotation.from_matrix(rotation).as_rotvec()
    translation = -np.einsum("vij,vj->vi", rotation, fields["centre"]) / UNITS[units]
    meta = dict(metadata or {})
    meta["units"] = units

    lines = []
    for i in range(num):
        (fx, fy), (cx, cy) = fields["focal"][i], fields["principal"][i]
        matrix = np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]])
        lines += [
            f"[{_toml_key(sections[i])}]",
            f"name = {_toml_string(names[i])}",
            f"size = {_size_text(fields['image_size'][i])}",
            f"matrix = {_toml_array(matrix)}",
            f"distortions = {_toml_array(dist[i])}",
            f"rotation = {_toml_array(rotvec[i])}",
            f"translation = {_toml_array(translation[i])}",
            "fisheye = false",
            "",
        ]
    lines.append("[metadata]")
    lines += [f"{_toml_key(str(k))} = {_toml_value(str(k), v)}" for k, v in meta.items()]
    text = "\n".join(lines) + "\n"
    tomllib.loads(text)  # what we write must parse; fail before touching the file
    io.atomic_write(path, lambda f: f.write(text), binary=False)


# ------------------------------------------------------------------- OpenCV projection (jnp)


def opencv_distort(xy, distortions) -> Array:
    """OpenCV's distortion of normalised image coordinates (module docstring formula).

    Args:
      xy: (..., 2) undistorted normalised coordinates ``x_cam[:2] / x_cam[2]``.
      distortions: (..., 5) ``(k1, k2, p1, p2, k3)``; lines up with the first leading axes
        of ``xy`` (jpose's camera rule, :mod:`jpose.camera`).

    Returns (..., 2) distorted normalised coordinates.
    """
    xy = camera_lib._float_with_trailing(xy, "xy", (2,))
    d = camera_lib._float_with_trailing(distortions, "distortions", (5,)).astype(xy.dtype)
    d = camera_lib._align_prefix(d, "distortions", 1, tuple(xy.shape[:-1]), "xy")
    x, y = xy[..., 0], xy[..., 1]
    k1, k2, p1, p2, k3 = (d[..., i] for i in range(5))
    r2 = x * x + y * y
    rad = 1 + r2 * (k1 + r2 * (k2 + r2 * k3))
    xd = x * rad + 2 * p1 * x * y + p2 * (r2 + 2 * x * x)
    yd = y * rad + p1 * (r2 + 2 * y * y) + 2 * p2 * x * y
    return jnp.stack([xd, yd], axis=-1)


def project_opencv(points_world, cams: camera_lib.CameraParams, distortions) -> Array:
    """World points (..., 3), metres -> pixels (..., 2) with OpenCV's exact distortion.

    Uses ``cams``' rotation, centre, focal and principal point and the OpenCV
    ``distortions`` (..., 5) (e.g. :attr:`Calibration.distortions`) instead of
    ``cams.radial`` / ``cams.tangential``. Camera arrays line up with the first leading
    axes of ``points_world`` (as :func:`jpose.camera.project_camera`). No clamping.
    """
    cams, _ = camera_lib._checked_camera(cams)
    points = camera_lib._float_with_trailing(points_world, "points_world", (3,))
    dtype = points.dtype
    cams = jax.tree.map(lambda a: a.astype(dtype), cams)
    points_cam = camera_lib.world_to_camera(points, cams.rotation, cams.centre)
    batch = tuple(points.shape[:-1])
    focal, principal, _, _ = camera_lib._intrinsics_aligned(
        points, cams.focal, cams.principal, None, None, batch, "points_world")
    xy = points_cam[..., :2] / points_cam[..., 2:3]
    distortions = jnp.asarray(distortions).astype(dtype)
    return focal * opencv_distort(xy, distortions) + principal


# --------------------------------------------------------------------- uncalibrated video

#: The default focal-length rule of :func:`default_intrinsics`.
DEFAULT_FOCAL_RULE = "f = max(width, height)"


@dataclasses.dataclass(frozen=True, eq=False)
class Intrinsics:
    """Pinhole intrinsics in pixels, and where they came from.

    Attributes:
      focal: (2,) ``(fx, fy)`` float64.
      principal: (2,) ``(cx, cy)`` float64.
      image_size: (2,) ``(width, height)`` float64.
      source: a sentence for output files, e.g. ``"default: f = max(width, height) = 1920
        px (53.1 degrees across the long side); principal point at the image centre"``.
    """

    focal: np.ndarray
    principal: np.ndarray
    image_size: np.ndarray
    source: str

    def camera(self, *, dtype=np.float32) -> camera_lib.CameraParams:
        """A distortion-free :class:`CameraParams` whose world frame is its camera frame."""
        return camera_lib.CameraParams(
            rotation=np.eye(3, dtype=dtype), centre=np.zeros(3, dtype),
            focal=self.focal.astype(dtype), principal=self.principal.astype(dtype),
            radial=np.zeros(3, dtype), tangential=np.zeros(2, dtype),
            image_size=self.image_size.astype(dtype))


def default_intrinsics(image_width, image_height, *, focal_length=None) -> Intrinsics:
    """Intrinsics for video without a calibration: ``f = max(w, h)``, centred principal point.

    Why ``f = max(width, height)`` pixels: it is a field of view of
    ``2 atan(1/2) = 53.1`` degrees across the long side, in the middle of what people film
    with (phones in video mode, about 60-70 degrees after stabilisation cropping; webcams
    55-70 degrees) and the training data's cameras (Human3.6M: 1145 px over 1000 px, 47
    degrees), and within the usual structure-from-motion priors (OpenSfM 0.85, COLMAP 1.2
    times ``max(w, h)``). A wrong focal length mostly rescales the recovered depth of the
    subject; root-relative poses are insensitive to it. The principal point is the image
    centre ``(w / 2, h / 2)`` in jpose's pixel convention (the image spans ``[0, w]``, as
    :func:`jpose.camera.pixels_to_screen` and :func:`jpose.camera.virtual_cameras`).

    Args:
      image_width, image_height: pixels (> 0).
      focal_length: None for the default, else a focal length in pixels, scalar or
        ``(fx, fy)``.

    Returns:
      :class:`Intrinsics`, whose ``source`` says which rule was used.
    """
    size = np.array([image_width, image_height], np.float64)
    if size.shape != (2,) or not np.all(np.isfinite(size)) or np.any(size <= 0):
        raise ValueError(f"image_width and image_height must be positive numbers, got "
                         f"{image_width!r}, {image_height!r}")
    w, h = size
    if focal_length is None:
        f = max(w, h)
        focal = np.array([f, f])
        fov = math.degrees(2 * math.atan(0.5))
        source = (f"default: {DEFAULT_FOCAL_RULE} = {f:g} px ({fov:.1f} degrees across the "
                  "long side); principal point at the image centre")
    else:
        try:
            focal = np.array(focal_length, np.float64)
        except (TypeError, ValueError):
            focal = np.array(np.nan)
        if focal.shape not in ((), (2,)) or not np.all(np.isfinite(focal)) or np.any(
                focal <= 0):
            raise ValueError(f"focal_length must be a positive number or (fx, fy) pixels, "
                             f"got {focal_length!r}")
        focal = np.broadcast_to(focal, (2,)).copy()
        fov = math.degrees(2 * math.atan(max(w, h) / 2 / (focal[0] if w >= h else focal[1])))
        source = (f"given: f = ({focal[0]:g}, {focal[1]:g}) px ({fov:.1f} degrees across the "
                  "long side); principal point at the image centre")
    return Intrinsics(focal=focal, principal=size / 2, image_size=size, source=source)
