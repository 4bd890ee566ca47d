"""Shared pieces of the readers: the result types, errors, natural sort, and assembly of
per-frame people into tracks. Everything here is NumPy only (no JAX import)."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np

from jpose import skeleton

__all__ = [
    "DetectionsFormatError",
    "Track",
    "Detections2D",
    "natural_key",
    "trailing_number",
]


class DetectionsFormatError(ValueError):
    """A keypoint file that does not hold what its format promises.

    The message names the file and the field at fault, e.g.
    ``".../clip_000000000012_keypoints.json: people[0].pose_keypoints_2d has 74 values;
    expected 75 (BODY_25) or 54 (COCO-18)"``. ``path`` and ``field`` are kept as
    attributes for programs.
    """

    def __init__(self, path: str, field: str | None, problem: str):
        self.path, self.field, self.problem = str(path), field, problem
        where = f"{self.path}: {field} " if field else f"{self.path}: "
        super().__init__(where + problem)


class Track(NamedTuple):
    """One person over time, in **pixels** (x right, y down, origin top-left).

    Rows are the file's frames from the track's first to its last detection, including
    frames where the file has no detection of this person (those rows are all NaN with
    confidence 0), so the rows are the time axis of the video as far as the file tells it.
    """

    id: int  # track id: the file's own (COCO track_id, AlphaPose idx, ...) or assigned
    keypoints: np.ndarray  # (T, J, 2) float64 pixels, NaN where missing
    confidence: np.ndarray  # (T, J) float64 in [0, 1], 0 where missing
    frames: np.ndarray  # (T,) int64 frame numbers, strictly increasing
    image_ids: tuple  # (T,) the file's name of each frame (file name / image_id), or ()

    @property
    def detected(self) -> np.ndarray:
        """(T,) bool: frames where at least one joint of this person was detected."""
        return np.isfinite(self.keypoints).all(axis=-1).any(axis=-1)

    @property
    def num_detections(self) -> int:
        return int(self.detected.sum())


class Detections2D(NamedTuple):
    """Every person in a 2D keypoint file, as tracks (see :class:`Track`).

    ``layout`` names the joint order (:func:`jpose.skeleton.get`); convert with
    ``skeleton.convert(track.keypoints, detections.layout, "h36m_17")``.
    """

    tracks: tuple[Track, ...]  # sorted by id
    layout: str  # joint layout of every track
    image_size: tuple[float, float] | None  # (width, height) pixels, when known
    source: str  # the path read
    format: str  # "openpose", "coco", "alphapose", "mediapipe" or "npz"

    @property
    def track_ids(self) -> tuple[int, ...]:
        return tuple(t.id for t in self.tracks)

    def track(self, track_id: int) -> Track:
        """The track with id ``track_id`` (``KeyError`` listing the ids if absent)."""
        for t in self.tracks:
            if t.id == track_id:
                return t
        raise KeyError(f"{self.source}: no track {track_id!r}; tracks are {self.track_ids}")


# ----------------------------------------------------------------------------- names

_CHUNKS = re.compile(r"(\d+)")
_TRAILING = re.compile(r"(\d+)\D*$")


def natural_key(text: str) -> tuple:
    """Sort key that orders digit runs by value: ``frame_2`` before ``frame_10``."""
    return tuple((0, int(c), c) if c.isdigit() else (1, 0, c.lower())
                 for c in _CHUNKS.split(str(text)) if c)


def trailing_number(name: str) -> int | None:
    """The last run of digits in ``name``'s base name without extension, or None.

    ``"clip_000000000012_keypoints.json"``, ``"12.jpg"`` and ``"frame_000012.png"``
    give 12; ``"video3_frame7.jpg"`` gives 7.
    """
    base = os.path.basename(str(name))
    stem = base.split(".", 1)[0] if not base.startswith(".") else base
    m = _TRAILING.search(stem)
    return None if m is None else int(m.group(1))


def frame_numbers(names: Sequence[Any]) -> list[int]:
    """Frame numbers for distinct image names already in natural order.

    Ints are their own numbers. Strings give their :func:`trailing_number` when every
    name has one and they are all distinct; otherwise the frames are numbered 0, 1, ...
    in natural order.
    """
    if all(isinstance(n, (int, np.integer)) and not isinstance(n, bool) for n in names):
        return [int(n) for n in names]
    nums = [trailing_number(n) for n in names]
    if all(n is not None for n in nums) and len(set(nums)) == len(nums):
        return [int(n) for n in nums]  # type: ignore[arg-type]
    return list(range(len(names)))


# ----------------------------------------------------------------------------- files


def load_json(path: str) -> Any:
    """Parsed JSON, or a :class:`DetectionsFormatError` naming the file and the position."""
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except json.JSONDecodeError as e:
        raise DetectionsFormatError(path, None, f"is not valid JSON ({e})") from None
    except UnicodeDecodeError as e:
        raise DetectionsFormatError(path, None, f"is not UTF-8 text ({e})") from None


def is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def numbers(values: Any, path: str, field: str, *, allow_null: bool = False) -> np.ndarray:
    """A JSON list of numbers as float64 (``null`` -> NaN when allowed)."""
    if not isinstance(values, list):
        raise DetectionsFormatError(path, field, f"must be a list of numbers, got "
                                    f"{type(values).__name__}")
    out = np.empty(len(values), np.float64)
    for i, v in enumerate(values):
        if v is None and allow_null:
            out[i] = np.nan
        elif is_number(v):
            out[i] = float(v)
        else:
            raise DetectionsFormatError(path, f"{field}[{i}]", f"must be a number, got {v!r}")
    return out


def check_image_size(image_size, path: str, stored=None) -> tuple[float, float] | None:
    """``(width, height)`` pixels from the argument and/or the file (they must agree)."""
    if image_size is not None:
        try:
            w, h = (float(v) for v in image_size)
        except (TypeError, ValueError):
            raise ValueError(f"image_size: expected (width, height) pixels, got "
                             f"{image_size!r}") from None
        if not (np.isfinite(w) and np.isfinite(h) and w > 0 and h > 0):
            raise ValueError(f"image_size: expected positive (width, height) pixels, got "
                             f"{image_size!r}")
        if stored is not None and tuple(stored) != (w, h):
            raise ValueError(f"image_size: the argument gives {(w, h)} but {path} stores "
                             f"{tuple(stored)}")
        return (w, h)
    return None if stored is None else (float(stored[0]), float(stored[1]))


def stored_image_size(arrays: dict, path: str) -> tuple[float, float] | None:
    """An ``.npz``'s optional ``image_size`` field, checked: (width, height) pixels."""
    size = arrays.get("image_size")
    if size is None:
        return None
    if size.shape != (2,) or size.dtype.kind not in "fiu" or not np.all(size > 0):
        raise DetectionsFormatError(path, "image_size", "must be (2,) positive (width, "
                                    f"height) pixels, got {size}")
    return float(size[0]), float(size[1])


def check_pixels(points: np.ndarray, path: str, field: str, hint: str) -> None:
    """Refuse coordinates that are all within [-1, 1]: normalised, not pixels.

    (A person inside a 2 x 2 pixel square is not a detection.)
    """
    finite = points[np.isfinite(points)]
    if finite.size >= 4 and np.abs(finite).max() <= 1.0:
        raise DetectionsFormatError(
            path, field, f"coordinates all lie within [-1, 1]: they look normalised, not "
            f"pixels; {hint}")


# ----------------------------------------------------------------------------- people


class Person(NamedTuple):
    """One detection in one frame (internal to the readers)."""

    keypoints: np.ndarray  # (J, 2) float64 pixels, NaN where missing
    confidence: np.ndarray  # (J,) float64 in [0, 1], 0 where missing
    track_id: int | None  # the file's track id, if any


class Frame(NamedTuple):
    """One frame of a file (internal): its number, its name, and the people in it."""

    number: int
    image_id: Any
    people: list[Person]


def person_from_triples(triples: np.ndarray, *, track_id: int | None = None,
                        score_is_flag: bool = False) -> Person | None:
    """``(J, 3)`` rows ``(x, y, c)`` -> a :class:`Person`; None if no joint is present.

    A joint is missing when ``c <= 0`` (the ``(0, 0, 0)`` that OpenPose, COCO and
    AlphaPose write for undetected joints) or its coordinates are not finite: it becomes
    NaN with confidence 0. Scores are clipped to [0, 1]; with ``score_is_flag`` (COCO
    ground truth, ``v`` in {0, 1, 2}) a labelled joint (``v > 0``) has confidence 1.
    """
    xy = np.array(triples[:, :2], np.float64)
    c = np.asarray(triples[:, 2], np.float64)
    present = (c > 0) & np.isfinite(xy).all(axis=-1)
    if not present.any():
        return None
    xy[~present] = np.nan
    conf = np.where(present, 1.0 if score_is_flag else np.clip(c, 0.0, 1.0), 0.0)
    return Person(xy, conf, track_id)


def person_from_arrays(xy: np.ndarray, conf: np.ndarray, *,
                       track_id: int | None = None) -> Person | None:
    """``(J, 2)`` pixels and ``(J,)`` confidences; NaN coordinates are missing."""
    xy = np.array(xy, np.float64)
    present = np.isfinite(xy).all(axis=-1)
    if not present.any():
        return None
    xy[~present] = np.nan
    conf = np.nan_to_num(np.clip(np.asarray(conf, np.float64), 0, 1), nan=0.0)
    return Person(xy, np.where(present, conf, 0.0), track_id)


def assemble(frames: Sequence[Frame], *, layout: str, source: str, format: str,
             image_size: tuple[float, float] | None, use_file_ids: bool,
             tracking_options: dict | None = None) -> Detections2D:
    """Per-frame people -> :class:`Detections2D`.

    With ``use_file_ids`` each person's ``track_id`` is its track; otherwise people are
    associated frame to frame by :func:`jpose.detections.tracking.associate`. ``frames``
    must be sorted by number with distinct numbers.
    """
    from jpose.detections import tracking  # Deferred: tracking imports this module.

    skel = skeleton.get(layout)
    numbers_ = np.array([f.number for f in frames], np.int64)
    if len(numbers_) > 1 and not np.all(np.diff(numbers_) > 0):
        raise AssertionError("frames must be sorted by distinct frame numbers")
    if use_file_ids:
        ids = [[p.track_id for p in f.people] for f in frames]
    else:
        people = [np.stack([p.keypoints for p in f.people]) if f.people
                  else np.zeros((0, skel.num_joints, 2)) for f in frames]
        assigned = tracking.associate(people, numbers_, **(tracking_options or {}))
        ids = [list(a) for a in assigned]
    spans: dict[int, list[int]] = {}
    for i, frame_ids in enumerate(ids):
        for tid in frame_ids:
            span = spans.setdefault(int(tid), [i, i])
            span[1] = i
    tracks = []
    for tid in sorted(spans):
        first, last = spans[tid]
        n = last - first + 1
        kp = np.full((n, skel.num_joints, 2), np.nan)
        conf = np.zeros((n, skel.num_joints))
        for i in range(first, last + 1):
            for p, pid in zip(frames[i].people, ids[i]):
                if pid == tid:
                    kp[i - first], conf[i - first] = p.keypoints, p.confidence
        tracks.append(Track(tid, kp, conf, numbers_[first:last + 1].copy(),
                            tuple(f.image_id for f in frames[first:last + 1])))
    return Detections2D(tuple(tracks), skel.name, image_size, str(source), format)


def check_unique_ids(frames: Sequence[Frame]) -> bool:
    """True when every person has a track id and no id repeats within a frame."""
    for f in frames:
        ids = [p.track_id for p in f.people]
        if any(i is None for i in ids) or len(set(ids)) != len(ids):
            return False
    return True
