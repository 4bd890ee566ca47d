"""Human3.6M camera calibrations from the raw release's ``metadata.xml``.

The raw release keeps all calibrations in one element of ``metadata.xml`` (shipped with
the official MATLAB code bundle, not with the pose archives): ``<w0>`` holds a bracketed,
space-separated list of **300** numbers (see ``shared/DATASET_FORMATS.md`` section 1.5;
layout as decoded by Martinez et al.'s 3d-pose-baseline ``src/cameras.py``):

* extrinsics, 6 numbers per (camera ``c`` in 0..3, subject ``s`` in 1..11) starting at
  ``6 * (c * 11 + (s - 1))``: three rotation angles ``(a, b, c)`` in radians, then the
  camera centre ``T`` in world coordinates, millimetres;
* intrinsics, 9 numbers per camera starting at ``264 + 9 * c``:
  ``fx, fy, cx, cy`` (pixels), ``k1, k2, k3`` (radial), ``p1, p2`` (tangential, in the
  stored order that the official ``ProjectPointRadial.m`` uses).

Conventions of the :class:`jpose.camera.CameraParams` built here (the jpose ones):

* ``rotation = Rx(a) @ Ry(b) @ Rz(c)`` with the usual right-handed elementary rotations
  (``Rx(a) = [[1, 0, 0], [0, cos a, -sin a], [0, sin a, cos a]]`` etc.), exactly as
  3d-pose-baseline builds it. It is the **world-to-camera** rotation for column vectors:
  ``x_cam = R (x_world - T)`` (in scipy terms, ``Rotation.from_euler("XYZ", (a, b, c))``:
  intrinsic x, then y, then z).
* ``centre = T / 1000``: metres.
* ``tangential = (p1, p2)`` in the stored (Human3.6M) order; VideoPose3D's tables list the
  same pair reversed (see :func:`jpose.camera.intrinsics9`).
* ``image_size = (width, height)`` in pixels: 1000 x 1002 for cameras 54138969 and
  60457274, 1000 x 1000 for 55011271 and 58860488 (VideoPose3D ``h36m_dataset.py``,
  mmpose ``image_sizes``). ``metadata.xml`` also has a per-subject size row such as
  ``[1002 1000;1000 1000;1000 1000;1002 1000]`` (apparently height, width per camera) that
  lists ``1002 1000`` for all four cameras of S7; its meaning is unconfirmed, so it is
  ignored here and the per-camera sizes above are used for every subject.

Only numbers are read from the XML (``xml.etree``); nothing in it is executed.
"""

from __future__ import annotations

import math
import os
import re
import types
import xml.etree.ElementTree as ET
from collections.abc import Mapping

import numpy as np

from jpose import camera as camera_lib

__all__ = [
    "CAMERA_IDS",
    "IMAGE_SIZES",
    "NUM_SUBJECTS",
    "W0_LENGTH",
    "parse_w0",
    "decode_w0",
    "load_h36m_cameras",
    "subject_cameras",
]

#: Camera ids in index order 0..3 (metadata.xml ``dbcameras/index2id``).
CAMERA_IDS: tuple[str, ...] = ("54138969", "55011271", "58860488", "60457274")

#: ``(width, height)`` in pixels per camera id.
IMAGE_SIZES: Mapping[str, tuple[int, int]] = types.MappingProxyType({
    "54138969": (1000, 1002),
    "55011271": (1000, 1000),
    "58860488": (1000, 1000),
    "60457274": (1000, 1002),
})

#: Subjects S1..S11 have a calibration slot in ``<w0>`` (test subjects included).
NUM_SUBJECTS = 11
#: 4 cameras x 11 subjects x 6 extrinsics + 4 cameras x 9 intrinsics.
W0_LENGTH = 6 * 4 * NUM_SUBJECTS + 9 * 4
_INTRINSICS_START = 6 * 4 * NUM_SUBJECTS  # 264

_SEPARATORS = re.compile(r"[\s,;]+")


def _rotation_xyz(a: float, b: float, c: float) -> np.ndarray:
    """``Rx(a) @ Ry(b) @ Rz(c)`` (float64), the Human3.6M world-to-camera rotation."""
    ca, sa, cb, sb, cc, sc = (math.cos(a), math.sin(a), math.cos(b), math.sin(b),
                              math.cos(c), math.sin(c))
    rx = np.array([[1.0, 0.0, 0.0], [0.0, ca, -sa], [0.0, sa, ca]])
    ry = np.array([[cb, 0.0, sb], [0.0, 1.0, 0.0], [-sb, 0.0, cb]])
    rz = np.array([[cc, -sc, 0.0], [sc, cc, 0.0], [0.0, 0.0, 1.0]])
    return rx @ ry @ rz


def parse_w0(text: str, *, source: str = "<string>") -> np.ndarray:
    """The numbers of a ``<w0>`` element's text, ``"[n0 n1 ... n299]"``, as float64 (300,).

    Raises ``ValueError`` naming ``source`` and the element if a value is not a finite
    number or the count is not :data:`W0_LENGTH`.
    """
    body = (text or "").strip()
    if body.startswith("["):
        body = body[1:]
    if body.endswith("]"):
        body = body[:-1]
    tokens = [t for t in _SEPARATORS.split(body) if t]
    values = []
    for i, token in enumerate(tokens):
        try:
            value = float(token)
        except ValueError:
            raise ValueError(
                f"{source}: element <w0> entry {i} is {token!r}, not a number; <w0> must "
                f"hold a bracketed list of {W0_LENGTH} numbers.") from None
        if not math.isfinite(value):
            raise ValueError(f"{source}: element <w0> entry {i} is {token!r}, not finite.")
        values.append(value)
    if len(values) != W0_LENGTH:
        raise ValueError(
            f"{source}: element <w0> holds {len(values)} numbers; expected {W0_LENGTH} "
            f"(6 extrinsics x 4 cameras x {NUM_SUBJECTS} subjects + 9 intrinsics x 4 "
            f"cameras).")
    return np.asarray(values, np.float64)


def decode_w0(w0: np.ndarray, *, dtype=np.float32
              ) -> dict[tuple[str, int], camera_lib.CameraParams]:
    """Cameras from the 300 ``<w0>`` numbers: ``{("S1", 0): CameraParams, ...}``.

    Keys are ``(subject_name, camera_index)`` for subjects ``S1``..``S11`` and camera
    indices 0..3 (ids :data:`CAMERA_IDS`). Fields are NumPy arrays of ``dtype`` with no
    leading axis, in the conventions of the module docstring.
    """
    w0 = np.asarray(w0, np.float64)
    if w0.shape != (W0_LENGTH,):
        raise ValueError(f"w0: expected shape ({W0_LENGTH},), got {w0.shape}.")
    out = {}
    for c, cam_id in enumerate(CAMERA_IDS):
        intr = w0[_INTRINSICS_START + 9 * c:_INTRINSICS_START + 9 * (c + 1)]
        width, height = IMAGE_SIZES[cam_id]
        for s in range(1, NUM_SUBJECTS + 1):
            start = 6 * (c * NUM_SUBJECTS + (s - 1))
            ext = w0[start:start + 6]
            out[(f"S{s}", c)] = camera_lib.CameraParams(
                rotation=_rotation_xyz(*ext[:3]).astype(dtype),
                centre=(ext[3:6] / 1000.0).astype(dtype),  # mm -> m
                focal=intr[0:2].astype(dtype),
                principal=intr[2:4].astype(dtype),
                radial=intr[4:7].astype(dtype),
                tangential=intr[7:9].astype(dtype),  # stored (p1, p2) order
                image_size=np.asarray((width, height), dtype),
            )
    return out


def load_h36m_cameras(metadata_xml_path: str | os.PathLike, *, dtype=np.float32
                      ) -> dict[tuple[str, int], camera_lib.CameraParams]:
    """Reads ``metadata.xml`` and returns ``{(subject_name, camera_index): CameraParams}``.

    Args:
      metadata_xml_path: the raw release's ``metadata.xml``.
      dtype: floating dtype of the returned arrays (float32 by default, as
        :class:`jpose.datasets.multiview.SequenceRecord` holds them).

    Returns one camera for each subject ``S1``..``S11`` and camera index 0..3; see the
    module docstring for conventions (world-to-camera ``rotation``, ``centre`` in metres,
    pixels, tangential in stored ``(p1, p2)`` order, ``image_size = (width, height)``).

    Raises:
      FileNotFoundError: the file does not exist (message gives the expected path).
      ValueError: the XML does not parse, has no ``<w0>`` element, or ``<w0>`` does not
        hold exactly 300 finite numbers (message names the file and the element).
    """
    path = os.fspath(metadata_xml_path)
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"Human3.6M metadata.xml not found: expected it at {path!r} (it ships with the "
            f"official MATLAB code bundle, code-v1.2.zip, not with the pose archives).")
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as err:
        raise ValueError(f"{path}: not a well-formed XML file ({err}).") from None
    element = root if root.tag == "w0" else root.find(".//w0")
    if element is None:
        raise ValueError(
            f"{path}: no <w0> element; the Human3.6M metadata.xml keeps its camera "
            f"calibrations in <w0> as a bracketed list of {W0_LENGTH} numbers.")
    return decode_w0(parse_w0(element.text, source=path), dtype=dtype)


def subject_cameras(cameras: Mapping[tuple[str, int], camera_lib.CameraParams],
                    subject: str) -> camera_lib.CameraParams:
    """The 4 cameras of ``subject`` stacked along a leading ``(4,)`` axis (index order)."""
    missing = [c for c in range(len(CAMERA_IDS)) if (subject, c) not in cameras]
    if missing:
        known = sorted({s for s, _ in cameras}, key=lambda s: (len(s), s))
        raise ValueError(
            f"subject: no calibration for {subject!r} camera(s) {missing}; calibrated "
            f"subjects are {known}.")
    cams = [cameras[(subject, c)] for c in range(len(CAMERA_IDS))]
    return camera_lib.CameraParams(
        *(np.stack([np.asarray(getattr(cam, f)) for cam in cams])
          for f in camera_lib.CameraParams._fields))
