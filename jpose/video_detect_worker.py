r"""MediaPipe Pose on every frame of a video -> BlazePose 33 landmarks in pixels (.npz).

The detection step of ``launch/video_to_3d.py``, written to run in **either** of two
environments, so it imports only numpy, PyAV (``av``) and (lazily) mediapipe -- never
jpose or JAX:

* in-process, from :mod:`jpose.video_detect`, where mediapipe imports beside jpose;
* as a script in MediaPipe's own environment (mediapipe 0.10.14 pins ``protobuf<5``,
  which the usual jpose environment cannot take; see :mod:`jpose.video_detect`)::

    ~/.cache/jpose/mediapipe-venv/bin/python jpose/video_detect_worker.py \
        --video=in.mp4 --output=landmarks.npz

  It prints ``progress <done> <total>`` lines on stdout (``total`` 0 when the container
  does not say) for the caller's progress bar, and ``done <T>`` at the end.

Detector: the legacy ``mediapipe.solutions.pose.Pose(static_image_mode=False,
model_complexity=1)`` -- ``pose_landmark_full.tflite``, bundled in the 0.10.14 wheel, so it
runs offline. One person; with ``static_image_mode=False`` MediaPipe tracks that
person's region from frame to frame and re-detects when it loses it (the "tracking" step).

Output ``.npz`` (read by :func:`jpose.detections.read` / ``read_mediapipe``):

* ``landmarks`` (T, 33, 4) float32: ``x, y`` **pixels** of the upright frame, ``z``
  MediaPipe's relative depth times the frame width (the scale of ``x``; unused by
  jpose), ``visibility`` in [0, 1]; NaN on frames without a person;
* ``frames`` (T,) int64 = 0..T-1 (decoded frame index), ``image_size`` (2,) = (width,
  height) of the upright frame, ``fps`` (), ``detector`` () a description string.

Frames are rotated upright by the stream's display matrix (phone videos), as FFmpeg's
player does, before detection; pixel coordinates refer to the rotated frame.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import tempfile
import warnings
from typing import Callable, Iterator

# Run as a script, Python puts this file's folder (jpose/) first on sys.path, where
# jpose's own io.py, datasets/, ... would shadow the packages mediapipe imports.
if __name__ == "__main__" and sys.path and os.path.abspath(sys.path[0] or ".") == \
        os.path.dirname(os.path.abspath(__file__)):
    del sys.path[0]

import numpy as np  # noqa: E402

NUM_LANDMARKS = 33
DETECTOR = ("mediapipe 0.10.14 solutions.pose.Pose(static_image_mode=False, "
            "model_complexity=1) [pose_landmark_full.tflite]")

#: A per-frame detector: uint8 (H, W, 3) RGB -> (33, 4) float (x px, y px, z, visibility),
#: or None where there is nobody.
Landmarker = Callable[[np.ndarray], "np.ndarray | None"]


def upright(image: np.ndarray, rotation: int) -> np.ndarray:
    """Applies a display matrix's counter-clockwise ``rotation`` (degrees, PyAV's
    ``VideoFrame.rotation``) to an (H, W, 3) image: what players show."""
    k = int(round(rotation / 90.0)) % 4
    return np.ascontiguousarray(np.rot90(image, k)) if k else image


def iter_frames(path: str) -> Iterator[np.ndarray]:
    """Yields the first video stream's frames as upright uint8 (H, W, 3) RGB."""
    import av

    with av.open(path) as container:
        if not container.streams.video:
            raise ValueError(f"video: {path!r} has no video stream")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        for frame in container.decode(stream):
            yield upright(frame.to_ndarray(format="rgb24"), getattr(frame, "rotation", 0) or 0)


def probe(path: str) -> dict:
    """``{"fps": float, "num_frames": int (0 = unknown)}`` from the container header."""
    import av

    with av.open(path) as container:
        if not container.streams.video:
            raise ValueError(f"video: {path!r} has no video stream")
        stream = container.streams.video[0]
        rate = stream.average_rate or stream.guessed_rate
        fps = float(rate) if rate else 25.0
        num = int(stream.frames or 0)
        if not num and stream.duration and stream.time_base:
            num = int(round(float(stream.duration * stream.time_base) * fps))
        return {"fps": fps, "num_frames": num}


def mediapipe_landmarker() -> Landmarker:
    """The legacy MediaPipe Pose (module docstring) as a per-frame :data:`Landmarker`.

    Raises ImportError when mediapipe (0.10.14: the last release with the bundled
    model) is not importable here.
    """
    import mediapipe as mp

    if not hasattr(mp, "solutions"):
        raise ImportError(f"mediapipe {getattr(mp, '__version__', '?')} has no legacy "
                          "'solutions' API with a bundled model; install mediapipe==0.10.14")
    pose = mp.solutions.pose.Pose(static_image_mode=False, model_complexity=1)

    def landmarker(image: np.ndarray) -> np.ndarray | None:
        with warnings.catch_warnings():
            # mediapipe 0.10.14 calls protobuf 4.25's deprecated GetPrototype per frame.
            warnings.filterwarnings("ignore", message=r"SymbolDatabase\.GetPrototype",
                                    category=UserWarning)
            result = pose.process(image)
        if result.pose_landmarks is None:
            return None
        h, w = image.shape[:2]
        return np.array([[lm.x * w, lm.y * h, lm.z * w, lm.visibility]
                         for lm in result.pose_landmarks.landmark], np.float32)

    return landmarker


def load_landmarker(spec: str | None) -> Landmarker:
    """``None``: MediaPipe; ``"module:attr"``: a factory returning a landmarker (tests)."""
    if not spec:
        return mediapipe_landmarker()
    module, _, attr = spec.partition(":")
    return getattr(importlib.import_module(module), attr)()


def detect(frames, landmarker: Landmarker, *,
           progress: Callable[[int], None] | None = None) -> tuple[np.ndarray, tuple[int, int]]:
    """Runs ``landmarker`` on each frame; ``(landmarks (T, 33, 4) float32, (w, h))``."""
    out, size = [], None
    for image in frames:
        if size is None:
            size = (image.shape[1], image.shape[0])
        lm = landmarker(image)
        if lm is None:
            lm = np.full((NUM_LANDMARKS, 4), np.nan, np.float32)
        lm = np.asarray(lm, np.float32)
        if lm.shape != (NUM_LANDMARKS, 4):
            raise ValueError(f"landmarker returned shape {lm.shape}; expected "
                             f"({NUM_LANDMARKS}, 4)")
        out.append(lm)
        if progress is not None:
            progress(len(out))
    if not out:
        raise ValueError("video: no frames decoded")
    return np.stack(out), size


def save(path: str, landmarks: np.ndarray, image_size, fps: float, detector: str) -> None:
    """The output ``.npz`` (module docstring), written atomically."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix=".npz", dir=directory)
    os.close(fd)
    try:
        np.savez(tmp, landmarks=landmarks, frames=np.arange(len(landmarks), dtype=np.int64),
                 image_size=np.asarray(image_size, np.float64), fps=np.asarray(float(fps)),
                 detector=np.asarray(detector))
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--video", required=True)
    parser.add_argument("--output", required=True)
    parser.add_argument("--landmarker", default=None, help=argparse.SUPPRESS)  # tests
    args = parser.parse_args(argv)
    try:
        landmarker = load_landmarker(args.landmarker)
    except ImportError as e:
        if args.landmarker:
            print(f"video_detect_worker: error: --landmarker={args.landmarker}: {e}",
                  file=sys.stderr)
            return 2
        print(f"video_detect_worker: error: mediapipe unavailable in {sys.executable}: {e}",
              file=sys.stderr)
        return 3
    try:
        info = probe(args.video)
        total = info["num_frames"]

        def progress(done):
            print(f"progress {done} {total}", flush=True)

        landmarks, size = detect(iter_frames(args.video), landmarker, progress=progress)
        save(args.output, landmarks, size, info["fps"],
             DETECTOR if not args.landmarker else args.landmarker)
    except (ValueError, OSError) as e:
        print(f"video_detect_worker: error: {e}", file=sys.stderr)
        return 2
    print(f"done {len(landmarks)}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
