r"""Li et al. ICCV 2019 two-stage boosting: baseline, completed pseudo-labels, fine-tuning.

  python launch/boost.py --workdir=W                       # the embedded data
  python launch/boost.py --workdir=W --config=launch/configs/li_boosting/sample.py:tiny

Stages (each a run in its own workdir under ``W``; rerunning resumes or re-evaluates):

A. ``W/A_baseline``: the lifter trained on the labelled set (``--config``).
B. Predicts the unlabelled videos with A, takes the 2D detector's per-joint confidence
   as the score ``s`` (a lifter has no heatmap confidence; documented choice), completes
   every video's joints with ``s <= boost.tau`` by
   :func:`jpose.solvers.trajectory_completion.complete_trajectories` (low rank +
   temporal smoothness, seed 000 Eq. 1) and takes each video's median bone lengths of
   the completed poses; writes ``W/pseudo_labels.npz``
   (:mod:`jpose.datasets.pseudo_labels`).
C. Fine-tunes A (``init_from``) with the ``li_boosting`` recipe three ways, the rows of
   the paper's Table 3: ``optimised_supervision`` (pseudo-labels, ``W = 1``),
   ``weighted_fidelity`` (``W(s)``) and ``bone_consistency`` (``W(s)`` + ``gamma U``).

Prints and writes ``W/boost.json``: ``{"table1": {"predictions" | "optimised": {metric:
mm}}, "table3": {row: {metric: mm}}}`` -- Table 1 on the unlabelled videos (all joints,
and joints with score > tau), Table 3 on the evaluation set; metrics ``mpjpe``,
``n_mpjpe``, ``p_mpjpe`` (action-wise for Table 3), millimetres.
"""

import os

from absl import flags
import ml_collections
import numpy as np
from ml_collections import config_flags

import _common  # noqa: F401

from jpose import io, metrics  # noqa: E402
from jpose.datasets import pseudo_labels  # noqa: E402
from jpose.evaluators import protocols  # noqa: E402
from jpose.solvers import trajectory_completion as tc  # noqa: E402
from jpose.training import loop  # noqa: E402


def define_flags() -> None:
    """Defined on demand (not at import) so tests can import this module with others."""
    config_flags.DEFINE_config_file(
        "config", os.path.join(_common.ROOT, "launch", "configs", "li_boosting", "sample.py"),
        "Stage-A config with a `boost` section.", lock_config=True)
    flags.DEFINE_string("workdir", None, "Output directory (one run per stage).")
    flags.mark_flags_as_required(["workdir"])


METRICS = ("mpjpe", "n_mpjpe", "p_mpjpe")
ROWS = (("optimised_supervision", "plain", False), ("weighted_fidelity", "weighted", False),
        ("bone_consistency", "weighted", True))


def _errors(pred, target, mask) -> dict[str, tuple[float, float]]:
    """Per-metric (sum, count) in metres over ``mask`` (F, J) joints."""
    out = {"mpjpe": metrics.mpjpe(pred, target), "n_mpjpe": metrics.n_mpjpe(pred, target),
           "p_mpjpe": metrics.p_mpjpe(pred, target)}
    return {k: (float(np.sum(np.asarray(v) * mask)), float(mask.sum())) for k, v in out.items()}


def _complete(poses, confidence, *, tau: float, batch: int):
    """Completed poses (lists of (F_i, J, 3)) in batches padded to 64-frame buckets."""
    order = np.argsort([len(p) for p in poses])
    out = [None] * len(poses)
    config = tc.CompletionConfig(tau=tau)
    for start in range(0, len(order), batch):
        idx = order[start:start + batch]
        idx = np.concatenate([idx, np.repeat(idx[-1:], batch - len(idx))])
        frames = -(-max(len(poses[i]) for i in idx) // 64) * 64
        j = poses[idx[0]].shape[1]
        p = np.zeros((batch, frames, j, 3), np.float32)
        c = np.zeros((batch, frames, j), np.float32)
        mask = np.zeros((batch, frames), bool)
        for k, i in enumerate(idx):
            f = len(poses[i])
            p[k, :f], c[k, :f], mask[k, :f] = poses[i], confidence[i], True
        res = tc.complete_trajectories(p, c, config=config, frame_mask=mask)
        done = np.asarray(res.poses)
        if not np.isfinite(done).all():
            raise FloatingPointError("trajectory completion gave non-finite poses")
        for k, i in enumerate(idx):
            out[i] = done[k, :len(poses[i])]
    return out


def stage_b(workdir_a: str, path: str, *, tau: float, batch: int) -> dict:
    """Pseudo-labels of the unlabelled videos; returns Table 1 (mm)."""
    restored = loop.restore_for_inference(workdir_a, with_data=True)
    data = restored.run.data
    seqs = data.splits["unlabelled"]
    if seqs is None:
        raise ValueError("data.protocol leaves no unlabelled videos to boost with")
    if data.input_layout != data.layout:
        raise ValueError("boosting needs the 2D confidences per 3D joint: 2D in the 3D layout")
    predict_fn = protocols.make_predict_fn(restored.run.predictors["pose"].fn)
    preds = []
    for s in seqs:
        p = protocols.predict_sequence(predict_fn, restored.variables, s.inputs,
                                       bucket=int(restored.config.eval.bucket))
        preds.append(p - p[:, :1])
    conf = [s.confidence for s in seqs]
    completed = _complete(preds, conf, tau=tau, batch=batch)
    completed = [c - c[:, :1] for c in completed]
    table = {}
    for row, poses in (("predictions", preds), ("optimised", completed)):
        sums: dict[str, list[float]] = {}
        for which in ("all", "confident"):
            for p, s, c in zip(poses, seqs, conf):
                mask = np.ones(c.shape, bool) if which == "all" else c > tau
                for k, (t, n) in _errors(p, s.poses_3d, mask).items():
                    acc = sums.setdefault(f"{k}_{which}", [0.0, 0.0])
                    acc[0] += t
                    acc[1] += n
        table[row] = {k: 1000 * t / max(n, 1) for k, (t, n) in sums.items()}
    lengths = [len(p) for p in completed]
    padded = np.zeros((len(completed), max(lengths)) + completed[0].shape[1:], np.float32)
    mask = np.zeros(padded.shape[:2], bool)
    for i, p in enumerate(completed):
        padded[i, :len(p)], mask[i, :len(p)] = p, True
    bone_lengths = np.asarray(tc.video_bone_lengths(padded, layout=data.layout,
                                                    frame_mask=mask))
    pseudo_labels.save(path, inputs=[s.inputs for s in seqs], poses_3d=completed,
                       confidence=conf, bone_lengths=bone_lengths, layout=data.layout,
                       subjects=[s.subject for s in seqs], actions=[s.action_name for s in seqs])
    table["fraction_confident"] = float(np.mean(np.concatenate([c.ravel() for c in conf]) > tau))
    return table


def finetune_config(config, *, workdir_a: str, pseudo_path: str, fidelity: str,
                    bone: bool) -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict(config.to_dict())
    b = config.boost
    c.recipe = {"name": "li_boosting", "stream": "labelled", "trajectory": False,
                "tau": float(b.tau), "fidelity": fidelity,
                "gamma": float(b.gamma) if bone else 0.0}
    c.streams = {"labelled": {"split": "labelled", "global_batch_size": 0, "network": ""},
                 "pseudo": {"source": "pseudo_labels", "path": pseudo_path, "flip": False,
                            "global_batch_size": 0, "network": ""}}
    c.init_from = {"workdir": workdir_a, "networks": ("pose",)}
    c.num_epochs = int(b.finetune_epochs)
    c.optimizer.learning_rate = float(b.finetune_learning_rate)
    c.lock()
    return c


def _row(result) -> dict[str, float]:
    return {k: result["protocols_mm"][k]["action_wise"] for k in METRICS}


def run(config, workdir: str, *, progress: bool = True) -> dict:
    os.makedirs(workdir, exist_ok=True)
    workdir_a = os.path.join(workdir, "A_baseline")
    table3 = {"baseline": _row(loop.train_and_evaluate(config, workdir_a, progress=progress))}
    pseudo_path = os.path.join(workdir, "pseudo_labels.npz")
    table1 = stage_b(workdir_a, pseudo_path, tau=float(config.boost.tau),
                     batch=int(config.boost.completion_batch))
    for row, fidelity, bone in ROWS:
        cfg = finetune_config(config, workdir_a=workdir_a, pseudo_path=pseudo_path,
                              fidelity=fidelity, bone=bone)
        table3[row] = _row(loop.train_and_evaluate(cfg, os.path.join(workdir, f"C_{row}"),
                                                   progress=progress))
    report = {"units": "mm", "tau": float(config.boost.tau), "table1": table1,
              "table3": table3}
    io.save_json_atomic(os.path.join(workdir, "boost.json"), report)
    return report


def format_report(report: dict) -> str:
    lines = ["Table 1 (unlabelled videos; all joints / score > tau)",
             "| | " + " | ".join(f"{m} all | {m} > tau" for m in METRICS) + " |"]
    for row in ("predictions", "optimised"):
        r = report["table1"][row]
        lines.append(f"| {row} | " + " | ".join(
            f"{r[m + '_all']:.1f} | {r[m + '_confident']:.1f}" for m in METRICS) + " |")
    lines += ["", "Table 3 (evaluation set, action-wise)", "| | " + " | ".join(METRICS) + " |"]
    for row, r in report["table3"].items():
        lines.append(f"| {row} | " + " | ".join(f"{r[m]:.1f}" for m in METRICS) + " |")
    return "\n".join(lines)


def main(argv):
    del argv
    with _common.one_line_errors("boost.py"):
        report = run(flags.FLAGS.config, flags.FLAGS.workdir)
    print(format_report(report))


if __name__ == "__main__":
    define_flags()
    _common.run_app(main, "boost.py")
