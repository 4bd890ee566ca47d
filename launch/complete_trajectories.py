r"""Fill in low-confidence joints of 3D pose videos (Li et al., ICCV 2019, Eq. 1).

Usage::

  python launch/complete_trajectories.py --input=in.npz --output=out.npz \
      [--units=m|mm] [--tau=0.5] [--lambda_d=2 --lambda_c=0.5 --lambda_e=0.05] \
      [--window=0 --overlap=50] [--batch_size=8]

Input (``.npz``, read without pickle)
-------------------------------------
* ``poses``: (F, P, 3) one video or (N, F, P, 3) videos, in ``--units``.
* ``confidence``: (F, P) or (N, F, P) per-joint confidence; ``confidence > tau`` is kept
  exactly, the rest is filled in.
* ``frame_mask`` (optional): (F,) or (N, F) bool, False for padded frames (videos of
  different lengths padded to one F).

Output (``.npz``, written atomically: temp file, then rename)
--------------------------------------------------------------
``poses`` (the input's shape and units), ``status`` and ``iterations`` ((N,) or scalar;
status 0 converged, 1 max iterations, 2 non-finite), ``objective`` (metre problem),
``units``.

Refusals (one-line ``complete_trajectories.py: error: ...``, exit status 1, nothing
written, an existing ``--output`` left untouched): an unreadable or malformed input, poses
whose scale is implausible for ``--units`` (the median distance of the confident joints
from their per-frame centroid must be 0.01-10 m; mm data given as metres is ~1000x too
large, and the error suggests the ``--units`` that fits), and any video whose result is
non-finite (status 2).

The lambdas are for metres whatever ``--units`` is (mm data are solved in metres and
converted back). The defaults (``2, 0.5, 0.05``) are the oracle's and work on the
DeepMimic sample motions: on corrupted clips they bring the low-confidence joints from
~185 mm to ~25 mm MPJPE, below linear interpolation on 14 of 15 clips (see
``benchmarks/trajectory_completion.py --demo``). ``--window`` > 0 solves long videos in
overlapping windows of that many frames (cost linear in F).
"""

from __future__ import annotations

import os

if __name__ == "__main__":
    # jaxlib's CPU LAPACK runs on OpenBLAS, whose threads thrash on busy small hosts
    # (10-100x slower solves): one thread unless the user chose otherwise. Must precede
    # the first import of numpy/scipy; only when run as a script (not on import).
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import sys
from typing import Any

from absl import app, flags, logging
import numpy as np

# Runs as a script from a clone: make the repository importable without installing.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from jpose.io import load_npz, save_npz_atomic  # noqa: E402
from jpose.solvers import trajectory_completion as tc  # noqa: E402
from jpose.solvers._loop import Status  # noqa: E402

# Plausible median distance of a human's joints from their centroid, in metres (adults
# ~0.2-0.5 m, children and partial skeletons less). Outside [0.01, 10] m the --units flag
# is almost surely wrong: metres read as mm are 1000x too small, mm read as m 1000x too
# large, and the solver, whose lambdas are for metres, then fails (NaN at mm scale).
PLAUSIBLE_SPREAD_M = (0.01, 10.0)


def read_input(path: str) -> dict[str, np.ndarray]:
    """Reads and validates ``poses`` / ``confidence`` / optional ``frame_mask``.

    Returns arrays with a leading video axis: poses (N, F, P, 3) float, confidence
    (N, F, P) float, frame_mask (N, F) bool, and ``single`` (whether N was added).
    Raises FileNotFoundError or a one-line ValueError naming the file and the field.
    """
    arrays = load_npz(path, what="input")
    for key, shape in (("poses", "(F, P, 3) or (N, F, P, 3)"), ("confidence", "(F, P) or (N, F, P)")):
        if key not in arrays:
            raise ValueError(f"{path}: missing key {key!r} ({shape}); found {sorted(arrays)}")
    poses, conf = arrays["poses"], arrays["confidence"]
    for key, a in (("poses", poses), ("confidence", conf)):
        if a.dtype.kind not in "fiu":
            raise ValueError(f"{path}: {key!r} must be numeric, got dtype {a.dtype}")
    if poses.ndim not in (3, 4) or poses.shape[-1] != 3:
        raise ValueError(f"{path}: 'poses' must have shape (F, P, 3) or (N, F, P, 3), got {poses.shape}")
    if conf.shape != poses.shape[:-1]:
        raise ValueError(f"{path}: 'confidence' must have shape {poses.shape[:-1]} (poses without the "
                         f"last axis), got {conf.shape}")
    single = poses.ndim == 3
    if single:
        poses, conf = poses[None], conf[None]
    if poses.shape[1] < 1 or poses.shape[2] < 1:
        raise ValueError(f"{path}: 'poses' has no frames or joints (shape {poses.shape})")
    if "frame_mask" in arrays:
        fm = arrays["frame_mask"]
        fm = fm[None] if single and fm.ndim == 1 else fm
        if fm.shape != poses.shape[:2] or fm.dtype != bool:
            raise ValueError(f"{path}: 'frame_mask' must be bool of shape {poses.shape[1:2] if single else poses.shape[:2]}, "
                             f"got {fm.dtype}{fm.shape}")
    else:
        fm = np.ones(poses.shape[:2], bool)
    for key, a in (("poses", poses), ("confidence", conf)):
        finite = np.isfinite(a) | ~fm[(...,) + (None,) * (a.ndim - 2)]
        if not finite.all():
            raise ValueError(f"{path}: {key!r} has {int((~finite).sum())} non-finite value(s) in "
                             "valid frames; give them a low confidence and any finite value")
    poses = np.where(fm[..., None, None], poses, 0.0)
    conf = np.where(fm[..., None], conf, 0.0)
    dtype = poses.dtype if poses.dtype.kind == "f" else np.float32
    return {"poses": poses.astype(dtype), "confidence": conf.astype(dtype), "frame_mask": fm,
            "single": single}


def joint_spread(poses: np.ndarray, confidence: np.ndarray, frame_mask: np.ndarray, *,
                 tau: float) -> float:
    """Median distance of the joints from their per-frame centroid, in the poses' units.

    Uses the confident joints (``confidence > tau``) of valid frames with at least two
    of them (low-confidence joints are the ones that may be garbage); if there are none,
    all joints of valid frames. 0.0 when there is nothing to measure.
    """
    use = (confidence > tau) & frame_mask[..., None]  # (N, F, P)
    if not np.any(use.sum(-1) >= 2):
        use = np.broadcast_to(frame_mask[..., None], use.shape)
    count = use.sum(-1, keepdims=True)  # (N, F, 1)
    frames = count[..., 0] >= 2
    if not frames.any():
        return 0.0
    w = use[..., None].astype(poses.dtype)
    centroid = (poses * w).sum(-2, keepdims=True) / np.maximum(count, 1)[..., None]
    dist = np.linalg.norm(poses - centroid, axis=-1)  # (N, F, P)
    return float(np.median(dist[use & frames[..., None]]))


def check_units(data: dict[str, np.ndarray], *, units: str, tau: float, path: str) -> None:
    """Refuses poses whose scale is implausible for a human in ``units`` (see
    :data:`PLAUSIBLE_SPREAD_M`), with a hint naming the ``--units`` that would fit."""
    spread = joint_spread(data["poses"], data["confidence"], data["frame_mask"], tau=tau)
    metres = spread * tc.UNIT_SCALE[units]
    low, high = PLAUSIBLE_SPREAD_M
    if spread == 0.0 or low <= metres <= high:  # 0: no scale to judge (e.g. all zeros)
        return
    other = "mm" if units == "m" else "m"
    if low <= spread * tc.UNIT_SCALE[other] <= high:
        name = "millimetres" if other == "mm" else "metres"
        hint = f"the poses look like {name}: pass --units={other}"
    else:  # implausible in either unit (not poses, or some other scaling)
        hint = "neither metres nor millimetres fit: check the data"
    raise ValueError(
        f"{path}: 'poses' have a median joint distance from the per-frame centroid of "
        f"{spread:.4g} {units}, implausible for a human pose (expected ~0.1-1 m); {hint}")


def run(input_path: str, output_path: str, *, config: tc.CompletionConfig = tc.CompletionConfig(),
        batch_size: int = 8, progress: bool = True) -> dict[str, np.ndarray]:
    """Reads ``input_path``, completes every video, writes ``output_path``.

    Videos are solved ``batch_size`` at a time (one vmapped solve; the last batch is
    padded with repeats so every batch has one compiled shape). Returns the arrays written.

    Raises:
      FileNotFoundError, ValueError: a bad input file (see :func:`read_input`), a pose
        scale implausible for ``config.units`` (:func:`check_units`), or any video whose
        result is non-finite (status non-finite); then nothing is written and an existing
        ``output_path`` is left untouched.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size: expected >= 1, got {batch_size}")
    data = read_input(input_path)
    check_units(data, units=config.units, tau=config.tau, path=input_path)
    poses, conf, fm = data["poses"], data["confidence"], data["frame_mask"]
    num = poses.shape[0]
    out_poses = np.zeros_like(poses)
    status = np.zeros(num, np.int32)
    iterations = np.zeros(num, np.int32)
    objective = np.zeros(num, np.float64)
    size = min(batch_size, num)
    from tqdm import tqdm  # A launch-time dependency only.

    with tqdm(total=num, unit="video", disable=not progress) as bar:
        for start in range(0, num, size):
            idx = np.minimum(np.arange(start, start + size), num - 1)
            res = tc.complete_trajectories(poses[idx], conf[idx], config=config, frame_mask=fm[idx])
            keep = slice(0, min(size, num - start))
            sel = slice(start, start + keep.stop)
            out_poses[sel] = np.asarray(res.poses)[keep]
            status[sel] = np.asarray(res.status)[keep]
            iterations[sel] = np.asarray(res.iterations)[keep]
            objective[sel] = np.asarray(res.objective)[keep]
            bar.update(keep.stop)
    # A NaN pose file that exits 0 is worse than no file: refuse before writing anything.
    failed = ((status == Status.NON_FINITE) | ~np.isfinite(objective)
              | ~np.isfinite(out_poses).all(axis=(1, 2, 3)))
    if failed.any():
        which = ", ".join(str(i) for i in np.flatnonzero(failed)[:10])
        raise ValueError(
            f"{int(failed.sum())} of {num} video(s) gave non-finite poses (status non-finite; "
            f"video index {which}{', ...' if failed.sum() > 10 else ''}); nothing written to "
            f"{output_path} (check the input values and --units, or the lambdas)")
    if data["single"]:
        out = {"poses": out_poses[0], "status": status[0], "iterations": iterations[0],
               "objective": objective[0]}
    else:
        out = {"poses": out_poses, "status": status, "iterations": iterations,
               "objective": objective}
    out["units"] = np.asarray(config.units)
    save_npz_atomic(output_path, out)
    bad = int(np.sum(status != Status.CONVERGED))
    if bad:
        logging.warning("%d of %d video(s) stopped at max iterations (status 1).", bad, num)
    return out


# ----------------------------------------------------------------------------- main


def define_flags(flag_values=flags.FLAGS) -> None:
    """Defined on demand (not at import) so tests can import this module freely."""
    d = tc.CompletionConfig()
    flags.DEFINE_string("input", None, ".npz with poses and confidence.", required=True,
                        flag_values=flag_values)
    flags.DEFINE_string("output", None, "Output .npz.", required=True, flag_values=flag_values)
    flags.DEFINE_enum("units", "m", ["m", "mm"], "Units of the input poses (output: the same).",
                      flag_values=flag_values)
    flags.DEFINE_float("tau", d.tau, "Confidence threshold: > tau is observed.", flag_values=flag_values)
    flags.DEFINE_float("lambda_d", d.lambda_d, "Smoothness weight (metres).", flag_values=flag_values)
    flags.DEFINE_float("lambda_c", d.lambda_c, "Weight of ||B||_* (metres).", flag_values=flag_values)
    flags.DEFINE_float("lambda_e", d.lambda_e, "Weight of ||X - XB||_1 (metres).", flag_values=flag_values)
    flags.DEFINE_float("tol", d.tol, "Stopping tolerance (relative).", flag_values=flag_values)
    flags.DEFINE_integer("max_iterations", d.max_iterations, "Iteration budget.", flag_values=flag_values)
    flags.DEFINE_integer("window", 0, "Window length in frames for long videos (0: whole video).",
                         flag_values=flag_values)
    flags.DEFINE_integer("overlap", d.overlap, "Frames shared by consecutive windows.",
                         flag_values=flag_values)
    flags.DEFINE_integer("batch_size", 8, "Videos solved together (one vmapped solve).",
                         flag_values=flag_values)


def config_from_flags(f) -> tc.CompletionConfig:
    return tc.CompletionConfig(
        lambda_d=f.lambda_d, lambda_c=f.lambda_c, lambda_e=f.lambda_e, units=f.units, tau=f.tau,
        tol=f.tol, max_iterations=f.max_iterations, window=f.window or None, overlap=f.overlap)


def main(argv, flag_values=flags.FLAGS) -> None:
    """``app.run`` entry point; ``flag_values`` lets tests pass their own parsed flags."""
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    f = flag_values
    try:
        out = run(f.input, f.output, config=config_from_flags(f), batch_size=f.batch_size)
    except (ValueError, OSError) as e:  # bad files, arguments or output path: no traceback
        raise SystemExit(f"complete_trajectories.py: error: {e}") from None
    print(f"Wrote {f.output}: poses {out['poses'].shape} {f.units}, "
          f"{int(np.sum(np.asarray(out['status']) == 0))} converged.")


if __name__ == "__main__":
    define_flags()
    app.run(main)
