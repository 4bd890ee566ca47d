r"""Evaluates the latest checkpoint of a workdir: per-action table, millimetres.

  python launch/evaluate.py --config=launch/configs/sample_videopose.py --workdir=workdir/sample

Protocol #1 (MPJPE), #2 (P-MPJPE), N-MPJPE and MPJVE per action, with the action-wise
average (mean of per-action means, as VideoPose3D reports Human3.6M) and the frame-wise
average. ``--flip`` toggles test-time flip augmentation (default: the config's).
"""

import json
import os

from absl import app, flags
from ml_collections import config_flags

import _common  # noqa: F401

from jpose import evaluation  # noqa: E402
from jpose.training import evaluate as eval_lib  # noqa: E402
from jpose.training import loop  # noqa: E402

_CONFIG = config_flags.DEFINE_config_file("config", None, "Experiment config file.",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Workdir holding checkpoints.")
_FLIP = flags.DEFINE_boolean("flip", None, "Test-time flip augmentation.")
_OUTPUT = flags.DEFINE_string("output", None, "Write the results JSON here.")
flags.mark_flags_as_required(["config", "workdir"])


def run(config, workdir: str, flip: bool | None = None) -> evaluation.ProtocolAccumulator:
    model, variables, data = loop.restore_for_inference(config, workdir)
    flip = config.eval.flip if flip is None else flip
    return eval_lib.evaluate(model, variables, data.eval_sequences,
                             flip_layouts=(data.layout, data.layout) if flip else None,
                             bucket=int(config.eval.bucket))


def main(argv):
    del argv
    acc = run(_CONFIG.value, _WORKDIR.value, _FLIP.value)
    print(evaluation.format_table({"": acc}, protocols=("mpjpe", "p_mpjpe", "n_mpjpe",
                                                        "mpjve")))
    if _OUTPUT.value:
        tmp = _OUTPUT.value + ".tmp"
        with open(tmp, "w") as f:
            json.dump({"units": "mm", "summary": acc.summary_mm(),
                       "per_action": {k: acc.per_action_mm(k) for k, _ in
                                      evaluation.PROTOCOLS}}, f, indent=2)
        os.replace(tmp, _OUTPUT.value)


if __name__ == "__main__":
    app.run(main)
