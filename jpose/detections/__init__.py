"""2D keypoints from in-the-wild detectors, read exactly as the tools write them.

``read(path)`` recognises the file (:mod:`~jpose.detections.reader`) and returns a
:class:`Detections2D`: every person as a :class:`Track` of **pixel** keypoints
``(T, J, 2)`` (NaN where missing), confidences ``(T, J)`` in [0, 1] (0 where missing)
and frame numbers ``(T,)``, plus the joint layout, image size, source and format name::

    from jpose import skeleton
    from jpose import detections

    dets = detections.read("openpose_json/")          # BODY_25 by default
    person = detections.select_track(dets)            # the largest track
    filled = detections.fill_linear(person.keypoints, person.confidence,
                                    threshold=0.3, frames=person.frames,
                                    layout=dets.layout)
    h36m = skeleton.convert(filled.keypoints, dets.layout, "h36m_17")

Formats (one module each, with the exact file layouts in its docstring):

* :mod:`~jpose.detections.openpose` -- ``--write_json`` directories (BODY_25, BODY_25B
  with ``layout="openpose_body25b"``, COCO-18).
* :mod:`~jpose.detections.coco` -- COCO results lists and annotation files, AlphaPose
  ``alphapose-results.json`` (COCO-17, Halpe-26, COCO-WholeBody-133, Halpe-136).
* :mod:`~jpose.detections.mediapipe` -- BlazePose 33 landmarks in npy/npz/JSON/CSV.
* :mod:`~jpose.detections.npz` -- jpose's own arrays with a ``layout`` field.

Files without track ids are tracked by :func:`~jpose.detections.tracking.associate`;
:mod:`~jpose.detections.fill` fills low-confidence joints over time. Nothing here
imports JAX except :func:`fill_low_rank` (which runs the trajectory-completion solver).
"""

from jpose.detections._common import (
    Detections2D,
    DetectionsFormatError,
    Track,
    natural_key,
    trailing_number,
)
from jpose.detections.coco import read_alphapose, read_coco
from jpose.detections.fill import Filled, fill_linear, fill_low_rank
from jpose.detections.mediapipe import read_mediapipe
from jpose.detections.npz import read_npz
from jpose.detections.openpose import read_openpose
from jpose.detections.reader import FORMATS, read
from jpose.detections.tracking import associate, select_track, track_size

__all__ = [
    "Detections2D",
    "DetectionsFormatError",
    "FORMATS",
    "Filled",
    "Track",
    "associate",
    "fill_linear",
    "fill_low_rank",
    "natural_key",
    "read",
    "read_alphapose",
    "read_coco",
    "read_mediapipe",
    "read_npz",
    "read_openpose",
    "select_track",
    "track_size",
    "trailing_number",
]
