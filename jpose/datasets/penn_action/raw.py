"""Reading the raw Penn Action release (``shared/DATASET_FORMATS.md`` section 5).

Layout under the manual directory (the unpacked ``Penn_Action/`` folder)::

    frames/<NNNN>/000001.jpg, 000002.jpg, …   (sequence 4 digits, frame 6 digits, 1-based)
    labels/<NNNN>.mat                          (MATLAB v5)

Sequences are discovered from both folders; every sequence needs both. The split comes
from each label's ``train`` field (1 = train, -1 = test). Sequences are keyed by their
4-digit number (``"0001"``).

Conventions of the returned arrays (NumPy, no TFDS):

* ``keypoints_2d (T, 13, 2)`` float32 jpose pixels (top-left pixel centre at (0, 0)).
  The labels were made and are drawn (``tools/visualize.m``) in MATLAB image
  coordinates, whose top-left pixel centre is (1, 1), so 1 is subtracted from ``x``,
  ``y`` and ``bbox``. Joint order ``penn_action_13`` (= the raw order).
* ``visible (T, 13)`` bool: the ``visibility`` field (MATLAB logical), unchanged;
  the coordinates of invisible joints are kept as annotated.
* ``box (T, 4)`` float32 ``(x0, y0, x1, y1)`` pixels from ``bbox``. The column order
  is documented as ``(x1, y1, x2, y2)`` but unconfirmed; rows with ``x1 > x2`` or
  ``y1 > y2`` have their corners sorted (so either corner order reads the same), and
  a warning names the file. Sequences 1154 and 1865 of the release have one ``bbox``
  row fewer than frames: missing rows repeat the last row and ``box_valid`` is False.
* ``image_size (2,)`` int32 ``(width, height)`` from ``dimensions = [H W nframes]``.
"""

from __future__ import annotations

import logging
import os
import re

import numpy as np

from jpose.datasets import raw_files, video_clips
from jpose.datasets.raw_files import MalformedRawFileError

__all__ = [
    "NUM_JOINTS",
    "SPLITS",
    "label_path",
    "frame_dir",
    "index_release",
    "read_label",
    "check_sequence",
    "read_sequence",
]

DATASET = "penn_action"
NUM_JOINTS = 13
SPLITS = ("train", "test")
_FIELDS = ("action", "pose", "x", "y", "visibility", "train", "bbox", "dimensions", "nframes")
_HINT = ("Penn Action: download Penn_Action.tar.gz from "
         "http://dreamdragon.github.io/PennAction/ and pass the unpacked Penn_Action/ folder.")


def label_path(seq: str) -> str:
    """Relative path of sequence ``seq``'s label file (``labels/0001.mat``)."""
    return f"labels/{seq}.mat"


def frame_dir(seq: str) -> str:
    """Relative path of sequence ``seq``'s frame directory (``frames/0001``)."""
    return f"frames/{seq}"


def _listdir(path: str, pattern: str) -> list[str]:
    if not os.path.isdir(path):
        return []
    rx = re.compile(pattern)
    return sorted(m[1] for m in map(rx.match, os.listdir(path)) if m)


def index_release(root: str | os.PathLike) -> tuple[str, ...]:
    """Sorted sequence ids present under ``frames/`` or ``labels/``.

    Raises :class:`~jpose.datasets.raw_files.MissingRawFilesError` listing every
    missing label file and frame directory (as its first frame ``000001.jpg``).
    """
    root = os.fspath(root)
    labels = set(_listdir(os.path.join(root, "labels"), r"^(\d{4})\.mat$"))
    frames = {s for s in _listdir(os.path.join(root, "frames"), r"^(\d{4})$")
              if os.path.isdir(os.path.join(root, "frames", s))}
    if not labels and not frames:
        raise raw_files.MissingRawFilesError(
            DATASET, root, ["labels/<NNNN>.mat", "frames/<NNNN>/000001.jpg"], _HINT)
    seqs = sorted(labels | frames)
    expected = []
    for s in seqs:
        expected += [label_path(s), f"{frame_dir(s)}/000001.jpg"]
    raw_files.require_paths(DATASET, root, expected, hint=_HINT)
    return tuple(seqs)


def _int_scalar(value, *, path: str, name: str) -> int:
    v = raw_files.mat_scalar(value, path=path, name=name)
    if not float(v).is_integer():
        raise MalformedRawFileError(path, name, f"expected an integer, got {v}")
    return int(v)


def read_label(path: str | os.PathLike) -> dict:
    """One ``labels/NNNN.mat`` as NumPy, checked (see the module docstring).

    Returns ``keypoints_2d (T,13,2)`` float32, ``visible (T,13)`` bool, ``box (T,4)``
    float32, ``box_valid (T,)`` bool, ``action``, ``view`` (the ``pose`` field),
    ``train`` (bool), ``image_size (2,)`` int32 ``(width, height)``, ``num_frames``.
    Raises :class:`MalformedRawFileError` naming the file and field(s) at fault,
    including when ``nframes``, ``dimensions[2]`` and the rows of ``x``, ``y``,
    ``visibility`` disagree.
    """
    path = os.fspath(path)
    data = raw_files.load_mat_v5(path, _FIELDS)
    num = _int_scalar(data["nframes"], path=path, name="nframes")
    dims = raw_files.check_shape(data["dimensions"], (1, 3), path=path, name="dimensions")
    x = raw_files.check_shape(data["x"], (None, NUM_JOINTS), path=path, name="x")
    y = raw_files.check_shape(data["y"], (None, NUM_JOINTS), path=path, name="y")
    vis = raw_files.check_shape(data["visibility"], (None, NUM_JOINTS), path=path, name="visibility")
    counts = {"nframes": num, "dimensions[2]": dims[0, 2], "x rows": x.shape[0],
              "y rows": y.shape[0], "visibility rows": vis.shape[0]}
    if num < 1 or len({float(c) for c in counts.values()}) != 1:
        shown = ", ".join(f"{k}={v:g}" for k, v in counts.items())
        raise MalformedRawFileError(path, "nframes", f"frame counts disagree ({shown})")

    bbox = np.asarray(data["bbox"])
    if bbox.size == 0:
        bbox = np.zeros((0, 4))
    bbox = raw_files.check_shape(bbox, (None, 4), path=path, name="bbox")
    if bbox.shape[0] > num:
        raise MalformedRawFileError(path, "bbox", f"has {bbox.shape[0]} rows for nframes={num}")
    bbox = video_clips.from_matlab_pixels(bbox)
    with np.errstate(invalid="ignore"):
        swapped = (bbox[:, 0] > bbox[:, 2]) | (bbox[:, 1] > bbox[:, 3])
    if swapped.any():
        logging.warning("%s: field 'bbox': %d of %d rows have x1 > x2 or y1 > y2; "
                        "sorting their corners", path, int(swapped.sum()), len(bbox))
        bbox = np.concatenate([np.minimum(bbox[:, :2], bbox[:, 2:]),
                               np.maximum(bbox[:, :2], bbox[:, 2:])], -1)
    box, box_valid = video_clips.pad_rows(bbox, num)

    train = _int_scalar(data["train"], path=path, name="train")
    if train not in (1, -1):
        raise MalformedRawFileError(path, "train", f"expected 1 (train) or -1 (test), got {train}")
    height, width = (_int_scalar(v, path=path, name="dimensions") for v in dims[0, :2])
    keypoints = video_clips.from_matlab_pixels(np.stack([x, y], -1))
    return {
        "keypoints_2d": keypoints.astype(np.float32),
        "visible": vis != 0,
        "box": box.astype(np.float32),
        "box_valid": box_valid,
        "action": raw_files.mat_string(data["action"], path=path, name="action"),
        "view": raw_files.mat_string(data["pose"], path=path, name="pose"),
        "train": train == 1,
        "image_size": np.array([width, height], np.int32),
        "num_frames": num,
    }


def check_sequence(root: str | os.PathLike, seq: str) -> tuple[dict, list[str]]:
    """Reads sequence ``seq``'s label and frame names; checks that they agree.

    Returns ``(label, frame file names)``. Raises :class:`MalformedRawFileError` naming
    the label file, ``nframes`` and the frame directory when the ``.jpg`` files are not
    exactly ``000001.jpg … %06d.jpg`` for ``nframes`` frames.
    """
    root = os.fspath(root)
    path = os.path.join(root, label_path(seq))
    label = read_label(path)
    num = label["num_frames"]
    names = video_clips.list_frame_files(os.path.join(root, frame_dir(seq)), digits=6, ext="jpg")
    problem = video_clips.check_frame_files(names, num, digits=6, ext="jpg")
    if problem:
        raise MalformedRawFileError(
            path, "nframes", f"sequence {seq}: nframes={num} (= rows of x, y, visibility) "
            f"but {frame_dir(seq)}/ has {len(names)} .jpg frames ({problem})")
    return label, names


def read_sequence(root: str | os.PathLike, seq: str) -> dict:
    """:func:`read_label`'s dict plus ``frames`` (JPEG file bytes, unchanged unless a
    frame is not RGB: see :func:`video_clips.prepare_frames`), ``frame_paths`` and
    ``sequence``. ``image_size`` stays the one of ``dimensions``; a warning names the
    file if the JPEGs differ."""
    root = os.fspath(root)
    label, names = check_sequence(root, seq)
    directory = os.path.join(root, frame_dir(seq))
    paths = [os.path.join(directory, n) for n in names]
    frames, size = video_clips.prepare_frames(
        video_clips.read_frame_bytes(directory, names), paths, format="JPEG")
    if size != tuple(label["image_size"]):
        # 'dimensions' is documented as [H W n]; the JPEGs are the ground truth for
        # decoding, so say so rather than fail on an unconfirmed field.
        logging.warning("%s: field 'dimensions' gives %s (width, height) but the frames "
                        "are %s", os.path.join(root, label_path(seq)),
                        tuple(int(v) for v in label["image_size"]), size)
    label["frames"] = frames
    label["frame_paths"] = paths
    label["sequence"] = seq
    return label
