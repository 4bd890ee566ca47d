"""One entry point, :func:`read`, that recognises what a keypoint file is.

=====================================  ==========================================
what ``path`` is                       read as
=====================================  ==========================================
a directory                            OpenPose ``*_keypoints.json`` per frame
``.json`` object with ``people``       one OpenPose frame
``.json`` object with ``annotations``  COCO annotation file
``.json`` list of ``{image_id, keypoints}``  COCO results; AlphaPose when an entry
                                       has ``idx`` or ``box``
``.json`` list of landmark frames      MediaPipe
``.csv``, ``.npy``                     MediaPipe
``.npz`` with ``keypoints``            jpose arrays (:mod:`~jpose.detections.npz`)
other ``.npz`` of (T, 33, C) landmarks  MediaPipe arrays
=====================================  ==========================================

``format=`` skips the guess.
"""

from __future__ import annotations

import os
from typing import Any

from jpose.detections import _common, coco, mediapipe, npz, openpose
from jpose.detections._common import DetectionsFormatError, Detections2D

__all__ = ["read", "FORMATS"]

FORMATS = ("openpose", "coco", "alphapose", "mediapipe", "npz")


def _json_format(data: Any) -> str | None:
    if isinstance(data, dict):
        if "people" in data:
            return "openpose"
        if "annotations" in data:
            return "coco"
        return None
    if not isinstance(data, list):
        return None
    first = next((e for e in data if e not in (None, [])), None)
    if first is None:
        return "mediapipe" if data else None
    if isinstance(first, dict) and "image_id" in first and "keypoints" in first:
        alpha = any(isinstance(e, dict) and ("idx" in e or "box" in e) for e in data)
        return "alphapose" if alpha else "coco"
    if isinstance(first, list) or (isinstance(first, dict) and (
            "landmarks" in first or "pose_landmarks" in first)):
        return "mediapipe"
    return None


def read(path: str | os.PathLike, *, layout: str | None = None, image_size=None,
         format: str | None = None, channels: str | None = None,
         tracking_options: dict | None = None,
         default_layout: str | None = None) -> Detections2D:
    """Reads any supported 2D keypoint file into tracks of **pixel** keypoints.

    Args:
      path: file or (OpenPose) directory; see the module docstring for the recognition.
      layout: joint layout when the file cannot tell it: ``"openpose_body25b"`` for
        OpenPose BODY_25B (default BODY_25), the layout of an ``.npz`` without a
        ``layout`` field; checked against the file otherwise.
      image_size: ``(width, height)`` pixels; needed for MediaPipe's normalised
        coordinates, stored in the result otherwise (checked against the file's).
      format: one of :data:`FORMATS` to skip recognition.
      channels: MediaPipe array channel order (see :mod:`~jpose.detections.mediapipe`).
      tracking_options: keyword arguments of :func:`~jpose.detections.tracking.associate`
        for files without track ids.
      default_layout: the layout of an ``.npz`` that stores none and gets no ``layout``
        (e.g. a model's input layout).

    Returns:
      :class:`~jpose.detections.Detections2D`: per track ``keypoints`` (T, J, 2) pixels
      with NaN where missing, ``confidence`` (T, J) in [0, 1] (0 where missing),
      ``frames`` (T,); the layout, image size, source path and format name.

    Raises:
      FileNotFoundError: ``path`` does not exist.
      DetectionsFormatError: (a ValueError) naming the file and the field at fault.
      ValueError: bad arguments.
    """
    path = os.fspath(path)
    if format is not None and format not in FORMATS:
        raise ValueError(f"format: expected one of {FORMATS} or None, got {format!r}")
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path!r} does not exist")
    opts = dict(tracking_options=tracking_options)
    ext = os.path.splitext(path)[1].lower()
    if format is None and os.path.isdir(path):
        format = "openpose"
    if format == "openpose":
        return openpose.read_openpose(path, layout=layout, image_size=image_size, **opts)
    if format == "npz":
        return npz.read_npz(path, layout=layout, default_layout=default_layout,
                            image_size=image_size)
    if format is None and ext == ".json":
        data = _common.load_json(path)
        format = _json_format(data)
        if format is None:
            raise DetectionsFormatError(
                path, None, "is not a recognised keypoint JSON: expected OpenPose "
                "({\"people\": ...}), COCO results/annotations (image_id, keypoints), "
                "AlphaPose results or MediaPipe landmark frames")
        if format == "openpose":
            return openpose.read_openpose(path, layout=layout, image_size=image_size, **opts)
        if format == "mediapipe":
            return mediapipe.read_mediapipe(path, image_size=image_size, layout=layout,
                                            _data=data, **opts)
        return coco.from_json(data, path, layout=layout, image_size=image_size,
                              format=format, **opts)
    if format == "coco":
        return coco.read_coco(path, layout=layout, image_size=image_size, **opts)
    if format == "alphapose":
        return coco.read_alphapose(path, layout=layout, image_size=image_size, **opts)
    if format is None and ext == ".npz":
        from jpose import io
        keys = io.load_npz(path, what="input")
        looks_mediapipe = any(k in keys for k in ("landmarks", "pose_landmarks")) or any(
            v.ndim == 3 and v.shape[1] == 33 for v in keys.values())
        if "keypoints" in keys or not looks_mediapipe:  # else: "keypoints is missing"
            return npz.read_npz(path, layout=layout, default_layout=default_layout,
                                image_size=image_size, _arrays=keys)
        format = "mediapipe"
    if format is None and ext in (".csv", ".npy"):
        format = "mediapipe"
    if format == "mediapipe":
        return mediapipe.read_mediapipe(path, image_size=image_size, layout=layout,
                                        channels=channels, **opts)
    raise DetectionsFormatError(path, None, f"has extension {ext!r}; expected an OpenPose "
                                "directory, .json, .csv, .npy or .npz")
