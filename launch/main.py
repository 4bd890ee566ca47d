r"""The main job on the embedded real-motion data.

Builds the Human3.6M-like multi-view dataset from the DeepMimic motion capture shipped
in the ``pybullet`` wheel (``jpose.datasets.multiview``), fits trivial lifting baselines
on the labelled split only (the mean pose; a single-frame linear lifter from noisy 2D
detections) and evaluates them on the held-out test subjects with Protocol #1 (MPJPE),
Protocol #2 (P-MPJPE), N-MPJPE and MPJVE, per action, in millimetres.

Writes to ``--workdir``: ``dataset.npz`` (the generated dataset, no pickle),
``metrics.json`` and ``poses.png`` (true vs predicted skeletons on test frames).

Usage (the README's first command)::

  python launch/main.py --workdir=workdir/main

Runtime: about a minute on 2 CPU cores. ``--source=synthetic`` needs no ``pybullet``.
"""

import json
import os
import sys
import time

from absl import app, flags, logging
import numpy as np

# Runs as a script from a clone: make the repository importable without installing.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from jpose import baselines, camera, evaluation, metrics, visualize  # noqa: E402
from jpose.datasets import multiview  # noqa: E402

FLAGS = flags.DEFINE_string("workdir", None, "Output directory.", required=True)
SOURCE = flags.DEFINE_enum("source", "deepmimic", multiview.SOURCES, "Motion source.")
NUM_SUBJECTS = flags.DEFINE_integer("num_subjects", 5, "Pseudo-subjects to generate.")
SEED = flags.DEFINE_integer("seed", 0, "Seed of the dataset generator.")


def _inputs_and_targets(records):
    """Root-relative screen-coordinate detections and camera-frame 3D poses."""
    inputs, targets = [], []
    for r in records:
        screen = np.asarray(camera.pixels_to_screen(r.keypoints, r.camera.image_size))
        inputs.append(screen - screen[:, :1])
        targets.append(r.positions_camera - r.positions_camera[:, :1])
    return inputs, targets


def run(workdir: str, source: str, num_subjects: int, seed: int) -> dict:
    os.makedirs(workdir, exist_ok=True)
    start = time.time()
    data = multiview.make_multiview_dataset(source, num_subjects=num_subjects, seed=seed)
    data.save(os.path.join(workdir, "dataset.npz"))
    labelled, test = data.split("labelled"), data.split("test")
    frames = lambda recs: sum(r.num_frames for r in recs)
    logging.info("Generated %d sequences (%s) in %.1f s.", len(data.sequences), source,
                 time.time() - start)
    print(f"Dataset: {source} motion, {len(data.actions)} actions, "
          f"{len(data.subjects)} subjects, {data.num_cameras} cameras; "
          f"labelled {data.split_subjects('labelled')} {frames(labelled)} frames, "
          f"test {data.split_subjects('test')} {frames(test)} frames.")
    err = np.concatenate([np.linalg.norm(r.keypoints - r.keypoints_clean, axis=-1).ravel()
                          for r in test])
    print(f"2D detections: median error {np.median(err):.1f} px, "
          f"outliers {np.mean(np.concatenate([r.outlier.ravel() for r in test])):.1%}.")

    train_x, train_y = _inputs_and_targets(labelled)
    mean_pose = baselines.fit_mean_pose(np.concatenate(train_y))
    lifter = baselines.fit_linear_lifter(np.concatenate(train_x), np.concatenate(train_y))

    results = {"mean pose": evaluation.ProtocolAccumulator(),
               "linear lifter": evaluation.ProtocolAccumulator()}
    test_x, test_y = _inputs_and_targets(test)
    shown = []
    for r, x, y in zip(test, test_x, test_y):
        pred = baselines.apply_linear_lifter(lifter, x)
        results["linear lifter"].add(r.action, pred, y)
        results["mean pose"].add(r.action, np.broadcast_to(mean_pose, y.shape), y)
        if r.camera_index == 0 and len(shown) < 4 and r.action in ("walk", "kick", "punch",
                                                                    "jump", "walk_0"):
            shown.append((r.action, y[len(y) // 2], pred[len(y) // 2]))
    if not shown:  # Synthetic or other actions: show the first test sequences.
        shown = [(r.action, y[len(y) // 2], baselines.apply_linear_lifter(lifter, x)[len(y) // 2])
                 for r, x, y in list(zip(test, test_x, test_y))[:4]]

    print()
    print(evaluation.format_table(results))
    picture = visualize.save_pose_comparison(
        os.path.join(workdir, "poses.png"), [s[1] for s in shown], [s[2] for s in shown],
        data.layout, titles=[f"{s[0]} (test subject, camera 0)" for s in shown],
        prediction_label="linear lifter")
    summary = {name: acc.summary_mm() for name, acc in results.items()}
    with open(os.path.join(workdir, "metrics.json.tmp"), "w") as f:
        json.dump({"source": source, "units": "mm", "results": summary}, f, indent=2)
    os.replace(os.path.join(workdir, "metrics.json.tmp"), os.path.join(workdir, "metrics.json"))
    print(f"\nWrote {picture} and metrics.json in {time.time() - start:.0f} s.")
    return summary


def main(argv):
    del argv
    run(FLAGS.value, SOURCE.value, NUM_SUBJECTS.value, SEED.value)


if __name__ == "__main__":
    app.run(main)
