r"""The main job: train and evaluate VideoPose3D on the embedded real-motion data.

  python launch/main.py --workdir=workdir/main           # the README's first command
  python launch/main.py --workdir=/tmp/m --config=launch/configs/sample_videopose.py:tiny

1. Builds the Human3.6M-like multi-view dataset from the DeepMimic motion capture in the
   ``pybullet`` wheel (8 virtual cameras, 5 pseudo-subjects, noisy 2D detections).
2. Trains the 27-frame temporal model (``launch/configs/sample_videopose.py``) on
   subjects S1-S4 through cameras 0-6, with checkpoints in ``<workdir>/checkpoints``
   (rerunning the command resumes), a progress bar, ``metrics.jsonl`` and
   ``curves.png``.
3. Evaluates on subject S5 through camera 7 (unseen subject and viewpoint) with Protocol
   #1 and #2 per action, next to two trivial baselines fitted on the same training data:
   the mean pose and a single-frame linear lifter.
4. Writes ``poses.png`` (true vs predicted skeletons) and ``main.json``.

Runtime: about 2.5 minutes on 2 CPU cores.
"""

import os

from absl import flags
import numpy as np
from ml_collections import config_flags

import _common  # noqa: F401

from jpose import baselines, evaluation, io, visualize  # noqa: E402
from jpose.evaluators import protocols  # noqa: E402
from jpose.training import loop  # noqa: E402
from jpose.training import streams  # noqa: E402

_CONFIG = config_flags.DEFINE_config_file(
    "config", os.path.join(_common.ROOT, "launch", "configs", "sample_videopose.py"),
    "Experiment config file.", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Output directory.")
flags.mark_flags_as_required(["workdir"])

#: Actions shown in poses.png when present (DeepMimic clip names).
_SHOWN = ("walk", "kick", "cartwheel", "punch")


def _root_relative_2d(inputs: np.ndarray) -> np.ndarray:
    return inputs[..., :2] - inputs[..., :1, :2]


def fit_baselines(data: streams.DataSets) -> dict[str, evaluation.ProtocolAccumulator]:
    """Mean pose and linear lifter fitted on the labelled training sequences, evaluated on
    the test ones."""
    train = data.splits["labelled"]
    x = np.concatenate([_root_relative_2d(s.inputs) for s in train])
    y = np.concatenate([s.poses_3d for s in train])
    mean_pose = baselines.fit_mean_pose(y)
    lifter = baselines.fit_linear_lifter(x, y)
    results = {"mean pose": evaluation.ProtocolAccumulator(),
               "linear lifter": evaluation.ProtocolAccumulator()}
    for action, inputs, target in data.eval_sequences:
        pred = baselines.apply_linear_lifter(lifter, _root_relative_2d(inputs))
        results["linear lifter"].add(action, pred, target)
        results["mean pose"].add(action, np.broadcast_to(mean_pose, target.shape), target)
    return results


def run(config, workdir: str) -> dict:
    data = streams.load_data(config)
    trained = loop.train_and_evaluate(config, workdir, data=data)
    results = {"VideoPose3D": trained["accumulator"], **fit_baselines(data)}
    print()
    print(evaluation.format_table(results))

    # A few test frames, true vs predicted (the middle frame of one sequence per action).
    shown = [s for s in data.eval_sequences if s[0] in _SHOWN][:4] or data.eval_sequences[:4]
    predict_fn = protocols.make_predict_fn(trained["run"].predictors["pose"].fn)
    _, predictions = protocols.evaluate(predict_fn, trained["variables"], shown,
                                        keep_predictions=True)
    picture = visualize.save_pose_comparison(
        os.path.join(workdir, "poses.png"),
        [target[len(target) // 2] - target[len(target) // 2, :1] for _, _, target in shown],
        [p[len(p) // 2] for p in predictions], data.layout,
        titles=[f"{action} (unseen subject and camera)" for action, _, _ in shown],
        prediction_label="VideoPose3D")

    summary = {name: acc.summary_mm() for name, acc in results.items()}
    io.save_json_atomic(os.path.join(workdir, "main.json"), {"units": "mm", "results": summary})
    print(f"\nWrote {picture}, {os.path.join(workdir, 'curves.png')} and main.json.")
    return summary


def main(argv):
    del argv
    with _common.one_line_errors("main.py"):
        run(_CONFIG.value, _WORKDIR.value)


if __name__ == "__main__":
    _common.run_app(main, "main.py")
