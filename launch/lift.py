r"""Lift 2D keypoint files to 3D poses with an exported model (no training code needed).

Usage::

  python launch/lift.py --model=exports/videopose_243f --input=detections.json \
      --output=poses.npz --image_width=1920 --image_height=1080

``--model`` is a directory written by ``jpose.export.export_lifter`` (loaded with the
standalone ``jpose/exported_model.py``).

Inputs (``--input``, chosen by file extension)
----------------------------------------------
* ``.npz`` (read without pickle): ``keypoints`` of shape (T, J, 2) or (N, T, J, 2) in
  **pixels** (N sequences of T frames), optional ``image_size`` (2,) = (width, height)
  pixels. The joint layout is ``--layout``, by default the model's input layout.
* ``.json``: COCO keypoint *results* -- a list of
  ``{"image_id", "keypoints": [x1, y1, v1, ..., x17, y17, v17], "score", ...}`` with the 17
  COCO joints (layout ``coco_17``). One person per image id (a repeated image id is an
  error: filter detections to one track first); the frames are the entries **sorted by
  image_id** (which must all be ints or all strings), one sequence (N = 1). Optional
  ``track_id`` / ``frame`` fields are ignored; gaps in the ids are not filled, so the
  ids should number consecutive video frames. ``v`` is not used; joints with ``v == 0``
  (not detected) are counted and logged, since their (0, 0) would be lifted as is.
  COCO results carry no image size: pass ``--image_width`` and ``--image_height``.

Processing: the input layout is converted to the model's input layout by joint name with
:func:`jpose.skeleton.convert`, which copies shared joints and *synthesises* missing ones
by the skeleton module's documented rules (e.g. for COCO -> Human3.6M: pelvis = mid-hip,
neck = mid-shoulder, spine = halfway between them, head = nose, head top extrapolated).
Pixels are then normalised to screen coordinates (:func:`jpose.camera.pixels_to_screen`)
and the exported model is run.

Output (``--output``, ``.npz``, written atomically: temp file then rename):
``poses_3d`` (N, T, J, 3) float32 **metres**, ``joint_names`` (J,), ``layout`` (the
model's output layout), ``units`` = "metres", ``frame`` = "camera (x right, y down,
z forward), root-relative", ``input_layout``, ``image_size`` (2,), and for COCO input
``image_ids`` (T,), the id of each frame. With ``--trajectory_model`` (a trajectory
network's export) also ``trajectory`` (N, T, 3) metres, the root's camera-frame
position, and ``poses_camera`` (N, T, J, 3) = ``poses_3d + trajectory``, absolute
camera-frame joints.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any, NamedTuple

from absl import app, flags, logging
import numpy as np

# Runs as a script from a clone: make the repository importable without installing.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from jpose import camera, io, skeleton  # noqa: E402
from jpose.exported_model import ExportedLifter  # noqa: E402

COCO_LAYOUT = "coco_17"
POSE_FRAME = "camera (x right, y down, z forward), root-relative"
TRAJECTORY_FRAME = "camera (x right, y down, z forward), absolute root position"


class Detections(NamedTuple):
    """2D keypoints read from an input file."""

    keypoints: np.ndarray  # (N, T, J, 2) float64 pixels
    layout: str  # joint layout of ``keypoints``
    image_size: tuple[float, float] | None  # (width, height) pixels, if the file has it
    image_ids: np.ndarray | None  # (T,) COCO image id of each frame, else None


# ----------------------------------------------------------------------------- reading


def _check_keypoints(kp: np.ndarray, layout: str, path: str) -> np.ndarray:
    skel = skeleton.get(layout)  # ValueError naming the known layouts
    if kp.ndim == 3:
        kp = kp[None]
    if kp.ndim != 4 or kp.shape[-2:] != (skel.num_joints, 2):
        raise ValueError(
            f"{path}: 'keypoints' must have shape (T, J={skel.num_joints}, 2) or "
            f"(N, T, {skel.num_joints}, 2) pixels for layout {skel.name!r}, got {kp.shape}"
        )
    if kp.shape[1] == 0:
        raise ValueError(f"{path}: 'keypoints' has no frames (shape {kp.shape})")
    finite = np.isfinite(kp)
    if not finite.all():
        first = tuple(int(i) for i in np.argwhere(~finite)[0])
        raise ValueError(
            f"{path}: 'keypoints' has {int(kp.size - finite.sum())} non-finite value(s), first "
            f"at index {first}; fill (interpolate) or drop missing keypoints first"
        )
    return kp


def read_npz(path: str, *, layout: str) -> Detections:
    """Read ``keypoints`` (T, J, 2) / (N, T, J, 2) pixels and optional ``image_size``.

    Unreadable files (empty, truncated, not an archive, object arrays) give the one-line
    ValueError of :func:`jpose.io.load_npz`.
    """
    arrays = io.load_npz(path, what="input")
    if "keypoints" not in arrays:
        raise ValueError(
            f"{path}: missing key 'keypoints' ((T, J, 2) or (N, T, J, 2) pixels); found "
            f"{sorted(arrays)}"
        )
    kp = arrays["keypoints"]
    if kp.dtype.kind not in "fiu":
        raise ValueError(f"{path}: 'keypoints' must be numeric pixels, got dtype {kp.dtype}")
    kp = _check_keypoints(kp.astype(np.float64), layout, path)
    size = None
    if "image_size" in arrays:
        s = arrays["image_size"]
        if s.shape != (2,) or s.dtype.kind not in "fiu" or not np.all(s > 0):
            raise ValueError(
                f"{path}: 'image_size' must be (2,) positive (width, height) pixels, got "
                f"{s.dtype}{s.shape} {s}"
            )
        size = (float(s[0]), float(s[1]))
    return Detections(kp, skeleton.get(layout).name, size, None)


def read_coco_json(path: str) -> Detections:
    """Read COCO keypoint results (one person per image id; frames sorted by image_id)."""
    with open(path, encoding="utf-8") as f:
        try:
            entries = json.load(f)
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(entries, list) or not entries:
        raise ValueError(f"{path}: expected a non-empty list of COCO keypoint results")
    num_joints = skeleton.get(COCO_LAYOUT).num_joints
    by_id: dict[Any, np.ndarray] = {}
    for i, e in enumerate(entries):
        if not isinstance(e, dict):
            raise ValueError(f"{path}: entry {i} is {type(e).__name__}, expected an object")
        for key in ("image_id", "keypoints"):
            if key not in e:
                raise ValueError(f"{path}: entry {i} is missing key {key!r}")
        image_id = e["image_id"]
        if isinstance(image_id, bool) or not isinstance(image_id, (int, str)):
            raise ValueError(f"{path}: entry {i}: 'image_id' must be an int or a string, got {image_id!r}")
        kp = e["keypoints"]
        if (
            not isinstance(kp, list)
            or len(kp) != 3 * num_joints
            or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in kp)
        ):
            raise ValueError(
                f"{path}: entry {i} (image_id {image_id!r}): 'keypoints' must be "
                f"{3 * num_joints} numbers [x1, y1, v1, ...] for the {num_joints} COCO joints"
            )
        if image_id in by_id:
            raise ValueError(
                f"{path}: image_id {image_id!r} appears more than once; this tool lifts one "
                "person per image: keep one detection (one track) per image first"
            )
        by_id[image_id] = np.asarray(kp, np.float64).reshape(num_joints, 3)
    if len({type(k) for k in by_id}) > 1:
        raise ValueError(f"{path}: 'image_id' values mix ints and strings; cannot order frames")
    ids = sorted(by_id)
    triples = np.stack([by_id[k] for k in ids])  # (T, 17, 3)
    undetected = int(np.count_nonzero(triples[..., 2] == 0))
    if undetected:
        logging.warning(
            "%s: %d joint detections have v == 0 (not detected); they are lifted from their "
            "stored coordinates.", path, undetected,
        )
    kp = _check_keypoints(triples[..., :2], COCO_LAYOUT, path)
    return Detections(kp, COCO_LAYOUT, None, np.asarray(ids))


def read_input(path: str, *, layout: str | None, default_layout: str) -> Detections:
    """Dispatch on the extension: ``.npz`` or ``.json`` (COCO results)."""
    ext = os.path.splitext(path)[1].lower()
    if not os.path.isfile(path):
        raise FileNotFoundError(f"input: {path!r} does not exist")
    if ext == ".npz":
        return read_npz(path, layout=layout or default_layout)
    if ext == ".json":
        if layout is not None and skeleton.get(layout).name != COCO_LAYOUT:
            raise ValueError(
                f"layout: COCO JSON input is always {COCO_LAYOUT!r}, got --layout={layout!r}"
            )
        return read_coco_json(path)
    raise ValueError(f"input: {path!r} has extension {ext!r}; expected .npz or .json")


def _image_size(detections: Detections, image_size, path: str) -> tuple[float, float]:
    if image_size is not None:
        w, h = (float(v) for v in image_size)
        if not (w > 0 and h > 0):
            raise ValueError(f"image_size: expected positive (width, height), got {image_size}")
        if detections.image_size is not None and detections.image_size != (w, h):
            raise ValueError(
                f"image_size: flags give {(w, h)} but {path} stores {detections.image_size}"
            )
        return w, h
    if detections.image_size is None:
        raise ValueError(
            f"image size unknown for {path}: pass --image_width and --image_height (or store "
            "'image_size' (width, height) in the .npz)"
        )
    return detections.image_size


# ----------------------------------------------------------------------------- lifting


def model_inputs(keypoints_px, *, source_layout: str, model_layout: str, image_size) -> np.ndarray:
    """Pixels in ``source_layout`` -> normalised screen coordinates in ``model_layout``.

    Converting joints and normalising are both affine with weights summing to one, so the
    order does not matter; joints are converted first, in pixels.
    """
    converted = skeleton.convert(np.asarray(keypoints_px, np.float64), source_layout, model_layout)
    size = np.asarray(image_size, np.float32)
    return np.asarray(camera.pixels_to_screen(converted.astype(np.float32), size))


def lift(model: ExportedLifter, detections: Detections, *, image_size) -> np.ndarray:
    """(N, T, J_out, 3) metres from the detections' pixels (see the module docstring)."""
    if model.metadata["config"]["in_features"] != 2:
        raise ValueError(
            f"model: takes {model.metadata['config']['in_features']} features per joint; this "
            "tool supplies only (x, y)"
        )
    screen = model_inputs(
        detections.keypoints,
        source_layout=detections.layout,
        model_layout=model.metadata["input_layout"],
        image_size=image_size,
    )
    return model(screen).astype(np.float32)


def write_output(path: str, arrays: dict[str, Any]) -> None:
    """Atomic ``.npz`` write (:func:`jpose.io.save_npz_atomic`)."""
    io.save_npz_atomic(path, arrays)


def run(
    model_dir: str,
    input_path: str,
    output_path: str,
    *,
    layout: str | None = None,
    image_size: tuple[float, float] | None = None,
    trajectory_model_dir: str | None = None,
) -> dict[str, Any]:
    """Read ``input_path``, lift it with the export in ``model_dir``, write ``output_path``.

    With ``trajectory_model_dir`` (the export of a trajectory network, e.g. the
    ``trajectory`` predictor of the ``videopose_semi`` recipe) the output also holds
    ``trajectory`` (N, T, 3), the root's camera-frame position in metres, and
    ``poses_camera`` = ``poses_3d + trajectory``: absolute camera-frame joints.

    Returns the arrays written (as a dict).
    """
    if layout is not None:
        skeleton.get(layout)  # unknown layout: ValueError listing the known ones
    model = ExportedLifter.load(model_dir)
    detections = read_input(input_path, layout=layout, default_layout=model.metadata["input_layout"])
    size = _image_size(detections, image_size, input_path)
    poses = lift(model, detections, image_size=size)
    trajectory = model.metadata.get("output_kind") == "trajectory"
    out = {
        "poses_3d": poses,
        "joint_names": np.asarray(model.joint_names),
        "layout": np.asarray(model.metadata["output_layout"] or "root"),
        "units": np.asarray("metres"),
        "frame": np.asarray(TRAJECTORY_FRAME if trajectory else POSE_FRAME),
        "input_layout": np.asarray(detections.layout),
        "image_size": np.asarray(size, np.float64),
    }
    if trajectory_model_dir is not None:
        if trajectory:
            raise ValueError(f"--model: {model_dir} is a trajectory model; pass the pose "
                             "model as --model and the trajectory one as --trajectory_model")
        traj_model = ExportedLifter.load(trajectory_model_dir)
        if traj_model.metadata.get("output_kind") != "trajectory":
            raise ValueError(f"--trajectory_model: {trajectory_model_dir} is not a trajectory "
                             f"model (output kind {traj_model.metadata.get('output_kind')!r})")
        if traj_model.metadata["input_layout"] != model.metadata["input_layout"]:
            raise ValueError(
                f"--trajectory_model: takes {traj_model.metadata['input_layout']!r} joints but "
                f"--model takes {model.metadata['input_layout']!r}")
        root = lift(traj_model, detections, image_size=size)[..., 0, :]  # (N, T, 3)
        out["trajectory"] = root
        out["poses_camera"] = poses + root[..., None, :]
    if detections.image_ids is not None:
        out["image_ids"] = detections.image_ids
    write_output(output_path, out)
    logging.info(
        "Lifted %d sequence(s) x %d frames (%s -> %s) to %s.",
        poses.shape[0], poses.shape[1], detections.layout, model.metadata["input_layout"],
        output_path,
    )
    return out


# ----------------------------------------------------------------------------- main


def define_flags(flag_values=flags.FLAGS) -> None:
    """Defined on demand (not at import) so tests can import this module freely."""
    flags.DEFINE_string("model", None, "Export directory (jpose.export).", required=True,
                        flag_values=flag_values)
    flags.DEFINE_string("input", None, "Keypoints: .npz (pixels) or COCO results .json.",
                        required=True, flag_values=flag_values)
    flags.DEFINE_string("output", None, "Output .npz with poses_3d (metres).", required=True,
                        flag_values=flag_values)
    flags.DEFINE_string("layout", None, "Joint layout of an .npz input (default: the "
                        "model's input layout); COCO JSON is always coco_17.",
                        flag_values=flag_values)
    flags.DEFINE_string("trajectory_model", None, "Export of a trajectory network: adds the "
                        "camera-frame root trajectory and absolute poses.",
                        flag_values=flag_values)
    flags.DEFINE_float("image_width", None, "Image width in pixels.", flag_values=flag_values)
    flags.DEFINE_float("image_height", None, "Image height in pixels.", flag_values=flag_values)


def main(argv) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    f = flags.FLAGS
    if (f.image_width is None) != (f.image_height is None):
        raise app.UsageError("Pass both --image_width and --image_height, or neither.")
    size = None if f.image_width is None else (f.image_width, f.image_height)
    try:
        out = run(f.model, f.input, f.output, layout=f.layout, image_size=size,
                  trajectory_model_dir=f.trajectory_model)
    except (ValueError, FileNotFoundError) as e:  # bad files or arguments: no traceback
        raise SystemExit(f"lift.py: error: {e}") from None
    print(f"Wrote {f.output}: poses_3d {out['poses_3d'].shape} metres, layout {out['layout']}.")


if __name__ == "__main__":
    define_flags()
    app.run(main)
