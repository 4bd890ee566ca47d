"""Keypoints already in arrays: jpose's own ``.npz`` form (read without pickle).

Keys
----
* ``keypoints``: ``(T, J, 3)`` = x, y, confidence, or ``(T, J, 2)`` = x, y with a
  separate ``confidence`` ``(T, J)`` (without either, confidence 1). ``(N, T, J, C)``
  holds N people (tracks 0..N-1, or ``track_ids`` (N,)) over the same T frames.
  **Pixels**; NaN coordinates are missing joints (confidence 0). Confidences must lie in
  [0, 1].
* ``layout``: a string array (``np.asarray("coco_17")``) naming the joint layout, or pass
  ``layout=`` (when both are given they must agree).
* optional ``frames`` (T,) integer frame numbers (default 0..T-1, strictly increasing),
  ``image_size`` (2,) = (width, height) pixels, ``track_ids`` (N,) integers.
"""

from __future__ import annotations

import os

import numpy as np

from jpose import io, skeleton
from jpose.detections import _common
from jpose.detections._common import DetectionsFormatError, Detections2D, Track

__all__ = ["read_npz"]


def _layout(arrays: dict, layout: str | None, path: str,
            default_layout: str | None = None) -> str:
    stored = arrays.get("layout")
    if stored is not None:
        if stored.dtype.kind not in "US" or stored.ndim != 0:
            raise DetectionsFormatError(path, "layout", f"must be a string array "
                                        f"(np.asarray('coco_17')), got {stored.dtype}"
                                        f"{stored.shape}")
        stored = str(stored)
        try:
            stored = skeleton.get(stored).name
        except ValueError as e:
            raise DetectionsFormatError(path, "layout", str(e)) from None
    if layout is not None:
        name = skeleton.get(layout).name
        if stored is not None and stored != name:
            raise ValueError(f"layout: the argument gives {name!r} but {path} stores "
                             f"{stored!r}")
        return name
    if stored is None and default_layout is not None:
        return skeleton.get(default_layout).name
    if stored is None:
        raise DetectionsFormatError(path, "layout", f"is missing (found {sorted(arrays)}): "
                                    "store np.asarray('<layout>') or pass layout=")
    return stored


def read_npz(path: str | os.PathLike, *, layout: str | None = None,
             default_layout: str | None = None, image_size=None,
             _arrays: dict | None = None) -> Detections2D:
    """Reads the ``.npz`` described in the module docstring (``format="npz"``);
    ``default_layout`` is the layout of a file that stores none (``layout`` checks or
    overrides the file's). ``_arrays``: the file's arrays when already read."""
    path = os.fspath(path)
    arrays = io.load_npz(path, what="input") if _arrays is None else _arrays
    if "keypoints" not in arrays:
        raise DetectionsFormatError(path, "keypoints", f"is missing (found "
                                    f"{sorted(arrays)})")
    kp = arrays["keypoints"]
    if kp.dtype.kind not in "fiu":
        raise DetectionsFormatError(path, "keypoints", f"must be numeric pixels, got dtype "
                                    f"{kp.dtype}")
    name = _layout(arrays, layout, path, default_layout)
    skel = skeleton.get(name)
    if kp.ndim == 3:
        kp = kp[None]
    if kp.ndim != 4 or kp.shape[2] != skel.num_joints or kp.shape[3] not in (2, 3):
        raise DetectionsFormatError(
            path, "keypoints", f"has shape {arrays['keypoints'].shape}; expected (T, "
            f"{skel.num_joints}, 2 or 3) or (N, T, {skel.num_joints}, 2 or 3) for layout "
            f"{name!r}")
    kp = kp.astype(np.float64)
    n, t = kp.shape[:2]
    if kp.shape[3] == 3:
        if "confidence" in arrays:
            raise DetectionsFormatError(path, "confidence", "is given twice: keypoints "
                                        "already has a confidence channel")
        conf, field = kp[..., 2], "keypoints[..., 2]"
    elif "confidence" in arrays:
        conf, field = arrays["confidence"].astype(np.float64), "confidence"
        if conf.ndim == 2:
            conf = conf[None]
        if conf.shape != kp.shape[:3]:
            raise DetectionsFormatError(path, "confidence", f"has shape "
                                        f"{arrays['confidence'].shape}; expected "
                                        f"{arrays['keypoints'].shape[:-1]}")
    else:
        conf, field = np.ones(kp.shape[:3]), None
    xy = kp[..., :2]
    present = np.isfinite(xy).all(axis=-1)
    bad = present & ~((conf >= 0) & (conf <= 1))
    if bad.any():
        raise DetectionsFormatError(path, field, f"has values outside [0, 1] (first at "
                                    f"{tuple(int(i) for i in np.argwhere(bad)[0])})")
    frames = arrays.get("frames", np.arange(t))
    if (frames.shape != (t,) or frames.dtype.kind not in "iu"
            or (t > 1 and not np.all(np.diff(frames) > 0))):
        raise DetectionsFormatError(path, "frames", f"must be ({t},) strictly increasing "
                                    f"integers, got {frames.dtype}{frames.shape}")
    ids = arrays.get("track_ids", np.arange(n))
    if ids.shape != (n,) or ids.dtype.kind not in "iu" or len(set(ids.tolist())) != n:
        raise DetectionsFormatError(path, "track_ids", f"must be ({n},) distinct integers, "
                                    f"got {ids.dtype}{ids.shape}")
    size = _common.stored_image_size(arrays, path)
    tracks = []
    for i in np.argsort(ids):
        seen = np.flatnonzero(present[i].any(axis=-1))
        if not seen.size:
            continue
        sl = slice(seen[0], seen[-1] + 1)
        k = np.where(present[i][..., None], xy[i], np.nan)[sl]
        c = np.where(present[i], conf[i], 0.0)[sl]
        tracks.append(Track(int(ids[i]), k, c, frames[sl].astype(np.int64), ()))
    return Detections2D(tuple(tracks), name, _common.check_image_size(image_size, path, size),
                        path, "npz")
