"""Reading the raw Sub-JHMDB release (``shared/DATASET_FORMATS.md`` section 4).

Layout under the manual directory::

    Rename_Images/<class>/<video>/00001.png, 00002.png, …     (5 digits, 1-based)
    joint_positions/<class>/<video>/joint_positions.mat       (MATLAB v5)
    puppet_mask/<class>/<video>/puppet_mask.mat               (optional, MATLAB v5)
    sub_splits/<class>_test_split_<k>.txt                     (k = 1, 2, 3)

Classes are the ones with split files (``<class>`` = the file name up to
``_test_split_``); a class must have all three. Split lines are ``<video>.avi <flag>``
with flag 1 = train, 2 = test. Clips are keyed ``"<class>/<video>"`` (no ``.avi``).

Conventions of the returned arrays (NumPy, no TFDS):

* ``keypoints_2d (T, 15, 2)`` float32, jpose pixels (top-left pixel centre at (0, 0)):
  ``pos_img`` is in MATLAB image coordinates (pixel centres at 1 … W, as plotted over
  ``imshow`` by the release's tools; the values ending in .5 are sub-pixel clicks), so
  1 is subtracted. Joint order ``jhmdb_15`` (= the raw order).
* ``visible (T, 15)`` bool: the raw data have no visibility flag, so a joint is
  "visible" when it lies on the image area ``[-0.5, W-0.5] x [-0.5, H-0.5]``.
* ``box (T, 4)`` float32 ``(x0, y0, x1, y1)`` pixels: the outer pixel edges of the
  puppet mask's non-zero pixels where ``puppet_mask.mat`` exists and the frame's mask
  is non-empty (``box_source`` 0), else the tight box around the visible joints
  (``box_source`` 1; all joints if none is visible).
"""

from __future__ import annotations

import dataclasses
import os
import re

import numpy as np

from jpose.datasets import raw_files, video_clips
from jpose.datasets.raw_files import MalformedRawFileError

__all__ = [
    "NUM_JOINTS",
    "SPLITS",
    "BOX_FROM_MASK",
    "BOX_FROM_JOINTS",
    "Release",
    "split_file",
    "clip_paths",
    "read_split_file",
    "index_release",
    "read_annotation",
    "read_mask_boxes",
    "check_clip",
    "read_clip",
]

DATASET = "sub_jhmdb"
NUM_JOINTS = 15
#: TFDS split names: the three official train/test splits.
SPLITS = ("train1", "test1", "train2", "test2", "train3", "test3")
#: ``box_source`` values.
BOX_FROM_MASK, BOX_FROM_JOINTS = 0, 1

_SPLIT_RE = re.compile(r"^(?P<cls>.+)_test_split_(?P<k>[123])\.txt$")
_HINT = ("Sub-JHMDB: download JHMDB's Rename_Images, joint_positions, puppet_mask and "
         "sub_splits from http://jhmdb.is.tue.mpg.de/ and unpack them side by side.")


def split_file(cls: str, k: int) -> str:
    """Relative path of class ``cls``'s split ``k`` file (note the ``_`` before k)."""
    return f"sub_splits/{cls}_test_split_{k}.txt"


def clip_paths(cls: str, video: str) -> dict[str, str]:
    """Relative paths of a clip's frame directory, joints and (optional) mask files."""
    return {
        "frames": f"Rename_Images/{cls}/{video}",
        "joints": f"joint_positions/{cls}/{video}/joint_positions.mat",
        "mask": f"puppet_mask/{cls}/{video}/puppet_mask.mat",
    }


@dataclasses.dataclass(frozen=True)
class Release:
    """What the split files say.

    Attributes:
      classes: sorted class names (those with split files).
      clips: sorted clip keys ``"<class>/<video>"`` listed in any split file.
      splits: split name (:data:`SPLITS`) -> sorted clip keys.
    """

    classes: tuple[str, ...]
    clips: tuple[str, ...]
    splits: dict[str, tuple[str, ...]]


def read_split_file(path: str | os.PathLike) -> dict[str, int]:
    """``{video: flag}`` of one split file (video without ``.avi``; flag 1 train, 2 test).

    Raises :class:`MalformedRawFileError` naming the line for a bad flag, a line that
    is not ``<video>.avi <flag>``, or a video listed twice.
    """
    path = os.fspath(path)
    with open(path, encoding="utf-8", errors="replace") as f:
        lines = f.read().splitlines()
    out: dict[str, int] = {}
    for i, line in enumerate(lines, 1):
        line = line.strip()
        if not line:
            continue
        parts = line.rsplit(None, 1)
        if len(parts) != 2 or parts[1] not in ("1", "2"):
            raise MalformedRawFileError(
                path, f"line {i}", f"{line!r} is not '<video>.avi 1|2' (1 = train, 2 = test)")
        video = parts[0][:-4] if parts[0].lower().endswith(".avi") else parts[0]
        if video in out:
            raise MalformedRawFileError(path, f"line {i}", f"video {video!r} listed twice")
        out[video] = int(parts[1])
    return out


def index_release(root: str | os.PathLike) -> Release:
    """Discovers classes and clips from ``sub_splits/`` and checks the files exist.

    Raises :class:`~jpose.datasets.raw_files.MissingRawFilesError` listing every
    missing split file, frame directory (as its first frame ``00001.png``) and
    ``joint_positions.mat``.
    """
    root = os.fspath(root)
    split_dir = os.path.join(root, "sub_splits")
    found: dict[str, set[int]] = {}
    for name in sorted(os.listdir(split_dir)) if os.path.isdir(split_dir) else []:
        m = _SPLIT_RE.match(name)
        if m:
            found.setdefault(m["cls"], set()).add(int(m["k"]))
    if not found:
        others = sorted(os.listdir(split_dir)) if os.path.isdir(split_dir) else []
        hint = _HINT
        if others:
            hint += f"\nsub_splits/ holds {others[:10]}, none named <class>_test_split_<k>.txt"
        raise raw_files.MissingRawFilesError(
            DATASET, root, [split_file("<class>", k) for k in (1, 2, 3)], hint)
    missing = [split_file(c, k) for c in sorted(found) for k in (1, 2, 3) if k not in found[c]]
    raw_files.require_paths(DATASET, root, missing, hint=_HINT)

    members: dict[str, list[str]] = {s: [] for s in SPLITS}
    clips: set[str] = set()
    for cls in sorted(found):
        for k in (1, 2, 3):
            for video, flag in read_split_file(os.path.join(root, split_file(cls, k))).items():
                key = f"{cls}/{video}"
                clips.add(key)
                members[f"{'train' if flag == 1 else 'test'}{k}"].append(key)

    expected = []
    for key in sorted(clips):
        p = clip_paths(*key.split("/", 1))
        expected += [f"{p['frames']}/00001.png", p["joints"]]
    raw_files.require_paths(DATASET, root, expected, hint=_HINT)
    return Release(classes=tuple(sorted(found)), clips=tuple(sorted(clips)),
                   splits={s: tuple(sorted(v)) for s, v in members.items()})


def _per_frame(a: np.ndarray, num: int, *, path: str, name: str) -> np.ndarray:
    """A ``(1, T)`` / ``(T, 1)`` / ``(T,)`` array as ``(T,)``."""
    a = np.asarray(a)
    if a.ndim > 2 or a.size != num or (a.ndim == 2 and 1 not in a.shape) or a.dtype.kind not in "fiub":
        raise MalformedRawFileError(path, name, f"has {a.dtype} shape {a.shape}, expected (1, {num})")
    return a.reshape(num)


def read_annotation(path: str | os.PathLike) -> dict[str, np.ndarray | str]:
    """``joint_positions.mat`` -> ``keypoints_2d (T,15,2)`` float64 jpose pixels, ``scale
    (T,)``, ``viewpoint``.

    ``pos_img`` ``(2, 15, T)`` is MATLAB 1-based image coordinates (1 is subtracted); a
    one-frame file may have lost its trailing axis (``(2, 15)``, as MATLAB drops
    trailing singleton dimensions).
    """
    path = os.fspath(path)
    data = raw_files.load_mat_v5(path, ["pos_img", "scale", "viewpoint"])
    pos = np.asarray(data["pos_img"])
    if pos.ndim == 2:
        pos = pos[:, :, None]
    pos = raw_files.check_shape(pos, (2, NUM_JOINTS, None), path=path, name="pos_img")
    num = pos.shape[2]
    if num == 0:
        raise MalformedRawFileError(path, "pos_img", "has no frames")
    keypoints = video_clips.from_matlab_pixels(np.transpose(pos, (2, 1, 0)))
    scale = _per_frame(data["scale"], num, path=path, name="scale").astype(np.float64)
    viewpoint = raw_files.mat_string(data["viewpoint"], path=path, name="viewpoint")
    return {"keypoints_2d": keypoints, "scale": scale, "viewpoint": viewpoint}


def read_mask_boxes(path: str | os.PathLike, *, num_frames: int,
                    size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Per-frame boxes of ``part_mask`` ``(H, W, T)`` (see :func:`video_clips.mask_boxes`).

    ``size`` = the frames' ``(width, height)``; the mask must match it and
    ``num_frames``. Returns ``(boxes (T, 4), nonempty (T,))``.
    """
    path = os.fspath(path)
    data = raw_files.load_mat_v5(path, ["part_mask"])
    mask = np.asarray(data["part_mask"])
    if mask.ndim == 2:
        mask = mask[:, :, None]
    w, h = size
    raw_files.check_shape(mask, (h, w, num_frames), path=path, name="part_mask")
    return video_clips.mask_boxes(mask)


def check_clip(root: str | os.PathLike, key: str) -> tuple[dict, list[str]]:
    """Reads a clip's annotation and frame names; checks that they agree.

    Returns ``(annotation, frame file names)``. Raises :class:`MalformedRawFileError`
    naming the video and both counts when the number of PNG frames differs from the
    annotated frame count (or the PNG names are not ``00001.png … %05d.png``).
    """
    root = os.fspath(root)
    cls, video = key.split("/", 1)
    paths = clip_paths(cls, video)
    joints_path = os.path.join(root, paths["joints"])
    ann = read_annotation(joints_path)
    num = ann["keypoints_2d"].shape[0]
    names = video_clips.list_frame_files(os.path.join(root, paths["frames"]), digits=5, ext="png")
    problem = video_clips.check_frame_files(names, num, digits=5, ext="png")
    if problem:
        raise MalformedRawFileError(
            joints_path, "pos_img",
            f"video {key}: pos_img has {num} frames but {paths['frames']}/ has "
            f"{len(names)} PNG frames ({problem})")
    return ann, names


def read_clip(root: str | os.PathLike, key: str) -> dict:
    """Everything the builder stores for clip ``key`` (``"<class>/<video>"``), as NumPy.

    Returns a dict with ``frames`` (list of PNG file bytes, unchanged unless a frame is
    not RGB: see :func:`video_clips.prepare_frames`), ``frame_paths``,
    ``keypoints_2d (T,15,2)`` float32 pixels, ``visible (T,15)`` bool, ``box (T,4)``
    float32, ``box_source (T,)`` int32 (:data:`BOX_FROM_MASK` / :data:`BOX_FROM_JOINTS`),
    ``scale (T,)`` float32, ``viewpoint``, ``action`` (the class), ``video``,
    ``image_size (2,)`` int32 ``(width, height)``.
    """
    root = os.fspath(root)
    cls, video = key.split("/", 1)
    paths = clip_paths(cls, video)
    ann, names = check_clip(root, key)
    frame_dir = os.path.join(root, paths["frames"])
    frames = video_clips.read_frame_bytes(frame_dir, names)
    frame_paths = [os.path.join(frame_dir, n) for n in names]
    frames, size = video_clips.prepare_frames(frames, frame_paths, format="PNG")

    keypoints = ann["keypoints_2d"]
    num = keypoints.shape[0]
    visible = video_clips.inside_image(keypoints, size)
    box = video_clips.joint_boxes(keypoints, visible)
    source = np.full((num,), BOX_FROM_JOINTS, np.int32)
    mask_path = os.path.join(root, paths["mask"])
    if os.path.exists(mask_path):
        mask_box, nonempty = read_mask_boxes(mask_path, num_frames=num, size=size)
        box = np.where(nonempty[:, None], mask_box, box)
        source = np.where(nonempty, BOX_FROM_MASK, BOX_FROM_JOINTS).astype(np.int32)
    return {
        "frames": frames,
        "frame_paths": frame_paths,
        "keypoints_2d": keypoints.astype(np.float32),
        "visible": visible,
        "box": box.astype(np.float32),
        "box_source": source,
        "scale": ann["scale"].astype(np.float32),
        "viewpoint": ann["viewpoint"],
        "action": cls,
        "video": video,
        "image_size": np.asarray(size, np.int32),
    }
