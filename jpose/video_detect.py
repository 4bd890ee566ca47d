r"""Video -> MediaPipe BlazePose 33 landmarks (pixels), in this process or MediaPipe's own.

The detection step of ``launch/video_to_3d.py``; the per-frame work is in
:mod:`jpose.video_detect_worker` (numpy + PyAV + mediapipe only), run

1. **in-process**, when ``mediapipe`` imports here: ``pip install 'jpose[detect]'``
   (Python 3.11-3.12; it pins ``mediapipe==0.10.14``, the last release whose wheel ships
   the offline ``pose_landmark_full.tflite``, and with it ``protobuf<5``, so pip takes
   protobuf 4.25, grain 0.2.11 and tensorflow-metadata 1.16 -- a fresh environment
   passes ``pip check`` and jpose's lifting tests);
2. else as a **separate process** in MediaPipe's own environment -- the usual case for a
   development environment whose other packages want protobuf >= 5 (grain >= 0.2.12,
   onnx, googleapis-common-protos). Made once by :data:`ENV_COMMAND`::

     python3.11 -m venv ~/.cache/jpose/mediapipe-venv && \
         ~/.cache/jpose/mediapipe-venv/bin/pip install mediapipe==0.10.14 av

   Its interpreter is ``$JPOSE_MEDIAPIPE_PYTHON`` if set, else :data:`DEFAULT_PYTHON`.

Neither: :class:`MediaPipeUnavailable`, whose one-line message gives both commands.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import tempfile
from typing import Callable, Sequence

import numpy as np

from jpose import video_detect_worker as worker

__all__ = ["ENV_COMMAND", "ENV_VAR", "DEFAULT_PYTHON", "MediaPipeUnavailable",
           "detect_video", "VideoFrames", "probe"]

ENV_VAR = "JPOSE_MEDIAPIPE_PYTHON"
DEFAULT_PYTHON = "~/.cache/jpose/mediapipe-venv/bin/python"
ENV_COMMAND = ("python3.11 -m venv ~/.cache/jpose/mediapipe-venv && "
               "~/.cache/jpose/mediapipe-venv/bin/pip install mediapipe==0.10.14 av")
WORKER = os.path.abspath(worker.__file__)

probe = worker.probe


class MediaPipeUnavailable(RuntimeError):
    """Neither an importable mediapipe nor MediaPipe's own environment was found."""


def unavailable_message(detail: str = "") -> str:
    return (f"MediaPipe Pose is not available{f' ({detail})' if detail else ''}: "
            f"`pip install 'jpose[detect]'` (Python 3.11-3.12), or make its own "
            f"environment with `{ENV_COMMAND}` (or set {ENV_VAR} to a Python that has "
            "mediapipe==0.10.14 and av)")


def _in_process_landmarker():
    """MediaPipe here, or None (not installed, or it fails to import beside jpose)."""
    if importlib.util.find_spec("mediapipe") is None:
        return None
    try:
        return worker.mediapipe_landmarker()
    except Exception:  # e.g. a protobuf it cannot use: fall back to its own environment
        return None


def external_python() -> str | None:
    """The interpreter of MediaPipe's own environment, or None where there is none."""
    explicit = os.environ.get(ENV_VAR)
    if explicit:
        if not os.path.isfile(explicit):
            raise MediaPipeUnavailable(unavailable_message(f"{ENV_VAR}={explicit!r} does "
                                                           "not exist"))
        return explicit
    default = os.path.expanduser(DEFAULT_PYTHON)
    return default if os.path.isfile(default) else None


def _bar(total: int, enabled: bool):
    from tqdm import tqdm

    return tqdm(total=total or None, unit="frame", desc="detect", disable=not enabled,
                file=sys.stderr)


def _run_worker(python: str, video: str, output: str, *, landmarker_spec: str | None,
                progress: bool) -> None:
    cmd = [python, WORKER, f"--video={video}", f"--output={output}"]
    if landmarker_spec:
        cmd.append(f"--landmarker={landmarker_spec}")
    # stderr (MediaPipe's glog chatter) goes to a file: a pipe we do not drain could fill
    # and stall the worker while we read its progress lines on stdout.
    with tempfile.TemporaryFile(mode="w+") as err, _bar(0, progress) as bar:
        with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err, text=True) as proc:
            for line in proc.stdout:
                parts = line.split()
                if len(parts) == 3 and parts[0] == "progress":
                    done, total = int(parts[1]), int(parts[2])
                    if total and bar.total != max(total, done):
                        bar.total = max(total, done)
                        bar.refresh()
                    bar.update(done - bar.n)
        rc = proc.returncode
        err.seek(0)
        tail = err.read()[-2000:].strip()
    if rc == 3:
        raise MediaPipeUnavailable(unavailable_message(tail.splitlines()[-1] if tail else
                                                       f"{python} has no mediapipe"))
    if rc != 0:
        last = tail.splitlines()[-1] if tail else f"exit status {rc}"
        raise RuntimeError(f"detection in {python} failed: {last}\n{tail}")


def detect_video(video: str, output: str, *,
                 landmarker: Callable[[np.ndarray], np.ndarray | None] | None = None,
                 python: str | None = None, landmarker_spec: str | None = None,
                 progress: bool = True) -> str:
    """Runs the per-frame detector over ``video``; writes the landmarks ``.npz``
    (:mod:`jpose.video_detect_worker` for its fields) to ``output``.

    Args:
      video: a video file PyAV (FFmpeg) can decode.
      output: the ``.npz`` to write (atomically).
      landmarker: a per-frame detector to use in this process (uint8 (H, W, 3) RGB ->
        (33, 4) x px, y px, z, visibility, or None); default MediaPipe, found as in the
        module docstring.
      python: run the worker with this interpreter instead (a separate process).
      landmarker_spec: ``"module:factory"`` the worker imports instead of MediaPipe
        (tests of the separate process).
      progress: show a tqdm bar (stderr) over frames.

    Returns:
      how it ran: ``"in-process"`` or the interpreter's path.
    """
    if not os.path.isfile(video):
        raise FileNotFoundError(f"video: {video!r} does not exist")
    if landmarker is None and python is None:
        landmarker = _in_process_landmarker()
        if landmarker is None:
            python = external_python()
            if python is None:
                raise MediaPipeUnavailable(unavailable_message(
                    f"mediapipe does not import here and {DEFAULT_PYTHON} does not exist"))
    if python is not None:
        _run_worker(python, video, output, landmarker_spec=landmarker_spec,
                    progress=progress)
        return python
    info = probe(video)
    with _bar(info["num_frames"], progress) as bar:
        landmarks, size = worker.detect(worker.iter_frames(video), landmarker,
                                        progress=lambda done: bar.update(1))
    worker.save(output, landmarks, size, info["fps"],
                worker.DETECTOR if landmarker_spec is None else landmarker_spec)
    return "in-process"


class VideoFrames(Sequence):
    """A video's upright RGB frames as a lazy sequence of ``num_frames``: decoded one at a
    time as indexed, so a renderer that walks them in order holds one frame, not the
    clip. Going backwards re-opens the file (slow; only the renderer's first look at
    frame 0 does it, cheaply)."""

    def __init__(self, path: str, num_frames: int, *,
                 on_decode: Callable[[int], None] | None = None):
        self.path, self._len, self._on_decode = path, int(num_frames), on_decode
        self._iter, self._next, self._last = None, 0, None

    def __len__(self) -> int:
        return self._len

    def __getitem__(self, index):
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(self._len))]
        index = int(index) + (self._len if index < 0 else 0)
        if not 0 <= index < self._len:
            raise IndexError(f"frame {index} of {self._len}")
        if self._last is not None and index == self._next - 1:
            return self._last
        if self._iter is None or index < self._next:
            self.close()
            self._iter, self._next = worker.iter_frames(self.path), 0
        while self._next <= index:
            try:
                self._last = next(self._iter)
            except StopIteration:
                raise IndexError(f"{self.path}: only {self._next} frames decoded, "
                                 f"expected {self._len}") from None
            self._next += 1
            if self._on_decode is not None:
                self._on_decode(self._next - 1)
        return self._last

    def close(self) -> None:
        if self._iter is not None:
            self._iter.close()  # closes the container (the generator's with-block)
        self._iter, self._next, self._last = None, 0, None
