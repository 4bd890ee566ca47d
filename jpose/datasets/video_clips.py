"""What the video-pose builders share: frame files, pixel origins, visibility, boxes.

Sub-JHMDB and Penn Action ship each clip as a directory of numbered image files
(``00001.png`` …, ``000001.jpg`` …) plus per-clip MATLAB annotations. The builders store
the frames as the **file bytes, unchanged** (``tfds.features.Image`` accepts encoded
bytes, so no TensorFlow and no re-encoding loss), and the 2D joints in jpose's pixel
convention (``image_crops``: x right, y down, the **centre of the top-left pixel at
(0, 0)**).

Both datasets were annotated in MATLAB, whose image axes put the centre of the
top-left pixel at ``(1, 1)``; :func:`from_matlab_pixels` subtracts 1 to convert. Boxes
are ``(x0, y0, x1, y1)`` in the same pixels.
"""

from __future__ import annotations

import io
import logging
import os
import re
from collections.abc import Sequence

import numpy as np

from jpose.datasets import image_crops
from jpose.datasets.raw_files import MalformedRawFileError

__all__ = [
    "frame_names",
    "list_frame_files",
    "check_frame_files",
    "read_frame_bytes",
    "prepare_frames",
    "from_matlab_pixels",
    "inside_image",
    "joint_boxes",
    "mask_boxes",
    "pad_rows",
]


def frame_names(count: int, *, digits: int, ext: str, start: int = 1) -> list[str]:
    """The file names of frames ``start … start + count - 1``, e.g. ``00001.png``."""
    return [f"{i:0{digits}d}.{ext}" for i in range(start, start + count)]


def list_frame_files(directory: str | os.PathLike, *, digits: int, ext: str) -> list[str]:
    """Sorted names in ``directory`` that look like frames (``digits`` digits + ``.ext``).

    Other files (thumbnails, ``.DS_Store``) are ignored. A missing directory gives ``[]``.
    """
    directory = os.fspath(directory)
    if not os.path.isdir(directory):
        return []
    pattern = re.compile(rf"^\d{{{digits}}}\.{re.escape(ext)}$", re.IGNORECASE)
    return sorted(n for n in os.listdir(directory) if pattern.match(n))


def check_frame_files(names: Sequence[str], count: int, *, digits: int, ext: str) -> str | None:
    """``None`` if ``names`` are exactly frames ``1 … count``, else what differs (a phrase)."""
    expected = frame_names(count, digits=digits, ext=ext)
    if list(names) == expected:
        return None
    have = set(names)
    missing = [n for n in expected if n not in have]
    extra = sorted(have - set(expected))
    parts = [f"{len(names)} frame files for {count} annotated frames"]
    if missing:
        parts.append(f"missing {missing[:5]}{' …' if len(missing) > 5 else ''}")
    if extra:
        parts.append(f"unexpected {extra[:5]}{' …' if len(extra) > 5 else ''}")
    return "; ".join(parts)


def read_frame_bytes(directory: str | os.PathLike, names: Sequence[str]) -> list[bytes]:
    """The encoded bytes of each frame file, in the given order (nothing decoded)."""
    directory = os.fspath(directory)
    out = []
    for name in names:
        with open(os.path.join(directory, name), "rb") as f:
            out.append(f.read())
    return out


def prepare_frames(frames: Sequence[bytes], paths: Sequence[str], *,
                   format: str) -> tuple[list[bytes], tuple[int, int]]:
    """A clip's encoded frames, checked, and their common ``(width, height)``.

    RGB frames are returned **unchanged**. TFDS's ``Image`` feature decodes to 3
    channels, so a frame in another mode (grayscale, palette, RGBA) is converted to RGB
    and re-encoded as ``format`` ("PNG" lossless, "JPEG" quality 95), with a warning
    naming it. Raises :class:`MalformedRawFileError` naming an unreadable frame or the
    first frame whose size differs from the clip's first frame.
    """
    from PIL import Image

    if not frames:
        raise ValueError("frames: a clip needs at least one frame")
    out, size = [], None
    for data, path in zip(frames, paths):
        try:
            with Image.open(io.BytesIO(data)) as im:
                this = (int(im.size[0]), int(im.size[1]))
                if im.mode != "RGB":
                    logging.warning("%s: %s image, converted to RGB and re-encoded", path, im.mode)
                    data = image_crops.encode_image(np.asarray(im.convert("RGB")), format=format)
        except Exception as e:  # PIL.UnidentifiedImageError, OSError, ...
            raise MalformedRawFileError(
                path, "", f"not a readable image ({type(e).__name__}: {e})") from e
        if size is None:
            size = this
        elif this != size:
            raise MalformedRawFileError(
                path, "", f"is {this[0]}x{this[1]} pixels, the clip's first frame "
                f"{paths[0]} is {size[0]}x{size[1]}")
        out.append(data)
    return out, size


def from_matlab_pixels(values) -> np.ndarray:
    """MATLAB image coordinates (top-left pixel centre at (1, 1)) -> jpose's (at (0, 0)).

    Subtracts 1 from every coordinate (float64 out; NaN stays NaN).
    """
    return np.asarray(values, np.float64) - 1.0


def inside_image(keypoints, size) -> np.ndarray:
    """``(..., J)`` bool: finite keypoints ``(..., J, 2)`` lying on the image area.

    ``size`` = ``(width, height)`` in pixels. With pixel centres at ``0 … W-1``, the
    image covers ``[-0.5, W - 0.5] x [-0.5, H - 0.5]`` (the pixels' outer edges); a point
    on that boundary counts as inside.
    """
    kp = np.asarray(keypoints, np.float64)
    if kp.ndim < 2 or kp.shape[-1] != 2:
        raise ValueError(f"keypoints: expected shape (..., J, 2), got {kp.shape}")
    w, h = (float(s) for s in size)
    x, y = kp[..., 0], kp[..., 1]
    with np.errstate(invalid="ignore"):
        return (np.isfinite(kp).all(-1) & (x >= -0.5) & (x <= w - 0.5)
                & (y >= -0.5) & (y <= h - 0.5))


def joint_boxes(keypoints, visible) -> np.ndarray:
    """``(T, 4)`` tight boxes around the visible joints of each frame (``(T, J, 2)``).

    A frame without a visible joint falls back to all its finite joints (a box partly
    off the image beats none); a frame without any finite joint gets NaN.
    """
    kp = np.asarray(keypoints, np.float64)
    visible = np.asarray(visible, bool)
    box = image_crops.box_from_keypoints(kp, visible)
    fallback = image_crops.box_from_keypoints(kp)
    return np.where(visible.any(-1)[..., None], box, fallback)


def mask_boxes(mask, *, axis: int = -1) -> tuple[np.ndarray, np.ndarray]:
    """Boxes of the non-zero pixels of a mask stack, one per frame.

    Args:
      mask: ``(H, W, T)`` (frames on ``axis``) numbers or bools; non-zero = person.
      axis: the frame axis.

    Returns:
      ``boxes (T, 4)`` float64 ``(x0, y0, x1, y1)``: the **outer edges** of the
      non-zero pixels, i.e. ``(min col - 0.5, min row - 0.5, max col + 0.5,
      max row + 0.5)`` in jpose pixels (so a one-pixel mask has a 1x1 box), NaN where
      a frame's mask is empty; and ``nonempty (T,)`` bool.
    """
    m = np.moveaxis(np.asarray(mask), axis, -1) != 0
    if m.ndim != 3:
        raise ValueError(f"mask: expected (H, W, T), got shape {m.shape}")
    rows = m.any(1)  # (H, T): row r has a mask pixel in frame t
    cols = m.any(0)  # (W, T)
    nonempty = rows.any(0)
    r_idx = np.arange(m.shape[0], dtype=np.float64)[:, None]
    c_idx = np.arange(m.shape[1], dtype=np.float64)[:, None]
    r0 = np.where(rows, r_idx, np.inf).min(0)
    r1 = np.where(rows, r_idx, -np.inf).max(0)
    c0 = np.where(cols, c_idx, np.inf).min(0)
    c1 = np.where(cols, c_idx, -np.inf).max(0)
    boxes = np.stack([c0 - 0.5, r0 - 0.5, c1 + 0.5, r1 + 0.5], -1)
    return np.where(nonempty[:, None], boxes, np.nan), nonempty


def pad_rows(array, count: int) -> tuple[np.ndarray, np.ndarray]:
    """Pads per-frame rows ``(n, ...)`` to ``count`` by repeating the last row.

    Returns ``(padded (count, ...), valid (count,) bool)`` with ``valid`` False on the
    added rows. With no row to repeat the padding is NaN. Raises ``ValueError`` if
    ``n > count`` (cutting annotations would hide a defect).
    """
    a = np.asarray(array, np.float64)
    n = a.shape[0]
    if n > count:
        raise ValueError(f"array: {n} rows, more than the {count} frames")
    valid = np.arange(count) < n
    if n == count:
        return a, valid
    fill = a[-1:] if n else np.full((1,) + a.shape[1:], np.nan)
    pad = np.repeat(fill, count - n, axis=0)
    return np.concatenate([a, pad], 0), valid
