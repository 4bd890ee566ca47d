"""How the default in-the-wild lifter does on people, cameras and poses it never saw.

Usage:
  python benchmarks/default_lifter.py                      # the shipped jpose.default_model
  python benchmarks/default_lifter.py --model=exports/mine --subjects 6 --seed 7

Test data: :func:`jpose.datasets.wild.make_wild_dataset` with a seed other than the
training run's (0), so every body, camera, pose perturbation and detector error is new;
``--subjects`` bodies x the 15 clips x 1 camera. Each sequence goes through the path of
``launch/lift.py``: COCO-17 detections (filled where unreliable) and confidences, focal
units of its camera, the exported model (:class:`jpose.exported_model.ExportedLifter`).

Rows (millimetres, root-relative camera frame, all frames of all sequences):

* ``default model``: with each sequence's true focal length;
* ``default model, f = max(w, h)``: what a user who gives no focal length gets
  (:func:`jpose.calibration.default_intrinsics`);
* ``mean pose (training set)``: a constant, the mean root-relative pose of the
  training sequences -- the bar any lifter must clear;
* ``mean pose (oracle)``: the test set's own mean pose, a constant that has seen the
  answers.

Columns: MPJPE, P-MPJPE (Procrustes-aligned), and from :func:`jpose.plausibility.body_report`
of the predictions the median stature error against the true body (m), median bone
variation over time and median left/right asymmetry.
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _errors(pred: np.ndarray, true: np.ndarray) -> tuple[float, float]:
    from jpose import procrustes

    mpjpe = float(np.linalg.norm(pred - true, axis=-1).mean())
    aligned = np.asarray(procrustes.align(pred.astype(np.float64), true.astype(np.float64)))
    return 1000 * mpjpe, 1000 * float(np.linalg.norm(aligned - true, axis=-1).mean())


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default=None, help="export directory (default: shipped)")
    parser.add_argument("--subjects", type=int, default=4)
    parser.add_argument("--seed", type=int, default=101)
    args = parser.parse_args(argv)

    from jpose import baselines, calibration, camera, default_model, plausibility
    from jpose.datasets import wild
    from jpose.exported_model import ExportedLifter

    model = ExportedLifter.load(args.model or default_model.path())
    config = model.metadata["user"]["config"]
    screen_focal = float(model.metadata["user"]["screen_focal"])
    test = wild.make_wild_dataset(num_subjects=1, test_subjects=args.subjects, views=1,
                                  seed=args.seed).split("test")
    train = wild.make_wild_dataset(wild.WildConfig(**{
        k: tuple(v) if isinstance(v, list) else v
        for k, v in config["data"]["wild"].items()})).split("labelled")
    root = 0
    mean_pose = baselines.fit_mean_pose(np.concatenate(
        [r.positions_camera - r.positions_camera[:, root:root + 1] for r in train]))

    rows = {"default model": [], "default model, f = max(w, h)": []}
    truths, reports, statures = [], {k: [] for k in rows}, []
    for r in test:
        true = r.positions_camera - r.positions_camera[:, root:root + 1]
        truths.append(true)
        statures.append(plausibility.body_report(r.positions_world, "h36m_17")["stature_m"])
        w, h = (float(v) for v in r.camera.image_size)
        guess = calibration.default_intrinsics(w, h).camera(dtype=np.float32)
        for name, cam in (("default model", r.camera),
                          ("default model, f = max(w, h)", guess)):
            x = np.asarray(camera.pixels_to_focal_units(
                r.keypoints, np.asarray(cam.focal, np.float32),
                np.asarray(cam.principal, np.float32), screen_focal))
            x = np.concatenate([x, r.confidence[..., None]], -1)[None]
            pred = model(x)[0]
            rows[name].append(pred)
            reports[name].append(plausibility.body_report(pred, "h36m_17"))
    true_all = np.concatenate(truths)
    oracle = true_all.mean(0)
    print(f"{len(test)} held-out sequences ({args.subjects} bodies x "
          f"{len(test) // args.subjects} clips, seed {args.seed}), {len(true_all)} frames; "
          f"model {args.model or default_model.path()}\n")
    print(f"{'':32s} {'MPJPE':>7s} {'P-MPJPE':>8s} {'stature err':>12s} "
          f"{'bone var':>9s} {'asym':>6s}")
    for name, preds in rows.items():
        e = _errors(np.concatenate(preds), true_all)
        st = np.median([abs(rep["stature_m"] - s) for rep, s in zip(reports[name], statures)])
        var = np.median([np.median(rep["bone_variation"]) for rep in reports[name]])
        asym = np.median([np.median(list(rep["left_right_asymmetry"].values()))
                          for rep in reports[name]])
        print(f"{name:32s} {e[0]:7.1f} {e[1]:8.1f} {st:11.3f}m {var:9.3f} {asym:6.3f}")
    for name, pose in (("mean pose (training set)", mean_pose), ("mean pose (oracle)", oracle)):
        e = _errors(np.broadcast_to(pose, true_all.shape), true_all)
        print(f"{name:32s} {e[0]:7.1f} {e[1]:8.1f}")


if __name__ == "__main__":
    main()
