"""COCO-style keypoint JSON: COCO results, COCO annotation files, and AlphaPose output.

Results list (COCO evaluation format; Detectron2, MMPose, AlphaPose write it)::

    [{"image_id": 12, "category_id": 1, "keypoints": [x1, y1, s1, ..., xJ, yJ, sJ],
      "score": 0.97, "track_id": 3},        # track_id optional (PoseTrack style)
     ...]

Annotation file (COCO / PoseTrack ground truth)::

    {"images": [{"id": 12, "file_name": "frame_000012.jpg", "width": 1920,
                 "height": 1080}, ...],
     "annotations": [{"image_id": 12, "keypoints": [x1, y1, v1, ...],
                      "track_id": 3, ...}, ...]}

AlphaPose (``alphapose-results.json``, a results list)::

    [{"image_id": "12.jpg", "category_id": 1, "keypoints": [...], "score": 2.9,
      "box": [x, y, w, h], "idx": [0.0]}, ...]

Rules
-----
* Coordinates are **pixels**. Joints by the number of values (3 per joint):
  51 -> ``coco_17``; 78 -> ``halpe_26``; 399 (COCO-WholeBody, 133 points) -> its body
  and feet, the first 23, as ``coco_wholebody_23``; 408 (Halpe-FullBody, 136 points)
  -> its first 26 as ``halpe_26`` (face and hands are dropped). A ``layout=`` argument
  must have the file's joint count (or be the kept prefix of 133 / 136).
* Results: the third value is a score, clipped to [0, 1]; a joint with score <= 0 (the
  ``0, 0, 0`` of undetected joints) is missing: NaN, confidence 0. Annotations: ``v`` is
  a flag (0 not labelled -> missing; 1, 2 labelled -> confidence 1).
* Frames: ``image_id`` values must be all ints (sorted numerically, the number is the
  id) or all strings (sorted naturally, ``frame_2`` before ``frame_10``; the number is the
  id's trailing digits without extension, e.g. ``"12.jpg"`` -> 12, or 0, 1, ... in that
  order when some id has none or two share one). An annotation file's frames are all its
  ``images``, also those without a person; a results list's are the ids it mentions.
  ``category_id`` is not checked. People without any present joint are dropped.
* Tracks: ``track_id`` (COCO/PoseTrack) is used when present; it must then be an int on
  every entry, unique within an image. AlphaPose's ``idx`` is its PoseFlow/``--pose_track``
  id, but AlphaPose writes a placeholder (``[0.0]``, or a list of merged ids) for every
  person when it did not track: ``idx`` is therefore used only when each one is a single
  integer and no image repeats one; otherwise people are associated frame to frame
  (:func:`jpose.detections.tracking.associate`), as for files without ids.
* ``image_size`` comes from the annotation file's ``images`` when they all have the same
  ``width``/``height``; results carry none.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any


from jpose import skeleton
from jpose.detections import _common
from jpose.detections._common import DetectionsFormatError, Detections2D

__all__ = ["read_coco", "read_alphapose", "LAYOUTS_BY_JOINTS"]

#: Joint count in the file -> (layout, number of leading joints kept).
LAYOUTS_BY_JOINTS = {
    17: ("coco_17", 17),
    26: ("halpe_26", 26),
    133: ("coco_wholebody_23", 23),
    136: ("halpe_26", 26),
}
_NAMES = {17: "COCO-17", 26: "Halpe-26", 133: "COCO-WholeBody-133", 136: "Halpe-136"}


def _layout_for(num_values: int, layout: str | None, path: str, field: str):
    """(layout name, joints kept) for a keypoint list of ``num_values`` values."""
    joints, rem = divmod(num_values, 3)
    if layout is not None:
        skel = skeleton.get(layout)
        known = LAYOUTS_BY_JOINTS.get(joints) if not rem else None
        if not rem and joints == skel.num_joints:
            return skel.name, joints
        if known is not None and known[0] == skel.name:
            return known
        raise DetectionsFormatError(path, field, f"has {num_values} values; expected "
                                    f"{3 * skel.num_joints} for layout {skel.name!r}")
    if rem or joints not in LAYOUTS_BY_JOINTS:
        expected = ", ".join(f"{3 * j} ({_NAMES[j]})" for j in LAYOUTS_BY_JOINTS)
        raise DetectionsFormatError(path, field, f"has {num_values} values; expected "
                                    f"one of {expected}")
    return LAYOUTS_BY_JOINTS[joints]


def _image_id(v: Any, path: str, field: str):
    if isinstance(v, bool) or not isinstance(v, (int, str)):
        raise DetectionsFormatError(path, field, f"must be an int or a string, got {v!r}")
    return v


def _int_id(v: Any) -> int | None:
    """An integer id from ``3``, ``3.0`` or ``[3.0]``; None for anything else."""
    if isinstance(v, list) and len(v) == 1:
        v = v[0]
    if _common.is_number(v) and float(v) == int(v):
        return int(v)
    return None


def _sort_ids(ids: Sequence[Any], path: str, field: str) -> list:
    kinds = {type(i) for i in ids}
    if len(kinds) > 1:
        raise DetectionsFormatError(path, field, "values mix ints and strings; cannot "
                                    "order frames")
    if kinds == {str}:
        return sorted(ids, key=_common.natural_key)
    return sorted(ids)


def _parse_entries(entries: list, path: str, *, prefix: str, layout: str | None,
                   id_field: str, score_is_flag: bool):
    """Entries -> ({image_id: [Person]}, layout, ids_usable)."""
    by_image: dict[Any, list] = {}
    chosen: tuple[str, int] | None = None
    has_ids = []
    for i, e in enumerate(entries):
        where = f"{prefix}[{i}]"
        if not isinstance(e, dict):
            raise DetectionsFormatError(path, where, f"must be an object, got "
                                        f"{type(e).__name__}")
        for key in ("image_id", "keypoints"):
            if key not in e:
                raise DetectionsFormatError(path, f"{where}.{key}", "is missing")
        image_id = _image_id(e["image_id"], path, f"{where}.image_id")
        field = f"{where}.keypoints"
        values = _common.numbers(e["keypoints"], path, field)
        this = _layout_for(values.size, layout, path, field)
        if chosen is not None and this != chosen:
            raise DetectionsFormatError(path, field, f"has {values.size} values but the "
                                        f"entries before it are {chosen[0]!r}")
        chosen = this
        tid = None
        if id_field in e:
            tid = _int_id(e[id_field])
            if id_field == "track_id" and tid is None:
                raise DetectionsFormatError(path, f"{where}.track_id", f"must be an "
                                            f"integer, got {e['track_id']!r}")
        has_ids.append(tid is not None)
        triples = values.reshape(-1, 3)[:this[1]]
        person = _common.person_from_triples(triples, track_id=tid,
                                             score_is_flag=score_is_flag)
        people = by_image.setdefault(image_id, [])
        if person is not None:
            _common.check_pixels(person.keypoints, path, field,
                                 "COCO keypoints must be pixels")
            people.append(person)
    if id_field == "track_id" and any(has_ids) and not all(has_ids):
        first = has_ids.index(False)
        raise DetectionsFormatError(path, f"{prefix}[{first}].track_id", "is missing but "
                                    "other entries have one (give every entry a track_id, "
                                    "or none)")
    if id_field == "track_id" and all(has_ids) and has_ids:
        for image_id, people in by_image.items():
            ids = [p.track_id for p in people]
            if len(set(ids)) != len(ids):
                dup = next(t for t in ids if ids.count(t) > 1)
                raise DetectionsFormatError(path, "track_id", f"{dup} appears twice in "
                                            f"image_id {image_id!r}")
    if chosen is None:
        chosen = (skeleton.get(layout).name if layout is not None else "coco_17", 0)
    return by_image, chosen[0], bool(has_ids) and all(has_ids)


def _frames(by_image: dict, image_ids: list):
    numbers = _common.frame_numbers(image_ids)
    return [_common.Frame(n, i, by_image.get(i, [])) for n, i in zip(numbers, image_ids)]


def _from_results(entries: list, path: str, *, layout, image_size, format: str,
                  tracking_options) -> Detections2D:
    id_field = "idx" if format == "alphapose" else "track_id"
    by_image, layout_name, have_ids = _parse_entries(
        entries, path, prefix="", layout=layout, id_field=id_field, score_is_flag=False)
    ids = _sort_ids(list(by_image), path, "image_id")
    frames = _frames(by_image, ids)
    use_ids = have_ids and _common.check_unique_ids(frames)
    return _common.assemble(frames, layout=layout_name, source=path, format=format,
                            image_size=_common.check_image_size(image_size, path),
                            use_file_ids=use_ids, tracking_options=tracking_options)


def _from_annotations(data: dict, path: str, *, layout, image_size,
                      tracking_options) -> Detections2D:
    for key in ("images", "annotations"):
        if not isinstance(data.get(key), list):
            raise DetectionsFormatError(path, key, "must be a list (COCO annotation file)")
    names, sizes = {}, set()
    for i, im in enumerate(data["images"]):
        if not isinstance(im, dict) or "id" not in im:
            raise DetectionsFormatError(path, f"images[{i}].id", "is missing")
        iid = _image_id(im["id"], path, f"images[{i}].id")
        names[iid] = im.get("file_name", iid)
        sizes.add((im.get("width"), im.get("height")))
    by_image, layout_name, have_ids = _parse_entries(
        data["annotations"], path, prefix="annotations", layout=layout,
        id_field="track_id", score_is_flag=True)
    for i, e in enumerate(data["annotations"]):
        if e["image_id"] not in names:
            raise DetectionsFormatError(path, f"annotations[{i}].image_id",
                                        f"{e['image_id']!r} is not an id in 'images'")
    ids = _sort_ids(list(names), path, "images[].id")
    stored = None
    if len(sizes) == 1:
        w, h = next(iter(sizes))
        if _common.is_number(w) and _common.is_number(h) and w > 0 and h > 0:
            stored = (float(w), float(h))
    frames = _frames(by_image, ids)
    return _common.assemble(frames, layout=layout_name, source=path, format="coco",
                            image_size=_common.check_image_size(image_size, path, stored),
                            use_file_ids=have_ids, tracking_options=tracking_options)


def from_json(data: Any, path: str, *, layout=None, image_size=None, format=None,
              tracking_options=None) -> Detections2D:
    """Parsed COCO/AlphaPose JSON -> :class:`Detections2D` (``format`` None: AlphaPose
    when an entry has ``idx`` or ``box``, else COCO)."""
    if isinstance(data, dict):
        if "annotations" not in data:
            raise DetectionsFormatError(path, "annotations", "is missing: expected a COCO "
                                        "results list or an annotation file")
        return _from_annotations(data, path, layout=layout, image_size=image_size,
                                 tracking_options=tracking_options)
    if not isinstance(data, list):
        raise DetectionsFormatError(path, None, "must hold a list of keypoint results")
    if format is None:
        alpha = any(isinstance(e, dict) and ("idx" in e or "box" in e) for e in data)
        format = "alphapose" if alpha else "coco"
    return _from_results(data, path, layout=layout, image_size=image_size, format=format,
                         tracking_options=tracking_options)


def read_coco(path: str | os.PathLike, *, layout: str | None = None, image_size=None,
              tracking_options: dict | None = None) -> Detections2D:
    """Reads COCO keypoint results (a list) or a COCO annotation file (a dict).

    See the module docstring for the rules. ``image_size`` (``(width, height)`` pixels)
    is stored in the result and must agree with the annotation file's. Returns
    ``format="coco"``; each track's ``image_ids`` are the ``image_id`` values.
    """
    path = os.fspath(path)
    data = _common.load_json(path)
    return from_json(data, path, layout=layout, image_size=image_size,
                     format=None if isinstance(data, dict) else "coco",
                     tracking_options=tracking_options)


def read_alphapose(path: str | os.PathLike, *, layout: str | None = None,
                   image_size=None, tracking_options: dict | None = None) -> Detections2D:
    """Reads ``alphapose-results.json`` (COCO-17, Halpe-26, COCO-WholeBody-133 or
    Halpe-136 keypoints; ``idx`` as described in the module docstring).

    Returns ``format="alphapose"``; each track's ``image_ids`` are the image names.
    """
    path = os.fspath(path)
    data = _common.load_json(path)
    if not isinstance(data, list):
        raise DetectionsFormatError(path, None, "must hold a list of AlphaPose results")
    return from_json(data, path, layout=layout, image_size=image_size, format="alphapose",
                     tracking_options=tracking_options)
