"""OpenPose ``--write_json`` output: one JSON file per frame.

Files
-----
``--write_json DIR`` writes ``DIR/<name>_<frame:012d>_keypoints.json`` per frame (for
images, ``<image name>_keypoints.json``)::

    {"version": 1.3,
     "people": [{"person_id": [-1],
                 "pose_keypoints_2d": [x0, y0, c0, x1, y1, c1, ...],
                 "face_keypoints_2d": [], "hand_left_keypoints_2d": [],
                 "hand_right_keypoints_2d": [], "pose_keypoints_3d": [],
                 "face_keypoints_3d": [], "hand_left_keypoints_3d": [],
                 "hand_right_keypoints_3d": []},
                ...]}

* Coordinates are **pixels** of the input image (the default ``--keypoint_scale 0``;
  normalised output, scales 3 and 4, is refused with a message) and ``c`` is in [0, 1].
* An undetected joint is written as ``0, 0, 0``: it becomes NaN with confidence 0.
* The frame number is the run of digits right before ``_keypoints.json``, and files are
  ordered by it (a natural sort: never text order). Files without digits are numbered
  0, 1, ... in natural order. Two files with the same number are an error.
* A frame with nobody in it has ``"people": []``; a person whose ``pose_keypoints_2d``
  is empty (``--body 0``) or all zeros is skipped. Version 1.0's key ``pose_keypoints``
  is read too.
* ``person_id`` is ``[-1]`` unless OpenPose tracked (``--tracking``); ids other than -1
  are used as track ids when every person of every frame has one, unique in its frame.
  Otherwise people are tracked by :func:`jpose.detections.tracking.associate`.

Layouts (by the number of values, 3 per joint)
----------------------------------------------
* 75 values: ``openpose_body25`` by default (BODY_25, OpenPose's default model).
  **BODY_25B also has 25 joints** in another order and cannot be told apart from the file:
  pass ``layout="openpose_body25b"`` for it.
* 54 values: ``openpose_coco18`` (``--model_pose COCO``).
"""

from __future__ import annotations

import glob
import os
import re
from typing import Any


from jpose import skeleton
from jpose.detections import _common
from jpose.detections._common import DetectionsFormatError, Detections2D

__all__ = ["read_openpose", "LAYOUTS_BY_VALUES"]

#: Default layout by the length of ``pose_keypoints_2d``.
LAYOUTS_BY_VALUES = {75: "openpose_body25", 54: "openpose_coco18"}
_MODEL_NAMES = {75: "BODY_25", 54: "COCO-18"}
_SUFFIX = "_keypoints.json"
_FRAME = re.compile(r"(\d+)_keypoints\.json$")


def _files(path: str) -> list[tuple[int | None, str]]:
    if os.path.isdir(path):
        files = glob.glob(os.path.join(glob.escape(path), "*" + _SUFFIX))
        if not files:
            raise DetectionsFormatError(path, None, f"is a directory without OpenPose "
                                        f"'*{_SUFFIX}' files")
    elif os.path.isfile(path):
        files = [path]
    else:
        raise FileNotFoundError(f"{path!r} does not exist")
    out = []
    for f in files:
        m = _FRAME.search(os.path.basename(f))
        out.append((None if m is None else int(m.group(1)), f))
    return out


def _expected(layout: str | None) -> str:
    if layout is not None:
        skel = skeleton.get(layout)
        return f"{3 * skel.num_joints} for layout {skel.name!r}"
    return " or ".join(f"{n} ({_MODEL_NAMES[n]})" for n in LAYOUTS_BY_VALUES)


def _track_id(person: dict, path: str, field: str) -> int | None:
    pid = person.get("person_id", -1)
    if isinstance(pid, list) and len(pid) == 1:
        pid = pid[0]
    if isinstance(pid, bool) or not isinstance(pid, (int, float)) or pid != int(pid):
        raise DetectionsFormatError(path, field, f"must be an integer or [integer], got "
                                    f"{person.get('person_id')!r}")
    return None if int(pid) == -1 else int(pid)


def _read_frame(path: str, data: Any, layout: str | None, num_values: list[int]):
    """People of one file; ``num_values`` holds the value count fixed by the first one."""
    if not isinstance(data, dict) or "people" not in data:
        raise DetectionsFormatError(path, "people", "is missing: not an OpenPose JSON "
                                    "file (expected {\"version\": ..., \"people\": [...]})")
    people = data["people"]
    if not isinstance(people, list):
        raise DetectionsFormatError(path, "people", f"must be a list, got "
                                    f"{type(people).__name__}")
    out = []
    for i, person in enumerate(people):
        if not isinstance(person, dict):
            raise DetectionsFormatError(path, f"people[{i}]", "must be an object")
        key = "pose_keypoints_2d" if "pose_keypoints_2d" in person else "pose_keypoints"
        field = f"people[{i}].{key}"
        if key not in person:
            raise DetectionsFormatError(path, f"people[{i}].pose_keypoints_2d", "is missing")
        values = _common.numbers(person[key], path, field)
        if values.size == 0:
            continue
        allowed = ([3 * skeleton.get(layout).num_joints] if layout is not None
                   else list(LAYOUTS_BY_VALUES))
        if values.size not in allowed or (num_values and values.size != num_values[0]):
            expected = (f"{num_values[0]} like the files before it" if num_values
                        and values.size in allowed else _expected(layout))
            raise DetectionsFormatError(path, field, f"has {values.size} values; expected "
                                        f"{expected}")
        num_values[:] = [values.size]
        tid = _track_id(person, path, f"people[{i}].person_id")
        p = _common.person_from_triples(values.reshape(-1, 3), track_id=tid)
        if p is not None:
            _common.check_pixels(p.keypoints, path, field,
                                 "rerun OpenPose with --keypoint_scale 0 (pixels)")
            out.append(p)
    return out


def read_openpose(path: str | os.PathLike, *, layout: str | None = None,
                  image_size=None, tracking_options: dict | None = None) -> Detections2D:
    """Reads an OpenPose JSON directory (or one ``*_keypoints.json`` file).

    Args:
      path: the ``--write_json`` directory, or a single frame's file.
      layout: ``None`` (by value count: BODY_25 or COCO-18), ``"openpose_body25b"`` for
        BODY_25B output, or any layout with the file's joint count.
      image_size: ``(width, height)`` pixels, stored in the result (OpenPose does not
        write it).
      tracking_options: keyword arguments of :func:`~jpose.detections.tracking.associate`.

    Returns:
      :class:`~jpose.detections.Detections2D` with ``format="openpose"``; each track's
      ``image_ids`` are the file names.

    Raises:
      DetectionsFormatError: naming the file and field (e.g.
        ``people[0].pose_keypoints_2d has 74 values; expected 75 (BODY_25) or 54
        (COCO-18)``); two files with the same frame number.
    """
    path = os.fspath(path)
    files = _files(path)
    numbered = [f for f in files if f[0] is not None]
    if len(numbered) == len(files):
        files.sort(key=lambda f: (f[0], _common.natural_key(os.path.basename(f[1]))))
        nums = [f[0] for f in files]
    else:
        files.sort(key=lambda f: _common.natural_key(os.path.basename(f[1])))
        nums = list(range(len(files)))
    for (a, fa), (b, fb) in zip(zip(nums, files), zip(nums[1:], files[1:])):
        if a == b:
            raise DetectionsFormatError(path, None, f"holds two files for frame {a}: "
                                        f"{os.path.basename(fa[1])} and "
                                        f"{os.path.basename(fb[1])} (one video per "
                                        "directory)")
    num_values: list[int] = []
    frames = []
    for num, (_, f) in zip(nums, files):
        people = _read_frame(f, _common.load_json(f), layout, num_values)
        frames.append(_common.Frame(int(num), os.path.basename(f), people))
    if layout is None:
        layout = LAYOUTS_BY_VALUES[num_values[0]] if num_values else "openpose_body25"
    return _common.assemble(
        frames, layout=layout, source=path, format="openpose",
        image_size=_common.check_image_size(image_size, path),
        use_file_ids=_common.check_unique_ids(frames), tracking_options=tracking_options)
