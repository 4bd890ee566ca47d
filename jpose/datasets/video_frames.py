"""Video frames for the image builders: decode selected frames, write small test videos.

Human3.6M ships ``.mp4`` and MPI-INF-3DHP ``.avi`` videos; builders that store images
decode them with PyAV (FFmpeg's libraries, bundled in the ``av`` wheel: no system
FFmpeg needed). Frames are numbered from 0 in decode order; a video may have a few more
(Human3.6M) or fewer (one MPI-INF-3DHP camera) frames than its annotations, which the
callers reconcile.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Sequence

import numpy as np

from jpose.datasets.raw_files import MalformedRawFileError

__all__ = ["count_frames", "read_frames", "write_video"]


def _open(path: str):
    import av

    try:
        return av.open(path)
    except Exception as e:  # av.error.InvalidDataError, FileNotFoundError, ...
        raise MalformedRawFileError(path, "", f"not a readable video ({type(e).__name__}: {e})") from e


def count_frames(path: str | os.PathLike) -> int:
    """Number of decodable frames (decodes the stream: exact, unlike container metadata)."""
    path = os.fspath(path)
    with _open(path) as container:
        return sum(1 for _ in container.decode(video=0))


def read_frames(path: str | os.PathLike, indices: Iterable[int]) -> Iterator[tuple[int, np.ndarray]]:
    """Yields ``(index, rgb uint8 (H, W, 3))`` for the wanted frame indices, in order.

    Decodes sequentially (videos are read once, front to back) and stops after the last
    wanted index. Indices beyond the end of the video are not yielded: compare with
    what you asked for.
    """
    path = os.fspath(path)
    wanted = sorted(set(int(i) for i in indices))
    if not wanted:
        return
    if wanted[0] < 0:
        raise ValueError(f"indices: negative frame index {wanted[0]} for {path}")
    last, pos = wanted[-1], 0
    with _open(path) as container:
        for index, frame in enumerate(container.decode(video=0)):
            if index > last:
                break
            if index == wanted[pos]:
                yield index, frame.to_ndarray(format="rgb24")
                pos += 1


def write_video(path: str | os.PathLike, frames: Sequence[np.ndarray], *, fps: float = 50.0,
                codec: str = "mpeg4") -> None:
    """Writes RGB uint8 frames ``(H, W, 3)`` (even sizes) as a video (tests, fixtures).

    ``codec``: ``"mpeg4"`` (``.mp4`` / ``.avi``) or ``"mjpeg"`` (``.avi``, near lossless at
    high quality).
    """
    import av
    from fractions import Fraction

    path = os.fspath(path)
    frames = [np.asarray(f, np.uint8) for f in frames]
    if not frames:
        raise ValueError("frames: need at least one frame")
    h, w = frames[0].shape[:2]
    with av.open(path, "w") as container:
        stream = container.add_stream(codec, rate=Fraction(fps).limit_denominator(1000))
        stream.width, stream.height = w, h
        stream.pix_fmt = "yuvj420p" if codec == "mjpeg" else "yuv420p"
        if codec == "mjpeg":
            stream.options = {"qscale": "2"}
        else:
            stream.bit_rate = 8_000_000
        for f in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
