r"""Lift any detector's 2D keypoints to metric 3D poses with an exported model.

Usage::

  python launch/lift.py --model=exports/videopose_243f --input=openpose_json/ \
      --image_width=1920 --image_height=1080 --output=poses.json --render=poses.mp4

``--model`` is a directory written by ``launch/export.py`` (loaded with the standalone
``jpose/exported_model.py``). Without it, the **default in-the-wild model** shipped in
the package (:mod:`jpose.default_model`: trained on motion capture filmed by random
cameras, bodies and detectors, ``launch/configs/default_lifter.py``; COCO-17 2D with
confidences in, Human3.6M-17 3D out): pass your camera's focal length (or a
calibration), the model reads 2D in focal units and its depth scale depends on it.

Inputs (``--input``: :func:`jpose.detections.read`, formats as the tools write them)
---------------------------------------------------------------------------------
OpenPose ``--write_json`` directories (BODY_25; ``--layout=openpose_body25b`` for
BODY_25B; COCO-18), MediaPipe BlazePose 33 (npy/npz/JSON/CSV), COCO keypoint results or
annotation JSON (several people, track ids; string image ids in frame-number order),
AlphaPose / Halpe-26 JSON, and jpose ``.npz`` (``keypoints`` (T, J, 2|3) or (N, T, J,
2|3) pixels, optional ``confidence``, ``layout`` or ``--layout``, default the model's
input layout). Several people: one track each (:func:`jpose.detections.associate` where
the file has no track ids); ``--person`` picks one (default: the largest track,
:func:`jpose.detections.select_track`), ``--person=all`` lifts every track (an ``.npz``'s N sequences are all lifted).

Processing
----------
1. **2D filling**: joints with confidence below ``--min_confidence`` or missing (OpenPose
   stores (0, 0)) are filled over time before lifting -- ``--fill=linear`` (default) or
   ``low_rank`` (the trajectory-completion solver on 2D) -- never lifted from their
   stored coordinates.
2. **Joints** converted to the model's input layout by name
   (:func:`jpose.skeleton.convert`; synthesised joints as documented there).
3. **Camera**: ``--calibration`` (an Anipose / Pose2Sim TOML; ``--camera`` names the
   camera, default the first; distortion is removed first), else ``--focal_length``
   (px, principal point at the image centre), else the documented default
   :func:`jpose.calibration.default_intrinsics` (``f = max(width, height)``). The output's
   ``camera_source`` says which was used.
4. **Confidence input**: a model trained with confidences (``in_features = 3``, the
   default model) gets each joint's detector score converted to its input layout (a
   synthesised joint takes its least confident source), 0 where the joint was filled.
5. **Normalisation to the training camera**: a model exported with its training
   cameras' focal length (``screen_focal``, metadata of ``launch/export.py``) gets
   ``(uv - c) / f * screen_focal`` -- the view the model was trained on, whatever this
   camera's focal length and aspect ratio (a portrait phone video is not lifted too
   large). Older exports get VideoPose3D's width normalisation
   (:func:`jpose.camera.pixels_to_screen`).

Output (``--output``; the extension picks ``.npz`` or ``.json``; written atomically)
-----------------------------------------------------------------------------------
``poses_3d`` (N, T, J, 3) **metres**, camera frame (x right, y down, z forward),
root-relative; ``joint_names``, ``layout``, ``units``, ``frame``, ``frames`` (T,) frame
numbers, ``track_ids`` (N,), ``confidence`` (N, T, J) per output joint (the 2D detector's,
a synthesised joint taking its least confident source; 0 where filled or outside the
track), ``filled`` (N, T, J) bool, ``camera_source``, ``focal_length``,
``principal_point``, ``image_size``, ``input_layout``; NaN (JSON: null) outside a track's
frames. With ``--trajectory_model`` (a trajectory network's export) also
``trajectory`` (N, T, 3) (the root's camera-frame position) and ``poses_camera``
(absolute camera-frame joints); with a calibration's extrinsics also ``poses_world``
(the calibration's world frame, metres: ``x_world = R^T x_cam + c``).

``plausibility`` (JSON text; :func:`jpose.plausibility.body_report` per track): median
bone lengths, their variation over time, left/right asymmetry and the stature they
imply -- a check that the 3D is a plausible metric body (e.g. a wrong focal length shows
as a stature far from 1.5-1.9 m).

``--render=out.mp4`` (or ``.gif``) draws the first track's 3D skeleton beside its 2D
on a blank canvas of the image size (:func:`jpose.visualize.render_animation`).
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

from absl import app, flags, logging
import numpy as np

# Runs as a script from a clone: make the repository importable without installing.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from jpose import calibration, camera, detections, io, plausibility, skeleton  # noqa: E402
from jpose.exported_model import ExportedLifter  # noqa: E402

POSE_FRAME = "camera (x right, y down, z forward), root-relative"
TRAJECTORY_FRAME = "camera (x right, y down, z forward), absolute root position"
WORLD_FRAME = "world frame of the calibration file (x_world = R^T x_cam + c), metres"
FILLS = ("linear", "low_rank")


# ----------------------------------------------------------------------------- reading


def read_input(path: str, *, layout: str | None, default_layout: str,
               image_size=None) -> detections.Detections2D:
    """:func:`jpose.detections.read`; an ``.npz`` without a ``layout`` field is in
    ``layout`` or else the model's input layout."""
    if not os.path.exists(path):
        raise FileNotFoundError(f"input: {path!r} does not exist")
    return detections.read(path, layout=layout, image_size=image_size,
                           default_layout=default_layout)


def select_tracks(dets: detections.Detections2D, person: str | None) -> list:
    """The tracks to lift: ``None`` the largest, ``"all"`` every one, else the id."""
    if not dets.tracks:
        raise ValueError(f"{dets.source}: no person detected in any frame")
    if person == "all" or (person is None and dets.format == "npz"):
        return list(dets.tracks)  # an .npz's (N, T, J, 2) are N sequences the user chose
    if person is None:
        return [detections.select_track(dets)]
    try:
        pid = int(person)
    except ValueError:
        raise ValueError(f"--person: expected a track id, 'all' or nothing; got "
                         f"{person!r}") from None
    return [detections.select_track(dets, pid)]


def fill_track(track, *, layout: str, min_confidence: float, fill: str):
    """``(keypoints (T, J, 2) px without gaps, filled (T, J) bool)``."""
    if fill not in FILLS:
        raise ValueError(f"--fill: expected one of {FILLS}, got {fill!r}")
    fn = detections.fill_linear if fill == "linear" else detections.fill_low_rank
    try:
        out = fn(track.keypoints, track.confidence, threshold=min_confidence,
                 frames=track.frames, layout=layout)
    except ValueError as e:
        raise ValueError(f"track {track.id}: {e}") from None
    return np.asarray(out.keypoints, np.float64), np.asarray(out.filled, bool)


# ----------------------------------------------------------------------------- camera


def resolve_camera(*, image_size, focal_length=None, calibration_path=None,
                   camera_name=None) -> dict[str, Any]:
    """``{"camera": CameraParams (one, pixels), "source": str, "extrinsics": bool,
    "image_size": (w, h)}`` from a calibration file, a focal length or the default."""
    if calibration_path:
        if focal_length is not None:
            raise ValueError("--focal_length: not with --calibration (which has one)")
        calib = calibration.read_calibration(calibration_path)
        index = calib.index(camera_name) if camera_name else 0
        cam = type(calib.cameras)(*(np.asarray(f)[index] for f in calib.cameras))
        size = tuple(float(v) for v in np.asarray(cam.image_size))
        if image_size is not None and tuple(float(v) for v in image_size) != size:
            raise ValueError(f"image size: the input/flags give {tuple(image_size)} but "
                             f"{calibration_path} [{calib.sections[index]}] size is {size}")
        return {"camera": cam, "image_size": size, "extrinsics": True,
                "source": f"calibration {calibration_path} camera "
                          f"{calib.names[index]!r} ({calib.units_source})"}
    if image_size is None:
        raise ValueError("image size unknown: pass --image_width and --image_height (or "
                         "store 'image_size' (width, height) in the .npz, or --calibration)")
    w, h = (float(v) for v in image_size)
    if not (w > 0 and h > 0):
        raise ValueError(f"image_size: expected positive (width, height), got {image_size}")
    intr = calibration.default_intrinsics(w, h, focal_length=focal_length)
    return {"camera": intr.camera(dtype=np.float64), "image_size": (w, h),
            "extrinsics": False, "source": intr.source}


def model_inputs(keypoints_px, *, source_layout: str, model_layout: str, cam,
                 screen_focal: float | None) -> np.ndarray:
    """Pixels in ``source_layout`` -> the model's normalised inputs in ``model_layout``
    (module docstring, step 4). Joints are converted first, in pixels (affine with
    weights summing to one, so the order does not matter for the pinhole mapping)."""
    converted = skeleton.convert(np.asarray(keypoints_px, np.float64), source_layout,
                                 model_layout)
    if screen_focal is None:
        size = np.asarray(cam.image_size, np.float32)
        return np.asarray(camera.pixels_to_screen(converted.astype(np.float32), size))
    if np.any(np.asarray(cam.radial) != 0) or np.any(np.asarray(cam.tangential) != 0):
        from jpose import triangulation  # distortion removed first (a calibrated camera)

        converted = np.asarray(triangulation.undistort_points(converted, cam).uv, np.float64)
    return np.asarray(camera.pixels_to_focal_units(
        converted.astype(np.float32), np.asarray(cam.focal, np.float32),
        np.asarray(cam.principal, np.float32), float(screen_focal)), np.float32)


def _run_model(model: ExportedLifter, inputs: np.ndarray,
               confidence: np.ndarray | None = None) -> np.ndarray:
    """The model on ``inputs (N, T, J, 2)``, with ``confidence (N, T, J)`` appended as a
    third feature where the model takes one."""
    features = int(model.metadata["config"]["in_features"])
    if features == 3:
        inputs = np.concatenate([inputs, np.asarray(confidence, np.float32)[..., None]], -1)
    elif features != 2:
        raise ValueError(f"model: takes {features} features per joint; this tool supplies "
                         "(x, y) or (x, y, confidence)")
    return model(inputs).astype(np.float32)


# ----------------------------------------------------------------------------- writing


def write_output(path: str, arrays: dict[str, Any]) -> None:
    """Atomic ``.npz`` or ``.json`` (NaN as null), chosen by the extension."""
    ext = os.path.splitext(path)[1].lower()
    if ext == ".npz":
        io.save_npz_atomic(path, arrays)
    elif ext == ".json":
        def plain(v):
            v = np.asarray(v)
            if v.dtype.kind == "f":
                return np.where(np.isfinite(v), v, None).tolist()
            return v.tolist()

        io.save_json_atomic(path, {k: plain(v) for k, v in arrays.items()})
    else:
        raise ValueError(f"--output: {path!r} has extension {ext!r}; expected .npz or .json")


def run(model_dir: str | None, input_path: str, output_path: str, *, layout: str | None = None,
        image_size: tuple[float, float] | None = None,
        trajectory_model_dir: str | None = None, focal_length: float | None = None,
        calibration_path: str | None = None, camera_name: str | None = None,
        person: str | None = None, min_confidence: float = 0.3, fill: str = "linear",
        render: str | None = None) -> dict[str, Any]:
    """Reads ``input_path``, lifts it with the export in ``model_dir``, writes
    ``output_path`` (and ``render``); returns the arrays written (module docstring).
    ``model_dir`` None: the default model (:func:`jpose.default_model.path`)."""
    if layout is not None:
        skeleton.get(layout)  # unknown layout: ValueError listing the known ones
    if os.path.splitext(output_path)[1].lower() not in (".npz", ".json"):
        raise ValueError(f"--output: {output_path!r}: expected a .npz or .json path")
    if model_dir is None:
        from jpose import default_model

        model_dir = default_model.path()
    model = ExportedLifter.load(model_dir)
    meta = model.metadata
    if meta.get("output_kind") == "trajectory":
        raise ValueError(f"--model: {model_dir} is a trajectory model; pass the pose model "
                         "as --model and the trajectory one as --trajectory_model")
    traj_model = None
    if trajectory_model_dir is not None:
        traj_model = ExportedLifter.load(trajectory_model_dir)
        if traj_model.metadata.get("output_kind") != "trajectory":
            raise ValueError(f"--trajectory_model: {trajectory_model_dir} is not a trajectory "
                             f"model (output kind {traj_model.metadata.get('output_kind')!r})")
        if traj_model.metadata["input_layout"] != meta["input_layout"]:
            raise ValueError(
                f"--trajectory_model: takes {traj_model.metadata['input_layout']!r} joints but "
                f"--model takes {meta['input_layout']!r}")
    dets = read_input(input_path, layout=layout, default_layout=meta["input_layout"],
                      image_size=image_size)
    size = image_size if image_size is not None else dets.image_size
    cam = resolve_camera(image_size=size, focal_length=focal_length,
                         calibration_path=calibration_path, camera_name=camera_name)
    tracks = select_tracks(dets, person)
    frames = np.unique(np.concatenate([t.frames for t in tracks]))
    n, t_all = len(tracks), len(frames)
    model_layout, out_layout = meta["input_layout"], meta["output_layout"]
    j_out = len(model.joint_names)
    poses = np.full((n, t_all, j_out, 3), np.nan, np.float32)
    conf = np.zeros((n, t_all, j_out), np.float32)
    filled_out = np.zeros((n, t_all, j_out), bool)
    root = np.full((n, t_all, 3), np.nan, np.float32)
    filled_2d = []
    screen_focal = (meta.get("user") or {}).get("screen_focal")
    for i, track in enumerate(tracks):
        kp, filled = fill_track(track, layout=dets.layout, min_confidence=min_confidence,
                                fill=fill)
        filled_2d.append(kp)
        rows = np.searchsorted(frames, track.frames)
        x = model_inputs(kp[None], source_layout=dets.layout, model_layout=model_layout,
                         cam=cam["camera"], screen_focal=screen_focal)
        c = np.where(filled, 0.0, np.nan_to_num(track.confidence))
        c_in = skeleton.convert_confidence(c, dets.layout, model_layout)[None]
        poses[i, rows] = _run_model(model, x, c_in)[0]
        conf[i, rows] = skeleton.convert_confidence(c, dets.layout, out_layout)
        filled_out[i, rows] = ~skeleton.convert_visibility(~filled, dets.layout, out_layout)
        if traj_model is not None:
            root[i, rows] = _run_model(traj_model, x, c_in)[0, :, 0, :]
    out = {
        "poses_3d": poses, "joint_names": np.asarray(model.joint_names),
        "layout": np.asarray(out_layout), "units": np.asarray("metres"),
        "frame": np.asarray(POSE_FRAME), "frames": frames.astype(np.int64),
        "track_ids": np.asarray([t.id for t in tracks], np.int64),
        "confidence": conf, "filled": filled_out, "input_layout": np.asarray(dets.layout),
        "image_size": np.asarray(cam["image_size"], np.float64),
        "camera_source": np.asarray(cam["source"]),
        "focal_length": np.asarray(cam["camera"].focal, np.float64),
        "principal_point": np.asarray(cam["camera"].principal, np.float64),
        "normalisation": np.asarray(
            "(uv - c) / f * screen_focal" if screen_focal is not None
            else "VideoPose3D: uv / width * 2 - (1, height / width)"),
        "model": np.asarray(os.path.abspath(model_dir)),
        "plausibility": np.asarray(json.dumps(
            [plausibility.body_report(p, out_layout) for p in poses])),
    }
    if traj_model is not None:
        out["trajectory"] = root
        out["poses_camera"] = poses + root[..., None, :]
        out["trajectory_frame"] = np.asarray(TRAJECTORY_FRAME)
        if cam["extrinsics"]:
            out["poses_world"] = np.asarray(camera.camera_to_world(
                out["poses_camera"].astype(np.float64), np.asarray(cam["camera"].rotation),
                np.asarray(cam["camera"].centre)), np.float32)
            out["world_frame"] = np.asarray(WORLD_FRAME)
    if tracks[0].image_ids is not None:
        out["image_ids"] = np.asarray(tracks[0].image_ids)
    write_output(output_path, out)
    if render:
        from jpose import visualize

        rows = np.searchsorted(frames, tracks[0].frames)
        visualize.render_animation(
            render, poses[0, rows], out_layout,
            keypoints_2d=skeleton.convert(filled_2d[0], dets.layout, out_layout),
            image_size=cam["image_size"], frame_numbers=[int(f) for f in tracks[0].frames],
            title=f"{os.path.basename(input_path.rstrip('/'))} track {tracks[0].id}")
    logging.info("Lifted %d track(s) x %d frames (%s -> %s; camera: %s) to %s.", n, t_all,
                 dets.layout, model_layout, cam["source"], output_path)
    return out


# ----------------------------------------------------------------------------- main


def define_flags(flag_values=flags.FLAGS) -> None:
    """Defined on demand (not at import) so tests can import this module freely."""
    fv = {"flag_values": flag_values}
    flags.DEFINE_string("model", None, "Export directory (launch/export.py); default: the "
                        "in-the-wild model shipped in jpose.default_model.", **fv)
    flags.DEFINE_string("input", None, "2D keypoints: a detector's file or directory "
                        "(module docstring).", required=True, **fv)
    flags.DEFINE_string("output", None, "Output .npz or .json (metres).", required=True, **fv)
    flags.DEFINE_string("layout", None, "Joint layout where the file cannot tell it "
                        "(openpose_body25b; an .npz without 'layout').", **fv)
    flags.DEFINE_string("trajectory_model", None, "Export of a trajectory network: adds the "
                        "camera-frame root trajectory and absolute (and world) poses.", **fv)
    flags.DEFINE_float("image_width", None, "Image width in pixels.", **fv)
    flags.DEFINE_float("image_height", None, "Image height in pixels.", **fv)
    flags.DEFINE_float("focal_length", None, "Focal length in pixels (default: "
                       "max(width, height)).", **fv)
    flags.DEFINE_string("calibration", None, "Anipose / Pose2Sim calibration TOML.", **fv)
    flags.DEFINE_string("camera", None, "Camera name in --calibration (default: first).", **fv)
    flags.DEFINE_string("person", None, "Track id to lift, or 'all' (default: the largest).",
                        **fv)
    flags.DEFINE_float("min_confidence", 0.3, "2D joints below it are filled over time.", **fv)
    flags.DEFINE_enum("fill", "linear", FILLS, "How low-confidence 2D joints are filled.", **fv)
    flags.DEFINE_string("render", None, "Also render the first track to this .mp4 / .gif.",
                        **fv)


def main(argv) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    f = flags.FLAGS
    if (f.image_width is None) != (f.image_height is None):
        raise app.UsageError("Pass both --image_width and --image_height, or neither.")
    size = None if f.image_width is None else (f.image_width, f.image_height)
    try:
        out = run(f.model, f.input, f.output, layout=f.layout, image_size=size,
                  trajectory_model_dir=f.trajectory_model, focal_length=f.focal_length,
                  calibration_path=f.calibration, camera_name=f.camera, person=f.person,
                  min_confidence=f.min_confidence, fill=f.fill, render=f.render)
    except (ValueError, FileNotFoundError) as e:  # bad files or arguments: no traceback
        raise SystemExit(f"lift.py: error: {e}") from None
    print(f"Wrote {f.output}: poses_3d {out['poses_3d'].shape} metres, layout "
          f"{out['layout']}; camera: {out['camera_source']}.")


if __name__ == "__main__":
    define_flags()
    app.run(main)
