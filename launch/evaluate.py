r"""Evaluates the latest checkpoint of a workdir: per-action table, millimetres.

  python launch/evaluate.py --workdir=workdir/sample [--predictor=pose] [--flip=false]

The run's config is read from its checkpoint, so the workdir is all it needs. Protocol
#1 (MPJPE), #2 (P-MPJPE), N-MPJPE and MPJVE per action, with the action-wise average
(mean of per-action means, as VideoPose3D reports Human3.6M) and the frame-wise average,
of the recipe predictor ``--predictor``. ``--flip`` toggles test-time flip augmentation
(default: the config's).
"""

from absl import flags

import _common  # noqa: F401

from jpose import evaluation, io  # noqa: E402
from jpose.evaluators import protocols  # noqa: E402
from jpose.training import loop  # noqa: E402

_WORKDIR = flags.DEFINE_string("workdir", None, "Workdir holding checkpoints.")
_PREDICTOR = flags.DEFINE_string("predictor", "pose", "Recipe predictor to evaluate.")
_FLIP = flags.DEFINE_boolean("flip", None, "Test-time flip augmentation.")
_OUTPUT = flags.DEFINE_string("output", None, "Write the results JSON here.")
flags.mark_flags_as_required(["workdir"])


def run(workdir: str, *, predictor: str = "pose", flip: bool | None = None
        ) -> evaluation.ProtocolAccumulator:
    restored = loop.restore_for_inference(workdir, with_data=True)
    run_ = restored.run
    if predictor not in run_.predictors:
        raise ValueError(f"--predictor: {predictor!r} is not one of the recipe's predictors "
                         f"{sorted(run_.predictors)}")
    flip = restored.config.eval.flip if flip is None else flip
    evaluator = protocols.ProtocolsEvaluator(
        run_.predictors[predictor], run_.data.eval_sequences,
        layouts=(run_.data.input_layout, run_.data.layout), flip=flip,
        bucket=int(restored.config.eval.bucket))
    return evaluator.run(restored.variables)[0]


def main(argv):
    del argv
    with _common.one_line_errors("evaluate.py"):
        acc = run(_WORKDIR.value, predictor=_PREDICTOR.value, flip=_FLIP.value)
    print(evaluation.format_table({"": acc}, protocols=("mpjpe", "p_mpjpe", "n_mpjpe",
                                                        "mpjve")))
    if _OUTPUT.value:
        io.save_json_atomic(_OUTPUT.value, {
            "units": "mm", "summary": acc.summary_mm(),
            "per_action": {k: acc.per_action_mm(k) for k, _ in evaluation.PROTOCOLS}})


if __name__ == "__main__":
    _common.run_app(main, "evaluate.py")
