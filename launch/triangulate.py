r"""Triangulate your own multi-camera capture: the geometric baseline, world 3D in metres.

Usage::

  python launch/triangulate.py --capture=capture.toml --output=points.npz   # or .json

``--capture`` is a capture manifest (:mod:`jpose.datasets.capture`: an Anipose / Pose2Sim
calibration and one detector output per camera). Each camera's 2D is read, aligned in
time and filled as the capture loader does; then every (frame, joint) is triangulated by
:func:`jpose.triangulation.triangulate` from the views whose confidence is at least
``--min_confidence`` (default: the manifest's, else 0.3; filled entries are never used),
undistorted with the calibration's exact OpenCV coefficients, the views weighted by their
confidence (Pose2Sim's weighted DLT). Points seen by fewer than ``--min_views`` views are
NaN (JSON: null).

Output (``--output``; the extension picks ``.npz`` or ``.json``; written atomically)
-----------------------------------------------------------------------------------
``points_3d`` (T, J, 3) **metres** in the calibration's world frame; ``joint_names`` and
``layout`` (the detections' layout); ``frames`` (T,) frame numbers; ``camera_names``
(V,); ``reprojection_error`` (V, T, J) pixels, per view (also the views that did not
count, so outliers show); ``mean_reprojection_error`` (T, J) pixels over the views that
counted; ``num_views`` (T, J); ``units``, ``frame``, ``calibration``, ``units_source``,
``min_confidence``. For a labelled capture also ``mpjpe_mm`` and ``p_mpjpe_mm``
(Protocols #1, #2 of the triangulation against the labels; frame-wise).

Compare a multi-view recipe with this baseline on the generated sample with
:func:`jpose.datasets.capture.dlt_baseline` (``--baseline_sample`` prints it).
"""

from __future__ import annotations

import os
import sys

from absl import app, flags, logging
import numpy as np

# Runs as a script from a clone: make the repository importable without installing.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from jpose import io, skeleton  # noqa: E402
from jpose.datasets import capture as capture_lib  # noqa: E402

WORLD_FRAME = "world frame of the calibration file (x_cam = R x_world + t), metres"


def write_output(path: str, arrays: dict) -> None:
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


def run(capture_path: str, output_path: str, *, min_confidence: float | None = None,
        min_views: int = 2) -> dict:
    """Triangulates the capture of ``capture_path``, writes ``output_path``; returns the
    arrays written (module docstring)."""
    if os.path.splitext(output_path)[1].lower() not in (".npz", ".json"):
        raise ValueError(f"--output: {output_path!r}: expected a .npz or .json path")
    if min_confidence is not None and not 0 <= min_confidence <= 1:
        raise ValueError(f"--min_confidence: expected a number in [0, 1], got {min_confidence}")
    if min_views < 2:
        raise ValueError(f"--min_views: expected at least 2, got {min_views}")
    cap = capture_lib.load_manifest(capture_path)
    if min_views > len(cap.records):
        raise ValueError(f"--min_views: {min_views} exceeds the capture's "
                         f"{len(cap.records)} cameras")
    threshold = cap.min_confidence if min_confidence is None else float(min_confidence)
    tri = capture_lib.triangulate_capture(cap, min_confidence=threshold, min_views=min_views)
    conf = np.stack([r.confidence for r in cap.records])
    counted = (conf >= threshold) & (conf > 0) & np.isfinite(tri.reprojection_error)
    err = np.where(counted, tri.reprojection_error, 0.0)
    with np.errstate(invalid="ignore"):
        mean_err = np.where(counted.any(0), err.sum(0) / counted.sum(0), np.nan)
    calib = cap.calibration
    out = {
        "points_3d": tri.points.astype(np.float32),
        "joint_names": np.asarray(skeleton.get(cap.keypoints_layout).joint_names),
        "layout": np.asarray(cap.keypoints_layout),
        "frames": cap.frames,
        "camera_names": np.asarray(calib.names),
        "reprojection_error": tri.reprojection_error.astype(np.float32),
        "mean_reprojection_error": mean_err.astype(np.float32),
        "num_views": tri.num_views.astype(np.int32),
        "units": np.asarray("metres"),
        "frame": np.asarray(WORLD_FRAME),
        "calibration": np.asarray(os.path.abspath(calib.path)),
        "units_source": np.asarray(calib.units_source),
        "min_confidence": np.asarray(threshold),
    }
    if cap.labelled:
        out.update(_label_errors(cap, tri.points))
    write_output(output_path, out)
    seen = np.isfinite(tri.points).all(-1)
    logging.info("Triangulated %d frames x %d joints from %d cameras (%.1f%% of points seen "
                 "by >= %d views) to %s.", seen.shape[0], seen.shape[1], len(cap.records),
                 100 * seen.mean(), min_views, output_path)
    return out


def _label_errors(cap, points) -> dict:
    """Protocols #1 and #2 (frame-wise, mm) of the triangulation against the labels, over
    the points triangulated (joints converted to the labels' layout)."""
    from jpose import metrics

    layout = cap.records_layout
    truth = np.asarray(cap.records[0].positions_world, np.float64)
    pred = np.asarray(points, np.float64)
    if cap.keypoints_layout != layout:
        pred = skeleton.convert(pred, cap.keypoints_layout, layout)
    root = skeleton.get(layout).root
    ok = np.isfinite(pred).all(axis=(-2, -1))
    if not ok.any():
        return {}
    p, t = pred[ok] - pred[ok][:, root:root + 1], truth[ok] - truth[ok][:, root:root + 1]
    return {"mpjpe_mm": np.asarray(1000 * float(np.mean(np.asarray(metrics.mpjpe(p, t))))),
            "p_mpjpe_mm": np.asarray(1000 * float(np.mean(np.asarray(metrics.p_mpjpe(p, t)))))}


def baseline_sample() -> dict:
    """The DLT baseline's protocols on the embedded sample's test subject (4 cameras,
    noisy 2D with confidences): :func:`jpose.datasets.capture.dlt_baseline`."""
    from jpose.datasets import multiview

    ds = multiview.make_multiview_dataset("deepmimic", num_cameras=4)
    return capture_lib.dlt_baseline(ds.split("test"), layout=ds.layout).summary_mm


def define_flags(flag_values=flags.FLAGS) -> None:
    """Defined on demand (not at import) so tests can import this module freely."""
    fv = {"flag_values": flag_values}
    flags.DEFINE_string("capture", None, "Capture manifest (jpose.datasets.capture).", **fv)
    flags.DEFINE_string("output", None, "Output .npz or .json (metres, world frame).", **fv)
    flags.DEFINE_float("min_confidence", None, "2D entries below it are not used (default: "
                       "the manifest's, else 0.3).", **fv)
    flags.DEFINE_integer("min_views", 2, "Fewest views a point needs.", **fv)
    flags.DEFINE_bool("baseline_sample", False, "Print the DLT baseline's protocols on the "
                      "embedded sample's test subject instead.", **fv)


def main(argv) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    f = flags.FLAGS
    try:
        if f.baseline_sample:
            for key, value in baseline_sample().items():
                print(f"{key}: {value['action_wise']:.1f} mm action-wise, "
                      f"{value['frame_wise']:.1f} mm frame-wise")
            return
        if not f.capture or not f.output:
            raise app.UsageError("Pass --capture and --output (or --baseline_sample).")
        out = run(f.capture, f.output, min_confidence=f.min_confidence,
                  min_views=f.min_views)
    except (ValueError, FileNotFoundError) as e:  # bad files or arguments: no traceback
        raise SystemExit(f"triangulate.py: error: {e}") from None
    seen = np.isfinite(out["points_3d"]).all(-1)
    err = out["mean_reprojection_error"]
    median = f"{np.median(err[np.isfinite(err)]):.2f} px" if np.isfinite(err).any() else "-"
    print(f"Wrote {f.output}: points_3d {out['points_3d'].shape} metres, world frame, "
          f"layout {out['layout']}; {100 * seen.mean():.1f}% of points triangulated; median "
          f"reprojection error {median}.")


if __name__ == "__main__":
    define_flags()
    app.run(main)
