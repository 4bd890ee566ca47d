r"""A video in, metric 3D poses out: detection -> tracking -> 2D filling -> lifting -> render.

Usage::

  python launch/video_to_3d.py --video=in.mp4 --output=out.npz --render=out.mp4 \
      [--focal_length=1500] [--model=exports/videopose_243f]

Without ``--model`` the default in-the-wild model shipped in the package lifts
(:mod:`jpose.default_model`); give the camera's ``--focal_length`` where you know it.

Steps
-----
1. **Detection + tracking** (:mod:`jpose.video_detect`): every frame (decoded with PyAV,
   rotated upright by the stream's display matrix) goes through MediaPipe Pose
   (``pose_landmark_full.tflite``, bundled in mediapipe 0.10.14's wheel: offline), which
   follows one person from frame to frame. In this process when ``pip install
   'jpose[detect]'`` made mediapipe importable here, else in MediaPipe's own environment
   (``$JPOSE_MEDIAPIPE_PYTHON``, default ``~/.cache/jpose/mediapipe-venv/bin/python``),
   made once by::

     python3.11 -m venv ~/.cache/jpose/mediapipe-venv && \
         ~/.cache/jpose/mediapipe-venv/bin/pip install mediapipe==0.10.14 av

   Without either, the command stops with a one-line error giving both. ``--detections``
   keeps the landmarks ``.npz`` (33 landmarks, pixels + visibility) to re-lift later with
   ``launch/lift.py --input``.
2. **2D filling, lifting** (``launch/lift.py``'s ``run``, its docstring): landmarks below
   ``--min_confidence`` (MediaPipe's visibility) are filled over time (``--fill``), joints
   converted to the model's layout, pixels normalised to the camera (``--focal_length``,
   default ``max(width, height)``; the image size is the video's) and lifted.
3. **Render** (``--render``, ``.mp4`` or ``.gif``): the 3D skeleton beside the video with
   the filled 2D skeleton on it (:func:`jpose.visualize.render_animation`), at the video's
   frame rate. Frames are decoded again one at a time as they are drawn, so memory does not
   grow with the video's length.

Output: ``launch/lift.py``'s (``poses_3d`` (1, T, J, 3) metres, root-relative camera
frame, ``frames`` the decoded frame indices where a person was found, ...) plus ``video``,
``fps`` and ``detector``.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import tempfile
from typing import Any, Callable

from absl import app, flags, logging
import numpy as np

# Runs as a script from a clone: make the repository importable without installing.
_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(_HERE))

from jpose import io, skeleton, video_detect  # noqa: E402


def _load_lift():
    """``launch/lift.py`` as a module (``launch/`` is not a package)."""
    spec = importlib.util.spec_from_file_location("jpose_launch_lift",
                                                  os.path.join(_HERE, "lift.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


lift = _load_lift()
LAYOUT = "mediapipe_33"


def render_video(path: str, video: str, out: dict[str, Any], detections_path: str, *,
                 num_frames: int, fps: float, min_confidence: float, fill: str,
                 progress: bool = True) -> str:
    """The 3D poses beside the video's frames with the filled 2D on them (module
    docstring, step 3). Every decoded frame is drawn; those without a person show none."""
    from tqdm import tqdm

    from jpose import visualize

    layout = str(out["layout"])
    dets = lift.read_input(detections_path, layout=LAYOUT, default_layout=LAYOUT)
    track = dets.track(int(out["track_ids"][0]))
    kp, _ = lift.fill_track(track, layout=LAYOUT, min_confidence=min_confidence, fill=fill)
    poses = np.full((num_frames,) + out["poses_3d"].shape[2:], np.nan, np.float32)
    poses[out["frames"]] = out["poses_3d"][0]
    keypoints = np.full((num_frames, poses.shape[1], 2), np.nan)
    keypoints[track.frames] = skeleton.convert(kp, LAYOUT, layout)
    with tqdm(total=num_frames, unit="frame", desc="render", disable=not progress,
              file=sys.stderr) as bar:
        frames = video_detect.VideoFrames(video, num_frames,
                                          on_decode=lambda i: bar.update(1))
        try:
            return visualize.render_animation(
                path, poses, layout, keypoints_2d=keypoints, frames=frames, fps=fps,
                title=os.path.basename(video))
        finally:
            frames.close()


def run(video: str, output: str, *, model_dir: str | None = None, render: str | None = None,
        focal_length: float | None = None, min_confidence: float = 0.3,
        fill: str = "linear", detections: str | None = None,
        landmarker: Callable[[np.ndarray], np.ndarray | None] | None = None,
        progress: bool = True, **detect_kwargs) -> dict[str, Any]:
    """``video`` -> ``output`` (and ``render``); returns the arrays written.

    ``landmarker`` replaces MediaPipe by any per-frame detector (uint8 (H, W, 3) RGB ->
    (33, 4) x px, y px, z, visibility, or None); ``detect_kwargs`` go to
    :func:`jpose.video_detect.detect_video`.
    """
    if os.path.splitext(output)[1].lower() not in (".npz", ".json"):
        raise ValueError(f"--output: {output!r}: expected a .npz or .json path")
    if render is not None and os.path.splitext(render)[1].lower() not in (".mp4", ".gif"):
        raise ValueError(f"--render: {render!r}: expected a .mp4 or .gif path")
    if fill not in lift.FILLS:
        raise ValueError(f"--fill: expected one of {lift.FILLS}, got {fill!r}")
    if model_dir is None:
        from jpose import default_model

        model_dir = default_model.path()
    if not os.path.isdir(model_dir):
        raise FileNotFoundError(f"--model: {model_dir!r} is not a directory "
                                "(an export of launch/export.py)")
    os.makedirs(os.path.dirname(os.path.abspath(output)), exist_ok=True)
    tmp = None
    if detections is None:
        fd, tmp = tempfile.mkstemp(suffix=".npz", prefix=".landmarks-",
                                   dir=os.path.dirname(os.path.abspath(output)))
        os.close(fd)
    det_path = detections or tmp
    try:
        backend = video_detect.detect_video(video, det_path, landmarker=landmarker,
                                            progress=progress, **detect_kwargs)
        meta = io.load_npz(det_path, what="detections")
        num_frames, fps = len(meta["landmarks"]), float(meta["fps"])
        out = lift.run(model_dir, det_path, output, layout=LAYOUT,
                       focal_length=focal_length, min_confidence=min_confidence, fill=fill)
        out.update(video=np.asarray(os.path.abspath(video)), fps=np.asarray(fps),
                   detector=np.asarray(str(meta["detector"])))
        lift.write_output(output, out)
        if render:
            render_video(render, video, out, det_path, num_frames=num_frames, fps=fps,
                         min_confidence=min_confidence, fill=fill, progress=progress)
    finally:
        if tmp is not None and os.path.exists(tmp):
            os.remove(tmp)
    logging.info("%s: %d frames, a person on %d, detection %s -> %s", video, num_frames,
                 len(out["frames"]), backend, output)
    return out


def define_flags(flag_values=flags.FLAGS) -> None:
    """Defined on demand (not at import) so tests can import this module freely."""
    fv = {"flag_values": flag_values}
    flags.DEFINE_string("video", None, "Input video (anything FFmpeg decodes).",
                        required=True, **fv)
    flags.DEFINE_string("output", None, "Output .npz or .json (metres).", required=True,
                        **fv)
    flags.DEFINE_string("model", None, "Export directory (launch/export.py); default: the "
                        "in-the-wild model shipped in jpose.default_model.", **fv)
    flags.DEFINE_string("render", None, "Also render 3D beside the video to this .mp4 / "
                        ".gif.", **fv)
    flags.DEFINE_float("focal_length", None, "Focal length in pixels (default: "
                       "max(width, height)).", **fv)
    flags.DEFINE_float("min_confidence", 0.3, "Landmarks below this visibility are filled "
                       "over time.", **fv)
    flags.DEFINE_enum("fill", "linear", lift.FILLS, "How low-confidence 2D joints are "
                      "filled.", **fv)
    flags.DEFINE_string("detections", None, "Also keep the MediaPipe landmarks .npz here "
                        "(re-lift with launch/lift.py --input).", **fv)


def main(argv) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    f = flags.FLAGS
    try:
        out = run(f.video, f.output, model_dir=f.model, render=f.render,
                  focal_length=f.focal_length, min_confidence=f.min_confidence,
                  fill=f.fill, detections=f.detections)
    except (ValueError, FileNotFoundError, video_detect.MediaPipeUnavailable) as e:
        raise SystemExit(f"video_to_3d.py: error: {e}") from None
    print(f"Wrote {f.output}: poses_3d {out['poses_3d'].shape} metres on "
          f"{len(out['frames'])} frames" + (f"; {f.render}" if f.render else "") + ".")


if __name__ == "__main__":
    define_flags()
    app.run(main)
