"""MediaPipe BlazePose (33 landmarks, layout ``mediapipe_33``) as people save it.

MediaPipe gives each landmark ``x, y`` **normalised** to [0, 1] of the image width and
height (slightly outside when off-screen), ``z`` (relative depth, ignored here),
``visibility`` in [0, 1] (used as the confidence) and, in the Tasks API, ``presence``
(ignored). MediaPipe writes no file itself; these are the layouts people commonly save:

Arrays (``.npy``, or ``.npz`` with the array under ``landmarks`` / ``pose_landmarks`` or
as its only array): ``(T, 33, C)`` with channels by ``C`` -- 4: ``x, y, z, visibility``
(the usual ``[[lm.x, lm.y, lm.z, lm.visibility] for lm in ...]``), 5: ``x, y, z,
visibility, presence``, 3: ``x, y, visibility``, 2: ``x, y``. Pass ``channels=`` (letters
``x y z v p``, e.g. ``"xyz"``) for other orders; a ``visibility`` channel outside [0, 1]
is an error that suggests it. A frame without a person is NaN. An ``.npz`` may hold
``frames`` (T,) and ``image_size`` (2,) too.

JSON: a list of frames; each frame is ``null`` or ``[]`` (nobody), a list of 33 landmark
objects ``{"x", "y", "z", "visibility"}`` (one person), a list of such lists (several
people), or an object ``{"frame": 12, "landmarks": [...]}`` (``"pose_landmarks"`` also
accepted) holding one of those. Frame numbers are the ``frame`` keys, else list indices.

CSV (detected by the header):

* wide: one row per frame, a ``frame`` column (optional: row index otherwise) and
  ``x0, y0, z0, visibility0, ..., x32, ..., visibility32`` (``x_0`` style also read;
  ``z``/``visibility``/``presence`` optional). Empty cells are a frame without a person.
* long: one row per landmark, columns ``frame, landmark, x, y`` (+ ``z``,
  ``visibility``, ``presence``), ``landmark`` an index 0-32 or MediaPipe's name
  (``left_shoulder``, ``LEFT_SHOULDER``).

One person per frame in arrays and CSV: one track (id 0). Several people in a JSON frame
are tracked frame to frame (:func:`jpose.detections.tracking.associate`).

Pixels: normalised coordinates (every finite |x|, |y| <= 2; override with
``normalized=``) are multiplied by ``image_size`` = (width, height), which is then
required. Coordinates already in pixels are kept.
"""

from __future__ import annotations

import csv
import os
import re
from typing import Any

import numpy as np

from jpose import skeleton
from jpose.detections import _common
from jpose.detections._common import DetectionsFormatError, Detections2D

__all__ = ["read_mediapipe", "LANDMARK_NAMES", "LAYOUT"]

LAYOUT = "mediapipe_33"
#: MediaPipe's own landmark names, in order (``mediapipe.solutions.pose.PoseLandmark``).
LANDMARK_NAMES = (
    "nose", "left_eye_inner", "left_eye", "left_eye_outer", "right_eye_inner",
    "right_eye", "right_eye_outer", "left_ear", "right_ear", "mouth_left", "mouth_right",
    "left_shoulder", "right_shoulder", "left_elbow", "right_elbow", "left_wrist",
    "right_wrist", "left_pinky", "right_pinky", "left_index", "right_index",
    "left_thumb", "right_thumb", "left_hip", "right_hip", "left_knee", "right_knee",
    "left_ankle", "right_ankle", "left_heel", "right_heel", "left_foot_index",
    "right_foot_index",
)
_J = len(LANDMARK_NAMES)
_DEFAULT_CHANNELS = {2: "xy", 3: "xyv", 4: "xyzv", 5: "xyzvp"}
_KEYS = {"x": "x", "y": "y", "z": "z", "v": "visibility", "p": "presence"}
_WIDE = re.compile(r"^(x|y|z|visibility|presence)_?(\d+)$")
_NORMALISED_MAX = 2.0


class _Sequence:
    """Per-frame people as (N, 33, 3) arrays (x, y, confidence), before scaling."""

    def __init__(self):
        self.frames: list[int] = []
        self.people: list[np.ndarray] = []


def _channels(channels: str | None, c: int, path: str, field: str) -> str:
    if channels is None:
        if c not in _DEFAULT_CHANNELS:
            raise DetectionsFormatError(path, field, f"has {c} channels per landmark; "
                                        "expected 2-5 (x, y[, z], visibility[, presence])"
                                        " or pass channels=")
        return _DEFAULT_CHANNELS[c]
    if (len(channels) != c or set(channels) - set("xyzvp") or "x" not in channels
            or "y" not in channels or len(set(channels)) != len(channels)):
        raise ValueError(f"channels: {channels!r} must name each of the {c} channels once "
                         "with letters x, y, z, v (visibility), p (presence)")
    return channels


def _xyc(arr: np.ndarray, channels: str, path: str, field: str) -> np.ndarray:
    """(..., C) -> (..., 3) x, y, confidence (visibility, or 1 without one)."""
    x, y = arr[..., channels.index("x")], arr[..., channels.index("y")]
    if "v" in channels:
        v = arr[..., channels.index("v")]
        finite = v[np.isfinite(v)]
        if finite.size and (finite.min() < -1e-6 or finite.max() > 1 + 1e-6):
            raise DetectionsFormatError(
                path, field, f"visibility (channel {channels.index('v')}) has values in "
                f"[{finite.min():.3g}, {finite.max():.3g}], outside [0, 1]; if that channel"
                " is z, pass channels= (e.g. 'xyz')")
        v = np.clip(v, 0, 1)
    else:
        v = np.ones_like(x)
    return np.stack([x, y, v], axis=-1)


def _from_array(arr: np.ndarray, path: str, field: str, channels: str | None,
                frames: np.ndarray | None) -> _Sequence:
    if arr.dtype.kind not in "fiu":
        raise DetectionsFormatError(path, field, f"must be numeric, got dtype {arr.dtype}")
    if arr.ndim != 3 or arr.shape[1] != _J:
        raise DetectionsFormatError(path, field, f"has shape {arr.shape}; expected "
                                    f"(T, {_J}, C) MediaPipe landmarks")
    xyc = _xyc(arr.astype(np.float64), _channels(channels, arr.shape[2], path, field),
               path, field)
    seq = _Sequence()
    seq.frames = list(range(len(arr))) if frames is None else [int(f) for f in frames]
    seq.people = [row[None] for row in xyc]
    return seq


# ----------------------------------------------------------------------------- JSON


def _landmarks(value: Any, path: str, field: str) -> np.ndarray:
    """A list of 33 landmark objects -> (33, 3) x, y, visibility."""
    if not isinstance(value, list) or len(value) != _J:
        n = len(value) if isinstance(value, list) else type(value).__name__
        raise DetectionsFormatError(path, field, f"has {n} landmarks; expected {_J}")
    out = np.empty((_J, 3))
    for j, lm in enumerate(value):
        if not isinstance(lm, dict) or "x" not in lm or "y" not in lm:
            raise DetectionsFormatError(path, f"{field}[{j}]", "must be an object with "
                                        "'x' and 'y'")
        for k, key in enumerate(("x", "y", "visibility")):
            v = lm.get(key, 1.0)  # No visibility: confidence 1.
            if v is None:  # null coordinates: no landmark.
                v = float("nan")
            if not _common.is_number(v):
                raise DetectionsFormatError(path, f"{field}[{j}].{key}", f"must be a "
                                            f"number, got {v!r}")
            out[j, k] = float(v)
    return out


def _people(value: Any, path: str, field: str) -> np.ndarray:
    """A frame's content -> (N, 33, 3)."""
    if value is None or value == []:
        return np.zeros((0, _J, 3))
    if not isinstance(value, list):
        raise DetectionsFormatError(path, field, f"must be a list of {_J} landmarks (or "
                                    f"of people), got {type(value).__name__}")
    if isinstance(value[0], list):
        return np.stack([_landmarks(p, path, f"{field}[{i}]") for i, p in enumerate(value)])
    return _landmarks(value, path, field)[None]


def _from_json(data: Any, path: str) -> _Sequence:
    if not isinstance(data, list):
        raise DetectionsFormatError(path, None, "must hold a list of frames of MediaPipe "
                                    "landmarks")
    seq = _Sequence()
    for i, frame in enumerate(data):
        if isinstance(frame, dict):
            key = "landmarks" if "landmarks" in frame else "pose_landmarks"
            if key not in frame:
                raise DetectionsFormatError(path, f"[{i}].landmarks", "is missing")
            num = frame.get("frame", i)
            if _common.is_number(num) and float(num) == int(num):
                num = int(num)
            else:
                raise DetectionsFormatError(path, f"[{i}].frame", f"must be an integer, "
                                            f"got {num!r}")
            people = _people(frame[key], path, f"[{i}].{key}")
        else:
            num, people = i, _people(frame, path, f"[{i}]")
        seq.frames.append(num)
        seq.people.append(people)
    return seq


# ----------------------------------------------------------------------------- CSV


def _float(cell: str) -> float:
    cell = cell.strip()
    return float(cell) if cell else float("nan")


def _from_csv(path: str) -> _Sequence:
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    if not rows:
        raise DetectionsFormatError(path, None, "is empty")
    header = [h.strip().lower() for h in rows[0]]
    body = [r for r in rows[1:] if any(c.strip() for c in r)]
    for i, r in enumerate(body):
        if len(r) != len(header):
            raise DetectionsFormatError(path, f"row {i + 2}", f"has {len(r)} cells; the "
                                        f"header has {len(header)}")
    seq = _Sequence()
    try:
        if "landmark" in header:
            return _long_csv(path, header, body, seq)
        return _wide_csv(path, header, body, seq)
    except ValueError as e:
        if isinstance(e, DetectionsFormatError):
            raise
        raise DetectionsFormatError(path, None, f"has a cell that is not a number ({e})"
                                    ) from None


def _wide_csv(path, header, body, seq):
    cols: dict[str, dict[int, int]] = {}
    for c, h in enumerate(header):
        m = _WIDE.match(h)
        if m:
            cols.setdefault(m.group(1), {})[int(m.group(2))] = c
    for key in ("x", "y"):
        have = set(cols.get(key, {}))
        if have != set(range(_J)):
            missing = sorted(set(range(_J)) - have)
            raise DetectionsFormatError(
                path, "header", f"is neither long format (frame, landmark, x, y, ...) nor "
                f"wide (frame, x0, y0, z0, visibility0, ..., visibility32): no column "
                f"{key}{missing[0] if missing else ''}")
    has_v = set(cols.get("visibility", {})) == set(range(_J))
    frame_col = header.index("frame") if "frame" in header else None
    for i, r in enumerate(body):
        person = np.empty((_J, 3))
        for j in range(_J):
            person[j, 0] = _float(r[cols["x"][j]])
            person[j, 1] = _float(r[cols["y"][j]])
            person[j, 2] = _float(r[cols["visibility"][j]]) if has_v else 1.0
        seq.frames.append(int(float(r[frame_col])) if frame_col is not None else i)
        seq.people.append(person[None])
    return seq


def _long_csv(path, header, body, seq):
    for key in ("frame", "landmark", "x", "y"):
        if key not in header:
            raise DetectionsFormatError(path, "header", f"has 'landmark' (long format) "
                                        f"but no {key!r} column")
    col = {k: header.index(k) for k in ("frame", "landmark", "x", "y", "visibility")
           if k in header}
    names = {n: j for j, n in enumerate(LANDMARK_NAMES)}
    by_frame: dict[int, np.ndarray] = {}
    for i, r in enumerate(body):
        lm = r[col["landmark"]].strip()
        j = int(lm) if lm.isdigit() else names.get(lm.lower())
        if j is None or not 0 <= j < _J:
            raise DetectionsFormatError(path, f"row {i + 2} landmark", f"{lm!r} is not a "
                                        f"landmark index 0-{_J - 1} or MediaPipe name")
        frame = int(float(r[col["frame"]]))
        person = by_frame.setdefault(frame, np.full((_J, 3), np.nan))
        v = _float(r[col["visibility"]]) if "visibility" in col else 1.0
        person[j] = (_float(r[col["x"]]), _float(r[col["y"]]), v)
    for frame in sorted(by_frame):
        seq.frames.append(frame)
        seq.people.append(by_frame[frame][None])
    return seq


# ----------------------------------------------------------------------------- read


def _arrays(path: str, channels) -> tuple[_Sequence, Any]:
    if path.lower().endswith(".npy"):
        try:
            arr = np.load(path, allow_pickle=False)
        except ValueError as e:
            raise DetectionsFormatError(path, None, f"is not a numeric .npy array ({e})"
                                        ) from None
        return _from_array(arr, path, "array", channels, None), None
    from jpose import io  # Safe .npz reading (no pickle, plain-words errors).
    arrays = io.load_npz(path, what="input")
    key = next((k for k in ("landmarks", "pose_landmarks") if k in arrays), None)
    if key is None:
        big = [k for k, v in arrays.items() if v.ndim == 3]
        if len(big) != 1:
            raise DetectionsFormatError(path, "landmarks", f"is missing (found "
                                        f"{sorted(arrays)}): store the (T, 33, C) array "
                                        "as 'landmarks'")
        key = big[0]
    frames = arrays.get("frames")
    if frames is not None and frames.shape != (len(arrays[key]),):
        raise DetectionsFormatError(path, "frames", f"has shape {frames.shape}; expected "
                                    f"({len(arrays[key])},)")
    size = _common.stored_image_size(arrays, path)
    return _from_array(arrays[key], path, key, channels, frames), size


def _sequence_from(path: str, *, data: Any = None, channels=None):
    ext = os.path.splitext(path)[1].lower()
    if data is not None or ext == ".json":
        return _from_json(_common.load_json(path) if data is None else data, path), None
    if ext == ".csv":
        return _from_csv(path), None
    if ext in (".npy", ".npz"):
        return _arrays(path, channels)
    raise DetectionsFormatError(path, None, f"has extension {ext!r}; MediaPipe landmarks "
                                "are read from .npy, .npz, .json or .csv")


def read_mediapipe(path: str | os.PathLike, *, image_size=None, channels: str | None = None,
                   normalized: bool | None = None, layout: str | None = None,
                   tracking_options: dict | None = None, _data: Any = None) -> Detections2D:
    """Reads MediaPipe BlazePose landmarks (formats in the module docstring) as pixels.

    Args:
      path: ``.npy``, ``.npz``, ``.json`` or ``.csv``.
      image_size: ``(width, height)`` pixels; required when the coordinates are
        normalised (MediaPipe's own output).
      channels: per-landmark channel order of arrays (``"xyzv"``, ...; default by count).
      normalized: whether x, y are normalised; default: when every finite value is
        within [-2, 2].
      layout: ``None`` or ``"mediapipe_33"``.

    Returns:
      :class:`~jpose.detections.Detections2D`, ``layout="mediapipe_33"``,
      ``format="mediapipe"``, confidence = visibility (1 without one).
    """
    path = os.fspath(path)
    if layout is not None and skeleton.get(layout).name != LAYOUT:
        raise ValueError(f"layout: MediaPipe landmarks are always {LAYOUT!r}, got "
                         f"{layout!r}")
    seq, stored = _sequence_from(path, data=_data, channels=channels)
    size = _common.check_image_size(image_size, path, stored)
    order = np.argsort(np.asarray(seq.frames, np.int64), kind="stable")
    nums = [seq.frames[i] for i in order]
    for a, b in zip(nums, nums[1:]):
        if a == b:
            raise DetectionsFormatError(path, "frame", f"{a} appears twice")
    points = [seq.people[i] for i in order]
    coords = np.concatenate([p[..., :2].ravel() for p in points]) if points else np.zeros(0)
    coords = coords[np.isfinite(coords)]
    if normalized is None:
        normalized = bool(coords.size) and float(np.abs(coords).max()) <= _NORMALISED_MAX
    if normalized:
        if size is None:
            raise DetectionsFormatError(
                path, "x, y", "are normalised to [0, 1] of the image (MediaPipe's output); "
                "pass image_size=(width, height) in pixels to get pixel coordinates")
        scale = np.asarray(size, np.float64)
    else:
        scale = np.ones(2)
    # One person per frame (arrays, CSV, most JSON): one track, id 0, no association.
    single = all(len(people) <= 1 for people in points)
    frames = []
    for num, people in zip(nums, points):
        found = []
        for p in people:
            person = _common.person_from_arrays(p[:, :2] * scale, p[:, 2],
                                                track_id=0 if single else None)
            if person is not None:
                found.append(person)
        frames.append(_common.Frame(int(num), int(num), found))
    out = _common.assemble(frames, layout=LAYOUT, source=path, format="mediapipe",
                           image_size=size, use_file_ids=single,
                           tracking_options=tracking_options)
    return out._replace(tracks=tuple(t._replace(image_ids=()) for t in out.tracks))
